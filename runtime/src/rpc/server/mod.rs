//! The serving side: the [`Server`] (accept loop, per-connection loop, dispatch) and what
//! handlers see of a call.
//!
//! Organization:
//! - `serve`: [`Server`]: accepting, authorization, graceful shutdown, clean stops.
//! - `listener`: [`Listener`]: the sockets a server serves.
//! - `connection`: one connection: its driver, its handlers, and what a server's connections
//!   share (settings, fd budget, hooks); its reader loop is `driver::server_reader`.
//! - `handlers`: the handlers that wait, in tasks of their own: stopped by a `cancel` or the
//!   connection's end.
//! - `dispatch`: a call handed over by the connection core, run (in its span and trace, until
//!   its deadline) and answered.
//! - `hooks`: [`CallHook`]: what runs around every call.
//! - `service`: [`Service`] and the types generated code uses to dispatch.
//! - `services`: [`ServiceSet`]: one service or several on one socket (`Service:method`).
//! - `context`, `peer`: [`Context`] and [`PeerCredentials`]: who is calling.

#[cfg(feature = "tokio")]
mod connection;
mod context;
#[cfg(feature = "tokio")]
mod dispatch;
#[cfg(feature = "tokio")]
mod handlers;
#[cfg(feature = "tokio")]
mod hooks;
#[cfg(feature = "tokio")]
mod listener;
mod peer;
#[cfg(feature = "tokio")]
mod serve;
#[cfg(feature = "tokio")]
mod service;
#[cfg(feature = "tokio")]
mod services;

pub use context::Context;
#[cfg(feature = "tokio")]
pub use hooks::{CallEnd, CallHook, CallOutcome};
#[cfg(feature = "tokio")]
pub use listener::{IntoConnection, IntoListener, Listener};
pub use peer::PeerCredentials;
#[cfg(feature = "tokio")]
pub use serve::Server;
#[cfg(feature = "tokio")]
pub use service::{
    BoxFuture, Dispatch, HandlerReply, Incoming, ReplyError, Service, StreamReply, StreamSlot,
};
#[cfg(feature = "tokio")]
pub use services::ServiceSet;
