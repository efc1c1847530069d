//! Moving frames and their fds over a `SOCK_STREAM` Unix socket.
//!
//! Not public API (hidden from the docs, and free to change in any release): it is reachable
//! for fdrpc's own tests and fuzz targets, which speak raw frames to the library as a hostile
//! peer would. The queues are sans-IO state machines that take the socket as an argument.
//!
//! Organization:
//! - [`address`]: where a socket is: a path, or an abstract `@name`.
//! - [`frame`]: THeader frames with fdrpc's `fdrpc-fds` and `fdrpc-fd-seq` info headers.
//! - `unix`: the `sendmsg`/`recvmsg` calls with `SCM_RIGHTS`.
//! - [`SendQueue`]: frames waiting to be written, and the fds they own; one `sendmsg`
//!   carries many frames and their fds, never an fd after the frame that owns it.
//! - [`RecvQueue`]: bytes and fds received, cut into frames; each complete frame takes its
//!   fds from the head of the fd FIFO after checking its count and sequence.
//! - `spare_reads`: the read buffers of connections waiting for data, kept per thread.
//! - `error`: [`FrameError`](crate::FrameError), [`FdStreamError`](crate::FdStreamError),
//!   [`TransportError`](crate::TransportError).

pub mod address;
pub(crate) mod error;
pub mod frame;
mod recv_queue;
mod send_queue;
mod spare_reads;
pub(crate) mod unix;

pub use recv_queue::{Fill, ReceivedFrame, RecvQueue};
pub use send_queue::SendQueue;
pub use unix::{SCM_MAX_FD, SenderCredentials};
