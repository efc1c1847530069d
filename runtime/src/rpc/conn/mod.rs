//! [`Conn`]: the sans-IO state of one connection, shared by every driver and both roles.
//!
//! Everything a connection is lives here and nowhere else: the send queue and what is
//! written to it (calls, replies, exceptions, stream items and every control frame), the
//! allocation of sequence ids, the calls waiting for replies, the open streams with their
//! credit windows, and the classification of every received frame. A driver owns the socket:
//! it reads frames into a [`RecvQueue`](crate::transport::RecvQueue), hands each to
//! [`Conn::receive`], writes the send queue out, and wakes whoever a change concerns. The
//! tokio driver (async client, server) and the blocking driver (blocking client) are the two
//! drivers; neither classifies, routes or writes a frame on its own.
//!
//! Nothing here blocks or does IO, and no lock is taken: a driver keeps a `Conn` behind its
//! own lock and calls it with short critical sections.
//!
//! Organization:
//! - `stream_frame`: the `fdrpc-stream` kinds and `fdrpc-credit` values.
//! - `classify`: what a received frame is.
//! - `calls`: pending calls and sequence ids (the client side).
//! - `routes`: open streams, their inboxes and credit (both sides).
// The server's side of the core is driven only by the tokio driver.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

mod call_headers;
mod calls;
mod classify;
mod handlers;
mod routes;
mod stream_frame;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use call_headers::CallHeaders;
use calls::Calls;
pub(crate) use calls::Reply;
use classify::{BadTimeout, Classified, Malformed, classify, parse_trace};
use handlers::Handlers;
pub(crate) use handlers::RunningHandler;
use routes::{Delivered, Routes};
pub(crate) use routes::{Inbound, RawItem, RouteId};

use stream_frame::{ABSENT_CREDIT_WINDOW, HEADER_CREDIT, HEADER_STREAM, MAX_CREDIT, StreamFrame};

use crate::codec::error::EncodeError;
use crate::codec::{Encoder, MessageHeader, MessageType};
use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};
use crate::rpc::error::{ConnectionError, RpcError};
use crate::rpc::trace::TraceContext;
use crate::settings::Settings;
use crate::transport::error::TransportError;
use crate::transport::{ReceivedFrame, SendQueue};

/// Which end of the connection this is: it decides which messages are calls to serve and
/// which are replies to match, and the message type of the stream frames this side sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// Keeps `waker` (if any) in `slot` to be woken later, without cloning it again when it is
/// the one already there.
fn remember(slot: &mut Option<Waker>, waker: Option<&Waker>) {
    if let Some(w) = waker {
        match slot {
            Some(old) => old.clone_from(w),
            None => *slot = Some(w.clone()),
        }
    }
}

/// A scratch buffer larger than this is not kept for the next message.
const MAX_KEPT_SCRATCH: usize = crate::codec::buffers::MAX_KEPT;

/// The state of one connection; see the module docs.
#[derive(Debug)]
pub(crate) struct Conn {
    role: Role,
    send: SendQueue,
    /// Where messages are encoded before they are framed; reused.
    scratch: Vec<u8>,
    /// Send-queue ranges of calls given up before any of their frame was written, and not
    /// yet taken back (something is queued behind them), sorted (see [`Conn::forget_call`]).
    abandoned: Vec<(u64, u64)>,
    calls: Calls,
    routes: Routes,
    /// The server's handlers running in tasks of their own.
    handlers: Handlers,
    dead: Option<ConnectionError>,
    /// The window this side grants the streams and sinks it consumes.
    window: u32,
    /// The writer has been asked to write and has not emptied the queue yet.
    writer_scheduled: bool,
    /// A push asked for the writer since the driver last looked.
    writer_wanted: bool,
}

/// A call (or oneway) for the server to dispatch.
#[derive(Debug)]
pub(crate) struct IncomingCall<'f> {
    pub(crate) header: MessageHeader<'f>,
    /// The payload after the message header: the arguments struct.
    pub(crate) body: &'f [u8],
    pub(crate) fds: Vec<OwnedFd>,
    /// The window the caller grants a stream this call opens (`fdrpc-credit`; 16 if absent).
    pub(crate) credit: u32,
    /// How long the caller waits for the reply (`client_timeout`), if it said.
    pub(crate) timeout: Option<Duration>,
    /// The caller's trace (`traceparent`), if it sent a valid one.
    pub(crate) trace: Option<TraceContext>,
}

