//! The calls a client is waiting on, by sequence id, and the allocation of sequence ids.

use std::os::fd::OwnedFd;
use std::task::{Poll, Waker};

use rustc_hash::FxHashMap;

use super::remember;
use crate::codec::MessageType;
use crate::rpc::error::RpcError;

/// A reply as it arrived for a waiting call: still encoded, with its fds.
#[derive(Debug)]
pub(crate) struct Reply {
    /// `Reply` or `Exception`.
    pub(crate) ty: MessageType,
    /// The payload after the Thrift message header.
    pub(crate) body: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// One call waiting for its reply.
#[derive(Debug)]
struct Pending {
    /// The wire name the reply must echo.
    method: &'static str,
    outcome: Option<Result<Reply, RpcError>>,
    waker: Option<Waker>,
}

/// The pending calls of one connection.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    /// The next sequence id to hand out. Counts up from 1 and wraps; 0 is never used, so a
    /// zeroed header never matches a call.
    next: i32,
    pending: FxHashMap<i32, Pending>,
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

    /// Registers a call that waits for a reply named `method`.
    pub(crate) fn wait(&mut self, seqid: i32, method: &'static str) {
        self.pending.insert(
            seqid,
            Pending {
                method,
                outcome: None,
                waker: None,
            },
        );
    }

    /// The method a pending call waits on, if it still does.
    pub(crate) fn method(&self, seqid: i32) -> Option<&'static str> {
        self.pending
            .get(&seqid)
            .filter(|p| p.outcome.is_none())
            .map(|p| p.method)
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
        let outcome = self
            .pending
            .remove(&seqid)
            .and_then(|p| p.outcome)
            .unwrap_or_else(|| Err(gone()));
        Poll::Ready(outcome)
    }

    /// Forgets call `seqid`: its reply, if it comes, is dropped and its fds closed. Returns
    /// whether the call was still waiting (no outcome yet).
    pub(crate) fn forget(&mut self, seqid: i32) -> bool {
        self.pending
            .remove(&seqid)
            .is_some_and(|p| p.outcome.is_none())
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
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
        c.wait(-1, "m");
        assert_eq!(c.next_seqid(|_| false), 1, "-1 is pending, 0 is never used");
        assert_eq!(c.next_seqid(|id| id == 2), 3);
    }

    #[test]
    fn a_reply_reaches_its_call_once() {
        let mut c = Calls::default();
        c.wait(7, "m");
        assert!(c.poll(7, None, closed).is_pending());
        assert_eq!(c.method(7), Some("m"));
        let reply = || Reply {
            ty: MessageType::Reply,
            body: vec![1],
            fds: vec![],
        };
        c.settle(7, Ok(reply()));
        assert!(c.settle(7, Ok(reply())).is_none(), "settled twice");
        assert_eq!(c.method(7), None, "no longer waiting");
        match c.poll(7, None, closed) {
            Poll::Ready(Ok(r)) => assert_eq!(r.body, [1]),
            other => panic!("{other:?}"),
        }
        assert!(!c.pending.contains_key(&7), "taken");
        assert!(matches!(c.poll(7, None, closed), Poll::Ready(Err(_))));
    }

    #[test]
    fn forgotten_and_failed_calls() {
        let mut c = Calls::default();
        c.wait(1, "a");
        c.wait(2, "b");
        assert!(c.forget(1));
        assert!(!c.forget(1));
        let mut wake = Vec::new();
        c.fail_all(closed, &mut wake);
        assert!(matches!(
            c.poll(2, None, closed),
            Poll::Ready(Err(RpcError::Connection(_)))
        ));
    }
}
