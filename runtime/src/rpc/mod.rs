//! Services over Unix sockets: the clients, the server, streams, and the connection core they
//! share.
//!
//! Organization, from the bottom up:
//! - `conn`: the sans-IO state of one connection: sequence ids, pending calls, stream routes
//!   and credit, every frame written and every frame received classified, in one place.
//! - `driver`: the IO around it: `tokio_conn` (async client and server; a writer task that
//!   batches, sockets registered for reading only) and `blocking_conn` (the blocking client;
//!   the waiting threads take turns reading for each other).
//! - `client`: [`Client`] and [`BlockingClient`], thin layers over a driver.
//! - `server`: [`Server`], [`Service`] and dispatch, [`Context`], [`PeerCredentials`].
//! - `stream`: [`Stream`], [`Streaming`], [`BlockingStreaming`], sinks and producers.
//! - `trace`: [`TraceContext`], the W3C trace context calls carry.
//! - `endpoint`: [`ClientEnd`] and [`ServerEnd`]: services as fields, typed by [`Protocol`].
//! - `error`, `app_exception`: [`RpcError`], [`CallError`], [`ConnectionError`],
//!   [`ApplicationError`]: how calls fail.
//!
//! Without the `tokio` feature only what needs no runtime is built: the blocking client and
//! its streams (and, outside this module, `Channel` and the codec).

mod app_exception;
pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod deadline;
pub(crate) mod driver;
pub(crate) mod endpoint;
mod error;
mod method_name;
pub(crate) mod server;
pub(crate) mod stream;
pub(crate) mod trace;

pub use app_exception::{ApplicationError, ApplicationErrorKind};
pub use client::BlockingClient;
#[cfg(feature = "tokio")]
pub use client::Client;
pub use endpoint::{ClientEnd, Protocol, ServedBy, ServerEnd, endpoints};
pub use error::{CallError, ConnectionError, RpcError, flatten_declared, flatten_undeclared};
pub use method_name::MethodName;
pub use server::{
    BlockingServer, BoxFuture, CallEnd, CallHook, CallOutcome, Context, Dispatch, HandlerReply,
    Incoming, PeerCredentials, ReplyError, ReplyTo, ServeEndpointError, Service, ServiceSet,
    Shutdown, StreamReply, StreamSlot,
};
#[cfg(feature = "tokio")]
pub use server::{IntoConnection, IntoListener, Listener, Server};
pub use stream::{
    BlockingSink, BlockingStreaming, ErasedProducer, SinkStatus, Stream, Streaming, producer,
};
pub use trace::{BridgeAlreadySet, TraceBridge, TraceContext, Traced, set_trace_bridge};
