//! [`Stream`]: a sequence of messages that flows over one call, in either direction, each
//! item with its own fds.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream as FuturesStream;

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
/// use fdrpc_runtime::Stream;
/// let items: Stream<i32> = Stream::iter(vec![1, 2, 3]);
/// let failing: Stream<i32, String> = Stream::new(futures_util::stream::iter(vec![Ok(1), Err("no".to_string())]));
/// # let _ = (items, failing);
/// ```
#[must_use = "a stream does nothing unless sent or consumed"]
pub struct Stream<T, E = Infallible> {
    inner: Pin<Box<dyn FuturesStream<Item = Result<T, E>> + Send>>,
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
        }
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

impl<T, E> FuturesStream for Stream<T, E> {
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
