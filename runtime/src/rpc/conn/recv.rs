//! What this side receives, through [`Conn::receive`]: replies matched to their calls,
//! stream items routed to their consumers and control frames to their producers, calls handed
//! to the server, and everything else refused.

use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use super::body::Body;
use super::calls::Reply;
use super::classify::{BadTimeout, Classified, Malformed, classify, parse_trace};
use super::routes::Delivered;
use super::stream_frame::{ABSENT_CREDIT_WINDOW, StreamFrame};
use super::{Conn, Inbound, RawItem, Role, RouteId, abort_cause};
use crate::codec::fd_table::Fds;
use crate::codec::{MessageHeader, MessageType};
use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};
use crate::rpc::error::{ConnectionError, RpcError};
use crate::rpc::method_name::{MethodName, split_service};
use crate::rpc::trace::TraceContext;
use crate::transport::ReceivedFrame;
use crate::transport::error::TransportError;

/// A call (or oneway) for the server to dispatch.
#[derive(Debug)]
pub(crate) struct IncomingCall<'f> {
    pub(crate) header: MessageHeader<'f>,
    /// The payload after the message header: the arguments struct.
    pub(crate) body: &'f [u8],
    /// The frame's memory, when `body` is part of a large frame's own (see
    /// [`ReceivedFrame::owner`]).
    pub(crate) owner: Option<&'f Bytes>,
    pub(crate) fds: Fds,
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
    fds: Fds,
    owner: Option<&'f Bytes>,
}

impl<'f> Received<'f> {
    pub(crate) fn new(frame: ReceivedFrame<'f>) -> Self {
        Received {
            seqid: frame.frame.seqid,
            classified: classify(&frame.frame),
            fds: frame.fds,
            owner: frame.owner,
        }
    }

    /// The call this frame is, when dispatching it needs nothing of the connection's state: a
    /// CALL or ONEWAY without `fdrpc-stream`, whose `fdrpc-credit` and `client_timeout` (if
    /// any) are valid. A server hands such a frame to dispatch without taking the connection's
    /// lock; everything else goes to [`Conn::receive`].
    // Both sides are moved once per frame; boxing the `Err` side would allocate per frame.
    #[allow(clippy::result_large_err)]
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
                owner: self.owner,
                fds: self.fds,
                credit,
                timeout,
                trace: trace.and_then(parse_trace),
            }),
            classified => Err(Received {
                seqid: self.seqid,
                classified,
                fds: self.fds,
                owner: self.owner,
            }),
        }
    }
}

impl Conn {
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
            owner,
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
            }) => self.receive_stream_frame(seqid, kind, credit, (body, owner), fds, wake),
            Ok(Classified::Message {
                header,
                body,
                credit,
                timeout,
                ..
            }) => match self.role {
                Role::Server => self.refuse(header, credit, timeout),
                Role::Client => self.receive_reply(header, (body, owner), fds, wake),
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
        (body, owner): (&[u8], Option<&Bytes>),
        fds: Fds,
        wake: &mut Vec<Waker>,
    ) {
        match kind {
            StreamFrame::Item | StreamFrame::Error => {
                let last = kind == StreamFrame::Error;
                if let Delivered::Violation { method } =
                    self.routes.deliver(seqid, body, owner, fds, last, wake)
                {
                    tracing::debug!(
                        seqid,
                        method = method.as_str(),
                        "fdrpc: stream item beyond the credit granted"
                    );
                    self.push_control(seqid, &method, StreamFrame::Cancel, None);
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
                // The producer of a stream stops; so does a handler still running the call
                // (the server's driver stops it: see `Conn::take_cancelled_calls`).
                self.routes.cancel(seqid, wake);
                self.output.call_cancelled(seqid);
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
        (body, owner): (&[u8], Option<&Bytes>),
        fds: Fds,
        wake: &mut Vec<Waker>,
    ) {
        let seqid = header.seqid;
        let Some(calls) = &mut self.calls else {
            tracing::debug!(seqid, "fdrpc: discarding a reply; this side made no call");
            return;
        };
        let Some(method) = calls.method(seqid).map(MethodName::as_str) else {
            tracing::debug!(seqid, "fdrpc: discarding a reply to a forgotten call");
            return;
        };
        // A multiplexed call (`Service:method`) is answered with the plain method name.
        let answers = header.name == method
            || split_service(method).is_some_and(|(_, plain)| plain == header.name);
        let outcome = match header.ty {
            MessageType::Reply | MessageType::Exception if answers => Ok(Reply {
                ty: header.ty,
                body: Body::new(body, owner),
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
        wake.extend(calls.settle(seqid, outcome));
    }

    // ------------------------------------------------------------------ consumers

    /// The reply to call `seqid` once it is there; until then `waker` (if any) is remembered.
    pub(crate) fn poll_reply(
        &mut self,
        seqid: i32,
        waker: Option<&Waker>,
    ) -> Poll<Result<Reply, RpcError>> {
        // Only a call nobody knows of needs the error: it is not built on every poll.
        let dead = &self.dead;
        let gone = || {
            RpcError::Connection(
                dead.clone()
                    .unwrap_or_else(|| ConnectionError::new(TransportError::Closed)),
            )
        };
        match &mut self.calls {
            Some(calls) => calls.poll(seqid, waker, gone),
            None => Poll::Ready(Err(gone())),
        }
    }

    /// Registers the sink of call `seqid` on the server and grants the client its first
    /// window.
    pub(crate) fn open_sink(&mut self, seqid: i32, method: &'static str) -> RouteId {
        let id = self.routes.open_inbox(seqid, method.into(), self.window);
        self.push_control(seqid, method, StreamFrame::Credit, Some(self.window));
        id
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
                    self.push_control(seqid, &g.method, StreamFrame::Credit, Some(g.credit));
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
        self.push_control(seqid, &method, StreamFrame::Cancel, None);
        true
    }
}
