//! [`CallSlots`]: the `max_in_flight` slots of one connection on tokio, taken by the reader
//! before it reads a call and given back when the call ends.
//!
//! A counter and a wake-up rather than a `tokio::sync::Semaphore`: giving a permit back to a
//! semaphore takes its waiters' lock, on every call (~160 instructions per call in the
//! server's profile); giving a slot back here is one atomic subtraction, and a wake-up only
//! when the reader may be waiting (every slot was taken).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The call slots of one connection.
#[derive(Debug)]
pub(crate) struct CallSlots {
    taken: AtomicUsize,
    max: usize,
    /// Signalled when a slot is given back while every slot was taken.
    freed: Notify,
    /// Set once the connection waits for its calls to finish ([`CallSlots::all_free`]):
    /// only then does the last slot given back signal `idle`.
    draining: AtomicBool,
    idle: Notify,
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct CallSlot(Arc<CallSlots>);

impl CallSlots {
    /// `max` slots (at least one).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(CallSlots {
            taken: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
        })
    }

    /// A slot if one is free now.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<CallSlot> {
        let mut n = self.taken.load(Ordering::Relaxed);
        loop {
            if n >= self.max {
                return None;
            }
            match self
                .taken
                .compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Some(CallSlot(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Returns once every slot is free: every call the connection dispatched has ended.
    pub(crate) async fn all_free(&self) {
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.taken.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// A slot, once one is free. Cancel-safe: dropped while waiting, it takes nothing.
    pub(crate) async fn take(self: &Arc<Self>) -> CallSlot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot given back in between wakes it.
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return slot;
            }
            freed.await;
        }
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        let before = self.0.taken.fetch_sub(1, Ordering::SeqCst);
        if before >= self.0.max {
            self.0.freed.notify_one();
        }
        if before == 1 && self.0.draining.load(Ordering::SeqCst) {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn slots_run_out_and_come_back() {
        let slots = CallSlots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        let c = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop((b, c));
        assert_eq!(slots.taken.load(Ordering::Relaxed), 0);
        assert!(CallSlots::new(0).try_take().is_some(), "at least one slot");
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_when_a_slot_is_given_back() {
        let slots = CallSlots::new(1);
        let held = slots.try_take().unwrap();
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let slot = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(slots.try_take().is_none(), "the waiter holds the slot");
        drop(slot);
        assert!(slots.try_take().is_some());
    }

    #[tokio::test]
    async fn all_free_waits_for_the_last_slot() {
        let slots = CallSlots::new(4);
        let (a, b) = (slots.try_take().unwrap(), slots.try_take().unwrap());
        let drained = tokio::spawn({
            let slots = slots.clone();
            async move { slots.all_free().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!drained.is_finished(), "one slot is still taken");
        drop(b);
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("woken by the last slot")
            .unwrap();
        // With nothing taken it returns at once.
        tokio::time::timeout(Duration::from_secs(10), slots.all_free())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_wait_given_up_takes_nothing() {
        let slots = CallSlots::new(1);
        let held = slots.try_take().unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(1), slots.take()).await;
        assert!(waiting.is_err());
        drop(held);
        assert_eq!(slots.taken.load(Ordering::Relaxed), 0);
    }
}
