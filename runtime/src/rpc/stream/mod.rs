//! Streams of items that each carry fds, in either direction of a call.
//!
//! Organization:
//! - [`Stream`]: what a handler returns for a server stream, and what a caller passes as a
//!   sink; also what a sink handler consumes.
//! - `producer`: the producing end: items pulled as credit allows, encoded, sent.
//! - `streaming`: the consuming end: [`Streaming`] on the async client, the sink's items on
//!   either server.
//! - `blocking`: [`BlockingStreaming`] and [`BlockingSink`], the blocking client's iterators.

mod blocking;
mod items;
mod producer;
mod streaming;

use crate::codec::fd_table::Fds;

pub(crate) use blocking::SinkFeeder;
pub use blocking::{BlockingSink, BlockingStreaming};
pub use items::{SinkStatus, Stream};
pub(crate) use producer::encode_item;
pub(crate) use producer::produce;
pub use producer::{ErasedProducer, producer};
pub use streaming::Streaming;
pub(crate) use streaming::{Consumer, sink_stream};

use crate::codec::call_result::decode_result;
use crate::codec::fd_table::FdTable;
use crate::codec::wire::Field;
use crate::rpc::conn::Body;
use crate::rpc::error::RpcError;

/// Decodes one item frame's result struct: `Ok(Ok(item))`, `Ok(Err(the producer's error))`,
/// or why it could not be decoded (its fds are closed).
pub(crate) fn decode_item<T: Field, E: Field>(
    body: &Body,
    fds: Fds,
) -> Result<Result<T, E>, RpcError> {
    let mut dec = body.decoder(FdTable::of(fds));
    let r = decode_result::<T, E>(&mut dec, true)?;
    dec.finish()?;
    Ok(r)
}
