//! [`Conn`]: the sans-IO state of one connection, shared by every driver and both roles.
//!
//! Everything a connection is lives here and nowhere else: the send queue and what is
//! written to it (calls, replies, exceptions, stream items and every control frame), the
//! allocation of sequence ids, the calls waiting for replies, the open streams with their
//! credit windows, the classification of every received frame, whether the writer must be
//! woken and when the timer must fire. A driver owns the socket, its writer, its timer and
//! nothing else: it reads frames into a [`RecvQueue`](crate::transport::RecvQueue), hands
//! each to [`Conn::receive`], and asks the core what to do next, in one contract
//! (`output`): [`Conn::poll_transmit`] (wake the writer), [`Conn::poll_timeout`] (set the
//! timer) and [`Conn::handle_timeout`] when it fires, [`Conn::take_cancelled_calls`] (calls
//! whose callers cancelled them, for the server to stop). The tokio driver (async client,
//! server) and the blocking driver (blocking client) drive it; neither classifies, routes or
//! writes a frame on its own, or keeps a copy of this state.
//!
//! Nothing here blocks or does IO, and no lock is taken: a driver keeps a `Conn` behind its
//! own lock and calls it with short critical sections.
//!
//! Organization:
//! - `output`: what the core asks of its driver (writes, the timer, cancelled calls).
//! - `send`: everything this side sends: calls, replies, exceptions, stream items and control
//!   frames.
//! - `recv`: everything this side receives: replies matched to calls, stream frames routed,
//!   calls handed to the server.
//! - `stream_frame`: the `fdrpc-stream` kinds and `fdrpc-credit` values.
//! - `classify`: what a received frame is.
//! - `calls`: pending calls and sequence ids (the client side).
//! - `routes`: open streams, their inboxes and credit (both sides).
//! - `call_headers`: the THeader headers a call carries.
// The server's side of the core is driven only by the tokio driver.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

mod body;
mod call_headers;
mod calls;
mod classify;
mod output;
mod recv;
mod routes;
mod send;
mod stream_frame;

use std::task::Waker;

pub(crate) use body::Body;
use calls::Calls;
pub(crate) use calls::Reply;
use output::Output;
pub(crate) use recv::{IncomingCall, Received};
use routes::Routes;
pub(crate) use routes::{Inbound, RawItem, RouteId};
pub(crate) use send::{CallOptions, Started};

use crate::codec::MessageType;
use crate::codec::error::EncodeError;
use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};
use crate::rpc::error::{ConnectionError, RpcError};
use crate::settings::Settings;
use crate::transport::SendQueue;
use crate::transport::error::TransportError;

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
    /// The calls waiting for replies: made at the first call (a server's connections make
    /// none, and this is 104 bytes).
    calls: Option<Box<Calls>>,
    routes: Routes,
    dead: Option<ConnectionError>,
    /// The window this side grants the streams and sinks it consumes.
    window: u32,
    /// What the driver is asked to do: wake its writer, set its timer, stop cancelled calls.
    output: Output,
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
pub(super) fn abort_cause(body: &[u8]) -> ApplicationError {
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
            calls: None,
            routes: Routes::default(),
            dead: None,
            window: settings.stream_window,
            output: Output::new(settings.stall_timeout),
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
        if let Some(calls) = &mut self.calls {
            calls.fail_all(|| RpcError::Connection(err.clone()), wake);
        }
        self.routes
            .fail_all(|| RpcError::Connection(err.clone()), wake);
        self.send = SendQueue::new();
        self.output.writer_idle();
    }

    /// Every stream fails with `why` (consumers see it after what they received; producers
    /// stop), while calls in flight may still reply: a server that stops reading a
    /// connection lets its calls finish.
    pub(crate) fn fail_streams(&mut self, why: &ConnectionError, wake: &mut Vec<Waker>) {
        self.routes
            .fail_all(|| RpcError::Connection(why.clone()), wake);
    }
}
