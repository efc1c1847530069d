//! [`Service`]: what `#[fdrpc::service]` generates for the server side, and the types its
//! dispatch uses. Generated code reaches these through `fdrpc::__private` only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use super::context::Context;
use super::host::Caller;
use crate::codec::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::codec::wire::{Field, Wire};
use crate::codec::{Decoder, Encoder, MessageHeader, MessageType};
use crate::idl::Idl;
use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};
use crate::rpc::conn::RouteId;
use crate::rpc::driver::handle::Driven;
use crate::rpc::stream::{Consumer, ErasedProducer, SinkStatus, Stream, sink_stream};
use crate::rpc::trace::TraceContext;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A service a [`Server`](super::Server) can serve: implemented by the generated
/// `{Trait}Server`, not by hand.
pub trait Service: Send + Sync + 'static {
    /// The Thrift service name.
    fn name(&self) -> &'static str;

    /// Routes one incoming call to its handler (generated; its types are not public API).
    #[doc(hidden)]
    fn dispatch(&self, call: Incoming<'_>) -> Dispatch;

    /// The wire names of the service's methods.
    #[doc(hidden)]
    fn methods(&self) -> &'static [&'static str];

    /// Adds the service, and every type it uses, to `idl`.
    #[doc(hidden)]
    fn describe(&self, idl: &mut Idl);

    /// The Apache Thrift IDL of the service and every type it uses, as the reserved method
    /// `_fdrpc_idl` returns it.
    fn idl(&self) -> String {
        let mut idl = Idl::new();
        self.describe(&mut idl);
        idl.render()
    }
}

impl<S: Service + ?Sized> Service for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn dispatch(&self, call: Incoming<'_>) -> Dispatch {
        (**self).dispatch(call)
    }
    fn methods(&self) -> &'static [&'static str] {
        (**self).methods()
    }
    fn describe(&self, idl: &mut Idl) {
        (**self).describe(idl)
    }
}

/// One call as the server received it: the Thrift message header and a decoder positioned at
/// the arguments struct, holding the frame's fds.
pub struct Incoming<'a> {
    header: MessageHeader<'a>,
    dec: Option<Decoder<'a>>,
    call: CallInfo<'a>,
    conn: &'a Driven,
}

/// What the server knows of a call before its handler runs, besides its header and
/// arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallInfo<'a> {
    pub(crate) caller: &'a Arc<Caller>,
    pub(crate) service: &'static str,
    /// `fdrpc-credit` of the call: the window the client grants a stream it opens.
    pub(crate) credit: u32,
    pub(crate) deadline: Option<Instant>,
    /// The handler's span of the caller's trace.
    pub(crate) trace: TraceContext,
}

impl std::fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// A server stream registered for a call, waiting for its producer.
pub struct StreamSlot {
    pub(crate) seqid: i32,
    pub(crate) method: &'static str,
    pub(crate) id: RouteId,
}

impl std::fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSlot")
            .field("seqid", &self.seqid)
            .field("method", &self.method)
            .finish()
    }
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(
        header: MessageHeader<'a>,
        dec: Decoder<'a>,
        call: CallInfo<'a>,
        conn: &'a Driven,
    ) -> Self {
        Incoming {
            header,
            dec: Some(dec),
            call,
            conn,
        }
    }

    /// Opens the sink of this call: the stream of items the client sends, for the handler.
    /// Grants the client its first window of credit.
    pub fn open_sink<T, E>(&self, method: &'static str) -> (Stream<T, E>, SinkStatus)
    where
        T: Field + Send + 'static,
        E: Field + Send + 'static,
    {
        let seqid = self.header.seqid;
        let id = self.conn.with(|c| c.open_sink(seqid, method));
        sink_stream(Consumer::new(self.conn.clone(), seqid, id))
    }

    /// Registers the stream this call's reply will open, with the window the client granted.
    pub fn open_stream(&self, method: &'static str) -> StreamSlot {
        let seqid = self.header.seqid;
        let id = self
            .conn
            .with(|c| c.open_stream(seqid, self.call.credit, method));
        StreamSlot { seqid, method, id }
    }

    /// The method name as sent.
    pub fn method(&self) -> &'a str {
        self.header.name
    }

    /// The call's sequence id.
    pub fn seqid(&self) -> i32 {
        self.header.seqid
    }

    /// The message type (`Call` or `Oneway`).
    pub fn message_type(&self) -> MessageType {
        self.header.ty
    }

    /// Decodes the arguments struct; every fd of the frame must be claimed by it.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`]; the frame's fds are closed.
    pub fn decode_args<A: Wire>(&mut self) -> Result<A, DecodeError> {
        let mut dec = self
            .dec
            .take()
            .ok_or_else(|| DecodeError::new(DecodeErrorKind::ArgumentsTaken))?;
        let args = A::decode(&mut dec)?;
        dec.finish()?;
        Ok(args)
    }

    /// The context handed to methods that take `cx: &fdrpc::Context`.
    pub fn context(&self, method: &'static str) -> Context {
        let call = &self.call;
        Context::new(
            call.caller.clone(),
            call.service,
            method,
            self.header.seqid,
            call.deadline,
            call.trace,
        )
    }

    /// An encoder holding the reply's message header; the handler appends the result struct.
    pub fn reply_encoder(&self, method: &'static str) -> Encoder {
        self.reply_to(method).encoder()
    }

    /// Where the reply goes, for an encoder made once the handler has its result
    /// ([`ReplyTo::encoder`]): what a handler that waits keeps meanwhile is 24 bytes, not an
    /// encoder and its buffer (used by generated code).
    pub fn reply_to(&self, method: &'static str) -> ReplyTo {
        ReplyTo {
            method,
            seqid: self.header.seqid,
        }
    }
}

