//! The consuming end of a stream: [`Streaming`] on the client for server streams, and the
//! [`Stream`] a server handler receives for a sink.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream as FuturesStream;
use tokio::sync::mpsc;

use super::error::{CallError, ConnectionError, RpcError};
use super::flow::{Inbound, StreamFrame, Window};
use super::result::decode_result;
use super::routes::{Routes, send_control};
use super::stream::Stream;
use super::writer::Writer;
use crate::compact::{Decoder, MessageType};
use crate::error::TransportError;
use crate::fd_table::FdTable;
use crate::wire::Field;

/// The untyped consumer of one stream: hands out encoded items and grants credit as they are
/// taken. Dropping it before the end cancels the stream.
pub(crate) struct Consumer {
    pub(crate) rx: mpsc::UnboundedReceiver<Inbound>,
    pub(crate) window: Arc<Mutex<Window>>,
    pub(crate) writer: Arc<Writer>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) method: &'static str,
    /// Message type of the control frames this side sends.
    pub(crate) ty: MessageType,
    pub(crate) seqid: i32,
    pub(crate) finished: bool,
}

/// An item frame's result struct body and fds, not yet decoded.
type RawItem = (Vec<u8>, Vec<OwnedFd>);

impl Consumer {
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RawItem, RpcError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Inbound::Data { body, fds })) => {
                let grant = self
                    .window
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .consumed();
                if let Some(n) = grant {
                    send_control(
                        &self.writer,
                        self.method,
                        self.ty,
                        self.seqid,
                        StreamFrame::Credit,
                        Some(n),
                    );
                }
                Poll::Ready(Some(Ok((body, fds))))
            }
            Poll::Ready(Some(Inbound::End)) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Inbound::Failed(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(RpcError::Connection(ConnectionError::new(
                    TransportError::Closed,
                )))))
            }
        }
    }

    /// Stops the stream: the producer is told, and items still in flight are dropped with
    /// their fds.
    fn cancel(&mut self) {
        if !self.finished {
            self.finished = true;
            self.routes.close_inbound(self.seqid, &self.window);
            send_control(
                &self.writer,
                self.method,
                self.ty,
                self.seqid,
                StreamFrame::Cancel,
                None,
            );
        }
        // Close what was buffered.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Decodes one item frame: `Ok(Ok(item))`, `Ok(Err(producer's error))`, or a decode error.
fn decode_item<T: Field, E: Field>(
    body: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Result<T, E>, RpcError> {
    let mut dec = Decoder::new(body, FdTable::new(fds));
    let r = decode_result::<T, E>(&mut dec, true)?;
    dec.finish()?;
    Ok(r)
}

/// The items of a server stream, as the client receives them. Implements
/// `futures::Stream<Item = Result<T, CallError<E>>>`; it ends after the producer's last item,
/// or after one error (the producer's `E`, which may carry fds, or a transport failure).
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
                    this.consumer.finished = true;
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
}

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
                this.status.broken.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok((body, fds)))) => match decode_item::<T, E>(&body, fds) {
                Ok(Ok(item)) => Poll::Ready(Some(Ok(item))),
                Ok(Err(e)) => {
                    this.consumer.finished = true;
                    Poll::Ready(Some(Err(e)))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fdrpc: undecodable sink item");
                    this.status.broken.store(true, Ordering::Release);
                    this.consumer.cancel();
                    Poll::Ready(None)
                }
            },
        }
    }
}

impl<T, E> Unpin for SinkItems<T, E> {}

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
    (Stream::new(items), status)
}
