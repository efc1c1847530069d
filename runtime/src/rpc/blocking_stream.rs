//! Streams on the [`BlockingClient`](super::BlockingClient): an iterator of a server
//! stream's items, and an iterator fed to a sink.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;

use super::blocking_client::BlockingClient;
use super::error::{CallError, RpcError};
use super::result::{decode_result, encode_result};
use crate::compact::{Decoder, Encoder, MessageType};
use crate::error::EncodeError;
use crate::fd_table::FdTable;
use crate::wire::Field;

/// An item or error of a stream, still encoded, as the blocking connection stashes it.
pub(crate) enum Stashed {
    Data { body: Vec<u8>, fds: Vec<OwnedFd> },
    End,
    Failed(RpcError),
}

/// The items of a server stream on the blocking client: an iterator of
/// `Result<T, CallError<E>>`, ending after the last item or after one error. Dropping it
/// cancels the stream.
pub struct BlockingStreaming<T, E = std::convert::Infallible> {
    client: BlockingClient,
    method: &'static str,
    seqid: i32,
    finished: bool,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for BlockingStreaming<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingStreaming")
            .field("seqid", &self.seqid)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<T, E> BlockingStreaming<T, E> {
    pub(crate) fn new(client: BlockingClient, method: &'static str, seqid: i32) -> Self {
        BlockingStreaming {
            client,
            method,
            seqid,
            finished: false,
            _types: PhantomData,
        }
    }

    /// Cancels the stream now (as dropping it does).
    pub fn cancel(&mut self) {
        if !self.finished {
            self.finished = true;
            self.client.cancel_stream(self.method, self.seqid);
        }
    }
}

impl<T: Field, E: Field> Iterator for BlockingStreaming<T, E> {
    type Item = Result<T, CallError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.client.next_stashed(self.method, self.seqid) {
            Stashed::End => {
                self.finished = true;
                None
            }
            Stashed::Failed(e) => {
                self.finished = true;
                Some(Err(CallError::Rpc(e)))
            }
            Stashed::Data { body, fds } => {
                let mut dec = Decoder::new(&body, FdTable::new(fds));
                let decoded =
                    decode_result::<T, E>(&mut dec, true).and_then(|r| dec.finish().map(|()| r));
                match decoded {
                    Ok(Ok(item)) => Some(Ok(item)),
                    Ok(Err(e)) => {
                        self.finished = true;
                        self.client.forget_stream(self.seqid);
                        Some(Err(CallError::Service(e)))
                    }
                    Err(e) => {
                        self.cancel();
                        Some(Err(CallError::Rpc(RpcError::Decode(e))))
                    }
                }
            }
        }
    }
}

impl<T, E> Drop for BlockingStreaming<T, E> {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The items a blocking call sends as its sink (used by generated clients).
pub struct BlockingSink<T, E> {
    items: Box<dyn Iterator<Item = Result<T, E>> + Send>,
}

impl<T, E> std::fmt::Debug for BlockingSink<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingSink").finish_non_exhaustive()
    }
}

impl<T: Field + Send + 'static, E: Field + Send + 'static> BlockingSink<T, E> {
    /// The sink of `items`.
    pub fn new(items: impl Iterator<Item = Result<T, E>> + Send + 'static) -> Self {
        BlockingSink {
            items: Box::new(items),
        }
    }
}

/// Type-erased [`BlockingSink`]: yields encoded frame payloads.
pub(crate) trait ErasedBlockingSink: Send {
    /// The next frame: its payload, whether it is the final error; `None` at the end.
    fn next_frame(
        &mut self,
        method: &str,
        seqid: i32,
    ) -> Option<Result<(Encoder, bool), EncodeError>>;
}

impl<T: Field + Send + 'static, E: Field + Send + 'static> ErasedBlockingSink
    for BlockingSink<T, E>
{
    fn next_frame(
        &mut self,
        method: &str,
        seqid: i32,
    ) -> Option<Result<(Encoder, bool), EncodeError>> {
        let next = self.items.next()?;
        let is_error = next.is_err();
        let mut enc = Encoder::new();
        let r = enc
            .write_message_header(method, MessageType::Oneway, seqid)
            .and_then(|()| encode_result::<T, E>(&mut enc, next));
        Some(r.map(|()| (enc, is_error)))
    }
}
