//! The blocking server's connection loop: one thread reads one connection's frames within
//! the server's limits (calls in flight, the fd budget, the backlog, the stall timeout), hands
//! calls to the server's dispatch and everything else to the connection core, runs the
//! connection's tasks, writes, and sleeps in `poll(2)`; then lets calls in flight finish.
//! The counterpart of `server_reader` for [`PolledConn`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::call_sink::{Arrival, CallPermit, CallSink};
use super::polled_conn::{PolledConn, Tasks};
use super::polled_limits::{BudgetShare, FdBudget, InFlight};
use crate::rpc::conn::Received;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;
use crate::transport::error::{FdStreamError, TransportError};
use crate::transport::{Fill, RecvQueue, SCM_MAX_FD};

/// Serves one connection until the peer closes it, it breaks the protocol, or `stop` is set;
/// then lets calls in flight finish (for at most the stall timeout). Tasks the connection
/// leaves are dropped on this thread before it returns.
///
/// # Errors
///
/// Why the connection ended, if not by a clean close or `stop`.
pub(crate) fn serve_polled(
    conn: &Arc<PolledConn>,
    settings: &Settings,
    budget: &Arc<FdBudget>,
    calls: &impl CallSink,
    stop: &AtomicBool,
) -> Result<(), ConnectionError> {
    conn.enter();
    let mut tasks = Tasks::default();
    let ended = read_loop(conn, settings, budget, calls, stop, &mut tasks);
    finish(conn, settings, &ended, stop, &mut tasks);
    ended
}

fn read_loop(
    conn: &Arc<PolledConn>,
    settings: &Settings,
    budget: &Arc<FdBudget>,
    calls: &impl CallSink,
    stop: &AtomicBool,
    tasks: &mut Tasks,
) -> Result<(), ConnectionError> {
    let in_flight = InFlight::new(settings.max_in_flight, conn.loop_wake());
    let mut rq = RecvQueue::for_server(settings);
    // Budget units of the fds waiting in `rq`; a frame takes its share with it.
    let mut parked: Option<BudgetShare> = None;
    let (max_bytes, max_fds) = conn.max_backlog;
    let stall = settings.stall_timeout;
    let mut writes = WriteProgress::default();
    let mut wakers = Vec::new();
    // First polls of handlers happen outside any task: what they wait for wakes the loop.
    let loop_waker = Tasks::loop_waker(conn);
    let mut cx = std::task::Context::from_waker(&loop_waker);
    // A oneway handler that waits: no frame is read until it is done (oneways run in order).
    let mut oneway: Option<(usize, u64)> = None;
    // Whether a read may find something: after a read, the loop asks `poll` before reading
    // again, so a call costs `poll`, `recvmsg` and `sendmsg`, not an `EAGAIN` read too.
    let mut readable = true;
    loop {
        tasks.run(conn);
        if let Some(e) = conn.dead() {
            return Err(e);
        }
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if oneway.is_some_and(|id| !tasks.is_running(id)) {
            oneway = None;
        }
        let (bytes, fds) = conn.lock().backlog();
        let room = bytes <= max_bytes && fds <= max_fds;
        let slot_free = in_flight.has_room();
        let may_read = oneway.is_none() && room && slot_free;
        // Every complete frame already buffered, while there is a slot and room for it.
        let mut dispatched = false;
        while may_read && oneway.is_none() && in_flight.has_room() {
            let arrived = Arrival::of(&rq);
            let Some(frame) = rq.next_frame().map_err(ConnectionError::new)? else {
                break;
            };
            dispatched = true;
            let lease = parked.as_mut().and_then(|p| p.split(frame.fds.len()));
            let call = match Received::new(frame).into_call() {
                Ok(call) => Some(call),
                Err(other) => {
                    let (handled, cancelled) = {
                        let mut c = conn.lock();
                        let handled = c.receive(other, &mut wakers);
                        (handled, c.take_cancelled_calls())
                    };
                    for w in wakers.drain(..) {
                        w.wake();
                    }
                    for seqid in cancelled {
                        calls.stop(seqid);
                    }
                    handled?
                }
            };
            if let Some(call) = call {
                let permit = CallPermit::Polled(in_flight.take(), lease);
                if let Some(inline) = calls.dispatch(call, arrived, permit, &mut cx) {
                    oneway = tasks.run_inline(conn, inline, &mut cx);
                }
            }
        }
        // The replies of this batch leave together.
        writes.flush(conn)?;
        if dispatched {
            continue;
        }
        // Room as it is after that write: a backlog it emptied must not keep this side from
        // reading (it would then sleep with nothing to read and nothing to write).
        let (bytes, fds) = conn.lock().backlog();
        let room = bytes <= max_bytes && fds <= max_fds;
        // Waiting for the peer: every complete frame is taken (none is left because every slot
        // is taken or a oneway runs), and the peer has more to send. Only then can what is
        // buffered be the peer's stall (a half-sent frame, unclaimed fds).
        let waiting_for_peer = oneway.is_none() && room && in_flight.has_room() && !rq.is_eof();
        let mut read = waiting_for_peer;
        if read && readable {
            // A share of the fd budget for the one read that follows: an idle connection
            // holds none of it. With none to be had, the loop waits for the budget (which
            // wakes it), not for the socket.
            let reservation = budget.take(SCM_MAX_FD, conn.loop_wake());
            read = reservation.is_some();
            if let Some(mut reservation) = reservation {
                readable = false;
                let before = rq.queued_fds();
                let filled = rq.fill(conn.socket_fd()).map_err(ConnectionError::new)?;
                let arrived = rq.queued_fds().saturating_sub(before);
                if let Some(share) = reservation.split(arrived.min(SCM_MAX_FD)) {
                    match &mut parked {
                        Some(p) => p.merge(share),
                        None => parked = Some(share),
                    }
                }
                drop(reservation);
                match filled {
                    Fill::Read(_) => continue,
                    Fill::Eof => {
                        rq.check_clean_eof().map_err(ConnectionError::new)?;
                        return Ok(());
                    }
                    Fill::WouldBlock => {}
                }
            }
        }
        if tasks.has_work(conn) {
            continue;
        }
        // Nothing to do until the socket, a wake-up or a timer.
        let now = Instant::now();
        let receive_stall = rq.stall_deadline(stall).filter(|_| waiting_for_peer);
        if receive_stall.is_some_and(|s| now >= s) {
            return Err(ConnectionError::new(FdStreamError::Stalled(stall).into()));
        }
        writes.check(conn, stall, now)?;
        let until = [conn.timer(), receive_stall, writes.deadline(stall)]
            .into_iter()
            .flatten()
            .min();
        let ready = conn
            .sleep(read, until)
            .map_err(|e| ConnectionError::new(e.into()))?;
        readable |= ready.readable;
        if ready.hung_up && !read {
            // Not reading (every slot taken, a oneway running, a full backlog), this side
            // would not see the peer go otherwise: its calls are dropped.
            return Ok(());
        }
    }
}

