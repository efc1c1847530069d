//! [`Deadline`]: when something waited for gives up, and the timeout it reports then. The one
//! shape of time in the connection core and its drivers: a call's deadline on the client (in
//! the core's pending calls, in a blocking wait, in the wait for room in the send queue) and on
//! the server (the caller's `client_timeout`, counted from the call's arrival).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rpc::error::RpcError;

/// An instant and the timeout it was set from (what [`RpcError::Timeout`] reports). `None`
/// where a `Option<Deadline>` stands means no deadline: as long as it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// `timeout` after `start`.
    #[inline]
    pub(crate) fn from(start: Instant, timeout: Duration) -> Self {
        Deadline {
            at: start + timeout,
            timeout,
        }
    }

    /// `timeout` from now.
    #[inline]
    pub(crate) fn after(timeout: Duration) -> Self {
        Self::from(Instant::now(), timeout)
    }

    /// `timeout` from now, if there is one.
    #[inline]
    pub(crate) fn after_opt(timeout: Option<Duration>) -> Option<Self> {
        timeout.map(Self::after)
    }

    /// Now: what can be done without waiting is done, nothing more.
    pub(crate) fn now() -> Self {
        Self::after(Duration::ZERO)
    }

    /// When it passes.
    #[inline]
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// The timeout it was set from.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether it has passed by `now`.
    #[inline]
    pub(crate) fn passed(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// What a wait that reached it fails with.
    pub(crate) fn error(&self) -> RpcError {
        RpcError::Timeout(self.timeout)
    }
}

/// Deadlines in order, each with the key of what it is the deadline of: what one timer per
/// connection looks at (the client's waiting calls, the server's waiting handlers), so that no
/// call needs a timer of its own.
///
/// An entry stays after what it timed is done (its owner skips it when it reaches the front);
/// such entries are dropped when they outnumber the live ones, so it holds a few times the
/// live keys at most. Deadlines of one timeout come in order, so an entry is
/// nearly always appended; one with a shorter timeout than those before it is inserted in its
/// place.
#[derive(Debug)]
pub(crate) struct DueQueue<K> {
    due: VecDeque<(Instant, K)>,
}

impl<K> Default for DueQueue<K> {
    fn default() -> Self {
        DueQueue {
            due: VecDeque::new(),
        }
    }
}

impl<K: Copy> DueQueue<K> {
    /// Adds `key`'s deadline `at`. `live` is how many keys may still have a deadline here;
    /// once the queue has grown past four entries for each of them, plus 64, the entries for
    /// which `is_live` does not hold are dropped first.
    #[inline]
    pub(crate) fn push(
        &mut self,
        at: Instant,
        key: K,
        live: usize,
        is_live: impl Fn(Instant, K) -> bool,
    ) {
        if self.due.len() >= 4 * live + 64 {
            self.due.retain(|&(at, key)| is_live(at, key));
        }
        if self.due.back().is_none_or(|&(last, _)| last <= at) {
            self.due.push_back((at, key));
        } else {
            let place = self.due.partition_point(|&(d, _)| d <= at);
            self.due.insert(place, (at, key));
        }
    }

    /// The earliest deadline for which `is_live` holds; entries before it are dropped.
    #[inline]
    pub(crate) fn first(&mut self, is_live: impl Fn(Instant, K) -> bool) -> Option<Instant> {
        while let Some(&(at, key)) = self.due.front() {
            if is_live(at, key) {
                return Some(at);
            }
            self.due.pop_front();
        }
        None
    }

    /// Takes the earliest entry if its deadline is `now` or earlier (live or not: its owner
    /// looks).
    #[inline]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let &(at, key) = self.due.front()?;
        if at > now {
            return None;
        }
        self.due.pop_front();
        Some((at, key))
    }

    /// How many entries it holds, live or not.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_passes_at_its_instant_and_reports_its_timeout() {
        let t0 = Instant::now();
        let d = Deadline::from(t0, Duration::from_millis(30));
        assert_eq!(d.at(), t0 + Duration::from_millis(30));
        assert!(!d.passed(t0 + Duration::from_millis(29)));
        assert!(d.passed(t0 + Duration::from_millis(30)));
        assert!(matches!(d.error(), RpcError::Timeout(t) if t == Duration::from_millis(30)));
        assert!(Deadline::now().passed(Instant::now()));
        assert_eq!(Deadline::after_opt(None), None);
    }

    #[test]
    fn due_entries_come_out_in_deadline_order_and_dead_ones_are_skipped() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = DueQueue::default();
        let all = |_, _| true;
        q.push(ms(30), 'a', 1, all);
        q.push(ms(50), 'b', 2, all);
        q.push(ms(10), 'c', 3, all);
        q.push(ms(30), 'd', 4, all);
        assert_eq!(
            q.first(|_, _| true),
            Some(ms(10)),
            "an earlier one goes first"
        );
        assert_eq!(
            q.first(|_, k| k != 'c'),
            Some(ms(30)),
            "a dead one is skipped"
        );
        assert_eq!(q.pop_due(ms(29)), None, "not due yet");
        assert_eq!(q.pop_due(ms(30)), Some((ms(30), 'a')));
        assert_eq!(
            q.pop_due(ms(30)),
            Some((ms(30), 'd')),
            "one instant, in order"
        );
        assert_eq!(q.pop_due(ms(30)), None);
        assert_eq!(q.first(|_, _| false), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_due_queue_drops_what_is_dead_once_dead_entries_outnumber_what_is_live() {
        let t0 = Instant::now();
        let mut q = DueQueue::default();
        // Key 0 stays live (and the newest, which is live as it is pushed) while 1,000 come
        // and go.
        for i in 0..1_000u64 {
            q.push(t0 + Duration::from_millis(i), i, 2, |_, k| {
                k == 0 || k + 1 == i
            });
            assert!(
                q.len() <= 8 + 64 + 1,
                "{} entries for two live keys",
                q.len()
            );
        }
        assert_eq!(q.pop_due(t0), Some((t0, 0)), "the live one is kept");
    }
}
