//! The handlers a server runs in tasks of their own (those that did not finish on their first
//! poll), by sequence id: what the end of the connection stops at once, and what a `cancel`
//! for their call stops.

use futures_util::future::AbortHandle;
use rustc_hash::FxHashMap;

/// Running handlers of one connection.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    running: FxHashMap<(i32, u64), AbortHandle>,
    next: u64,
}

impl Handlers {
    /// Registers the handler of call `seqid`; returns its id, for [`Handlers::untrack`].
    pub(crate) fn track(&mut self, seqid: i32, handle: AbortHandle) -> u64 {
        self.next += 1;
        self.running.insert((seqid, self.next), handle);
        self.next
    }

    /// The handler `id` of `seqid` finished.
    pub(crate) fn untrack(&mut self, seqid: i32, id: u64) {
        self.running.remove(&(seqid, id));
    }

    /// Stops every handler of call `seqid`; returns how many there were.
    pub(crate) fn abort(&mut self, seqid: i32) -> usize {
        let mut n = 0;
        self.running.retain(|&(s, _), h| {
            if s == seqid {
                h.abort();
                n += 1;
                false
            } else {
                true
            }
        });
        n
    }

    /// Stops every handler.
    pub(crate) fn abort_all(&mut self) {
        for (_, h) in self.running.drain() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_stop_by_call_and_all_at_once() {
        let mut h = Handlers::default();
        let (a, b, c) = (
            AbortHandle::new_pair().0,
            AbortHandle::new_pair().0,
            AbortHandle::new_pair().0,
        );
        let ida = h.track(1, a.clone());
        h.track(1, b.clone());
        h.track(2, c.clone());
        h.untrack(1, ida);
        assert_eq!(h.abort(1), 1, "the finished one is gone");
        assert!(!a.is_aborted() && b.is_aborted() && !c.is_aborted());
        h.abort_all();
        assert!(c.is_aborted());
        assert_eq!(h.abort(2), 0);
    }
}
