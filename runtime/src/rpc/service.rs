//! [`Service`]: what `#[fdrpc::service]` generates for the server side, and the types its
//! dispatch uses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::context::Context;
use super::peer::PeerCredentials;
use crate::compact::{Decoder, Encoder, MessageHeader, MessageType};
use crate::error::{DecodeError, EncodeError};
use crate::wire::Wire;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A service a [`Server`](super::Server) can serve: implemented by the generated
/// `{Trait}Server<T>`.
pub trait Service: Send + Sync + 'static {
    /// The Thrift service name.
    fn name(&self) -> &'static str;

    /// Routes one incoming call to its handler.
    fn dispatch(&self, call: Incoming<'_>) -> Dispatch;
}

impl<S: Service + ?Sized> Service for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn dispatch(&self, call: Incoming<'_>) -> Dispatch {
        (**self).dispatch(call)
    }
}

/// One call as the server received it: the Thrift message header and a decoder positioned at
/// the arguments struct, holding the frame's fds.
#[derive(Debug)]
pub struct Incoming<'a> {
    header: MessageHeader<'a>,
    dec: Option<Decoder<'a>>,
    peer: &'a Arc<PeerCredentials>,
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(
        header: MessageHeader<'a>,
        dec: Decoder<'a>,
        peer: &'a Arc<PeerCredentials>,
    ) -> Self {
        Incoming {
            header,
            dec: Some(dec),
            peer,
        }
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
        let mut dec = self.dec.take().ok_or_else(|| {
            DecodeError::new(crate::DecodeErrorKind::BadMessageHeader(
                "arguments decoded twice".into(),
            ))
        })?;
        let args = A::decode(&mut dec)?;
        dec.finish()?;
        Ok(args)
    }

    /// The context handed to methods that take `cx: &fdrpc::Context`.
    pub fn context(&self, method: &'static str) -> Context {
        Context::new(self.peer.clone(), method, self.header.seqid)
    }

    /// An encoder holding the reply's message header; the handler appends the result struct.
    pub fn reply_encoder(&self, method: &'static str) -> Encoder {
        let mut enc = Encoder::new();
        // A name from the trait and an i32 always encode.
        let _ = enc.write_message_header(method, MessageType::Reply, self.header.seqid);
        enc
    }
}

/// What [`Service::dispatch`] decided for a call.
#[non_exhaustive]
pub enum Dispatch {
    /// Run the future; it yields the encoded reply (message header and result struct).
    Reply(BoxFuture<Result<Encoder, EncodeError>>),
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
            Dispatch::Oneway(_) => f.write_str("Dispatch::Oneway"),
            Dispatch::BadArgs(e) => write!(f, "Dispatch::BadArgs({e})"),
            Dispatch::UnknownMethod => f.write_str("Dispatch::UnknownMethod"),
        }
    }
}
