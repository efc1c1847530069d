//! What the server does with a call the connection core handed it: the introspection method,
//! or the service's handler, run inside the call's span and trace, with its first poll in the
//! reader and a task only if it waits, dropped if its deadline passes; its reply (or the
//! `TApplicationException` that replaces it) queued on the connection; the hooks told.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_util::FutureExt;

use super::context::Context;
use super::handlers::{Handlers, RunningHandler, Stop, Tracking, Unbounded, Work};
use super::hooks::{CallOutcome, Hooks, Observed};
use super::host::Caller;
use super::peer::PeerCredentials;
use super::service::{BoxFuture, CallInfo, Dispatch, HandlerReply, Incoming, ReplyError};
use super::services::ServiceSet;
use crate::codec::call_result::encode_result;
use crate::codec::fd_table::FdTable;
use crate::codec::{Decoder, Encoder, MessageType};
use crate::idl::INTROSPECTION_METHOD;
use crate::idl::Idl;
use crate::rpc::app_exception::ApplicationErrorKind;
use crate::rpc::conn::{Conn, Ending, IncomingCall};
use crate::rpc::deadline::Deadline;
use crate::rpc::driver::call_sink::{Arrival, CallPermit, CallSink, Inline};
use crate::rpc::driver::handle::Driven;
use crate::rpc::method_name::plain_method;
use crate::rpc::stream::{ErasedProducer, produce};
use crate::rpc::trace::{self, TraceContext, TraceId};

/// One served connection: its driver, and its handlers that run in tasks of their own (the
/// connection's end, or a caller's `cancel`, stops them).
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) conn: Driven,
    pub(crate) handlers: Handlers,
}

impl Served {
    /// The connection `conn`, whose end stops its handlers.
    pub(crate) fn new(conn: Driven) -> Arc<Served> {
        let served = Arc::new(Served {
            conn,
            handlers: Handlers::default(),
        });
        // Weak: the driver must not keep what holds the driver alive.
        let weak = Arc::downgrade(&served);
        served.conn.on_end(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.handlers.abort_all();
            }
        }));
        served
    }
}

/// What the calls of one connection are dispatched with.
pub(crate) struct Serving<'a, S: ?Sized> {
    pub(crate) services: &'a S,
    /// The connection: its driver and its handlers.
    pub(crate) served: &'a Arc<Served>,
    pub(crate) caller: &'a Arc<Caller>,
    /// The server's hooks; `None` if it has none.
    pub(crate) hooks: Option<&'a Hooks>,
}

impl<S: ServiceSet + ?Sized> CallSink for Serving<'_, S> {
    #[inline]
    fn dispatch(
        &self,
        call: IncomingCall<'_>,
        arrived: Arrival,
        permit: CallPermit,
        cx: &mut std::task::Context<'_>,
    ) -> Option<Inline> {
        dispatch(self, call, arrived, permit, cx)
    }

    fn stop(&self, seqid: i32) {
        self.served.handlers.stop_call(seqid);
    }
}