/// Whether the peer takes what this side writes: the socket taking more bytes, or the bytes
/// the peer has not read (`SIOCOUTQ`) or the backlog going down, is progress; none for the
/// stall timeout while frames wait means the peer is not reading. (As the tokio driver's
/// `PeerProgress`: bytes written in all only grow, where the backlog can look level at two
/// looks with both sides working in between.)
#[derive(Debug, Default)]
struct WriteProgress {
    /// Bytes written in all, bytes the peer has not read, backlog bytes and fds: when
    /// progress was last seen, and when.
    last: Option<((u64, usize, usize, usize), Instant)>,
}

impl WriteProgress {
    fn flush(&mut self, conn: &PolledConn) -> Result<(), ConnectionError> {
        conn.flush().map(|_| ())
    }

    fn check(
        &mut self,
        conn: &PolledConn,
        stall: Duration,
        now: Instant,
    ) -> Result<(), ConnectionError> {
        let ((bytes, fds), written) = {
            let c = conn.lock();
            (c.backlog(), c.written_total())
        };
        if bytes == 0 && fds == 0 {
            self.last = None;
            return Ok(());
        }
        let unread = super::outq::unread_by_peer(conn.socket_fd()).unwrap_or(0);
        let seen = (written, unread, bytes, fds);
        match self.last {
            Some((last, since))
                if !(seen.0 > last.0 || seen.1 < last.1 || seen.2 < last.2 || seen.3 < last.3) =>
            {
                if now >= since + stall {
                    let e = ConnectionError::new(TransportError::FdStream(
                        FdStreamError::NotReading(stall),
                    ));
                    conn.fail(e.clone());
                    return Err(e);
                }
                self.last = Some((seen, since));
            }
            _ => self.last = Some((seen, now)),
        }
        Ok(())
    }

    /// When the peer counts as not reading, if frames wait.
    fn deadline(&self, stall: Duration) -> Option<Instant> {
        // Looked at again within an eighth of the stall timeout (5 to 500 ms), so that a
        // peer that reads slowly keeps being seen as reading.
        let every = (stall / 8).clamp(Duration::from_millis(5), Duration::from_millis(500));
        self.last
            .map(|(_, since)| (since + stall).min(Instant::now() + every))
    }
}

/// After the reading ends: the peer gone (its calls are dropped), or a clean end (calls in
/// flight finish and their replies are written, for at most the stall timeout, unless the
/// peer was found not reading); then the connection is closed and every task dropped.
fn finish(
    conn: &Arc<PolledConn>,
    settings: &Settings,
    ended: &Result<(), ConnectionError>,
    stop: &AtomicBool,
    tasks: &mut Tasks,
) {
    if let Err(e) = ended {
        tracing::warn!(error = %e, "fdrpc connection failed; closing it");
    }
    let why = ended
        .clone()
        .err()
        .unwrap_or_else(|| ConnectionError::new(TransportError::Closed));
    if ended.is_ok() && !stop.load(Ordering::Acquire) && peer_closed(conn) {
        tracing::debug!("fdrpc: the peer closed the connection; dropping its calls in flight");
        conn.fail(why.clone());
    }
    {
        let mut wake = Vec::new();
        let mut c = conn.lock();
        if stop.load(Ordering::Acquire) {
            c.abort_streams_for_shutdown(&mut wake);
        }
        c.fail_streams(&why, &mut wake);
        drop(c);
        for w in wake {
            w.wake();
        }
    }
    let not_reading = matches!(
        ended.as_ref().map_err(ConnectionError::transport),
        Err(TransportError::FdStream(FdStreamError::NotReading(_)))
    );
    if !not_reading {
        let deadline = Instant::now() + settings.stall_timeout;
        loop {
            tasks.run(conn);
            let _ = conn.flush();
            let done = tasks.len() == 0 && !conn.wants_write();
            if done || conn.dead().is_some() || Instant::now() >= deadline {
                break;
            }
            if !tasks.has_work(conn) {
                let until = conn.timer().map_or(deadline, |t| t.min(deadline));
                if conn.sleep(false, Some(until)).is_err() {
                    break;
                }
            }
        }
    }
    conn.fail(ConnectionError::new(TransportError::Closed));
    tasks.clear(conn);
}

/// Whether the peer has closed its end entirely.
fn peer_closed(conn: &PolledConn) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(conn.socket(), PollFlags::empty())];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(1))
        && fds.iter().any(|f| f.revents().contains(PollFlags::HUP))
}
