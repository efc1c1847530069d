//! Streams of items that each carry fds, in either direction of a call.
//!
//! Organization:
//! - [`Stream`]: what a handler returns for a server stream, and what a caller passes as a
//!   sink; also what a sink handler consumes.
//! - `producer`: the producing end: items pulled as credit allows, encoded, sent.
//! - `streaming`: the consuming end on tokio: [`Streaming`] on the client, the sink's items
//!   on the server.
//! - `blocking`: [`BlockingStreaming`] and [`BlockingSink`], the blocking client's iterators.

mod blocking;
mod items;
mod producer;
#[cfg(feature = "tokio")]
mod streaming;

use std::os::fd::OwnedFd;

pub(crate) use blocking::SinkFeeder;
pub use blocking::{BlockingSink, BlockingStreaming};
pub use items::Stream;
pub(crate) use producer::encode_item;
#[cfg(feature = "tokio")]
pub(crate) use producer::produce;
pub use producer::{ErasedProducer, producer};
#[cfg(feature = "tokio")]
pub use streaming::Streaming;
#[cfg(feature = "tokio")]
pub(crate) use streaming::{Consumer, sink_stream};

use crate::codec::Decoder;
use crate::codec::call_result::decode_result;
use crate::codec::fd_table::FdTable;
use crate::codec::wire::Field;
use crate::rpc::error::RpcError;

/// Decodes one item frame's result struct: `Ok(Ok(item))`, `Ok(Err(the producer's error))`,
/// or why it could not be decoded (its fds are closed).
pub(crate) fn decode_item<T: Field, E: Field>(
    body: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Result<T, E>, RpcError> {
    let mut dec = Decoder::new(body, FdTable::new(fds));
    let r = decode_result::<T, E>(&mut dec, true)?;
    dec.finish()?;
    Ok(r)
}

#[cfg(feature = "tokio")]
pub use sink_status::SinkStatus;

#[cfg(feature = "tokio")]
mod sink_status {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Whether a sink a handler consumed broke off (the connection failed, the client aborted, or
    /// an item could not be decoded) rather than ending.
    #[derive(Debug, Clone, Default)]
    pub struct SinkStatus {
        broken: Arc<AtomicBool>,
    }

    impl SinkStatus {
        /// Whether the sink broke off.
        pub fn is_broken(&self) -> bool {
            self.broken.load(Ordering::Acquire)
        }

        pub(crate) fn set_broken(&self) {
            self.broken.store(true, Ordering::Release);
        }
    }
}
