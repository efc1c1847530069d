//! [`BlockingClient`]: the client side of a connection for plain threads, no async runtime.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{Reply, decode_reply};
use super::error::{ConnectionError, RpcError};
use crate::compact::{Decoder, Encoder, MessageType};
use crate::error::{DecodeError, TransportError};
use crate::fd_table::FdTable;
use crate::transport::{Fill, Limits, RecvQueue, SendQueue};
use crate::wire::Wire;

struct Conn {
    stream: UnixStream,
    send: SendQueue,
    recv: RecvQueue,
    scratch: Vec<u8>,
    dead: Option<ConnectionError>,
}

/// A blocking client: each call writes its frame and waits for its reply on the calling
/// thread. Clones share the connection; calls from several threads take turns on it.
///
/// A call that times out leaves its reply to be discarded (fds closed) by a later call.
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

    fn seqid(&self) -> i32 {
        loop {
            let id = self.next_seqid.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    fn send<A: Wire>(
        conn: &mut Conn,
        method: &'static str,
        ty: MessageType,
        seqid: i32,
        args: A,
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
                .push(seqid, &payload, fds, &[])
                .map_err(|e| RpcError::Connection(ConnectionError::new(e.into())))
        });
        payload.clear();
        conn.scratch = payload;
        result?;
        if let Err(e) = conn.send.flush_blocking(conn.stream.as_fd()) {
            return Err(RpcError::Connection(kill(conn, TransportError::Io(e))));
        }
        Ok(())
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
        let deadline = self.timeout.map(|d| Instant::now() + d);
        let seqid = self.seqid();
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &mut *conn;
        Self::send(conn, method, MessageType::Call, seqid, args)?;
        loop {
            match conn.recv.next_frame() {
                Ok(Some(frame)) => {
                    let payload = frame.frame.payload;
                    let mut dec = Decoder::new(payload, FdTable::empty());
                    let header = match dec.read_message_header() {
                        Ok(h) => h,
                        Err(e) => return Err(RpcError::Connection(kill(conn, e.into()))),
                    };
                    if header.seqid != seqid {
                        // The reply to an earlier call that timed out: its fds close here.
                        continue;
                    }
                    let body_start = payload.len() - dec.remaining();
                    let reply = Reply {
                        ty: header.ty,
                        body: payload.get(body_start..).unwrap_or_default().to_vec(),
                        fds: frame.fds,
                    };
                    return decode_reply(reply, decode);
                }
                Ok(None) => {}
                Err(e) => return Err(RpcError::Connection(kill(conn, e))),
            }
            match conn.recv.fill_until(conn.stream.as_fd(), deadline) {
                Ok(Fill::Read(_)) => {}
                Ok(Fill::WouldBlock) => {
                    return Err(RpcError::Timeout(self.timeout.unwrap_or_default()));
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
        }
    }

    /// Sends a oneway call (used by generated clients). Returns once it is written.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`] or [`RpcError::Connection`].
    #[doc(hidden)]
    pub fn oneway<A: Wire>(&self, method: &'static str, args: A) -> Result<(), RpcError> {
        let seqid = self.seqid();
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Self::send(&mut conn, method, MessageType::Oneway, seqid, args)
    }
}

fn kill(conn: &mut Conn, why: TransportError) -> ConnectionError {
    let err = ConnectionError::new(why);
    conn.dead = Some(err.clone());
    // Close what the connection held: queued fds in both directions.
    conn.send = SendQueue::new();
    conn.recv = RecvQueue::new(Limits::default());
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    err
}
