//! [`Settings`]: every limit and timeout of a connection, in one type.

use std::time::Duration;

/// The window of stream items a consumer grants when nothing else is said: the default of
/// [`Settings::stream_window`]. (A call that opens a stream without `fdrpc-credit`, from a peer
/// that does not know it, grants the protocol's 16.)
///
/// 64 rather than 16: with a grant every half window, a consumer and a producer on one CPU
/// switch to each other every 32 items instead of every 8, which took streams from 0.42x to
/// 0.63x the one-way limit (BENCHMARKS.md). A consumer holds at most this many items, so for
/// large items set a smaller window.
pub const DEFAULT_WINDOW: u32 = 64;

/// Every limit and timeout of fdrpc connections, each with a safe default. One type serves the
/// [`Server`](crate::Server), the async [`Client`](crate::Client), the
/// [`BlockingClient`](crate::BlockingClient) and [`Channel`](crate::Channel), each taking it the
/// same way (`Settings` or `&Settings`); each uses the settings that apply to it.
///
/// Every setting is set through its method, which keeps it in its range: a value out of range
/// is taken as the nearest bound in the table (no setting can make a server that never reads,
/// or refuses every connection). The fields are not public, so nothing bypasses the bounds;
/// `{:?}` shows the values in force.
///
/// | setting | default | range | applies to | when it is reached |
/// |---|---|---|---|---|
/// | [`max_frame_size`](Settings::max_frame_size) | 16 MiB | at least 4 KiB | every receiver | the frame is refused and the connection closed (sd-bus allows 64 MiB a message) |
/// | [`max_fds_per_frame`](Settings::max_fds_per_frame) | 1024 | any; a server takes at most half its `fd_budget` | every receiver | the connection is closed (Linux carries 253 a `sendmsg`; dbus 16 a message; sd-bus 1024) |
/// | [`max_queued_fds`](Settings::max_queued_fds) | 2048 | at least `max_fds_per_frame + 253` | every receiver | fds received and not yet claimed by a whole frame: the connection is closed (dbus: 64 a connection) |
/// | [`stall_timeout`](Settings::stall_timeout) | 10 s | at least 10 ms | server, both clients | a frame left half-sent, fds left unclaimed, or frames left unread by the peer that long: the connection is closed |
/// | [`max_backlog`](Settings::max_backlog) | 4 MiB and 1024 fds | any (0: one frame at a time) | server, both clients | frames queued and not yet written: the server stops reading calls, stream producers wait, new calls wait (and time out having queued nothing) |
/// | [`max_in_flight`](Settings::max_in_flight) | 256 | at least 1 | server | calls (and open streams) running on one connection: reading pauses |
/// | [`stream_window`](Settings::stream_window) | 64 ([`DEFAULT_WINDOW`]) | 1 to 65536 | server, both clients | items a consumer lets a stream or sink have in flight; more is a protocol violation |
/// | [`max_connections`](Settings::max_connections) | 1024 | at least 1 | server | further connections are closed at once |
/// | [`call_timeout`](Settings::call_timeout) | 25 s (D-Bus's default reply timeout) | any, or none | both clients | the call fails with `RpcError::Timeout` and the server is told to drop its handler; the server also learns it with the call and drops the handler itself |
/// | [`fd_budget`](Settings::fd_budget) | half the soft `RLIMIT_NOFILE`, from 512 to 65536 | at least 506 (two `sendmsg`s' worth) | server | fds received and not yet released, over all connections: reading pauses |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let settings = fdrpc::Settings::default()
///     .stall_timeout(Duration::from_secs(3))
///     .max_fds_per_frame(64)
///     .max_in_flight(0); // out of range: taken as 1
/// let shown = format!("{settings:?}");
/// assert!(shown.contains("max_in_flight: 1"), "{shown}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Largest frame accepted, in bytes, including its 4-byte length.
    pub(crate) max_frame_size: usize,
    /// Most fds one frame may own (`fdrpc-fds`).
    max_fds_per_frame: usize,
    /// Most fds received but not yet claimed by a complete frame (see
    /// [`Settings::queued_fds_limit`]).
    max_queued_fds: usize,
    /// How long a frame may stay half-received, received fds unclaimed, or queued frames
    /// unread by the peer, before the connection is closed.
    pub(crate) stall_timeout: Duration,
    /// Bytes of frames queued and not yet written beyond which the server stops reading and
    /// stream producers wait.
    pub(crate) max_backlog_bytes: usize,
    /// Fds of frames queued and not yet written beyond which the server stops reading and
    /// stream producers wait.
    pub(crate) max_backlog_fds: usize,
    /// Calls (and open streams) one server connection runs at once.
    pub(crate) max_in_flight: usize,
    /// Items of a stream or sink a consumer lets be in flight.
    pub(crate) stream_window: u32,
    /// Connections a server serves at once.
    pub(crate) max_connections: usize,
    /// Fds a server holds over all connections: received and waiting for their frame, or
    /// owned by calls whose handlers have not finished.
    pub(crate) fd_budget: usize,
    /// How long a client waits for a reply (`None`: as long as it takes). A client handle can
    /// change it for its calls (`with_timeout`, `without_timeout`).
    pub(crate) call_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_frame_size: 16 << 20,
            max_fds_per_frame: 1024,
            max_queued_fds: 2048,
            stall_timeout: Duration::from_secs(10),
            max_backlog_bytes: 4 << 20,
            max_backlog_fds: 1024,
            max_in_flight: 256,
            stream_window: DEFAULT_WINDOW,
            max_connections: 1024,
            fd_budget: default_fd_budget(),
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
        }
    }
}

