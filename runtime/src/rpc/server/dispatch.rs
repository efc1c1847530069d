//! What the server does with a call the connection core handed it: the introspection method,
//! or the service's handler, run with its first poll in the reader and a task only if it
//! waits; its reply (or the `TApplicationException` that replaces it) queued on the
//! connection.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;

use super::peer::PeerCredentials;
use super::service::{BoxFuture, Dispatch, Incoming, ReplyError};
use super::services::ServiceSet;
use crate::codec::call_result::encode_result;
use crate::codec::fd_table::FdTable;
use crate::codec::{Decoder, Encoder, MessageType};
use crate::idl::INTROSPECTION_METHOD;
use crate::idl::Idl;
use crate::rpc::app_exception::ApplicationErrorKind;
use crate::rpc::conn::{Conn, Ending, IncomingCall};
use crate::rpc::driver::tokio_conn::TokioConn;
use crate::rpc::stream::{ErasedProducer, produce};

/// What a call holds while it runs: its slot among the calls in flight and, if its frame
/// carried fds, their share of the server-wide fd budget.
pub(crate) type CallPermit = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

/// Dispatches one call, returning the work to await before the next frame: a oneway handler
/// (run to completion, in order), or a call's first poll (a call that waits continues in a
/// task of its own, holding `permit`).
pub(crate) fn dispatch<S: ServiceSet + ?Sized>(
    services: &S,
    conn: &Arc<TokioConn>,
    peer: &Arc<PeerCredentials>,
    call: IncomingCall<'_>,
    permit: CallPermit,
) -> Option<BoxFuture<()>> {
    let IncomingCall {
        mut header,
        body,
        fds,
        credit,
    } = call;
    let (seqid, ty) = (header.seqid, header.ty);
    // Replies carry the method's plain name, multiplexed calls too (as Apache Thrift's
    // multiplexed processor answers them).
    let name = header.name.rsplit_once(':').map_or(header.name, |(_, m)| m);
    let wants_reply = ty == MessageType::Call;
    if name == INTROSPECTION_METHOD {
        // Its arguments are ignored; fds sent with it close here.
        if wants_reply {
            let mut idl = Idl::new();
            services.describe(&mut idl);
            let idl = idl.render();
            conn.with(|c| {
                let mut enc = reply_encoder(name, seqid);
                if encode_result::<String, std::convert::Infallible>(&mut enc, Ok(idl)).is_ok() {
                    let _ = c.push_reply(seqid, enc);
                }
            });
        }
        return None;
    }
    let service = match services.route(header.name) {
        Ok((service, method)) => {
            header.name = method;
            service
        }
        Err(why) => {
            tracing::debug!(method = header.name, "fdrpc: {why}");
            if wants_reply {
                conn.with(|c| {
                    c.push_exception(name, seqid, ApplicationErrorKind::UnknownMethod, why)
                });
            }
            return None;
        }
    };
    let args = Decoder::new(body, FdTable::new(fds));
    let incoming = Incoming::new(header, args, peer, conn, credit);
    match service.dispatch(incoming) {
        Dispatch::Reply(fut) => {
            let conn = conn.clone();
            let conn2 = conn.clone();
            let name = name.to_owned();
            // Most handlers finish on their first poll: run that poll here and queue the
            // reply at once; only a handler that waits gets a task of its own.
            return Some(Box::pin(async move {
                let mut task = Box::pin(AssertUnwindSafe(fut).catch_unwind());
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(task.as_mut(), cx))
                })
                .await;
                let finish = move |outcome: Outcome<Encoder>| {
                    if wants_reply {
                        conn.with(|c| push_outcome(c, &name, seqid, outcome));
                    }
                    drop(permit);
                };
                match first {
                    std::task::Poll::Ready(outcome) => finish(outcome),
                    std::task::Poll::Pending => {
                        spawn_handler(&conn2, seqid, async move { finish(task.await) });
                    }
                }
            }));
        }
        Dispatch::Stream(slot, fut) => {
            let conn = conn.clone();
            let name = name.to_owned();
            spawn_handler(&conn.clone(), seqid, async move {
                let outcome: Outcome<(Encoder, Option<Box<dyn ErasedProducer>>)> =
                    AssertUnwindSafe(fut).catch_unwind().await;
                let (outcome, producer) = match outcome {
                    Ok(Ok((enc, p))) => (Ok(Ok(enc)), p),
                    Ok(Err(e)) => (Ok(Err(e)), None),
                    Err(panic) => (Err(panic), None),
                };
                conn.with(|c| {
                    push_outcome(c, &name, seqid, outcome);
                    if producer.is_none() {
                        // Refused, or failed: the stream never opens.
                        c.end_outbox(seqid, slot.id, slot.method, Ending::Silent);
                    }
                });
                if let Some(p) = producer {
                    produce(conn, slot.method, MessageType::Reply, seqid, slot.id, p).await;
                }
                drop(permit);
            });
        }
        Dispatch::Oneway(fut) => {
            let conn = conn.clone();
            let name = name.to_owned();
            return Some(Box::pin(async move {
                let outcome = AssertUnwindSafe(fut).catch_unwind().await;
                if outcome.is_err() {
                    tracing::error!(method = %name, "fdrpc: oneway handler panicked");
                }
                if wants_reply {
                    // A client that sent a oneway method as a call gets an empty result.
                    conn.with(|c| {
                        let mut enc = reply_encoder(&name, seqid);
                        enc.write_stop();
                        let _ = c.push_reply(seqid, enc);
                    });
                }
                drop(permit);
            }));
        }
        Dispatch::BadArgs(e) => {
            tracing::debug!(method = name, error = %e, "fdrpc: bad arguments");
            if wants_reply {
                conn.with(|c| {
                    c.push_exception(
                        name,
                        seqid,
                        ApplicationErrorKind::ProtocolError,
                        format!("bad arguments: {e}"),
                    )
                });
            }
        }
        Dispatch::UnknownMethod => {
            tracing::debug!(method = name, "fdrpc: unknown method");
            if wants_reply {
                conn.with(|c| {
                    c.push_exception(
                        name,
                        seqid,
                        ApplicationErrorKind::UnknownMethod,
                        format!("unknown method `{name}`"),
                    )
                });
            }
        }
    }
    None
}

