//! The read side of an async connection.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFdReadyGuard;

use super::socket::Socket;
use crate::error::TransportError;
use crate::transport::{Fill, RecvQueue};

/// Waits until the socket is readable and reads once into `rq`. Returns `Ok(false)` at a
/// clean end of stream.
///
/// # Errors
///
/// The socket's, or a broken fd stream's, or an end of stream inside a frame or with
/// unclaimed fds.
pub(crate) async fn fill(stream: &Socket, rq: &mut RecvQueue) -> Result<bool, TransportError> {
    loop {
        let mut guard = stream.readable().await?;
        if let Some(more) = try_fill(&mut guard, rq)? {
            return Ok(more);
        }
    }
}

/// Reads once into `rq` with the readiness `guard`, without waiting: `Ok(None)` if the socket
/// had nothing after all (the readiness is cleared; wait again), `Ok(Some(false))` at a clean
/// end of stream.
///
/// # Errors
///
/// As [`fill`].
pub(crate) fn try_fill(
    guard: &mut AsyncFdReadyGuard<'_, OwnedFd>,
    rq: &mut RecvQueue,
) -> Result<Option<bool>, TransportError> {
    let mut failure = None;
    let got = guard.try_io(|fd| match rq.fill(fd.get_ref().as_fd()) {
        Ok(Fill::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
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