/// A received frame, classified without touching the connection, with its fds.
#[derive(Debug)]
pub(crate) struct Received<'f> {
    /// The THeader sequence id (the message's, unless the payload is not a message).
    seqid: i32,
    classified: Result<Classified<'f>, Malformed>,
    fds: Vec<OwnedFd>,
}

impl<'f> Received<'f> {
    pub(crate) fn new(frame: ReceivedFrame<'f>) -> Self {
        Received {
            seqid: frame.frame.seqid,
            classified: classify(&frame.frame),
            fds: frame.fds,
        }
    }

    /// The call this frame is, when dispatching it needs nothing of the connection's state: a
    /// CALL or ONEWAY without `fdrpc-stream`, whose `fdrpc-credit` and `client_timeout` (if
    /// any) are valid. A server hands such a frame to dispatch without taking the connection's
    /// lock; everything else goes to [`Conn::receive`].
    pub(crate) fn into_call(self) -> Result<IncomingCall<'f>, Self> {
        let (credit, timeout) = match &self.classified {
            Ok(Classified::Message {
                header,
                credit,
                timeout: Ok(timeout),
                ..
            }) if matches!(header.ty, MessageType::Call | MessageType::Oneway) => {
                let credit = match credit {
                    None => ABSENT_CREDIT_WINDOW,
                    Some(Ok(n)) => *n,
                    Some(Err(_)) => return Err(self),
                };
                (credit, *timeout)
            }
            _ => return Err(self),
        };
        match self.classified {
            Ok(Classified::Message {
                header,
                body,
                trace,
                ..
            }) => Ok(IncomingCall {
                header,
                body,
                fds: self.fds,
                credit,
                timeout,
                trace: trace.and_then(parse_trace),
            }),
            classified => Err(Received {
                seqid: self.seqid,
                classified,
                fds: self.fds,
            }),
        }
    }
}

/// A call started by [`Conn::start_call`], with the stream ends registered for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub(crate) seqid: i32,
    /// The inbox of the stream the reply opens.
    pub(crate) inbox: Option<RouteId>,
    /// The outbox of the call's sink.
    pub(crate) outbox: Option<RouteId>,
    /// The call's deadline is earlier than any the driver's timer was armed for: the driver
    /// must look at [`Conn::next_deadline`] again.
    pub(crate) rearm: bool,
    /// Where the call's frame sits in the send queue's stream (start and end offsets): while
    /// none of it is written, a call given up is taken out of the queue.
    pub(crate) frame: (u64, u64),
    /// The call sent a deadline (`client_timeout`): the server drops it by itself.
    pub(crate) timed: bool,
}

/// What a call sends besides its arguments; see [`Conn::start_call`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallOptions {
    /// `Call` (a reply is awaited) or `Oneway`.
    pub(crate) ty: MessageType,
    /// The reply opens a server stream, whose window the call grants in `fdrpc-credit`.
    pub(crate) stream: bool,
    /// The call sends a stream too (a sink).
    pub(crate) sink: bool,
    /// How long the caller waits for the reply: sent as `client_timeout` (not on a oneway).
    pub(crate) timeout: Option<Duration>,
    /// When the call times out here, if the driver has the connection enforce it (see
    /// [`Conn::expire_calls`]); a driver that waits with deadlines of its own leaves it out.
    pub(crate) deadline: Option<Instant>,
    /// The trace the call belongs to: sent as `traceparent`.
    pub(crate) trace: Option<TraceContext>,
}

impl CallOptions {
    /// A call of type `ty` with no streams, no timeout and no trace.
    pub(crate) fn new(ty: MessageType) -> Self {
        CallOptions {
            ty,
            stream: false,
            sink: false,
            timeout: None,
            deadline: None,
            trace: None,
        }
    }
}

