//! [`BlockingConn`]: a [`Conn`] driven by plain threads, without an async runtime.
//!
//! Calls from several threads are in flight together. A thread that waits (for its reply, a
//! stream item, credit for its sink) either reads the socket for everyone or, while another
//! thread reads, sleeps on a condition variable; the reader hands every frame to the
//! connection, which settles whichever call or stream it belongs to, then wakes the sleepers.
//! When the reader has what it waited for it stops reading, and a sleeper takes over. A thread
//! writes what it queued itself, and waits for room without holding the lock, until its
//! deadline.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::rpc::conn::{Conn, Received, Role};
use crate::rpc::deadline::Deadline;
use crate::rpc::error::{ConnectionError, RpcError};
use crate::settings::Settings;
use crate::transport::error::{FdStreamError, TransportError};
use crate::transport::{Fill, RecvQueue, unix};

/// One connection driven by blocking threads.
#[derive(Debug)]
pub(crate) struct BlockingConn {
    socket: UnixStream,
    state: Mutex<State>,
    /// Woken when a reader has handed frames to the connection, stopped reading, or the
    /// connection ended.
    changed: Condvar,
    stall: Duration,
    /// [`Settings::max_backlog`]: what calls wait for room under.
    max_backlog: (usize, usize),
}

#[derive(Debug)]
struct State {
    conn: Conn,
    /// The receive queue, while no thread is reading (the reader takes it out).
    recv: Option<RecvQueue>,
    /// When the reading thread stops waiting for the socket at the latest (`None`: not
    /// before something arrives). A sleeper whose deadline is no earlier sleeps without a
    /// timeout of its own: the reader wakes everyone then anyway. (A timed sleep costs the
    /// kernel a timer on every wait.)
    reader_until: Option<Instant>,
    /// Threads asleep on `changed`: with none, a reader that hands frames over wakes nobody
    /// (`notify_all` is a `futex` syscall even when no thread waits).
    sleepers: usize,
}

impl BlockingConn {
    pub(crate) fn new(socket: UnixStream, settings: &Settings) -> Self {
        BlockingConn {
            socket,
            state: Mutex::new(State {
                conn: Conn::new(Role::Client, settings),
                recv: Some(RecvQueue::new(settings)),
                reader_until: None,
                sleepers: 0,
            }),
            changed: Condvar::new(),
            stall: settings.stall_timeout,
            max_backlog: (settings.max_backlog_bytes, settings.max_backlog_fds),
        }
    }

    /// A deadline one stall timeout away: how long writes that clean up (a cancel on drop)
    /// may wait for a peer that does not read.
    pub(crate) fn stall_deadline(&self) -> Option<Deadline> {
        Some(Deadline::after(self.stall))
    }

    /// Whether the connection has failed or closed.
    pub(crate) fn is_dead(&self) -> bool {
        self.lock().conn.dead().is_some()
    }

