//! [`TokioConn`]: a [`Conn`] driven by tokio, shared by the tasks of one connection (its
//! reader, its writer, calls, handlers, stream producers and consumers).
//!
//! Frames are queued by any task and written by one writer task, so everything queued while
//! it was asleep leaves in one `sendmsg` with all its fds. The server's reader writes the
//! replies of a batch itself, without waking the writer (see [`TokioConn::flush_inline`]).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::time::Duration;

use tokio::sync::Notify;

use super::alarm::Alarm;
use super::socket::Socket;
use crate::rpc::conn::{Conn, Received, Role};
use crate::rpc::deadline::Deadline;
use crate::rpc::error::{ConnectionError, RpcError};
use crate::settings::Settings;
use crate::transport::RecvQueue;
use crate::transport::error::{FdStreamError, TransportError};

/// One connection driven by tokio.
#[derive(Debug)]
pub(crate) struct TokioConn {
    socket: Socket,
    conn: Mutex<Conn>,
    /// Wakes the writer task.
    write: Notify,
    /// The writer task, started when the first frame is queued for it: an idle connection
    /// (most of a busy daemon's) costs no task (measured with heaptrack: 384 bytes of task
    /// per connection). Set once: to the task, or to `None` once the owner stopped it.
    writer: OnceLock<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// This connection, for the writer task to hold.
    this: Weak<TokioConn>,
    /// Where the writer task runs: the runtime the connection was made in.
    runtime: tokio::runtime::Handle,
    /// The writer made progress: the backlog shrank, or the queue emptied, or writing failed.
    drained: Notify,
    /// Wakes the reader to look again: the client's at its timer
    /// ([`Conn::take_timer_moved`]), the server's at its stop signal
    /// ([`TokioConn::tell_reader`]).
    rearm: Rearm,
    /// Called once the connection ends (the server stops its handlers' tasks then).
    on_end: OnceLock<OnEnd>,
    /// How long producers wait for the peer to take frames before it counts as not reading.
    stall: Duration,
    max_backlog: (usize, usize),
    /// A client's: writing found the peer gone. The reader delivers what the peer sent before
    /// it went (a stream's `abort`, a reply), then fails the connection with this.
    write_broken: OnceLock<ConnectionError>,
    /// The connection's role.
    role: Role,
}

