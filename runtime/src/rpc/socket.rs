//! [`Socket`]: a connected Unix stream registered with tokio for reading only.
//!
//! `tokio::net::UnixStream` registers for both directions, edge-triggered, so every reply
//! the peer drains from the send buffer wakes the runtime with an `EPOLLOUT` nobody waits for:
//! one wasted `epoll_wait` and scheduler turn per call (measured: 2 per round trip instead of
//! 1). Writes here are plain non-blocking `sendmsg`; only a write that would block registers a
//! second descriptor of the socket for writability, and only until it is writable again.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// A connected `SOCK_STREAM` Unix socket, non-blocking, registered for readability.
#[derive(Debug)]
pub(crate) struct Socket {
    read: AsyncFd<OwnedFd>,
}

impl Socket {
    /// Takes over `fd` (made non-blocking here).
    ///
    /// # Errors
    ///
    /// The errors of `fcntl` and of registering with the runtime.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(Socket {
            read: register(fd, Interest::READABLE)?,
        })
    }

    /// From a tokio stream (its registration is dropped and replaced).
    ///
    /// # Errors
    ///
    /// As [`Socket::new`].
    pub(crate) fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<Self> {
        Self::new(OwnedFd::from(stream.into_std()?))
    }

    /// Waits until the socket may be readable.
    pub(crate) async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        self.read.readable().await
    }

    /// Waits until a write would not block.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let dup = rustix::io::fcntl_dupfd_cloexec(self.read.get_ref(), 0)?;
        let write = register(dup, Interest::WRITABLE)?;
        let mut guard = write.writable().await?;
        guard.retain_ready();
        Ok(())
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.get_ref().as_fd()
    }
}

/// Registers `fd` with the runtime for `interest`.
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` keeps its descriptor open and returns the same number from
    // `as_raw_fd` until it is dropped, which the `AsyncFd` that owns it does last.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