    /// Waits until the peer has closed the connection (or it failed); returns why.
    pub(crate) fn wait_closed(&self) -> ConnectionError {
        if let Err(e) = unix::wait_hangup(self.socket.as_fd()) {
            return ConnectionError::new(e.into());
        }
        self.lock()
            .conn
            .dead()
            .cloned()
            .unwrap_or_else(|| ConnectionError::new(TransportError::Closed))
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection (frames it queues are written by the next
    /// [`BlockingConn::send`] or wait).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> R {
        f(&mut self.lock().conn)
    }

    /// Runs `f`, which queues frames, then writes until they are on their way (or the
    /// deadline passes).
    ///
    /// # Errors
    ///
    /// The error of `f`; [`RpcError::Timeout`] if the socket stayed full until `deadline`;
    /// [`RpcError::Connection`] if writing failed.
    pub(crate) fn send<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&mut Conn) -> Result<R, RpcError>,
    ) -> Result<R, RpcError> {
        let mut st = self.lock();
        let r = f(&mut st.conn)?;
        let target = st.conn.send_queue().queued();
        self.flush(st, target, deadline)?;
        Ok(r)
    }

    /// As [`BlockingConn::send`] for a new call (or oneway): first waits, writing meanwhile,
    /// until the frames queued and not yet written are within [`Settings::max_backlog`], so
    /// that threads sharing a client against a peer that stops reading queue no more than the
    /// bound (and a frame) between them. A call that finds no room by `deadline` fails with
    /// [`RpcError::Timeout`] having queued nothing.
    ///
    /// # Errors
    ///
    /// As [`BlockingConn::send`].
    pub(crate) fn send_call<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&mut Conn) -> Result<R, RpcError>,
    ) -> Result<R, RpcError> {
        let (max_bytes, max_fds) = self.max_backlog;
        let mut st = self.lock();
        loop {
            if let Some(dead) = st.conn.dead() {
                return Err(RpcError::Connection(dead.clone()));
            }
            let (bytes, fds) = st.conn.backlog();
            if bytes <= max_bytes && fds <= max_fds {
                break;
            }
            if let Err(e) = st.conn.send_queue().write_to(self.socket.as_fd()) {
                drop(st);
                return Err(RpcError::Connection(self.fail(e.into())));
            }
            let (bytes, fds) = st.conn.backlog();
            if bytes <= max_bytes && fds <= max_fds {
                break;
            }
            drop(st);
            match unix::wait_writable(self.socket.as_fd(), deadline.map(|d| d.at())) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out(deadline)),
                Err(e) => return Err(RpcError::Connection(self.fail(e.into()))),
            }
            st = self.lock();
        }
        let r = f(&mut st.conn)?;
        let target = st.conn.send_queue().queued();
        self.flush(st, target, deadline)?;
        Ok(r)
    }

    /// Writes until `target` bytes of the stream are written, waiting for room with the lock
    /// released.
    fn flush<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        target: u64,
        deadline: Option<Deadline>,
    ) -> Result<(), RpcError> {
        loop {
            if let Some(dead) = st.conn.dead() {
                return Err(RpcError::Connection(dead.clone()));
            }
            let queue = st.conn.send_queue();
            if queue.written() >= target {
                return Ok(());
            }
            match queue.write_to(self.socket.as_fd()) {
                Ok(_) if st.conn.send_queue().written() >= target => return Ok(()),
                Ok(_) => {
                    drop(st);
                    match unix::wait_writable(self.socket.as_fd(), deadline.map(|d| d.at())) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            return Err(timed_out(deadline));
                        }
                        Err(e) => return Err(RpcError::Connection(self.fail(e.into()))),
                    }
                    st = self.lock();
                }
                Err(e) => {
                    drop(st);
                    return Err(RpcError::Connection(self.fail(e.into())));
                }
            }
        }
    }

    /// Ends the connection: everything waiting on it fails, what it held is closed.
    fn fail(&self, why: TransportError) -> ConnectionError {
        let mut st = self.lock();
        let peer_gone = matches!(&why, TransportError::Io(e)
            if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset));
        if peer_gone {
            // A write found the peer gone; what it sent before it went (a stream's last items,
            // its `abort`, a reply) is still in the socket: delivered first, as the frames a
            // reader had already taken are.
            if let Some(mut rq) = st.recv.take() {
                let mut wake = Vec::new();
                'drain: loop {
                    while let Ok(Some(frame)) = rq.next_frame() {
                        if st.conn.receive(Received::new(frame), &mut wake).is_err() {
                            break 'drain;
                        }
                    }
                    if !matches!(rq.fill(self.socket.as_fd()), Ok(Fill::Read(_))) {
                        break;
                    }
                }
            }
        }
        let err = ConnectionError::new(why);
        st.conn.fail(err.clone(), &mut Vec::<Waker>::new());
        st.recv = None;
        drop(st);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        self.changed.notify_all();
        err
    }

    /// Waits until `ready` yields a value, reading frames (or letting another thread read
    /// them) meanwhile; frames `ready` queues (credit for a stream) are written before it
    /// returns.
    ///
    /// # Errors
    ///
    /// [`RpcError::Timeout`] once `deadline` passes, [`RpcError::Connection`] once the
    /// connection ends.
    pub(crate) fn wait<T>(
        &self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut(&mut Conn) -> Option<T>,
    ) -> Result<T, RpcError> {
        let mut st = self.lock();
        loop {
            if let Some(v) = ready(&mut st.conn) {
                // What `ready` queued (credit) goes now. If it cannot (the peer is gone, or not
                // reading by the deadline), the value is still what arrived: it is returned,
                // and the failure shows at the next wait (after the frames that came before it).
                let target = st.conn.send_queue().queued();
                let _ = self.flush(st, target, deadline);
                return Ok(v);
            }
            if let Some(dead) = st.conn.dead() {
                return Err(RpcError::Connection(dead.clone()));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d.passed(now)) {
                return Err(timed_out(deadline));
            }
            let Some(mut rq) = st.recv.take() else {
                // Another thread is reading: it wakes us when it has handed frames over, or
                // when it stops waiting, whichever comes first.
                let at = deadline.map(|d| d.at());
                let reader_first = match (at, st.reader_until) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(d), Some(until)) => until <= d,
                };
                st.sleepers += 1;
                st = match at {
                    Some(d) if !reader_first => {
                        self.changed
                            .wait_timeout(st, d - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    _ => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                };
                st.sleepers -= 1;
                continue;
            };
            let stall = rq.stall_deadline(self.stall);
            let until = match (deadline.map(|d| d.at()), stall) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            st.reader_until = until;
            drop(st);
            let read = self.read_once(&mut rq, until, stall);
            st = self.lock();
            st.reader_until = None;
            let handed = read.and_then(|()| {
                while let Some(frame) = rq.next_frame().map_err(ConnectionError::new)? {
                    // The blocking client is a client: nothing it receives is a call.
                    st.conn.receive(Received::new(frame), &mut Vec::new())?;
                }
                Ok(())
            });
            match handed {
                Ok(()) => st.recv = Some(rq),
                Err(e) => {
                    st.conn.fail(e, &mut Vec::new());
                    drop(rq);
                    let _ = self.socket.shutdown(std::net::Shutdown::Both);
                }
            }
            if st.sleepers > 0 {
                self.changed.notify_all();
            }
        }
    }

    /// Reads once, waiting until something arrives, `until` passes (`Ok` with nothing read),
    /// or a half-received frame or unclaimed fds stall (`stall`, which `until` includes).
    fn read_once(
        &self,
        rq: &mut RecvQueue,
        until: Option<Instant>,
        stall: Option<Instant>,
    ) -> Result<(), ConnectionError> {
        match rq.fill_until(self.socket.as_fd(), until) {
            Ok(Fill::Read(_)) => Ok(()),
            Ok(Fill::WouldBlock) if stall.is_some_and(|s| Instant::now() >= s) => Err(
                ConnectionError::new(FdStreamError::Stalled(self.stall).into()),
            ),
            Ok(Fill::WouldBlock) => Ok(()),
            Ok(Fill::Eof) => Err(ConnectionError::new(
                rq.check_clean_eof().err().unwrap_or(TransportError::Closed),
            )),
            Err(e) => Err(ConnectionError::new(e)),
        }
    }
}

