//! A connection's open streams, by sequence id: where each stream's data frames go (an
//! inbox, bounded by the credit its consumer granted), and the credit each local producer may
//! spend (an outbox).
//!
//! Flow control is credit-based: the consumer grants a number of items; the producer spends
//! one per item and never sends more than it was granted; the consumer holds at most what it
//! granted and treats an item beyond that as a protocol violation. `end`, `error` and `abort`
//! need no credit.

use std::collections::VecDeque;
use std::task::{Poll, Waker};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::body::Body;
use super::remember;
use crate::codec::fd_table::Fds;
use crate::rpc::error::RpcError;
use crate::rpc::method_name::MethodName;

/// Tells one registration of a route from a later one under the same sequence id (a peer
/// may reuse a sequence id once a stream is over).
pub(crate) type RouteId = u64;

/// An item frame's result struct body and fds, not yet decoded.
pub(crate) type RawItem = (Body, Fds);

/// A data frame, or the end of the stream, as the consumer will see it.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// An item or an error: the body of a result struct and the frame's fds.
    Data { body: Body, fds: Fds },
    /// The producer ended the stream.
    End,
    /// The stream broke: the producer aborted, violated its credit, or the connection ended.
    Failed(RpcError),
}

/// The consumer side of one stream.
#[derive(Debug)]
struct Inbox {
    id: RouteId,
    /// The stream's wire name, for the credit and cancel frames this side sends.
    method: MethodName,
    items: VecDeque<Inbound>,
    window: Window,
    /// False once the stream is over (an `end`, an `error` item, an `abort`, a violation):
    /// later frames for it are dropped.
    open: bool,
    waker: Option<Waker>,
}

/// The producer side of one stream.
#[derive(Debug)]
struct Outbox {
    id: RouteId,
    credit: u32,
    waker: Option<Waker>,
    /// The method its frames name.
    method: MethodName,
}

#[derive(Debug, Default)]
struct Route {
    inbox: Option<Inbox>,
    outbox: Option<Outbox>,
}

impl Route {
    fn is_empty(&self) -> bool {
        self.inbox.is_none() && self.outbox.is_none()
    }
}

/// Credit a consumer grants after taking an item: `credit` more items of `method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) method: MethodName,
    pub(crate) credit: u32,
}

/// What became of a data frame; see [`Routes::deliver`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Queued for the consumer, or dropped (no such stream any more).
    Done,
    /// The producer sent more than it was granted: the stream failed; tell the producer
    /// with `cancel` for `method`.
    Violation { method: MethodName },
}

/// The streams of one connection.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// Keyed by sequence id with Fx hashing: SipHash showed up at 0.7% of a 64-in-flight
    /// profile. The peer picks a server's stream seqids, but every open stream holds one of the
    /// connection's calls in flight (256 by default), so colliding keys cost a bounded probe.
    map: FxHashMap<i32, Route>,
    next_id: RouteId,
}

impl Routes {
    fn id(&mut self) -> RouteId {
        self.next_id += 1;
        self.next_id
    }

    /// Whether a stream is open on `seqid`.
    pub(crate) fn contains(&self, seqid: i32) -> bool {
        self.map.contains_key(&seqid)
    }

    /// Registers the consumer of `seqid`'s data frames, granting `window` items.
    pub(crate) fn open_inbox(&mut self, seqid: i32, method: MethodName, window: u32) -> RouteId {
        let id = self.id();
        self.map.entry(seqid).or_default().inbox = Some(Inbox {
            id,
            method,
            items: VecDeque::new(),
            window: Window::new(window),
            open: true,
            waker: None,
        });
        id
    }

    /// Registers a producer of `method` for `seqid`, with `credit` items granted so far.
    pub(crate) fn open_outbox(&mut self, seqid: i32, credit: u32, method: MethodName) -> RouteId {
        let id = self.id();
        self.map.entry(seqid).or_default().outbox = Some(Outbox {
            id,
            credit,
            waker: None,
            method,
        });
        id
    }

    /// Forgets every producer, waking each (it then finds its stream closed and stops);
    /// returns the sequence id and method of each, in no order.
    pub(crate) fn close_all_outboxes(&mut self, wake: &mut Vec<Waker>) -> Vec<(i32, MethodName)> {
        let mut closed = Vec::new();
        for (seqid, route) in &mut self.map {
            if let Some(out) = route.outbox.take() {
                wake.extend(out.waker);
                closed.push((*seqid, out.method));
            }
        }
        self.map.retain(|_, r| !r.is_empty());
        closed
    }

    fn route(&mut self, seqid: i32) -> Option<&mut Route> {
        self.map.get_mut(&seqid)
    }

    fn remove_if_empty(&mut self, seqid: i32) {
        if self.map.get(&seqid).is_some_and(Route::is_empty) {
            self.map.remove(&seqid);
        }
    }

    fn inbox(&mut self, seqid: i32, id: RouteId) -> Option<&mut Inbox> {
        self.route(seqid)?.inbox.as_mut().filter(|i| i.id == id)
    }

