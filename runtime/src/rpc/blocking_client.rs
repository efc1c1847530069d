//! [`BlockingClient`]: the client side of a connection for plain threads, no async runtime.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::blocking_stream::{BlockingSink, BlockingStreaming, ErasedBlockingSink, Stashed};
use super::client::{Reply, decode_reply};
use super::error::{ConnectionError, RpcError};
use super::flow::{DEFAULT_WINDOW, HEADER_CREDIT, HEADER_STREAM, MAX_WINDOW, StreamFrame, Window};
use crate::compact::{Decoder, Encoder, MessageType};
use crate::error::{DecodeError, TransportError};
use crate::fd_table::FdTable;
use crate::transport::{Fill, Limits, RecvQueue, SendQueue};
use crate::wire::{Field, Wire};

/// A server stream's items received but not yet taken by its iterator (at most its window).
struct Stash {
    queue: VecDeque<Stashed>,
    window: Window,
}

#[derive(Default)]
struct SinkCredit {
    available: u32,
    cancelled: bool,
}

struct Conn {
    stream: UnixStream,
    send: SendQueue,
    recv: RecvQueue,
    scratch: Vec<u8>,
    dead: Option<ConnectionError>,
    streams: HashMap<i32, Stash>,
    sinks: HashMap<i32, SinkCredit>,
}

/// A frame that is not a stream frame: a reply (or something unexpected) for `seqid`.
struct Routed {
    seqid: i32,
    ty: MessageType,
    body: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// A blocking client: each call writes its frame and waits for its reply on the calling
/// thread. Clones share the connection; calls from several threads take turns on it.
///
/// A call that times out leaves its reply to be discarded (fds closed) by a later call.
/// Server streams are iterators ([`BlockingStreaming`]) and sinks are fed from iterators;
/// methods that take a stream and return one are only on the async client.
#[derive(Clone)]
pub struct BlockingClient {
    conn: Arc<Mutex<Conn>>,
    next_seqid: Arc<AtomicI32>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BlockingClient {
    /// Connects to the server listening at `path`.
    ///
    /// # Errors
    ///
    /// The error of `connect`.
    pub fn connect(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Self::new(UnixStream::connect(path)?))
    }

    /// A client over an already-connected stream, with the default [`Limits`].
    pub fn new(stream: UnixStream) -> Self {
        Self::with_limits(stream, Limits::default())
    }

    /// A client over an already-connected stream, applying `limits` to what it receives.
    pub fn with_limits(stream: UnixStream, limits: Limits) -> Self {
        BlockingClient {
            conn: Arc::new(Mutex::new(Conn {
                stream,
                send: SendQueue::new(),
                recv: RecvQueue::new(limits),
                scratch: Vec::new(),
                dead: None,
                streams: HashMap::new(),
                sinks: HashMap::new(),
            })),
            next_seqid: Arc::new(AtomicI32::new(1)),
            timeout: None,
        }
    }

    /// A handle to the same connection whose calls time out after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        BlockingClient {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seqid(&self) -> i32 {
        loop {
            let id = self.next_seqid.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|d| Instant::now() + d)
    }

    /// Sends a call and waits for its reply (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    #[doc(hidden)]
    pub fn call<A: Wire, R>(
        &self,
        method: &'static str,
        args: A,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
    ) -> Result<R, RpcError> {
        let deadline = self.deadline();
        let seqid = self.seqid();
        let mut conn = self.lock();
        send_call(&mut conn, method, MessageType::Call, seqid, args, &[])?;
        let reply = wait_reply(&mut conn, seqid, deadline, self.timeout)?;
        decode_reply(reply, decode)
    }

