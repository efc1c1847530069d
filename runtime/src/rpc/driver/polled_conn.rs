//! [`PolledConn`]: a [`Conn`] driven by one thread with no async runtime, for the
//! [`BlockingServer`](crate::BlockingServer).
//!
//! The connection's thread is its whole runtime: it runs the connection's tasks (handlers that
//! wait, stream producers, sink consumers) when they are woken, writes what they queued, reads
//! and dispatches calls, and sleeps in one `poll(2)` on the socket and an eventfd (which a task
//! woken from another thread writes to), until the nearest timer. Tasks are polled on this
//! thread only; their wakers may be used from any.
//!
//! The same contract with the core as the tokio driver: [`Conn::poll_transmit`] says the queue
//! needs writing (here: by the loop before it sleeps, or at once if the frame was queued from
//! another thread), the backlog bounds stream producers ([`PolledConn::room_for_item`]), and
//! the core's failure ends everything.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Instant;

use crate::rpc::conn::{Conn, Role};
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;
use crate::transport::error::TransportError;

/// A task: a future the loop polls to its end.
struct Task(Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Task")
    }
}

/// Wakes the connection's thread out of its `poll(2)`: an eventfd, written once per sleep.
#[derive(Debug)]
pub(crate) struct LoopWake {
    fd: OwnedFd,
    /// Written since the loop last cleared it: later wakes need no syscall.
    pending: AtomicBool,
}

impl LoopWake {
    pub(crate) fn new() -> std::io::Result<Self> {
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(LoopWake {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    /// Wakes the loop (at once if it sleeps, or keeps it from sleeping).
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // Cannot fail but for an overflow of the counter, which wakes the loop anyway.
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }

    /// The loop is about to look at what woke it: wakes from now on write again.
    pub(crate) fn clear(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.fd, &mut buf);
        }
    }

    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The tasks woken since the loop last ran them, by slot and generation.
#[derive(Debug)]
struct ReadyQueue {
    ids: Mutex<VecDeque<(usize, u64)>>,
    /// A task was woken or started since the loop last looked: the loop's common case (no
    /// task to run) costs one atomic swap, no lock.
    work: AtomicBool,
    wake: Arc<LoopWake>,
}

impl ReadyQueue {
    fn push(&self, id: (usize, u64)) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(id);
        self.work.store(true, Ordering::Release);
        self.wake.wake();
    }
}

/// The waker of one task.
#[derive(Debug)]
struct TaskWaker {
    id: (usize, u64),
    /// In the ready queue already.
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

/// A waker that only wakes the loop (for a first poll made outside any task).
#[derive(Debug)]
struct LoopWaker(Arc<LoopWake>);

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }
}

/// What tasks and wakers share with the loop, behind one lock.
#[derive(Debug, Default)]
struct Shared {
    /// Tasks started since the loop last took them.
    spawned: Vec<Task>,
    /// Timers by deadline (and a number that tells timers of one instant apart).
    timers: BTreeMap<(Instant, u64), Waker>,
    /// Producers waiting for room in the backlog.
    drained: Vec<Waker>,
}

/// One connection driven by its own thread; see the module docs.
#[derive(Debug)]
pub(crate) struct PolledConn {
    socket: UnixStream,
    conn: Mutex<Conn>,
    wake: Arc<LoopWake>,
    ready: Arc<ReadyQueue>,
    shared: Mutex<Shared>,
    /// How many timers are set: the loop reads the clock and takes the lock only if any.
    timers: AtomicUsize,
    next_timer: AtomicU64,
    /// The thread that runs the loop: frames queued there are written before it sleeps.
    thread: OnceLock<ThreadId>,
    on_end: OnceLock<OnEnd>,
    pub(crate) max_backlog: (usize, usize),
}

/// What [`PolledConn::on_end`] calls.
struct OnEnd(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for OnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnEnd")
    }
}

