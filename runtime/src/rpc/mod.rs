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
mod blocking_stream;
mod client;
mod context;
mod dispatch;
mod error;
mod flow;
mod peer;
mod producer;
mod reader;
pub(crate) mod result;
mod routes;
mod server;
mod service;
mod socket;
mod stream;
mod streaming;
mod writer;

pub use app_exception::{ApplicationError, ApplicationErrorKind};
pub use blocking_client::BlockingClient;
pub use blocking_stream::{BlockingSink, BlockingStreaming};
pub use client::Client;
pub use context::Context;
pub use error::{CallError, ConnectionError, RpcError};
pub use flow::DEFAULT_WINDOW;
pub use peer::PeerCredentials;
pub use producer::{ErasedProducer, producer};
pub use server::Server;
pub use service::{
    BoxFuture, Dispatch, INTROSPECTION_METHOD, Incoming, ReplyError, Service, StreamReply,
    StreamSlot, introspection_function,
};
pub use stream::Stream;
pub use streaming::{SinkStatus, Streaming};
