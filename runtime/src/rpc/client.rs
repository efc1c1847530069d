//! [`Client`]: the async, multiplexed client side of a connection. Generated
//! `{Trait}Client`s wrap it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::app_exception::ApplicationError;
use super::error::{ConnectionError, RpcError};
use super::flow::{Credit, DEFAULT_WINDOW, HEADER_CREDIT, HEADER_STREAM, StreamFrame};
use super::producer::{ErasedProducer, produce};
use super::reader;
use super::routes::{Delivered, Routes, send_control};
use super::socket::Socket;
use super::streaming::{Consumer, Streaming};
use super::writer::Writer;
use crate::compact::{Decoder, Encoder, MessageType};
use crate::error::{DecodeError, TransportError};
use crate::fd_table::FdTable;
use crate::transport::{Limits, RecvQueue};
use crate::wire::{Field, Wire};

/// A reply as the reader hands it to the waiting call.
pub(crate) struct Reply {
    pub(crate) ty: MessageType,
    /// The payload after the Thrift message header.
    pub(crate) body: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

struct Waiter {
    method: &'static str,
    tx: oneshot::Sender<Result<Reply, RpcError>>,
}

struct Pending {
    waiters: HashMap<i32, Waiter>,
    dead: Option<ConnectionError>,
}

struct Shared {
    stream: Arc<Socket>,
    writer: Arc<Writer>,
    routes: Arc<Routes>,
    pending: Mutex<Pending>,
    next_seqid: AtomicI32,
    window: u32,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every pending call and every later one with `err`.
    fn kill(&self, err: ConnectionError) {
        self.writer.fail(err.clone());
        self.routes.fail_all(&err);
        let waiters = {
            let mut p = self.pending();
            if p.dead.is_none() {
                p.dead = Some(err.clone());
            }
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            let _ = w.tx.send(Err(RpcError::Connection(err.clone())));
        }
    }
}

/// Ends the connection's tasks when the last handle goes away.
struct Core {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Core {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared
            .kill(ConnectionError::new(TransportError::Closed));
    }
}

/// The client end of one connection: many calls in flight at once, matched to replies by
/// sequence id, their frames and fds batched into as few `sendmsg` calls as possible.
///
/// Cheap to clone; the connection closes when the last clone is dropped, failing calls still
/// in flight. Dropping a call's future forgets the call: its reply, if it comes, is discarded
/// and its fds closed.
#[derive(Clone)]
pub struct Client {
    core: Arc<Core>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server listening at `path`.
    ///
    /// # Errors
    ///
    /// The error of `connect`.
    pub async fn connect(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Self::new(UnixStream::connect(path).await?)
    }

    /// A client over an already-connected std stream (made non-blocking here).
    ///
    /// # Errors
    ///
    /// The error of registering the stream with the tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Self::new(UnixStream::from_std(stream)?)
    }