impl PolledConn {
    /// A connection over `socket` (made non-blocking here).
    ///
    /// # Errors
    ///
    /// The socket could not be made non-blocking, or no eventfd could be made.
    pub(crate) fn new(socket: UnixStream, settings: &Settings) -> std::io::Result<Arc<Self>> {
        socket.set_nonblocking(true)?;
        let wake = Arc::new(LoopWake::new()?);
        Ok(Arc::new(PolledConn {
            socket,
            conn: Mutex::new(Conn::new(Role::Server, settings)),
            ready: Arc::new(ReadyQueue {
                ids: Mutex::new(VecDeque::new()),
                work: AtomicBool::new(false),
                wake: wake.clone(),
            }),
            timers: AtomicUsize::new(0),
            wake,
            shared: Mutex::new(Shared::default()),
            next_timer: AtomicU64::new(0),
            thread: OnceLock::new(),
            on_end: OnceLock::new(),
            max_backlog: (settings.max_backlog_bytes, settings.max_backlog_fds),
        }))
    }

    pub(crate) fn socket(&self) -> &UnixStream {
        &self.socket
    }

    pub(crate) fn socket_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub(crate) fn loop_wake(&self) -> &Arc<LoopWake> {
        &self.wake
    }

    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the calling thread is the connection's.
    fn on_loop_thread(&self) -> bool {
        self.thread
            .get()
            .is_some_and(|t| *t == std::thread::current().id())
    }

    /// Runs `f` on the connection. A frame it queues is written by the loop before it sleeps;
    /// from another thread, the loop is woken for it.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> R {
        let mut conn = self.lock();
        let r = f(&mut conn);
        let write = conn.poll_transmit();
        drop(conn);
        if write && !self.on_loop_thread() {
            self.wake.wake();
        }
        r
    }

    /// Starts `task` on the connection's thread.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.shared().spawned.push(Task(Box::pin(task)));
        self.ready.work.store(true, Ordering::Release);
        if !self.on_loop_thread() {
            self.wake.wake();
        }
    }

    /// Has `f` called once the connection ends ([`PolledConn::fail`]); at once if it has.
    pub(crate) fn on_end(&self, f: Box<dyn Fn() + Send + Sync>) {
        if self.on_end.set(OnEnd(f)).is_ok() && self.lock().dead().is_some() {
            self.ended();
        }
    }

    fn ended(&self) {
        if let Some(OnEnd(f)) = self.on_end.get() {
            f();
        }
    }

    /// Ends the connection with `why` (see [`Conn::fail`]): everything waiting on it is
    /// woken, the socket is shut down, whoever asked is told ([`PolledConn::on_end`]).
    pub(crate) fn fail(&self, why: ConnectionError) {
        let mut wake = Vec::new();
        self.lock().fail(why, &mut wake);
        wake.extend(std::mem::take(&mut self.shared().drained));
        for w in wake {
            w.wake();
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        self.ended();
        self.wake.wake();
    }

    /// Why the connection ended, once it has.
    pub(crate) fn dead(&self) -> Option<ConnectionError> {
        self.lock().dead().cloned()
    }

    /// Waits until the backlog has room for one more stream item (or the connection ended).
    /// A peer that leaves the backlog unread for the stall timeout fails the connection (the
    /// loop watches that), which ends this wait.
    ///
    /// # Errors
    ///
    /// The connection's failure.
    pub(crate) async fn room_for_item(&self) -> Result<(), ConnectionError> {
        let (max_bytes, max_fds) = self.max_backlog;
        std::future::poll_fn(|cx| {
            let conn = self.lock();
            if let Some(e) = conn.dead() {
                return Poll::Ready(Err(e.clone()));
            }
            let (bytes, fds) = conn.backlog();
            if bytes <= max_bytes && fds <= max_fds {
                return Poll::Ready(Ok(()));
            }
            // Registered before the lock goes: the loop wakes `drained` after writing, which
            // it does holding the connection's lock.
            self.shared().drained.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// A future that completes at `at`, timed by the loop.
    pub(crate) fn sleep_until(self: &Arc<Self>, at: Instant) -> PolledSleep {
        PolledSleep {
            conn: self.clone(),
            at,
            key: None,
        }
    }

    /// Writes what is queued, without blocking. Returns whether anything left the queue;
    /// wakes producers waiting for room if so.
    ///
    /// # Errors
    ///
    /// Writing failed.
    pub(crate) fn flush(&self) -> Result<bool, ConnectionError> {
        let mut conn = self.lock();
        if conn.dead().is_some() || conn.send_queue().is_empty() {
            return Ok(false);
        }
        let before = conn.send_queue().written();
        let result = conn.send_queue().write_to(self.socket.as_fd());
        let progressed = conn.send_queue().written() > before;
        if let Ok(true) = result {
            conn.writer_idle();
        }
        drop(conn);
        if progressed {
            for w in std::mem::take(&mut self.shared().drained) {
                w.wake();
            }
        }
        result
            .map(|_| progressed)
            .map_err(|e| ConnectionError::new(TransportError::Io(e)))
    }

    /// Whether frames wait to be written.
    pub(crate) fn wants_write(&self) -> bool {
        !self.lock().send_queue().is_empty()
    }

    /// The earliest timer, if any.
    fn next_timer(&self) -> Option<Instant> {
        if self.timers.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.shared()
            .timers
            .first_key_value()
            .map(|((at, _), _)| *at)
    }

    /// Wakes every timer due by now (the clock is read only if there are timers).
    fn fire_timers(&self) {
        if self.timers.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut shared = self.shared();
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = shared.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        self.timers.store(shared.timers.len(), Ordering::Release);
        drop(shared);
        for w in due {
            w.wake();
        }
    }
}

/// What [`PolledConn::sleep`] saw of the socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    /// A read would not block (data, the end, or an error).
    pub(crate) readable: bool,
    /// The peer hung up entirely.
    pub(crate) hung_up: bool,
}

/// [`PolledConn::sleep_until`].
#[derive(Debug)]
pub(crate) struct PolledSleep {
    conn: Arc<PolledConn>,
    at: Instant,
    /// Its entry among the loop's timers, once registered.
    key: Option<(Instant, u64)>,
}

impl Future for PolledSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let key = (
                    self.at,
                    self.conn.next_timer.fetch_add(1, Ordering::Relaxed),
                );
                self.key = Some(key);
                key
            }
        };
        let mut shared = self.conn.shared();
        shared.timers.insert(key, cx.waker().clone());
        self.conn
            .timers
            .store(shared.timers.len(), Ordering::Release);
        Poll::Pending
    }
}

