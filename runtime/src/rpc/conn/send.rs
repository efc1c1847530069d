//! What this side sends, all through [`Conn::push`]: calls and oneways (the client), replies
//! and exceptions (the server), stream items and the control frames of both sides.

use std::task::{Poll, Waker};

use super::call_headers::CallHeaders;
use super::stream_frame::{HEADER_CREDIT, HEADER_STREAM, StreamFrame};
use super::{Conn, Ending, MAX_KEPT_SCRATCH, RouteId};
use crate::codec::error::EncodeError;
use crate::codec::{Encoded, Encoder, MessageType};
use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};
use crate::rpc::deadline::Deadline;
use crate::rpc::error::{ConnectionError, RpcError};
use crate::rpc::method_name::MethodName;
use crate::rpc::trace::TraceContext;
use crate::transport::SendQueue;

/// A call started by [`Conn::start_call`], with the stream ends registered for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub(crate) seqid: i32,
    /// The inbox of the stream the reply opens.
    pub(crate) inbox: Option<RouteId>,
    /// The outbox of the call's sink.
    pub(crate) outbox: Option<RouteId>,
    /// Where the call's frame sits in the send queue's stream (start and end offsets): while
    /// none of it is written, a call given up is taken out of the queue.
    pub(crate) frame: (u64, u64),
    /// The call sent a deadline (`client_timeout`): the server drops it by itself.
    pub(crate) timed: bool,
    /// That deadline: once it has passed, the server has dropped (or is dropping) the call
    /// on its own, so a `cancel` for it would only sit in the queue.
    pub(crate) deadline: Option<Deadline>,
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
    /// When the caller gives up on the reply: its timeout is sent as `client_timeout` (not
    /// on a oneway).
    pub(crate) deadline: Option<Deadline>,
    /// The connection fails the call when `deadline` passes ([`Conn::handle_timeout`]): the
    /// async client, whose one timer serves every call. A driver that waits with deadlines of
    /// its own (the blocking client) leaves it `false`.
    pub(crate) expire_here: bool,
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
            deadline: None,
            expire_here: false,
            trace: None,
        }
    }
}

impl Conn {
    // ------------------------------------------------------------------ the send queue

    /// The queue the driver writes to the socket.
    pub(crate) fn send_queue(&mut self) -> &mut SendQueue {
        &mut self.send
    }

