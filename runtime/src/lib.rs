//! The runtime of [fdrpc](https://docs.rs/fdrpc). Users depend on the `fdrpc` crate, which
//! re-exports this one with the macros; its docs are the guide.
//!
//! # Layers, and what is public
//!
//! From the bottom up:
//! - [`codec`]: the Thrift compact protocol ([`codec::Encoder`], [`codec::Decoder`]), and the
//!   [`Wire`], [`Field`] and [`Message`] traits with [`encode`] and [`decode`]. Public: a
//!   hand-written [`Wire`] impl uses the encoder and decoder.
//! - fd types: the standard owned fd types travel as fields; [`RegularFile`], [`Directory`],
//!   [`Fifo`], [`StreamSocket`] and [`SealedMemfd`] check what they hold on arrival.
//! - [`transport`]: THeader frames ([`transport::frame`]) and the send and receive queues that
//!   match fds to frames over `SCM_RIGHTS`. Public, for peers that speak raw frames (another
//!   event loop, a test adversary); the queues are sans-IO and take the socket as an argument.
//! - [`Channel`]: single messages with fds over a blocking socket, without a service.
//! - RPC: the [`Client`], the [`BlockingClient`], the [`Server`], [`Stream`]s, over one
//!   connection core. Public: what users call and name. The types only generated code needs
//!   (how a call is dispatched, how a stream is produced) are in `__private`, hidden, and may
//!   change in any release.
//! - [`Settings`]: every limit and timeout, for all of the above.
//!
//! # Features
//!
//! - `tokio` (default): the async [`Client`], the [`Server`] and async streams. Without it,
//!   the blocking client, [`Channel`] and the codec build with no async runtime at all.
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
pub mod child;
pub mod codec;
mod fd;
pub mod idl;
mod rpc;
mod settings;
pub mod systemd;
// Not public API: the sans-IO queues and frames, for the project's tests and fuzz targets.
#[doc(hidden)]
pub mod transport;

/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) is the `binary` type that is not copied
/// on the way (see its [`Wire`] implementation): re-exported so that its version is the one
/// fdrpc was built with.
pub use bytes;
pub use channel::Channel;
pub use codec::error::{DecodeError, DecodeErrorKind, EncodeError};
pub use codec::fd_table::FdTable;
pub use codec::message::{Message, decode, encode};
pub use codec::wire::{Binary, Field, U64Bits, Wire, message_idl};
pub use fd::checked::{Directory, Fifo, RegularFile, SealedMemfd, StreamSocket, seals};
pub use fd::pool::{
    DEFAULT_MAX_POOL_BYTES, MAX_POOL_SLOTS, Pool, PoolBufMut, PoolBuffer, PoolError, PoolReader,
    PoolStats, PoolView, ReleaseFault, SharedPool,
};
pub use fd::shared_memory::{MemfdMap, MemfdWriter};
pub use idl::{Described, INTROSPECTION_METHOD};
pub use rpc::{
    ApplicationError, ApplicationErrorKind, BlockingClient, BlockingServer, BlockingStreaming,
    CallEnd, CallError, CallHook, CallOutcome, ClientEnd, ConnectionError, Context, MethodName,
    PeerCredentials, Protocol, RpcError, ServeEndpointError, ServedBy, ServerEnd, Service,
    ServiceSet, Shutdown, Stream, Streaming, TraceContext, Traced, endpoints,
};
pub use rpc::{BridgeAlreadySet, TraceBridge, set_trace_bridge};
#[cfg(feature = "tokio")]
pub use rpc::{Client, IntoConnection, IntoListener, Listener, Server};
pub use settings::{DEFAULT_WINDOW, Settings};
pub use transport::error::{FdStreamError, FrameError, TransportError};

/// Expands to its input when the runtime is built with tokio, to nothing otherwise: generated
/// code wraps the async client and the server in it.
#[cfg(feature = "tokio")]
#[doc(hidden)]
#[macro_export]
macro_rules! __fdrpc_if_tokio {
    ($($t:tt)*) => { $($t)* };
}

/// Expands to its input when the runtime is built with tokio, to nothing otherwise: generated
/// code wraps the async client and the server in it.
#[cfg(not(feature = "tokio"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __fdrpc_if_tokio {
    ($($t:tt)*) => {};
}

/// Items generated code uses. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::__fdrpc_if_tokio as if_tokio;
    pub use crate::codec::call_result::{
        decode_result, decode_void_result, encode_result, encode_void_result,
    };
    pub use crate::codec::error::{DecodeError, DecodeErrorKind, EncodeError};
    pub use crate::codec::message::Message;
    pub use crate::codec::wire::{Binary, BinaryField, Field, Wire, display};
    pub use crate::codec::{Decoder, Encoder, TType};
    pub use crate::idl::{Idl, IdlField, IdlFunction, introspection_function, is_reserved};
    #[cfg(feature = "tokio")]
    pub use crate::rpc::Client;
    pub use crate::rpc::Streaming;
    pub use crate::rpc::{
        BlockingClient, BlockingSink, BlockingStreaming, BoxFuture, CallError, Dispatch,
        ErasedProducer, HandlerReply, Incoming, ReplyError, ReplyTo, RpcError, Service, SinkStatus,
        Stream, StreamReply, StreamSlot, flatten_declared, flatten_undeclared, producer,
    };
    pub use core::convert::Infallible;
    pub use core::option::Option;
    pub use core::result::Result;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use std::vec::Vec;

    /// What a method's error type must be: a [`Message`]. Generated code names the error type
    /// `E` as `<E as Exception>::Itself`, so a type that is not a message is reported once, at
    /// the type, with `Message`'s own message (the impl is `do_not_recommend`, so no
    /// generated argument struct is listed as a type that implements it).
    pub trait Exception {
        /// `Self`.
        type Itself: Message;
    }
    #[diagnostic::do_not_recommend]
    impl<T: Message> Exception for T {
        type Itself = T;
    }

    /// Generated code names each result, stream item and sink item type `T` as
    /// `<T as Travels>::Itself`: it is `T` when `T` can be a field, and when it cannot, each
    /// use reports the same error at the type, which the compiler shows once (a bound on a
    /// function would add one error per function).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a field of an fdrpc message",
        label = "not a wire type",
        note = "field types are wire types (bool, integers, f64, String, collections, owned fd types such as OwnedFd or File, types that derive `fdrpc::Message`) or an `Option` of one"
    )]
    pub trait Travels {
        /// `Self`.
        type Itself: Field;
    }
    impl<T: Field> Travels for T {
        type Itself = T;
    }

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
