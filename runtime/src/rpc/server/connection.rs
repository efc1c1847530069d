//! One server connection on tokio: its driver ([`TokioConn`], whose reader loop is
//! [`read_calls`]), its handlers, and what the connections of one server share.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use tokio::net::UnixStream;
use tokio::sync::watch;

use super::dispatch::{Served, Serving};
use super::hooks::Hooks;
use super::host::{Caller, Host};
use super::services::ServiceSet;
use crate::rpc::conn::Role;
use crate::rpc::driver::fd_budget::FdBudget;
use crate::rpc::driver::handle::Driven;
use crate::rpc::driver::server_reader::read_calls;
use crate::rpc::driver::socket::Socket;
use crate::rpc::driver::tokio_conn::TokioConn;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;
use crate::transport::error::TransportError;

/// What the connections of one server share: its settings, its fd budget, its hooks, and
/// its accept loop (to serve endpoints).
pub(crate) struct ServerShared {
    settings: Settings,
    /// Fds received and not yet released, over all connections.
    budget: Arc<FdBudget>,
    /// `None` if the server has none.
    hooks: Option<Hooks>,
    pub(crate) host: Host,
    /// The readers of the server's connections, to be told when it stops (see
    /// [`ServerShared::stop_readers`]); those of ended connections are dropped as it grows.
    readers: Mutex<Vec<Weak<TokioConn>>>,
}

impl ServerShared {
    pub(crate) fn new(settings: &Settings, hooks: &[Arc<dyn super::CallHook>], host: Host) -> Self {
        // Every setting is in range already (`Settings`' setters keep it there), and the
        // receive queue takes the server's fds-per-frame bound (`RecvQueue::for_server`).
        let settings = settings.clone();
        ServerShared {
            budget: FdBudget::new(settings.fd_budget),
            settings,
            hooks: (!hooks.is_empty()).then(|| hooks.into()),
            host,
            readers: Mutex::default(),
        }
    }

    /// Has the reader of `conn` told when the server stops.
    fn add_reader(&self, conn: &Arc<TokioConn>) {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() == readers.capacity() {
            // Before it grows: at most twice the connections that live.
            readers.retain(|r| r.strong_count() > 0);
        }
        readers.push(Arc::downgrade(conn));
    }

    /// Tells every connection's reader that the server stops (its `stop` signal is set
    /// already): an idle reader waits on its connection, not on the signal.
    pub(crate) fn stop_readers(&self) {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        for conn in readers.iter().filter_map(Weak::upgrade) {
            conn.tell_reader();
        }
    }
}

/// Sets up one connection, and returns the future that serves it until the peer closes it,
/// it breaks the protocol, or `stop` says so; then lets calls in flight finish (for at most
/// the stall timeout) and closes it.
///
/// Not an `async fn`: the future is what every connection holds while it waits, and an
/// `async fn` keeps a slot for each argument beside the copies it moves them into (the
/// stream, `stop`); this one holds the connection's handles, and the reader.
///
/// # Errors
///
/// The socket could not be registered with the runtime. The future's: why the connection
/// ended, if not by a clean close or `stop`.
pub(crate) fn run_connection<S: ServiceSet>(
    stream: UnixStream,
    caller: Arc<Caller>,
    service: Arc<S>,
    shared: Arc<ServerShared>,
    mut stop: watch::Receiver<bool>,
) -> Result<impl Future<Output = Result<(), ConnectionError>> + Send + use<S>, ConnectionError> {
    let io = |e: std::io::Error| ConnectionError::new(e.into());
    let conn = TokioConn::new(
        Socket::from_tokio(stream).map_err(io)?,
        Role::Server,
        &shared.settings,
    );
    shared.add_reader(&conn);
    // The handlers that wait run in tasks of their own: the end of the connection stops them.
    let served = Served::new(Driven::Tokio(conn.clone()));
    // However the future ends (returned, or dropped because its server was), the connection
    // closes then: the socket is shut down, the writer and the handlers' tasks stop, and
    // every fd they held is closed.
    let teardown = Teardown { conn: conn.clone() };
    Ok(async move {
        let _teardown = &teardown;
        let serving = Serving {
            services: &*service,
            served: &served,
            caller: &caller,
            hooks: shared.hooks.as_ref(),
        };
        read_calls(&conn, &shared.settings, &shared.budget, &serving, &mut stop).await
    })
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