    /// Asks the server for the Thrift IDL of the services it serves (the reserved method
    /// `_fdrpc_idl`).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    pub fn introspect(&self) -> Result<String, RpcError> {
        self.call(super::INTROSPECTION_METHOD, (), |d| {
            super::result::decode_result::<String, std::convert::Infallible>(d, false)
        })
        .map(|r| match r {
            Ok(s) => s,
            Err(never) => match never {},
        })
    }

    /// Sends a oneway call (used by generated clients). Returns once it is written.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`] or [`RpcError::Connection`].
    #[doc(hidden)]
    pub fn oneway<A: Wire>(&self, method: &'static str, args: A) -> Result<(), RpcError> {
        let seqid = self.seqid();
        let mut conn = self.lock();
        send_call(&mut conn, method, MessageType::Oneway, seqid, args, &[])
    }

    /// Sends a call with a sink fed from an iterator, then waits for the reply (used by
    /// generated clients). Items are sent as the server grants credit; once the reply comes,
    /// items not yet sent are dropped.
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    #[doc(hidden)]
    pub fn call_with_sink<A: Wire, R, T, E>(
        &self,
        method: &'static str,
        args: A,
        sink: BlockingSink<T, E>,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
    ) -> Result<R, RpcError>
    where
        T: Field + Send + 'static,
        E: Field + Send + 'static,
    {
        let mut sink: Box<dyn ErasedBlockingSink> = Box::new(sink);
        let deadline = self.deadline();
        let seqid = self.seqid();
        let mut conn = self.lock();
        conn.sinks.insert(seqid, SinkCredit::default());
        let result = (|| -> Result<Reply, RpcError> {
            send_call(&mut conn, method, MessageType::Call, seqid, args, &[])?;
            let mut sink_done = false;
            loop {
                while !sink_done {
                    let credit = conn.sinks.entry(seqid).or_default();
                    if credit.cancelled {
                        sink_done = true;
                        break;
                    }
                    if credit.available == 0 {
                        break;
                    }
                    credit.available -= 1;
                    match sink.next_frame(method, seqid) {
                        None => {
                            push_control(&mut conn, method, seqid, StreamFrame::End, None);
                            sink_done = true;
                        }
                        Some(Ok((enc, is_error))) => {
                            let kind = StreamFrame::carrying(is_error);
                            let (payload, fds) = enc.into_parts();
                            let _ = conn.send.push(
                                seqid,
                                &payload,
                                fds,
                                &[(HEADER_STREAM, kind.as_str())],
                            );
                            sink_done = is_error;
                        }
                        Some(Err(e)) => {
                            tracing::error!(method, error = %e, "fdrpc: could not encode a sink item; aborting the sink");
                            push_control(&mut conn, method, seqid, StreamFrame::Abort, None);
                            sink_done = true;
                        }
                    }
                }
                flush(&mut conn)?;
                if let Some(reply) = next_routed(&mut conn, deadline, self.timeout)? {
                    if reply.seqid == seqid {
                        return Ok(Reply {
                            ty: reply.ty,
                            body: reply.body,
                            fds: reply.fds,
                        });
                    }
                }
            }
        })();
        conn.sinks.remove(&seqid);
        drop(conn);
        decode_reply(result?, decode)
    }

    /// Sends a call whose reply opens a server stream, and returns the stream's iterator
    /// (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    #[doc(hidden)]
    pub fn call_streaming<A: Wire, R, T: Field, E: Field>(
        &self,
        method: &'static str,
        args: A,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
        sink: Option<std::convert::Infallible>,
    ) -> Result<(R, BlockingStreaming<T, E>), RpcError> {
        let _ = sink;
        let deadline = self.deadline();
        let seqid = self.seqid();
        let mut conn = self.lock();
        conn.streams.insert(
            seqid,
            Stash {
                queue: VecDeque::new(),
                window: Window::new(DEFAULT_WINDOW),
            },
        );
        let window = DEFAULT_WINDOW.to_string();
        let reply = send_call(
            &mut conn,
            method,
            MessageType::Call,
            seqid,
            args,
            &[(HEADER_CREDIT, &window)],
        )
        .and_then(|()| wait_reply(&mut conn, seqid, deadline, self.timeout));
        drop(conn);
        // From here the iterator owns the stash: dropping it (also on an error below) cancels.
        let streaming = BlockingStreaming::new(self.clone(), method, seqid);
        let r = decode_reply(reply?, decode)?;
        Ok((r, streaming))
    }

    /// The next item of stream `seqid`, reading frames until one arrives.
    pub(crate) fn next_stashed(&self, method: &'static str, seqid: i32) -> Stashed {
        let deadline = self.deadline();
        let mut conn = self.lock();
        loop {
            let Some(stash) = conn.streams.get_mut(&seqid) else {
                let dead = conn
                    .dead
                    .clone()
                    .unwrap_or_else(|| ConnectionError::new(TransportError::Closed));
                return Stashed::Failed(RpcError::Connection(dead));
            };
            if let Some(item) = stash.queue.pop_front() {
                match &item {
                    Stashed::Data { .. } => {
                        if let Some(n) = stash.window.consumed() {
                            push_control(&mut conn, method, seqid, StreamFrame::Credit, Some(n));
                            if let Err(e) = flush(&mut conn) {
                                return Stashed::Failed(e);
                            }
                        }
                    }
                    Stashed::End | Stashed::Failed(_) => {
                        conn.streams.remove(&seqid);
                    }
                }
                return item;
            }
            // Replies seen here belong to calls that gave up: their fds close.
            if let Err(e) = next_routed(&mut conn, deadline, self.timeout) {
                conn.streams.remove(&seqid);
                return Stashed::Failed(e);
            }
        }
    }

    /// Stops stream `seqid`: tells the server and drops what was stashed.
    pub(crate) fn cancel_stream(&self, method: &'static str, seqid: i32) {
        let mut conn = self.lock();
        if conn.streams.remove(&seqid).is_some() && conn.dead.is_none() {
            push_control(&mut conn, method, seqid, StreamFrame::Cancel, None);
            let _ = flush(&mut conn);
        }
    }

    /// Forgets stream `seqid` (it ended with an error).
    pub(crate) fn forget_stream(&self, seqid: i32) {
        self.lock().streams.remove(&seqid);
    }
}

