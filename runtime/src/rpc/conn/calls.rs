//! The calls a client is waiting on, by sequence id, with their deadlines, and the
//! allocation of sequence ids.

use std::task::{Poll, Waker};
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

use super::body::Body;
use super::remember;
use crate::codec::MessageType;
use crate::codec::fd_table::Fds;
use crate::rpc::deadline::{Deadline, DueQueue};
use crate::rpc::error::RpcError;
use crate::rpc::method_name::MethodName;

/// A reply as it arrived for a waiting call: still encoded, with its fds.
#[derive(Debug)]
pub(crate) struct Reply {
    /// `Reply` or `Exception`.
    pub(crate) ty: MessageType,
    /// The payload after the Thrift message header.
    pub(crate) body: Body,
    pub(crate) fds: Fds,
}

/// One call waiting for its reply.
#[derive(Debug)]
struct Pending {
    /// The wire name the reply must echo.
    method: MethodName,
    outcome: Option<Result<Reply, RpcError>>,
    waker: Option<Waker>,
    /// When the call times out, if the connection enforces it here.
    deadline: Option<Deadline>,
    /// Its outcome is that deadline passing, not a reply: the server still runs it.
    expired: bool,
}

/// The pending calls of one connection.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    /// The next sequence id to hand out. Counts up from 1 and wraps; 0 is never used, so a
    /// zeroed header never matches a call.
    next: i32,
    pending: FxHashMap<i32, Pending>,
    /// The deadlines of calls, in order: what [`Calls::expire`] looks at.
    due: DueQueue<i32>,
    /// Calls whose caller took their expiry ([`Calls::expire`]) and has not forgotten them
    /// yet: [`Calls::forget`] says the server must be told.
    expired: FxHashSet<i32>,
}

impl Calls {
    /// A sequence id that is not 0 and for which `in_use` is false (a call still pending, a
    /// stream still open). Ids are handed out in order, so one is reused only after 2^32 - 1
    /// more.
    pub(crate) fn next_seqid(&mut self, in_use: impl Fn(i32) -> bool) -> i32 {
        loop {
            self.next = self.next.wrapping_add(1);
            let id = self.next;
            if id != 0 && !self.pending.contains_key(&id) && !in_use(id) {
                return id;
            }
        }
    }

    /// Registers a call that waits for a reply named `method`, and that times out at
    /// `deadline` if given (see [`Calls::next_deadline`]).
    pub(crate) fn wait(&mut self, seqid: i32, method: MethodName, deadline: Option<Deadline>) {
        self.pending.insert(
            seqid,
            Pending {
                method,
                outcome: None,
                waker: None,
                deadline,
                expired: false,
            },
        );
        let Some(at) = deadline.map(|d| d.at()) else {
            return;
        };
        let pending = &self.pending;
        self.due.push(at, seqid, pending.len(), |at, seqid| {
            is_live(pending, at, seqid)
        });
    }

