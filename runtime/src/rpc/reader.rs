//! The read side of an async connection.

// Input from a peer reaches this module: no panics on it (see docs/SECURITY.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use std::os::fd::AsFd;

use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::error::TransportError;
use crate::transport::{Fill, RecvQueue};

/// Waits until the socket is readable and reads once into `rq`. Returns `Ok(false)` at a
/// clean end of stream.
///
/// # Errors
///
/// The socket's, or a broken fd stream's, or an end of stream inside a frame or with
/// unclaimed fds.
pub(crate) async fn fill(stream: &UnixStream, rq: &mut RecvQueue) -> Result<bool, TransportError> {
    loop {
        stream.readable().await?;
        let mut failure = None;
        let got = stream.try_io(Interest::READABLE, || match rq.fill(stream.as_fd()) {
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
            Ok(Fill::Read(_)) => return Ok(true),
            Ok(Fill::Eof) => {
                rq.check_clean_eof()?;
                return Ok(false);
            }
            Ok(Fill::WouldBlock) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}
