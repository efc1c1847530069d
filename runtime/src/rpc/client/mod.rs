//! The calling side of a connection: the async [`Client`] and the [`BlockingClient`], both
//! thin layers over the connection core and a driver.
//!
//! Organization:
//! - `async_client`: [`Client`], on tokio: many calls and streams in flight on one
//!   connection, their frames batched by the connection's writer.
//! - `blocking_client`: [`BlockingClient`], on plain threads: calls from several threads in
//!   flight together, without a runtime.

#[cfg(feature = "tokio")]
mod async_client;
mod blocking_client;

#[cfg(feature = "tokio")]
pub use async_client::Client;
pub use blocking_client::BlockingClient;

use crate::codec::error::DecodeError;
use crate::codec::fd_table::FdTable;
use crate::codec::{Decoder, MessageType};
use std::time::Duration;

use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};
use crate::rpc::conn::{CallOptions, Reply};
use crate::rpc::deadline::Deadline;
use crate::rpc::error::RpcError;
use crate::rpc::trace::{self, TraceId};

/// How a generated client decodes the result struct of a method.
pub(crate) type DecodeFn<R> = fn(&mut Decoder<'_>) -> Result<R, DecodeError>;

/// Decodes a reply: a result struct, or a `TApplicationException`. The server's `Timeout`
/// for a call that sent `timeout` is that timeout passing, as if this side had noticed first:
/// [`RpcError::Timeout`].
fn decode_reply<R>(
    reply: Reply,
    decode: DecodeFn<R>,
    timeout: Option<Duration>,
) -> Result<R, RpcError> {
    let mut dec = reply.body.decoder(FdTable::of(reply.fds));
    match reply.ty {
        MessageType::Exception => {
            let e = ApplicationError::decode(&mut dec)?;
            Err(match timeout {
                Some(t) if e.kind == ApplicationErrorKind::Timeout => RpcError::Timeout(t),
                _ => RpcError::Application(e),
            })
        }
        _ => {
            let value = decode(&mut dec)?;
            dec.finish()?;
            Ok(value)
        }
    }
}

/// Decodes the reply of the introspection method.
fn decode_idl(dec: &mut Decoder<'_>) -> Result<String, DecodeError> {
    match crate::codec::call_result::decode_result::<String, std::convert::Infallible>(dec, false)?
    {
        Ok(idl) => Ok(idl),
        Err(never) => match never {},
    }
}

/// The span of one call a client makes (`client_call`, with the method, and the sequence id
/// and trace id once known; `None` unless a subscriber wants it), and the options it is sent
/// with. The call carries a trace if it is made while a traced call is handled (the trace goes
/// on), or if a subscriber wants its span (a new trace); otherwise none, which costs nothing.
fn outgoing(
    method: &str,
    ty: MessageType,
    deadline: Option<Deadline>,
) -> (Option<tracing::Span>, CallOptions) {
    // Asked first: a disabled span still costs its fields on every call.
    let span = tracing::span_enabled!(tracing::Level::INFO)
        .then(|| {
            tracing::info_span!(
                "client_call",
                method,
                seqid = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        })
        .filter(|span| !span.is_disabled());
    let trace = trace::outgoing(span.as_ref());
    if let (Some(span), Some(t)) = (&span, &trace) {
        span.record("trace_id", tracing::field::display(TraceId(t.trace_id())));
    }
    let mut options = CallOptions::new(ty);
    options.deadline = deadline;
    options.trace = trace;
    (span, options)
}

/// Records the call's sequence id in its span, if it has one.
fn record_seqid(span: Option<&tracing::Span>, seqid: i32) {
    if let Some(span) = span {
        span.record("seqid", seqid);
    }
}
