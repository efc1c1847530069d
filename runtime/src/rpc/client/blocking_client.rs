//! [`BlockingClient`]: the client side of a connection for plain threads, no async runtime.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::{DecodeFn, decode_idl, decode_reply};
use crate::codec::MessageType;
use crate::codec::wire::{Field, Wire};
use crate::idl::INTROSPECTION_METHOD;
use crate::rpc::conn::{Reply, Started};
use crate::rpc::driver::blocking_conn::{BlockingConn, Deadline};
use crate::rpc::error::RpcError;
use crate::rpc::stream::{BlockingSink, BlockingStreaming, SinkFeeder};
use crate::settings::Settings;

/// A blocking client: calls wait for their replies on the calling thread.
///
/// Clones share the connection, and calls from several threads are in flight on it together:
/// whichever waiting thread is reading hands each reply to its caller. A call that times out
/// is forgotten; its reply, if it comes, is dropped and its fds closed. Server streams are
/// iterators ([`BlockingStreaming`]) and sinks are fed from iterators, also both at once.
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
        Self::with_settings(stream, &Settings::default())
    }

    /// A client over an already-connected stream, applying `settings` (the limits on what
    /// it receives, the stall timeout, the window of its streams).
    pub fn with_settings(stream: UnixStream, settings: &Settings) -> Self {
        BlockingClient {
            conn: Arc::new(BlockingConn::new(stream, settings)),
            timeout: None,
        }
    }

    /// A handle to the same connection whose calls time out after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        BlockingClient {
            conn: self.conn.clone(),
            timeout: Some(timeout),
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

    /// Starts a call and writes it.
    fn start(
        &self,
        deadline: Deadline,
        method: &'static str,
        args: impl Wire,
        stream: bool,
        sink: bool,
    ) -> Result<Started, RpcError> {
        let mut started = None;
        let sent = self.conn.send(deadline, |c| {
            let s = c.start_call(
                method,
                MessageType::Call,
                |enc| args.encode(enc),
                stream,
                sink,
            )?;
            started = Some(s);
            Ok(s)
        });
        if let (Err(_), Some(s)) = (&sent, started) {
            // Registered but not (wholly) written: nobody will wait for it.
            self.conn.with(|c| c.forget_call(&s, method));
        }
        sent
    }

    /// Waits for the reply of `started`.
    fn reply(
        &self,
        deadline: Deadline,
        started: &Started,
        method: &'static str,
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
            self.conn.with(|c| c.forget_call(started, method));
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
        method: &'static str,
        args: A,
        decode: DecodeFn<R>,
    ) -> Result<R, RpcError> {
        let deadline = Deadline::after(self.timeout);
        let started = self.start(deadline, method, args, false, false)?;
        decode_reply(self.reply(deadline, &started, method)?, decode)
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
    pub fn oneway<A: Wire>(&self, method: &'static str, args: A) -> Result<(), RpcError> {
        self.conn
            .send(Deadline::after(self.timeout), |c| {
                c.start_call(
                    method,
                    MessageType::Oneway,
                    |enc| args.encode(enc),
                    false,
                    false,
                )
            })
            .map(|_| ())
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
        decode: DecodeFn<R>,
    ) -> Result<R, RpcError>
    where
        T: Field + Send + 'static,
        E: Field + Send + 'static,
    {
        let deadline = Deadline::after(self.timeout);
        let started = self.start(deadline, method, args, false, true)?;
        let mut feeder = started
            .outbox
            .map(|out| SinkFeeder::new(Box::new(sink), method, started.seqid, out));
        let reply = self.reply_feeding(deadline, &started, method, feeder.as_mut());
        if let Some(f) = &mut feeder {
            self.conn.with(|c| f.finish(c, reply.is_err()));
        }
        decode_reply(reply?, decode)
    }

    /// Waits for the reply of `started`, feeding its sink meanwhile.
    fn reply_feeding(
        &self,
        deadline: Deadline,
        started: &Started,
        method: &'static str,
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
            self.conn.with(|c| c.forget_call(started, method));
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
    pub fn call_streaming<A, R, T, E, ST, SE>(
        &self,
        method: &'static str,
        args: A,
        decode: DecodeFn<R>,
        sink: Option<BlockingSink<ST, SE>>,
    ) -> Result<(R, BlockingStreaming<T, E>), RpcError>
    where
        A: Wire,
        T: Field,
        E: Field,
        ST: Field + Send + 'static,
        SE: Field + Send + 'static,
    {
        let deadline = Deadline::after(self.timeout);
        let started = self.start(deadline, method, args, true, sink.is_some())?;
        let seqid = started.seqid;
        let mut feeder = match (sink, started.outbox) {
            (Some(items), Some(out)) => Some(SinkFeeder::new(Box::new(items), method, seqid, out)),
            _ => None,
        };
        let reply = self.reply_feeding(deadline, &started, method, feeder.as_mut());
        let Some(inbox) = started.inbox else {
            return Err(RpcError::Connection(
                crate::rpc::error::ConnectionError::new(
                    crate::transport::error::TransportError::Closed,
                ),
            ));
        };
        // From here the iterator owns the stream: dropping it (also on an error below)
        // cancels it and aborts the sink.
        let streaming =
            BlockingStreaming::new(self.conn.clone(), seqid, inbox, self.timeout, feeder);
        let r = decode_reply(reply?, decode)?;
        Ok((r, streaming))
    }
}
