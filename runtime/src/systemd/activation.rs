//! Descriptors passed to a process at start the `sd_listen_fds(3)` way: fd 3 onwards,
//! `LISTEN_FDS` of them, for the process `LISTEN_PID`, named by `LISTEN_FDNAMES`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first fd passed: `SD_LISTEN_FDS_START`.
const FIRST: RawFd = 3;

/// Whether this process has taken its passed fds (they can be owned once).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The descriptors passed to this process at start, with their names: the sockets of a
/// systemd socket unit (named by its `FileDescriptorName=`, or after the unit), fds the
/// service put in the fd store before a restart (named by their `FDNAME=`), or what a parent
/// passed with [`pass_fds`]. Each is an `OwnedFd`, close-on-exec.
#[derive(Debug, Default)]
pub struct ListenFds {
    fds: Vec<(String, OwnedFd)>,
}

impl ListenFds {
    /// Takes the descriptors passed to this process: none if `LISTEN_PID` is not this
    /// process, and none the second time (only one owner can close them). The environment is
    /// left as it is; children ignore it anyway, since `LISTEN_PID` is not theirs, but see
    /// [`ListenFds::take_and_unset_env`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `LISTEN_*` is malformed, or the error of marking an fd
    /// close-on-exec.
    pub fn take() -> io::Result<ListenFds> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return Ok(ListenFds::default());
        }
        let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()?.collect();
        Ok(ListenFds {
            fds: passed
                .into_iter()
                .map(|(fd, name)| {
                    // SAFETY: fds 3..3+LISTEN_FDS were passed to this process for it to own
                    // (LISTEN_PID is ours), and `TAKEN` makes this the only place that takes
                    // ownership of them.
                    (name, unsafe { OwnedFd::from_raw_fd(fd) })
                })
                .collect(),
        })
    }

    /// [`ListenFds::take`], and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from
    /// the environment, so that no child inherits them.
    ///
    /// # Errors
    ///
    /// As [`ListenFds::take`].
    ///
    /// # Safety
    ///
    /// As [`std::env::remove_var`]: no other thread may read or write the environment
    /// meanwhile. Call it first thing in `main`, before a runtime (`#[tokio::main]`) or any
    /// thread is started.
    pub unsafe fn take_and_unset_env() -> io::Result<ListenFds> {
        let fds = Self::take();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // SAFETY: the caller promises no other thread touches the environment.
            unsafe { std::env::remove_var(var) };
        }
        fds
    }

    /// How many are left.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether none are left.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The names of those left, in the order they were passed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fds.iter().map(|(n, _)| n.as_str())
    }

    /// Takes the first fd named `name`.
    pub fn take_named(&mut self, name: &str) -> Option<OwnedFd> {
        let i = self.fds.iter().position(|(n, _)| n == name)?;
        Some(self.fds.remove(i).1)
    }

    /// Takes the first listening `AF_UNIX` stream socket (named `name`, if given), as a
    /// [`Listener`](crate::Listener) to serve.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the fd named `name` is not a listening Unix stream socket (it is
    /// closed), or the error of registering it with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn take_listener(&mut self, name: Option<&str>) -> io::Result<Option<crate::Listener>> {
        let found = match name {
            Some(name) => self.take_named(name),
            None => {
                let i = self.fds.iter().position(|(_, fd)| {
                    crate::transport::address::check_unix_stream(fd, true).is_ok()
                });
                i.map(|i| self.fds.remove(i).1)
            }
        };
        found.map(crate::Listener::from_fd).transpose()
    }
}

impl IntoIterator for ListenFds {
    type Item = (String, OwnedFd);
    type IntoIter = std::vec::IntoIter<(String, OwnedFd)>;

    fn into_iter(self) -> Self::IntoIter {
        self.fds.into_iter()
    }
}

/// Sets up `command` so that the process it starts gets `fds` the `sd_listen_fds(3)` way (fd
/// 3 onwards, `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set to the child's own pid),
/// and takes them with [`ListenFds::take`]. The fds stay open here until `command` is
/// dropped; the child's copies are the only ones it gets (nothing else leaks into it).
///
/// # Errors
///
/// `InvalidInput` for a name that systemd would refuse (empty, longer than 255 bytes, or
/// holding `:` or a control character), or the error of duplicating an fd.
pub fn pass_fds(command: &mut Command, fds: Vec<(String, OwnedFd)>) -> io::Result<()> {
    for (name, _) in &fds {
        check_name(name)?;
    }
    let n = fds.len();
    // Move every fd above the range it must land in, so that putting them in place cannot
    // overwrite one not yet placed. The copies are close-on-exec: only the placed ones
    // reach the child.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|(_, fd)| rustix::io::fcntl_dupfd_cloexec(fd, FIRST + n as RawFd))
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
    command
        .env("LISTEN_FDS", n.to_string())
        .env("LISTEN_FDNAMES", names.join(":"));
    // SAFETY: the closure runs in the child between fork and exec. It only calls dup2, getpid
    // and setenv, and formats on the stack. setenv is not async-signal-safe in POSIX; with
    // glibc it is safe here: std holds its environment lock across fork (no Rust thread was
    // changing the environment), and glibc's fork handlers reset malloc's locks in the child.
    // `high` is moved in, so the fds stay open until the command is dropped.
    unsafe {
        command.pre_exec(move || {
            for (i, fd) in high.iter().enumerate() {
                // dup2 clears close-on-exec on the new fd.
                if libc::dup2(fd.as_raw_fd(), FIRST + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut digits = itoa::Buffer::new();
            let pid = digits.format(libc::getpid());
            // A pid has at most 10 digits: the buffer always holds it and its NUL.
            let mut value = [0u8; 16];
            if let Some(dst) = value.get_mut(..pid.len()) {
                dst.copy_from_slice(pid.as_bytes());
            }
            if libc::setenv(c"LISTEN_PID".as_ptr(), value.as_ptr().cast(), 1) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    drop(fds);
    Ok(())
}

/// systemd's rule for fd names (`FDNAME=`, `FileDescriptorName=`).
pub(super) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.bytes().any(|b| b == b':' || b < 0x20 || b == 0x7f)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{name}` is not a valid fd name: 1 to 255 bytes, no `:` or control characters"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fd_names_follow_systemds_rule() {
        check_name("broker").unwrap();
        check_name(&"x".repeat(255)).unwrap();
        for bad in ["", "a:b", "a\nb", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