impl TokioConn {
    /// A connection over `socket`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub(crate) fn new(socket: Socket, role: Role, settings: &Settings) -> Arc<Self> {
        Arc::new_cyclic(|this| TokioConn {
            socket,
            conn: Mutex::new(Conn::new(role, settings)),
            write: Notify::new(),
            writer: OnceLock::new(),
            this: this.clone(),
            runtime: tokio::runtime::Handle::current(),
            drained: Notify::new(),
            rearm: Rearm::default(),
            on_end: OnceLock::new(),
            stall: settings.stall_timeout,
            max_backlog: (settings.max_backlog_bytes, settings.max_backlog_fds),
            write_broken: OnceLock::new(),
            role,
        })
    }

    /// Wakes the reader to look again (the server's reader: at its stop signal). A flag and
    /// the reader's waker: what a server's idle connection waits on for the server's stop,
    /// where a `watch::Receiver::changed` future would be 120 bytes in every one.
    pub(crate) fn tell_reader(&self) {
        self.rearm.set();
    }

    /// Ready once [`TokioConn::tell_reader`] was called since the last `Ready`; registers
    /// `cx`'s waker when pending.
    pub(crate) fn poll_told(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.rearm.poll(cx)
    }

    /// The socket, for the reader.
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while the lock was held cannot leave the state half-changed in a way that
        // breaks the protocol (every change is one push or one map update): recover it.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection, then does what the connection asks
    /// ([`Conn::poll_transmit`], [`Conn::take_timer_moved`]) once the lock is released.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> R {
        let mut conn = self.lock();
        let r = f(&mut conn);
        let wake_writer = conn.poll_transmit();
        let timer_moved = conn.take_timer_moved();
        drop(conn);
        if wake_writer {
            self.wake_writer();
        }
        if timer_moved {
            self.rearm.set();
        }
        r
    }

    /// Wakes the writer task, starting it first if this is the first time it is needed.
    fn wake_writer(&self) {
        if self.writer.get().is_none() {
            self.start_writer();
        }
        // The permit waits for the task if it has not polled yet.
        self.write.notify_one();
    }

    #[cold]
    fn start_writer(&self) {
        self.writer.get_or_init(|| {
            Mutex::new(self.this.upgrade().map(|conn| {
                self.runtime.spawn(async move {
                    let err = conn.run_writer().await;
                    // Unless the reader ends the connection itself (the peer is gone: see
                    // `write_failed`).
                    let reader_ends = conn.write_broken.get().is_some();
                    if !reader_ends {
                        conn.fail(err);
                    }
                })
            }))
        });
    }

    /// Stops the writer task (if it started) and keeps it from starting: for the owner of
    /// the connection, when it ends. The task holds the connection; this lets it go.
    pub(crate) fn stop_writer(&self) {
        let writer = self.writer.get_or_init(|| Mutex::new(None));
        if let Some(task) = writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// From now until [`TokioConn::flush_inline`] or [`TokioConn::end_deferred`], frames
    /// queued do not wake the writer: the caller (the server's reader, dispatching a batch of
    /// calls) writes them itself ([`Conn::defer_transmit`]).
    pub(crate) fn defer_flush(&self) {
        self.lock().defer_transmit();
    }

    /// Runs `f` with a list for the wakers of whatever `f` changes; wakes them (and the
    /// writer) once the lock is released.
    pub(crate) fn with_wakers<R>(
        &self,
        wakers: &mut Vec<Waker>,
        f: impl FnOnce(&mut Conn, &mut Vec<Waker>) -> R,
    ) -> R {
        let r = self.with(|conn| f(conn, wakers));
        for w in wakers.drain(..) {
            w.wake();
        }
        r
    }

    /// Has `f` called when the connection ends ([`TokioConn::fail`]), once; at once if it has
    /// ended already. Set once: later calls are ignored.
    pub(crate) fn on_end(&self, f: Box<dyn Fn() + Send + Sync>) {
        if self.on_end.set(OnEnd(f)).is_ok() && self.dead().is_some() {
            self.ended();
        }
    }

    fn ended(&self) {
        if let Some(OnEnd(f)) = self.on_end.get() {
            f();
        }
    }

    /// Ends the connection with `why` (see [`Conn::fail`]) and shuts the socket down, so the
    /// reader and the peer see the end at once; then whoever asked ([`TokioConn::on_end`]) is
    /// told.
    pub(crate) fn fail(&self, why: ConnectionError) {
        self.with_wakers(&mut Vec::new(), |conn, wake| conn.fail(why, wake));
        self.ended();
        self.drained.notify_waiters();
        let _ = rustix::net::shutdown(self.socket.as_fd(), rustix::net::Shutdown::Both);
    }

    /// Why the connection ended, once it has.
    pub(crate) fn dead(&self) -> Option<ConnectionError> {
        self.lock().dead().cloned()
    }

    /// Writes what is queued now, from the calling task, if the socket takes it without
    /// blocking; otherwise leaves the rest to the writer task. Ends a
    /// [`TokioConn::defer_flush`] section: a server's reader calls this once it has dispatched the
    /// frames a read brought, so the replies of a batch leave in one `sendmsg` without a task
    /// switch.
    pub(crate) fn flush_inline(&self) {
        let mut conn = self.lock();
        conn.end_defer();
        if conn.dead().is_some() {
            return;
        }
        match conn.send_queue().write_to(self.socket.as_fd()) {
            Ok(true) => {
                conn.writer_idle();
                drop(conn);
                self.drained.notify_waiters();
            }
            // Would block, or failed: the writer task handles it. Frames are queued, so it was
            // asked for when they were pushed, or is owed now that the deferral ended.
            Ok(false) | Err(_) => {
                let wake = conn.poll_transmit();
                debug_assert!(conn.writer_asked());
                drop(conn);
                if wake {
                    self.wake_writer();
                }
            }
        }
    }

    /// Hands frames queued during a [`TokioConn::defer_flush`] section to the writer task,
    /// for a reader about to wait: nothing queued may wait for the reader.
    pub(crate) fn end_deferred(&self) {
        let wake = {
            let mut conn = self.lock();
            conn.end_defer();
            conn.poll_transmit()
        };
        if wake {
            self.wake_writer();
        }
    }

    /// The writer task: writes whenever frames are queued, until writing fails or the
    /// connection ends. Returns why.
    pub(crate) async fn run_writer(&self) -> ConnectionError {
        loop {
            self.write.notified().await;
            loop {
                let written = {
                    let mut conn = self.lock();
                    if let Some(e) = conn.dead() {
                        return e.clone();
                    }
                    let r = conn.send_queue().write_to(self.socket.as_fd());
                    if let Ok(true) = r {
                        conn.writer_idle();
                    }
                    r
                };
                // Some of the backlog may have gone out: let waiters look again.
                self.drained.notify_waiters();
                match written {
                    Ok(true) => break,
                    Ok(false) => match self.writable_while_peer_reads().await {
                        Ok(()) => {}
                        Err(Ok(stalled)) => {
                            self.fail(stalled.clone());
                            return stalled;
                        }
                        Err(Err(e)) => return self.write_failed(e),
                    },
                    Err(e) => return self.write_failed(e),
                }
            }
        }
    }

    /// Waits until the socket takes more, as long as the peer makes progress (its unread
    /// byte count, `SIOCOUTQ`, goes down): a peer that takes nothing for the stall timeout
    /// while frames wait for it is not reading, and the connection ends (`Err(Ok(_))`), with
    /// every fd its frames held. `Err(Err(_))`: waiting failed.
    async fn writable_while_peer_reads(
        &self,
    ) -> Result<(), Result<ConnectionError, std::io::Error>> {
        let writable = self.socket.writable();
        tokio::pin!(writable);
        let mut progress = PeerProgress::start(self);
        loop {
            tokio::select! {
                w = &mut writable => return w.map_err(Err),
                () = tokio::time::sleep_until(progress.next_look()) => {}
            }
            progress.look(self).map_err(Ok)?;
        }
    }

    /// How often a waiting side looks at the peer's progress: an eighth of the stall timeout,
    /// from 5 ms to 500 ms.
    pub(crate) fn look_every(&self) -> Duration {
        (self.stall / 8).clamp(Duration::from_millis(5), Duration::from_millis(500))
    }

    fn write_failed(&self, e: std::io::Error) -> ConnectionError {
        let peer_gone = matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        );
        let err = ConnectionError::new(TransportError::Io(e));
        if peer_gone && self.role == Role::Client {
            // What the peer sent before it went is still in the socket: the reader delivers it,
            // then fails the connection (see `read_replies`).
            let _ = self.write_broken.set(err.clone());
            self.rearm.set();
            return err;
        }
        // A connection that cannot write is dead: wake the reader too.
        self.fail(err.clone());
        err
    }

    /// Something left the send queue without being written (a call taken back): whoever
    /// waits for room looks again.
    pub(crate) fn backlog_shrank(&self) {
        self.drained.notify_waiters();
    }

    /// Bytes and fds queued and not yet written.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        self.lock().backlog()
    }

    /// Waits until the backlog is within `max_bytes` and `max_fds` (or the connection ended).
    pub(crate) async fn wait_backlog_below(&self, max_bytes: usize, max_fds: usize) {
        loop {
            let notified = self.drained.notified();
            {
                let conn = self.lock();
                let (bytes, fds) = conn.backlog();
                if conn.dead().is_some() || (bytes <= max_bytes && fds <= max_fds) {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until the connection ends; returns why.
    pub(crate) async fn ended_with(&self) -> ConnectionError {
        loop {
            // `fail` wakes every waiter of `drained` after marking the connection dead.
            let notified = self.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(why) = self.dead() {
                return why;
            }
            notified.await;
        }
    }

    /// Waits until everything queued so far has been written (or the connection ended).
    pub(crate) async fn drained(&self) {
        self.wait_backlog_below(0, 0).await;
    }

    /// Waits until the backlog has room for one more stream item. A peer that leaves the
    /// backlog unread for the stall timeout fails the connection: a stream it granted endless
    /// credit cannot make this side hold endless items and fds.
    ///
    /// # Errors
    ///
    /// The connection's failure.
    pub(crate) async fn room_for_item(&self) -> Result<(), ConnectionError> {
        let (bytes, fds) = self.max_backlog;
        if let Err(err) = self.wait_room_while_peer_reads(bytes, fds).await {
            self.fail(err.clone());
            return Err(err);
        }
        match self.dead() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until the backlog is within `max_bytes` and `max_fds` (or the connection ended),
    /// as long as the peer makes progress: it counts as not reading only once neither the
    /// backlog nor the bytes it has not read from the socket (`SIOCOUTQ`) went down for the
    /// stall timeout. (A full socket becomes writable again only when most of it is read, so
    /// the writer's own progress says nothing about a peer that reads slowly but steadily.)
    ///
    /// # Errors
    ///
    /// [`FdStreamError::NotReading`] once the peer made no progress for the stall timeout.
    pub(crate) async fn wait_room_while_peer_reads(
        &self,
        max_bytes: usize,
        max_fds: usize,
    ) -> Result<(), ConnectionError> {
        // The common case, once per stream item: room already, no clock and no `ioctl`.
        {
            let conn = self.lock();
            let (b, f) = conn.backlog();
            if conn.dead().is_some() || (b <= max_bytes && f <= max_fds) {
                return Ok(());
            }
        }
        let mut progress = PeerProgress::start(self);
        loop {
            let notified = self.drained.notified();
            {
                let conn = self.lock();
                let (b, f) = conn.backlog();
                if conn.dead().is_some() || (b <= max_bytes && f <= max_fds) {
                    return Ok(());
                }
            }
            let _ = tokio::time::timeout_at(progress.next_look(), notified).await;
            progress.look(self)?;
        }
    }

    /// Waits until the send queue is within the backlog bound (bytes and fds), so that a
    /// client whose server stopped reading holds a bounded queue: a call waits for room until
    /// `deadline`, then fails with [`RpcError::Timeout`] having queued nothing.
    ///
    /// # Errors
    ///
    /// [`RpcError::Timeout`] once `deadline` passes; [`RpcError::Connection`] if the
    /// connection ended.
    pub(crate) async fn room_for_call(&self, deadline: Option<Deadline>) -> Result<(), RpcError> {
        let (bytes, fds) = self.max_backlog;
        let full = {
            let conn = self.lock();
            let (b, f) = conn.backlog();
            b > bytes || f > fds
        };
        if full {
            // Boxed: the wait (a timer among it) is the rare path, and every call's future
            // would otherwise be the size of it.
            Box::pin(async {
                let wait = self.wait_backlog_below(bytes, fds);
                match deadline {
                    Some(d) => tokio::time::timeout_at(d.at().into(), wait)
                        .await
                        .map_err(|_| d.error()),
                    None => {
                        wait.await;
                        Ok(())
                    }
                }
            })
            .await?;
        }
        match self.dead() {
            Some(e) => Err(RpcError::Connection(e)),
            None => Ok(()),
        }
    }

    /// The client's reader: hands every frame the peer sends to the connection, and sets the
    /// connection's one timer ([`Alarm`]) for what the connection asks
    /// ([`Conn::poll_timeout`]: the earliest call deadline, or the stall of a half-received
    /// frame), so a call costs no timer of its own; when it fires, the connection fails what
    /// is due ([`Conn::handle_timeout`]). Until the connection ends; returns why.
    pub(crate) async fn read_replies(&self, mut rq: RecvQueue) -> ConnectionError {
        let mut wakers = Vec::new();
        // Made at the first deadline: a client that sets none needs no timer.
        let mut alarm: Option<Alarm> = None;
        loop {
            // A peer that parks fds in a half-sent frame cannot pin them here either.
            let received = self.with_wakers(&mut wakers, |conn, wake| {
                while let Some(frame) = rq.next_frame().map_err(ConnectionError::new)? {
                    // A client is never handed a call: a server's call would be a reply's
                    // problem (see `Conn::receive`).
                    conn.receive(Received::new(frame), wake)?;
                }
                conn.set_receive_stall(rq.stall_deadline(self.stall));
                Ok::<_, ConnectionError>(conn.poll_timeout())
            });
            match received {
                Ok(Some(at)) => alarm.get_or_insert_with(Alarm::new).set(at),
                Ok(None) => {}
                Err(e) => return e,
            }
            // One atomic load per read: set once, by the writer, when the peer is gone.
            if let Some(err) = self.write_broken.get().cloned() {
                // The writer found the peer gone: read what it sent before it went, then end.
                while let Ok(crate::transport::Fill::Read(_)) = rq.fill(self.socket.as_fd()) {
                    let handed = self.with_wakers(&mut wakers, |conn, wake| {
                        while let Some(frame) = rq.next_frame().map_err(ConnectionError::new)? {
                            conn.receive(Received::new(frame), wake)?;
                        }
                        Ok::<_, ConnectionError>(())
                    });
                    if handed.is_err() {
                        break;
                    }
                }
                self.fail(err.clone());
                return err;
            }
            tokio::select! {
                biased;
                filled = self.socket.fill(&mut rq) => match filled {
                    Ok(true) => {}
                    Ok(false) => return ConnectionError::new(TransportError::Closed),
                    Err(e) => return ConnectionError::new(e),
                },
                () = std::future::poll_fn(|cx| match &mut alarm {
                    Some(alarm) => alarm.poll_fired(cx),
                    None => std::task::Poll::Pending,
                }) => {
                    let now = std::time::Instant::now();
                    let handled = self.with_wakers(&mut wakers, |conn, wake| {
                        conn.handle_timeout(now, wake)
                    });
                    if let Err(e) = handled {
                        return e;
                    }
                }
                () = std::future::poll_fn(|cx| self.rearm.poll(cx)) => {}
            }
        }
    }
}

/// Whether the peer takes what this side sends: its unread byte count in the socket
/// (`SIOCOUTQ`) or this side's backlog going down, or the socket taking more bytes, is
/// progress; none for the stall timeout means the peer is not reading. (A full socket turns
/// writable only when most of it is read, so the writer's own progress says nothing about a
/// peer that reads slowly but steadily. The bytes written in all only grow: the backlog,
/// which a producer refills as the writer drains it, can look level at two looks with both
/// sides working in between.)
struct PeerProgress {
    /// Bytes written to the socket in all, bytes the peer has not read, backlog bytes and
    /// fds: when last looked at.
    last: (u64, usize, usize, usize),
    deadline: tokio::time::Instant,
    every: Duration,
}

impl PeerProgress {
    fn start(conn: &TokioConn) -> Self {
        PeerProgress {
            last: Self::seen(conn),
            deadline: tokio::time::Instant::now() + conn.stall,
            every: conn.look_every(),
        }
    }

    fn seen(conn: &TokioConn) -> (u64, usize, usize, usize) {
        let ((bytes, fds), written) = {
            let c = conn.lock();
            (c.backlog(), c.written_total())
        };
        let unread = conn.socket.unread_by_peer().unwrap_or(0);
        (written, unread, bytes, fds)
    }

    /// When to look next, if nothing else happens first.
    fn next_look(&self) -> tokio::time::Instant {
        self.deadline.min(tokio::time::Instant::now() + self.every)
    }

    /// Looks again.
    ///
    /// # Errors
    ///
    /// [`FdStreamError::NotReading`] once the peer made no progress for the stall timeout.
    fn look(&mut self, conn: &TokioConn) -> Result<(), ConnectionError> {
        let seen = Self::seen(conn);
        let last = std::mem::replace(&mut self.last, seen);
        let now = tokio::time::Instant::now();
        if seen.0 > last.0 || seen.1 < last.1 || seen.2 < last.2 || seen.3 < last.3 {
            self.deadline = now + conn.stall;
        } else if now >= self.deadline {
            return Err(ConnectionError::new(TransportError::FdStream(
                FdStreamError::NotReading(conn.stall),
            )));
        }
        Ok(())
    }
}

/// What [`TokioConn::on_end`] calls.
struct OnEnd(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for OnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnEnd")
    }
}

/// Tells a reader to look again (the client's at its timer, the server's at its stop signal):
/// a flag and the reader's waker, with no lock (a `Notify` takes one on every wait, and the
/// reader waits once per read).
#[derive(Debug, Default)]
struct Rearm {
    set: AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

impl Rearm {
    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn poll(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.set.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.set.swap(false, Ordering::AcqRel) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    use super::*;

    /// Two frames of 300 payload bytes with one fd each.
    const FRAMES: usize = 2;

    /// A client connection whose peer reads nothing, with `FRAMES` frames queued and none
    /// written (the writer is never woken), and the peer's end. Returns the backlog too.
    fn with_backlog(settings: &Settings) -> (Arc<TokioConn>, UnixStream, (usize, usize)) {
        let (a, peer) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let conn = TokioConn::new(
            Socket::new(OwnedFd::from(a)).unwrap(),
            Role::Client,
            settings,
        );
        let backlog = {
            let mut c = conn.lock();
            for seqid in 0..FRAMES {
                let fd = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
                c.send_queue()
                    .push(seqid as i32, &[0; 300], vec![fd], &[])
                    .unwrap();
            }
            c.backlog()
        };
        (conn, peer, backlog)
    }

    /// The backlog of `with_backlog`, measured on a connection of its own.
    fn backlog_of_two_frames() -> (usize, usize) {
        with_backlog(&Settings::default()).2
    }

    fn soon() -> Option<Deadline> {
        Some(Deadline::after(Duration::from_millis(50)))
    }

    #[tokio::test]
    async fn a_call_waits_while_the_backlog_is_over_its_byte_or_its_fd_bound() {
        let (bytes, fds) = backlog_of_two_frames();
        assert_eq!(fds, FRAMES);
        // At both bounds: room.
        let (conn, _peer, _) = with_backlog(&Settings::default().max_backlog(bytes, fds));
        conn.room_for_call(soon()).await.unwrap();
        // One byte, or one fd, over: the call waits, and gives up at its deadline.
        for (b, f) in [(bytes - 1, fds), (bytes, fds - 1)] {
            let (conn, _peer, _) = with_backlog(&Settings::default().max_backlog(b, f));
            let r = conn.room_for_call(soon()).await;
            assert!(matches!(r, Err(RpcError::Timeout(_))), "{b} {f}: {r:?}");
        }
    }

    #[tokio::test]
    async fn a_stream_item_waits_while_the_backlog_is_over_its_byte_or_its_fd_bound() {
        let (bytes, fds) = backlog_of_two_frames();
        let stall = Duration::from_millis(100);
        let settings = |b, f| Settings::default().max_backlog(b, f).stall_timeout(stall);
        let (conn, _peer, _) = with_backlog(&settings(bytes, fds));
        conn.room_for_item().await.unwrap();
        // Over a bound, with a peer that reads nothing: the stall timeout ends the wait and
        // the connection.
        for (b, f) in [(bytes - 1, fds), (bytes, fds - 1)] {
            let (conn, _peer, _) = with_backlog(&settings(b, f));
            let started = Instant::now();
            let cpu_before = thread_cpu_time();
            match conn.room_for_item().await {
                Err(e) => assert!(
                    matches!(
                        e.transport(),
                        TransportError::FdStream(FdStreamError::NotReading(d)) if *d == stall
                    ),
                    "{e}"
                ),
                Ok(()) => panic!("{b} {f}: room while over the bound"),
            }
            let (elapsed, cpu) = (started.elapsed(), thread_cpu_time() - cpu_before);
            assert!(elapsed >= stall);
            // It waited, looking now and then; it did not spin (the runtime runs on this
            // thread, so its CPU time is the wait's).
            assert!(cpu < elapsed / 3, "{cpu:?} of CPU in {elapsed:?}");
            assert!(conn.dead().is_some());
        }
    }

    fn thread_cpu_time() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[tokio::test]
    async fn a_call_waiting_for_room_goes_on_when_a_frame_is_taken_back() {
        let (bytes, fds) = backlog_of_two_frames();
        let (conn, _peer, _) = with_backlog(&Settings::default().max_backlog(bytes, fds - 1));
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move {
                let r = conn
                    .room_for_call(Some(Deadline::after(Duration::from_secs(5))))
                    .await;
                (r, Instant::now())
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // The last frame leaves the queue unsent (as a call given up does).
        let taken_back = Instant::now();
        {
            let mut c = conn.lock();
            let end = c.send_queue().queued();
            let start = end - (bytes / FRAMES) as u64;
            assert!(c.send_queue().remove_unsent(start, end));
        }
        conn.backlog_shrank();
        let (r, at) = waiting.await.unwrap();
        r.unwrap();
        assert!(
            at - taken_back < Duration::from_secs(1),
            "{:?}",
            at - taken_back
        );
    }

    #[tokio::test]
    async fn a_backlog_that_goes_down_is_progress_though_nothing_is_written() {
        // Six frames without fds; room once one is left. The peer's socket sees nothing (its
        // unread count stays 0) and no fd leaves: only the backlog's bytes go down, a frame
        // every 250 ms, for longer than the stall timeout in all.
        let (a, _peer) = UnixStream::pair().unwrap();
        let stall = Duration::from_secs(1);
        let frame_len = {
            let mut probe = Conn::new(Role::Client, &Settings::default());
            probe
                .send_queue()
                .push(0, &[0; 300], Vec::new(), &[])
                .unwrap();
            probe.backlog().0
        };
        let settings = Settings::default()
            .max_backlog(frame_len, 0)
            .stall_timeout(stall);
        let conn = TokioConn::new(
            Socket::new(OwnedFd::from(a)).unwrap(),
            Role::Client,
            &settings,
        );
        for seqid in 0..6 {
            conn.lock()
                .send_queue()
                .push(seqid, &[0; 300], Vec::new(), &[])
                .unwrap();
        }
        let started = Instant::now();
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.room_for_item().await }
        });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let mut c = conn.lock();
            let end = c.send_queue().queued();
            assert!(c.send_queue().remove_unsent(end - frame_len as u64, end));
        }
        conn.backlog_shrank();
        waiting.await.unwrap().unwrap();
        assert!(started.elapsed() > stall);
    }
}
