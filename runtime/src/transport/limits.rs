//! Bounds on what one connection may make its peer hold.

/// Limits a connection enforces on what it receives. Every one has a safe default.
///
/// | limit | default | anchors |
/// |---|---|---|
/// | `max_frame_size` | 16 MiB | sd-bus 64 MiB per message |
/// | `max_fds_per_frame` | 1024 | Linux 253 per `sendmsg`; dbus 16 per message; sd-bus 1024 |
/// | `max_queued_fds` | 2048 | dbus 64 per connection |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame accepted, in bytes, including the 4-byte length.
    pub max_frame_size: usize,
    /// Most fds one frame may own (`fdrpc-fds`).
    pub max_fds_per_frame: usize,
    /// Most fds received but not yet claimed by a complete frame. Never less than
    /// `max_fds_per_frame + 253`: one `sendmsg` may carry the fds of several frames.
    pub max_queued_fds: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            max_fds_per_frame: 1024,
            max_queued_fds: 2048,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Limits::max_fds_per_frame`].
    pub fn max_fds_per_frame(mut self, fds: usize) -> Self {
        self.max_fds_per_frame = fds;
        self
    }

    /// Sets [`Limits::max_queued_fds`].
    pub fn max_queued_fds(mut self, fds: usize) -> Self {
        self.max_queued_fds = fds;
        self
    }
}
