//! [`Context`]: what a handler may know about a call besides its arguments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::host::{Caller, ServeEndpointError};
use super::peer::PeerCredentials;
use crate::rpc::endpoint::{ServedBy, ServerEnd};
use crate::rpc::trace::TraceContext;

/// The call's context, passed to methods that declare a `cx: &fdrpc::Context` parameter (it is
/// not on the wire), and to [`CallHook`](crate::CallHook)s.
#[derive(Debug, Clone)]
pub struct Context {
    caller: Arc<Caller>,
    service: &'static str,
    method: &'static str,
    seqid: i32,
    deadline: Option<Instant>,
    trace: TraceContext,
}

impl Context {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new(
        caller: Arc<Caller>,
        service: &'static str,
        method: &'static str,
        seqid: i32,
        deadline: Option<Instant>,
        trace: TraceContext,
    ) -> Self {
        Context {
            caller,
            service,
            method,
            seqid,
            deadline,
            trace,
        }
    }

    /// The credentials of the calling process (`SO_PEERCRED` when it connected).
    pub fn peer(&self) -> &PeerCredentials {
        &self.caller.peer
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

    /// Serves `implementation` on `end` as one more connection of the server that runs this
    /// call: under its settings and hooks, counted in its
    /// [`max_connections`](crate::Settings::max_connections), and ended by its shutdown
    /// (gracefully: calls in flight finish) or when it is dropped. Returns at once; the
    /// endpoint is served until its peer closes it. The server's authorization hook is not
    /// asked: the server made or received the end itself.
    ///
    /// This is how a handler hands out a session: make a pair with
    /// [`endpoints`](crate::endpoints), serve the server end here, return the client end.
    ///
    /// # Errors
    ///
    /// The server has no room for another connection or is shutting down; `end` is closed
    /// then, and its peer sees the connection end.
    pub fn serve<P: ServedBy<T>, T>(
        &self,
        end: ServerEnd<P>,
        implementation: T,
    ) -> Result<(), ServeEndpointError> {
        self.caller
            .host
            .adopt(end.into_stream(), P::server(implementation))
    }
}
