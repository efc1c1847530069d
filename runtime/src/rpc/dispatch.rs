//! One connection's dispatch: what a server does with each complete frame (a call, a oneway,
//! a stream frame), and how replies and `TApplicationException`s are queued.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;

use super::app_exception::{ApplicationError, ApplicationErrorKind};
use super::flow::{HEADER_CREDIT, HEADER_STREAM, MAX_WINDOW, StreamFrame};
use super::peer::PeerCredentials;
use super::producer::produce;
use super::result::encode_result;
use super::routes::{Delivered, send_control};
use super::service::{
    BoxFuture, Dispatch, INTROSPECTION_METHOD, Incoming, ReplyError, Service, StreamCtx,
    StreamReply,
};
use super::writer::Writer;
use crate::compact::{Decoder, Encoder, MessageType};
use crate::fd_table::FdTable;
use crate::frame::Frame;

/// What a connection's frames are dispatched with.
pub(crate) struct ConnState {
    pub(crate) writer: Arc<Writer>,
    pub(crate) peer: Arc<PeerCredentials>,
    pub(crate) streams: StreamCtx,
}

impl ConnState {
    /// Decodes and dispatches one frame, returning the work to await before the next frame:
    /// a oneway handler (run to completion, in order), or a call's first poll (a call that
    /// waits continues in a task of its own, holding `permit` and the frame's share of the fd
    /// budget, `lease`). Stream frames go to their stream.
    pub(crate) fn handle_frame<S: Service + ?Sized>(
        &self,
        service: &S,
        frame: &Frame<'_>,
        fds: Vec<std::os::fd::OwnedFd>,
        permit: OwnedSemaphorePermit,
        lease: Option<OwnedSemaphorePermit>,
    ) -> Option<BoxFuture<()>> {
        // The frame's share of the fd budget goes back when its call is done with its fds.
        let permit = (permit, lease);
        let payload = frame.payload;
        let mut dec = Decoder::new(payload, FdTable::empty());
        let header = match dec.read_message_header() {
            Ok(h) => h,
            Err(e) => {
                // Not a Thrift compact message: answer on the frame's sequence id. Its fds
                // close here.
                tracing::debug!(error = %e, "fdrpc: undecodable message header");
                self.exception(
                    "",
                    frame.seqid,
                    ApplicationErrorKind::ProtocolError,
                    e.to_string(),
                );
                return None;
            }
        };
        let body = payload
            .get(payload.len() - dec.remaining()..)
            .unwrap_or_default();
        let (name, seqid, ty) = (header.name, header.seqid, header.ty);
        if let Some(kind) = frame.header(HEADER_STREAM) {
            drop(permit);
            match StreamFrame::parse(kind) {
                Some(kind) => {
                    let credit = frame
                        .header(HEADER_CREDIT)
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                    if let Delivered::Violation { seqid } =
                        self.streams.routes.deliver(seqid, kind, credit, body, fds)
                    {
                        send_control(
                            &self.writer,
                            name,
                            MessageType::Reply,
                            seqid,
                            StreamFrame::Cancel,
                            None,
                        );
                    }
                }
                None => tracing::debug!(
                    method = name,
                    "fdrpc: unknown `fdrpc-stream` value; frame dropped"
                ),
            }
            return None;
        }
        if !matches!(ty, MessageType::Call | MessageType::Oneway) {
            self.exception(
                name,
                seqid,
                ApplicationErrorKind::InvalidMessageType,
                format!("a server accepts calls, not {ty:?} messages"),
            );
            return None;
        }
        let wants_reply = ty == MessageType::Call;
        if name == INTROSPECTION_METHOD {
            if wants_reply {
                let mut enc = Encoder::new();
                let encoded = enc
                    .write_message_header(name, MessageType::Reply, seqid)
                    .and_then(|()| {
                        encode_result::<String, std::convert::Infallible>(
                            &mut enc,
                            Ok(service.idl()),
                        )
                    });
                if encoded.is_ok() {
                    let (payload, _) = enc.into_parts();
                    // Its arguments are ignored; fds sent with it close here.
                    let _ = self.writer.push(seqid, &payload, Vec::new(), &[]);
                }
            }
            return None;
        }
        let credit = frame
            .header(HEADER_CREDIT)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
            .map(|c| c.min(MAX_WINDOW));
        let args = Decoder::new(body, FdTable::new(fds));
        let incoming = Incoming::new(header, args, &self.peer, &self.streams, credit);
        match service.dispatch(incoming) {
            Dispatch::Reply(fut) => {
                let writer = self.writer.clone();
                let name = name.to_owned();
                // Most handlers finish on their first poll: run that poll here and queue the
                // reply at once; only a handler that waits gets a task of its own.
                return Some(Box::pin(async move {
                    let mut task = Box::pin(AssertUnwindSafe(fut).catch_unwind());
                    let first = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(std::future::Future::poll(task.as_mut(), cx))
                    })
                    .await;
                    let finish = move |result: Result<Result<Encoder, ReplyError>, _>| {
                        if wants_reply {
                            push_reply(
                                &writer,
                                &name,
                                seqid,
                                result.map(|r| r.map(|enc| (enc, None))),
                            );
                        }
                        drop(permit);
                    };
                    match first {
                        std::task::Poll::Ready(result) => finish(result),
                        std::task::Poll::Pending => {
                            tokio::spawn(async move { finish(task.await) });
                        }
                    }
                }));
            }
            Dispatch::Stream(slot, fut) => {
                let writer = self.writer.clone();
                let routes = self.streams.routes.clone();
                let name = name.to_owned();
                tokio::spawn(async move {
                    let mut result = AssertUnwindSafe(fut).catch_unwind().await;
                    let p = match &mut result {
                        Ok(Ok((_, p))) => p.take(),
                        _ => None,
                    };
                    push_reply(&writer, &name, seqid, result);
                    match p {
                        Some(p) => {
                            produce(
                                writer,
                                routes,
                                slot.method,
                                MessageType::Reply,
                                seqid,
                                slot.credit,
                                p,
                            )
                            .await;
                        }
                        None => routes.close_credit(seqid, &slot.credit),
                    }
                    drop(permit);
                });
            }
            Dispatch::Oneway(fut) => {
                let writer = self.writer.clone();
                let name = name.to_owned();
                return Some(Box::pin(async move {
                    let result = AssertUnwindSafe(fut).catch_unwind().await;
                    if result.is_err() {
                        tracing::error!(method = %name, "fdrpc: oneway handler panicked");
                    }
                    if wants_reply {
                        // A client that sent a oneway method as a call gets an empty result.
                        let mut enc = Encoder::new();
                        let _ = enc.write_message_header(&name, MessageType::Reply, seqid);
                        enc.write_stop();
                        let (payload, fds) = enc.into_parts();
                        let _ = writer.push(seqid, &payload, fds, &[]);
                    }
                    drop(permit);
                }));
            }
            Dispatch::BadArgs(e) => {
                tracing::debug!(method = name, error = %e, "fdrpc: bad arguments");
                if wants_reply {
                    self.exception(
                        name,
                        seqid,
                        ApplicationErrorKind::ProtocolError,
                        format!("bad arguments: {e}"),
                    );
                }
            }
            Dispatch::UnknownMethod => {
                tracing::debug!(method = name, "fdrpc: unknown method");
                if wants_reply {
                    self.exception(
                        name,
                        seqid,
                        ApplicationErrorKind::UnknownMethod,
                        format!("unknown method `{name}`"),
                    );
                }
            }
        }
        None
    }

    fn exception(&self, name: &str, seqid: i32, kind: ApplicationErrorKind, message: String) {
        push_exception(&self.writer, name, seqid, kind, message);
    }
}

