//! [`Server`]: serves a [`Service`] on a listener or on connected streams.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::dispatch::ConnState;
use super::error::ConnectionError;
use super::flow::DEFAULT_WINDOW;
use super::peer::PeerCredentials;
use super::reader;
use super::routes::Routes;
use super::service::{Service, StreamCtx};
use super::socket::Socket;
use super::writer::Writer;
use crate::error::{FdStreamError, TransportError};
use crate::transport::SCM_MAX_FD;
use crate::transport::{Limits, RecvQueue};

type Authorize = dyn Fn(&PeerCredentials) -> bool + Send + Sync;

/// Serves a [`Service`]: accepts connections, reads calls, runs handlers concurrently, and
/// writes replies with their fds.
///
/// Every limit has a safe default:
///
/// | setting | default |
/// |---|---|
/// | [`Server::limits`] | [`Limits::default`] (16 MiB frames, 1024 fds per frame, 2048 unclaimed fds per connection) |
/// | [`Server::max_in_flight`] | 256 calls per connection (reading pauses beyond it) |
/// | [`Server::max_connections`] | 1024 (further connections are closed at once) |
/// | [`Server::fd_budget`] | half the `RLIMIT_NOFILE` soft limit, between 512 and 65536: fds received and not yet released by their call, over all connections (reading pauses beyond it) |
/// | [`Server::stall_timeout`] | 10 s: a frame left incomplete, fds left unclaimed, or replies left unread that long close the connection |
/// | [`Server::max_backlog`] | 4 MiB and 1024 fds of replies not yet written per connection (reading pauses beyond it) |
///
/// # Examples
///
/// See the crate docs of `fdrpc` and `examples/quickstart.rs`.
#[derive(Clone)]
pub struct Server {
    limits: Limits,
    max_in_flight: usize,
    max_connections: usize,
    authorize: Option<Arc<Authorize>>,
    fd_budget: usize,
    stall_timeout: Duration,
    max_backlog: (usize, usize),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_connections", &self.max_connections)
            .field("authorize", &self.authorize.is_some())
            .field("fd_budget", &self.fd_budget)
            .field("stall_timeout", &self.stall_timeout)
            .field("max_backlog", &self.max_backlog)
            .finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the default settings.
    pub fn new() -> Self {
        Server {
            limits: Limits::default(),
            max_in_flight: 256,
            max_connections: 1024,
            authorize: None,
            fd_budget: default_fd_budget(),
            stall_timeout: Duration::from_secs(10),
            max_backlog: (4 << 20, 1024),
        }
    }

    /// Sets how many received fds the server holds at once over all connections: fds waiting
    /// for their frame, and fds of calls whose handlers have not finished. Beyond it the
    /// server stops reading until some are released, so a flood of fds never exhausts
    /// `RLIMIT_NOFILE`. A frame may carry at most half the budget.
    pub fn fd_budget(mut self, fds: usize) -> Self {
        self.fd_budget = fds.max(2 * SCM_MAX_FD);
        self
    }

    /// Sets how long a frame may stay incomplete, received fds unclaimed, or replies
    /// unread, before the connection is closed.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Sets how many bytes and fds of replies may wait to be written on one connection
    /// before the server stops reading its calls.
    pub fn max_backlog(mut self, bytes: usize, fds: usize) -> Self {
        self.max_backlog = (bytes, fds);
        self
    }

