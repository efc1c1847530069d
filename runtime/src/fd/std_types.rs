//! The standard library's owned descriptor types as wire types.
//!
//! Each travels as an `i32` index into the frame's fd table. `OwnedFd` and `File` accept any
//! descriptor; the socket and pipe types are checked on arrival (a peer that sends a pipe
//! where a `UnixStream` is declared gets a decode error naming the field, not a confusing
//! failure later).

use std::fs::File;
use std::io::{PipeReader, PipeWriter};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use rustix::fs::OFlags;
use rustix::net::{AddressFamily, SocketType};

use super::inspect::{self, Kind};
use crate::codec::error::{DecodeError, EncodeError};
use crate::codec::wire::Wire;
use crate::codec::{Decoder, Encoder, TType};
use crate::idl::Idl;

macro_rules! fd_wire {
    ($($t:ty, $idl:literal, $kind:literal => $check:expr;)*) => {$(
        impl Wire for $t {
            const TTYPE: TType = TType::I32;
            const HAS_FDS: bool = true;
            fn idl_type(idl: &mut Idl) -> String {
                idl.fd_typedef($idl, concat!("fdrpc.fd = \"", $kind, "\""))
            }
            #[inline]
            fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
                enc.write_fd(OwnedFd::from(self))
            }
            #[inline]
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let fd = dec.read_fd()?;
                let check: Option<Kind> = $check;
                if let Some(kind) = check {
                    inspect::require(&fd, &kind)?;
                }
                Ok(<$t>::from(fd))
            }
        }
    )*};
}

fd_wire! {
    OwnedFd, "fd", "any" => None;
    File, "fd", "any" => None;
    UnixStream, "unix_stream_fd", "unix_stream_socket" => Some(Kind::Socket { domain: Some(AddressFamily::UNIX), ty: SocketType::STREAM });
    UnixListener, "unix_listener_fd", "unix_stream_socket" => Some(Kind::Socket { domain: Some(AddressFamily::UNIX), ty: SocketType::STREAM });
    UnixDatagram, "unix_datagram_fd", "unix_datagram_socket" => Some(Kind::Socket { domain: Some(AddressFamily::UNIX), ty: SocketType::DGRAM });
    TcpStream, "tcp_stream_fd", "inet_stream_socket" => Some(Kind::InetSocket(SocketType::STREAM));
    TcpListener, "tcp_listener_fd", "inet_stream_socket" => Some(Kind::InetSocket(SocketType::STREAM));
    UdpSocket, "udp_socket_fd", "inet_datagram_socket" => Some(Kind::InetSocket(SocketType::DGRAM));
    PipeReader, "pipe_reader_fd", "pipe_read_end" => Some(Kind::PipeEnd { access: OFlags::RDONLY });
    PipeWriter, "pipe_writer_fd", "pipe_write_end" => Some(Kind::PipeEnd { access: OFlags::WRONLY });
}
