//! [`BlockingClient`]: the client side of a connection for plain threads, no async runtime.

use std::borrow::Borrow;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::{DecodeFn, decode_idl, decode_reply, outgoing, record_seqid};
use crate::codec::MessageType;
use crate::codec::wire::{Field, Wire};
use crate::idl::INTROSPECTION_METHOD;
use crate::rpc::conn::{CallOptions, Reply, Started};
use crate::rpc::deadline::Deadline;
use crate::rpc::driver::blocking_conn::BlockingConn;
use crate::rpc::error::{ConnectionError, RpcError};
use crate::rpc::method_name::MethodName;
use crate::rpc::stream::{BlockingSink, BlockingStreaming, SinkFeeder};
use crate::settings::Settings;

/// A blocking client: calls wait for their replies on the calling thread.
///
/// Clones share the connection, and calls from several threads are in flight on it together:
/// whichever waiting thread is reading hands each reply to its caller. Calls time out after
/// [`Settings::call_timeout`] (25 s unless set; see [`BlockingClient::with_timeout`] and
/// [`BlockingClient::without_timeout`]); a call that times out is cancelled: the server is told
/// to drop its handler, and the reply, if it comes anyway, is dropped and its fds closed.
/// Server streams are iterators ([`BlockingStreaming`]) and sinks are fed from iterators, also
/// both at once.
#[derive(Clone)]
pub struct BlockingClient {
    conn: Arc<BlockingConn>,
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
    /// Connects to the server listening at `path`, or at the abstract name `@name`.
    ///
    /// # Errors
    ///
    /// The error of `connect`.
    pub fn connect(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Self::new(crate::transport::address::connect(
            path.as_ref(),
        )?))
    }

    /// A client over an already-connected stream, with the default [`Settings`].
    pub fn new(stream: UnixStream) -> Self {
        Self::with_settings(stream, Settings::default())
    }

    /// A client over an already-connected stream, applying `settings` (the limits on what
    /// it receives, the stall timeout, the window of its streams).
    pub fn with_settings(stream: UnixStream, settings: impl Borrow<Settings>) -> Self {
        let settings = settings.borrow();
        BlockingClient {
            conn: Arc::new(BlockingConn::new(stream, settings)),
            timeout: settings.call_timeout,
        }
    }

    /// A handle to the same connection whose calls time out after `timeout` (instead of
    /// [`Settings::call_timeout`]): a call whose reply has not come by then fails with
    /// [`RpcError::Timeout`], and the server is told to drop its handler. The server learns
    /// the timeout with the call (`client_timeout`), and drops the handler itself once it
    /// passes.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        BlockingClient {
            conn: self.conn.clone(),
            timeout: Some(timeout),
        }
    }

    /// A handle to the same connection whose calls wait for their replies as long as it
    /// takes: for calls that legitimately run long.
    pub fn without_timeout(&self) -> Self {
        BlockingClient {
            conn: self.conn.clone(),
            timeout: None,
        }
    }

    /// The timeout of this handle's calls, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the connection has failed or closed.
    pub fn is_closed(&self) -> bool {
        self.conn.is_dead()
    }

    /// Blocks until the server closes the connection (or it fails) and returns why: the
    /// death notification of a service, as Binder's `linkToDeath`. It only watches the
    /// socket (`POLLRDHUP`): calls on other threads go on meanwhile.
    pub fn closed(&self) -> ConnectionError {
        self.conn.wait_closed()
    }

    /// Starts a call and writes it.
    fn start(
        &self,
        deadline: Option<Deadline>,
        method: &MethodName,
        options: &CallOptions,
        args: impl Wire,
    ) -> Result<Started, RpcError> {
        let mut started = None;
        let sent = self.conn.send_call(deadline, |c| {
            let s = c.start_call(method, options, |enc| args.encode(enc))?;
            started = Some(s);
            Ok(s)
        });
        if let (Err(_), Some(s)) = (&sent, started) {
            // Registered but not (wholly) written: nobody will wait for it.
            self.forget(&s, method);
        }
        sent
    }

    /// Forgets a call its caller gave up on, telling the server (if the socket takes the
    /// `cancel` now; otherwise the next write sends it).
    fn forget(&self, started: &Started, method: &MethodName) {
        let _ = self.conn.send(Some(Deadline::now()), |c| {
            c.forget_call(started, method, true);
            Ok(())
        });
    }

    /// Waits for the reply of `started`.
    fn reply(
        &self,
        deadline: Option<Deadline>,
        started: &Started,
        method: &MethodName,
    ) -> Result<Reply, RpcError> {
        let seqid = started.seqid;
        let reply = self
            .conn
            .wait(deadline, |c| match c.poll_reply(seqid, None) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            })
            .and_then(|r| r);
        if reply.is_err() {
            self.forget(started, method);
        }
        reply
    }

    /// Sends a call and waits for its reply (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    #[doc(hidden)]
    pub fn call<A: Wire, R>(
        &self,
        method: impl Into<MethodName>,
        args: A,
        decode: DecodeFn<R>,
    ) -> Result<R, RpcError> {
        let method: MethodName = method.into();
        let deadline = Deadline::after_opt(self.timeout);
        let (span, options) = outgoing(&method, MessageType::Call, deadline);
        let _span = span.as_ref().map(tracing::Span::enter);
        let started = self.start(deadline, &method, &options, args)?;
        record_seqid(span.as_ref(), started.seqid);
        decode_reply(
            self.reply(deadline, &started, &method)?,
            decode,
            self.timeout,
        )
    }

    /// Asks the server for the Thrift IDL of the services it serves (the reserved method
    /// `_fdrpc_idl`).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    pub fn introspect(&self) -> Result<String, RpcError> {
        self.call(INTROSPECTION_METHOD, (), decode_idl)
    }

    /// Sends a oneway call (used by generated clients). Returns once it is written.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`], [`RpcError::Timeout`] or [`RpcError::Connection`].
    #[doc(hidden)]
    pub fn oneway<A: Wire>(&self, method: impl Into<MethodName>, args: A) -> Result<(), RpcError> {
        let method: MethodName = method.into();
        let (span, options) = outgoing(&method, MessageType::Oneway, None);
        let _span = span.as_ref().map(tracing::Span::enter);
        let mut started = None;
        let sent = self.conn.send_call(Deadline::after_opt(self.timeout), |c| {
            let s = c.start_call(&method, &options, |enc| args.encode(enc))?;
            started = Some(s);
            Ok(())
        });
        if let (Err(_), Some(s)) = (&sent, started) {
            // Not written whole by its deadline: taken back with its fds if none of it went
            // (the server then never sees it), else left to finish.
            self.conn.with(|c| c.take_back_unsent(&s));
        }
        sent
    }

    /// Sends a call with a sink fed from an iterator, then waits for the reply (used by
    /// generated clients). Items are sent as the server grants credit; once the reply comes,
    /// items not yet sent are dropped.
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    #[doc(hidden)]
    pub fn call_with_sink<A: Wire, R>(
        &self,
        method: impl Into<MethodName>,
        args: A,
        decode: DecodeFn<R>,
        sink: BlockingSink,
    ) -> Result<R, RpcError> {
        let method: MethodName = method.into();
        let deadline = Deadline::after_opt(self.timeout);
        let (span, mut options) = outgoing(&method, MessageType::Call, deadline);
        options.sink = true;
        let _span = span.as_ref().map(tracing::Span::enter);
        let started = self.start(deadline, &method, &options, args)?;
        record_seqid(span.as_ref(), started.seqid);
        let mut feeder = started
            .outbox
            .map(|out| SinkFeeder::new(sink, method.clone(), started.seqid, out));
        let reply = self.reply_feeding(deadline, &started, &method, feeder.as_mut());
        if let Some(f) = &mut feeder {
            self.conn.with(|c| f.finish(c, reply.is_err()));
        }
        decode_reply(reply?, decode, self.timeout)
    }

    /// Waits for the reply of `started`, feeding its sink meanwhile.
    fn reply_feeding(
        &self,
        deadline: Option<Deadline>,
        started: &Started,
        method: &MethodName,
        mut feeder: Option<&mut SinkFeeder>,
    ) -> Result<Reply, RpcError> {
        let seqid = started.seqid;
        let reply = loop {
            if let Some(f) = feeder.as_deref_mut() {
                if let Err(e) = f.pull(&self.conn, deadline) {
                    break Err(e);
                }
            }
            let event = self.conn.wait(deadline, |c| {
                if let Poll::Ready(r) = c.poll_reply(seqid, None) {
                    return Some(Ok(r));
                }
                feeder.as_deref_mut().and_then(|f| f.poll(c)).map(Err)
            });
            match event {
                Ok(Ok(reply)) => break reply,
                Ok(Err(feed)) => {
                    if let Some(f) = feeder.as_deref_mut() {
                        if let Err(e) = f.on(feed, &self.conn, deadline) {
                            break Err(e);
                        }
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if reply.is_err() {
            self.forget(started, method);
        }
        reply
    }

    /// Sends a call whose reply opens a server stream, and returns the stream's iterator; a
    /// `sink` given is fed while the iterator waits for items (used by generated clients).
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    #[doc(hidden)]
    pub fn call_streaming<A: Wire, R, T: Field, E: Field>(
        &self,
        method: impl Into<MethodName>,
        args: A,
        decode: DecodeFn<R>,
        sink: Option<BlockingSink>,
    ) -> Result<(R, BlockingStreaming<T, E>), RpcError> {
        let method: MethodName = method.into();
        let deadline = Deadline::after_opt(self.timeout);
        let (span, mut options) = outgoing(&method, MessageType::Call, deadline);
        options.stream = true;
        options.sink = sink.is_some();
        let _span = span.as_ref().map(tracing::Span::enter);
        let started = self.start(deadline, &method, &options, args)?;
        let seqid = started.seqid;
        record_seqid(span.as_ref(), seqid);
        let mut feeder = match (sink, started.outbox) {
            (Some(sink), Some(out)) => Some(SinkFeeder::new(sink, method.clone(), seqid, out)),
            _ => None,
        };
        let reply = self.reply_feeding(deadline, &started, &method, feeder.as_mut());
        let Some(inbox) = started.inbox else {
            return Err(RpcError::Connection(
                crate::rpc::error::ConnectionError::new(
                    crate::transport::error::TransportError::Closed,
                ),
            ));
        };
        // From here the iterator owns the stream: dropping it (also on an error below)
        // cancels it and aborts the sink.
        let streaming = BlockingStreaming::new(self.conn.clone(), seqid, inbox, None, feeder);
        let r = decode_reply(reply?, decode, self.timeout)?;
        Ok((r, streaming))
    }
}