fn send_call<A: Wire>(
    conn: &mut Conn,
    method: &'static str,
    ty: MessageType,
    seqid: i32,
    args: A,
    headers: &[(&str, &str)],
) -> Result<(), RpcError> {
    if let Some(dead) = &conn.dead {
        return Err(RpcError::Connection(dead.clone()));
    }
    let mut enc = Encoder::with_buffer(std::mem::take(&mut conn.scratch));
    let encoded = enc
        .write_message_header(method, ty, seqid)
        .and_then(|()| args.encode(&mut enc));
    let (mut payload, fds) = enc.into_parts();
    let result = encoded.map_err(RpcError::Encode).and_then(|()| {
        conn.send
            .push(seqid, &payload, fds, headers)
            .map_err(|e| RpcError::Connection(ConnectionError::new(e.into())))
    });
    payload.clear();
    conn.scratch = payload;
    result?;
    flush(conn)
}

fn flush(conn: &mut Conn) -> Result<(), RpcError> {
    if let Err(e) = conn.send.flush_blocking(conn.stream.as_fd()) {
        return Err(RpcError::Connection(kill(conn, TransportError::Io(e))));
    }
    Ok(())
}

/// Queues a stream control frame (an empty struct) from the client.
fn push_control(conn: &mut Conn, method: &str, seqid: i32, kind: StreamFrame, credit: Option<u32>) {
    let mut enc = Encoder::new();
    if enc
        .write_message_header(method, MessageType::Oneway, seqid)
        .is_err()
    {
        return;
    }
    enc.write_stop();
    let (payload, fds) = enc.into_parts();
    let n = credit.map(|c| c.to_string());
    let mut headers: Vec<(&str, &str)> = vec![(HEADER_STREAM, kind.as_str())];
    if let Some(n) = &n {
        headers.push((HEADER_CREDIT, n));
    }
    let _ = conn.send.push(seqid, &payload, fds, &headers);
}

