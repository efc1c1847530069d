//! The handlers a server runs in tasks of their own (those that did not finish on their first
//! poll), by sequence id: what the end of the connection stops, what a `cancel` for their
//! call stops at once, and what the connection's one deadline timer ends when their caller's
//! deadline passes. The connection core only reports cancelled calls
//! ([`Conn::take_cancelled_calls`](crate::rpc::conn::Conn::take_cancelled_calls)); the
//! handlers live here, behind a lock of their own.
//!
//! One timer per connection, not one per waiting call: a tokio timer is 96 bytes in every
//! waiting call's future. The timer is a task ([`Handlers::keep_deadlines`]) that runs while
//! some handler of the connection has a deadline, waits for the earliest, and has the
//! handlers whose deadline passed end as timed out ([`Work::expire`]), in their own tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_util::task::AtomicWaker;
use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use crate::rpc::deadline::DueQueue;
use crate::rpc::driver::handle::Driven;

/// What a handler's task runs: a future that can also be told that its deadline passed.
pub(crate) trait Work: Send + Unpin + 'static {
    /// Polls the work; `Ready` once it has ended.
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// Its deadline passed: ends the work now, as a call that timed out ends.
    fn expire(self);
}

/// Work with no deadline of its own (a stream method's, whose deadline bounds only its
/// handler, which it enforces itself): a future.
pub(crate) struct Unbounded<F>(pub(crate) Pin<Box<F>>);

impl<F: Future<Output = ()> + Send + 'static> Work for Unbounded<F> {
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }

    /// Never tracked with a deadline; if it were, it ends as a cancelled call does.
    fn expire(self) {}
}

/// Running, stopped (or aborted), or out of time: a [`RunningHandler`]'s state.
const RUNNING: u8 = 0;
const ENDED: u8 = 1;
const EXPIRED: u8 = 2;

/// One handler running in a task: its work, which [`Stop::stop`] can take and drop from any
/// thread, and what ends the task (a state and the task's waker), in one allocation.
pub(crate) struct RunningHandler<W> {
    /// [`RUNNING`] until the task is to end at its next poll: [`ENDED`] (the work dropped) or
    /// [`EXPIRED`] (the work told, [`Work::expire`]).
    state: AtomicU8,
    /// The task's waker, to have that poll happen.
    task: AtomicWaker,
    work: Mutex<Option<W>>,
}

impl<W: Work> RunningHandler<W> {
    /// The handler running `work`, and the future the task that runs it polls.
    pub(crate) fn new(work: W) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let handler = Arc::new(RunningHandler {
            state: AtomicU8::new(RUNNING),
            task: AtomicWaker::new(),
            work: Mutex::new(Some(work)),
        });
        let polled = handler.clone();
        let task = std::future::poll_fn(move |cx| {
            // Registered before the state is read: a change after the read wakes this task.
            polled.task.register(cx.waker());
            match polled.state.load(Ordering::Acquire) {
                RUNNING => {}
                EXPIRED => {
                    // Here, in the task, without the work's lock.
                    if let Some(work) = polled.take() {
                        work.expire();
                    }
                    return Poll::Ready(());
                }
                _ => {
                    // Aborted: the work is dropped here, in the task, never by whoever drops
                    // the last other reference (which may hold the connection's lock).
                    drop(polled.take());
                    return Poll::Ready(());
                }
            }
            let mut work = polled.work.lock().unwrap_or_else(|p| p.into_inner());
            let Some(w) = work.as_mut() else {
                return Poll::Ready(());
            };
            if w.poll_work(cx).is_ready() {
                *work = None;
                return Poll::Ready(());
            }
            Poll::Pending
        });
        (handler, task)
    }

    fn take(&self) -> Option<W> {
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Ends the task at its next poll, which this asks for, in state `to` (if it still runs).
    fn end(&self, to: u8) {
        if self
            .state
            .compare_exchange(RUNNING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.task.wake();
        }
    }
}

/// A [`RunningHandler`] as the connection holds it, whatever its work.
pub(crate) trait Stop: Send + Sync {
    /// Drops the handler's work now, on this thread (waiting for a poll in progress on
    /// another to end), and ends its task. Must not be called with the connection's lock
    /// held, or the handlers' lock: the work's `Drop` may use the connection.
    fn stop(&self);