type HandlerOutcome = Result<StreamReply, Box<dyn std::any::Any + Send>>;

/// Queues a handler's reply, or the `TApplicationException` that replaces it.
fn push_reply(writer: &Writer, name: &str, seqid: i32, result: HandlerOutcome) {
    match result {
        Ok(Ok((enc, _))) => {
            let (payload, fds) = enc.into_parts();
            let _ = writer.push(seqid, &payload, fds, &[]);
        }
        Ok(Err(ReplyError::Encode(e))) => {
            tracing::error!(method = %name, error = %e, "fdrpc: could not encode a reply");
            push_exception(
                writer,
                name,
                seqid,
                ApplicationErrorKind::InternalError,
                format!("could not encode the reply: {e}"),
            );
        }
        Ok(Err(ReplyError::Application(e))) => {
            push_exception(writer, name, seqid, e.kind, e.message);
        }
        Err(_) => {
            tracing::error!(method = %name, "fdrpc: handler panicked");
            push_exception(
                writer,
                name,
                seqid,
                ApplicationErrorKind::InternalError,
                "the handler panicked".into(),
            );
        }
    }
}

fn push_exception(
    writer: &Writer,
    name: &str,
    seqid: i32,
    kind: ApplicationErrorKind,
    message: String,
) {
    let mut enc = Encoder::new();
    let ok = enc
        .write_message_header(name, MessageType::Exception, seqid)
        .and_then(|()| ApplicationError::new(kind, message).encode(&mut enc));
    if ok.is_ok() {
        let (payload, fds) = enc.into_parts();
        let _ = writer.push(seqid, &payload, fds, &[]);
    }
}