/// Reads until the reply to `seqid` arrives.
fn wait_reply(
    conn: &mut Conn,
    seqid: i32,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Result<Reply, RpcError> {
    loop {
        if let Some(r) = next_routed(conn, deadline, timeout)? {
            if r.seqid == seqid {
                return Ok(Reply {
                    ty: r.ty,
                    body: r.body,
                    fds: r.fds,
                });
            }
            // The reply to an earlier call that timed out: its fds close here.
        }
    }
}

/// Reads one frame (waiting for it until `deadline`). Stream frames are routed to their
/// stream and give `None`; other frames are returned.
fn next_routed(
    conn: &mut Conn,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Result<Option<Routed>, RpcError> {
    if let Some(dead) = &conn.dead {
        return Err(RpcError::Connection(dead.clone()));
    }
    loop {
        let frame = match conn.recv.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                match conn.recv.fill_until(conn.stream.as_fd(), deadline) {
                    Ok(Fill::Read(_)) => {}
                    Ok(Fill::WouldBlock) => {
                        return Err(RpcError::Timeout(timeout.unwrap_or_default()));
                    }
                    Ok(Fill::Eof) => {
                        let why = conn
                            .recv
                            .check_clean_eof()
                            .err()
                            .unwrap_or(TransportError::Closed);
                        return Err(RpcError::Connection(kill(conn, why)));
                    }
                    Err(e) => return Err(RpcError::Connection(kill(conn, e))),
                }
                continue;
            }
            Err(e) => return Err(RpcError::Connection(kill(conn, e))),
        };
        let payload = frame.frame.payload;
        let mut dec = Decoder::new(payload, FdTable::empty());
        let header = match dec.read_message_header() {
            Ok(h) => h,
            Err(e) => return Err(RpcError::Connection(kill(conn, e.into()))),
        };
        let body = payload
            .get(payload.len() - dec.remaining()..)
            .unwrap_or_default()
            .to_vec();
        let seqid = header.seqid;
        let ty = header.ty;
        let kind = frame.frame.header(HEADER_STREAM).map(StreamFrame::parse);
        let credit: Option<u32> = frame
            .frame
            .header(HEADER_CREDIT)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
        let fds = frame.fds;
        let Some(kind) = kind else {
            return Ok(Some(Routed {
                seqid,
                ty,
                body,
                fds,
            }));
        };
        match kind {
            None => {
                let why = TransportError::Frame(crate::FrameError::Malformed(
                    "unknown `fdrpc-stream` value",
                ));
                return Err(RpcError::Connection(kill(conn, why)));
            }
            Some(StreamFrame::Credit) => {
                if let Some(c) = conn.sinks.get_mut(&seqid) {
                    c.available = c
                        .available
                        .saturating_add(credit.unwrap_or(0).min(MAX_WINDOW));
                }
            }
            Some(StreamFrame::Cancel) => {
                if let Some(c) = conn.sinks.get_mut(&seqid) {
                    c.cancelled = true;
                }
            }
            Some(kind) => {
                let Some(stash) = conn.streams.get_mut(&seqid) else {
                    // A stream that was cancelled: its fds close here.
                    return Ok(None);
                };
                let item = match kind {
                    StreamFrame::Item | StreamFrame::Error => {
                        if stash.window.received() {
                            Stashed::Data { body, fds }
                        } else {
                            Stashed::Failed(RpcError::Application(super::ApplicationError::new(
                                super::ApplicationErrorKind::ProtocolError,
                                "the server sent more items than it was granted",
                            )))
                        }
                    }
                    StreamFrame::End => Stashed::End,
                    _ => Stashed::Failed(RpcError::Application(super::ApplicationError::new(
                        super::ApplicationErrorKind::Unknown,
                        "the server aborted the stream",
                    ))),
                };
                stash.queue.push_back(item);
            }
        }
        return Ok(None);
    }
}

fn kill(conn: &mut Conn, why: TransportError) -> ConnectionError {
    let err = ConnectionError::new(why);
    conn.dead = Some(err.clone());
    // Close what the connection held: queued fds in both directions, stashed items.
    conn.send = SendQueue::new();
    conn.recv = RecvQueue::new(Limits::default());
    for stash in conn.streams.values_mut() {
        stash.queue.clear();
        stash
            .queue
            .push_back(Stashed::Failed(RpcError::Connection(err.clone())));
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    err
}