    /// A client over an already-connected stream, with the default [`Limits`].
    ///
    /// # Errors
    ///
    /// The error of registering the socket with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        Self::with_limits(stream, Limits::default())
    }

    /// A client over an already-connected stream, applying `limits` to what it receives.
    ///
    /// # Errors
    ///
    /// The error of registering the socket with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn with_limits(stream: UnixStream, limits: Limits) -> std::io::Result<Self> {
        let stream = Arc::new(Socket::from_tokio(stream)?);
        let shared = Arc::new(Shared {
            writer: Arc::new(Writer::new(
                stream.clone(),
                (4 << 20, 1024),
                CLIENT_STALL_TIMEOUT,
            )),
            routes: Arc::new(Routes::default()),
            window: DEFAULT_WINDOW,
            stream,
            pending: Mutex::new(Pending {
                waiters: HashMap::new(),
                dead: None,
            }),
            next_seqid: AtomicI32::new(1),
        });
        let writer = tokio::spawn({
            let shared = shared.clone();
            async move {
                let err = shared.writer.run().await;
                shared.kill(err);
            }
        });
        let reader = tokio::spawn({
            let shared = shared.clone();
            async move {
                let err = read_replies(&shared, limits).await;
                tracing::debug!(error = %err, "fdrpc client connection ended");
                shared.kill(err);
            }
        });
        Ok(Client {
            core: Arc::new(Core {
                shared,
                tasks: [writer, reader],
            }),
            timeout: None,
        })
    }

    /// A handle to the same connection whose calls time out after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Client {
            core: self.core.clone(),
            timeout: Some(timeout),
        }
    }

    /// The timeout of this handle's calls, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the connection has failed or closed.
    pub fn is_closed(&self) -> bool {
        self.core.shared.pending().dead.is_some()
    }

    fn seqid(&self) -> i32 {
        // Sequence ids wrap; 0 is skipped so that a zeroed header never matches a call.
        loop {
            let id = self.core.shared.next_seqid.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends a call and waits for its reply, decoded by `decode` (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future forgets the call; the reply's fds are closed when it arrives.
    #[doc(hidden)]
    pub async fn call<A: Wire, R>(
        &self,
        method: &'static str,
        args: A,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
    ) -> Result<R, RpcError> {
        self.exchange(method, args, decode, None, false)
            .await
            .map(|(r, _)| r)
    }

    /// Sends a call whose reply opens a stream of items (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future forgets the call; dropping the returned [`Streaming`] cancels the
    /// stream.
    #[doc(hidden)]
    pub async fn call_streaming<A: Wire, R, T: Field, E: Field>(
        &self,
        method: &'static str,
        args: A,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
        sink: Option<Box<dyn ErasedProducer>>,
    ) -> Result<(R, Streaming<T, E>), RpcError> {
        let (r, consumer) = self.exchange(method, args, decode, sink, true).await?;
        let consumer = consumer
            .ok_or_else(|| RpcError::Connection(ConnectionError::new(TransportError::Closed)))?;
        Ok((r, Streaming::new(consumer)))
    }

    /// Sends a call together with a stream of items (a sink), and waits for its reply (used
    /// by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts the sink (the server sees it break off) and forgets the
    /// call.
    #[doc(hidden)]
    pub async fn call_with_sink<A: Wire, R>(
        &self,
        method: &'static str,
        args: A,
        sink: Box<dyn ErasedProducer>,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
    ) -> Result<R, RpcError> {
        self.exchange(method, args, decode, Some(sink), false)
            .await
            .map(|(r, _)| r)
    }

    async fn exchange<A: Wire, R>(
        &self,
        method: &'static str,
        args: A,
        decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
        sink: Option<Box<dyn ErasedProducer>>,
        streaming: bool,
    ) -> Result<(R, Option<Consumer>), RpcError> {
        let shared = &self.core.shared;
        let seqid = self.seqid();
        let (tx, rx) = oneshot::channel();
        {
            let mut p = shared.pending();
            if let Some(dead) = &p.dead {
                return Err(RpcError::Connection(dead.clone()));
            }
            p.waiters.insert(seqid, Waiter { method, tx });
        }
        let guard = PendingGuard { shared, seqid };
        // Register the stream's ends before the call goes out: its frames may follow the
        // reply at once.
        let consumer = streaming.then(|| {
            let (rx, window) = shared.routes.open_inbound(seqid, shared.window);
            Consumer {
                rx,
                window,
                writer: shared.writer.clone(),
                routes: shared.routes.clone(),
                method,
                ty: MessageType::Oneway,
                seqid,
                finished: false,
            }
        });
        let credit = sink.as_ref().map(|_| shared.routes.open_credit(seqid, 0));
        let mut sink_guard = SinkGuard {
            shared,
            method,
            seqid,
            credit: credit.clone(),
            active: credit.is_some(),
        };
        let window = shared.window.to_string();
        let headers: &[(&str, &str)] = if streaming {
            &[(HEADER_CREDIT, &window)]
        } else {
            &[]
        };
        send(shared, method, MessageType::Call, seqid, args, headers)?;
        let reply = async {
            match self.timeout {
                Some(d) => tokio::time::timeout(d, rx)
                    .await
                    .map_err(|_| RpcError::Timeout(d)),
                None => Ok(rx.await),
            }
        };
        let reply = match (sink, credit) {
            (Some(p), Some(credit)) => {
                let produce = produce(
                    shared.writer.clone(),
                    shared.routes.clone(),
                    method,
                    MessageType::Oneway,
                    seqid,
                    credit,
                    p,
                );
                if streaming {
                    // A bidirectional call: the sink goes on after the reply, for as long as
                    // the server grants credit; it stops when cancelled or when the
                    // connection ends.
                    sink_guard.active = false;
                    tokio::spawn(produce);
                    reply.await
                } else {
                    // A sink: fed until the reply comes, which ends it.
                    tokio::pin!(produce);
                    tokio::pin!(reply);
                    let mut producing = true;
                    loop {
                        tokio::select! {
                            r = &mut reply => break r,
                            _ = &mut produce, if producing => {
                                producing = false;
                                sink_guard.active = false;
                            }
                        }
                    }
                }
            }
            _ => reply.await,
        }?;
        // The reply came: a sink still producing is no longer wanted.
        if sink_guard.active {
            sink_guard.active = false;
            if let Some(c) = &sink_guard.credit {
                shared.routes.close_credit(seqid, c);
            }
        }
        drop(guard);
        let reply = match reply {
            Ok(r) => r?,
            Err(_) => {
                let dead = shared.pending().dead.clone();
                return Err(RpcError::Connection(
                    dead.unwrap_or_else(|| ConnectionError::new(TransportError::Closed)),
                ));
            }
        };
        let r = decode_reply(reply, decode)?;
        Ok((r, consumer))
    }

    /// Sends a oneway call (used by generated clients). Returns once the frame is queued.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`], or [`RpcError::Connection`] if the connection is gone.
    #[doc(hidden)]
    pub fn oneway<A: Wire>(&self, method: &'static str, args: A) -> Result<(), RpcError> {
        let seqid = self.seqid();
        send(
            &self.core.shared,
            method,
            MessageType::Oneway,
            seqid,
            args,
            &[],
        )
    }

    /// Asks the server for the Thrift IDL of the services it serves (the reserved method
    /// `_fdrpc_idl`), as `busctl introspect` does for D-Bus.
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    pub async fn introspect(&self) -> Result<String, RpcError> {
        self.call(super::INTROSPECTION_METHOD, (), |d| {
            super::result::decode_result::<String, std::convert::Infallible>(d, false)
        })
        .await
        .map(|r| match r {
            Ok(s) => s,
            Err(never) => match never {},
        })
    }

    /// Waits until every frame queued on this connection has been written.
    pub async fn flush(&self) {
        self.core.shared.writer.drained().await;
    }
}

/// Removes a call from the pending map if its future is dropped before the reply.
struct PendingGuard<'a> {
    shared: &'a Shared,
    seqid: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        // A no-op once the reader has taken the waiter out.
        self.shared.pending().waiters.remove(&self.seqid);
    }
}

