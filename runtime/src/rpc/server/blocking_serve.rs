//! [`BlockingServer`]: serves a [`Service`](super::Service) with no async runtime at all: one
//! thread accepts, and each connection has a thread of its own, which is its whole runtime.

use std::borrow::Borrow;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::admission::{
    Authorize, ServerConfig, admit, connection_span, is_transient_accept_error,
};
use super::dispatch::{Served, Serving};
use super::hooks::{CallHook, Hooks};
use super::host::{Caller, Host, ServeEndpointError};
use super::peer::PeerCredentials;
use super::services::ServiceSet;
use crate::rpc::driver::handle::Driven;
use crate::rpc::driver::polled_conn::{LoopWake, PolledConn};
use crate::rpc::driver::polled_limits::FdBudget;
use crate::rpc::driver::polled_server::serve_polled;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;
use crate::transport::address::check_unix_stream;

/// Serves a [`Service`](super::Service) (or several, see [`ServiceSet`]) on plain threads,
/// with no async runtime in the build: for a privilege-separated helper, a child started
/// with [`child::spawn`](crate::child::spawn), a small daemon. The same service, limits,
/// hooks, [`Context`](crate::Context), streams and sinks with fds, fd budget, stall detection
/// and graceful shutdown as the tokio [`Server`](crate::Server).
///
/// One thread accepts; each connection is served by a thread of its own (at most
/// [`Settings::max_connections`]), which runs the connection's handlers, stream producers and
/// sink consumers as tasks, reads, writes, and sleeps in one `poll(2)`. A handler that waits
/// (for a sink's next item, a deadline, another thread) lets the connection's other calls run
/// meanwhile. Handlers are the trait's `async fn`s: they may await fdrpc's streams and sinks
/// and any future that needs no async runtime's reactor (a tokio timer or socket needs one).
///
/// # Examples
///
/// ```
/// # use std::os::unix::net::UnixStream;
/// #[fdrpc::service]
/// trait Echo {
///     async fn echo(&self, text: String) -> String;
/// }
/// struct Impl;
/// impl Echo for Impl {
///     async fn echo(&self, text: String) -> String {
///         text
///     }
/// }
///
/// let (server_end, client_end) = UnixStream::pair().unwrap();
/// let server = std::thread::spawn(move || {
///     fdrpc::BlockingServer::new().serve_connection(server_end, EchoServer::new(Impl))
/// });
/// let client = EchoBlockingClient::new(fdrpc::BlockingClient::new(client_end));
/// assert_eq!(client.echo("hi".into()).unwrap(), "hi");
/// drop(client);
/// server.join().unwrap().unwrap();
/// ```
#[derive(Clone)]
pub struct BlockingServer {
    config: ServerConfig,
}

impl std::fmt::Debug for BlockingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.debug("BlockingServer", f)
    }
}

impl Default for BlockingServer {
    fn default() -> Self {
        Self::new()
    }
}

/// The same settings, authorization and hooks, served with no async runtime.
#[cfg(feature = "tokio")]
impl From<super::Server> for BlockingServer {
    fn from(server: super::Server) -> Self {
        BlockingServer {
            config: server.into_config(),
        }
    }
}

/// Stops a [`BlockingServer`] gracefully, from any thread: it stops accepting and reading new
/// calls, ends every server stream with an `abort` whose cause says the server is shutting
/// down, lets calls in flight finish and their replies be written (for at most the stall
/// timeout), closes every connection, and [`BlockingServer::serve_with_shutdown`] returns.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    stop: AtomicBool,
    /// The loops to wake when it is set: the accept loop's and each connection's.
    wakes: Mutex<Vec<Weak<LoopWake>>>,
}

impl Shutdown {
    /// A shutdown not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Triggers it: the servers it was given to shut down.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let wakes = self
            .inner
            .wakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for w in wakes.iter().filter_map(Weak::upgrade) {
            w.wake();
        }
    }

    /// Whether it was triggered.
    pub fn is_shutdown(&self) -> bool {
        self.inner.stop.load(Ordering::Acquire)
    }

    /// How many loops it would stop now: each server's accept loop (running from just before
    /// its first `accept`) and each of their connections. Says when a server started on
    /// another thread is accepting, and how many connections are still draining after
    /// [`Shutdown::shutdown`].
    ///
    /// ```
    /// let shutdown = fdrpc::Shutdown::new();
    /// assert_eq!(shutdown.loops(), 0);
    /// ```
    pub fn loops(&self) -> usize {
        let wakes = self.inner.wakes.lock().unwrap_or_else(|p| p.into_inner());
        wakes.iter().filter(|w| w.strong_count() > 0).count()
    }

    fn watch(&self, wake: &Arc<LoopWake>) {
        let mut wakes = self.inner.wakes.lock().unwrap_or_else(|p| p.into_inner());
        wakes.retain(|w| w.strong_count() > 0);
        wakes.push(Arc::downgrade(wake));
        drop(wakes);
        // Set before it was watched: the loop must still see it.
        if self.is_shutdown() {
            wake.wake();
        }
    }
}

