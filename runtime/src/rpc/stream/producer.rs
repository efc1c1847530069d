//! The producing end of a stream: items are pulled from a [`Stream`], encoded, and sent as
//! the consumer's credit allows.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream as FuturesStream;

use super::items::Stream;
use crate::codec::call_result::encode_result;
use crate::codec::error::EncodeError;
use crate::codec::wire::Field;
use crate::codec::{Encoder, MessageType};

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
        Poll::Ready(Some(encode_item(method, ty, seqid, next)))
    }
}

/// Encodes one stream item frame's payload: the message header, then the result struct of
/// `item` (field 0 for an item, field 1 for the producer's error). Returns it with whether it
/// is the error.
pub(crate) fn encode_item<T: Field, E: Field>(
    method: &str,
    ty: MessageType,
    seqid: i32,
    item: Result<T, E>,
) -> Result<(Encoder, bool), EncodeError> {
    let is_error = item.is_err();
    let mut enc = Encoder::new();
    enc.write_message_header(method, ty, seqid)?;
    encode_result::<T, E>(&mut enc, item)?;
    Ok((enc, is_error))
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

pub(crate) use run::produce;

mod run {
    use std::task::Poll;

    use super::ErasedProducer;
    use crate::codec::{Encoder, MessageType};
    use crate::rpc::conn::{Ending, RouteId};
    use crate::rpc::driver::handle::Driven;
    use crate::rpc::method_name::MethodName;

    /// Sends the items of `p` on stream `seqid` (producer `id`) as credit allows, then its
    /// end (or error). Stops when the consumer cancels or the connection ends; `p` is dropped
    /// then, which is how a producer learns of a cancel.
    ///
    /// The next item is pulled before credit for it is there, so that the end of a stream is
    /// known without credit: a consumer that grants exactly n items sees the end of an
    /// n-item stream. So a producer holds at most one item beyond what it was granted.
    pub(crate) async fn produce(
        conn: Driven,
        method: MethodName,
        ty: MessageType,
        seqid: i32,
        id: RouteId,
        mut p: Box<dyn ErasedProducer>,
    ) {
        let mut held: Option<(Encoder, bool)> = None;
        let ending = loop {
            if held.is_none() {
                let next = std::future::poll_fn(|cx| match p.poll_frame(cx, &method, ty, seqid) {
                    Poll::Ready(next) => Poll::Ready(Some(next)),
                    // Waiting for the user's stream: a cancel must still wake us.
                    Poll::Pending if conn.with(|c| c.outbox_open(seqid, id, Some(cx.waker()))) => {
                        Poll::Pending
                    }
                    Poll::Pending => Poll::Ready(None),
                })
                .await;
                match next {
                    None => break Ending::Silent,
                    Some(None) => break Ending::End,
                    Some(Some(Ok(item))) => held = Some(item),
                    Some(Some(Err(e))) => {
                        tracing::error!(method = method.as_str(), error = %e, "fdrpc: could not encode a stream item; aborting the stream");
                        break Ending::unencodable(&e);
                    }
                }
            }
            let granted = std::future::poll_fn(|cx| {
                conn.with(|c| c.take_credit(seqid, id, Some(cx.waker())))
            })
            .await;
            // Room in the backlog too: credit alone does not prove the peer reads.
            if !granted || conn.room_for_item().await.is_err() {
                break Ending::Silent;
            }
            let Some((item, is_error)) = held.take() else {
                continue;
            };
            if conn
                .with(|c| c.push_item(seqid, id, item, is_error))
                .is_err()
                || is_error
            {
                break Ending::Silent;
            }
        };
        drop(p);
        conn.with(|c| c.end_outbox(seqid, id, &method, ending));
    }
}