    /// Ends the task: it drops the work (if still there) at its next poll, which this asks
    /// for.
    fn abort(&self);

    /// Its deadline passed: the task ends the work as timed out ([`Work::expire`]) at its
    /// next poll, which this asks for; nothing if it has ended already.
    fn expire(&self);
}

impl<W: Work> Stop for RunningHandler<W> {
    fn stop(&self) {
        let work = self.take();
        self.state.store(ENDED, Ordering::Release);
        self.task.wake();
        drop(work);
    }

    fn abort(&self) {
        self.state.store(ENDED, Ordering::Release);
        self.task.wake();
    }

    fn expire(&self) {
        self.end(EXPIRED);
    }
}

/// Running handlers of one connection, and the deadlines of those that have one.
#[derive(Default)]
pub(crate) struct Handlers {
    inner: Mutex<Tracked>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Tracked {
    /// By sequence id and a number that tells handlers of one sequence id apart
    /// ([`HandlerId`]).
    by_call: FxHashMap<(i32, HandlerId), Arc<dyn Stop>>,
    /// The last [`HandlerId`] given, without its deadline bit.
    next: u32,
    /// The connection ended: nothing more is tracked ([`Handlers::abort_all`]).
    closed: bool,
    /// Made at the first handler with a deadline: every connection is held by the server
    /// while it lives, most never have a handler that waits, and this is 96 bytes.
    timed: Option<Box<Deadlines>>,
}

/// The deadlines of a connection's handlers, and the keeper that waits for them.
#[derive(Default)]
struct Deadlines {
    /// Earliest first.
    due: DueQueue<(i32, HandlerId)>,
    /// How many handlers tracked have a deadline.
    count: usize,
    /// A keeper task runs ([`Handlers::keep_deadlines`]), and what it waits for: `None`
    /// while it looks.
    keeper: Option<Option<Instant>>,
    /// Set when the keeper must look again (a deadline earlier than the one it waits for,
    /// none left, the connection's end), with its waker taken to be woken.
    look_again: bool,
    /// The keeper's waker while it waits.
    waker: Option<Waker>,
}

impl Deadlines {
    /// Has a waiting keeper look again: returns its waker, to be woken without the lock.
    fn look_again(&mut self) -> Option<Waker> {
        self.look_again = true;
        if let Some(Some(_)) = self.keeper {
            self.keeper = Some(None);
        }
        self.waker.take()
    }

    /// `n` handlers with a deadline are no longer tracked. Returns the keeper's waker if it
    /// waits while no handler has a deadline any more (it is to be woken, to end).
    fn forget(&mut self, n: usize) -> Option<Waker> {
        self.count -= n;
        if n > 0 && self.count == 0 && matches!(self.keeper, Some(Some(_))) {
            return self.look_again();
        }
        None
    }
}

impl Tracked {
    /// [`Deadlines::forget`], if there are deadlines.
    fn forget_deadlines(&mut self, n: usize) -> Option<Waker> {
        self.timed.as_mut().and_then(|t| t.forget(n))
    }
}

/// What tells a connection's handlers of one sequence id apart (a peer may reuse a sequence
/// id while a handler of the last call that had it still runs), and whether the handler has
/// a deadline (the lowest bit): eight bytes in all with the sequence id, so a connection's
/// map of its waiting handlers is no larger than a map of the handlers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct HandlerId(u32);

impl HandlerId {
    fn has_deadline(self) -> bool {
        self.0 & 1 == 1
    }
}

/// What [`Handlers::track`] did with a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracking {
    /// Tracked, as `id`; `keeper`: start the connection's deadline keeper
    /// ([`Handlers::keep_deadlines`]), none runs.
    Tracked { id: HandlerId, keeper: bool },
    /// The connection has ended: the caller stops the handler itself.
    Closed,
}

