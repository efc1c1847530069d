//! The handlers a server runs in tasks of their own (those that did not finish on their first
//! poll), by sequence id: what the end of the connection stops, and what a `cancel` for their
//! call stops at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::future::{AbortHandle, Abortable};
use rustc_hash::FxHashMap;

type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One handler running in a task: its future, which [`RunningHandler::stop`] can take and
/// drop from any thread, and the handle that ends the task.
pub(crate) struct RunningHandler {
    work: Mutex<Option<HandlerFuture>>,
    abort: AbortHandle,
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
        let (abort, registration) = AbortHandle::new_pair();
        let handler = Arc::new(RunningHandler {
            work: Mutex::new(Some(Box::pin(work))),
            abort,
        });
        let polled = handler.clone();
        let task = std::future::poll_fn(move |cx| {
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
        let task = Abortable::new(task, registration);
        let owner = handler.clone();
        (handler, async move {
            let _ = task.await;
            // Aborted: the future is dropped here, in the task, never by whoever drops the
            // last other reference (which may hold the connection's lock).
            drop(owner.take());
        })
    }

    /// Drops the handler's future now, on this thread (waiting for a poll in progress on
    /// another to end), and ends its task. Must not be called with the connection's lock
    /// held: the future's `Drop` may use the connection.
    pub(crate) fn stop(&self) {
        let work = self.take();
        self.abort.abort();
        drop(work);
    }

    fn take(&self) -> Option<HandlerFuture> {
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Running handlers of one connection.
#[derive(Debug, Default)]
pub(crate) struct Handlers {
    running: FxHashMap<(i32, u64), Arc<RunningHandler>>,
    next: u64,
    /// Handlers cancelled by their caller, for the driver to stop once it has released the
    /// connection's lock.
    cancelled: Vec<Arc<RunningHandler>>,
}

impl Handlers {
    /// Registers the handler of call `seqid`; returns its id, for [`Handlers::untrack`].
    pub(crate) fn track(&mut self, seqid: i32, handler: Arc<RunningHandler>) -> u64 {
        self.next += 1;
        self.running.insert((seqid, self.next), handler);
        self.next
    }

    /// The handler `id` of `seqid` finished.
    pub(crate) fn untrack(&mut self, seqid: i32, id: u64) {
        self.running.remove(&(seqid, id));
    }

    /// The caller cancelled call `seqid`: its handlers are set aside for
    /// [`Handlers::take_cancelled`]. Returns how many there were.
    pub(crate) fn cancel(&mut self, seqid: i32) -> usize {
        let before = self.cancelled.len();
        let cancelled = &mut self.cancelled;
        self.running.retain(|&(s, _), h| {
            if s == seqid {
                cancelled.push(h.clone());
                false
            } else {
                true
            }
        });
        self.cancelled.len() - before
    }

    /// The handlers cancelled since the last call, to [`RunningHandler::stop`].
    pub(crate) fn take_cancelled(&mut self) -> Vec<Arc<RunningHandler>> {
        std::mem::take(&mut self.cancelled)
    }

    /// Ends every handler's task (each drops its future when it is next polled, which is
    /// at once).
    pub(crate) fn abort_all(&mut self) {
        for (_, h) in self.running.drain() {
            h.abort.abort();
        }
        for h in self.cancelled.drain(..) {
            h.abort.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
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
    fn handlers_are_cancelled_by_call_and_stopped_at_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut h = Handlers::default();
        let (a, _task_a) = RunningHandler::new(pending_with_guard(&drops));
        let (b, _task_b) = RunningHandler::new(pending_with_guard(&drops));
        let (c, _task_c) = RunningHandler::new(pending_with_guard(&drops));
        let ida = h.track(1, a);
        h.track(1, b);
        h.track(2, c);
        h.untrack(1, ida);
        assert_eq!(h.cancel(1), 1, "the finished one is gone");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "nothing stops under the lock"
        );
        let (d, _task_d) = RunningHandler::new(pending_with_guard(&drops));
        h.track(3, d);
        assert_eq!(h.cancel(3), 1, "this call's, not those set aside before");
        let cancelled = h.take_cancelled();
        assert_eq!(cancelled.len(), 2);
        cancelled[0].stop();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "stopped on this thread, at once"
        );
        cancelled[1].stop();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert!(h.take_cancelled().is_empty());
        assert_eq!(h.cancel(2), 1);
        h.abort_all();
        assert_eq!(h.cancel(2), 0);
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
