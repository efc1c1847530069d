//! [`Listener`]: the sockets a [`Server`](super::Server) serves, the way daemons have them: a
//! path it binds (replacing a stale socket file), an abstract `@name`, a tokio or std
//! listener, or a listening socket handed over as an fd (by systemd, or a parent process).

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

use super::bind::bind_file;
use crate::transport::address::{self, check_unix_stream};

/// A listening `AF_UNIX` stream socket, registered with the tokio runtime.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
}

impl Listener {
    /// Binds `path`, or the abstract name `@name`.
    ///
    /// A socket file left by a server that is gone is replaced (if connecting to it is
    /// refused, nothing listens there), in one `rename`, never by a separate unlink. A socket
    /// something listens on is not touched (`AddrInUse`), and neither is a symbolic link or a
    /// file that is not a socket (`AlreadyExists`). Two servers started at the same moment on
    /// one stale path can still race (the later rename wins the path); start one.
    ///
    /// # Errors
    ///
    /// As said, or the error of `bind`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        if address::is_abstract(path) {
            let addr = address::socket_addr(path)?;
            return Self::from_std(std::os::unix::net::UnixListener::bind_addr(&addr)?);
        }
        Self::from_std(bind_file(path, None)?)
    }

    /// [`Listener::bind`], with the socket file's permission bits set to `mode` (such as
    /// `0o660`: who may connect) from the first instant a client can connect: the socket is
    /// bound in a fresh private directory beside the path, given its mode there, and renamed
    /// into place; no mode is changed through the path itself, which another user might
    /// replace (a symbolic link at the path is refused, never followed). Refused for an
    /// abstract name, which has no file.
    ///
    /// # Errors
    ///
    /// As [`Listener::bind`], or the error of making the directory, `chmod` or `rename`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn bind_with_mode(path: impl AsRef<Path>, mode: u32) -> io::Result<Listener> {
        let path = path.as_ref();
        if address::is_abstract(path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an abstract socket name has no file to set a mode on",
            ));
        }
        Self::from_std(bind_file(path, Some(mode))?)
    }

    /// A std listener (made non-blocking here).
    ///
    /// # Errors
    ///
    /// The error of registering it with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener {
            inner: UnixListener::from_std(listener)?,
        })
    }

    /// A listening socket handed over as an fd (by systemd, or a parent process): checked to
    /// be a listening `AF_UNIX` stream socket, and made non-blocking.
    ///
    /// # Errors
    ///
    /// `InvalidInput` saying what the fd is instead (it is closed), or the error of
    /// registering it with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Listener> {
        check_unix_stream(&fd, true)?;
        Self::from_std(fd.into())
    }

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<tokio::net::unix::SocketAddr> {
        self.inner.local_addr()
    }

    /// The tokio listener inside.
    pub fn into_inner(self) -> UnixListener {
        self.inner
    }

    pub(crate) async fn accept(&self) -> io::Result<UnixStream> {
        self.inner.accept().await.map(|(s, _)| s)
    }
}

impl From<UnixListener> for Listener {
    fn from(inner: UnixListener) -> Listener {
        Listener { inner }
    }
}

/// What [`Server::serve`](super::Server::serve) serves: a [`Listener`], a tokio or std
/// `UnixListener`, or an `OwnedFd` of a listening socket.
pub trait IntoListener {
    /// The listener.
    ///
    /// # Errors
    ///
    /// As [`Listener::from_std`] or [`Listener::from_fd`].
    fn into_listener(self) -> io::Result<Listener>;
}

impl IntoListener for Listener {
    fn into_listener(self) -> io::Result<Listener> {
        Ok(self)
    }
}

impl IntoListener for UnixListener {
    fn into_listener(self) -> io::Result<Listener> {
        Ok(self.into())
    }
}

impl IntoListener for std::os::unix::net::UnixListener {
    fn into_listener(self) -> io::Result<Listener> {
        Listener::from_std(self)
    }
}

impl IntoListener for OwnedFd {
    fn into_listener(self) -> io::Result<Listener> {
        Listener::from_fd(self)
    }
}

/// What [`Server::serve_connection`](super::Server::serve_connection) serves: a connected
/// tokio or std `UnixStream`, or an `OwnedFd` of one.
pub trait IntoConnection {
    /// The stream, registered with the runtime.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an fd that is not a connected `AF_UNIX` stream socket, or the error
    /// of registering it.
    fn into_connection(self) -> io::Result<UnixStream>;
}

impl IntoConnection for UnixStream {
    fn into_connection(self) -> io::Result<UnixStream> {
        Ok(self)
    }
}

impl IntoConnection for std::os::unix::net::UnixStream {
    fn into_connection(self) -> io::Result<UnixStream> {
        self.set_nonblocking(true)?;
        UnixStream::from_std(self)
    }
}

impl IntoConnection for OwnedFd {
    fn into_connection(self) -> io::Result<UnixStream> {
        check_unix_stream(&self, false)?;
        std::os::unix::net::UnixStream::from(self).into_connection()
    }
}