impl Handlers {
    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the handler of call `seqid`, which ends as timed out at `deadline` if given.
    pub(crate) fn track(
        &self,
        seqid: i32,
        handler: Arc<dyn Stop>,
        deadline: Option<Instant>,
    ) -> Tracking {
        let mut wake = None;
        let tracking = {
            let mut t = self.lock();
            if t.closed {
                return Tracking::Closed;
            }
            let id = loop {
                // One not in use, even after the count wraps (one hash of the key either way).
                t.next = t.next.wrapping_add(1) & (u32::MAX >> 1);
                let id = HandlerId(t.next << 1 | u32::from(deadline.is_some()));
                if let Entry::Vacant(slot) = t.by_call.entry((seqid, id)) {
                    slot.insert(handler);
                    break id;
                }
            };
            let mut keeper = false;
            if let Some(at) = deadline {
                let Tracked { by_call, timed, .. } = &mut *t;
                let timed = timed.get_or_insert_with(Box::default);
                timed.count += 1;
                timed.due.push(at, (seqid, id), timed.count, |_, key| {
                    by_call.contains_key(&key)
                });
                match timed.keeper {
                    None => {
                        timed.keeper = Some(None);
                        keeper = true;
                    }
                    Some(Some(waits_for)) if at < waits_for => wake = timed.look_again(),
                    Some(_) => {}
                }
            }
            Tracking::Tracked { id, keeper }
        };
        if let Some(w) = wake {
            w.wake();
        }
        tracking
    }

    /// The handler `id` of `seqid` finished.
    pub(crate) fn untrack(&self, seqid: i32, id: HandlerId) {
        let (removed, wake) = {
            let mut t = self.lock();
            let removed = t.by_call.remove(&(seqid, id));
            let timed = usize::from(removed.is_some() && id.has_deadline());
            let wake = t.forget_deadlines(timed);
            (removed, wake)
        };
        // Dropped without the lock.
        drop(removed);
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// The caller cancelled call `seqid`: its handlers are dropped now, on this thread,
    /// without any lock held (their futures' `Drop` may use the connection). Returns how many
    /// there were.
    pub(crate) fn stop_call(&self, seqid: i32) -> usize {
        let mut stopped = Vec::new();
        let wake = {
            let mut t = self.lock();
            let mut timed = 0;
            t.by_call.retain(|&(s, id), h| {
                if s == seqid {
                    stopped.push(h.clone());
                    timed += usize::from(id.has_deadline());
                    false
                } else {
                    true
                }
            });
            t.forget_deadlines(timed)
        };
        if let Some(w) = wake {
            w.wake();
        }
        for h in &stopped {
            h.stop();
        }
        stopped.len()
    }

    /// Ends every handler's task (each drops its work when it is next polled, which is
    /// at once), and tracks no more: the connection has ended. The deadline keeper ends too.
    pub(crate) fn abort_all(&self) {
        let (running, wake) = {
            let mut t = self.lock();
            t.closed = true;
            let wake = t.timed.as_mut().and_then(|t| {
                t.count = 0;
                t.look_again()
            });
            (std::mem::take(&mut t.by_call), wake)
        };
        for h in running.values() {
            h.abort();
        }
        if let Some(w) = wake {
            w.wake();
        }
        drop(running);
    }

    /// Has every handler whose deadline is `now` or earlier end as timed out.
    fn expire(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut t = self.lock();
            let Tracked { by_call, timed, .. } = &mut *t;
            if let Some(timed) = timed {
                while let Some((_, key)) = timed.due.pop_due(now) {
                    if let Some(h) = by_call.get(&key) {
                        expired.push(h.clone());
                    }
                }
            }
        }
        for h in expired {
            h.expire();
        }
    }

    /// The connection's deadline keeper: while some handler has a deadline, waits for the
    /// earliest on `conn`'s clock and has those whose deadline passed end as timed out.
    /// Started by whoever [`Handlers::track`] told to; returns once no handler has a deadline,
    /// or the connection has ended.
    pub(crate) async fn keep_deadlines(&self, conn: &Driven) {
        loop {
            let next = {
                let mut t = self.lock();
                let Tracked {
                    by_call,
                    timed,
                    closed,
                    ..
                } = &mut *t;
                let Some(timed) = timed else {
                    return;
                };
                timed.look_again = false;
                let next = if *closed {
                    None
                } else {
                    timed.due.first(|_, key| by_call.contains_key(&key))
                };
                timed.keeper = next.map(Some);
                match next {
                    Some(at) => at,
                    None => return,
                }
            };
            let woken = std::future::poll_fn(|cx| {
                let mut t = self.lock();
                let Some(timed) = t.timed.as_mut() else {
                    return Poll::Ready(());
                };
                if timed.look_again {
                    return Poll::Ready(());
                }
                if !timed
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    timed.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            });
            // `None`: the deadline passed; either way, what is due now ends.
            let _ = conn.until(Some(next), woken).await;
            self.expire(Instant::now());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its drops.
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pending_with_guard(
        drops: &Arc<AtomicUsize>,
    ) -> Unbounded<impl Future<Output = ()> + Send + use<>> {
        let guard = Guard(drops.clone());
        Unbounded(Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }))
    }

