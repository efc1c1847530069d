//! How values travel: the Thrift compact protocol, the [`Wire`](crate::Wire) and
//! [`Field`](crate::Field) traits, messages, the result structs of calls, and the fd table of
//! a received frame.
//!
//! This module is public for code that implements [`Wire`](crate::Wire) by hand or speaks the
//! protocol without the runtime: [`Encoder`] and [`Decoder`] write and read compact-protocol
//! bytes and move fds in and out of the frame's fd table. Everything else users need is
//! re-exported at the crate root.
//!
//! Organization:
//! - `compact`: [`Encoder`], [`Decoder`], [`TType`], [`MessageType`]: the compact protocol,
//!   written by hand for the hot path (its module docs say why).
//! - `varint`: LEB128 varints, shared with the THeader frame parser.
//! - `wire`: `Wire`, `Field`, `Binary`: how each Rust type travels.
//! - `message`: `Message`, `encode`, `decode`: a whole value and its fds.
//! - `call_result`: the result struct of a method (success field 0, exception field 1).
//! - `fd_table`: `FdTable`: each fd index claimed once, the rest closed.
//! - `error`: `EncodeError`, `DecodeError` (with the field path where decoding stopped).
//! - `buffers`: spare encode buffers, kept per thread.

pub(crate) mod buffers;
pub(crate) mod call_result;
mod compact;
pub(crate) mod error;
pub(crate) mod fd_table;
pub(crate) mod message;
pub(crate) mod varint;
pub(crate) mod wire;

pub use compact::{DEFAULT_MAX_DEPTH, Decoder, Encoder, MessageHeader, MessageType, TType};
pub(crate) use compact::{Encoded, SPLICE_MIN, view_of};