/// Dispatches one call, as [`CallSink::dispatch`] says: a call's handler gets its first
/// poll here, with `cx`; a oneway handler is returned, to be awaited before the next frame.
pub(crate) fn dispatch<S: ServiceSet + ?Sized>(
    at: &Serving<'_, S>,
    call: IncomingCall<'_>,
    arrival: Arrival,
    permit: CallPermit,
    cx: &mut std::task::Context<'_>,
) -> Option<BoxFuture<()>> {
    let arrived = arrival.at;
    let conn = &at.served.conn;
    let IncomingCall {
        mut header,
        body,
        owner,
        fds,
        credit,
        timeout,
        trace,
    } = call;
    let (seqid, ty) = (header.seqid, header.ty);
    // Replies carry the method's plain name, multiplexed calls too (as Apache Thrift's
    // multiplexed processor answers them).
    let name = plain_method(header.name);
    let wants_reply = ty == MessageType::Call;
    if name == INTROSPECTION_METHOD {
        // Its arguments are ignored; fds sent with it close here.
        if wants_reply {
            let mut idl = Idl::new();
            at.services.describe(&mut idl);
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
    let service = match at.services.route(header.name) {
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
    // The method's name as the service declares it: what replies and hooks name (a `&'static
    // str`, so a call holds no copy of it).
    let Some(method) = service
        .methods()
        .iter()
        .copied()
        .find(|m| *m == header.name)
    else {
        tracing::debug!(method = name, "fdrpc: unknown method");
        if wants_reply {
            let why = format!("unknown method `{name}`");
            conn.with(|c| c.push_exception(name, seqid, ApplicationErrorKind::UnknownMethod, why));
        }
        return None;
    };
    let deadline = timeout.map(|t| Deadline::from(arrived.unwrap_or_else(Instant::now), t));
    let fds_in = fds.len();
    // On a served endpoint, who sent this call (the kernel's word), not who made the pair.
    let sent_by;
    let caller = match arrival.sender {
        Some(sender) => {
            sent_by = at.caller.sent_by(sender);
            &sent_by
        }
        None => at.caller,
    };
    let scope = CallScope::new(service.name(), method, seqid, &caller.peer, fds_in, trace);
    let trace = scope.trace;
    let observed = match at.hooks {
        Some(hooks) => {
            let cx = Context::new(
                caller.clone(),
                service.name(),
                method,
                seqid,
                deadline.map(|d| d.at()),
                trace,
            );
            let start = arrived.unwrap_or_else(Instant::now);
            match Observed::before(hooks, cx, start, fds_in) {
                Ok(observed) => Some(Box::new(observed)),
                Err(e) => {
                    scope.in_scope(|| tracing::debug!(error = %e, "fdrpc: call refused by a hook"));
                    if wants_reply {
                        conn.with(|c| c.push_exception(method, seqid, e.kind, e.message));
                    }
                    return None;
                }
            }
        }
        None => None,
    };
    let info = CallInfo {
        caller,
        service: service.name(),
        credit,
        deadline: deadline.map(|d| d.at()),
        trace,
    };
    let args = Decoder::shared(body, owner, FdTable::of(fds));
    let incoming = Incoming::new(header, args, info, conn);
    let call = Call {
        served: at.served.clone(),
        name: method,
        seqid,
        wants_reply,
        deadline,
        observed,
        permit: Some(permit),
    };
    match service.dispatch(incoming) {
        Dispatch::Reply(fut) => call.reply(fut, scope, cx),
        Dispatch::Stream(slot, fut) => {
            let served = call.served.clone();
            let work = Unbounded(Box::pin(scope.wrap(call.stream(slot, fut))));
            spawn_handler(&served, seqid, work, None);
        }
        Dispatch::Oneway(fut) => return Some(Box::pin(scope.wrap(call.oneway(fut)))),
        Dispatch::BadArgs(e) => {
            scope.in_scope(|| {
                tracing::debug!(error = %e, "fdrpc: bad arguments");
                call.refuse(
                    ApplicationErrorKind::ProtocolError,
                    format!("bad arguments: {e}"),
                );
            });
        }
        Dispatch::UnknownMethod => {
            // Listed in `methods()` but not dispatched: a service that disagrees with itself.
            scope.in_scope(|| {
                tracing::debug!("fdrpc: unknown method");
                let why = format!("unknown method `{method}`");
                call.refuse(ApplicationErrorKind::UnknownMethod, why);
            });
        }
    }
    None
}

/// One dispatched call: where and how it is answered, and what it holds until then.
struct Call {
    /// The connection (its driver, and where a handler that waits is tracked): one `Arc`
    /// per call.
    served: Arc<Served>,
    name: &'static str,
    seqid: i32,
    wants_reply: bool,
    /// The deadline the caller's timeout set.
    deadline: Option<Deadline>,
    observed: Option<Box<Observed>>,
    /// Given back when the call ends (a stream method's: when its stream ends).
    permit: Option<CallPermit>,
}

impl Call {
    /// Runs a handler whose reply is a result struct: its first poll now (with the reader's
    /// `cx`), the rest (if it waits) in a task of its own, until its deadline.
    fn reply(
        self,
        fut: BoxFuture<Result<HandlerReply, ReplyError>>,
        scope: CallScope,
        cx: &mut std::task::Context<'_>,
    ) {
        // The handler is boxed already: catching its panics needs no box of its own.
        let mut task = AssertUnwindSafe(fut).catch_unwind();
        // Most handlers finish on their first poll: run that poll here and queue the reply at
        // once; only a handler that waits gets a task of its own (polled there at once, which
        // moves its wake-ups from the reader to it).
        let first = scope.in_scope(|| match Pin::new(&mut task).poll(cx) {
            Poll::Ready(outcome) => Some(outcome),
            Poll::Pending => None,
        });
        match first {
            Some(outcome) => scope.in_scope(|| self.answer(outcome)),
            None => {
                let (served, seqid, deadline) = (self.served.clone(), self.seqid, self.deadline());
                let waiting = Waiting {
                    handler: Some(task),
                    call: Some(self),
                    scope,
                };
                spawn_handler(&served, seqid, waiting, deadline);
            }
        }
    }

    /// Runs a handler whose reply opens a stream, then the stream's producer. The deadline
    /// bounds the handler, not the stream.
    async fn stream(
        mut self,
        slot: super::service::StreamSlot,
        fut: BoxFuture<super::service::StreamReply>,
    ) {
        let opened = (self.served.clone())
            .conn
            .until(self.deadline(), AssertUnwindSafe(fut).catch_unwind())
            .await;
        let Some(outcome) = opened else {
            self.served.conn.with(|c| {
                c.end_outbox(self.seqid, slot.id, slot.method, Ending::Silent);
            });
            return self.time_out();
        };
        let (outcome, producer): (Outcome<HandlerReply>, Option<Box<dyn ErasedProducer>>) =
            match outcome {
                Ok(Ok((enc, p))) => {
                    // A refusal is the declared exception.
                    let refused = p.is_none();
                    (Ok(Ok(HandlerReply::new(enc, refused))), p)
                }
                Ok(Err(e)) => (Ok(Err(e)), None),
                Err(panic) => (Err(panic), None),
            };
        let conn = self.served.conn.clone();
        if producer.is_none() {
            // Refused, or failed: the stream never opens.
            conn.with(|c| c.end_outbox(self.seqid, slot.id, slot.method, Ending::Silent));
        }
        let seqid = self.seqid;
        // The call holds its place among the calls in flight until its stream ends.
        let permit = self.permit.take();
        self.answer(outcome);
        if let Some(p) = producer {
            produce(
                conn,
                slot.method.into(),
                MessageType::Reply,
                seqid,
                slot.id,
                p,
            )
            .await;
        }
        drop(permit);
    }

    /// Runs a oneway handler to its end (or its deadline, if its caller set one).
    async fn oneway(self, fut: BoxFuture<()>) {
        let outcome = (self.served.clone())
            .conn
            .until(self.deadline(), AssertUnwindSafe(fut).catch_unwind())
            .await;
        let outcome = match outcome {
            Some(Ok(())) => CallOutcome::Ok,
            Some(Err(_)) => {
                tracing::error!("fdrpc: oneway handler panicked");
                CallOutcome::Panicked
            }
            None => {
                tracing::debug!("fdrpc: deadline passed; oneway handler dropped");
                CallOutcome::TimedOut
            }
        };
        if self.wants_reply {
            // A client that sent a oneway method as a call gets an empty result.
            self.served.conn.with(|c| {
                let mut enc = reply_encoder(self.name, self.seqid);
                enc.write_stop();
                let _ = c.push_reply(self.seqid, enc);
            });
        }
        self.end(outcome, 0);
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|d| d.at())
    }

    /// Queues the handler's reply, or the exception that replaces it.
    fn answer(self, outcome: Outcome<HandlerReply>) {
        let (name, seqid, wants_reply) = (self.name, self.seqid, self.wants_reply);
        let (outcome, fds_out) = self
            .served
            .conn
            .with(|c| push_outcome(c, name, seqid, wants_reply, outcome));
        self.end(outcome, fds_out);
    }

    /// The deadline passed: the handler has been dropped; the caller gets a `Timeout`.
    fn time_out(self) {
        tracing::debug!("fdrpc: deadline passed; handler dropped");
        if self.wants_reply {
            let ms = self.deadline.map_or(0, |d| d.timeout().as_millis());
            let why = format!("the call's deadline passed: its caller waits {ms} ms");
            self.served.conn.with(|c| {
                c.push_exception(self.name, self.seqid, ApplicationErrorKind::Timeout, why)
            });
        }
        self.end(CallOutcome::TimedOut, 0);
    }

    /// The call could not run: the caller gets this exception.
    fn refuse(self, kind: ApplicationErrorKind, why: String) {
        if self.wants_reply {
            self.served
                .conn
                .with(|c| c.push_exception(self.name, self.seqid, kind, why));
        }
        self.end(CallOutcome::Failed(kind), 0);
    }

    /// Tells the span and the hooks how the call ended, and gives its permit back. Runs in
    /// the call's scope (see [`CallScope::wrap`]): the current span is the call's, if any.
    fn end(self, outcome: CallOutcome, fds_out: usize) {
        tracing::Span::current().record("fds_out", fds_out);
        if let Some(observed) = self.observed {
            observed.end(outcome, fds_out);
        }
        drop(self.permit);
    }
}

/// Runs the rest of call `seqid`'s handler in a task of its own, registered with the
/// connection's handlers so that the connection's end, or the caller's `cancel`, stops it at
/// once (its work is dropped: what it holds, fds included, is closed), and `deadline`
/// passing ends it as timed out (the connection's one deadline keeper says when). Nothing
/// runs if the connection has ended already.
fn spawn_handler(served: &Arc<Served>, seqid: i32, work: impl Work, deadline: Option<Instant>) {
    let (handler, task) = RunningHandler::new(work);
    let id = match served.handlers.track(seqid, handler.clone(), deadline) {
        Tracking::Tracked { id, keeper } => {
            if keeper {
                let kept = served.clone();
                served
                    .conn
                    .spawn(async move { kept.handlers.keep_deadlines(&kept.conn).await });
            }
            id
        }
        Tracking::Closed => {
            // Dropped here, without any lock.
            handler.stop();
            return;
        }
    };
    let tracked = served.clone();
    served.conn.spawn(async move {
        task.await;
        tracked.handlers.untrack(seqid, id);
    });
}

/// A handler that did not finish on its first poll, with its call: answered when the handler
/// finishes, or timed out when the connection's deadline keeper says its deadline passed.
/// What a waiting call holds.
struct Waiting {
    handler: Option<Handling>,
    /// Taken when the call is answered.
    call: Option<Call>,
    scope: CallScope,
}

/// A handler's future, its panics caught.
type Handling = futures_util::future::CatchUnwind<
    AssertUnwindSafe<BoxFuture<Result<HandlerReply, ReplyError>>>,
>;

impl Work for Waiting {
    fn poll_work(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let Some(handler) = self.handler.as_mut() else {
            return Poll::Ready(());
        };
        let _span = self.scope.span.as_ref().map(tracing::Span::enter);
        let _trace = trace::enter(self.scope.trace);
        let Poll::Ready(outcome) = Pin::new(handler).poll(cx) else {
            return Poll::Pending;
        };
        self.handler = None;
        if let Some(call) = self.call.take() {
            call.answer(outcome);
        }
        Poll::Ready(())
    }

    fn expire(mut self) {
        let _span = self.scope.span.as_ref().map(tracing::Span::enter);
        let _trace = trace::enter(self.scope.trace);
        // The handler's future first: what it holds (fds among it) is closed before the
        // caller hears of it.
        drop(self.handler.take());
        if let Some(call) = self.call.take() {
            call.time_out();
        }
    }
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

/// Queues a handler's reply (if `wants_reply`), or the `TApplicationException` that replaces
/// it; returns how the call ended and the fds its reply carried.
fn push_outcome(
    c: &mut Conn,
    name: &str,
    seqid: i32,
    wants_reply: bool,
    outcome: Outcome<HandlerReply>,
) -> (CallOutcome, usize) {
    let mut exception = |kind, why| {
        if wants_reply {
            c.push_exception(name, seqid, kind, why);
        }
        (CallOutcome::Failed(kind), 0)
    };
    match outcome {
        Ok(Ok(reply)) => {
            let fds = reply.enc.fd_count();
            let ended = if reply.service_error {
                CallOutcome::ServiceError
            } else {
                CallOutcome::Ok
            };
            if wants_reply {
                let _ = c.push_reply(seqid, reply.enc);
            }
            (ended, fds)
        }
        Ok(Err(ReplyError::Encode(e))) => {
            tracing::error!(error = %e, "fdrpc: could not encode a reply");
            exception(
                ApplicationErrorKind::InternalError,
                format!("could not encode the reply: {e}"),
            )
        }
        Ok(Err(ReplyError::Application(e))) => exception(e.kind, e.message),
        Err(_) => {
            tracing::error!("fdrpc: handler panicked");
            exception(
                ApplicationErrorKind::InternalError,
                "the handler panicked".into(),
            );
            (CallOutcome::Panicked, 0)
        }
    }
}

/// The span a call runs in, and its trace: entered whenever its handler is polled. Without
/// a subscriber that wants the span, there is none, and nothing is entered.
#[derive(Clone)]
struct CallScope {
    span: Option<tracing::Span>,
    trace: TraceContext,
}

impl CallScope {
    fn new(
        service: &'static str,
        method: &str,
        seqid: i32,
        peer: &PeerCredentials,
        fds_in: usize,
        sent: Option<TraceContext>,
    ) -> Self {
        // Asked first: a disabled span still costs its fields (and, with `tracing`'s `log`
        // feature, a `log` record) on every call.
        let span = tracing::span_enabled!(tracing::Level::INFO)
            .then(|| {
                tracing::info_span!(
                    "call",
                    service,
                    method,
                    seqid,
                    peer_pid = peer.pid(),
                    peer_uid = peer.uid(),
                    fds_in,
                    fds_out = tracing::field::Empty,
                    trace_id = tracing::field::Empty,
                )
            })
            .filter(|span| !span.is_disabled());
        let trace = trace::incoming(span.as_ref(), sent);
        if let Some(span) = &span {
            span.record(
                "trace_id",
                tracing::field::display(TraceId(trace.trace_id())),
            );
        }
        CallScope { span, trace }
    }

    fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _span = self.span.as_ref().map(tracing::Span::enter);
        let _trace = trace::enter(self.trace);
        f()
    }

    fn wrap<F: Future>(self, fut: F) -> InCall<F> {
        InCall { scope: self, fut }
    }
}

pin_project_lite::pin_project! {
    /// A future polled inside its call's [`CallScope`].
    struct InCall<F> {
        scope: CallScope,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for InCall<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _span = this.scope.span.as_ref().map(tracing::Span::enter);
        let _trace = trace::enter(this.scope.trace);
        this.fut.poll(cx)
    }
}