impl Drop for PolledSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut shared = self.conn.shared();
            shared.timers.remove(&key);
            self.conn
                .timers
                .store(shared.timers.len(), Ordering::Release);
        }
    }
}

/// The tasks of one connection, owned by its loop.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    next_gen: u64,
    /// The ready queue's contents, taken out to be run (kept to reuse its allocation).
    running: Vec<(usize, u64)>,
}

#[derive(Debug)]
struct Slot {
    task: Task,
    generation: u64,
    waker: Arc<TaskWaker>,
}

impl Tasks {
    /// How many tasks run.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, conn: &PolledConn, task: Task) -> (usize, u64) {
        self.next_gen += 1;
        let generation = self.next_gen;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let waker = Arc::new(TaskWaker {
            id: (index, generation),
            queued: AtomicBool::new(false),
            ready: conn.ready.clone(),
        });
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(Slot {
                task,
                generation,
                waker,
            });
        }
        (index, generation)
    }

    /// Polls the task in `index` (of generation `generation`) once; drops it if it finished.
    fn poll(&mut self, index: usize, generation: u64) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        slot.waker.queued.store(false, Ordering::Release);
        let waker = Waker::from(slot.waker.clone());
        let mut cx = Context::from_waker(&waker);
        if slot.task.0.as_mut().poll(&mut cx).is_ready() {
            if let Some(s) = self.slots.get_mut(index) {
                *s = None;
            }
            self.free.push(index);
        }
    }

    /// A waker that wakes only the loop: for first polls made outside any task (one per
    /// connection, not one per call).
    pub(crate) fn loop_waker(conn: &PolledConn) -> Waker {
        Waker::from(Arc::new(LoopWaker(conn.wake.clone())))
    }

    /// Runs `first`, the first poll of a call outside any task (`cx` wakes the loop): if it
    /// waits, it becomes a task (polled again at once, with its own waker). Returns whether
    /// it finished.
    pub(crate) fn run_inline(
        &mut self,
        conn: &PolledConn,
        mut first: Pin<Box<dyn Future<Output = ()> + Send>>,
        cx: &mut Context<'_>,
    ) -> Option<(usize, u64)> {
        if first.as_mut().poll(cx).is_ready() {
            return None;
        }
        let id = self.insert(conn, Task(first));
        self.poll(id.0, id.1);
        self.is_running(id).then_some(id)
    }

    /// Whether task `id` still runs.
    pub(crate) fn is_running(&self, (index, generation): (usize, u64)) -> bool {
        matches!(self.slots.get(index), Some(Some(s)) if s.generation == generation)
    }

    /// Runs every task woken or started since the last run (a task woken while it runs is run
    /// again in the next round), and every timer due. Returns whether any task ran.
    pub(crate) fn run(&mut self, conn: &PolledConn) -> bool {
        conn.wake.clear();
        conn.fire_timers();
        let mut ran = false;
        loop {
            if !conn.ready.work.swap(false, Ordering::AcqRel) {
                return ran;
            }
            let spawned = {
                let mut shared = conn.shared();
                if shared.spawned.is_empty() {
                    Vec::new()
                } else {
                    std::mem::take(&mut shared.spawned)
                }
            };
            for task in spawned {
                let (i, g) = self.insert(conn, task);
                self.poll(i, g);
                ran = true;
            }
            let mut running = std::mem::take(&mut self.running);
            running.extend(
                conn.ready
                    .ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..),
            );
            if running.is_empty() {
                self.running = running;
                continue;
            }
            for &(i, g) in &running {
                self.poll(i, g);
                ran = true;
            }
            running.clear();
            self.running = running;
        }
    }

    /// Whether a task is woken or started and not yet run.
    pub(crate) fn has_work(&self, conn: &PolledConn) -> bool {
        conn.ready.work.load(Ordering::Acquire)
    }

    /// Drops every task (their futures, and what they hold, on this thread).
    pub(crate) fn clear(&mut self, conn: &PolledConn) {
        self.slots.clear();
        self.free.clear();
        conn.shared().spawned.clear();
    }
}

