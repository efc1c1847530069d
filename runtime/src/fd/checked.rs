//! Fd types that say what the descriptor must be, checked when a message is decoded.
//!
//! Receiving an `OwnedFd` and then discovering it is a pipe where a file was expected is a
//! bug class every broker hand-rolls checks for. These types do the check at the boundary: a
//! field of type [`RegularFile`] only ever holds a regular file, and a [`SealedMemfd`] only a
//! memfd whose seals make it safe to map. A mismatch fails decoding with
//! [`DecodeErrorKind::FdKindMismatch`](crate::DecodeErrorKind::FdKindMismatch) naming the
//! field; the fd is closed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{FileType, MemfdFlags, SealFlags};
use rustix::net::SocketType;

use super::inspect::{self, Kind};
use crate::codec::error::{DecodeError, EncodeError};
use crate::codec::wire::Wire;
use crate::codec::{Decoder, Encoder, TType};
use crate::idl::Idl;

fn check_io(fd: &OwnedFd, kind: &Kind) -> io::Result<()> {
    inspect::require(fd, kind)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

macro_rules! typed_fd {
    ($(#[$doc:meta])* $name:ident($inner:ty), $kind:expr, $idl:literal, $idl_kind:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name($inner);

        impl $name {
            /// Wraps `fd` after checking its kind.
            ///
            /// # Errors
            ///
            /// `InvalidInput` if the fd is of another kind (it is closed), or the error of
            /// inspecting it.
            pub fn new(fd: impl Into<OwnedFd>) -> io::Result<Self> {
                let fd = fd.into();
                check_io(&fd, &$kind)?;
                Ok($name(<$inner>::from(fd)))
            }

            /// The checked descriptor.
            pub fn into_inner(self) -> $inner {
                self.0
            }
        }

        impl Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl From<$name> for OwnedFd {
            fn from(v: $name) -> OwnedFd {
                v.0.into()
            }
        }

        impl Wire for $name {
            const TTYPE: TType = TType::I32;
            const HAS_FDS: bool = true;
            fn idl_type(idl: &mut Idl) -> String {
                idl.fd_typedef($idl, concat!("fdrpc.fd = \"", $idl_kind, "\""))
            }
            #[inline]
            fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
                enc.write_fd(self.0.into())
            }
            #[inline]
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let fd = dec.read_fd()?;
                inspect::require(&fd, &$kind)?;
                Ok($name(<$inner>::from(fd)))
            }
        }
    };
}

typed_fd!(
    /// A regular file (`S_ISREG`), checked on arrival.
    RegularFile(File),
    Kind::File(FileType::RegularFile),
    "regular_file_fd",
    "regular_file"
);

typed_fd!(
    /// A directory (`S_ISDIR`), checked on arrival; use it with `openat`-style APIs.
    Directory(OwnedFd),
    Kind::File(FileType::Directory),
    "directory_fd",
    "directory"
);

typed_fd!(
    /// A pipe or FIFO end of either direction (`S_ISFIFO`), checked on arrival. For a
    /// direction, use `std::io::PipeReader` or `PipeWriter`, which are checked too.
    Fifo(OwnedFd),
    Kind::File(FileType::Fifo),
    "fifo_fd",
    "fifo"
);

typed_fd!(
    /// A connected or listening stream socket of any domain (`SOCK_STREAM`), checked on
    /// arrival. `std::os::unix::net::UnixStream` and `std::net::TcpStream` fields are checked
    /// for their domain too.
    StreamSocket(OwnedFd),
    Kind::Socket { domain: None, ty: SocketType::STREAM },
    "stream_socket_fd",
    "stream_socket"
);

/// Seal bits for [`SealedMemfd`] (`F_SEAL_*`).
pub mod seals {
    /// `F_SEAL_SEAL`: no more seals can be added.
    pub const SEAL: u32 = 0x1;
    /// `F_SEAL_SHRINK`: the file cannot shrink (a mapping never faults with `SIGBUS`).
    pub const SHRINK: u32 = 0x2;
    /// `F_SEAL_GROW`: the file cannot grow.
    pub const GROW: u32 = 0x4;
    /// `F_SEAL_WRITE`: the contents cannot change.
    pub const WRITE: u32 = 0x8;
    /// `F_SEAL_FUTURE_WRITE`: no new writable mappings or writes.
    pub const FUTURE_WRITE: u32 = 0x10;
    /// Contents and size are frozen for good: `SEAL | SHRINK | GROW | WRITE`.
    pub const IMMUTABLE: u32 = SEAL | SHRINK | GROW | WRITE;
}

