//! The server's reader on tokio: the loop that reads one connection's frames within the
//! server's limits (calls in flight, the fd budget, the backlog, the stall timeout), hands
//! calls to the server's dispatch and everything else to the connection core, and writes the
//! replies of each read's batch itself; then lets calls in flight finish.

use std::sync::Arc;
use std::task::Poll;

use tokio::sync::watch;

use super::call_sink::{Arrival, CallPermit, CallSink};
use super::call_slots::CallSlots;
use super::fd_budget::{BudgetShare, FdBudget};

use super::socket::try_fill;
use super::tokio_conn::TokioConn;
use crate::rpc::conn::Received;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;
use crate::transport::error::{FdStreamError, TransportError};
use crate::transport::{RecvQueue, SCM_MAX_FD};
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFdReadyGuard;

/// Serves one connection until the peer closes it, it breaks the protocol, or `stop` says
/// so; then lets calls in flight finish (for at most the stall timeout).
///
/// # Errors
///
/// Why the connection ended, if not by a clean close or `stop`.
pub(crate) async fn read_calls(
    conn: &TokioConn,
    settings: &Settings,
    budget: &Arc<FdBudget>,
    calls: &impl CallSink,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let in_flight = CallSlots::new(settings.max_in_flight);
    let mut rq = RecvQueue::for_server(settings);
    // Budget units of the fds waiting in `rq`; a frame takes its share with it.
    let mut parked: Option<BudgetShare> = None;
    let timeout = settings.stall_timeout;
    let (max_bytes, max_fds) = (settings.max_backlog_bytes, settings.max_backlog_fds);
    let mut wakers = Vec::new();
    // This task's waker, for the first poll of each call's handler in `dispatch`: taken once
    // (awaiting a `poll_fn` per call made every connection's future 168 bytes larger: it held
    // a call across that await).
    let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
    // Replies queued while the frames of a read are dispatched leave together, in the
    // `flush_inline` after the batch, without waking the writer: the reader defers from here
    // until it waits (each wait below ends the deferral first, and starts it again after).
    conn.defer_flush();
    // Set when every buffered frame has been dispatched: the loop reads more first.
    let mut drained = false;
    // Whether the frames being dispatched came from a read that waited for them (so the
    // other tasks have run since this reader's last turn).
    let mut gave_way = true;
    let ended: Result<(), ConnectionError> = loop {
        if *stop.borrow() {
            break Ok(());
        }
        if drained {
            // The wait for data, where an idle connection spends its life, comes first in
            // the loop, before a frame or a call is in scope: nothing of theirs is kept in
            // the connection's future across it.
            drained = false;
            // Every buffered frame is dispatched: send the replies that are ready now.
            conn.flush_inline();
            // Let the other connections (and this one's handlers) run before reading more:
            // a peer that keeps its socket full would otherwise hold the thread for a
            // whole cooperative budget of reads, and the calls of every other connection
            // wait (measured: a one-at-a-time call's p99 went to 25 ms beside a connection
            // with 64 calls in flight). Unless the frames just dispatched came from a read
            // that waited: the reader has given way already, and a yield would cost each
            // call of a quiet connection a second turn of the runtime's driver (an
            // `epoll_wait` that finds nothing).
            if !gave_way {
                tokio::task::yield_now().await;
            }
            gave_way = match read_more(conn, &mut rq, budget, &mut parked, timeout, stop).await {
                Ok(Read::AfterWait) => true,
                Ok(Read::AtOnce) => false,
                Ok(Read::End) => break Ok(()),
                Err(e) => break Err(e),
            };
            conn.defer_flush();
        }
        // Take a call slot before reading the next frame: a peer that floods calls stops
        // being read, and its fds stay in the kernel's socket buffer, not ours.
        let permit = match in_flight.try_take() {
            Some(p) => p,
            None => {
                conn.end_deferred();
                // Boxed, as the other rare waits here: the connection's future holds only
                // what the wait for data needs (every idle connection's cost).
                let Some(p) = Box::pin(wait_slot(conn, &in_flight, stop)).await else {
                    break Ok(());
                };
                conn.defer_flush();
                p
            }
        };
        // Likewise while replies pile up unread: a peer that never reads stops being read,
        // and is dropped once its replies stay unread for the stall timeout.
        let (bytes, fds) = conn.backlog();
        if bytes > max_bytes || fds > max_fds {
            conn.end_deferred();
            match Box::pin(wait_room(conn, max_bytes, max_fds, stop)).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            conn.defer_flush();
        }
        // A call that is complete now arrived with the last read (its deadline counts from
        // then).
        let arrived = Arrival::of(&rq);
        let frame = match rq.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                drained = true;
                continue;
            }
            Err(e) => break Err(ConnectionError::new(e)),
        };
        // The frame's share of the fd budget goes back when its call is done with its fds.
        let lease = parked.as_mut().and_then(|p| p.split(frame.fds.len()));
        // A call goes to dispatch without the connection's lock; other frames go through it.
        let call = match Received::new(frame).into_call() {
            Ok(call) => Some(call),
            Err(other) => {
                let (handled, cancelled) = conn.with_wakers(&mut wakers, |c, wake| {
                    (c.receive(other, wake), c.take_cancelled_calls())
                });
                // Handlers whose callers cancelled them are dropped now, before the next
                // frame is read, without the connection's lock.
                for seqid in cancelled {
                    calls.stop(seqid);
                }
                match handled {
                    Ok(call) => call,
                    Err(e) => break Err(e),
                }
            }
        };
        if let Some(call) = call {
            // Oneway handlers run here, in order, each finished before the next frame is
            // read, so later calls on this connection see their effects; calls get their
            // first poll here and a task only if they wait.
            let permit = CallPermit::Tokio(permit, lease);
            let inline = {
                let mut cx = std::task::Context::from_waker(&waker);
                calls.dispatch(call, arrived, permit, &mut cx)
            };
            if let Some(mut inline) = inline {
                let first = std::future::poll_fn(|cx| Poll::Ready(inline.as_mut().poll(cx))).await;
                if first.is_pending() {
                    // A oneway handler that waits: nothing queued may wait for it.
                    conn.end_deferred();
                    inline.await;
                    conn.defer_flush();
                }
            }
        }
    };
    conn.end_deferred();
    // Drop what was received but not dispatched, closing its fds; end every stream.
    drop(rq);
    drop(parked);
    if let Err(e) = &ended {
        tracing::warn!(error = %e, "fdrpc connection failed; closing it");
    }
    let why = ended
        .clone()
        .err()
        .unwrap_or_else(|| ConnectionError::new(TransportError::Closed));
    if ended.is_ok() && !*stop.borrow() && conn.socket().peer_closed() {
        // The peer is gone, not just done sending: its calls in flight are cancelled, as if
        // it had sent `cancel` for each.
        tracing::debug!("fdrpc: the peer closed the connection; dropping its calls in flight");
        conn.fail(why.clone());
    }
    let stopping = *stop.borrow();
    conn.with_wakers(&mut wakers, |c, wake| {
        if stopping {
            c.abort_streams_for_shutdown(wake);
        }
        c.fail_streams(&why, wake);
    });
    // Let calls in flight finish and their replies go out (a failed connection too: the
    // peer may still read), but not for longer than the stall timeout; a peer already found
    // not reading is not given a second one.
    let not_reading = matches!(
        ended.as_ref().map_err(ConnectionError::transport),
        Err(TransportError::FdStream(FdStreamError::NotReading(_)))
    );
    if !not_reading {
        let finish = async {
            in_flight.all_free().await;
            conn.drained().await;
        };
        // Boxed: once per connection, and not carried by every waiting connection's future.
        let _ = Box::pin(tokio::time::timeout(timeout, finish)).await;
    }
    ended
}

