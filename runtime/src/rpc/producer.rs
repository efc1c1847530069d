//! The producing end of a stream: pulls items from a [`Stream`] as credit allows, encodes
//! them and queues their frames.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream as FuturesStream;

use super::flow::{Credit, HEADER_STREAM, StreamFrame};
use super::result::encode_result;
use super::routes::{Routes, send_control};
use super::stream::Stream;
use super::writer::Writer;
use crate::compact::{Encoder, MessageType};
use crate::error::EncodeError;
use crate::wire::Field;

/// A stream whose items are encoded as they are pulled (type-erased for the runtime).
pub trait ErasedProducer: Send {
    /// The next item's frame payload (message header and result struct), and whether it is
    /// the producer's final error rather than an item.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        method: &str,
        ty: MessageType,
        seqid: i32,
    ) -> Poll<Option<Result<(Encoder, bool), EncodeError>>>;
}

struct Typed<T, E> {
    stream: Stream<T, E>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T: Field + Send + 'static, E: Field + Send + 'static> ErasedProducer for Typed<T, E> {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        method: &str,
        ty: MessageType,
        seqid: i32,
    ) -> Poll<Option<Result<(Encoder, bool), EncodeError>>> {
        let next = match Pin::new(&mut self.stream).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(r)) => r,
        };
        let is_error = next.is_err();
        let mut enc = Encoder::new();
        let encoded = enc
            .write_message_header(method, ty, seqid)
            .and_then(|()| encode_result::<T, E>(&mut enc, next));
        Poll::Ready(Some(encoded.map(|()| (enc, is_error))))
    }
}

/// Erases the item types of `stream` for the runtime (used by generated code).
pub fn producer<T, E>(stream: Stream<T, E>) -> Box<dyn ErasedProducer>
where
    T: Field + Send + 'static,
    E: Field + Send + 'static,
{
    Box::new(Typed {
        stream,
        _types: PhantomData,
    })
}

/// Sends the items of `p` on stream `seqid` as credit allows, then its end (or error).
/// Returns `true` if the stream ran to its end, `false` if it was cancelled.
pub(crate) async fn produce(
    writer: Arc<Writer>,
    routes: Arc<Routes>,
    method: &'static str,
    ty: MessageType,
    seqid: i32,
    credit: Arc<Credit>,
    mut p: Box<dyn ErasedProducer>,
) -> bool {
    let finished = loop {
        let granted = tokio::select! {
            biased;
            () = credit.cancelled() => false,
            ok = credit.take() => ok,
        };
        if !granted {
            break false;
        }
        // Room in the backlog first: credit alone does not prove the peer reads.
        let room = tokio::select! {
            biased;
            () = credit.cancelled() => break false,
            r = writer.room_for_item() => r,
        };
        if room.is_err() {
            break false;
        }
        let next = tokio::select! {
            biased;
            () = credit.cancelled() => break false,
            n = futures_util::future::poll_fn(|cx| p.poll_frame(cx, method, ty, seqid)) => n,
        };
        match next {
            None => {
                send_control(&writer, method, ty, seqid, StreamFrame::End, None);
                break true;
            }
            Some(Ok((enc, is_error))) => {
                let kind = StreamFrame::carrying(is_error);
                let (payload, fds) = enc.into_parts();
                if writer
                    .push(seqid, &payload, fds, &[(HEADER_STREAM, kind.as_str())])
                    .is_err()
                {
                    break false;
                }
                if kind == StreamFrame::Error {
                    break true;
                }
            }
            Some(Err(e)) => {
                tracing::error!(method, error = %e, "fdrpc: could not encode a stream item; aborting the stream");
                send_control(&writer, method, ty, seqid, StreamFrame::Abort, None);
                break true;
            }
        }
    };
    routes.close_credit(seqid, &credit);
    finished
}
