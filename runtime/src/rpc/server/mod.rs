//! The serving side: the servers (accept loops, connections, dispatch) and what handlers see
//! of a call.
//!
//! Organization:
//! - `serve`: [`Server`] (tokio): accepting, authorization, graceful shutdown, clean stops.
//! - `blocking_serve`: [`BlockingServer`] and [`Shutdown`]: the same with no async runtime,
//!   a thread per connection (its driver is `driver::polled_conn`).
//! - `admission`: what both do before serving a connection (credentials, authorization,
//!   its span), and which accept errors they retry.
//! - `listener`: [`Listener`]: the sockets a server serves; `bind`: a socket file bound so
//!   that its mode holds from the first connection.
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
//! - `host`: what a call's context shares with its connection (its peer, and the server
//!   that serves it, which [`Context::serve`] hands endpoints to).

mod admission;
#[cfg(feature = "tokio")]
mod bind;
mod blocking_serve;
#[cfg(feature = "tokio")]
mod connection;
mod context;
mod dispatch;
mod handlers;
mod hooks;
mod host;
#[cfg(feature = "tokio")]
mod listener;
mod peer;
#[cfg(feature = "tokio")]
mod serve;
mod service;
mod services;

pub use blocking_serve::{BlockingServer, Shutdown};
pub use context::Context;
pub use hooks::{CallEnd, CallHook, CallOutcome};
pub use host::ServeEndpointError;
#[cfg(feature = "tokio")]
pub use listener::{IntoConnection, IntoListener, Listener};
pub use peer::PeerCredentials;
#[cfg(feature = "tokio")]
pub use serve::Server;
pub use service::{
    BoxFuture, Dispatch, HandlerReply, Incoming, ReplyError, ReplyTo, Service, StreamReply,
    StreamSlot,
};
pub use services::ServiceSet;