/// A memfd carrying at least the seals `SEALS` (default: [`seals::IMMUTABLE`]), checked on
/// arrival with `F_GET_SEALS`.
///
/// With `SHRINK` and `WRITE` sealed, the receiver can read or map the contents without the
/// sender changing them underneath or truncating them into a `SIGBUS`: safe zero-copy shared
/// memory between processes that do not trust each other. [`SealedMemfd::map`] maps them as
/// a `&[u8]`, and [`SealedMemfd::writer`] makes one to fill in place before sealing it.
///
/// # Examples
///
/// ```
/// use fdrpc::SealedMemfd;
///
/// let buf = SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::with_contents("greeting", b"hello")?;
/// assert_eq!(buf.len()?, 5);
/// assert_eq!(buf.read_all()?, b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SealedMemfd<const SEALS: u32 = { seals::IMMUTABLE }>(File);

impl<const SEALS: u32> SealedMemfd<SEALS> {
    fn kind() -> Kind {
        Kind::Sealed(SealFlags::from_bits_retain(SEALS))
    }

    /// A new memfd named `name` holding `contents`, sealed with `SEALS`.
    ///
    /// # Errors
    ///
    /// The errors of `memfd_create`, `write` and `F_ADD_SEALS`.
    pub fn with_contents(name: &str, contents: &[u8]) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let mut file = File::from(fd);
        file.write_all(contents)?;
        file.seek(SeekFrom::Start(0))?;
        rustix::fs::fcntl_add_seals(&file, SealFlags::from_bits_retain(SEALS))?;
        Ok(SealedMemfd(file))
    }

    /// Wraps `fd` after checking that it carries the seals `SEALS`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if it is not sealable or lacks a seal (the fd is closed).
    pub fn new(fd: impl Into<OwnedFd>) -> io::Result<Self> {
        let fd = fd.into();
        check_io(&fd, &Self::kind())?;
        Ok(SealedMemfd(File::from(fd)))
    }

    /// The size of the contents.
    ///
    /// # Errors
    ///
    /// The error of `fstat`.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    /// Whether the memfd is empty.
    ///
    /// # Errors
    ///
    /// The error of `fstat`.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads the whole contents (with `pread`, so the shared file offset is not moved).
    ///
    /// # Errors
    ///
    /// The errors of `fstat` and `pread`.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(self.len()?).map_err(|_| io::ErrorKind::OutOfMemory)?;
        let mut out = vec![0u8; len];
        self.0.read_exact_at(&mut out, 0)?;
        Ok(out)
    }

    /// The memfd as a `File` (for `mmap` or reading).
    pub fn into_file(self) -> File {
        self.0
    }

    /// Borrows the memfd as a `File`.
    pub fn as_file(&self) -> &File {
        &self.0
    }
}

impl<const SEALS: u32> Read for &SealedMemfd<SEALS> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

impl<const SEALS: u32> AsFd for SealedMemfd<SEALS> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<const SEALS: u32> From<SealedMemfd<SEALS>> for OwnedFd {
    fn from(v: SealedMemfd<SEALS>) -> OwnedFd {
        v.0.into()
    }
}

impl<const SEALS: u32> Wire for SealedMemfd<SEALS> {
    const TTYPE: TType = TType::I32;
    const HAS_FDS: bool = true;
    fn idl_type(idl: &mut Idl) -> String {
        let seals = super::inspect::seal_names(SealFlags::from_bits_retain(SEALS));
        idl.fd_typedef(
            &format!("sealed_memfd_{SEALS:x}"),
            &format!("fdrpc.fd = \"sealed_memfd\", fdrpc.seals = \"{seals}\""),
        )
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_fd(self.0.into())
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let fd = dec.read_fd()?;
        inspect::require(&fd, &Self::kind())?;
        Ok(SealedMemfd(File::from(fd)))
    }
}