/// Aborts a sink still being sent when its call is dropped.
struct SinkGuard<'a> {
    shared: &'a Shared,
    method: &'static str,
    seqid: i32,
    credit: Option<Arc<Credit>>,
    active: bool,
}

impl Drop for SinkGuard<'_> {
    fn drop(&mut self) {
        if self.active {
            if let Some(c) = &self.credit {
                self.shared.routes.close_credit(self.seqid, c);
            }
            send_control(
                &self.shared.writer,
                self.method,
                MessageType::Oneway,
                self.seqid,
                StreamFrame::Abort,
                None,
            );
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Encodes a message (header and args struct) and queues its frame.
fn send<A: Wire>(
    shared: &Shared,
    method: &'static str,
    ty: MessageType,
    seqid: i32,
    args: A,
    headers: &[(&str, &str)],
) -> Result<(), RpcError> {
    let buf = SCRATCH.with(|s| s.take());
    let mut enc = Encoder::with_buffer(buf);
    let encoded = enc
        .write_message_header(method, ty, seqid)
        .and_then(|()| args.encode(&mut enc));
    let (mut payload, fds) = enc.into_parts();
    let pushed = match encoded {
        Ok(()) => shared
            .writer
            .push(seqid, &payload, fds, headers)
            .map_err(RpcError::Connection),
        Err(e) => Err(RpcError::Encode(e)),
    };
    payload.clear();
    SCRATCH.with(|s| s.set(payload));
    pushed
}

/// Decodes a reply frame: a result struct, or a `TApplicationException`.
pub(crate) fn decode_reply<R>(
    reply: Reply,
    decode: fn(&mut Decoder<'_>) -> Result<R, DecodeError>,
) -> Result<R, RpcError> {
    let mut dec = Decoder::new(&reply.body, FdTable::new(reply.fds));
    match reply.ty {
        MessageType::Exception => {
            let e = ApplicationError::decode(&mut dec)?;
            Err(RpcError::Application(e))
        }
        _ => {
            let value = decode(&mut dec)?;
            dec.finish()?;
            Ok(value)
        }
    }
}

async fn read_replies(shared: &Shared, limits: Limits) -> ConnectionError {
    let mut rq = RecvQueue::new(limits);
    loop {
        loop {
            let frame = match rq.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return ConnectionError::new(e),
            };
            let payload = frame.frame.payload;
            let mut dec = Decoder::new(payload, FdTable::empty());
            let header = match dec.read_message_header() {
                Ok(h) => h,
                Err(e) => return ConnectionError::new(e.into()),
            };
            let body_start = payload.len() - dec.remaining();
            if let Some(kind) = frame.frame.header(HEADER_STREAM) {
                let Some(kind) = StreamFrame::parse(kind) else {
                    return ConnectionError::new(TransportError::Frame(
                        crate::FrameError::Malformed("unknown `fdrpc-stream` value"),
                    ));
                };
                let credit = frame
                    .frame
                    .header(HEADER_CREDIT)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                let body = payload.get(body_start..).unwrap_or_default();
                if let Delivered::Violation { seqid } =
                    shared
                        .routes
                        .deliver(header.seqid, kind, credit, body, frame.fds)
                {
                    send_control(
                        &shared.writer,
                        header.name,
                        MessageType::Oneway,
                        seqid,
                        StreamFrame::Cancel,
                        None,
                    );
                }
                continue;
            }
            let waiter = shared.pending().waiters.remove(&header.seqid);
            let Some(waiter) = waiter else {
                // A reply for a call nobody waits for any more: its fds close here.
                tracing::debug!(seqid = header.seqid, "discarding reply to a forgotten call");
                continue;
            };
            let result = match header.ty {
                MessageType::Reply | MessageType::Exception if header.name == waiter.method => {
                    Ok(Reply {
                        ty: header.ty,
                        body: payload.get(body_start..).unwrap_or_default().to_vec(),
                        fds: frame.fds,
                    })
                }
                MessageType::Reply | MessageType::Exception => {
                    Err(RpcError::Application(ApplicationError::new(
                        super::ApplicationErrorKind::WrongMethodName,
                        format!(
                            "reply names `{}`, the call was `{}`",
                            header.name, waiter.method
                        ),
                    )))
                }
                _ => Err(RpcError::Application(ApplicationError::new(
                    super::ApplicationErrorKind::InvalidMessageType,
                    format!("the server sent a {:?} message as a reply", header.ty),
                ))),
            };
            let _ = waiter.tx.send(result);
        }
        // A server that parks fds in a half-sent frame cannot pin them here either.
        let filled = match rq.stall_deadline(CLIENT_STALL_TIMEOUT) {
            Some(deadline) => {
                let deadline = tokio::time::Instant::from_std(deadline);
                match tokio::time::timeout_at(deadline, reader::fill(&shared.stream, &mut rq)).await
                {
                    Ok(r) => r,
                    Err(_) => Err(crate::FdStreamError::Stalled(CLIENT_STALL_TIMEOUT).into()),
                }
            }
            None => reader::fill(&shared.stream, &mut rq).await,
        };
        match filled {
            Ok(true) => {}
            Ok(false) => return ConnectionError::new(TransportError::Closed),
            Err(e) => return ConnectionError::new(e),
        }
    }
}

/// How long a client lets a reply frame stay incomplete, or received fds stay unclaimed.
const CLIENT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
