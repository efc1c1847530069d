//! [`FdBudget`]: a tokio server's [`fd_budget`](crate::Settings::fd_budget), the fds it
//! holds over all its connections (received and waiting for their frame, or owned by calls
//! whose handlers have not finished). A reader takes a read's worth before each read and keeps
//! the share of the fds that arrived; each call's frame takes its fds' share with it.
//!
//! A counter and a wake-up rather than a `tokio::sync::Semaphore`, for the reason
//! [`CallSlots`](super::call_slots::CallSlots) is: giving permits back to a semaphore takes
//! its waiters' lock, twice a call that carries fds (the rest of a read's reservation, then
//! the call's share); ~300 instructions of a one-call-at-a-time server's ~9,900 in its
//! profile. Here giving back is one atomic addition, and a wake-up only while a reader waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::budget_share::{Budget, Share};

/// The fd budget of one server.
#[derive(Debug)]
pub(crate) struct FdBudget {
    free: AtomicUsize,
    /// Readers waiting in [`FdBudget::take`]: only then does a share given back wake them.
    waiting: AtomicUsize,
    freed: Notify,
}

/// Units of an [`FdBudget`], given back when dropped.
pub(crate) type BudgetShare = Share<FdBudget>;

impl FdBudget {
    /// A budget of `units`.
    pub(crate) fn new(units: usize) -> Arc<Self> {
        Arc::new(FdBudget {
            free: AtomicUsize::new(units),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// `n` units if that many are free now.
    pub(crate) fn try_take(self: &Arc<Self>, n: usize) -> Option<BudgetShare> {
        let mut free = self.free.load(Ordering::Relaxed);
        loop {
            let left = free.checked_sub(n)?;
            match self
                .free
                .compare_exchange_weak(free, left, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return Some(Share::taken(self.clone(), n)),
                Err(now) => free = now,
            }
        }
    }

    /// `n` units, once that many are free. Cancel-safe: dropped while waiting, it takes
    /// nothing.
    pub(crate) async fn take(self: &Arc<Self>, n: usize) -> BudgetShare {
        // Counted before looking: a share given back after this sees the waiter and wakes it;
        // one given back before is seen by the look below (both sides are `SeqCst`).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Waiting(self);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(share) = self.try_take(n) {
                return share;
            }
            freed.await;
        }
    }
}

impl Budget for FdBudget {
    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.free.fetch_add(n, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// A reader counted in [`FdBudget::waiting`] until it stops waiting (or is dropped).
struct Waiting<'a>(&'a FdBudget);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn free(b: &FdBudget) -> usize {
        b.free.load(Ordering::SeqCst)
    }

    #[test]
    fn shares_are_taken_split_merged_and_given_back_whole() {
        let budget = FdBudget::new(10);
        let mut read = budget.try_take(8).unwrap();
        assert!(budget.try_take(3).is_none(), "2 left");
        assert_eq!(free(&budget), 2);
        // A frame's fds take their share; the rest of the read's goes back.
        let frame = read.split(3).unwrap();
        assert!(read.split(0).is_none());
        assert!(read.split(6).is_none(), "5 left in the read's share");
        let mut parked = read.split(1).unwrap();
        drop(read);
        assert_eq!(free(&budget), 6);
        parked.merge(budget.try_take(2).unwrap());
        assert_eq!(free(&budget), 4);
        drop(frame);
        drop(parked);
        assert_eq!(free(&budget), 10);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_when_units_come_back() {
        let budget = FdBudget::new(4);
        let held = budget.try_take(3).unwrap();
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(2).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(budget.waiting.load(Ordering::SeqCst), 1);
        drop(held);
        let share = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!((share.units(), free(&budget)), (2, 2));
        assert_eq!(budget.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_wait_given_up_takes_nothing_and_is_not_counted() {
        let budget = FdBudget::new(1);
        let held = budget.try_take(1).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(1), budget.take(1)).await;
        assert!(waiting.is_err());
        assert_eq!(budget.waiting.load(Ordering::SeqCst), 0);
        drop(held);
        assert_eq!(free(&budget), 1);
    }

    /// Units given back on other threads while readers wait: every wait ends, nothing is
    /// lost or made up.
    #[test]
    fn readers_and_givers_on_threads_lose_no_wake_up() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = FdBudget::new(3);
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let budget = budget.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..500 {
                        let share = budget.take(2).await;
                        tokio::task::yield_now().await;
                        drop(share);
                    }
                }));
            }
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(60), t)
                    .await
                    .expect("no reader left waiting")
                    .unwrap();
            }
            assert_eq!(free(&budget), 3);
        });
    }
}
