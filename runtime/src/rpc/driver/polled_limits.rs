//! What the blocking server's connection loop takes before it reads (`polled_server`): a
//! call's [`Slot`] among its connection's calls in flight, and a read's share of the server's
//! [`FdBudget`]. The counterparts of `call_slots` and `fd_budget` for the tokio reader, with
//! the loop's own wake-up in place of tokio's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::budget_share::{Budget, Share};
use super::polled_conn::LoopWake;
use crate::settings::Settings;

/// The fds a blocking server holds over all its connections (its
/// [`fd_budget`](Settings::fd_budget)): received and waiting for their frame, or owned by
/// calls whose handlers have not finished.
#[derive(Debug)]
pub(crate) struct FdBudget {
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    free: usize,
    /// Loops that found too little and wait for some to come back.
    waiting: Vec<Arc<LoopWake>>,
}

impl FdBudget {
    pub(crate) fn new(settings: &Settings) -> Arc<Self> {
        Arc::new(FdBudget {
            state: Mutex::new(BudgetState {
                free: settings.fd_budget,
                waiting: Vec::new(),
            }),
        })
    }

    /// Takes `n` units, or registers `wake` to be woken when some come back.
    pub(crate) fn take(self: &Arc<Self>, n: usize, wake: &Arc<LoopWake>) -> Option<BudgetShare> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.free >= n {
            st.free -= n;
            return Some(Share::taken(self.clone(), n));
        }
        st.waiting.push(wake.clone());
        None
    }
}

impl Budget for FdBudget {
    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        let waiting = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.free += n;
            std::mem::take(&mut st.waiting)
        };
        for w in waiting {
            w.wake();
        }
    }
}

/// Units of the blocking server's fd budget, given back when dropped.
pub(crate) type BudgetShare = Share<FdBudget>;

/// A call's slot among the calls in flight on a polled connection.
#[derive(Debug)]
pub(crate) struct Slot {
    in_flight: Arc<InFlight>,
}

/// The calls in flight on one polled connection.
#[derive(Debug)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// `max_in_flight`: the loop reads no call while `count` is there.
    max: usize,
    wake: Arc<LoopWake>,
}

impl InFlight {
    /// At most `max` calls at once; `wake` wakes the connection's loop when a slot comes
    /// back while every slot was taken.
    pub(crate) fn new(max: usize, wake: &Arc<LoopWake>) -> Arc<Self> {
        Arc::new(InFlight {
            count: AtomicUsize::new(0),
            max,
            wake: wake.clone(),
        })
    }

    /// Whether a slot is free.
    pub(crate) fn has_room(&self) -> bool {
        self.count.load(Ordering::Acquire) < self.max
    }

    /// A slot (the loop's own thread looked for room first).
    pub(crate) fn take(self: &Arc<Self>) -> Slot {
        self.count.fetch_add(1, Ordering::AcqRel);
        Slot {
            in_flight: self.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.in_flight.count.fetch_sub(1, Ordering::AcqRel);
        // Every slot was taken: the loop may sleep until one is free. (Slots are nearly always
        // given back on the loop's own thread, which looks before it sleeps; a wake is one
        // syscall, so it is made only when it can matter.)
        if before >= self.in_flight.max {
            self.in_flight.wake.wake();
        }
    }
}