/// Waits for a call slot; `None` if the peer went or `stop` said so first.
async fn wait_slot(
    conn: &TokioConn,
    in_flight: &Arc<CallSlots>,
    stop: &mut watch::Receiver<bool>,
) -> Option<super::call_slots::CallSlot> {
    tokio::select! {
        p = in_flight.take() => Some(p),
        _ = stop.changed() => None,
        // Not reading, this side would not see the peer go: a peer that closed with every
        // call slot taken (sinks it never feeds, say) would leave its handlers waiting for
        // ever. Found by the `server_connection` fuzzer.
        () = peer_gone(conn) => None,
    }
}

/// Waits until the replies unread by the peer are below the backlog's bounds (`Ok(true)`),
/// unless `stop` says so first (`Ok(false)`).
///
/// # Errors
///
/// The peer stopped reading for the stall timeout, or the connection failed.
async fn wait_room(
    conn: &TokioConn,
    max_bytes: usize,
    max_fds: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, ConnectionError> {
    tokio::select! {
        waited = conn.wait_room_while_peer_reads(max_bytes, max_fds) => waited.map(|()| true),
        _ = stop.changed() => Ok(false),
    }
}

/// Returns once the peer has closed its end entirely, looking every
/// [`TokioConn::look_every`] (a closed peer cannot be waited for without reading, which a full
/// connection must not do).
async fn peer_gone(conn: &TokioConn) {
    while !conn.socket().peer_closed() {
        tokio::time::sleep(conn.look_every()).await;
    }
}

/// What [`read_more`] brought.
enum Read {
    /// Bytes that were waiting already: the task has not given way to others.
    AtOnce,
    /// Bytes, after the task waited for them.
    AfterWait,
    /// The end: of the stream, or by `stop`.
    End,
}

/// Nothing complete is buffered: waits for data and reads it, within the fd budget, unless
/// the peer stalls or `stop` says so.
///
/// An idle connection waits here, so what this future holds is what every idle connection
/// costs: the socket's readiness is polled in place (its waker lives in the runtime's
/// registration, not in a waiter node here), and the stall timer exists only while part of a
/// frame, or an fd, is buffered (boxed then: an idle connection has none).
async fn read_more(
    conn: &TokioConn,
    rq: &mut RecvQueue,
    budget: &Arc<FdBudget>,
    parked: &mut Option<BudgetShare>,
    timeout: std::time::Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<Read, ConnectionError> {
    let mut waited = false;
    let mut stalled = rq
        .stall_deadline(timeout)
        .map(|d| Box::pin(tokio::time::sleep_until(d.into())));
    let stalled_error = || ConnectionError::new(FdStreamError::Stalled(timeout).into());
    loop {
        // Wait for data first, then take a share of the fd budget for the one read that
        // follows: an idle connection holds none of it.
        let mut ready = {
            let woke = std::future::poll_fn(|cx| {
                // A stalled peer is dropped even if it is sending: bytes trickling in must not
                // keep a frame that never completes alive.
                if stalled
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(cx).is_ready())
                {
                    return Poll::Ready(Woke::Stalled);
                }
                if let Poll::Ready(r) = conn.socket().poll_read_ready(cx) {
                    return Poll::Ready(Woke::Ready(r));
                }
                // The server tells the reader when it stops (`ServerShared::stop_readers`),
                // after setting `stop`: polled until pending, so that the waker is registered.
                while conn.poll_told(cx).is_ready() {
                    if *stop.borrow() {
                        return Poll::Ready(Woke::Stop);
                    }
                }
                waited = true;
                Poll::Pending
            })
            .await;
            match woke {
                Woke::Ready(r) => r.map_err(|e| ConnectionError::new(e.into()))?,
                Woke::Stalled => return Err(stalled_error()),
                Woke::Stop => return Ok(Read::End),
            }
        };
        let mut reservation = match budget.try_take(SCM_MAX_FD) {
            Some(r) => r,
            // The budget is spent: wait for it (rare; boxed, so an idle connection's future
            // does not carry this wait).
            None => {
                waited = true;
                match Box::pin(wait_budget(budget, stalled.as_mut(), stop)).await {
                    Budget::Taken(r) => r,
                    Budget::Stalled => return Err(stalled_error()),
                    Budget::Stop => return Ok(Read::End),
                }
            }
        };
        let before = rq.queued_fds();
        let filled = try_fill(&mut ready, rq);
        drop(ready);
        // The fds that arrived keep their share of the budget; the rest goes back.
        let arrived = rq.queued_fds().saturating_sub(before);
        if let Some(share) = reservation.split(arrived.min(SCM_MAX_FD)) {
            match parked {
                Some(p) => p.merge(share),
                None => *parked = Some(share),
            }
        }
        drop(reservation);
        match filled {
            // Spurious readiness: wait again.
            Ok(None) => continue,
            Ok(Some(false)) => return Ok(Read::End),
            Ok(Some(true)) if waited => return Ok(Read::AfterWait),
            Ok(Some(true)) => return Ok(Read::AtOnce),
            Err(e) => return Err(ConnectionError::new(e)),
        }
    }
}

/// What ended [`read_more`]'s wait for data.
enum Woke<'a> {
    Ready(std::io::Result<AsyncFdReadyGuard<'a, OwnedFd>>),
    Stalled,
    Stop,
}

/// What ended a wait for the fd budget.
enum Budget {
    Taken(BudgetShare),
    Stalled,
    Stop,
}

/// Waits for a read's share of the fd budget, unless the peer stalls or `stop` says so.
async fn wait_budget(
    budget: &Arc<FdBudget>,
    stalled: Option<&mut std::pin::Pin<Box<tokio::time::Sleep>>>,
    stop: &mut watch::Receiver<bool>,
) -> Budget {
    let stalled = async {
        match stalled {
            Some(s) => s.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = budget.take(SCM_MAX_FD) => Budget::Taken(r),
        () = stalled => Budget::Stalled,
        _ = stop.changed() => Budget::Stop,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;
    use crate::rpc::conn::Role;
    use crate::rpc::driver::socket::Socket;

    fn server_conn() -> (Arc<TokioConn>, UnixStream) {
        let (a, peer) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let conn = TokioConn::new(
            Socket::new(OwnedFd::from(a)).unwrap(),
            Role::Server,
            &Settings::default(),
        );
        (conn, peer)
    }

    /// The reader gives way to other tasks after a read only when the read did not wait:
    /// `read_more` says which it was.
    #[tokio::test]
    async fn a_read_says_whether_it_waited_for_its_bytes() {
        let (conn, mut peer) = server_conn();
        let settings = Settings::default();
        let mut rq = RecvQueue::for_server(&settings);
        let budget = FdBudget::new(1024);
        let (_stop_tx, mut stop) = watch::channel(false);
        let mut parked = None;
        let timeout = Duration::from_secs(10);

        // Nothing there: the read waits (the task is pending), then the bytes come.
        let write = async {
            tokio::task::yield_now().await;
            peer.write_all(b"abc").unwrap();
        };
        let (read, ()) = tokio::join!(
            read_more(&conn, &mut rq, &budget, &mut parked, timeout, &mut stop),
            write
        );
        assert!(
            matches!(read, Ok(Read::AfterWait)),
            "{:?}",
            read.map(|_| ())
        );
        assert_eq!(rq.buffered_bytes(), 3);

        // Bytes there already (the socket known readable since): read at once.
        peer.write_all(b"def").unwrap();
        let read = read_more(&conn, &mut rq, &budget, &mut parked, timeout, &mut stop).await;
        assert!(matches!(read, Ok(Read::AtOnce)), "{:?}", read.map(|_| ()));
        assert_eq!(rq.buffered_bytes(), 6);

        // A peer that closed with nothing unread: the end.
        let (conn, peer) = server_conn();
        let mut rq = RecvQueue::for_server(&settings);
        drop(peer);
        let read = read_more(&conn, &mut rq, &budget, &mut parked, timeout, &mut stop).await;
        assert!(matches!(read, Ok(Read::End)), "{:?}", read.map(|_| ()));
    }
}
