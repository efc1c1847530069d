//! Streams on the [`BlockingClient`](crate::rpc::BlockingClient): an iterator of a server
//! stream's items, and an iterator fed to a sink.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::{decode_item, encode_item};
use crate::codec::error::EncodeError;
use crate::codec::wire::Field;
use crate::codec::{Encoder, MessageType};
use crate::rpc::conn::{Conn, Ending, RawItem, RouteId};
use crate::rpc::deadline::Deadline;
use crate::rpc::driver::blocking_conn::BlockingConn;
use crate::rpc::error::{CallError, RpcError};
use crate::rpc::method_name::MethodName;

/// The items of a server stream on the blocking client: an iterator of
/// `Result<T, CallError<E>>`, ending after the last item or after one error. Each item is
/// waited for as long as it takes (a stream may be quiet between events) unless
/// [`BlockingStreaming::set_item_timeout`] says otherwise. Dropping it cancels the stream.
pub struct BlockingStreaming<T, E = std::convert::Infallible> {
    conn: Arc<BlockingConn>,
    seqid: i32,
    id: RouteId,
    timeout: Option<Duration>,
    finished: bool,
    /// The sink of a call with streams both ways, fed while this waits for items.
    feeder: Option<SinkFeeder>,
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
    pub(crate) fn new(
        conn: Arc<BlockingConn>,
        seqid: i32,
        id: RouteId,
        timeout: Option<Duration>,
        feeder: Option<SinkFeeder>,
    ) -> Self {
        BlockingStreaming {
            conn,
            seqid,
            id,
            timeout,
            finished: false,
            feeder,
            _types: PhantomData,
        }
    }

    /// Waits at most `timeout` for each item from now on (`None`: as long as it takes). An
    /// item that does not come in time ends the stream with [`RpcError::Timeout`].
    pub fn set_item_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Cancels the stream now (as dropping it does): the server's producer is told, and items
    /// in flight are dropped with their fds. A sink still being fed is aborted.
    pub fn cancel(&mut self) {
        self.end(true);
    }

    /// The stream is over for this side: what it consumes is cancelled (unless it already
    /// ended), the sink it feeds is dropped (aborted if `aborted`).
    fn end(&mut self, aborted: bool) {
        self.finished = true;
        let (seqid, id, feeder) = (self.seqid, self.id, &mut self.feeder);
        // Bounded: a peer that stopped reading cannot hold a dropping iterator for ever.
        let _ = self.conn.send(self.conn.stall_deadline(), |c| {
            c.cancel_inbox(seqid, id);
            if let Some(f) = feeder {
                f.finish(c, aborted);
            }
            Ok(())
        });
    }

    /// Waits for the next item (or end, or failure), feeding the sink meanwhile.
    fn wait_item(&mut self) -> Result<Option<Result<RawItem, RpcError>>, RpcError> {
        let deadline = Deadline::after_opt(self.timeout);
        let (seqid, id) = (self.seqid, self.id);
        loop {
            if let Some(f) = &mut self.feeder {
                f.pull(&self.conn, deadline)?;
            }
            let feeder = &mut self.feeder;
            let event = self.conn.wait(deadline, |c| {
                if let Poll::Ready(next) = c.poll_item(seqid, id, None) {
                    return Some(Ok(next));
                }
                feeder.as_mut().and_then(|f| f.poll(c)).map(Err)
            })?;
            match event {
                Ok(next) => return Ok(next),
                Err(feed) => {
                    if let Some(f) = &mut self.feeder {
                        f.on(feed, &self.conn, deadline)?;
                    }
                }
            }
        }
    }
}

impl<T: Field, E: Field> Iterator for BlockingStreaming<T, E> {
    type Item = Result<T, CallError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = match self.wait_item() {
            Err(e) => Err(CallError::Rpc(e)),
            Ok(None) => {
                self.end(false);
                return None;
            }
            Ok(Some(Err(e))) => Err(CallError::Rpc(e)),
            Ok(Some(Ok((body, fds)))) => match decode_item::<T, E>(&body, fds) {
                Ok(Ok(item)) => return Some(Ok(item)),
                Ok(Err(e)) => Err(CallError::Service(e)),
                Err(e) => Err(CallError::Rpc(e)),
            },
        };
        // Any error ends the stream; the producer is told if it is still going.
        self.end(true);
        Some(item)
    }
}

impl<T, E> Drop for BlockingStreaming<T, E> {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
        }
    }
}

/// The items a blocking call sends as its sink, encoded as they are pulled (used by generated
/// clients): the blocking counterpart of the async client's `producer`, so that
/// the untyped call APIs of both clients take their sink the same way, with the item and
/// error types erased.
pub struct BlockingSink {
    items: Box<dyn ErasedBlockingSink>,
}

impl std::fmt::Debug for BlockingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingSink").finish_non_exhaustive()
    }
}

