//! How much of what this side wrote its peer has not read yet (`SIOCOUTQ`): what tells a peer
//! that reads slowly from one that stopped, for both the tokio and the polled driver.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Bytes written to the socket that the peer has not read yet, if the kernel says. While the
/// peer reads this goes down, though the socket may stay unwritable until most of it is gone.
pub(crate) fn unread_by_peer(sock: BorrowedFd<'_>) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `SIOCOUTQ` writes one `int` through the pointer, which is valid for it.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    (rc == 0).then(|| usize::try_from(n).unwrap_or(0))
}
