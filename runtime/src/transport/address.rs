//! Where a Unix socket is: a filesystem path, or a Linux abstract name written `@name` (no
//! file; the name lives in the network namespace, and vanishes with the last socket bound to
//! it).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::Path;

use rustix::net::{AddressFamily, SocketType};

/// The address `path` names: an abstract name if it starts with `@` (the rest is the name),
/// a filesystem path otherwise.
///
/// # Errors
///
/// `InvalidInput` for a path or name too long for a Unix socket address.
pub fn socket_addr(path: &Path) -> io::Result<SocketAddr> {
    match path.as_os_str().as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(path),
    }
}

/// Whether `path` names an abstract socket (`@name`).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn is_abstract(path: &Path) -> bool {
    path.as_os_str().as_bytes().starts_with(b"@")
}

/// Connects to the server at `path` (see [`socket_addr`]).
///
/// # Errors
///
/// The error of `connect`.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&socket_addr(path)?)
}

/// Checks that `fd` is an `AF_UNIX` `SOCK_STREAM` socket, listening if `listening`, connected
/// (not listening) otherwise.
///
/// # Errors
///
/// `InvalidInput` naming what the fd is instead, or the error of asking.
pub(crate) fn check_unix_stream(fd: &OwnedFd, listening: bool) -> io::Result<()> {
    let not = |what: String| {
        let wanted = if listening {
            "a listening AF_UNIX stream socket"
        } else {
            "a connected AF_UNIX stream socket"
        };
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("expected {wanted}, got {what}"),
        )
    };
    let domain = match rustix::net::sockopt::socket_domain(fd.as_fd()) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOTSOCK) => return Err(not("an fd that is not a socket".into())),
        Err(e) => return Err(e.into()),
    };
    if domain != AddressFamily::UNIX {
        return Err(not(format!(
            "a socket of address family {}",
            domain.as_raw()
        )));
    }
    let ty = rustix::net::sockopt::socket_type(fd.as_fd())?;
    if ty != SocketType::STREAM {
        return Err(not(format!("a Unix socket of type {}", ty.as_raw())));
    }
    let accepting = rustix::net::sockopt::socket_acceptconn(fd.as_fd())?;
    match (listening, accepting) {
        (true, false) => Err(not("a Unix stream socket that is not listening".into())),
        (false, true) => Err(not("a listening Unix stream socket".into())),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn at_names_are_abstract() {
        let a = socket_addr(Path::new("@fdrpc-test")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"fdrpc-test"[..]));
        assert!(a.as_pathname().is_none());
        let p = socket_addr(Path::new("/run/x.sock")).unwrap();
        assert_eq!(p.as_pathname(), Some(Path::new("/run/x.sock")));
        assert!(socket_addr(Path::new(&"x".repeat(200))).is_err());
    }

    #[test]
    fn fds_are_checked_for_what_they_are() {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = OwnedFd::from(a);
        check_unix_stream(&a, false).unwrap();
        let e = check_unix_stream(&a, true).unwrap_err();
        assert!(e.to_string().contains("not listening"), "{e}");
        let file = OwnedFd::from(std::fs::File::open("/proc/self/exe").unwrap());
        let e = check_unix_stream(&file, true).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        let udp = OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let e = check_unix_stream(&udp, false).unwrap_err();
        assert!(e.to_string().contains("address family"), "{e}");
        let (dgram, _d) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let e = check_unix_stream(&OwnedFd::from(dgram), false).unwrap_err();
        assert!(e.to_string().contains("a Unix socket of type"), "{e}");
        // A listening socket where a connection is expected, and where a listener is.
        let name = format!("@fdrpc-address-test-{}", std::process::id());
        let addr = socket_addr(Path::new(&name)).unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let listener = OwnedFd::from(listener);
        let e = check_unix_stream(&listener, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "expected a connected AF_UNIX stream socket, got a listening Unix stream socket"
        );
        check_unix_stream(&listener, true).unwrap();
    }
}