impl BlockingSink {
    /// The sink of `items`; an `Err` ends it with the producer's error.
    pub fn new<T, E>(items: impl Iterator<Item = Result<T, E>> + Send + 'static) -> Self
    where
        T: Field + Send + 'static,
        E: Field + Send + 'static,
    {
        BlockingSink {
            items: Box::new(Typed {
                items: Box::new(items),
            }),
        }
    }
}

/// A sink's items, encoded as they are pulled.
trait ErasedBlockingSink: Send {
    /// The next frame: its payload, whether it is the final error; `None` at the end.
    fn next_frame(
        &mut self,
        method: &str,
        seqid: i32,
    ) -> Option<Result<(Encoder, bool), EncodeError>>;
}

struct Typed<T, E> {
    items: Box<dyn Iterator<Item = Result<T, E>> + Send>,
}

impl<T: Field + Send + 'static, E: Field + Send + 'static> ErasedBlockingSink for Typed<T, E> {
    fn next_frame(
        &mut self,
        method: &str,
        seqid: i32,
    ) -> Option<Result<(Encoder, bool), EncodeError>> {
        let next = self.items.next()?;
        Some(encode_item(method, MessageType::Oneway, seqid, next))
    }
}

/// What feeding a sink from the blocking client is waiting for; see [`SinkFeeder::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// A unit of credit was taken for the item held: send it.
    Send,
    /// The server cancelled the sink: stop feeding.
    Cancelled,
}

/// Feeds a sink's items from an iterator as the server grants credit, on whichever thread
/// waits for the call (its reply, or the items of the stream it returned).
///
/// The iterator is user code, so it is pulled outside the connection's lock: the next item is
/// pulled and held, then sent once credit for it comes. Pulling ahead of credit is what lets
/// the end of the sink go out without credit.
pub(crate) struct SinkFeeder {
    items: Box<dyn ErasedBlockingSink>,
    method: MethodName,
    seqid: i32,
    id: RouteId,
    held: Option<(Encoder, bool)>,
    feeding: bool,
}

impl std::fmt::Debug for SinkFeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkFeeder")
            .field("seqid", &self.seqid)
            .field("feeding", &self.feeding)
            .finish_non_exhaustive()
    }
}

impl SinkFeeder {
    pub(crate) fn new(sink: BlockingSink, method: MethodName, seqid: i32, id: RouteId) -> Self {
        SinkFeeder {
            items: sink.items,
            method,
            seqid,
            id,
            held: None,
            feeding: true,
        }
    }

    /// Pulls the next item if none is held; at the end of the items (or an item that cannot
    /// be encoded), ends the sink.
    ///
    /// # Errors
    ///
    /// The connection's, writing the end.
    pub(crate) fn pull(
        &mut self,
        conn: &BlockingConn,
        deadline: Option<Deadline>,
    ) -> Result<(), RpcError> {
        if !self.feeding || self.held.is_some() {
            return Ok(());
        }
        let ending = match self.items.next_frame(&self.method, self.seqid) {
            Some(Ok(item)) => {
                self.held = Some(item);
                return Ok(());
            }
            None => Ending::End,
            Some(Err(e)) => {
                tracing::error!(method = self.method.as_str(), error = %e, "fdrpc: could not encode a sink item; aborting the sink");
                Ending::unencodable(&e)
            }
        };
        self.feeding = false;
        let (seqid, id, method) = (self.seqid, self.id, &self.method);
        conn.send(deadline, |c| {
            c.end_outbox(seqid, id, method, ending);
            Ok(())
        })
    }

    /// Under the connection's lock: whether the held item may go now (a unit of credit taken)
    /// or the sink was cancelled. `None` while there is nothing to do but wait.
    pub(crate) fn poll(&mut self, c: &mut Conn) -> Option<Feed> {
        if !self.feeding || self.held.is_none() {
            return None;
        }
        match c.take_credit(self.seqid, self.id, None) {
            Poll::Ready(true) => Some(Feed::Send),
            Poll::Ready(false) => Some(Feed::Cancelled),
            Poll::Pending => None,
        }
    }

    /// Acts on what [`SinkFeeder::poll`] said.
    ///
    /// # Errors
    ///
    /// The connection's, writing the item.
    pub(crate) fn on(
        &mut self,
        feed: Feed,
        conn: &BlockingConn,
        deadline: Option<Deadline>,
    ) -> Result<(), RpcError> {
        match (feed, self.held.take()) {
            (Feed::Send, Some((item, is_error))) => {
                self.feeding = !is_error;
                let (seqid, id) = (self.seqid, self.id);
                conn.send(deadline, |c| {
                    c.push_item(seqid, id, item, is_error)
                        .map_err(RpcError::Connection)
                })
            }
            _ => {
                self.feeding = false;
                Ok(())
            }
        }
    }

    /// The call is over: a sink still being fed is dropped, and the server told with `abort`
    /// if `aborted` (the caller gave up) rather than because the call finished.
    pub(crate) fn finish(&mut self, c: &mut Conn, aborted: bool) {
        self.held = None;
        if std::mem::take(&mut self.feeding) {
            let how = if aborted {
                Ending::gave_up()
            } else {
                Ending::Silent
            };
            c.end_outbox(self.seqid, self.id, &self.method, how);
        }
    }
}