    /// Sets the limits on what each connection receives.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how many calls one connection may have running at once; beyond it the server
    /// stops reading from that connection until one finishes.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// Sets how many connections are served at once; beyond it new connections are closed.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Decides at accept time, from the peer's credentials, whether to serve a connection;
    /// a refused connection is closed before anything is read from it.
    pub fn authorize(
        mut self,
        f: impl Fn(&PeerCredentials) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(f));
        self
    }

    /// Serves `service` on `listener` until an accept fails.
    ///
    /// # Errors
    ///
    /// The error of `accept`.
    pub async fn serve<S: Service>(
        self,
        listener: UnixListener,
        service: S,
    ) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, service, std::future::pending())
            .await
    }

    /// Serves `service` on `listener` until `signal` completes, then shuts down gracefully:
    /// stops accepting and reading new calls, lets calls in flight finish and their replies
    /// be written, then closes every connection.
    ///
    /// # Errors
    ///
    /// The error of `accept`.
    pub async fn serve_with_shutdown<S: Service>(
        self,
        listener: UnixListener,
        service: S,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let service = Arc::new(service);
        let budget = Arc::new(Semaphore::new(self.fd_budget));
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut conns = JoinSet::new();
        let mut signal = std::pin::pin!(signal);
        let result = loop {
            tokio::select! {
                () = &mut signal => break Ok(()),
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(e) if is_transient_accept_error(&e) => {
                            tracing::warn!(error = %e, "fdrpc accept failed; retrying");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        Err(e) => break Err(e),
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(max = self.max_connections, "fdrpc connection refused: too many connections");
                        continue;
                    };
                    let server = self.clone();
                    let service = service.clone();
                    let stop = stop_rx.clone();
                    let budget = budget.clone();
                    conns.spawn(async move {
                        let _slot = slot;
                        if let Err(e) = server.run_connection(stream, service, stop, budget).await {
                            tracing::info!(error = %e, "fdrpc connection ended");
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        };
        let _ = stop_tx.send(true);
        while conns.join_next().await.is_some() {}
        result
    }

    /// Serves `service` on one connected stream until the peer closes it.
    ///
    /// # Errors
    ///
    /// Why the connection ended, if not by a clean close; the peer's credentials could not be
    /// read; or the authorization hook refused it.
    pub async fn serve_connection<S: Service>(
        &self,
        stream: UnixStream,
        service: S,
    ) -> Result<(), TransportError> {
        let (_stop_tx, stop_rx) = watch::channel(false);
        let budget = Arc::new(Semaphore::new(self.fd_budget));
        self.run_connection(stream, Arc::new(service), stop_rx, budget)
            .await
    }

    async fn run_connection<S: Service>(
        &self,
        stream: UnixStream,
        service: Arc<S>,
        mut stop: watch::Receiver<bool>,
        budget: Arc<Semaphore>,
    ) -> Result<(), TransportError> {
        let peer = Arc::new(PeerCredentials::of(&stream)?);
        if let Some(authorize) = &self.authorize {
            if !authorize(&peer) {
                tracing::info!(
                    pid = peer.pid(),
                    uid = peer.uid(),
                    "fdrpc connection refused by the authorization hook"
                );
                return Err(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "refused by the authorization hook",
                )));
            }
        }
        let stream = Arc::new(Socket::from_tokio(stream)?);
        let writer = Arc::new(Writer::new(
            stream.clone(),
            self.max_backlog,
            self.stall_timeout,
        ));
        let writer_task = tokio::spawn({
            let writer = writer.clone();
            async move { writer.run().await }
        });
        let in_flight = Arc::new(Semaphore::new(self.max_in_flight));
        // A frame larger than half the budget could never be received whole.
        let mut limits = self.limits;
        limits.max_fds_per_frame = limits.max_fds_per_frame.min(self.fd_budget / 2);
        let mut rq = RecvQueue::new(limits);
        // Budget units of the fds waiting in `rq`; a frame takes its share with it.
        let mut parked: Option<OwnedSemaphorePermit> = None;
        let conn = ConnState {
            writer: writer.clone(),
            peer,
            streams: StreamCtx {
                writer: writer.clone(),
                routes: Arc::new(Routes::default()),
                sink_window: DEFAULT_WINDOW,
            },
        };
        let timeout = self.stall_timeout;
        let (max_bytes, max_fds) = self.max_backlog;
        let ended = loop {
            if *stop.borrow() {
                break Ok(());
            }
            // Take a call slot before reading the next frame: a peer that floods calls stops
            // being read, and its fds stay in the kernel's socket buffer, not ours.
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => p.ok(),
                _ = stop.changed() => break Ok(()),
            };
            let Some(permit) = permit else { break Ok(()) };
            // Likewise while replies pile up unread: a peer that never reads stops being
            // read, and is dropped once its replies stay unread for the stall timeout.
            let (bytes, fds) = writer.backlog();
            if bytes > max_bytes || fds > max_fds {
                tokio::select! {
                    () = writer.wait_backlog_below(max_bytes, max_fds) => {}
                    () = tokio::time::sleep(timeout) => {
                        break Err(FdStreamError::NotReading(timeout).into());
                    }
                    _ = stop.changed() => break Ok(()),
                }
            }
            match rq.next_frame() {
                Ok(Some(frame)) => {
                    let lease = parked.as_mut().and_then(|p| p.split(frame.fds.len()));
                    let inline =
                        conn.handle_frame(&*service, &frame.frame, frame.fds, permit, lease);
                    // Oneway handlers run here, in order, each finished before the next frame
                    // is read, so later calls on this connection see their effects; calls get
                    // their first poll here and a task only if they wait.
                    if let Some(fut) = inline {
                        fut.await;
                    }
                    continue;
                }
                Ok(None) => drop(permit),
                Err(e) => break Err(e),
            }
            // Every buffered frame is dispatched: send the replies that are ready now.
            writer.flush_inline();
            // Nothing complete is buffered: read more, within the fd budget, unless the peer
            // has stalled.
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
            // Wait for data first, then take a share of the fd budget for the one read that
            // follows: an idle connection holds none of it.
            let mut ready = tokio::select! {
                r = stream.readable() => match r {
                    Ok(guard) => guard,
                    Err(e) => break Err(e.into()),
                },
                () = &mut stalled => break Err(FdStreamError::Stalled(timeout).into()),
                _ = stop.changed() => break Ok(()),
            };
            let reservation = tokio::select! {
                r = budget.clone().acquire_many_owned(SCM_MAX_FD as u32) => r.ok(),
                () = &mut stalled => break Err(FdStreamError::Stalled(timeout).into()),
                _ = stop.changed() => break Ok(()),
            };
            let Some(mut reservation) = reservation else {
                break Ok(());
            };
            let before = rq.queued_fds();
            let filled = reader::try_fill(&mut ready, &mut rq);
            drop(ready);
            // The fds that arrived keep their share of the budget; the rest goes back.
            let arrived = rq.queued_fds().saturating_sub(before);
            if let Some(share) = reservation.split(arrived.min(SCM_MAX_FD)) {
                match &mut parked {
                    Some(p) => p.merge(share),
                    None => parked = Some(share),
                }
            }
            drop(reservation);
            let filled = match filled {
                // Spurious readiness: wait again.
                Ok(None) => continue,
                Ok(Some(more)) => Ok(more),
                Err(e) => Err(e),
            };
            match filled {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Drop what was received but not dispatched, closing its fds; end every stream.
        drop(rq);
        drop(parked);
        let why = match &ended {
            Ok(()) => ConnectionError::new(TransportError::Closed),
            Err(e) => ConnectionError::new(clone_transport_error(e)),
        };
        conn.streams.routes.fail_all(&why);
        if let Err(e) = &ended {
            tracing::warn!(error = %e, pid = conn.peer.pid(), "fdrpc connection failed; closing it");
        }
        // Let calls in flight finish and their replies go out (a failed connection too: the
        // peer may still read), but not for longer than the stall timeout.
        let finish = async {
            let _ = in_flight.acquire_many(self.max_in_flight as u32).await;
            writer.drained().await;
        };
        let _ = tokio::time::timeout(timeout, finish).await;
        writer.fail(ConnectionError::new(TransportError::Closed));
        writer_task.abort();
        ended
    }
}

/// Half the soft `RLIMIT_NOFILE`, between 512 and 65536.
fn default_fd_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    usize::try_from(soft / 2)
        .unwrap_or(usize::MAX)
        .clamp(512, 65536)
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EINTR
        )
    )
}

/// A description of `e` to hand to the connection's streams (transport errors hold an
/// `io::Error`, which is not `Clone`).
fn clone_transport_error(e: &TransportError) -> TransportError {
    match e {
        TransportError::Io(io) => {
            TransportError::Io(std::io::Error::new(io.kind(), io.to_string()))
        }
        TransportError::Frame(f) => TransportError::Frame(f.clone()),
        TransportError::FdStream(f) => TransportError::FdStream(f.clone()),
        TransportError::Closed => TransportError::Closed,
        TransportError::ClosedMidFrame(n) => TransportError::ClosedMidFrame(*n),
        other => TransportError::Io(std::io::Error::other(other.to_string())),
    }
}