/// The largest [`Settings::stream_window`]: the most items one `fdrpc-credit` may grant
/// (docs/PROTOCOL.md).
pub(crate) const MAX_STREAM_WINDOW: u32 = 1 << 16;

/// The smallest [`Settings::max_frame_size`]: a frame header, a call header and room for
/// small arguments. Below it every frame of a real call would be refused.
pub(crate) const MIN_FRAME_SIZE: usize = 4096;

/// The shortest [`Settings::stall_timeout`]: below it a peer on a busy machine counts as
/// stalled between two reads.
pub(crate) const MIN_STALL_TIMEOUT: Duration = Duration::from_millis(10);

/// The smallest [`Settings::fd_budget`]: two `sendmsg`s' worth of fds, so that a read always
/// has room for what one `recvmsg` can bring.
pub(crate) const MIN_FD_BUDGET: usize = 2 * crate::transport::SCM_MAX_FD;

impl Settings {
    /// Sets the largest frame accepted, in bytes, including its 4-byte length (at least
    /// 4 KiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes.max(MIN_FRAME_SIZE);
        self
    }

    /// Sets the most fds one frame may own (`fdrpc-fds`); 0 refuses every frame that carries
    /// one. A server takes at most half its [`fd_budget`](Settings::fd_budget), so that a
    /// frame it accepts can always be received whole.
    pub fn max_fds_per_frame(mut self, fds: usize) -> Self {
        self.max_fds_per_frame = fds;
        self
    }

    /// Sets the most fds received but not yet claimed by a complete frame. Never less than
    /// `max_fds_per_frame + 253`: one `sendmsg` may carry the fds of several frames.
    pub fn max_queued_fds(mut self, fds: usize) -> Self {
        self.max_queued_fds = fds;
        self
    }

    /// Sets how long a frame may stay half-received, received fds unclaimed, or queued frames
    /// unread by the peer, before the connection is closed (at least 10 ms).
    ///
    /// A peer counts as reading while the socket takes more from this side or the kernel
    /// frees what the peer has read, which it does a whole buffer of one write at a time (up
    /// to about 100 KiB on Linux): a peer must read at least that much per stall timeout,
    /// 10 KiB a second at the default.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout.max(MIN_STALL_TIMEOUT);
        self
    }

    /// Sets the bytes and fds of frames queued and not yet written beyond which the server
    /// stops reading calls, stream producers wait, and both clients' calls wait for room
    /// (0: one frame at a time).
    pub fn max_backlog(mut self, bytes: usize, fds: usize) -> Self {
        self.max_backlog_bytes = bytes;
        self.max_backlog_fds = fds;
        self
    }

    /// Sets the calls (and open streams) one server connection runs at once (at least 1).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// Sets the items of a stream or sink a consumer lets be in flight. The protocol grants
    /// at least 1 and at most 65536 items at a time; a window outside that range is taken as
    /// the nearest bound.
    pub fn stream_window(mut self, items: u32) -> Self {
        self.stream_window = items.clamp(1, MAX_STREAM_WINDOW);
        self
    }

    /// Sets the connections a server serves at once (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets how long a client waits for a reply (`None`: calls wait as long as it takes).
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets the fds a server holds over all connections (at least 506: two `sendmsg`s' worth
    /// of fds). A server lets a frame carry at most half its budget.
    pub fn fd_budget(mut self, fds: usize) -> Self {
        self.fd_budget = fds.max(MIN_FD_BUDGET);
        self
    }

    /// The most fds one frame may own, for a receiver of `role`: a server's frames carry at
    /// most half its fd budget (a larger one could never be received whole: it is refused at
    /// once, not left to stall).
    pub(crate) fn fds_per_frame_limit(&self, server: bool) -> usize {
        if server {
            self.max_fds_per_frame.min(self.fd_budget / 2)
        } else {
            self.max_fds_per_frame
        }
    }

    /// The most fds received and not yet claimed by a whole frame, with `per_frame` the
    /// receiver's [`Settings::fds_per_frame_limit`]: never less than a frame's and one more
    /// `sendmsg`'s.
    pub(crate) fn queued_fds_limit(&self, per_frame: usize) -> usize {
        self.max_queued_fds
            .max(per_frame.saturating_add(crate::transport::SCM_MAX_FD))
    }
}

