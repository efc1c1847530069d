//! The handlers a server runs in tasks of their own (those that did not finish on their first
//! poll), by sequence id: what the end of the connection stops, and what a `cancel` for their
//! call stops at once. The connection core only reports cancelled calls
//! ([`Conn::take_cancelled_calls`](crate::rpc::conn::Conn::take_cancelled_calls)); the
//! futures and their abort handles live here, behind a lock of their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use rustc_hash::FxHashMap;

type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One handler running in a task: its future, which [`RunningHandler::stop`] can take and
/// drop from any thread, and what ends the task (a flag and the task's waker, in this one
/// allocation: an `AbortHandle` would be a second, 64 bytes more per waiting call).
pub(crate) struct RunningHandler {
    work: Mutex<Option<HandlerFuture>>,
    /// Set to end the task at its next poll.
    ended: AtomicBool,
    /// The task's waker, to have that poll happen.
    task: AtomicWaker,
}

impl std::fmt::Debug for RunningHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHandler").finish_non_exhaustive()
    }
}

impl RunningHandler {
    /// The handler running `work`, and the future the task that runs it polls.
    pub(crate) fn new(
        work: impl Future<Output = ()> + Send + 'static,
    ) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let handler = Arc::new(RunningHandler {
            work: Mutex::new(Some(Box::pin(work))),
            ended: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        let polled = handler.clone();
        let task = std::future::poll_fn(move |cx| {
            // Registered before the flag is read: an `abort` after the read wakes this task.
            polled.task.register(cx.waker());
            if polled.ended.load(Ordering::Acquire) {
                // Aborted: the future is dropped here, in the task, never by whoever drops
                // the last other reference (which may hold the connection's lock).
                drop(polled.take());
                return Poll::Ready(());
            }
            let mut work = polled.work.lock().unwrap_or_else(|p| p.into_inner());
            let Some(fut) = work.as_mut() else {
                return Poll::Ready(());
            };
            if fut.as_mut().poll(cx).is_ready() {
                *work = None;
                return Poll::Ready(());
            }
            Poll::Pending
        });
        (handler, task)
    }

    /// Drops the handler's future now, on this thread (waiting for a poll in progress on
    /// another to end), and ends its task. Must not be called with the connection's lock
    /// held, or the handlers' lock: the future's `Drop` may use the connection.
    pub(crate) fn stop(&self) {
        let work = self.take();
        self.abort();
        drop(work);
    }

    /// Ends the task: it drops the future (if still there) at its next poll, which this asks
    /// for.
    fn abort(&self) {
        self.ended.store(true, Ordering::Release);
        self.task.wake();
    }

    fn take(&self) -> Option<HandlerFuture> {
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Running handlers of one connection.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    inner: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    by_call: FxHashMap<(i32, u64), Arc<RunningHandler>>,
    next: u64,
    /// The connection ended: nothing more is tracked ([`Handlers::abort_all`]).
    closed: bool,
}

impl Handlers {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the handler of call `seqid`; returns its id, for [`Handlers::untrack`].
    /// `None` once the connection has ended: the caller stops the handler itself.
    pub(crate) fn track(&self, seqid: i32, handler: Arc<RunningHandler>) -> Option<u64> {
        let mut r = self.lock();
        if r.closed {
            return None;
        }
        r.next += 1;
        let id = r.next;
        r.by_call.insert((seqid, id), handler);
        Some(id)
    }

    /// The handler `id` of `seqid` finished.
    pub(crate) fn untrack(&self, seqid: i32, id: u64) {
        self.lock().by_call.remove(&(seqid, id));
    }

    /// The caller cancelled call `seqid`: its handlers are dropped now, on this thread,
    /// without any lock held (their futures' `Drop` may use the connection). Returns how many
    /// there were.
    pub(crate) fn stop_call(&self, seqid: i32) -> usize {
        let mut stopped = Vec::new();
        self.lock().by_call.retain(|&(s, _), h| {
            if s == seqid {
                stopped.push(h.clone());
                false
            } else {
                true
            }
        });
        for h in &stopped {
            h.stop();
        }
        stopped.len()
    }

    /// Ends every handler's task (each drops its future when it is next polled, which is
    /// at once), and tracks no more: the connection has ended.
    pub(crate) fn abort_all(&self) {
        let mut r = self.lock();
        r.closed = true;
        for (_, h) in r.by_call.drain() {
            h.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts its drops.
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pending_with_guard(drops: &Arc<AtomicUsize>) -> impl Future<Output = ()> + Send + use<> {
        let guard = Guard(drops.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }
    }

    #[test]
    fn handlers_are_stopped_by_call_at_once_and_none_is_tracked_after_the_end() {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Handlers::default();
        let (a, _task_a) = RunningHandler::new(pending_with_guard(&drops));
        let (b, _task_b) = RunningHandler::new(pending_with_guard(&drops));
        let (c, _task_c) = RunningHandler::new(pending_with_guard(&drops));
        let ida = h.track(1, a).unwrap();
        h.track(1, b).unwrap();
        h.track(2, c).unwrap();
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
        assert!(h.track(4, d).is_none(), "the connection has ended");
    }

    #[test]
    fn a_stopped_handler_ends_its_task() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (handler, task) = RunningHandler::new(pending_with_guard(&drops));
        let mut task = Box::pin(task);
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(task.as_mut().poll(&mut cx).is_pending());
        handler.stop();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(task.as_mut().poll(&mut cx).is_ready());
    }
}