/// What the connections of one blocking server share.
struct Shared {
    settings: Settings,
    budget: Arc<FdBudget>,
    hooks: Option<Hooks>,
    authorize: Option<Arc<Authorize>>,
    host: Host,
}

impl BlockingServer {
    /// A server with the default [`Settings`].
    pub fn new() -> Self {
        Self::with_settings(Settings::default())
    }

    /// A server applying `settings` (given as `Settings` or `&Settings`, as every entry point
    /// takes them).
    pub fn with_settings(settings: impl Borrow<Settings>) -> Self {
        BlockingServer {
            config: ServerConfig::new(settings.borrow().clone()),
        }
    }

    /// The settings this server applies.
    pub fn settings(&self) -> &Settings {
        &self.config.settings
    }

    /// Decides at accept time, from the peer's credentials, whether to serve a connection;
    /// a refused connection is closed before anything is read from it.
    pub fn authorize(
        mut self,
        f: impl Fn(&PeerCredentials) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.authorize = Some(Arc::new(f));
        self
    }

    /// Adds a hook that runs around every call; see [`CallHook`].
    pub fn hook(mut self, hook: impl CallHook) -> Self {
        self.config.hooks.push(Arc::new(hook));
        self
    }

    fn shared(&self, host: Host) -> Shared {
        Shared {
            budget: FdBudget::new(&self.config.settings),
            hooks: (!self.config.hooks.is_empty()).then(|| self.config.hooks.as_slice().into()),
            authorize: self.config.authorize.clone(),
            settings: self.config.settings.clone(),
            host,
        }
    }

    /// Serves `service` on `listener` (a std `UnixListener`, or the `OwnedFd` of a listening
    /// socket, such as one from [`ListenFds`](crate::systemd::ListenFds)) until an accept
    /// fails. Blocks the calling thread.
    ///
    /// # Errors
    ///
    /// The error of `accept`, or `listener` is not a listening Unix stream socket.
    pub fn serve<S: ServiceSet>(&self, listener: impl Into<OwnedFd>, service: S) -> io::Result<()> {
        self.serve_with_shutdown(listener, service, &Shutdown::new())
    }