/// The default of [`Settings::call_timeout`]: D-Bus's default reply timeout.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(25);

/// Half the soft `RLIMIT_NOFILE`, between 512 and 65536.
fn default_fd_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    fd_budget_for(limit.current)
}

/// The default fd budget under the soft `RLIMIT_NOFILE` `soft` (`None`: unlimited).
fn fd_budget_for(soft: Option<u64>) -> usize {
    usize::try_from(soft.unwrap_or(u64::MAX) / 2)
        .unwrap_or(usize::MAX)
        .clamp(512, 65536)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Half the soft fd limit, between 512 and 65536: a process allowed 1024 fds (the usual
    /// soft limit) budgets 512 for peers' fds, never all of them.
    #[test]
    fn the_default_fd_budget_is_half_the_soft_limit_within_bounds() {
        assert_eq!(fd_budget_for(Some(1024)), 512);
        assert_eq!(fd_budget_for(Some(4000)), 2000);
        assert_eq!(fd_budget_for(Some(100)), 512);
        assert_eq!(fd_budget_for(Some(1 << 20)), 65536);
        assert_eq!(fd_budget_for(None), 65536);
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        assert_eq!(Settings::default().fd_budget, fd_budget_for(soft));
    }

    #[test]
    fn out_of_range_values_are_taken_as_the_nearest_bound() {
        let d = Settings::default;
        // Each clamp is exact: the bound itself is kept, one past it is not the bound.
        assert_eq!(d().max_in_flight(0), d().max_in_flight(1));
        assert_ne!(d().max_in_flight(2), d().max_in_flight(1));
        assert_eq!(d().max_connections(0), d().max_connections(1));
        assert_ne!(d().max_connections(2), d().max_connections(1));
        assert_eq!(d().fd_budget(0), d().fd_budget(MIN_FD_BUDGET));
        assert_eq!(d().fd_budget(MIN_FD_BUDGET - 1), d().fd_budget(506));
        assert_ne!(d().fd_budget(507), d().fd_budget(506));
        assert_eq!(d().stream_window(0), d().stream_window(1));
        assert_eq!(d().stream_window(u32::MAX), d().stream_window(1 << 16));
        assert_ne!(d().stream_window((1 << 16) - 1), d().stream_window(1 << 16));
        assert_eq!(
            d().stall_timeout(Duration::ZERO),
            d().stall_timeout(MIN_STALL_TIMEOUT)
        );
        assert_ne!(
            d().stall_timeout(MIN_STALL_TIMEOUT + Duration::from_millis(1)),
            d().stall_timeout(MIN_STALL_TIMEOUT)
        );
        assert_eq!(d().max_frame_size(0), d().max_frame_size(MIN_FRAME_SIZE));
        assert_ne!(
            d().max_frame_size(MIN_FRAME_SIZE + 1),
            d().max_frame_size(MIN_FRAME_SIZE)
        );
        // What every default is, in range already.
        let s = d();
        assert_eq!(s.max_in_flight, 256);
        assert_eq!(s.stream_window, DEFAULT_WINDOW);
        assert!(s.fd_budget >= MIN_FD_BUDGET);
    }

    #[test]
    fn a_servers_frames_carry_at_most_half_its_fd_budget() {
        let s = Settings::default().fd_budget(600).max_fds_per_frame(1024);
        assert_eq!(s.fds_per_frame_limit(true), 300);
        assert_eq!(
            s.fds_per_frame_limit(false),
            1024,
            "a client has no fd budget"
        );
        let s = Settings::default().fd_budget(0).max_fds_per_frame(1024);
        assert_eq!(s.fds_per_frame_limit(true), MIN_FD_BUDGET / 2);
        let s = Settings::default().fd_budget(600).max_fds_per_frame(8);
        assert_eq!(s.fds_per_frame_limit(true), 8);
    }

    #[test]
    fn the_queued_fds_bound_holds_a_whole_frame_and_one_more_sendmsg() {
        let s = Settings::default().max_queued_fds(8).max_fds_per_frame(8);
        assert_eq!(s.queued_fds_limit(8), 8 + crate::transport::SCM_MAX_FD);
        let s = Settings::default().max_queued_fds(5000);
        assert_eq!(s.queued_fds_limit(1024), 5000);
    }
}
