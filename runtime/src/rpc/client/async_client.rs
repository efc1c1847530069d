//! [`Client`]: the async, multiplexed client side of a connection. Generated
//! `{Trait}Client`s wrap it.

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use tracing::Instrument;

use super::{DecodeFn, decode_idl, decode_reply, outgoing, record_seqid};
use crate::codec::MessageType;
use crate::codec::wire::Wire;
use crate::idl::INTROSPECTION_METHOD;
use crate::rpc::conn::{Ending, Role, Started};
use crate::rpc::deadline::Deadline;
use crate::rpc::driver::handle::Driven;
use crate::rpc::driver::socket::Socket;
use crate::rpc::driver::tokio_conn::TokioConn;
use crate::rpc::error::{ConnectionError, RpcError};
use crate::rpc::method_name::MethodName;
use crate::rpc::stream::{Consumer, ErasedProducer, Streaming, produce};
use crate::settings::Settings;
use crate::transport::RecvQueue;
use crate::transport::error::TransportError;

/// Ends the connection's tasks when the last handle goes away.
struct Inner {
    conn: Arc<TokioConn>,
    reader: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // What is queued (a `cancel` for a call just dropped) goes out if the socket takes it
        // now.
        self.conn.flush_inline();
        self.reader.abort();
        self.conn.stop_writer();
        self.conn.fail(ConnectionError::new(TransportError::Closed));
    }
}

