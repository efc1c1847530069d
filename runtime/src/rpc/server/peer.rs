//! Who is on the other end: `SO_PEERCRED`, and a pidfd from `SO_PEERPIDFD` where the kernel
//! has it (Linux 6.5+), which unlike a pid cannot be recycled.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The credentials of the peer process, taken when the connection was made.
#[derive(Debug)]
pub struct PeerCredentials {
    pid: i32,
    uid: u32,
    gid: u32,
    pidfd: Option<OwnedFd>,
}

impl PeerCredentials {
    /// Reads the credentials of the peer of `sock`.
    ///
    /// # Errors
    ///
    /// The error of `getsockopt(SO_PEERCRED)`.
    pub fn of(sock: impl AsFd) -> io::Result<Self> {
        let cred = rustix::net::sockopt::socket_peercred(&sock)?;
        Ok(PeerCredentials {
            pid: cred.pid.as_raw_nonzero().get(),
            uid: cred.uid.as_raw(),
            gid: cred.gid.as_raw(),
            pidfd: peer_pidfd(sock.as_fd()),
        })
    }

    /// The credentials the kernel attached to a call (`SCM_CREDENTIALS`), with no pidfd.
    pub(crate) fn sent(sender: crate::transport::SenderCredentials) -> Self {
        PeerCredentials {
            pid: sender.pid,
            uid: sender.uid,
            gid: sender.gid,
            pidfd: None,
        }
    }

    /// Whether these are `sender`'s credentials.
    pub(crate) fn is(&self, sender: &crate::transport::SenderCredentials) -> bool {
        (self.pid, self.uid, self.gid) == (sender.pid, sender.uid, sender.gid)
    }

    /// The peer's process id when it connected.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The peer's effective user id when it connected.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The peer's effective group id when it connected.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// A pidfd of the peer process (`SO_PEERPIDFD`), if the kernel provides one. Unlike
    /// [`PeerCredentials::pid`], it keeps referring to the same process after it exits.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }
}

fn peer_pidfd(sock: BorrowedFd<'_>) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid for writes of the sizes given; on success the kernel
    // stores a new descriptor (close-on-exec) that nothing else owns.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &mut len,
        )
    };
    if rc != 0 || fd < 0 || len as usize != std::mem::size_of::<libc::c_int>() {
        return None;
    }
    // SAFETY: the kernel just created `fd` for us; we are its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