impl PolledConn {
    /// Claims the calling thread as the connection's (its loop runs here).
    pub(crate) fn enter(&self) {
        let _ = self.thread.set(std::thread::current().id());
    }

    /// Sleeps until the socket is readable (if `read`), writable (if frames wait), the loop
    /// is woken, or `until` passes. Returns what the socket's readiness says.
    ///
    /// # Errors
    ///
    /// `poll(2)` failed other than by a signal.
    pub(crate) fn sleep(&self, read: bool, until: Option<Instant>) -> std::io::Result<Ready> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let mut events = PollFlags::empty();
        if read {
            events |= PollFlags::IN;
        }
        if self.wants_write() {
            events |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::new(&self.socket, events),
            PollFd::new(&self.wake.fd, PollFlags::IN),
        ];
        let timeout = until.map(|at| {
            let d = at.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
                // Rounded up to the next millisecond's worth of nanoseconds is not needed: the
                // kernel sleeps at least this long.
                tv_nsec: d.subsec_nanos().into(),
            }
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let [sock, _] = &fds;
        Ok(Ready {
            readable: sock
                .revents()
                .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
            hung_up: sock.revents().contains(PollFlags::HUP),
        })
    }

    /// The earliest of the loop's timers.
    pub(crate) fn timer(&self) -> Option<Instant> {
        self.next_timer()
    }
}