    /// Work that never finishes and counts how it ended.
    struct Counted {
        _guard: Guard,
        expired: Arc<AtomicUsize>,
    }
    impl Work for Counted {
        fn poll_work(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn expire(self) {
            self.expired.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Drops and expiries counted, and a maker of [`Counted`] work that counts into them.
    fn counters() -> (Arc<AtomicUsize>, Arc<AtomicUsize>, impl Fn() -> Counted) {
        let (drops, expired) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (d, e) = (drops.clone(), expired.clone());
        let counted = move || Counted {
            _guard: Guard(d.clone()),
            expired: e.clone(),
        };
        (drops, expired, counted)
    }

    /// As if the keeper waited for `at`, with a waker.
    fn keeper_waits(h: &Handlers, at: Option<Instant>) {
        let mut t = h.lock();
        let timed = t.timed.as_mut().unwrap();
        timed.keeper = Some(at);
        timed.look_again = false;
        timed.waker = Some(futures_util::task::noop_waker());
    }

    /// Whether the keeper was told to look again (and its waker taken, to be woken).
    fn told_to_look_again(h: &Handlers) -> bool {
        let t = h.lock();
        let timed = t.timed.as_ref().unwrap();
        assert_eq!(timed.look_again, timed.waker.is_none(), "woken when told");
        timed.look_again
    }

    fn tracked_id(t: Tracking) -> HandlerId {
        match t {
            Tracking::Tracked { id, .. } => id,
            Tracking::Closed => panic!("closed"),
        }
    }

    #[test]
    fn handlers_are_stopped_by_call_at_once_and_none_is_tracked_after_the_end() {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Handlers::default();
        let (a, _task_a) = RunningHandler::new(pending_with_guard(&drops));
        let (b, _task_b) = RunningHandler::new(pending_with_guard(&drops));
        let (c, _task_c) = RunningHandler::new(pending_with_guard(&drops));
        let ida = tracked_id(h.track(1, a, None));
        tracked_id(h.track(1, b, None));
        tracked_id(h.track(2, c, None));
        h.untrack(1, ida);
        assert_eq!(h.stop_call(1), 1, "the finished one is gone");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "stopped on this thread, at once"
        );
        assert_eq!(h.stop_call(1), 0, "once");
        assert_eq!(h.stop_call(3), 0, "no such call");
        h.abort_all();
        assert_eq!(h.stop_call(2), 0, "aborted with the connection");
        let (d, _task_d) = RunningHandler::new(pending_with_guard(&drops));
        assert_eq!(
            h.track(4, d, None),
            Tracking::Closed,
            "the connection has ended"
        );
    }

    #[test]
    fn a_stopped_handler_ends_its_task() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (handler, task) = RunningHandler::new(pending_with_guard(&drops));
        let mut task = Box::pin(task);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(task.as_mut().poll(&mut cx).is_pending());
        handler.stop();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(task.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn an_expired_handler_ends_as_timed_out_in_its_task_once_and_not_after_a_stop() {
        let (drops, expired, counted) = counters();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);

        let (handler, task) = RunningHandler::new(counted());
        let mut task = Box::pin(task);
        assert!(task.as_mut().poll(&mut cx).is_pending());
        handler.expire();
        assert_eq!(expired.load(Ordering::SeqCst), 0, "in the task, not here");
        assert!(task.as_mut().poll(&mut cx).is_ready());
        assert_eq!(expired.load(Ordering::SeqCst), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "and dropped");
        handler.expire();
        handler.stop();
        assert_eq!(expired.load(Ordering::SeqCst), 1, "once");

        // Stopped (a cancel) first: the deadline passing after says nothing more.
        let (handler, task) = RunningHandler::new(counted());
        let mut task = Box::pin(task);
        assert!(task.as_mut().poll(&mut cx).is_pending());
        handler.stop();
        handler.expire();
        assert!(task.as_mut().poll(&mut cx).is_ready());
        assert_eq!(
            expired.load(Ordering::SeqCst),
            1,
            "a stopped handler is not timed out"
        );
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn due_handlers_expire_and_the_keeper_is_started_once_and_told_of_earlier_deadlines() {
        let (_drops, expired, counted) = counters();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let h = Handlers::default();

        let (a, task_a) = RunningHandler::new(counted());
        let (b, task_b) = RunningHandler::new(counted());
        let (c, task_c) = RunningHandler::new(counted());
        let (mut task_a, mut task_b, mut task_c) =
            (Box::pin(task_a), Box::pin(task_b), Box::pin(task_c));
        assert!(
            matches!(
                h.track(1, b.clone(), None),
                Tracking::Tracked { keeper: false, .. }
            ),
            "no deadline, no keeper"
        );
        assert!(
            matches!(
                h.track(2, a.clone(), Some(ms(50))),
                Tracking::Tracked { keeper: true, .. }
            ),
            "the first deadline starts the keeper"
        );
        // The keeper waits for the earliest deadline, 50 ms.
        keeper_waits(&h, Some(ms(50)));
        assert!(matches!(
            h.track(3, c.clone(), Some(ms(80))),
            Tracking::Tracked { keeper: false, .. }
        ));
        assert!(!told_to_look_again(&h), "a later deadline: nothing to tell");
        let (d, _task_d) = RunningHandler::new(counted());
        let id_d = tracked_id(h.track(4, d, Some(ms(10))));
        assert!(
            told_to_look_again(&h),
            "an earlier one: the keeper looks again"
        );
        h.untrack(4, id_d);

        h.expire(ms(49));
        for t in [&mut task_a, &mut task_b, &mut task_c] {
            assert!(
                t.as_mut().poll(&mut cx).is_pending(),
                "nothing due at 49 ms"
            );
        }
        h.expire(ms(50));
        assert!(task_a.as_mut().poll(&mut cx).is_ready(), "due at 50 ms");
        assert!(task_b.as_mut().poll(&mut cx).is_pending(), "no deadline");
        assert!(task_c.as_mut().poll(&mut cx).is_pending(), "due at 80 ms");
        assert_eq!(expired.load(Ordering::SeqCst), 1);
        h.expire(ms(1_000));
        assert!(task_c.as_mut().poll(&mut cx).is_ready());
        assert!(task_b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            expired.load(Ordering::SeqCst),
            2,
            "the untracked one is not expired"
        );
    }

    #[test]
    fn the_keeper_is_woken_to_end_once_no_handler_has_a_deadline() {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Handlers::default();
        let at = Some(Instant::now() + Duration::from_secs(60));
        let (a, _task_a) = RunningHandler::new(pending_with_guard(&drops));
        let (b, _task_b) = RunningHandler::new(pending_with_guard(&drops));
        let (c, _task_c) = RunningHandler::new(pending_with_guard(&drops));
        let id_a = tracked_id(h.track(1, a, at));
        tracked_id(h.track(2, b, at));
        tracked_id(h.track(3, c, None));
        keeper_waits(&h, at);
        h.untrack(1, id_a);
        assert!(!told_to_look_again(&h), "one still has a deadline");
        assert_eq!(h.stop_call(2), 1);
        assert!(told_to_look_again(&h), "none has: the keeper ends");
        assert_eq!(h.lock().timed.as_ref().unwrap().keeper, Some(None));
    }

    #[test]
    fn a_handler_id_in_use_is_not_given_again_after_the_count_wraps() {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Handlers::default();
        h.lock().next = u32::MAX >> 1;
        let (a, _task_a) = RunningHandler::new(pending_with_guard(&drops));
        let (b, _task_b) = RunningHandler::new(pending_with_guard(&drops));
        let first = tracked_id(h.track(1, a, None));
        assert_eq!(first, HandlerId(0), "wrapped");
        // Around again: the next count to give is the one in use.
        h.lock().next = u32::MAX >> 1;
        let second = tracked_id(h.track(1, b, None));
        assert_ne!(first, second);
        assert_eq!(h.stop_call(1), 2, "both tracked");
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }
}
