//! One server connection on tokio: the reader loop that hands frames to the connection core
//! and dispatches the calls it returns, within the server's shared.

use std::sync::Arc;
use std::task::Poll;

use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::dispatch::{Serving, dispatch};
use super::hooks::Hooks;
use super::peer::PeerCredentials;
use super::services::ServiceSet;
use crate::rpc::conn::{Received, Role};
use crate::rpc::driver::socket::{Socket, try_fill};
use crate::rpc::driver::tokio_conn::TokioConn;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;
use crate::transport::error::{FdStreamError, TransportError};
use crate::transport::{RecvQueue, SCM_MAX_FD};

/// What the connections of one server share: its settings, its fd budget and its hooks.
pub(crate) struct ServerShared {
    settings: Settings,
    /// Fds received and not yet released, over all connections.
    budget: Arc<Semaphore>,
    /// `None` if the server has none.
    hooks: Option<Hooks>,
}

impl ServerShared {
    pub(crate) fn new(settings: &Settings, hooks: &[Arc<dyn super::CallHook>]) -> Self {
        let mut settings = settings.clone();
        // Two `sendmsg`s' worth at least, and a frame larger than half the budget could never
        // be received whole.
        settings.fd_budget = settings.fd_budget.max(2 * SCM_MAX_FD);
        settings.max_fds_per_frame = settings.max_fds_per_frame.min(settings.fd_budget / 2);
        ServerShared {
            budget: Arc::new(Semaphore::new(settings.fd_budget)),
            settings,
            hooks: (!hooks.is_empty()).then(|| hooks.into()),
        }
    }
}

