//! What a server's reader hands its calls to: the server's dispatch ([`CallSink`]), with
//! what each call holds while it runs ([`CallPermit`]). Shared by the tokio reader
//! (`server_reader`) and the polled one (`polled_server`).

use std::time::Instant;

use super::polled_limits::{BudgetShare, Slot};
use crate::rpc::conn::IncomingCall;
use crate::transport::{RecvQueue, SenderCredentials};

/// What a call holds while it runs: its slot among the calls in flight and, if its frame
/// carried fds, their share of the server-wide fd budget.
/// Held, never read: dropping it gives the slot and the fds' share back.
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum CallPermit {
    /// On tokio: its slot, and the frame's share of the fd budget.
    #[cfg(feature = "tokio")]
    Tokio(
        super::call_slots::CallSlot,
        Option<super::fd_budget::BudgetShare>,
    ),
    /// On a polled connection: its slot, and the frame's share of the fd budget.
    Polled(Slot, Option<BudgetShare>),
}

/// When a call arrived and, on a connection that asks for them (`SO_PASSCRED`: a served
/// endpoint), who sent it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    /// The read that completed the call (its deadline counts from then).
    pub(crate) at: Option<Instant>,
    pub(crate) sender: Option<SenderCredentials>,
}

impl Arrival {
    /// What `rq`'s last read says of the calls it completed.
    #[inline]
    pub(crate) fn of(rq: &RecvQueue) -> Arrival {
        Arrival {
            at: rq.last_read_at(),
            sender: rq.sender(),
        }
    }
}

/// Work the reader finishes before it reads the next frame.
pub(crate) type Inline = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where the reader hands the calls it reads: the server's dispatch and its handlers.
pub(crate) trait CallSink {
    /// Dispatches one call, giving a call's handler its first poll now, with `cx` (the
    /// reader's: a handler that waits continues in a task of its own, holding `permit`, and
    /// is polled there before it waits). Returns the work to finish before the next frame:
    /// a oneway handler, run to completion, in order.
    fn dispatch(
        &self,
        call: IncomingCall<'_>,
        arrived: Arrival,
        permit: CallPermit,
        cx: &mut std::task::Context<'_>,
    ) -> Option<Inline>;

    /// The caller of call `seqid` cancelled it: its handler is dropped now.
    fn stop(&self, seqid: i32);
}