    /// The earliest deadline of a call still waiting.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        let pending = &self.pending;
        self.due.first(|at, seqid| is_live(pending, at, seqid))
    }

    /// Fails every call whose deadline is `now` or earlier with [`RpcError::Timeout`]; adds
    /// their wakers to `wake`.
    pub(crate) fn expire(&mut self, now: Instant, wake: &mut Vec<Waker>) {
        while let Some((at, seqid)) = self.due.pop_due(now) {
            let Some(p) = self.pending.get_mut(&seqid) else {
                continue;
            };
            match p.deadline {
                Some(d) if d.at() == at && p.outcome.is_none() => {
                    p.outcome = Some(Err(d.error()));
                    p.expired = true;
                    wake.extend(p.waker.take());
                }
                _ => {}
            }
        }
    }

    /// The method a pending call waits on, if it still does.
    pub(crate) fn method(&self, seqid: i32) -> Option<&MethodName> {
        self.pending
            .get(&seqid)
            .filter(|p| p.outcome.is_none())
            .map(|p| &p.method)
    }

    /// Settles the call `seqid` with `outcome` (a reply, or why there is none) and returns its
    /// waker. `outcome` is dropped (its fds closed) if nobody waits for `seqid`.
    pub(crate) fn settle(&mut self, seqid: i32, outcome: Result<Reply, RpcError>) -> Option<Waker> {
        let p = self.pending.get_mut(&seqid)?;
        if p.outcome.is_some() {
            return None;
        }
        p.outcome = Some(outcome);
        p.waker.take()
    }

    /// The outcome of call `seqid`, once there is one; until then remembers `waker` (if any)
    /// to be woken. A call nobody knows of is `Ready(Err(gone()))`.
    pub(crate) fn poll(
        &mut self,
        seqid: i32,
        waker: Option<&Waker>,
        gone: impl FnOnce() -> RpcError,
    ) -> Poll<Result<Reply, RpcError>> {
        let Some(p) = self.pending.get_mut(&seqid) else {
            return Poll::Ready(Err(gone()));
        };
        if p.outcome.is_none() {
            remember(&mut p.waker, waker);
            return Poll::Pending;
        }
        let outcome = match self.pending.remove(&seqid) {
            Some(p) => {
                if p.expired {
                    self.expired.insert(seqid);
                }
                p.outcome
            }
            None => None,
        };
        Poll::Ready(outcome.unwrap_or_else(|| Err(gone())))
    }

    /// Forgets call `seqid`: its reply, if it comes, is dropped and its fds closed. Returns
    /// whether the server may still be running it: no reply came (the call was still
    /// waiting, or its deadline passed here).
    pub(crate) fn forget(&mut self, seqid: i32) -> bool {
        let pending = self
            .pending
            .remove(&seqid)
            .is_some_and(|p| p.outcome.is_none() || p.expired);
        self.expired.remove(&seqid) || pending
    }

    /// Settles every pending call with `err()`; returns their wakers.
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> RpcError, wake: &mut Vec<Waker>) {
        for p in self.pending.values_mut() {
            if p.outcome.is_none() {
                p.outcome = Some(Err(err()));
                wake.extend(p.waker.take());
            }
        }
    }
}