/// The method and sequence id a reply answers: see [`Incoming::reply_to`].
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    method: &'static str,
    seqid: i32,
}

impl ReplyTo {
    /// An encoder holding the reply's message header; the handler appends the result struct.
    pub fn encoder(self) -> Encoder {
        let mut enc = Encoder::new();
        // A name from the trait and an i32 always encode.
        let _ = enc.write_message_header(self.method, MessageType::Reply, self.seqid);
        enc
    }
}

/// A handler's encoded reply (message header and result struct), and whether the result is
/// the method's declared exception.
#[derive(Debug)]
pub struct HandlerReply {
    pub(crate) enc: Encoder,
    pub(crate) service_error: bool,
}

impl HandlerReply {
    /// The reply in `enc`; `service_error` if it holds the declared exception (used by
    /// generated code).
    pub fn new(enc: Encoder, service_error: bool) -> Self {
        HandlerReply { enc, service_error }
    }
}

/// Why a handler's reply is not its result struct.
#[derive(Debug)]
pub enum ReplyError {
    /// The result could not be encoded.
    Encode(EncodeError),
    /// The call failed in a way the client must learn as a `TApplicationException`.
    Application(ApplicationError),
}

impl From<EncodeError> for ReplyError {
    fn from(e: EncodeError) -> Self {
        ReplyError::Encode(e)
    }
}

impl SinkStatus {
    /// `Err` if the sink broke off: the handler's result then describes an incomplete sink,
    /// and the client gets a `PROTOCOL_ERROR` naming the cause instead (used by generated
    /// code).
    ///
    /// # Errors
    ///
    /// [`ReplyError::Application`] if the sink broke off.
    pub fn check(&self) -> Result<(), ReplyError> {
        let Some(cause) = self.cause() else {
            return Ok(());
        };
        let cause = match cause {
            crate::rpc::error::RpcError::Application(e)
            | crate::rpc::error::RpcError::Protocol(e) => e.message.clone(),
            other => other.to_string(),
        };
        Err(ReplyError::Application(ApplicationError::new(
            ApplicationErrorKind::ProtocolError,
            format!("the sink broke off before its end: {cause}"),
        )))
    }
}

/// What a stream method's handler yields: the encoded reply and, unless the call was refused,
/// the producer of the stream the reply opens.
pub type StreamReply = Result<(Encoder, Option<Box<dyn ErasedProducer>>), ReplyError>;

/// What [`Service::dispatch`] decided for a call.
#[non_exhaustive]
pub enum Dispatch {
    /// Run the future; it yields the encoded reply (message header and result struct).
    Reply(BoxFuture<Result<HandlerReply, ReplyError>>),
    /// Run the future; it yields the encoded reply and, unless the call was refused, the
    /// producer of the stream the reply opens.
    Stream(StreamSlot, BoxFuture<StreamReply>),
    /// Run the future; a oneway method sends no reply.
    Oneway(BoxFuture<()>),
    /// The arguments could not be decoded.
    BadArgs(DecodeError),
    /// No method of that name.
    UnknownMethod,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dispatch::Reply(_) => f.write_str("Dispatch::Reply"),
            Dispatch::Stream(slot, _) => write!(f, "Dispatch::Stream({slot:?})"),
            Dispatch::Oneway(_) => f.write_str("Dispatch::Oneway"),
            Dispatch::BadArgs(e) => write!(f, "Dispatch::BadArgs({e})"),
            Dispatch::UnknownMethod => f.write_str("Dispatch::UnknownMethod"),
        }
    }
}