/// How a producer leaves its stream; see [`Conn::end_outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It ran out of items: `end`.
    End,
    /// It gave up (could not encode an item, its call was dropped): `abort`, carrying why.
    Abort(ApplicationError),
    /// It sent its error item already, or was cancelled: nothing more to send.
    Silent,
}

impl Ending {
    /// The producer could not encode an item: the consumer learns the cause, as a plain call
    /// learns why its reply could not be encoded.
    pub(crate) fn unencodable(e: &EncodeError) -> Ending {
        Ending::Abort(ApplicationError::new(
            ApplicationErrorKind::InternalError,
            format!("could not encode a stream item: {e}"),
        ))
    }

    /// The caller of the call the stream belongs to gave up on it.
    pub(crate) fn gave_up() -> Ending {
        Ending::Abort(ApplicationError::new(
            ApplicationErrorKind::Unknown,
            "the caller gave up on the call",
        ))
    }
}

/// Why a producer aborted its stream: the `TApplicationException` its `abort` frame carries,
/// or, from a peer that sends an empty struct, a generic one.
fn abort_cause(body: &[u8]) -> ApplicationError {
    let mut dec = crate::codec::Decoder::new(body, crate::codec::fd_table::FdTable::empty());
    match ApplicationError::decode(&mut dec) {
        Ok(e) if !e.message.is_empty() => e,
        _ => ApplicationError::new(
            ApplicationErrorKind::Unknown,
            "the producer aborted the stream",
        ),
    }
}

impl Conn {
    pub(crate) fn new(role: Role, settings: &Settings) -> Conn {
        Conn {
            role,
            send: SendQueue::new(),
            scratch: Vec::new(),
            abandoned: Vec::new(),
            calls: Calls::default(),
            routes: Routes::default(),
            handlers: Handlers::default(),
            dead: None,
            window: settings.stream_window.clamp(1, MAX_CREDIT),
            writer_scheduled: false,
            writer_wanted: false,
        }
    }

    /// Why the connection ended, once it has.
    pub(crate) fn dead(&self) -> Option<&ConnectionError> {
        self.dead.as_ref()
    }

    fn dead_or_closed(&self) -> ConnectionError {
        self.dead
            .clone()
            .unwrap_or_else(|| ConnectionError::new(TransportError::Closed))
    }