    fn outbox(&mut self, seqid: i32, id: RouteId) -> Option<&mut Outbox> {
        self.route(seqid)?.outbox.as_mut().filter(|o| o.id == id)
    }

    /// Routes an `item` (or `error`, if `last`) frame to the consumer of `seqid`; its fds are
    /// closed if there is none.
    pub(crate) fn deliver(
        &mut self,
        seqid: i32,
        body: &[u8],
        owner: Option<&Bytes>,
        fds: Fds,
        last: bool,
        wake: &mut Vec<Waker>,
    ) -> Delivered {
        let Some(inbox) = self.route(seqid).and_then(|r| r.inbox.as_mut()) else {
            return Delivered::Done;
        };
        if !inbox.open {
            return Delivered::Done;
        }
        wake.extend(inbox.waker.take());
        if !inbox.window.received() {
            inbox.open = false;
            inbox.items.push_back(Inbound::Failed(RpcError::Protocol(
                crate::rpc::ApplicationError::new(
                    crate::rpc::ApplicationErrorKind::ProtocolError,
                    "the producer sent more items than it was granted",
                ),
            )));
            return Delivered::Violation {
                method: inbox.method.clone(),
            };
        }
        inbox.items.push_back(Inbound::Data {
            body: Body::new(body, owner),
            fds,
        });
        inbox.open = !last;
        Delivered::Done
    }

    /// Ends the stream of `seqid` for its consumer: with `end`, or with `failure`.
    pub(crate) fn finish(&mut self, seqid: i32, failure: Option<RpcError>, wake: &mut Vec<Waker>) {
        let Some(inbox) = self.route(seqid).and_then(|r| r.inbox.as_mut()) else {
            return;
        };
        if !inbox.open {
            return;
        }
        inbox.open = false;
        inbox.items.push_back(match failure {
            None => Inbound::End,
            Some(e) => Inbound::Failed(e),
        });
        wake.extend(inbox.waker.take());
    }

    /// Adds `n` items of credit to the producer of `seqid`.
    pub(crate) fn grant(&mut self, seqid: i32, n: u32, wake: &mut Vec<Waker>) {
        if let Some(out) = self.route(seqid).and_then(|r| r.outbox.as_mut()) {
            out.credit = out.credit.saturating_add(n);
            wake.extend(out.waker.take());
        }
    }

    /// The consumer of `seqid` cancelled: its producer stops (it finds its outbox gone).
    pub(crate) fn cancel(&mut self, seqid: i32, wake: &mut Vec<Waker>) {
        if let Some(out) = self.route(seqid).and_then(|r| r.outbox.take()) {
            wake.extend(out.waker);
        }
        self.remove_if_empty(seqid);
    }

    /// The next thing for consumer `id` of `seqid`: an item (and, when half the window has
    /// been consumed, the credit to grant for it), the end, or a failure. `None` when the
    /// inbox is gone (cancelled here, or the registration was replaced). Until something
    /// arrives, remembers `waker`.
    pub(crate) fn poll_inbox(
        &mut self,
        seqid: i32,
        id: RouteId,
        waker: Option<&Waker>,
    ) -> Poll<Option<(Inbound, Option<Grant>)>> {
        let Some(inbox) = self.inbox(seqid, id) else {
            return Poll::Ready(None);
        };
        let Some(item) = inbox.items.pop_front() else {
            remember(&mut inbox.waker, waker);
            return Poll::Pending;
        };
        let grant = match &item {
            Inbound::Data { .. } if inbox.open => inbox.window.consumed().map(|credit| Grant {
                method: inbox.method.clone(),
                credit,
            }),
            Inbound::Data { .. } => None,
            Inbound::End | Inbound::Failed(_) => {
                self.close_inbox(seqid, id);
                None
            }
        };
        Poll::Ready(Some((item, grant)))
    }

    /// Forgets consumer `id` of `seqid`, dropping what it had not taken (their fds close).
    /// Returns the stream's method if the stream was still open: the producer should be told
    /// with `cancel`.
    pub(crate) fn close_inbox(&mut self, seqid: i32, id: RouteId) -> Option<MethodName> {
        let route = self.route(seqid)?;
        if route.inbox.as_ref().is_none_or(|i| i.id != id) {
            return None;
        }
        let inbox = route.inbox.take()?;
        self.remove_if_empty(seqid);
        inbox.open.then_some(inbox.method)
    }

    /// Takes one item of credit for producer `id` of `seqid`: `Ready(true)` when taken,
    /// `Ready(false)` when the consumer cancelled (or the connection ended), `Pending` (with
    /// `waker` remembered) until credit comes.
    pub(crate) fn take_credit(
        &mut self,
        seqid: i32,
        id: RouteId,
        waker: Option<&Waker>,
    ) -> Poll<bool> {
        let Some(out) = self.outbox(seqid, id) else {
            return Poll::Ready(false);
        };
        if out.credit > 0 {
            out.credit -= 1;
            return Poll::Ready(true);
        }
        remember(&mut out.waker, waker);
        Poll::Pending
    }