/// The client end of one connection: many calls in flight at once, matched to replies by
/// sequence id, their frames and fds batched into as few `sendmsg` calls as possible.
///
/// Cheap to clone; the connection closes when the last clone is dropped, failing calls still
/// in flight. Calls time out after [`Settings::call_timeout`] (25 s unless set; see
/// [`Client::with_timeout`] and [`Client::without_timeout`]). Dropping a call's future cancels
/// the call: the server is told to drop its handler, and the reply, if it comes anyway, is
/// discarded and its fds closed.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
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
    /// Connects to the server listening at `path`, or at the abstract name `@name`.
    ///
    /// # Errors
    ///
    /// The error of `connect`.
    pub async fn connect(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        if crate::transport::address::is_abstract(path) {
            // Connecting to a Unix socket does not wait unless the listener's backlog is
            // full; tokio has no async connect for abstract names.
            return Self::from_std(crate::transport::address::connect(path)?);
        }
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

    /// A client over an already-connected stream, with the default [`Settings`].
    ///
    /// # Errors
    ///
    /// The error of registering the socket with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        Self::with_settings(stream, Settings::default())
    }

    /// A client over an already-connected stream, applying `settings` (the limits on what
    /// it receives, the stall timeout, the backlog of its sinks, the window of its streams).
    ///
    /// # Errors
    ///
    /// The error of registering the socket with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn with_settings(
        stream: UnixStream,
        settings: impl Borrow<Settings>,
    ) -> std::io::Result<Self> {
        let settings = settings.borrow();
        let conn = TokioConn::new(Socket::from_tokio(stream)?, Role::Client, settings);
        let reader = tokio::spawn({
            let conn = conn.clone();
            let rq = RecvQueue::new(settings);
            async move {
                let err = conn.read_replies(rq).await;
                tracing::debug!(error = %err, "fdrpc client connection ended");
                conn.fail(err);
            }
        });
        Ok(Client {
            inner: Arc::new(Inner { conn, reader }),
            timeout: settings.call_timeout,
        })
    }

    /// A handle to the same connection whose calls time out after `timeout` (instead of
    /// [`Settings::call_timeout`]): a call whose reply has not come by then fails with
    /// [`RpcError::Timeout`], and the server is told to drop its handler. The server learns
    /// the timeout with the call (`client_timeout`), and drops the handler itself once it
    /// passes.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Client {
            inner: self.inner.clone(),
            timeout: Some(timeout),
        }
    }

    /// A handle to the same connection whose calls wait for their replies as long as it
    /// takes: for calls that legitimately run long (a sink that uploads for minutes, a call
    /// that waits for an event).
    pub fn without_timeout(&self) -> Self {
        Client {
            inner: self.inner.clone(),
            timeout: None,
        }
    }

    /// The timeout of this handle's calls, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the connection has failed or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.conn.dead().is_some()
    }

    /// Waits until the connection ends (the server closed it, went away or broke the
    /// protocol, or it failed here) and returns why: the death notification of a service,
    /// as Binder's `linkToDeath`. Pending calls fail with the same error.
    /// [`ConnectionError::is_closed`] tells a close from a failure.
    ///
    /// The reader that notices runs whether or not calls are pending, so this returns as
    /// soon as the peer's end is closed.
    pub async fn closed(&self) -> ConnectionError {
        self.conn().ended_with().await
    }

    fn conn(&self) -> &Arc<TokioConn> {
        &self.inner.conn
    }

    /// Sends a call and waits for its reply, decoded by `decode` (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call: the server drops its handler; the reply's fds, if
    /// it comes anyway, are closed.
    #[doc(hidden)]
    pub async fn call<A: Wire, R>(
        &self,
        method: impl Into<MethodName>,
        args: A,
        decode: DecodeFn<R>,
    ) -> Result<R, RpcError> {
        // `exchange` without its sink and stream: the future of a plain call (what a caller
        // keeps by the thousand, and moves into a task or a `FuturesUnordered`) is a quarter
        // of the size: 1336 bytes there, ~300 here.
        let method = method.into();
        let conn = self.conn();
        let deadline = Deadline::after_opt(self.timeout);
        let (span, mut options) = outgoing(&method, MessageType::Call, deadline);
        options.expire_here = true;
        conn.room_for_call(deadline).await?;
        let started = conn.with(|c| c.start_call(&method, &options, |enc| args.encode(enc)))?;
        let seqid = started.seqid;
        record_seqid(span.as_ref(), seqid);
        let mut guard = CallGuard {
            conn,
            started,
            method,
            armed: true,
        };
        let reply = std::future::poll_fn(|cx| conn.with(|c| c.poll_reply(seqid, Some(cx.waker()))));
        let reply = in_span(span, reply).await?;
        guard.armed = false;
        decode_reply(reply, decode, self.timeout)
    }

    /// Sends a call whose reply opens a stream of items, and, if `sink` is given, feeds the
    /// call's sink from it meanwhile (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call; dropping the returned [`Streaming`] cancels the
    /// stream.
    #[doc(hidden)]
    pub async fn call_streaming<A: Wire, R, T, E>(
        &self,
        method: impl Into<MethodName>,
        args: A,
        decode: DecodeFn<R>,
        sink: Option<Box<dyn ErasedProducer>>,
    ) -> Result<(R, Streaming<T, E>), RpcError> {
        let (r, consumer) = self
            .exchange(method.into(), args, decode, sink, true)
            .await?;
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
        method: impl Into<MethodName>,
        args: A,
        decode: DecodeFn<R>,
        sink: Box<dyn ErasedProducer>,
    ) -> Result<R, RpcError> {
        self.exchange(method.into(), args, decode, Some(sink), false)
            .await
            .map(|(r, _)| r)
    }

    async fn exchange<A: Wire, R>(
        &self,
        method: MethodName,
        args: A,
        decode: DecodeFn<R>,
        sink: Option<Box<dyn ErasedProducer>>,
        streaming: bool,
    ) -> Result<(R, Option<Consumer>), RpcError> {
        let conn = self.conn();
        // Counted from before the call is sent: this side gives up no later than the server,
        // which counts from its arrival. The connection enforces it (its reader's timer).
        let deadline = Deadline::after_opt(self.timeout);
        let (span, mut options) = outgoing(&method, MessageType::Call, deadline);
        options.stream = streaming;
        options.sink = sink.is_some();
        options.expire_here = true;
        // The send queue is bounded like the server's backlog (`Settings::max_backlog`): a
        // call waits for room within its timeout.
        conn.room_for_call(deadline).await?;
        let started = conn.with(|c| c.start_call(&method, &options, |enc| args.encode(enc)))?;
        let seqid = started.seqid;
        record_seqid(span.as_ref(), seqid);
        // Made before the guard, so that it is dropped after it: a call given up takes its
        // frame back from the send queue if none of it was written, which the consumer's
        // cancel, queued behind the frame, would prevent. (The guard closes the stream's
        // inbox: the consumer then has nothing left to cancel.)
        let consumer = started
            .inbox
            .map(|id| Consumer::new(Driven::Tokio(conn.clone()), seqid, id));
        // From here, dropping this future (or failing) forgets the call, tells the server to
        // drop its handler, and aborts its sink; dropping the consumer cancels its stream.
        let mut guard = CallGuard {
            conn,
            started,
            method: method.clone(),
            armed: true,
        };
        // Settled by the reply, by the deadline passing, or by the connection's end.
        let reply = std::future::poll_fn(|cx| conn.with(|c| c.poll_reply(seqid, Some(cx.waker()))));
        let reply = match (sink, started.outbox) {
            (Some(p), Some(out)) => {
                let produce = produce(
                    Driven::Tokio(conn.clone()),
                    method.clone(),
                    MessageType::Oneway,
                    seqid,
                    out,
                    p,
                );
                if streaming {
                    // Both ways: the sink goes on after the reply, for as long as the server
                    // grants credit; it stops when cancelled or when the connection ends.
                    guard.started.outbox = None;
                    tokio::spawn(produce);
                    in_span(span, reply).await
                } else {
                    // A sink: fed until the reply comes, which ends it.
                    tokio::pin!(produce);
                    tokio::pin!(reply);
                    let mut producing = true;
                    let fed = async {
                        loop {
                            tokio::select! {
                                r = &mut reply => break r,
                                () = &mut produce, if producing => producing = false,
                            }
                        }
                    };
                    in_span(span, fed).await
                }
            }
            _ => in_span(span, reply).await,
        };
        let reply = reply?;
        guard.armed = false;
        // The call is over: a sink still going (not one that goes on beside the stream the
        // reply opened) is no longer wanted.
        if let Some(out) = guard.started.outbox {
            conn.with(|c| c.end_outbox(seqid, out, &method, Ending::Silent));
        }
        let r = decode_reply(reply, decode, self.timeout)?;
        Ok((r, consumer))
    }

    /// Sends a oneway call (used by generated clients) once the send queue is within its bound
    /// (`Settings::max_backlog`), waiting for room within this handle's timeout; returns once
    /// the frame is queued.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`], [`RpcError::Timeout`] if the queue stayed full, or
    /// [`RpcError::Connection`] if the connection is gone.
    #[doc(hidden)]
    pub async fn oneway_when_room<A: Wire>(
        &self,
        method: impl Into<MethodName>,
        args: A,
    ) -> Result<(), RpcError> {
        self.conn()
            .room_for_call(Deadline::after_opt(self.timeout))
            .await?;
        self.oneway(method, args)
    }

    /// Sends a oneway call (used by generated clients). Returns once the frame is queued.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`], or [`RpcError::Connection`] if the connection is gone.
    #[doc(hidden)]
    pub fn oneway<A: Wire>(&self, method: impl Into<MethodName>, args: A) -> Result<(), RpcError> {
        let method = method.into();
        let (span, options) = outgoing(&method, MessageType::Oneway, None);
        let _span = span.as_ref().map(tracing::Span::enter);
        self.conn()
            .with(|c| c.start_call(&method, &options, |enc| args.encode(enc)))
            .map(|_| ())
    }

    /// Asks the server for the Thrift IDL of the services it serves (the reserved method
    /// `_fdrpc_idl`), as `busctl introspect` does for D-Bus.
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    pub async fn introspect(&self) -> Result<String, RpcError> {
        self.call(INTROSPECTION_METHOD, (), decode_idl).await
    }

    /// Waits until every frame queued on this connection has been written.
    pub async fn flush(&self) {
        self.conn().drained().await;
    }
}

/// `fut`, inside `span` if there is one.
async fn in_span<F: std::future::Future>(span: Option<tracing::Span>, fut: F) -> F::Output {
    match span {
        Some(span) => fut.instrument(span).await,
        None => fut.await,
    }
}

/// Forgets a call, tells the server to drop its handler, and aborts its sink, if its future
/// is dropped (or it fails) before the reply.
struct CallGuard<'a> {
    conn: &'a TokioConn,
    started: Started,
    method: MethodName,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn
                .with(|c| c.forget_call(&self.started, &self.method, true));
            // Its frame may have left the queue: calls waiting for room look again.
            self.conn.backlog_shrank();
        }
    }
}
