//! Checks of what a received descriptor is (`fstat`, `F_GETFL`, `SO_TYPE`, `F_GET_SEALS`).

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FileType, OFlags, SealFlags};
use rustix::net::{AddressFamily, SocketType};

use crate::codec::error::{DecodeError, DecodeErrorKind};

/// What a descriptor must be.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `fstat` reports this file type.
    File(FileType),
    /// A pipe or FIFO opened with this access mode (`RDONLY` or `WRONLY`).
    PipeEnd { access: OFlags },
    /// A socket of this type, and of this domain if given.
    Socket {
        domain: Option<AddressFamily>,
        ty: SocketType,
    },
    /// An IPv4 or IPv6 socket of this type.
    InetSocket(SocketType),
    /// A memfd (or other sealable file) carrying at least these seals.
    Sealed(SealFlags),
    /// A Unix stream socket connected to a peer: neither listening nor unconnected (an
    /// endpoint of a service).
    ConnectedUnixStream,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::File(ft) => file_type_name(*ft).to_owned(),
            Kind::PipeEnd { access } => {
                if *access == OFlags::RDONLY {
                    "the read end of a pipe".to_owned()
                } else {
                    "the write end of a pipe".to_owned()
                }
            }
            Kind::Socket { domain, ty } => match domain {
                Some(d) if *d == AddressFamily::UNIX => {
                    format!("a unix {} socket", socket_type_name(*ty))
                }
                _ => format!("a {} socket", socket_type_name(*ty)),
            },
            Kind::InetSocket(ty) => format!("an inet {} socket", socket_type_name(*ty)),
            Kind::Sealed(seals) => format!("a memfd sealed with {}", seal_names(*seals)),
            Kind::ConnectedUnixStream => "a connected unix stream socket".to_owned(),
        }
    }
}

fn file_type_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "an unknown kind of file",
    }
}

fn socket_type_name(ty: SocketType) -> &'static str {
    match ty {
        SocketType::STREAM => "stream",
        SocketType::DGRAM => "datagram",
        SocketType::SEQPACKET => "seqpacket",
        SocketType::RAW => "raw",
        _ => "other",
    }
}

pub(crate) fn seal_names(seals: SealFlags) -> String {
    let names: Vec<&str> = [
        (SealFlags::SEAL, "F_SEAL_SEAL"),
        (SealFlags::SHRINK, "F_SEAL_SHRINK"),
        (SealFlags::GROW, "F_SEAL_GROW"),
        (SealFlags::WRITE, "F_SEAL_WRITE"),
        (SealFlags::FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"),
    ]
    .into_iter()
    .filter(|(f, _)| seals.contains(*f))
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() {
        "no seals".to_owned()
    } else {
        names.join("|")
    }
}

fn io_err(e: rustix::io::Errno) -> DecodeError {
    DecodeErrorKind::FdInspection(std::io::Error::from(e).kind()).into()
}

#[cold]
fn mismatch(kind: &Kind, found: String) -> DecodeError {
    DecodeErrorKind::FdKindMismatch {
        expected: kind.describe(),
        found,
    }
    .into()
}

/// Describes what `fd` is, for error messages.
fn describe_fd(fd: &OwnedFd) -> String {
    match rustix::fs::fstat(fd) {
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::Socket {
                match rustix::net::sockopt::socket_type(fd) {
                    Ok(ty) => format!("a {} socket", socket_type_name(ty)),
                    Err(_) => "a socket".to_owned(),
                }
            } else {
                file_type_name(ft).to_owned()
            }
        }
        Err(e) => format!("an fd that cannot be inspected ({e})"),
    }
}

