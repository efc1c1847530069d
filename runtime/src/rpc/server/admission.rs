//! What both servers are configured with ([`ServerConfig`]) and do with a connection before
//! serving it: read its peer's credentials, ask the authorization hook, open its `connection`
//! span; and which accept errors to retry.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::hooks::CallHook;
use super::peer::PeerCredentials;
use crate::rpc::error::ConnectionError;
use crate::settings::Settings;

/// The authorization hook of a server.
pub(crate) type Authorize = dyn Fn(&PeerCredentials) -> bool + Send + Sync;

/// The configuration both servers share: settings, the authorization hook, the call hooks.
#[derive(Clone)]
pub(crate) struct ServerConfig {
    pub(crate) settings: Settings,
    pub(crate) authorize: Option<Arc<Authorize>>,
    pub(crate) hooks: Vec<Arc<dyn CallHook>>,
}

impl ServerConfig {
    pub(crate) fn new(settings: Settings) -> Self {
        ServerConfig {
            settings,
            authorize: None,
            hooks: Vec::new(),
        }
    }

    /// The server's `Debug`, under its type's name.
    pub(crate) fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("settings", &self.settings)
            .field("authorize", &self.authorize.is_some())
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// The peer of `stream`, if it may be served: its credentials could be read and `authorize`
/// (if any) lets it in. Each refusal is logged with its reason.
///
/// # Errors
///
/// The credentials could not be read, or the hook refused the peer (`PermissionDenied`).
pub(crate) fn admit(
    stream: impl AsFd,
    authorize: Option<&Authorize>,
) -> Result<PeerCredentials, ConnectionError> {
    let io = |e: io::Error| ConnectionError::new(e.into());
    let peer = match PeerCredentials::of(stream) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::warn!(error = %e, "fdrpc connection dropped: its peer's credentials are unreadable");
            return Err(io(e));
        }
    };
    if let Some(authorize) = authorize {
        if !authorize(&peer) {
            tracing::info!(
                pid = peer.pid(),
                uid = peer.uid(),
                "fdrpc connection refused by the authorization hook"
            );
            return Err(io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "refused by the authorization hook",
            )));
        }
    }
    Ok(peer)
}

/// The `connection` span of `peer`'s connection, if a subscriber wants it.
pub(crate) fn connection_span(peer: &PeerCredentials) -> Option<tracing::Span> {
    // Asked first: a disabled span still costs its fields.
    tracing::span_enabled!(tracing::Level::INFO)
        .then(|| tracing::info_span!("connection", peer_pid = peer.pid(), peer_uid = peer.uid()))
        .filter(|span| !span.is_disabled())
}

/// Whether a failed `accept` is worth retrying (the process or system is out of something
/// for a moment, or the peer went away first).
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of fds or memory for a moment, or a peer gone before its accept: retried. A broken
    /// listener: not (retrying it would spin for ever).
    #[test]
    fn only_passing_accept_errors_are_retried() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::ECONNABORTED,
            libc::EINTR,
        ] {
            assert!(
                is_transient_accept_error(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK, libc::EOPNOTSUPP] {
            assert!(
                !is_transient_accept_error(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        assert!(!is_transient_accept_error(&io::Error::other("no errno")));
    }
}
