//! [`Stream`]: a sequence of messages that flows over one call, in either direction, each
//! item with its own fds.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_core::Stream as FuturesStream;

use crate::rpc::error::RpcError;

/// A stream of items that may each carry fds, ended by the end of the stream or by an error
/// `E` (which may carry fds too).
///
/// - As a method's return type (`-> fdrpc::Stream<T, E>`), the server produces it and the
///   client receives a [`Streaming`](super::Streaming).
/// - As a method's parameter (`parts: fdrpc::Stream<T, E>`), the client produces it (a sink)
///   and the server's handler consumes it.
///
/// Flow control is credit-based: the consumer grants a window of items, and the producer
/// never has more than the window outstanding, so memory and fds in flight stay bounded.
///
/// # Examples
///
/// ```
/// use fdrpc::Stream;
/// let items: Stream<i32> = Stream::iter(vec![1, 2, 3]);
/// let failing: Stream<i32, String> = Stream::new(futures::stream::iter(vec![Ok(1), Err("no".to_string())]));
/// # let _ = (items, failing);
/// ```
#[must_use = "a stream does nothing unless sent or consumed"]
pub struct Stream<T, E = Infallible> {
    inner: Pin<Box<dyn FuturesStream<Item = Result<T, E>> + Send>>,
    /// For the stream a sink handler consumes: whether it broke off.
    status: Option<SinkStatus>,
}

impl<T, E> std::fmt::Debug for Stream<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

impl<T: Send + 'static, E: Send + 'static> Stream<T, E> {
    /// A stream of the results `stream` yields; an `Err` ends it.
    pub fn new(stream: impl FuturesStream<Item = Result<T, E>> + Send + 'static) -> Self {
        Stream {
            inner: Box::pin(stream),
            status: None,
        }
    }

    /// The stream a sink handler consumes, which `status` tells broke off.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn with_status(mut self, status: SinkStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// A stream of the items of `stream`, which never fails.
    pub fn from_stream(stream: impl FuturesStream<Item = T> + Send + 'static) -> Self {
        Self::new(futures_util::StreamExt::map(stream, Ok))
    }

    /// A stream of the items of `iter`, which never fails.
    pub fn iter<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::from_stream(futures_util::stream::iter(iter))
    }

    /// An empty stream.
    pub fn empty() -> Self {
        Self::iter(Vec::new())
    }
}

impl<T, E> Stream<T, E> {
    /// Why the stream broke off, if it did: for the stream a sink handler consumes, which
    /// ends (`None` from `next`) both when the client finished it and when it broke off (the
    /// client gave up or could not encode an item, an item could not be decoded, the
    /// connection failed). After the end, this tells the two apart. `None` for a finished sink
    /// and for every other stream.
    ///
    /// A handler need not check it: if the sink broke off, the client gets a `PROTOCOL_ERROR`
    /// naming the cause instead of the handler's result.
    pub fn broken(&self) -> Option<&RpcError> {
        self.status.as_ref().and_then(|s| s.cause.get())
    }
}

impl<T, E> FuturesStream for Stream<T, E> {
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Whether a sink a handler consumed broke off (the connection failed, the client aborted, or
/// an item could not be decoded) rather than ending, and why.
#[derive(Debug, Clone, Default)]
pub struct SinkStatus {
    cause: Arc<OnceLock<RpcError>>,
}

impl SinkStatus {
    /// Whether the sink broke off.
    pub fn is_broken(&self) -> bool {
        self.cause.get().is_some()
    }

    /// Why the sink broke off, if it did.
    pub fn cause(&self) -> Option<&RpcError> {
        self.cause.get()
    }

    /// The sink broke off because of `why` (the first cause is kept).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn set_broken(&self, why: RpcError) {
        let _ = self.cause.set(why);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_status_is_whole_until_it_is_broken_and_then_says_why() {
        let status = SinkStatus::default();
        let seen_by_the_handler = status.clone();
        assert!(!seen_by_the_handler.is_broken());
        assert!(seen_by_the_handler.cause().is_none());
        status.set_broken(RpcError::Timeout(std::time::Duration::from_secs(1)));
        assert!(seen_by_the_handler.is_broken());
        assert!(matches!(
            seen_by_the_handler.cause(),
            Some(RpcError::Timeout(d)) if d.as_secs() == 1
        ));
    }
}
