//! [`CallHook`]: what a server runs around every call: before it (which may refuse it, for
//! per-method authorization or rate limits) and after it (to record metrics).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::context::Context;
use crate::rpc::app_exception::{ApplicationError, ApplicationErrorKind};

/// Runs around every call a [`Server`](super::Server) dispatches (see [`Server::hook`]).
///
/// [`before`](CallHook::before) runs when the call arrives, before its arguments are decoded
/// and its handler runs; an `Err` refuses the call: the client gets that
/// `TApplicationException`, the handler never runs, and the fds the call carried are closed.
/// [`after`](CallHook::after) runs once the call has ended, however it ended. Both run on the
/// connection's tasks: they must be quick and must not block. A hook that panics refuses the
/// call (`before`) or is ignored (`after`); either is logged.
///
/// Calls of the reserved introspection method and of methods the service does not have are
/// answered without hooks.
///
/// [`Server::hook`]: super::Server::hook
///
/// # Examples
///
/// Only root may call `shutdown`. The check names the method through the enum
/// `#[fdrpc::service]` generates (`{Trait}Method`), not its wire name as a string: renaming
/// the method (`#[fdrpc(rename = "...")]`) cannot slip it past the hook.
///
/// ```
/// use fdrpc::{ApplicationError, ApplicationErrorKind, CallHook, Context};
///
/// #[fdrpc::service]
/// pub trait Admin {
///     #[fdrpc(rename = "halt")]
///     async fn shutdown(&self);
///     async fn status(&self) -> String;
/// }
///
/// struct RootOnlyShutdown;
///
/// impl CallHook for RootOnlyShutdown {
///     fn before(&self, call: &Context) -> Result<(), ApplicationError> {
///         if AdminMethod::of(call) == Some(AdminMethod::Shutdown) && call.peer().uid() != 0 {
///             return Err(ApplicationError::new(
///                 ApplicationErrorKind::Unknown,
///                 "permission denied: shutdown is for root",
///             ));
///         }
///         Ok(())
///     }
/// }
/// # let _ = fdrpc::Server::new().hook(RootOnlyShutdown);
/// ```
pub trait CallHook: Send + Sync + 'static {
    /// Decides whether `call` runs.
    ///
    /// # Errors
    ///
    /// The exception the client gets instead of a reply.
    fn before(&self, call: &Context) -> Result<(), ApplicationError> {
        let _ = call;
        Ok(())
    }

    /// Observes how `call` ended.
    fn after(&self, call: &Context, end: &CallEnd) {
        let _ = (call, end);
    }
}

impl<H: CallHook + ?Sized> CallHook for Arc<H> {
    fn before(&self, call: &Context) -> Result<(), ApplicationError> {
        (**self).before(call)
    }
    fn after(&self, call: &Context, end: &CallEnd) {
        (**self).after(call, end)
    }
}

/// How a call ended, for [`CallHook::after`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallEnd {
    /// What became of it.
    pub outcome: CallOutcome,
    /// From its arrival to its end: its reply queued (a stream method's call ends when its
    /// reply opens the stream), its oneway handler finished, or its handler dropped.
    pub duration: Duration,
    /// Fds the call carried.
    pub fds_in: usize,
    /// Fds its reply carried.
    pub fds_out: usize,
}

/// What became of a call; see [`CallEnd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The handler returned its result (a oneway handler: it finished).
    Ok,
    /// The handler returned the method's declared exception (for a stream method: refused to
    /// open the stream with it).
    ServiceError,
    /// A hook's [`CallHook::before`] refused the call with an exception of this kind.
    Refused(ApplicationErrorKind),
    /// The call could not run or be answered as the handler meant, and the client got a
    /// `TApplicationException` of this kind instead: `ProtocolError` for arguments that did
    /// not decode or a sink that broke off, `InternalError` for a reply that did not encode.
    Failed(ApplicationErrorKind),
    /// The handler panicked (the client got an `InternalError`).
    Panicked,
    /// The call's deadline passed: the handler was dropped and the client got a `Timeout`.
    TimedOut,
    /// The caller cancelled the call, or the connection or the server ended: the handler was
    /// dropped and nothing was sent.
    Cancelled,
}

/// The hooks of one server, in the order they were added.
pub(crate) type Hooks = Arc<[Arc<dyn CallHook>]>;

/// One call being observed by the hooks: reports [`CallOutcome::Cancelled`] if dropped
/// before [`Observed::end`].
pub(crate) struct Observed {
    hooks: Hooks,
    cx: Context,
    start: Instant,
    fds_in: usize,
    ended: bool,
}

impl Observed {
    /// Runs the `before` hooks on `cx` (a call that arrived at `start`): the observation of
    /// the call, or the exception that refuses it (the `after` hooks have seen the refusal
    /// then).
    pub(crate) fn before(
        hooks: &Hooks,
        cx: Context,
        start: Instant,
        fds_in: usize,
    ) -> Result<Observed, ApplicationError> {
        let observed = Observed {
            hooks: hooks.clone(),
            cx,
            start,
            fds_in,
            ended: false,
        };
        for hook in hooks.iter() {
            let verdict = catch_unwind(AssertUnwindSafe(|| hook.before(&observed.cx)))
                .unwrap_or_else(|_| {
                    tracing::error!(method = observed.cx.method(), "fdrpc: a call hook panicked");
                    Err(ApplicationError::new(
                        ApplicationErrorKind::InternalError,
                        "a call hook failed",
                    ))
                });
            if let Err(e) = verdict {
                observed.end(CallOutcome::Refused(e.kind), 0);
                return Err(e);
            }
        }
        Ok(observed)
    }

    /// The call ended with `outcome`, its reply carrying `fds_out` fds.
    pub(crate) fn end(mut self, outcome: CallOutcome, fds_out: usize) {
        self.report(outcome, fds_out);
    }

    fn report(&mut self, outcome: CallOutcome, fds_out: usize) {
        self.ended = true;
        let end = CallEnd {
            outcome,
            duration: self.start.elapsed(),
            fds_in: self.fds_in,
            fds_out,
        };
        for hook in self.hooks.iter() {
            if catch_unwind(AssertUnwindSafe(|| hook.after(&self.cx, &end))).is_err() {
                tracing::error!(method = self.cx.method(), "fdrpc: a call hook panicked");
            }
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if !self.ended {
            self.report(CallOutcome::Cancelled, 0);
        }
    }
}
