//! Who is calling, and the server that serves them: [`Caller`], which every call's
//! [`Context`](super::Context) shares with its connection, and [`Host`], through which a
//! handler serves a [`ServerEnd`](crate::ServerEnd) on the server that runs it
//! ([`Context::serve`](super::Context::serve)): as one more of its connections, under its
//! limits, its hooks and its shutdown.

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::peer::PeerCredentials;
use super::services::ServiceSet;
use crate::transport::SenderCredentials;

/// The peer of one connection, and the server that serves it.
pub(crate) struct Caller {
    pub(crate) peer: PeerCredentials,
    pub(crate) host: Host,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub(crate) fn new(peer: PeerCredentials, host: Host) -> Arc<Self> {
        Arc::new(Caller { peer, host })
    }

    /// The caller of a call that `sender` sent on this connection: this one if its
    /// credentials say the same, else one with the sender's.
    pub(crate) fn sent_by(self: &Arc<Self>, sender: SenderCredentials) -> Arc<Self> {
        if self.peer.is(&sender) {
            return self.clone();
        }
        Arc::new(Caller {
            peer: PeerCredentials::sent(sender),
            host: self.host.clone(),
        })
    }
}

/// Why [`Context::serve`](super::Context::serve) could not serve an endpoint (the end is
/// closed: its peer sees the connection end).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeEndpointError {
    /// The server serves [`Settings::max_connections`](crate::Settings::max_connections)
    /// connections already; endpoints count as connections.
    #[error("the server serves its maximum of {0} connections already")]
    TooManyConnections(usize),
    /// The server is shutting down (or has stopped).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The endpoint's socket could not be set up (its credentials read, or a thread started
    /// for it on the blocking server).
    #[error("could not serve the endpoint: {0}")]
    Io(#[from] std::io::Error),
}

/// A server that can take one more connection: the tokio server's accept loop, or the
/// blocking server's.
#[derive(Clone)]
pub(crate) enum Host {
    #[cfg(feature = "tokio")]
    Tokio(super::serve::TokioHost),
    Blocking(super::blocking_serve::BlockingHost),
}

impl Host {
    /// Serves `service` on `stream` as one more connection of this server.
    pub(crate) fn adopt<S: ServiceSet>(
        &self,
        stream: UnixStream,
        service: S,
    ) -> Result<(), ServeEndpointError> {
        crate::rpc::endpoint::ask_sender_credentials(&stream)?;
        match self {
            #[cfg(feature = "tokio")]
            Host::Tokio(h) => h.adopt(stream, service),
            Host::Blocking(h) => h.adopt(stream, service),
        }
    }
}