/// Runs the rest of call `seqid`'s handler in a task of its own, registered with the
/// connection so that the connection's end stops it at once (its future is dropped: what it
/// holds, fds included, is closed). Nothing runs if the connection has ended already.
fn spawn_handler(
    conn: &Arc<TokioConn>,
    seqid: i32,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (work, stop) = futures_util::future::abortable(work);
    let Some(id) = conn.with(|c| c.track_handler(seqid, stop)) else {
        return;
    };
    let conn = conn.clone();
    tokio::spawn(async move {
        let _ = work.await;
        conn.with(|c| c.untrack_handler(seqid, id));
    });
}

/// How a handler ended: its encoded reply or why there is none, or its panic.
type Outcome<T> = Result<Result<T, ReplyError>, Box<dyn std::any::Any + Send>>;

/// An encoder holding a reply's message header.
fn reply_encoder(name: &str, seqid: i32) -> Encoder {
    let mut enc = Encoder::new();
    // A name we were sent and an i32 always encode.
    let _ = enc.write_message_header(name, MessageType::Reply, seqid);
    enc
}

/// Queues a handler's reply, or the `TApplicationException` that replaces it.
fn push_outcome(c: &mut Conn, name: &str, seqid: i32, outcome: Outcome<Encoder>) {
    match outcome {
        Ok(Ok(enc)) => {
            let _ = c.push_reply(seqid, enc);
        }
        Ok(Err(ReplyError::Encode(e))) => {
            tracing::error!(method = %name, error = %e, "fdrpc: could not encode a reply");
            c.push_exception(
                name,
                seqid,
                ApplicationErrorKind::InternalError,
                format!("could not encode the reply: {e}"),
            );
        }
        Ok(Err(ReplyError::Application(e))) => c.push_exception(name, seqid, e.kind, e.message),
        Err(_) => {
            tracing::error!(method = %name, "fdrpc: handler panicked");
            c.push_exception(
                name,
                seqid,
                ApplicationErrorKind::InternalError,
                "the handler panicked".into(),
            );
        }
    }
}
