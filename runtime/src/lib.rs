//! The runtime of [fdrpc](https://docs.rs/fdrpc): the fd table, the Thrift compact codec,
//! THeader frames and the `SCM_RIGHTS` transport. Users depend on the `fdrpc` crate, which
//! re-exports this one with the macros.
//!
//! Organization:
//! - [`Wire`], [`Field`], [`Message`]: how Rust types travel as Thrift values; [`encode`]
//!   and [`decode`] for one value plus its fds.
//! - [`RegularFile`], [`Directory`], [`Fifo`], [`StreamSocket`], [`SealedMemfd`]: fd types
//!   checked on arrival.
//! - [`Channel`]: single messages with fds over a blocking `UnixStream`.
//! - [`compact`], [`frame`], [`transport`]: the layers underneath, public for other
//!   transports and for tests.
#![deny(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unsafe_op_in_unsafe_fn
)]
#![deny(unsafe_code)]
// Input from peers reaches most of this crate: no panics on it (see docs/SECURITY.md).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

mod channel;
pub mod compact;
mod error;
mod fd_table;
mod fd_types;
pub mod frame;
pub mod idl;
mod inspect;
mod message;
pub mod rpc;
pub mod transport;
mod typed_fd;
mod wire;

pub use channel::Channel;
pub use error::{
    DecodeError, DecodeErrorKind, EncodeError, FdStreamError, FrameError, TransportError,
};
pub use fd_table::FdTable;
pub use message::{Message, decode, encode};
pub use rpc::{
    ApplicationError, ApplicationErrorKind, BlockingClient, BlockingStreaming, CallError, Client,
    ConnectionError, Context, DEFAULT_WINDOW, PeerCredentials, RpcError, Server, Service,
    SinkStatus, Stream, Streaming,
};
pub use transport::Limits;
pub use typed_fd::{Directory, Fifo, RegularFile, SealedMemfd, StreamSocket, seals};
pub use wire::{Binary, Field, Wire};

/// Items generated code uses. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::compact::{Decoder, Encoder, TType};
    pub use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
    pub use crate::idl::{Idl, IdlField, IdlFunction, is_reserved};
    pub use crate::message::Message;
    pub use crate::rpc::result::{
        decode_result, decode_void_result, encode_result, encode_void_result,
    };
    pub use crate::rpc::{
        BlockingClient, BlockingSink, BlockingStreaming, BoxFuture, CallError, Client, Context,
        Dispatch, Incoming, ReplyError, RpcError, Service, Stream, Streaming,
        introspection_function, producer,
    };
    pub use crate::wire::{Binary, BinaryField, Field, Wire};
    pub use core::convert::Infallible;
    pub use core::option::Option;
    pub use core::result::Result;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use std::vec::Vec;

    /// Asserts at compile time that a method's error type is a message (a Thrift exception).
    pub const fn assert_message<T: Message>() {}

    /// Asserts at compile time that a field marked `#[fdrpc(fd)]` holds descriptors.
    pub const fn assert_fd<T: IsFd>() {}

    /// Implemented by the owned descriptor types; see `#[fdrpc(fd)]`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be sent as a file descriptor",
        label = "not an owned descriptor",
        note = "use `OwnedFd` (or `File`, `UnixStream`, ...) so ownership moves with the message"
    )]
    pub trait IsFd {}
    macro_rules! is_fd {
        ($($t:ty),*) => { $(impl IsFd for $t {})* };
    }
    is_fd!(
        std::os::fd::OwnedFd,
        std::fs::File,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixListener,
        std::os::unix::net::UnixDatagram,
        std::net::TcpStream,
        std::net::TcpListener,
        std::net::UdpSocket,
        std::io::PipeReader,
        std::io::PipeWriter,
        crate::RegularFile,
        crate::Directory,
        crate::Fifo,
        crate::StreamSocket
    );
    impl<const S: u32> IsFd for crate::SealedMemfd<S> {}
    impl<T: IsFd> IsFd for Option<T> {}
    impl<T: IsFd> IsFd for Vec<T> {}
    impl<T: IsFd> IsFd for Box<T> {}
    impl<T: IsFd> IsFd for std::collections::VecDeque<T> {}
}