/// What a wait that reached `deadline` fails with (a deadline that is never reached cannot
/// time out: its timeout reads 0).
fn timed_out(deadline: Option<Deadline>) -> RpcError {
    deadline.map_or(RpcError::Timeout(Duration::ZERO), |d| d.error())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::codec::MessageType;
    use crate::rpc::conn::CallOptions;
    use crate::rpc::method_name::MethodName;

    /// Threads sharing a connection whose peer reads nothing: the frames queued and not
    /// written never exceed the backlog bound by more than one frame, and a call that finds
    /// no room by its deadline queues nothing at all.
    #[test]
    fn calls_wait_for_room_and_a_call_without_any_queues_nothing() {
        let (a, _peer) = UnixStream::pair().unwrap();
        let bound = 256 << 10;
        let frame = 100 << 10;
        let conn = BlockingConn::new(a, &Settings::default().max_backlog(bound, 1024));
        let (peak, started, done) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicBool::new(false),
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let (bytes, _) = conn.with(|c| c.backlog());
                    peak.fetch_max(bytes, Ordering::SeqCst);
                    std::thread::yield_now();
                }
            });
            let callers: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        let method = MethodName::from("upload");
                        let options = CallOptions::new(MessageType::Oneway);
                        conn.send_call(Some(Deadline::after(Duration::from_millis(200))), |c| {
                            started.fetch_add(1, Ordering::SeqCst);
                            c.start_call(&method, &options, |enc| {
                                enc.write_binary(&vec![7; frame])?;
                                enc.write_stop();
                                Ok(())
                            })
                        })
                    })
                })
                .collect();
            let results: Vec<_> = callers.into_iter().map(|c| c.join()).collect();
            done.store(true, Ordering::SeqCst);
            // Those the socket took whole are sent; every other one timed out.
            let sent = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
            let timed_out = results
                .iter()
                .filter(|r| matches!(r, Ok(Err(RpcError::Timeout(_)))))
                .count();
            assert!(
                sent <= 3 && sent + timed_out == 16,
                "{sent} sent, {timed_out} timed out"
            );
        });
        let (bytes, _) = conn.with(|c| c.backlog());
        assert!(
            peak.load(Ordering::SeqCst) <= bound + frame + 1024,
            "{peak:?}"
        );
        // The socket took ~200 KiB; the queue holds the bound and one frame past it; the
        // rest of the 16 never started.
        let started = started.load(Ordering::SeqCst);
        assert!(
            started < 16,
            "all {started} calls queued: the bound did not hold"
        );
        assert!(bytes <= bound + frame + 1024, "{bytes}");
    }
}