/// Checks that `fd` is of `kind`.
pub(crate) fn require(fd: &OwnedFd, kind: &Kind) -> Result<(), DecodeError> {
    let ok = match kind {
        Kind::File(ft) => {
            let st = rustix::fs::fstat(fd).map_err(io_err)?;
            FileType::from_raw_mode(st.st_mode) == *ft
        }
        Kind::PipeEnd { access } => {
            let st = rustix::fs::fstat(fd).map_err(io_err)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
                false
            } else {
                let fl = rustix::fs::fcntl_getfl(fd.as_fd()).map_err(io_err)?;
                let mode = fl & (OFlags::RDONLY | OFlags::WRONLY | OFlags::RDWR);
                mode == *access || mode == OFlags::RDWR
            }
        }
        Kind::Socket { domain, ty } => {
            is_socket(fd)?
                && rustix::net::sockopt::socket_type(fd).map_err(io_err)? == *ty
                && match domain {
                    Some(d) => rustix::net::sockopt::socket_domain(fd).map_err(io_err)? == *d,
                    None => true,
                }
        }
        Kind::InetSocket(ty) => {
            is_socket(fd)? && rustix::net::sockopt::socket_type(fd).map_err(io_err)? == *ty && {
                let d = rustix::net::sockopt::socket_domain(fd).map_err(io_err)?;
                d == AddressFamily::INET || d == AddressFamily::INET6
            }
        }
        Kind::Sealed(required) => match rustix::fs::fcntl_get_seals(fd) {
            Ok(seals) => {
                if seals.contains(*required) {
                    true
                } else {
                    return Err(mismatch(
                        kind,
                        format!("a memfd sealed with {}", seal_names(seals)),
                    ));
                }
            }
            Err(rustix::io::Errno::INVAL) => false,
            Err(e) => return Err(io_err(e)),
        },
        Kind::ConnectedUnixStream => {
            let unix_stream = Kind::Socket {
                domain: Some(AddressFamily::UNIX),
                ty: SocketType::STREAM,
            };
            require(fd, &unix_stream).map_err(|_| mismatch(kind, describe_fd(fd)))?;
            if rustix::net::sockopt::socket_acceptconn(fd).map_err(io_err)? {
                return Err(mismatch(kind, "a listening unix stream socket".to_owned()));
            }
            match rustix::net::getpeername(fd) {
                Ok(_) => true,
                Err(rustix::io::Errno::NOTCONN) => {
                    return Err(mismatch(
                        kind,
                        "an unconnected unix stream socket".to_owned(),
                    ));
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(mismatch(kind, describe_fd(fd)))
    }
}

fn is_socket(fd: &OwnedFd) -> Result<bool, DecodeError> {
    let st = rustix::fs::fstat(fd).map_err(io_err)?;
    Ok(FileType::from_raw_mode(st.st_mode) == FileType::Socket)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// The error a field requiring `kind` reports for `fd`.
    fn refusal(fd: &OwnedFd, kind: &Kind) -> String {
        match require(fd, kind) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{kind:?} accepted"),
        }
    }

    fn open(path: &str, flags: OFlags) -> OwnedFd {
        rustix::fs::open(path, flags | OFlags::CLOEXEC, rustix::fs::Mode::empty()).unwrap()
    }

    /// What arrived, and what was wanted, are named in words a user knows.
    #[test]
    fn a_refusal_names_what_was_expected_and_what_arrived() {
        let dir = open("/", OFlags::RDONLY);
        let null = open("/dev/null", OFlags::RDONLY);
        let link_path = std::env::temp_dir().join(format!("fdrpc-inspect-{}", std::process::id()));
        let _ = std::fs::remove_file(&link_path);
        std::os::unix::fs::symlink("/", &link_path).unwrap();
        let link = open(link_path.to_str().unwrap(), OFlags::PATH | OFlags::NOFOLLOW);
        std::fs::remove_file(&link_path).unwrap();
        let (seqpacket, _other) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let file = |ft| Kind::File(ft);
        let stream = |domain| Kind::Socket {
            domain,
            ty: SocketType::STREAM,
        };
        let cases: [(&OwnedFd, Kind, &str); 8] = [
            (
                &dir,
                file(FileType::RegularFile),
                "expected a regular file, found a directory",
            ),
            (
                &null,
                file(FileType::Directory),
                "expected a directory, found a character device",
            ),
            (
                &link,
                file(FileType::Fifo),
                "expected a pipe, found a symlink",
            ),
            (
                &dir,
                file(FileType::Socket),
                "expected a socket, found a directory",
            ),
            (
                &dir,
                file(FileType::BlockDevice),
                "expected a block device, found a directory",
            ),
            (
                &seqpacket,
                stream(Some(AddressFamily::UNIX)),
                "expected a unix stream socket, found a seqpacket socket",
            ),
            (
                &dir,
                stream(Some(AddressFamily::INET)),
                "expected a stream socket, found a directory",
            ),
            (
                &dir,
                Kind::Socket {
                    domain: None,
                    ty: SocketType::RAW,
                },
                "expected a raw socket, found a directory",
            ),
        ];
        for (fd, kind, said) in cases {
            assert_eq!(refusal(fd, &kind), said);
        }
    }

    #[test]
    fn an_inet_socket_field_takes_ipv4_and_ipv6_sockets_of_its_type_only() {
        let inet = Kind::InetSocket(SocketType::STREAM);
        let tcp4: OwnedFd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().into();
        require(&tcp4, &inet).unwrap();
        // An IPv6 socket, where the kernel has IPv6 (unbound: no address needed).
        if let Ok(tcp6) = rustix::net::socket(AddressFamily::INET6, SocketType::STREAM, None) {
            require(&tcp6, &inet).unwrap();
        }
        let udp: OwnedFd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into();
        assert_eq!(
            refusal(&udp, &inet),
            "expected an inet stream socket, found a datagram socket"
        );
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let unix = OwnedFd::from(unix);
        assert_eq!(
            refusal(&unix, &inet),
            "expected an inet stream socket, found a stream socket"
        );
        let dir = open("/", OFlags::RDONLY);
        assert_eq!(
            refusal(&dir, &inet),
            "expected an inet stream socket, found a directory"
        );
    }
}