    /// Bytes and fds queued and not yet written.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        (self.send.pending_bytes(), self.send.pending_fds())
    }

    /// Bytes written to the socket since the connection began: it only grows, and grows only
    /// when the socket took more, which is how a driver tells a peer that reads from one
    /// that does not (the backlog alone can stay level while both sides work: the writer
    /// drains it as fast as a producer refills it).
    pub(crate) fn written_total(&self) -> u64 {
        self.send.written()
    }

    /// Queues one frame. Every frame this side sends goes through here.
    /// The message is left empty, its inline buffer kept for reuse.
    pub(super) fn push(
        &mut self,
        seqid: i32,
        message: &mut Encoded,
        headers: &[(&str, &str)],
    ) -> Result<(), ConnectionError> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        self.send
            .push_encoded(seqid, message, headers)
            .map_err(|e| ConnectionError::new(e.into()))?;
        self.output.frame_queued();
        Ok(())
    }

    /// Encodes a message (its header, then what `body` writes) into the scratch buffer and
    /// queues its frame.
    pub(super) fn push_message(
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
        let mut message = enc.into_encoded();
        let pushed = match encoded {
            Ok(()) => self
                .push(seqid, &mut message, headers)
                .map_err(RpcError::Connection),
            Err(e) => Err(RpcError::Encode(e)),
        };
        let mut payload = message.inline;
        payload.clear();
        if payload.capacity() <= MAX_KEPT_SCRATCH {
            self.scratch = payload;
        }
        pushed
    }

    /// Queues a stream control or end frame (an empty struct) for `seqid`.
    pub(super) fn push_control(
        &mut self,
        seqid: i32,
        method: &str,
        kind: StreamFrame,
        credit: Option<u32>,
    ) {
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
        let mut reply = reply.into_encoded();
        self.push(seqid, &mut reply, &[])?;
        crate::codec::buffers::give(reply.inline);
        Ok(())
    }

    // ------------------------------------------------------------------ calls

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
        method: &MethodName,
        call: &CallOptions,
        args: impl FnOnce(&mut Encoder) -> Result<(), EncodeError>,
    ) -> Result<Started, RpcError> {
        if let Some(dead) = &self.dead {
            return Err(RpcError::Connection(dead.clone()));
        }
        let routes = &self.routes;
        let calls = self.calls.get_or_insert_with(Box::default);
        let seqid = calls.next_seqid(|id| routes.contains(id));
        let waits = call.ty == MessageType::Call;
        let expires = call.deadline.filter(|_| waits && call.expire_here);
        if waits {
            calls.wait(seqid, method.clone(), expires);
            if let Some(d) = expires {
                self.output.deadline_added(d.at());
            }
        }
        let inbox = call
            .stream
            .then(|| self.routes.open_inbox(seqid, method.clone(), self.window));
        let outbox = call
            .sink
            .then(|| self.routes.open_outbox(seqid, 0, method.clone()));
        let mut buffers = CallHeaders::new();
        let (headers, n) = buffers.headers(
            call.stream.then_some(self.window),
            call.deadline.map(|d| d.timeout()).filter(|_| waits),
            call.trace.as_ref(),
        );
        let start = self.send.queued();
        let mut started = Started {
            seqid,
            inbox,
            outbox,
            frame: (start, start),
            // The server learns the deadline with the call (`client_timeout`), whichever
            // side enforces it here.
            timed: waits && call.deadline.is_some(),
            deadline: call.deadline.filter(|_| waits),
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

    /// Takes the frame of `call`, none of which is written yet, out of the send queue with its
    /// fds, together with the unsent calls given up before it, as long as they are last in
    /// the queue (only the tail can go: see `remove_unsent`); otherwise it is remembered and
    /// goes once what follows it goes. Returns whether it is out of the queue now.
    pub(crate) fn take_back_unsent(&mut self, call: &Started) -> bool {
        if call.frame.0 < self.send.written() {
            return false;
        }
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
        self.send.queued() <= call.frame.0
    }

    /// Forgets a call whose caller gave up: its reply, if it comes, is dropped with its fds;
    /// a stream it opened is cancelled and a sink it was sending is aborted. If `sent` and
    /// no reply came yet, the server is told with `cancel` (once, also when a stream is
    /// cancelled), so that it drops the handler.
    ///
    /// A call none of whose frame was written yet (a peer that stopped reading, a full
    /// socket) is taken out of the send queue with its fds, and the server never sees it.
    /// (Not a call with a sink: its items may be queued behind it.)
    pub(crate) fn forget_call(&mut self, call: &Started, method: &str, sent: bool) {
        let waiting = self.calls.as_mut().is_some_and(|c| c.forget(call.seqid));
        if waiting && sent && call.outbox.is_none() && call.frame.0 >= self.send.written() {
            if self.take_back_unsent(call) {
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
        // A call given up at its deadline while frames wait unwritten gets no `cancel`: it
        // could only go after them, when the server (which learnt the deadline with the
        // call) has dropped the call itself, and queued behind calls given up unsent it would
        // keep them from being taken back. With nothing waiting, it goes at once.
        let expired = call
            .deadline
            .is_some_and(|d| d.passed(std::time::Instant::now()));
        let backlog = !self.send.is_empty();
        if waiting && sent && !cancelled && !(expired && backlog) {
            self.push_control(call.seqid, method, StreamFrame::Cancel, None);
        }
        if let Some(id) = call.outbox {
            self.end_outbox(call.seqid, id, method, Ending::gave_up());
        }
    }

    // ------------------------------------------------------------------ streams

    /// Registers the stream call `seqid` (of `method`)'s reply opens on the server, with the
    /// `credit` the call granted.
    pub(crate) fn open_stream(&mut self, seqid: i32, credit: u32, method: &'static str) -> RouteId {
        self.routes.open_outbox(seqid, credit, method.into())
    }

    /// The server is shutting down: every stream this side produces ends now with an `abort`
    /// whose cause says so (its consumer learns why before the connection closes), and its
    /// producer stops.
    pub(crate) fn abort_streams_for_shutdown(&mut self, wake: &mut Vec<Waker>) {
        let why = ApplicationError::new(
            ApplicationErrorKind::Unknown,
            "the server is shutting down: the stream ends here",
        );
        let ty = self.stream_type();
        for (seqid, method) in self.routes.close_all_outboxes(wake) {
            let kind = [(HEADER_STREAM, StreamFrame::Abort.as_str())];
            // An exception and a name we were given always encode; a dead connection sends
            // nothing.
            let _ = self.push_message(method.as_str(), ty, seqid, &kind, |enc| why.encode(enc));
        }
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
        let mut item = item.into_encoded();
        self.push(seqid, &mut item, &[(HEADER_STREAM, kind.as_str())])?;
        crate::codec::buffers::give(item.inline);
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
    use crate::rpc::conn::Role;
    use crate::settings::Settings;

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
