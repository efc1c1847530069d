//! [`Server`]: serves a [`Service`] on a listener or on connected streams.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, future};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::admission::{
    Authorize, ServerConfig, admit, connection_span, is_transient_accept_error,
};
use super::connection::{ServerShared, run_connection};
use super::hooks::CallHook;
use super::host::{Caller, Host, ServeEndpointError};
use super::listener::{IntoConnection, IntoListener};
use super::peer::PeerCredentials;
use super::services::ServiceSet;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;

/// Serves a [`Service`](super::Service) (or several, see [`ServiceSet`]): accepts
/// connections, reads calls, runs handlers concurrently, and
/// writes replies with their fds.
///
/// Every limit is a [`Settings`] with a safe default (its docs have the table): frames, fds
/// per frame and queued, calls in flight per connection, connections, the server-wide fd
/// budget, the stall timeout, the reply backlog.
///
/// # Examples
///
/// See the crate docs of `fdrpc` and `examples/quickstart.rs`.
#[derive(Clone)]
pub struct Server {
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.debug("Server", f)
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the default [`Settings`].
    pub fn new() -> Self {
        Self::with_settings(Settings::default())
    }

    /// A server applying `settings` (given as `Settings` or `&Settings`, as every entry point
    /// takes them).
    pub fn with_settings(settings: impl Borrow<Settings>) -> Self {
        Server {
            config: ServerConfig::new(settings.borrow().clone()),
        }
    }

    /// The settings this server applies.
    pub fn settings(&self) -> &Settings {
        &self.config.settings
    }

