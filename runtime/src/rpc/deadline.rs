//! [`Deadline`]: when something waited for gives up, and the timeout it reports then. The one
//! shape of time in the connection core and its drivers: a call's deadline on the client (in
//! the core's pending calls, in a blocking wait, in the wait for room in the send queue) and on
//! the server (the caller's `client_timeout`, counted from the call's arrival).

use std::time::{Duration, Instant};

use crate::rpc::error::RpcError;

/// An instant and the timeout it was set from (what [`RpcError::Timeout`] reports). `None`
/// where a `Option<Deadline>` stands means no deadline: as long as it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// `timeout` after `start`.
    #[inline]
    pub(crate) fn from(start: Instant, timeout: Duration) -> Self {
        Deadline {
            at: start + timeout,
            timeout,
        }
    }

    /// `timeout` from now.
    #[inline]
    pub(crate) fn after(timeout: Duration) -> Self {
        Self::from(Instant::now(), timeout)
    }

    /// `timeout` from now, if there is one.
    #[inline]
    pub(crate) fn after_opt(timeout: Option<Duration>) -> Option<Self> {
        timeout.map(Self::after)
    }

    /// Now: what can be done without waiting is done, nothing more.
    pub(crate) fn now() -> Self {
        Self::after(Duration::ZERO)
    }

    /// When it passes.
    #[inline]
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// The timeout it was set from.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether it has passed by `now`.
    #[inline]
    pub(crate) fn passed(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// What a wait that reached it fails with.
    pub(crate) fn error(&self) -> RpcError {
        RpcError::Timeout(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_passes_at_its_instant_and_reports_its_timeout() {
        let t0 = Instant::now();
        let d = Deadline::from(t0, Duration::from_millis(30));
        assert_eq!(d.at(), t0 + Duration::from_millis(30));
        assert!(!d.passed(t0 + Duration::from_millis(29)));
        assert!(d.passed(t0 + Duration::from_millis(30)));
        assert!(matches!(d.error(), RpcError::Timeout(t) if t == Duration::from_millis(30)));
        assert!(Deadline::now().passed(Instant::now()));
        assert_eq!(Deadline::after_opt(None), None);
    }
}