    /// The message type of the stream frames this side sends.
    fn stream_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::Oneway,
            Role::Server => MessageType::Reply,
        }
    }

    /// Ends the connection with `why`: every pending call and every stream fails, queued
    /// frames are dropped (their fds closed), and later sends fail with `why`. The wakers of
    /// everything that waited are added to `wake`.
    pub(crate) fn fail(&mut self, why: ConnectionError, wake: &mut Vec<Waker>) {
        if self.dead.is_none() {
            self.dead = Some(why);
        }
        let err = self.dead_or_closed();
        self.calls
            .fail_all(|| RpcError::Connection(err.clone()), wake);
        self.routes
            .fail_all(|| RpcError::Connection(err.clone()), wake);
        self.handlers.abort_all();
        self.send = SendQueue::new();
        self.writer_scheduled = false;
    }

    /// Registers the handler of call `seqid`, running in a task of its own, so that the end of
    /// the connection (or a cancel of the call) stops it. `None` if the connection has ended
    /// already: the caller stops it itself.
    pub(crate) fn track_handler(&mut self, seqid: i32, handle: Arc<RunningHandler>) -> Option<u64> {
        if self.dead.is_some() {
            return None;
        }
        Some(self.handlers.track(seqid, handle))
    }

    /// The handler `id` of call `seqid` finished.
    pub(crate) fn untrack_handler(&mut self, seqid: i32, id: u64) {
        self.handlers.untrack(seqid, id);
    }

    /// The handlers whose callers cancelled them since the last call: the driver stops each
    /// ([`RunningHandler::stop`]) once it has released the connection.
    pub(crate) fn take_cancelled_handlers(&mut self) -> Vec<Arc<RunningHandler>> {
        self.handlers.take_cancelled()
    }

    /// Every stream fails with `why` (consumers see it after what they received; producers
    /// stop), while calls in flight may still reply: a server that stops reading a
    /// connection lets its calls finish.
    pub(crate) fn fail_streams(&mut self, why: &ConnectionError, wake: &mut Vec<Waker>) {
        self.routes
            .fail_all(|| RpcError::Connection(why.clone()), wake);
    }

    // ------------------------------------------------------------------ the send queue

    /// The queue the driver writes to the socket.
    pub(crate) fn send_queue(&mut self) -> &mut SendQueue {
        &mut self.send
    }

    /// Bytes and fds queued and not yet written.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        (self.send.pending_bytes(), self.send.pending_fds())
    }

    /// Whether a frame was queued that the writer must be woken for (once: the writer stays
    /// scheduled until [`Conn::writer_idle`]).
    pub(crate) fn take_writer_wanted(&mut self) -> bool {
        std::mem::take(&mut self.writer_wanted)
    }

    /// Whether the writer has been asked for and has not emptied the queue since: always, while
    /// frames are queued (every push asks for it unless it is asked already, and it is idle
    /// only once the queue is empty).
    pub(crate) fn writer_scheduled(&self) -> bool {
        self.writer_scheduled
    }

    /// The writer emptied the queue: the next frame must ask for it again.
    pub(crate) fn writer_idle(&mut self) {
        if self.send.is_empty() {
            self.writer_scheduled = false;
        }
    }

    /// Queues one frame. Every frame this side sends goes through here.
    fn push(
        &mut self,
        seqid: i32,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        headers: &[(&str, &str)],
    ) -> Result<(), ConnectionError> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        self.send
            .push(seqid, payload, fds, headers)
            .map_err(|e| ConnectionError::new(e.into()))?;
        if !self.writer_scheduled {
            self.writer_scheduled = true;
            self.writer_wanted = true;
        }
        Ok(())
    }

    /// Encodes a message (its header, then what `body` writes) into the scratch buffer and
    /// queues its frame.
    fn push_message(
        &mut self,
        name: &str,
        ty: MessageType,
        seqid: i32,
        headers: &[(&str, &str)],
        body: impl FnOnce(&mut Encoder) -> Result<(), EncodeError>,
    ) -> Result<(), RpcError> {
        let mut enc = Encoder::with_buffer(std::mem::take(&mut self.scratch));
        let encoded = enc
            .write_message_header(name, ty, seqid)
            .and_then(|()| body(&mut enc));
        let (mut payload, fds) = enc.into_parts();
        let pushed = match encoded {
            Ok(()) => self
                .push(seqid, &payload, fds, headers)
                .map_err(RpcError::Connection),
            Err(e) => Err(RpcError::Encode(e)),
        };
        payload.clear();
        if payload.capacity() <= MAX_KEPT_SCRATCH {
            self.scratch = payload;
        }
        pushed
    }

    /// Queues a stream control or end frame (an empty struct) for `seqid`.
    fn push_control(&mut self, seqid: i32, method: &str, kind: StreamFrame, credit: Option<u32>) {
        let mut digits = itoa::Buffer::new();
        let credit = credit.map(|n| digits.format(n));
        let kind = (HEADER_STREAM, kind.as_str());
        let headers: &[(&str, &str)] = match credit {
            Some(n) => &[kind, (HEADER_CREDIT, n)],
            None => &[kind],
        };
        let ty = self.stream_type();
        // An empty struct and a name we were given always encode; a dead connection sends
        // nothing.
        let _ = self.push_message(method, ty, seqid, headers, |enc| {
            enc.write_stop();
            Ok(())
        });
    }

    /// Queues a `TApplicationException` for call `seqid`.
    pub(crate) fn push_exception(
        &mut self,
        name: &str,
        seqid: i32,
        kind: ApplicationErrorKind,
        message: String,
    ) {
        let e = ApplicationError::new(kind, message);
        let _ = self.push_message(name, MessageType::Exception, seqid, &[], |enc| {
            e.encode(enc)
        });
    }

    /// Queues an encoded reply (its message header and result struct) and its fds.
    pub(crate) fn push_reply(&mut self, seqid: i32, reply: Encoder) -> Result<(), ConnectionError> {
        let (payload, fds) = reply.into_parts();
        let pushed = self.push(seqid, &payload, fds, &[]);
        crate::codec::buffers::give(payload);
        pushed
    }

    // ------------------------------------------------------------------ receiving

    /// Takes one received frame. Replies reach their calls and stream frames their streams
    /// here; a call for the server to dispatch is returned. Frames nobody waits for any more
    /// are dropped, closing their fds. The wakers of whoever the frame concerns are added to
    /// `wake`.
    ///
    /// # Errors
    ///
    /// A frame that breaks the protocol so that the connection cannot go on; the caller must
    /// [`Conn::fail`] it.
    pub(crate) fn receive<'f>(
        &mut self,
        received: Received<'f>,
        wake: &mut Vec<Waker>,
    ) -> Result<Option<IncomingCall<'f>>, ConnectionError> {
        let received = match self.role {
            Role::Server => match received.into_call() {
                Ok(call) => return Ok(Some(call)),
                Err(other) => other,
            },
            Role::Client => received,
        };
        let Received {
            seqid: frame_seqid,
            classified,
            fds,
        } = received;
        match classified {
            Err(Malformed::Header(e)) if self.role == Role::Server => {
                // Not a Thrift compact message: answered on the frame's sequence id.
                tracing::debug!(error = %e, "fdrpc: undecodable message header");
                self.push_exception(
                    "",
                    frame_seqid,
                    ApplicationErrorKind::ProtocolError,
                    e.to_string(),
                );
            }
            Err(m) => {
                tracing::debug!(reason = m.reason(), "fdrpc: protocol violation");
                return Err(ConnectionError::new(m.into_transport_error()));
            }
            Ok(Classified::Stream {
                seqid,
                kind,
                credit,
                body,
            }) => self.receive_stream_frame(seqid, kind, credit, body, fds, wake),
            Ok(Classified::Message {
                header,
                body,
                credit,
                timeout,
                ..
            }) => match self.role {
                Role::Server => self.refuse(header, credit, timeout),
                Role::Client => self.receive_reply(header, body, fds, wake),
            },
        }
        Ok(None)
    }

    /// Data frames go to the stream's consumer, control frames to its producer.
    fn receive_stream_frame(
        &mut self,
        seqid: i32,
        kind: StreamFrame,
        credit: u32,
        body: &[u8],
        fds: Vec<OwnedFd>,
        wake: &mut Vec<Waker>,
    ) {
        match kind {
            StreamFrame::Item | StreamFrame::Error => {
                let last = kind == StreamFrame::Error;
                if let Delivered::Violation { method } =
                    self.routes.deliver(seqid, body, fds, last, wake)
                {
                    tracing::debug!(
                        seqid,
                        method,
                        "fdrpc: stream item beyond the credit granted"
                    );
                    self.push_control(seqid, method, StreamFrame::Cancel, None);
                }
            }
            StreamFrame::End => self.routes.finish(seqid, None, wake),
            StreamFrame::Abort => {
                let why = abort_cause(body);
                self.routes
                    .finish(seqid, Some(RpcError::Application(why)), wake);
            }
            StreamFrame::Credit => self.routes.grant(seqid, credit, wake),
            StreamFrame::Cancel => {
                // The producer of a stream stops; so does a handler still running the call.
                self.routes.cancel(seqid, wake);
                self.handlers.cancel(seqid);
            }
        }
    }

    /// A message on the server that is not a call to dispatch (see [`Received::into_call`]):
    /// a reply or exception sent to a server, or a call with a bad `fdrpc-credit` or
    /// `client_timeout`. Answered with a `TApplicationException` (a oneway gets none); its fds
    /// close.
    fn refuse(
        &mut self,
        header: MessageHeader<'_>,
        credit: Option<Result<u32, Malformed>>,
        timeout: Result<Option<Duration>, BadTimeout>,
    ) {
        let (name, seqid, ty) = (header.name, header.seqid, header.ty);
        if !matches!(ty, MessageType::Call | MessageType::Oneway) {
            self.push_exception(
                name,
                seqid,
                ApplicationErrorKind::InvalidMessageType,
                format!("a server accepts calls, not {ty:?} messages"),
            );
        } else if let Some(m) = credit
            .and_then(Result::err)
            .or(timeout.err().map(Malformed::from))
        {
            tracing::debug!(method = name, "fdrpc: call refused: {}", m.reason());
            if ty == MessageType::Call {
                self.push_exception(name, seqid, ApplicationErrorKind::ProtocolError, m.reason());
            }
        }
    }

    /// A message on the client: the reply to a pending call (or something that is not a
    /// reply, which fails that call). Anything for a call nobody waits for is dropped.
    fn receive_reply(
        &mut self,
        header: MessageHeader<'_>,
        body: &[u8],
        fds: Vec<OwnedFd>,
        wake: &mut Vec<Waker>,
    ) {
        let seqid = header.seqid;
        let Some(method) = self.calls.method(seqid) else {
            tracing::debug!(seqid, "fdrpc: discarding a reply to a forgotten call");
            return;
        };
        // A multiplexed call (`Service:method`) is answered with the plain method name.
        let answers = header.name == method
            || method
                .split_once(':')
                .is_some_and(|(_, plain)| plain == header.name);
        let outcome = match header.ty {
            MessageType::Reply | MessageType::Exception if answers => Ok(Reply {
                ty: header.ty,
                body: body.to_vec(),
                fds,
            }),
            MessageType::Reply | MessageType::Exception => {
                Err(RpcError::Protocol(ApplicationError::new(
                    ApplicationErrorKind::WrongMethodName,
                    format!("reply names `{}`, the call was `{method}`", header.name),
                )))
            }
            ty => Err(RpcError::Protocol(ApplicationError::new(
                ApplicationErrorKind::InvalidMessageType,
                format!("the server sent a {ty:?} message as a reply"),
            ))),
        };
        wake.extend(self.calls.settle(seqid, outcome));
    }

    // ------------------------------------------------------------------ the client's calls

    /// Starts a call: allocates its sequence id, registers what will receive its reply and
    /// its streams (before the frame goes out: they may follow at once), encodes the message
    /// with `args` and queues it with the headers `call` asks for.
    ///
    /// # Errors
    ///
    /// [`RpcError::Encode`] (nothing is sent, nothing stays registered) or
    /// [`RpcError::Connection`].
    pub(crate) fn start_call(
        &mut self,
        method: &'static str,
        call: &CallOptions,
        args: impl FnOnce(&mut Encoder) -> Result<(), EncodeError>,
    ) -> Result<Started, RpcError> {
        if let Some(dead) = &self.dead {
            return Err(RpcError::Connection(dead.clone()));
        }
        let routes = &self.routes;
        let seqid = self.calls.next_seqid(|id| routes.contains(id));
        let waits = call.ty == MessageType::Call;
        let deadline = call.deadline.zip(call.timeout).filter(|_| waits);
        let rearm = waits && self.calls.wait(seqid, method, deadline);
        let inbox = call
            .stream
            .then(|| self.routes.open_inbox(seqid, method, self.window));
        let outbox = call.sink.then(|| self.routes.open_outbox(seqid, 0));
        let mut buffers = CallHeaders::new();
        let (headers, n) = buffers.headers(
            call.stream.then_some(self.window),
            call.timeout.filter(|_| waits),
            call.trace.as_ref(),
        );
        let start = self.send.queued();
        let mut started = Started {
            seqid,
            inbox,
            outbox,
            rearm,
            frame: (start, start),
            timed: deadline.is_some(),
        };
        if let Err(e) = self.push_message(
            method,
            call.ty,
            seqid,
            headers.get(..n).unwrap_or_default(),
            args,
        ) {
            self.forget_call(&started, method, false);
            return Err(e);
        }
        started.frame.1 = self.send.queued();
        Ok(started)
    }

    /// The earliest deadline of a call still waiting: the driver arms its timer for it (or
    /// keeps it armed for an earlier instant), says so with [`Conn::set_timer`], and calls
    /// [`Conn::expire_calls`] when it fires.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.calls.next_deadline()
    }

    /// The driver's timer is armed for `at` (`None`: not armed).
    pub(crate) fn set_timer(&mut self, at: Option<Instant>) {
        self.calls.set_armed(at);
    }

    /// Fails every call whose deadline passed by `now` with [`RpcError::Timeout`]; their
    /// callers (woken through `wake`) forget them, which tells the server.
    pub(crate) fn expire_calls(&mut self, now: Instant, wake: &mut Vec<Waker>) {
        self.calls.expire(now, wake);
    }

    /// The reply to call `seqid` once it is there; until then `waker` (if any) is remembered.
    pub(crate) fn poll_reply(
        &mut self,
        seqid: i32,
        waker: Option<&Waker>,
    ) -> Poll<Result<Reply, RpcError>> {
        // Only a call nobody knows of needs the error: it is not built on every poll.
        let dead = &self.dead;
        self.calls.poll(seqid, waker, || {
            RpcError::Connection(
                dead.clone()
                    .unwrap_or_else(|| ConnectionError::new(TransportError::Closed)),
            )
        })
    }

    /// Forgets a call whose caller gave up: its reply, if it comes, is dropped with its fds;
    /// a stream it opened is cancelled and a sink it was sending is aborted. If `sent` and
    /// no reply came yet, the server is told with `cancel` (once, also when a stream is
    /// cancelled), so that it drops the handler.
    ///
    /// A call none of whose frame was written yet (a peer that stopped reading, a full
    /// socket) is taken out of the send queue with its fds, and the server never sees it.
    /// (Not a call with a sink: its items may be queued behind it.)
    pub(crate) fn forget_call(&mut self, call: &Started, method: &'static str, sent: bool) {
        let waiting = self.calls.forget(call.seqid);
        if waiting && sent && call.outbox.is_none() && call.frame.0 >= self.send.written() {
            // Never written: taken back with the unsent calls given up before it, as long as
            // they are last in the queue (only the tail can go: see `remove_unsent`).
            self.abandoned
                .retain(|(start, _)| *start >= self.send.written());
            self.abandoned.push(call.frame);
            self.abandoned.sort_unstable();
            while let Some(&(start, end)) = self.abandoned.last() {
                if !self.send.remove_unsent(start, end) {
                    break;
                }
                self.abandoned.pop();
            }
            if self.send.queued() <= call.frame.0 {
                tracing::debug!(seqid = call.seqid, method, "fdrpc: unsent call taken back");
                if let Some(id) = call.inbox {
                    self.routes.close_inbox(call.seqid, id);
                }
                return;
            }
            // Something is queued behind it: it stays abandoned, taken back if what follows
            // goes first. A call with a deadline is not cancelled (the server learnt the
            // deadline with it and drops the handler itself; a `cancel` would pin it in the
            // queue); one without is.
            if call.inbox.is_none() && call.timed {
                return;
            }
        }
        let mut cancelled = false;
        if let Some(id) = call.inbox {
            cancelled = self.cancel_inbox(call.seqid, id);
        }
        if waiting && sent && !cancelled {
            self.push_control(call.seqid, method, StreamFrame::Cancel, None);
        }
        if let Some(id) = call.outbox {
            self.end_outbox(call.seqid, id, method, Ending::gave_up());
        }
    }

    // ------------------------------------------------------------------ streams

    /// Registers the sink of call `seqid` on the server and grants the client its first
    /// window.
    pub(crate) fn open_sink(&mut self, seqid: i32, method: &'static str) -> RouteId {
        let id = self.routes.open_inbox(seqid, method, self.window);
        self.push_control(seqid, method, StreamFrame::Credit, Some(self.window));
        id
    }

    /// Registers the stream call `seqid`'s reply opens on the server, with the `credit` the
    /// call granted.
    pub(crate) fn open_stream(&mut self, seqid: i32, credit: u32) -> RouteId {
        self.routes.open_outbox(seqid, credit)
    }

    /// The next item of consumer `id` of stream `seqid` (granting more credit as items are
    /// taken), its end (`None`), or why it broke. Until something comes, `waker` (if any) is
    /// remembered.
    pub(crate) fn poll_item(
        &mut self,
        seqid: i32,
        id: RouteId,
        waker: Option<&Waker>,
    ) -> Poll<Option<Result<RawItem, RpcError>>> {
        match self.routes.poll_inbox(seqid, id, waker) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                Poll::Ready(Some(Err(RpcError::Connection(self.dead_or_closed()))))
            }
            Poll::Ready(Some((item, grant))) => {
                if let Some(g) = grant {
                    self.push_control(seqid, g.method, StreamFrame::Credit, Some(g.credit));
                }
                Poll::Ready(match item {
                    Inbound::Data { body, fds } => Some(Ok((body, fds))),
                    Inbound::End => None,
                    Inbound::Failed(e) => Some(Err(e)),
                })
            }
        }
    }

    /// The consumer `id` of `seqid` wants no more: what it had not taken is dropped (fds
    /// closed) and, if the stream was still open, the producer is told with `cancel`. Frames
    /// in flight for it are dropped when they come. Returns whether `cancel` was sent.
    pub(crate) fn cancel_inbox(&mut self, seqid: i32, id: RouteId) -> bool {
        let Some(method) = self.routes.close_inbox(seqid, id) else {
            return false;
        };
        self.push_control(seqid, method, StreamFrame::Cancel, None);
        true
    }

    /// Takes one item of credit for producer `id` of `seqid`: `Ready(true)` when taken,
    /// `Ready(false)` once the consumer cancelled or the connection ended.
    pub(crate) fn take_credit(
        &mut self,
        seqid: i32,
        id: RouteId,
        waker: Option<&Waker>,
    ) -> Poll<bool> {
        self.routes.take_credit(seqid, id, waker)
    }

    /// Whether producer `id` of `seqid` may go on; remembers `waker` for a cancel.
    pub(crate) fn outbox_open(&mut self, seqid: i32, id: RouteId, waker: Option<&Waker>) -> bool {
        self.routes.outbox_open(seqid, id, waker)
    }

    /// Queues an encoded stream item (message header and result struct) of producer `id`:
    /// an `item`, or the producer's `error`, which ends the stream. An item for a stream the
    /// consumer cancelled is dropped with its fds.
    ///
    /// # Errors
    ///
    /// The connection's failure.
    pub(crate) fn push_item(
        &mut self,
        seqid: i32,
        id: RouteId,
        item: Encoder,
        is_error: bool,
    ) -> Result<(), ConnectionError> {
        if !self.routes.outbox_open(seqid, id, None) {
            return Ok(());
        }
        let kind = StreamFrame::carrying(is_error);
        let (payload, fds) = item.into_parts();
        let pushed = self.push(seqid, &payload, fds, &[(HEADER_STREAM, kind.as_str())]);
        crate::codec::buffers::give(payload);
        pushed?;
        if is_error {
            self.routes.close_outbox(seqid, id);
        }
        Ok(())
    }

    /// Producer `id` of `seqid` is done: the consumer is told how (unless it cancelled), and
    /// the producer is forgotten.
    pub(crate) fn end_outbox(&mut self, seqid: i32, id: RouteId, method: &str, how: Ending) {
        if self.routes.close_outbox(seqid, id) {
            match how {
                Ending::End => self.push_control(seqid, method, StreamFrame::End, None),
                Ending::Abort(why) => {
                    let ty = self.stream_type();
                    // An exception and a name we were given always encode; a dead connection
                    // sends nothing.
                    let kind = [(HEADER_STREAM, StreamFrame::Abort.as_str())];
                    let _ = self.push_message(method, ty, seqid, &kind, |enc| why.encode(enc));
                }
                Ending::Silent => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_buffer_is_kept_for_the_next_message_unless_a_huge_one_grew_it() {
        let mut c = Conn::new(Role::Client, &Settings::default());
        let oneway = |c: &mut Conn, bytes: usize| {
            c.push_message("m", MessageType::Oneway, 1, &[], |enc| {
                enc.write_binary(&vec![0; bytes])
            })
            .unwrap();
        };
        oneway(&mut c, 100);
        let kept = c.scratch.capacity();
        assert!(kept >= 100, "{kept}");
        oneway(&mut c, MAX_KEPT_SCRATCH * 2);
        assert!(c.scratch.capacity() <= MAX_KEPT_SCRATCH);
    }
}
