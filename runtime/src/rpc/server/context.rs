//! [`Context`]: what a handler may know about a call besides its arguments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::peer::PeerCredentials;
use crate::rpc::trace::TraceContext;

/// The call's context, passed to methods that declare a `cx: &fdrpc::Context` parameter (it is
/// not on the wire), and to [`CallHook`](crate::CallHook)s.
#[derive(Debug, Clone)]
pub struct Context {
    peer: Arc<PeerCredentials>,
    service: &'static str,
    method: &'static str,
    seqid: i32,
    deadline: Option<Instant>,
    trace: TraceContext,
}

impl Context {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new(
        peer: Arc<PeerCredentials>,
        service: &'static str,
        method: &'static str,
        seqid: i32,
        deadline: Option<Instant>,
        trace: TraceContext,
    ) -> Self {
        Context {
            peer,
            service,
            method,
            seqid,
            deadline,
            trace,
        }
    }

    /// The credentials of the calling process (`SO_PEERCRED` when it connected).
    pub fn peer(&self) -> &PeerCredentials {
        &self.peer
    }

    /// The service's Thrift name.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The method's wire name. To check which method a call is, prefer the enum the service
    /// macro generates (`{Trait}Method::of(cx)`): it follows a rename.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The call's sequence id on its connection.
    pub fn seqid(&self) -> i32 {
        self.seqid
    }

    /// When the caller stops waiting for the reply: the `client_timeout` it sent, counted from
    /// when the call arrived. `None` if it sent none (stock Thrift clients do not). The server
    /// drops the handler once it passes.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How long until [`Context::deadline`]: zero once it passed, `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The trace this call belongs to: the handler's own span of the trace the caller sent
    /// (`traceparent`), or of a trace started here if it sent none. It is also
    /// [`TraceContext::current`] while the handler runs, so calls the handler makes carry it
    /// on.
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }
}