    /// Its settings, authorization and hooks (for the blocking server built from it).
    pub(crate) fn into_config(self) -> ServerConfig {
        self.config
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

    /// Adds a hook that runs around every call: before it (and may refuse it) and after it
    /// (to observe how it ended). Hooks run in the order they were added; see [`CallHook`].
    pub fn hook(mut self, hook: impl CallHook) -> Self {
        self.config.hooks.push(Arc::new(hook));
        self
    }

    /// Serves `service` on `listener` (a [`Listener`](super::Listener), a tokio or std
    /// `UnixListener`, or the `OwnedFd` of a listening socket) until an accept fails.
    ///
    /// Dropping the returned future (or aborting the task that runs it) closes every
    /// connection at once: handlers still running are dropped, with the fds they hold, and
    /// clients see their connection end.
    ///
    /// # Errors
    ///
    /// The error of `accept`, or of taking `listener`.
    pub async fn serve<S: ServiceSet>(
        self,
        listener: impl IntoListener,
        service: S,
    ) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, service, std::future::pending())
            .await
    }

    /// Serves `service` on `listener` until `signal` completes, then shuts down gracefully:
    /// stops accepting and reading new calls, ends every server stream with an `abort` whose
    /// cause says the server is shutting down (the client's stream yields that
    /// [`RpcError::Application`](crate::RpcError::Application)), lets calls in flight finish and
    /// their replies be written (for at most the stall timeout), then closes every connection. Dropping the
    /// future instead closes everything at once, as with [`Server::serve`].
    ///
    /// # Errors
    ///
    /// The error of `accept`, or of taking `listener`.
    pub async fn serve_with_shutdown<S: ServiceSet>(
        self,
        listener: impl IntoListener,
        service: S,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let listener = listener.into_listener()?;
        let service = Arc::new(service);
        let slots = Arc::new(Semaphore::new(self.config.settings.max_connections));
        // Endpoints that handlers serve here ([`Context::serve`](super::Context::serve)) come
        // to this loop, to be one more of its connections.
        let (adopt_tx, mut adopted) = mpsc::unbounded_channel();
        let host = TokioHost {
            adopt: adopt_tx,
            slots: slots.clone(),
            max: self.config.settings.max_connections,
        };
        let shared = Arc::new(ServerShared::new(
            &self.config.settings,
            &self.config.hooks,
            Host::Tokio(host),
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut signal = std::pin::pin!(signal);
        let result = loop {
            tokio::select! {
                () = &mut signal => break Ok(()),
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok(s) => s,
                        Err(e) if is_transient_accept_error(&e) => {
                            tracing::warn!(error = %e, "fdrpc accept failed; retrying");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        Err(e) => break Err(e),
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(max = self.config.settings.max_connections, "fdrpc connection refused: too many connections");
                        continue;
                    };
                    let authorize = self.config.authorize.clone();
                    let service = service.clone();
                    let stop = stop_rx.clone();
                    let shared = shared.clone();
                    // Failures are logged where they happen, with their peer. The slot is
                    // given back when the connection's future ends.
                    let serving = serve_one(stream, service, authorize, shared, stop);
                    conns.spawn(serving.map(move |_| drop(slot)));
                }
                Some(launch) = adopted.recv() => {
                    conns.spawn(launch(shared.clone(), stop_rx.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        };
        // Endpoints served from now on are refused (and those sent, not yet taken, closed).
        drop(adopted);
        let _ = stop_tx.send(true);
        shared.stop_readers();
        while conns.join_next().await.is_some() {}
        result
    }

    /// Serves `service` on one connected stream (a tokio or std `UnixStream`, or the `OwnedFd`
    /// of one) until the peer closes it, and the endpoints its handlers served
    /// ([`Context::serve`](super::Context::serve)) until theirs do. Dropping the future closes
    /// every one of them at once.
    ///
    /// # Errors
    ///
    /// Why the connection ended, if not by a clean close; the stream could not be taken or its
    /// peer's credentials read; or the authorization hook refused it.
    pub async fn serve_connection<S: ServiceSet>(
        &self,
        stream: impl IntoConnection,
        service: S,
    ) -> Result<(), ConnectionError> {
        let stream = stream
            .into_connection()
            .map_err(|e| ConnectionError::new(e.into()))?;
        let settings = &self.config.settings;
        let slots = Arc::new(Semaphore::new(settings.max_connections));
        // This connection's own slot.
        let _slot = slots.clone().try_acquire_owned().ok();
        let (adopt_tx, mut adopted) = mpsc::unbounded_channel();
        let host = TokioHost {
            adopt: adopt_tx,
            slots,
            max: settings.max_connections,
        };
        let shared = Arc::new(ServerShared::new(
            settings,
            &self.config.hooks,
            Host::Tokio(host),
        ));
        let (_stop_tx, stop_rx) = watch::channel(false);
        let serving = serve_one(
            stream,
            Arc::new(service),
            self.config.authorize.clone(),
            shared.clone(),
            stop_rx.clone(),
        );
        let mut serving = std::pin::pin!(serving);
        let mut ended = None;
        let mut endpoints = JoinSet::new();
        loop {
            tokio::select! {
                result = &mut serving, if ended.is_none() => ended = Some(result),
                Some(launch) = adopted.recv() => {
                    endpoints.spawn(launch(shared.clone(), stop_rx.clone()));
                }
                Some(_) = endpoints.join_next(), if !endpoints.is_empty() => {}
            }
            if ended.is_some() && endpoints.is_empty() && adopted.is_empty() {
                break;
            }
        }
        ended.unwrap_or(Ok(()))
    }
}

/// Checks the peer of one accepted connection, then serves it: a future that does both when
/// first polled (the authorization hook runs in the connection's task, not the accept loop).
///
/// Combinators rather than an `async fn`: this is what an idle connection's task holds, and
/// an `async fn` (or `async` block) keeps its arguments' slots for its whole life, beside
/// what they were moved into; here the arguments and the connection's future share their
/// storage.
fn serve_one<S: ServiceSet>(
    stream: UnixStream,
    service: Arc<S>,
    authorize: Option<Arc<Authorize>>,
    shared: Arc<ServerShared>,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), ConnectionError>> + Send + use<S> {
    future::lazy(move |_| {
        let serving = admit(&stream, authorize.as_deref()).and_then(|peer| {
            let span = connection_span(&peer).unwrap_or_else(tracing::Span::none);
            let caller = Caller::new(peer, shared.host.clone());
            run_connection(stream, caller, service, shared, stop).map(|f| f.instrument(span))
        });
        match serving {
            Ok(serving) => future::Either::Right(serving),
            Err(e) => future::Either::Left(future::ready(Err(e))),
        }
    })
    .flatten()
}

/// Starts serving an adopted endpoint, given the server's shared state and stop signal.
type Launch =
    Box<dyn FnOnce(Arc<ServerShared>, watch::Receiver<bool>) -> crate::rpc::BoxFuture<()> + Send>;

/// The tokio server's side of [`Host`]: hands endpoints to its accept loop.
#[derive(Clone)]
pub(crate) struct TokioHost {
    adopt: mpsc::UnboundedSender<Launch>,
    /// The server's connection slots: an endpoint takes one, as an accepted connection does.
    slots: Arc<Semaphore>,
    max: usize,
}

impl TokioHost {
    pub(crate) fn adopt<S: ServiceSet>(
        &self,
        stream: std::os::unix::net::UnixStream,
        service: S,
    ) -> Result<(), ServeEndpointError> {
        if self.adopt.is_closed() {
            return Err(ServeEndpointError::ShuttingDown);
        }
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServeEndpointError::TooManyConnections(self.max))?;
        // Its credentials are read here, so that an error is the caller's to see.
        let peer = PeerCredentials::of(&stream)?;
        stream.set_nonblocking(true)?;
        let launch: Launch = Box::new(move |shared, stop| {
            Box::pin(async move {
                let _slot = slot;
                let Ok(stream) = UnixStream::from_std(stream) else {
                    return;
                };
                let span = connection_span(&peer);
                let caller = Caller::new(peer, shared.host.clone());
                let Ok(serving) = run_connection(stream, caller, Arc::new(service), shared, stop)
                else {
                    return;
                };
                // Failures are logged where they happen, with their peer.
                let _ = match span {
                    Some(span) => serving.instrument(span).await,
                    None => serving.await,
                };
            })
        });
        // Refused once the accept loop has stopped: the launch (and the stream) is dropped.
        self.adopt
            .send(launch)
            .map_err(|_| ServeEndpointError::ShuttingDown)
    }
}
