//! [`Message`]: a struct or union that can be the payload of a frame, and the functions that
//! turn one into bytes plus fds and back.

use std::os::fd::OwnedFd;

use super::error::{DecodeError, EncodeError};
use super::fd_table::FdTable;
use super::wire::Wire;
use super::{Decoder, Encoder};

/// A Thrift struct or union: what `#[derive(fdrpc::Message)]` implements on structs and on
/// enums whose variants carry data. (On unit-only enums, the derive implements only
/// [`Wire`]: a Thrift `enum` is an `i32`, not a message.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an fdrpc message",
    label = "does not derive `fdrpc::Message`",
    note = "add `#[derive(fdrpc::Message)]` to the struct or enum"
)]
pub trait Message: Wire {
    /// The Thrift name of the type (its Rust name unless `#[fdrpc(rename = "...")]`).
    const NAME: &'static str;
}

/// Encodes `value` into compact-protocol bytes and the fds it held, in encode order.
///
/// # Errors
///
/// See [`EncodeError`]; the fds already moved are closed.
///
/// # Examples
///
/// ```
/// let (bytes, fds) = fdrpc::encode(vec![1i32, 2, 3])?;
/// assert_eq!(bytes, [0x35, 2, 4, 6]);
/// assert!(fds.is_empty());
/// # Ok::<(), fdrpc::EncodeError>(())
/// ```
pub fn encode<T: Wire>(value: T) -> Result<(Vec<u8>, Vec<OwnedFd>), EncodeError> {
    let mut enc = Encoder::new();
    value.encode(&mut enc)?;
    Ok(enc.into_parts())
}

/// Decodes a value from exactly `bytes`, whose fd indices refer to `fds`.
///
/// # Errors
///
/// See [`DecodeError`]. Trailing bytes and fds no field claimed are errors too. Every fd not
/// handed out in the returned value is closed.
///
/// # Examples
///
/// ```
/// let v: Vec<i32> = fdrpc::decode(&[0x35, 2, 4, 6], Vec::new())?;
/// assert_eq!(v, [1, 2, 3]);
/// # Ok::<(), fdrpc::DecodeError>(())
/// ```
pub fn decode<T: Wire>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, DecodeError> {
    let mut dec = Decoder::new(bytes, FdTable::new(fds));
    let value = T::decode(&mut dec)?;
    dec.finish()?;
    Ok(value)
}
