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

use crate::transport::error::TransportError;
use crate::transport::{Fill, RecvQueue};

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

    /// Polls for readability, for the one task that reads: its waker is kept in the runtime's
    /// registration (nothing is held in the caller's future).
    pub(crate) fn poll_read_ready<'a>(
        &'a self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<AsyncFdReadyGuard<'a, OwnedFd>>> {
        self.read.poll_read_ready(cx)
    }

    /// Waits until the socket is readable and reads once into `rq`. Returns `Ok(false)` at a
    /// clean end of stream.
    ///
    /// # Errors
    ///
    /// As [`try_fill`].
    pub(crate) async fn fill(&self, rq: &mut RecvQueue) -> Result<bool, TransportError> {
        loop {
            let mut guard = self.readable().await?;
            if let Some(more) = try_fill(&mut guard, rq)? {
                return Ok(more);
            }
        }
    }

    /// Whether the peer has closed its end entirely (not merely shut down its writing): it
    /// will read nothing more, so replies to it are pointless. A Unix socket reports `POLLHUP`
    /// exactly then.
    pub(crate) fn peer_closed(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            self.read.get_ref(),
            rustix::event::PollFlags::empty(),
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(1))
            && fds[0].revents().contains(rustix::event::PollFlags::HUP)
    }

    /// Bytes written to the socket that the peer has not read yet (`SIOCOUTQ`), if the kernel
    /// says. What tells a peer that reads slowly from one that stopped: while it reads, this
    /// goes down, though the socket may stay unwritable until most of it is gone.
    pub(crate) fn unread_by_peer(&self) -> Option<usize> {
        super::outq::unread_by_peer(self.read.get_ref().as_fd())
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

/// Reads once into `rq` with the readiness `guard`, without waiting: `Ok(None)` if the socket
/// had nothing after all (the readiness is cleared; wait again), `Ok(Some(false))` at a clean
/// end of stream.
///
/// # Errors
///
/// The socket's, or a broken fd stream's, or an end of stream inside a frame or with
/// unclaimed fds.
pub(crate) fn try_fill(
    guard: &mut AsyncFdReadyGuard<'_, OwnedFd>,
    rq: &mut RecvQueue,
) -> Result<Option<bool>, TransportError> {
    let mut failure = None;
    let got = guard.try_io(|fd| match rq.fill(fd.get_ref().as_fd()) {
        Ok(Fill::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
        Ok(other) => Ok(other),
        Err(e) => {
            failure = Some(e);
            Ok(Fill::Eof)
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    match got {
        Ok(Ok(Fill::Read(_))) => Ok(Some(true)),
        Ok(Ok(Fill::Eof)) => {
            rq.check_clean_eof()?;
            Ok(Some(false))
        }
        // `try_io` cleared the readiness: there was nothing to read.
        Ok(Ok(Fill::WouldBlock)) | Err(_) => Ok(None),
        Ok(Err(e)) => Err(e.into()),
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.get_ref().as_fd()
    }
}

/// Registers `fd` with the runtime for `interest`.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` keeps its descriptor open and returns the same number from
    // `as_raw_fd` until it is dropped, which the `AsyncFd` that owns it does last.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
