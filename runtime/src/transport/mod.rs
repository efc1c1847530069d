//! Moving frames and their fds over a `SOCK_STREAM` Unix socket.
//!
//! Organization:
//! - `unix`: the `sendmsg`/`recvmsg` calls with `SCM_RIGHTS`.
//! - [`SendQueue`]: frames waiting to be written, and the fds they own; one `sendmsg`
//!   carries many frames and their fds, never an fd after the frame that owns it.
//! - [`RecvQueue`]: bytes and fds received, cut into frames; each complete frame takes its
//!   fds from the head of the fd FIFO after checking its count and sequence.
//! - [`Limits`]: the bounds both apply.

mod limits;
mod recv_queue;
mod send_queue;
pub(crate) mod unix;

pub use limits::Limits;
pub use recv_queue::{Fill, ReceivedFrame, RecvQueue};
pub use send_queue::SendQueue;
pub use unix::SCM_MAX_FD;
