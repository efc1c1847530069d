//! A child process with a connection: [`spawn`] starts a `Command` with one end of a
//! socketpair passed the way `LISTEN_FDS` passes fds (so it survives `exec`), and gives back
//! the other end; in the child, [`connection`] takes it.
//!
//! # Examples
//!
//! The parent serves, the child calls (both sides are ordinary fdrpc code):
//!
//! ```no_run
//! # async fn parent<S: fdrpc::Service>(service: S) -> Result<(), Box<dyn std::error::Error>> {
//! let mut worker = std::process::Command::new("/usr/libexec/my-worker");
//! let (mut child, conn) = fdrpc::child::spawn(&mut worker)?;
//! fdrpc::Server::new().serve_connection(conn, service).await?;
//! child.wait()?;
//! # Ok(()) }
//! # fn child() -> Result<(), Box<dyn std::error::Error>> {
//! // In the worker:
//! let conn = fdrpc::child::connection()?.ok_or("not started by fdrpc::child::spawn")?;
//! let client = fdrpc::BlockingClient::new(conn);
//! # Ok(()) }
//! ```

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};

use crate::systemd::{ListenFds, spawn_with_fds};
use crate::transport::address::check_unix_stream;

/// The name the connection is passed under (`LISTEN_FDNAMES`).
pub const FD_NAME: &str = "fdrpc";

/// Starts `command` with a connection to this process: one end of a new socketpair, passed as
/// fd 3 named [`FD_NAME`] (`LISTEN_FDS=1`). Returns the child and this process's end, to
/// serve or call on. The child takes its end with [`connection`].
///
/// `SO_PEERCRED` on a socketpair names the process that made it (this one), so this end has
/// `SO_PASSCRED` set: served here, each call's [`Context::peer`](crate::Context::peer) is the
/// process that sent it (the child, or whoever it passed its end to).
///
/// # Errors
///
/// The errors of creating the socketpair and of spawning.
pub fn spawn(command: &mut Command) -> io::Result<(Child, UnixStream)> {
    let (mine, theirs) = UnixStream::pair()?;
    crate::rpc::endpoint::ask_sender_credentials(&mine)?;
    let child = spawn_with_fds(command, vec![(FD_NAME.to_owned(), OwnedFd::from(theirs))])?;
    Ok((child, mine))
}

/// In a process started by [`spawn`]: the connection to its parent, or `None` if it was not
/// started that way. Takes every fd passed the `LISTEN_FDS` way (see
/// [`ListenFds::take`]) and closes those not named [`FD_NAME`]; a process passed more than
/// its connection takes them with [`ListenFds`] and picks [`FD_NAME`] itself.
///
/// # Errors
///
/// `InvalidInput` if the fd named [`FD_NAME`] is not a connected Unix stream socket, or the
/// error of taking the fds.
pub fn connection() -> io::Result<Option<UnixStream>> {
    let Some(fd) = ListenFds::take()?.take_named(FD_NAME) else {
        return Ok(None);
    };
    check_unix_stream(&fd, false)?;
    Ok(Some(UnixStream::from(fd)))
}