/// Serves one connection until the peer closes it, it breaks the protocol, or `stop` says
/// so; then lets calls in flight finish (for at most the stall timeout) and closes it.
///
/// # Errors
///
/// Why the connection ended, if not by a clean close or `stop`.
pub(crate) async fn run_connection<S: ServiceSet>(
    stream: UnixStream,
    peer: Arc<PeerCredentials>,
    service: Arc<S>,
    shared: &ServerShared,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let settings = &shared.settings;
    let io = |e: std::io::Error| ConnectionError::new(e.into());
    let conn = TokioConn::new(
        Socket::from_tokio(stream).map_err(io)?,
        Role::Server,
        settings,
    );
    // However this future ends (returned, or dropped because its server was), the connection
    // closes now: the socket is shut down, the writer and the handlers' tasks stop, and every
    // fd they held is closed.
    let _teardown = Teardown { conn: conn.clone() };
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    let mut rq = RecvQueue::new(settings);
    // Budget units of the fds waiting in `rq`; a frame takes its share with it.
    let mut parked: Option<OwnedSemaphorePermit> = None;
    let timeout = settings.stall_timeout;
    let (max_bytes, max_fds) = (settings.max_backlog_bytes, settings.max_backlog_fds);
    let mut wakers = Vec::new();
    let serving = Serving {
        services: &*service,
        conn: &conn,
        peer: &peer,
        hooks: shared.hooks.as_ref(),
    };
    let ended: Result<(), ConnectionError> = loop {
        if *stop.borrow() {
            break Ok(());
        }
        // Take a call slot before reading the next frame: a peer that floods calls stops
        // being read, and its fds stay in the kernel's socket buffer, not ours.
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                conn.end_deferred();
                tokio::select! {
                    p = in_flight.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break Ok(()),
                    },
                    _ = stop.changed() => break Ok(()),
                    // Not reading, this side would not see the peer go: a peer that closed
                    // with every call slot taken (sinks it never feeds, say) would leave its
                    // handlers waiting for ever. Found by the `server_connection` fuzzer.
                    () = peer_gone(&conn) => break Ok(()),
                }
            }
        };
        // Likewise while replies pile up unread: a peer that never reads stops being read,
        // and is dropped once its replies stay unread for the stall timeout.
        let (bytes, fds) = conn.backlog();
        if bytes > max_bytes || fds > max_fds {
            conn.end_deferred();
            tokio::select! {
                waited = conn.wait_room_while_peer_reads(max_bytes, max_fds) => {
                    if let Err(e) = waited {
                        break Err(e);
                    }
                }
                _ = stop.changed() => break Ok(()),
            }
        }
        // A call that is complete now arrived with the last read (its deadline counts from
        // then).
        let arrived = rq.last_read_at();
        let frame = match rq.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                drop(permit);
                // Every buffered frame is dispatched: send the replies that are ready now.
                conn.flush_inline();
                // Let the other connections (and this one's handlers) run before reading more:
                // a peer that keeps its socket full would otherwise hold the thread for a
                // whole cooperative budget of reads, and the calls of every other connection
                // wait (measured: a one-at-a-time call's p99 went to 25 ms beside a connection
                // with 64 calls in flight).
                tokio::task::yield_now().await;
                match read_more(
                    &conn,
                    &mut rq,
                    &shared.budget,
                    &mut parked,
                    timeout,
                    &mut stop,
                )
                .await
                {
                    Ok(true) => continue,
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            Err(e) => break Err(ConnectionError::new(e)),
        };
        // The frame's share of the fd budget goes back when its call is done with its fds.
        let lease = parked.as_mut().and_then(|p| p.split(frame.fds.len()));
        // Replies queued while the frames of this read are dispatched leave together, in
        // the `flush_inline` above, without waking the writer. A call goes to dispatch
        // without the connection's lock; other frames go through it.
        conn.defer_flush();
        let call = match Received::new(frame).into_call() {
            Ok(call) => Some(call),
            Err(other) => {
                let (handled, cancelled) = conn.with_wakers(&mut wakers, |c, wake| {
                    (c.receive(other, wake), c.take_cancelled_handlers())
                });
                // Handlers whose callers cancelled them are dropped now, before the next
                // frame is read, without the connection's lock.
                for handler in cancelled {
                    handler.stop();
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
            if let Some(mut inline) = dispatch(&serving, call, arrived, (permit, lease)) {
                let first = std::future::poll_fn(|cx| Poll::Ready(inline.as_mut().poll(cx))).await;
                if first.is_pending() {
                    // A oneway handler that waits: nothing queued may wait for it.
                    conn.end_deferred();
                    inline.await;
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
    conn.with_wakers(&mut wakers, |c, wake| c.fail_streams(&why, wake));
    // Let calls in flight finish and their replies go out (a failed connection too: the
    // peer may still read), but not for longer than the stall timeout; a peer already found
    // not reading is not given a second one.
    let not_reading = matches!(
        ended.as_ref().map_err(ConnectionError::transport),
        Err(TransportError::FdStream(FdStreamError::NotReading(_)))
    );
    if !not_reading {
        let finish = async {
            let _ = in_flight.acquire_many(settings.max_in_flight as u32).await;
            conn.drained().await;
        };
        let _ = tokio::time::timeout(timeout, finish).await;
    }
    ended
}

/// Closes a connection when its task ends or is dropped; see [`run_connection`].
struct Teardown {
    conn: Arc<TokioConn>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.conn.fail(ConnectionError::new(TransportError::Closed));
        self.conn.stop_writer();
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

/// Nothing complete is buffered: waits for data and reads it, within the fd budget, unless
/// the peer stalls or `stop` says so. `Ok(false)` at a clean end (of the stream, or by
/// `stop`).
async fn read_more(
    conn: &TokioConn,
    rq: &mut RecvQueue,
    budget: &Arc<Semaphore>,
    parked: &mut Option<OwnedSemaphorePermit>,
    timeout: std::time::Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, ConnectionError> {
    let deadline = rq
        .stall_deadline(timeout)
        .map(tokio::time::Instant::from_std);
    let stalled = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stalled);
    let stalled_error = || ConnectionError::new(FdStreamError::Stalled(timeout).into());
    loop {
        // Wait for data first, then take a share of the fd budget for the one read that
        // follows: an idle connection holds none of it.
        let mut ready = tokio::select! {
            r = conn.socket().readable() => r.map_err(|e| ConnectionError::new(e.into()))?,
            () = &mut stalled => return Err(stalled_error()),
            _ = stop.changed() => return Ok(false),
        };
        let reservation = tokio::select! {
            r = budget.clone().acquire_many_owned(SCM_MAX_FD as u32) => r.ok(),
            () = &mut stalled => return Err(stalled_error()),
            _ = stop.changed() => return Ok(false),
        };
        let Some(mut reservation) = reservation else {
            return Ok(false);
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
            Ok(Some(more)) => return Ok(more),
            Err(e) => return Err(ConnectionError::new(e)),
        }
    }
}