    /// Whether producer `id` of `seqid` may go on (its consumer has not cancelled); remembers
    /// `waker` to be woken on a cancel.
    pub(crate) fn outbox_open(&mut self, seqid: i32, id: RouteId, waker: Option<&Waker>) -> bool {
        let Some(out) = self.outbox(seqid, id) else {
            return false;
        };
        remember(&mut out.waker, waker);
        true
    }

    /// Forgets producer `id` of `seqid`. Returns whether it was still registered (not
    /// cancelled).
    pub(crate) fn close_outbox(&mut self, seqid: i32, id: RouteId) -> bool {
        let Some(route) = self.route(seqid) else {
            return false;
        };
        if route.outbox.as_ref().is_none_or(|o| o.id != id) {
            return false;
        }
        route.outbox = None;
        self.remove_if_empty(seqid);
        true
    }

    /// The connection ended: every consumer fails with `err()`, every producer stops.
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> RpcError, wake: &mut Vec<Waker>) {
        for route in self.map.values_mut() {
            if let Some(inbox) = &mut route.inbox {
                // What was received stays readable; the failure comes after it.
                if inbox.open {
                    inbox.open = false;
                    inbox.items.push_back(Inbound::Failed(err()));
                }
                wake.extend(inbox.waker.take());
            }
            if let Some(out) = route.outbox.take() {
                wake.extend(out.waker);
            }
        }
        self.map.retain(|_, r| !r.is_empty());
    }
}

/// The consumer's bookkeeping of the credit it granted.
#[derive(Debug)]
pub(crate) struct Window {
    /// Items granted and not yet received.
    outstanding: u32,
    /// Items consumed since the last grant.
    consumed: u32,
    window: u32,
}

impl Window {
    pub(crate) fn new(window: u32) -> Self {
        Window {
            outstanding: window,
            consumed: 0,
            window,
        }
    }

    /// An item arrived: `false` if the producer exceeded its credit.
    pub(crate) fn received(&mut self) -> bool {
        match self.outstanding.checked_sub(1) {
            Some(n) => {
                self.outstanding = n;
                true
            }
            None => false,
        }
    }

    /// An item was consumed; returns a grant to send once half the window has been used, so
    /// that at most a window of items is ever in flight or buffered.
    pub(crate) fn consumed(&mut self) -> Option<u32> {
        self.consumed += 1;
        if self.consumed >= self.window.div_ceil(2) {
            let grant = self.consumed;
            self.consumed = 0;
            self.outstanding += grant;
            Some(grant)
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_window_grants_exactly_what_was_consumed_and_no_more() {
        let mut w = Window::new(4);
        for _ in 0..4 {
            assert!(w.received());
        }
        assert!(!w.received(), "a fifth item on a window of four");
        assert_eq!(w.consumed(), None);
        assert_eq!(w.consumed(), Some(2));
        assert!(w.received());
        assert!(w.received());
        assert!(!w.received(), "the grant was two, not three");
    }

    #[test]
    fn an_item_beyond_the_credit_fails_the_stream_and_asks_for_a_cancel() {
        let mut r = Routes::default();
        let id = r.open_inbox(5, "m".into(), 1);
        let mut wake = Vec::new();
        assert_eq!(
            r.deliver(5, b"a", None, Fds::new(), false, &mut wake),
            Delivered::Done
        );
        assert_eq!(
            r.deliver(5, b"b", None, Fds::new(), false, &mut wake),
            Delivered::Violation { method: "m".into() }
        );
        // Later frames are dropped; the consumer sees the item, then the failure.
        assert_eq!(
            r.deliver(5, b"c", None, Fds::new(), false, &mut wake),
            Delivered::Done
        );
        assert!(matches!(
            r.poll_inbox(5, id, None),
            Poll::Ready(Some((Inbound::Data { .. }, None)))
        ));
        assert!(matches!(
            r.poll_inbox(5, id, None),
            Poll::Ready(Some((Inbound::Failed(_), None)))
        ));
        assert!(
            !r.contains(5),
            "the route is gone once the consumer saw the failure"
        );
    }

    #[test]
    fn registrations_under_a_reused_seqid_are_told_apart() {
        let mut r = Routes::default();
        assert!(!r.contains(1));
        let old = r.open_outbox(1, 3, "m".into());
        assert!(r.contains(1));
        let new = r.open_outbox(1, 0, "m".into());
        assert_eq!(r.take_credit(1, old, None), Poll::Ready(false));
        assert_eq!(r.take_credit(1, new, None), Poll::Pending);
        assert!(!r.close_outbox(1, old));
        let mut wake = Vec::new();
        r.grant(1, 2, &mut wake);
        assert_eq!(r.take_credit(1, new, None), Poll::Ready(true));
        r.cancel(1, &mut wake);
        assert_eq!(r.take_credit(1, new, None), Poll::Ready(false));
        assert!(!r.contains(1));
    }

    #[test]
    fn the_end_needs_no_credit() {
        let mut r = Routes::default();
        let id = r.open_inbox(2, "m".into(), 0);
        let mut wake = Vec::new();
        r.finish(2, None, &mut wake);
        assert!(matches!(
            r.poll_inbox(2, id, None),
            Poll::Ready(Some((Inbound::End, None)))
        ));
        assert!(!r.contains(2));
    }
}