/// Whether `at` is the deadline of call `seqid`, still waiting for its reply.
#[inline]
fn is_live(pending: &FxHashMap<i32, Pending>, at: Instant, seqid: i32) -> bool {
    pending
        .get(&seqid)
        .is_some_and(|p| p.outcome.is_none() && p.deadline.is_some_and(|d| d.at() == at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rpc::error::ConnectionError;
    use crate::transport::error::TransportError;

    fn closed() -> RpcError {
        RpcError::Connection(ConnectionError::new(TransportError::Closed))
    }

    #[test]
    fn seqids_skip_zero_and_ids_in_use() {
        let mut c = Calls {
            next: -2,
            ..Calls::default()
        };
        c.wait(-1, "m".into(), None);
        assert_eq!(c.next_seqid(|_| false), 1, "-1 is pending, 0 is never used");
        assert_eq!(c.next_seqid(|id| id == 2), 3);
    }

    #[test]
    fn a_reply_reaches_its_call_once() {
        let mut c = Calls::default();
        c.wait(7, "m".into(), None);
        assert!(c.poll(7, None, closed).is_pending());
        assert_eq!(c.method(7).map(MethodName::as_str), Some("m"));
        let reply = || Reply {
            ty: MessageType::Reply,
            body: Body::new(&[1], None),
            fds: Fds::new(),
        };
        c.settle(7, Ok(reply()));
        assert!(c.settle(7, Ok(reply())).is_none(), "settled twice");
        assert!(c.method(7).is_none(), "no longer waiting");
        match c.poll(7, None, closed) {
            Poll::Ready(Ok(r)) => assert_eq!(r.body.bytes(), [1]),
            other => panic!("{other:?}"),
        }
        assert!(!c.pending.contains_key(&7), "taken");
        assert!(matches!(c.poll(7, None, closed), Poll::Ready(Err(_))));
    }

    #[test]
    fn forgotten_and_failed_calls() {
        let mut c = Calls::default();
        c.wait(1, "a".into(), None);
        c.wait(2, "b".into(), None);
        assert!(c.forget(1));
        assert!(!c.forget(1));
        let mut wake = Vec::new();
        c.fail_all(closed, &mut wake);
        assert!(matches!(
            c.poll(2, None, closed),
            Poll::Ready(Err(RpcError::Connection(_)))
        ));
    }

    #[test]
    fn calls_time_out_at_their_deadlines_and_answered_ones_are_skipped() {
        let mut c = Calls::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let at = |t| Some(Deadline::from(t0, ms(t)));
        c.wait(1, "a".into(), at(30));
        assert_eq!(c.next_deadline(), Some(t0 + ms(30)), "the first deadline");
        c.wait(2, "b".into(), at(50));
        assert_eq!(c.next_deadline(), Some(t0 + ms(30)), "a later one");
        c.wait(3, "c".into(), at(10));
        assert_eq!(c.next_deadline(), Some(t0 + ms(10)), "an earlier one");
        c.wait(4, "d".into(), None);
        assert_eq!(c.next_deadline(), Some(t0 + ms(10)));
        c.wait(5, "e".into(), at(20));
        c.forget(5);
        // Call 3 is answered: its deadline is skipped.
        c.settle(
            3,
            Ok(Reply {
                ty: MessageType::Reply,
                body: Body::new(&[], None),
                fds: Fds::new(),
            }),
        );
        assert_eq!(c.next_deadline(), Some(t0 + ms(30)));
        let mut wake = Vec::new();
        c.expire(t0 + ms(30), &mut wake);
        assert!(matches!(
            c.poll(1, None, closed),
            Poll::Ready(Err(RpcError::Timeout(d))) if d == ms(30)
        ));
        assert!(c.forget(1), "timed out here: the server must be told");
        assert!(!c.forget(1), "once");
        assert!(c.poll(2, None, closed).is_pending(), "not yet");
        assert!(
            matches!(c.poll(3, None, closed), Poll::Ready(Ok(_))),
            "answered in time"
        );
        assert_eq!(c.next_deadline(), Some(t0 + ms(50)));
        c.expire(t0 + ms(60), &mut wake);
        assert!(matches!(
            c.poll(2, None, closed),
            Poll::Ready(Err(RpcError::Timeout(_)))
        ));
        assert!(
            c.poll(4, None, closed).is_pending(),
            "no deadline, no timeout"
        );
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_reply_that_came_before_the_deadline_is_kept_when_the_deadline_passes() {
        let mut c = Calls::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        c.wait(1, "a".into(), Some(Deadline::from(t0, ms(10))));
        c.settle(
            1,
            Ok(Reply {
                ty: MessageType::Reply,
                body: Body::new(&[42], None),
                fds: Fds::new(),
            }),
        );
        // The deadline passes before the caller takes the reply.
        let mut wake = Vec::new();
        c.expire(t0 + ms(20), &mut wake);
        assert!(wake.is_empty());
        match c.poll(1, None, closed) {
            Poll::Ready(Ok(r)) => assert_eq!(r.body.bytes(), [42]),
            other => panic!("{other:?}"),
        }
        assert!(!c.forget(1), "answered: the server needs no cancel");
    }

    #[test]
    fn the_deadline_queue_stays_within_a_few_times_the_calls_in_flight() {
        let mut c = Calls::default();
        let t0 = Instant::now();
        // 100 calls stay in flight while 10,000 come and go: the queue never holds more than
        // four entries per call in flight, plus 64.
        for i in 1..=10_100 {
            c.wait(
                i,
                "m".into(),
                Some(Deadline::from(t0, Duration::from_secs(25))),
            );
            assert!(
                c.due.len() <= 4 * c.pending.len() + 64,
                "{} entries for {} calls",
                c.due.len(),
                c.pending.len()
            );
            if i > 100 {
                c.forget(i);
            }
        }
    }
}
