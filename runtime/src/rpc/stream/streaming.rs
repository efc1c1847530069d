//! The consuming end of a stream: [`Streaming`] on the async client for server streams, and
//! the [`Stream`] a server handler receives for a sink (on either server).

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream as FuturesStream;

use super::decode_item;
use super::items::SinkStatus;
use super::items::Stream;
use crate::codec::wire::Field;
use crate::rpc::conn::{RawItem, RouteId};
use crate::rpc::driver::handle::Driven;
use crate::rpc::error::{CallError, RpcError};

/// The untyped consumer of one stream: hands out encoded items (the connection grants credit
/// as they are taken). Dropping it before the end cancels the stream.
#[derive(Debug)]
pub(crate) struct Consumer {
    conn: Driven,
    seqid: i32,
    id: RouteId,
    finished: bool,
}

impl Consumer {
    pub(crate) fn new(conn: Driven, seqid: i32, id: RouteId) -> Self {
        Consumer {
            conn,
            seqid,
            id,
            finished: false,
        }
    }

    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RawItem, RpcError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let next = self
            .conn
            .with(|c| c.poll_item(self.seqid, self.id, Some(cx.waker())));
        if let Poll::Ready(None | Some(Err(_))) = next {
            self.finished = true;
        }
        next
    }

    /// Stops the stream: the producer is told (unless the stream is over), and items still in
    /// flight are dropped with their fds.
    fn cancel(&mut self) {
        self.finished = true;
        self.conn.with(|c| c.cancel_inbox(self.seqid, self.id));
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The items of a server stream, as the client receives them. Implements
/// `futures::Stream<Item = Result<T, CallError<E>>>`; it ends after the producer's last item,
/// or after one error (the producer's `E`, which may carry fds, or a transport failure).
///
/// Each item is waited for as long as it takes: the call's timeout covers the call up to its
/// reply, not the stream that follows (a stream may be quiet between events). The blocking
/// client's iterator follows the same rule (its `set_item_timeout` sets a limit per item);
/// here, wrap the wait in `tokio::time::timeout` for one. A producer that stops sending while
/// the connection lives is not an error; a peer that stops reading is (see `stall_timeout`).
///
/// Dropping it cancels the stream: the server's producer is told at once, and items already
/// in flight are dropped and their fds closed.
pub struct Streaming<T, E = std::convert::Infallible> {
    consumer: Consumer,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for Streaming<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("seqid", &self.consumer.seqid)
            .field("finished", &self.consumer.finished)
            .finish()
    }
}

impl<T, E> Streaming<T, E> {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new(consumer: Consumer) -> Self {
        Streaming {
            consumer,
            _types: PhantomData,
        }
    }

    /// Cancels the stream now (as dropping it does).
    pub fn cancel(&mut self) {
        self.consumer.cancel();
    }
}

impl<T: Field, E: Field> FuturesStream for Streaming<T, E> {
    type Item = Result<T, CallError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.consumer.poll_raw(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(CallError::Rpc(e)))),
            Poll::Ready(Some(Ok((body, fds)))) => match decode_item::<T, E>(&body, fds) {
                Ok(Ok(item)) => Poll::Ready(Some(Ok(item))),
                Ok(Err(e)) => {
                    // The producer's error ends the stream.
                    this.consumer.cancel();
                    Poll::Ready(Some(Err(CallError::Service(e))))
                }
                Err(e) => {
                    this.consumer.cancel();
                    Poll::Ready(Some(Err(CallError::Rpc(e))))
                }
            },
        }
    }
}

impl<T, E> Unpin for Streaming<T, E> {}

/// The server side of a sink: a [`Stream`] of the client's items.
struct SinkItems<T, E> {
    consumer: Consumer,
    status: SinkStatus,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T: Field, E: Field> FuturesStream for SinkItems<T, E> {
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.consumer.poll_raw(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "fdrpc: sink broke off");
                this.status.set_broken(e);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok((body, fds)))) => match decode_item::<T, E>(&body, fds) {
                Ok(Ok(item)) => Poll::Ready(Some(Ok(item))),
                Ok(Err(e)) => {
                    this.consumer.cancel();
                    Poll::Ready(Some(Err(e)))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fdrpc: undecodable sink item");
                    this.status.set_broken(e);
                    this.consumer.cancel();
                    Poll::Ready(None)
                }
            },
        }
    }
}

impl<T, E> Unpin for SinkItems<T, E> {}

/// The stream a sink handler consumes, and how to tell afterwards whether it broke off.
pub(crate) fn sink_stream<T, E>(consumer: Consumer) -> (Stream<T, E>, SinkStatus)
where
    T: Field + Send + 'static,
    E: Field + Send + 'static,
{
    let status = SinkStatus::default();
    let items = SinkItems::<T, E> {
        consumer,
        status: status.clone(),
        _types: PhantomData,
    };
    (Stream::new(items).with_status(status.clone()), status)
}