    /// Serves `service` on `listener` until `shutdown` is triggered, then shuts down
    /// gracefully (see [`Shutdown`]). Blocks the calling thread.
    ///
    /// # Errors
    ///
    /// The error of `accept`, or `listener` is not a listening Unix stream socket.
    pub fn serve_with_shutdown<S: ServiceSet>(
        &self,
        listener: impl Into<OwnedFd>,
        service: S,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        let fd: OwnedFd = listener.into();
        check_unix_stream(&fd, true)?;
        let listener = UnixListener::from(fd);
        listener.set_nonblocking(true)?;
        let wake = Arc::new(LoopWake::new()?);
        shutdown.watch(&wake);
        let service = Arc::new(service);
        let live = Arc::new(AtomicUsize::new(0));
        let adopted = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new_cyclic(|shared| {
            self.shared(Host::Blocking(BlockingHost {
                live: live.clone(),
                max: self.config.settings.max_connections,
                shutdown: shutdown.clone(),
                shared: shared.clone(),
                threads: adopted.clone(),
            }))
        });
        let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
        let result = loop {
            if shutdown.is_shutdown() {
                break Ok(());
            }
            threads.retain(|t| !t.is_finished());
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = wait_readable(&listener, &wake) {
                        break Err(e);
                    }
                    wake.clear();
                    continue;
                }
                Err(e) if is_transient_accept_error(&e) => {
                    tracing::warn!(error = %e, "fdrpc accept failed; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                Err(e) => break Err(e),
            };
            if live.load(Ordering::Acquire) >= self.config.settings.max_connections {
                tracing::warn!(
                    max = self.config.settings.max_connections,
                    "fdrpc connection refused: too many connections"
                );
                continue;
            }
            live.fetch_add(1, Ordering::AcqRel);
            let (service, shared, shutdown, ours) = (
                service.clone(),
                shared.clone(),
                shutdown.clone(),
                live.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("fdrpc-conn".into())
                .spawn(move || {
                    // Failures are logged where they happen, with their peer.
                    let _ = serve_one(stream, &*service, &shared, &shutdown);
                    ours.fetch_sub(1, Ordering::AcqRel);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::warn!(error = %e, "fdrpc connection dropped: no thread for it");
                    // The closure (and the stream) was dropped with the failed spawn.
                    live.fetch_sub(1, Ordering::AcqRel);
                }
            }
        };
        shutdown.shutdown();
        for t in threads {
            let _ = t.join();
        }
        join_all(&adopted);
        result
    }

    /// Serves `service` on one connected stream (a std `UnixStream`, or the `OwnedFd` of one)
    /// on the calling thread, until the peer closes it, and the endpoints its handlers served
    /// ([`Context::serve`](super::Context::serve), each on a thread of its own) until theirs
    /// do.
    ///
    /// # Errors
    ///
    /// Why the connection ended, if not by a clean close; the stream is not a connected Unix
    /// stream socket or its peer's credentials could not be read; or the authorization hook
    /// refused it.
    pub fn serve_connection<S: ServiceSet>(
        &self,
        stream: impl Into<OwnedFd>,
        service: S,
    ) -> Result<(), ConnectionError> {
        let io = |e: io::Error| ConnectionError::new(e.into());
        let fd: OwnedFd = stream.into();
        check_unix_stream(&fd, false).map_err(io)?;
        let shutdown = Shutdown::new();
        // This connection, and the endpoints its handlers serve.
        let live = Arc::new(AtomicUsize::new(1));
        let adopted = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new_cyclic(|shared| {
            self.shared(Host::Blocking(BlockingHost {
                live,
                max: self.config.settings.max_connections,
                shutdown: shutdown.clone(),
                shared: shared.clone(),
                threads: adopted.clone(),
            }))
        });
        let ended = serve_one(UnixStream::from(fd), &service, &shared, &shutdown);
        join_all(&adopted);
        ended
    }
}

/// Joins the endpoints' threads, and those they started meanwhile.
fn join_all(threads: &Mutex<Vec<std::thread::JoinHandle<()>>>) {
    loop {
        let batch = std::mem::take(&mut *lock(threads));
        if batch.is_empty() {
            break;
        }
        for t in batch {
            let _ = t.join();
        }
    }
}

/// Locks `m`, whatever a panicking holder left in it (a list of threads to join).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The blocking server's side of [`Host`]: serves an endpoint on a thread of its own, counted
/// with the accepted connections and joined at shutdown.
#[derive(Clone)]
pub(crate) struct BlockingHost {
    live: Arc<AtomicUsize>,
    max: usize,
    shutdown: Shutdown,
    shared: Weak<Shared>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl BlockingHost {
    pub(crate) fn adopt<S: ServiceSet>(
        &self,
        stream: UnixStream,
        service: S,
    ) -> Result<(), ServeEndpointError> {
        let shared = match self.shared.upgrade() {
            Some(shared) if !self.shutdown.is_shutdown() => shared,
            _ => return Err(ServeEndpointError::ShuttingDown),
        };
        let taken = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(ServeEndpointError::TooManyConnections(self.max));
        }
        let peer = match PeerCredentials::of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(e.into());
            }
        };
        let (shutdown, live) = (self.shutdown.clone(), self.live.clone());
        let spawned = std::thread::Builder::new()
            .name("fdrpc-endpoint".into())
            .spawn(move || {
                // Failures are logged where they happen, with their peer.
                let _ = serve_admitted(stream, peer, &service, &shared, &shutdown);
                live.fetch_sub(1, Ordering::AcqRel);
            });
        match spawned {
            Ok(t) => {
                lock(&self.threads).push(t);
                Ok(())
            }
            Err(e) => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                Err(e.into())
            }
        }
    }
}

/// Checks the peer of one accepted connection, then serves it on this thread.
fn serve_one<S: ServiceSet + ?Sized>(
    stream: UnixStream,
    service: &S,
    shared: &Shared,
    shutdown: &Shutdown,
) -> Result<(), ConnectionError> {
    let peer = admit(&stream, shared.authorize.as_deref())?;
    serve_admitted(stream, peer, service, shared, shutdown)
}

/// Serves one connection whose peer is admitted, on this thread.
fn serve_admitted<S: ServiceSet + ?Sized>(
    stream: UnixStream,
    peer: PeerCredentials,
    service: &S,
    shared: &Shared,
    shutdown: &Shutdown,
) -> Result<(), ConnectionError> {
    let io = |e: io::Error| ConnectionError::new(e.into());
    let span = connection_span(&peer);
    let _entered = span.as_ref().map(tracing::Span::enter);
    let caller = Caller::new(peer, shared.host.clone());
    let conn = PolledConn::new(stream, &shared.settings).map_err(io)?;
    shutdown.watch(conn.loop_wake());
    // The handlers that wait run as the connection's tasks: its end stops them.
    let served = Served::new(Driven::Polled(conn.clone()));
    let serving = Serving {
        services: service,
        served: &served,
        caller: &caller,
        hooks: shared.hooks.as_ref(),
    };
    serve_polled(
        &conn,
        &shared.settings,
        &shared.budget,
        &serving,
        &shutdown.inner.stop,
    )
}

/// Waits until `listener` has a connection to accept or `wake` is woken.
fn wait_readable(listener: &UnixListener, wake: &LoopWake) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [
        PollFd::new(listener, PollFlags::IN),
        PollFd::from_borrowed_fd(wake.as_fd(), PollFlags::IN),
    ];
    match rustix::event::poll(&mut fds, None) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
