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
/// [`BlockingClient`](crate::BlockingClient) and [`Channel`](crate::Channel); each uses the
/// settings that apply to it.
///
/// | setting | default | applies to | when it is reached |
/// |---|---|---|---|
/// | [`max_frame_size`](Settings::max_frame_size) | 16 MiB | every receiver | the frame is refused and the connection closed (sd-bus allows 64 MiB a message) |
/// | [`max_fds_per_frame`](Settings::max_fds_per_frame) | 1024 | every receiver | the connection is closed (Linux carries 253 a `sendmsg`; dbus 16 a message; sd-bus 1024) |
/// | [`max_queued_fds`](Settings::max_queued_fds) | 2048, and never less than `max_fds_per_frame + 253` | every receiver | fds received and not yet claimed by a whole frame: the connection is closed (dbus: 64 a connection) |
/// | [`stall_timeout`](Settings::stall_timeout) | 10 s | server, both clients | a frame left half-sent, fds left unclaimed, or frames left unread by the peer that long: the connection is closed |
/// | [`max_backlog`](Settings::max_backlog) | 4 MiB and 1024 fds | server, async client | frames queued and not yet written: the server stops reading calls, stream producers wait |
/// | [`max_in_flight`](Settings::max_in_flight) | 256 | server | calls (and open streams) running on one connection: reading pauses |
/// | [`stream_window`](Settings::stream_window) | 64 ([`DEFAULT_WINDOW`]) | server, both clients | items a consumer lets a stream or sink have in flight; more is a protocol violation |
/// | [`max_connections`](Settings::max_connections) | 1024 | server | further connections are closed at once |
/// | [`call_timeout`](Settings::call_timeout) | 25 s (D-Bus's default reply timeout) | both clients | the call fails with `RpcError::Timeout` and the server is told to drop its handler; the server also learns it with the call and drops the handler itself |
/// | [`fd_budget`](Settings::fd_budget) | half the soft `RLIMIT_NOFILE`, from 512 to 65536 | server | fds received and not yet released, over all connections: reading pauses |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let settings = fdrpc::Settings::default()
///     .stall_timeout(Duration::from_secs(3))
///     .max_fds_per_frame(64);
/// assert_eq!(settings.max_queued_fds, 2048);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Largest frame accepted, in bytes, including its 4-byte length.
    pub max_frame_size: usize,
    /// Most fds one frame may own (`fdrpc-fds`).
    pub max_fds_per_frame: usize,
    /// Most fds received but not yet claimed by a complete frame. Never less than
    /// `max_fds_per_frame + 253`: one `sendmsg` may carry the fds of several frames.
    pub max_queued_fds: usize,
    /// How long a frame may stay half-received, received fds unclaimed, or queued frames
    /// unread by the peer, before the connection is closed.
    pub stall_timeout: Duration,
    /// Bytes of frames queued and not yet written beyond which the server stops reading and
    /// stream producers wait.
    pub max_backlog_bytes: usize,
    /// Fds of frames queued and not yet written beyond which the server stops reading and
    /// stream producers wait.
    pub max_backlog_fds: usize,
    /// Calls (and open streams) one server connection runs at once.
    pub max_in_flight: usize,
    /// Items of a stream or sink a consumer lets be in flight.
    pub stream_window: u32,
    /// Connections a server serves at once.
    pub max_connections: usize,
    /// Fds a server holds over all connections: received and waiting for their frame, or
    /// owned by calls whose handlers have not finished.
    pub fd_budget: usize,
    /// How long a client waits for a reply (`None`: as long as it takes). A client handle can
    /// change it for its calls (`with_timeout`, `without_timeout`).
    pub call_timeout: Option<Duration>,
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

impl Settings {
    /// Sets [`Settings::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Settings::max_fds_per_frame`].
    pub fn max_fds_per_frame(mut self, fds: usize) -> Self {
        self.max_fds_per_frame = fds;
        self
    }

    /// Sets [`Settings::max_queued_fds`].
    pub fn max_queued_fds(mut self, fds: usize) -> Self {
        self.max_queued_fds = fds;
        self
    }

    /// Sets [`Settings::stall_timeout`].
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Sets [`Settings::max_backlog_bytes`] and [`Settings::max_backlog_fds`].
    pub fn max_backlog(mut self, bytes: usize, fds: usize) -> Self {
        self.max_backlog_bytes = bytes;
        self.max_backlog_fds = fds;
        self
    }

    /// Sets [`Settings::max_in_flight`] (at least 1).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// Sets [`Settings::stream_window`]. The protocol grants at least 1 and at most 65536
    /// items at a time; a window outside that range is taken as the nearest bound.
    pub fn stream_window(mut self, items: u32) -> Self {
        self.stream_window = items;
        self
    }

    /// Sets [`Settings::max_connections`] (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`Settings::call_timeout`] (`None`: calls wait as long as it takes).
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets [`Settings::fd_budget`]. A server takes at least 506 (two `sendmsg`s' worth of
    /// fds), and lets a frame carry at most half its budget.
    pub fn fd_budget(mut self, fds: usize) -> Self {
        self.fd_budget = fds;
        self
    }
}

/// The default of [`Settings::call_timeout`]: D-Bus's default reply timeout.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(25);

/// Half the soft `RLIMIT_NOFILE`, between 512 and 65536.
fn default_fd_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    usize::try_from(soft / 2)
        .unwrap_or(usize::MAX)
        .clamp(512, 65536)
}
