//! [`Share`]: units taken from a server's fd budget, split per frame, merged per read, and
//! given back when dropped: the same for the tokio reader's budget (`fd_budget`) and the
//! blocking server's (`polled_limits`), which differ only in how a waiting reader is woken.

use std::sync::Arc;

/// A budget that units go back to.
pub(crate) trait Budget {
    /// Gives `n` units back (waking whoever waits for them).
    fn give(&self, n: usize);
}

/// Units of a budget `B`, given back when dropped.
#[derive(Debug)]
pub(crate) struct Share<B: Budget> {
    budget: Arc<B>,
    n: usize,
}

impl<B: Budget> Share<B> {
    /// `n` units the caller has taken from `budget`.
    pub(crate) fn taken(budget: Arc<B>, n: usize) -> Self {
        Share { budget, n }
    }

    /// How many units this share holds.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn units(&self) -> usize {
        self.n
    }

    /// Splits `n` units off into a share of their own (`None` for 0, or if there are fewer).
    pub(crate) fn split(&mut self, n: usize) -> Option<Self> {
        if n == 0 || n > self.n {
            return None;
        }
        self.n -= n;
        Some(Share {
            budget: self.budget.clone(),
            n,
        })
    }

    /// Adds `other`'s units to this share.
    pub(crate) fn merge(&mut self, mut other: Self) {
        self.n += std::mem::take(&mut other.n);
    }
}

impl<B: Budget> Drop for Share<B> {
    fn drop(&mut self) {
        self.budget.give(self.n);
    }
}
