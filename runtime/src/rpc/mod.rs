//! Services over Unix sockets: the async [`Client`], the [`BlockingClient`], the [`Server`],
//! and the types generated code uses.
//!
//! Organization:
//! - [`Client`], [`BlockingClient`]: the calling side of a connection.
//! - [`Server`], [`Service`]: the serving side.
//! - [`Context`], [`PeerCredentials`]: who is calling.
//! - [`RpcError`], [`CallError`], [`ApplicationError`]: how calls fail.

mod app_exception;
mod blocking_client;
mod client;
mod context;
mod error;
mod peer;
mod reader;
pub(crate) mod result;
mod server;
mod service;
mod writer;

pub use app_exception::{ApplicationError, ApplicationErrorKind};
pub use blocking_client::BlockingClient;
pub use client::Client;
pub use context::Context;
pub use error::{CallError, ConnectionError, RpcError};
pub use peer::PeerCredentials;
pub use server::Server;
pub use service::{BoxFuture, Dispatch, Incoming, Service};
