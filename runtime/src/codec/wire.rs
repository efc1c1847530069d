//! [`Wire`]: how a Rust type travels as a Thrift value, and [`Field`]: how it sits in a struct.
//!
//! The mapping (also in `docs/PROTOCOL.md`):
//!
//! | Rust | Thrift |
//! |---|---|
//! | `bool` | `bool` |
//! | `i8`, `i16`, `i32`, `i64` | `byte`, `i16`, `i32`, `i64` |
//! | `u8`, `u16`, `u32` | `i16`, `i32`, `i64` (lossless; out-of-range values are decode errors) |
//! | `u64`, `usize` | `i64` (values above `i64::MAX` are encode errors) |
//! | [`U64Bits`] | `i64` with the same 64 bits (the full `u64` range) |
//! | `f64` | `double` |
//! | `String` | `string` |
//! | `Vec<u8>`, [`Binary`], [`bytes::Bytes`] | `binary` (other `Vec<T>`: `list<T>`) |
//! | `()` | empty `struct` |
//! | `Vec<T>`, `VecDeque<T>` | `list<T>` |
//! | `HashSet<T>`, `BTreeSet<T>` | `set<T>` |
//! | `HashMap<K, V>`, `BTreeMap<K, V>` | `map<K, V>` |
//! | `Box<T>` | `T` |
//! | `Option<T>` (fields only) | `optional` field |
//! | fd types (`OwnedFd`, `File`, ...) | `i32` index into the frame's fd table |

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

use super::error::{DecodeError, DecodeErrorKind, EncodeError};
use super::{Decoder, Encoder, TType};
use crate::idl::Idl;

/// A type that can travel as a Thrift value in an fdrpc message.
///
/// Implemented for the primitive, collection and fd types (mapping in `docs/PROTOCOL.md`), and by
/// `#[derive(fdrpc::Message)]`. Encoding consumes the value: the fds it holds move into the
/// message's fd table, and are closed locally once sent.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot travel in an fdrpc message",
    label = "not a wire type",
    note = "wire types are bool, integers, f64, String, (), Vec/VecDeque/sets/maps/Box of wire types, owned fd types (OwnedFd, File, UnixStream, ...) and types that derive `fdrpc::Message`",
    note = "for a generic parameter, add the bound `T: fdrpc::Wire`"
)]
pub trait Wire: Sized {
    /// The Thrift type code of values of this type.
    const TTYPE: TType;

    /// Whether a value of this type can hold fds.
    const HAS_FDS: bool = false;

    /// Writes the value; fds move into the encoder's table.
    ///
    /// # Errors
    ///
    /// Values Thrift cannot represent (see [`EncodeError`]).
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError>;

    /// Reads a value whose Thrift type the caller has checked to be [`Wire::TTYPE`].
    ///
    /// # Errors
    ///
    /// Malformed input (see [`DecodeError`]); fds already claimed for a partial value are
    /// closed when it is dropped.
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// The Thrift IDL type of this type, registering any definitions it needs in `idl`.
    fn idl_type(idl: &mut Idl) -> String;

    /// Writes the value as struct field `id`. `bool` overrides this to put its value into the
    /// field header, as the compact protocol does.
    #[doc(hidden)]
    #[inline]
    fn encode_field(self, id: i16, last: &mut i16, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_field_header(Self::TTYPE as u8, id, last);
        self.encode(enc)
    }

    /// `u8` alone: a `Vec` of it travels as Thrift `binary` rather than a list (see the
    /// mapping in the module docs). Then [`Wire::vec_into_bytes`] and
    /// [`Wire::vec_from_bytes`] convert without copying.
    #[doc(hidden)]
    const IS_BYTE: bool = false;

    /// `Ok` with the bytes, if this is `u8` (the same vector, not a copy); `Err` with the
    /// vector as it was otherwise.
    #[doc(hidden)]
    #[inline]
    fn vec_into_bytes(v: Vec<Self>) -> Result<Vec<u8>, Vec<Self>> {
        Err(v)
    }

    /// The vector of `bytes`, if this is `u8` (the same vector, not a copy).
    #[doc(hidden)]
    #[inline]
    fn vec_from_bytes(bytes: Vec<u8>) -> Option<Vec<Self>> {
        let _ = bytes;
        None
    }

    /// Writes the value with its `Display`, if its type has one; `None` otherwise. How
    /// [`CallError`](crate::CallError) shows a service's error: `#[derive(fdrpc::Message)]`
    /// implements it for types that implement `Display`.
    #[doc(hidden)]
    fn fmt_display(&self, f: &mut std::fmt::Formatter<'_>) -> Option<std::fmt::Result> {
        let _ = f;
        None
    }
}

/// A type that can be a field of a message: any [`Wire`] type (a required field) or an
/// `Option` of one (an optional field).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of an fdrpc message",
    label = "not a wire type",
    note = "field types are wire types (bool, integers, f64, String, collections, owned fd types such as OwnedFd or File, types that derive `fdrpc::Message`) or an `Option` of one"
)]
pub trait Field: Sized {
    /// The Thrift type code of the field.
    const TTYPE: TType;
    /// Whether the field may be absent on the wire.
    const OPTIONAL: bool;
    /// Whether the field can hold fds.
    const HAS_FDS: bool;

    /// Writes the field (nothing for `None`).
    ///
    /// # Errors
    ///
    /// As [`Wire::encode`].
    fn encode_field(self, id: i16, last: &mut i16, enc: &mut Encoder) -> Result<(), EncodeError>;

    /// Reads the field after its header announced type `found`.
    ///
    /// # Errors
    ///
    /// [`DecodeErrorKind::WrongType`] if `found` is not the field's type, or as
    /// [`Wire::decode`].
    fn decode_field(dec: &mut Decoder<'_>, found: TType) -> Result<Self, DecodeError>;

    /// The value of an absent field, or `None` if the field is required.
    fn missing() -> Option<Self>;

    /// The Thrift IDL type of the field.
    fn idl_type(idl: &mut Idl) -> String;

    /// As [`Wire::fmt_display`].
    #[doc(hidden)]
    fn fmt_display(&self, f: &mut std::fmt::Formatter<'_>) -> Option<std::fmt::Result>;
}

#[cold]
fn wrong_type(expected: TType, found: TType) -> DecodeError {
    DecodeErrorKind::WrongType {
        expected: expected.name(),
        found: found.name(),
    }
    .into()
}

/// Checks that a value announced as `found` can be read as `T`.
#[inline]
pub(crate) fn expect_type<T: Wire>(found: TType) -> Result<(), DecodeError> {
    if found == T::TTYPE {
        Ok(())
    } else {
        Err(wrong_type(T::TTYPE, found))
    }
}

impl<T: Wire> Field for T {
    const TTYPE: TType = T::TTYPE;
    const OPTIONAL: bool = false;
    const HAS_FDS: bool = T::HAS_FDS;

    #[inline]
    fn encode_field(self, id: i16, last: &mut i16, enc: &mut Encoder) -> Result<(), EncodeError> {
        Wire::encode_field(self, id, last, enc)
    }

    #[inline]
    fn decode_field(dec: &mut Decoder<'_>, found: TType) -> Result<Self, DecodeError> {
        expect_type::<T>(found)?;
        T::decode(dec)
    }

    #[inline]
    fn missing() -> Option<Self> {
        None
    }

    fn idl_type(idl: &mut Idl) -> String {
        <T as Wire>::idl_type(idl)
    }

    fn fmt_display(&self, f: &mut std::fmt::Formatter<'_>) -> Option<std::fmt::Result> {
        Wire::fmt_display(self, f)
    }
}

impl<T: Wire> Field for Option<T> {
    const TTYPE: TType = T::TTYPE;
    const OPTIONAL: bool = true;
    const HAS_FDS: bool = T::HAS_FDS;

    #[inline]
    fn encode_field(self, id: i16, last: &mut i16, enc: &mut Encoder) -> Result<(), EncodeError> {
        match self {
            Some(v) => v.encode_field(id, last, enc),
            None => Ok(()),
        }
    }

    #[inline]
    fn decode_field(dec: &mut Decoder<'_>, found: TType) -> Result<Self, DecodeError> {
        expect_type::<T>(found)?;
        T::decode(dec).map(Some)
    }

    #[inline]
    fn missing() -> Option<Self> {
        Some(None)
    }

    fn idl_type(idl: &mut Idl) -> String {
        T::idl_type(idl)
    }

    fn fmt_display(&self, f: &mut std::fmt::Formatter<'_>) -> Option<std::fmt::Result> {
        self.as_ref().and_then(|v| v.fmt_display(f))
    }
}

impl Wire for bool {
    const TTYPE: TType = TType::Bool;
    fn idl_type(_: &mut Idl) -> String {
        "bool".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_bool(self);
        Ok(())
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.read_bool()
    }
    #[inline]
    fn encode_field(self, id: i16, last: &mut i16, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_field_header(if self { 1 } else { 2 }, id, last);
        Ok(())
    }
}

macro_rules! signed {
    ($($t:ty => $tt:ident, $w:ident, $r:ident;)*) => {$(
        impl Wire for $t {
            const TTYPE: TType = TType::$tt;
            #[inline]
            fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
                enc.$w(self);
                Ok(())
            }
            #[inline]
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                dec.$r()
            }
            fn idl_type(_: &mut Idl) -> String {
                TType::$tt.idl_name().into()
            }
        }
    )*};
}
signed! {
    i8 => Byte, write_i8, read_i8;
    i16 => I16, write_i16, read_i16;
    i32 => I32, write_i32, read_i32;
    i64 => I64, write_i64, read_i64;
}

// Unsigned integers travel in the next wider signed Thrift integer so that every value is
// representable, and decoding rejects what does not fit instead of truncating.
macro_rules! unsigned {
    ($($t:ty => $wide:ty, $tt:ident, $w:ident, $r:ident; { $($byte:item)* })*) => {$(
        impl Wire for $t {
            const TTYPE: TType = TType::$tt;
            #[inline]
            fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
                let v = <$wide>::try_from(self).map_err(|_| EncodeError::IntegerOutOfRange {
                    value: self as u64,
                    thrift_type: TType::$tt.name(),
                })?;
                enc.$w(v);
                Ok(())
            }
            #[inline]
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let v = dec.$r()?;
                <$t>::try_from(v)
                    .map_err(|_| DecodeErrorKind::IntegerOutOfRange(i64::from(v)).into())
            }
            fn idl_type(_: &mut Idl) -> String {
                TType::$tt.idl_name().into()
            }
            $($byte)*
        }
    )*};
}
unsigned! {
    u8 => i16, I16, write_i16, read_i16; {
        const IS_BYTE: bool = true;
        #[inline]
        fn vec_into_bytes(v: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> { Ok(v) }
        #[inline]
        fn vec_from_bytes(bytes: Vec<u8>) -> Option<Vec<u8>> { Some(bytes) }
    }
    u16 => i32, I32, write_i32, read_i32; {}
    u32 => i64, I64, write_i64, read_i64; {}
    u64 => i64, I64, write_i64, read_i64; {}
    usize => i64, I64, write_i64, read_i64; {}
}

/// A `u64` that carries its full range: it travels as the Thrift `i64` with the same 64 bits
/// (values above `i64::MAX` arrive at a stock Thrift peer as negative numbers). For hashes,
/// checksums and ids, where a plain `u64` field would refuse half of its values: a `u64`
/// travels as an `i64` and one above `i64::MAX` fails to encode.
///
/// # Examples
///
/// ```
/// use fdrpc::U64Bits;
///
/// let (bytes, _) = fdrpc::encode(U64Bits(u64::MAX)).unwrap();
/// assert_eq!(fdrpc::decode::<i64>(&bytes, Vec::new()).unwrap(), -1);
/// assert_eq!(fdrpc::decode::<U64Bits>(&bytes, Vec::new()).unwrap(), U64Bits(u64::MAX));
/// assert!(fdrpc::encode(u64::MAX).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct U64Bits(pub u64);

impl From<u64> for U64Bits {
    fn from(v: u64) -> Self {
        U64Bits(v)
    }
}

impl From<U64Bits> for u64 {
    fn from(v: U64Bits) -> Self {
        v.0
    }
}

impl std::ops::Deref for U64Bits {
    type Target = u64;
    fn deref(&self) -> &u64 {
        &self.0
    }
}

impl Wire for U64Bits {
    const TTYPE: TType = TType::I64;
    fn idl_type(_: &mut Idl) -> String {
        "i64".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_i64(self.0 as i64);
        Ok(())
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.read_i64().map(|v| U64Bits(v as u64))
    }
}

impl Wire for f64 {
    const TTYPE: TType = TType::Double;
    fn idl_type(_: &mut Idl) -> String {
        "double".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_double(self);
        Ok(())
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.read_double()
    }
}

impl Wire for String {
    const TTYPE: TType = TType::Binary;
    fn idl_type(_: &mut Idl) -> String {
        "string".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_binary(self.as_bytes())
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.read_str().map(str::to_owned)
    }
}

/// Bytes that travel as Thrift `binary`, as a `Vec<u8>` does too (this type is kept for code
/// written when a `Vec<u8>` travelled as a list; `#[fdrpc(binary)]` still applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binary(pub Vec<u8>);

impl From<Vec<u8>> for Binary {
    fn from(v: Vec<u8>) -> Self {
        Binary(v)
    }
}

impl From<Binary> for Vec<u8> {
    fn from(b: Binary) -> Self {
        b.0
    }
}

impl std::ops::Deref for Binary {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl Wire for Binary {
    const TTYPE: TType = TType::Binary;
    fn idl_type(_: &mut Idl) -> String {
        "binary".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        encode_byte_vec(self.0, enc)
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.read_binary().map(|b| Binary(b.to_vec()))
    }
}

/// Writes an owned byte vector as `binary`: a large one is spliced into the message rather
/// than copied (see [`Encoder::write_binary_shared`]).
#[inline]
fn encode_byte_vec(bytes: Vec<u8>, enc: &mut Encoder) -> Result<(), EncodeError> {
    if bytes.len() < super::SPLICE_MIN {
        enc.write_binary(&bytes)
    } else {
        enc.write_binary_shared(bytes::Bytes::from(bytes))
    }
}

/// Bytes that travel as Thrift `binary` without being copied on the way: a large `Bytes`
/// argument, result or field goes to the socket from its own memory, and one received is a
/// view of the received frame (the frame's memory is freed, or reused for a later frame,
/// when the last view of it is dropped). A buffer can be reused across calls the way
/// `tokio`'s codecs reuse theirs: fill a `BytesMut`, send `split().freeze()`, and the next
/// `reserve` takes the memory back once the message has been written.
///
/// # Examples
///
/// ```
/// use fdrpc::bytes::{BufMut, Bytes, BytesMut};
///
/// let mut buf = BytesMut::with_capacity(1 << 20);
/// buf.put_bytes(7, 1 << 20);
/// let frame: Bytes = buf.split().freeze();
/// let (encoded, _) = fdrpc::encode(frame.clone()).unwrap();
/// drop(frame);
/// let back: Bytes = fdrpc::decode(&encoded, Vec::new()).unwrap();
/// assert_eq!(back.len(), 1 << 20);
/// // Nothing refers to the first buffer any more: its memory is taken back, not allocated.
/// buf.reserve(1 << 20);
/// assert!(buf.capacity() >= 1 << 20);
/// ```
impl Wire for bytes::Bytes {
    const TTYPE: TType = TType::Binary;
    fn idl_type(_: &mut Idl) -> String {
        "binary".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_binary_shared(self)
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.read_binary_shared()
    }
}

/// Converts a field marked `#[fdrpc(binary)]` to and from [`Binary`] (used by generated code).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`#[fdrpc(binary)]` does not apply to `{Self}`",
    label = "not `Vec<u8>` or `Option<Vec<u8>>`",
    note = "`#[fdrpc(binary)]` makes a `Vec<u8>` travel as Thrift `binary`; remove it from other fields"
)]
pub trait BinaryField<Repr>: Sized {
    fn into_repr(self) -> Repr;
    fn from_repr(r: Repr) -> Self;
}

impl BinaryField<Binary> for Vec<u8> {
    fn into_repr(self) -> Binary {
        Binary(self)
    }
    fn from_repr(r: Binary) -> Self {
        r.0
    }
}

impl BinaryField<Option<Binary>> for Option<Vec<u8>> {
    fn into_repr(self) -> Option<Binary> {
        self.map(Binary)
    }
    fn from_repr(r: Option<Binary>) -> Self {
        r.map(|b| b.0)
    }
}

impl Wire for () {
    const TTYPE: TType = TType::Struct;
    fn idl_type(idl: &mut Idl) -> String {
        // Thrift has no unit type: an empty struct stands for it.
        if idl.begin("FdrpcUnit") {
            idl.define_struct("FdrpcUnit", Vec::new());
        }
        "FdrpcUnit".into()
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        enc.write_stop();
        Ok(())
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        // Fields added later by a newer peer are skipped.
        dec.skip(TType::Struct)
    }
}

impl<T: Wire> Wire for Box<T> {
    const TTYPE: TType = T::TTYPE;
    const HAS_FDS: bool = T::HAS_FDS;
    fn idl_type(idl: &mut Idl) -> String {
        T::idl_type(idl)
    }
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        (*self).encode(enc)
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        T::decode(dec).map(Box::new)
    }
    #[inline]
    fn encode_field(self, id: i16, last: &mut i16, enc: &mut Encoder) -> Result<(), EncodeError> {
        (*self).encode_field(id, last, enc)
    }
}

/// Upper bound on what a collection header may make the decoder reserve up front; a hostile
/// count still costs at most the bytes that back it, but large elements could multiply it.
const MAX_PREALLOC_BYTES: usize = 64 * 1024;

#[inline]
fn prealloc<T>(len: usize) -> usize {
    len.min(MAX_PREALLOC_BYTES / std::mem::size_of::<T>().max(1))
}

#[inline]
fn check_elem<T: Wire>(found: TType, len: usize) -> Result<(), DecodeError> {
    // Some writers put any type code on an empty collection.
    if len == 0 {
        Ok(())
    } else {
        expect_type::<T>(found)
    }
}

fn encode_seq<T: Wire, I: ExactSizeIterator<Item = T>>(
    items: I,
    enc: &mut Encoder,
) -> Result<(), EncodeError> {
    enc.write_list_header(T::TTYPE, items.len())?;
    for item in items {
        item.encode(enc)?;
    }
    Ok(())
}

fn decode_seq<T: Wire, C>(
    dec: &mut Decoder<'_>,
    with_capacity: impl FnOnce(usize) -> C,
    mut push: impl FnMut(&mut C, T),
) -> Result<C, DecodeError> {
    let (elem, len) = dec.read_list_header()?;
    check_elem::<T>(elem, len)?;
    dec.enter()?;
    let mut out = with_capacity(prealloc::<T>(len));
    for i in 0..len {
        let v = T::decode(dec).map_err(|e| e.at_index(i))?;
        push(&mut out, v);
    }
    dec.leave();
    Ok(out)
}

/// A `Vec<u8>` travels as Thrift `binary` (as fbthrift's Rust mapping has it); every other
/// `Vec<T>` as `list<T>`.
impl<T: Wire> Wire for Vec<T> {
    fn idl_type(idl: &mut Idl) -> String {
        if T::IS_BYTE {
            "binary".into()
        } else {
            format!("list<{}>", T::idl_type(idl))
        }
    }
    const TTYPE: TType = if T::IS_BYTE {
        TType::Binary
    } else {
        TType::List
    };
    const HAS_FDS: bool = T::HAS_FDS;
    #[inline]
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        match T::vec_into_bytes(self) {
            Ok(bytes) => encode_byte_vec(bytes, enc),
            Err(items) => encode_seq(items.into_iter(), enc),
        }
    }
    #[inline]
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        if T::IS_BYTE {
            // Into a spare buffer of this thread if there is one: a large one is then memory
            // already paged in (see `codec::buffers`).
            let mut bytes = super::buffers::take();
            bytes.extend_from_slice(dec.read_binary()?);
            if let Some(v) = T::vec_from_bytes(bytes) {
                return Ok(v);
            }
        }
        decode_seq(dec, Vec::with_capacity, Vec::push)
    }
}

impl<T: Wire> Wire for VecDeque<T> {
    fn idl_type(idl: &mut Idl) -> String {
        format!("list<{}>", T::idl_type(idl))
    }
    const TTYPE: TType = TType::List;
    const HAS_FDS: bool = T::HAS_FDS;
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        encode_seq(self.into_iter(), enc)
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_seq(dec, VecDeque::with_capacity, VecDeque::push_back)
    }
}

impl<T: Wire + Eq + Hash, S: BuildHasher + Default> Wire for HashSet<T, S> {
    fn idl_type(idl: &mut Idl) -> String {
        format!("set<{}>", T::idl_type(idl))
    }
    const TTYPE: TType = TType::Set;
    const HAS_FDS: bool = T::HAS_FDS;
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        encode_seq(self.into_iter(), enc)
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_seq(
            dec,
            |n| HashSet::with_capacity_and_hasher(n, S::default()),
            |s, v| {
                s.insert(v);
            },
        )
    }
}

impl<T: Wire + Ord> Wire for BTreeSet<T> {
    fn idl_type(idl: &mut Idl) -> String {
        format!("set<{}>", T::idl_type(idl))
    }
    const TTYPE: TType = TType::Set;
    const HAS_FDS: bool = T::HAS_FDS;
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        encode_seq(self.into_iter(), enc)
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_seq(
            dec,
            |_| BTreeSet::new(),
            |s, v| {
                s.insert(v);
            },
        )
    }
}

fn encode_map<K: Wire, V: Wire, I: ExactSizeIterator<Item = (K, V)>>(
    entries: I,
    enc: &mut Encoder,
) -> Result<(), EncodeError> {
    enc.write_map_header(K::TTYPE, V::TTYPE, entries.len())?;
    for (k, v) in entries {
        k.encode(enc)?;
        v.encode(enc)?;
    }
    Ok(())
}

fn decode_map<K: Wire, V: Wire, C>(
    dec: &mut Decoder<'_>,
    with_capacity: impl FnOnce(usize) -> C,
    mut insert: impl FnMut(&mut C, K, V),
) -> Result<C, DecodeError> {
    let (kt, vt, len) = dec.read_map_header()?;
    check_elem::<K>(kt, len)?;
    check_elem::<V>(vt, len)?;
    dec.enter()?;
    let mut out = with_capacity(prealloc::<(K, V)>(len));
    for i in 0..len {
        let k = K::decode(dec).map_err(|e| e.at_index(i))?;
        let v = V::decode(dec).map_err(|e| e.at_index(i))?;
        // A repeated key replaces the earlier value, whose fds are closed here.
        insert(&mut out, k, v);
    }
    dec.leave();
    Ok(out)
}

impl<K: Wire + Eq + Hash, V: Wire, S: BuildHasher + Default> Wire for HashMap<K, V, S> {
    fn idl_type(idl: &mut Idl) -> String {
        let k = K::idl_type(idl);
        format!("map<{k}, {}>", V::idl_type(idl))
    }
    const TTYPE: TType = TType::Map;
    const HAS_FDS: bool = K::HAS_FDS || V::HAS_FDS;
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        encode_map(self.into_iter(), enc)
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_map(
            dec,
            |n| HashMap::with_capacity_and_hasher(n, S::default()),
            |m, k, v| {
                m.insert(k, v);
            },
        )
    }
}

impl<K: Wire + Ord, V: Wire> Wire for BTreeMap<K, V> {
    fn idl_type(idl: &mut Idl) -> String {
        let k = K::idl_type(idl);
        format!("map<{k}, {}>", V::idl_type(idl))
    }
    const TTYPE: TType = TType::Map;
    const HAS_FDS: bool = K::HAS_FDS || V::HAS_FDS;
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        encode_map(self.into_iter(), enc)
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_map(
            dec,
            |_| BTreeMap::new(),
            |m, k, v| {
                m.insert(k, v);
            },
        )
    }
}

/// Picks a type's `Display` when it has one, at a concrete type, without specialization (the
/// "autoref" technique): `(&&Probe(v)).display_or_none(f)` resolves to `ViaDisplay` if `v`'s
/// type implements `Display`, and to `ViaNothing` otherwise. Used by the code
/// `#[derive(fdrpc::Message)]` generates for [`Wire::fmt_display`].
#[doc(hidden)]
pub mod display {
    use std::fmt;

    /// See the module docs.
    #[derive(Debug)]
    pub struct Probe<'a, T: ?Sized>(pub &'a T);

    /// Chosen when the probed type implements `Display`.
    pub trait ViaDisplay {
        /// `Some` of the value written with `Display`.
        fn display_or_none(&self, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result>;
    }

    impl<T: fmt::Display + ?Sized> ViaDisplay for &Probe<'_, T> {
        fn display_or_none(&self, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
            Some(fmt::Display::fmt(self.0, f))
        }
    }

    /// Chosen otherwise.
    pub trait ViaNothing {
        /// `None`.
        fn display_or_none(&self, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result>;
    }

    impl<T: ?Sized> ViaNothing for Probe<'_, T> {
        fn display_or_none(&self, _: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
            None
        }
    }
}

/// The Thrift IDL of one message type and everything it uses: what `_fdrpc_idl` shows of it.
pub fn message_idl<T: Wire>() -> String {
    let mut idl = Idl::new();
    T::idl_type(&mut idl);
    idl.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::os::fd::OwnedFd;

    use super::*;
    use crate::codec::fd_table::FdTable;

    fn idl<T: Wire>() -> String {
        T::idl_type(&mut Idl::new())
    }

    fn round_trip<T: Wire>(v: T) -> (T, Vec<u8>) {
        let mut enc = Encoder::new();
        v.encode(&mut enc).unwrap();
        let (bytes, _) = enc.into_parts();
        let mut dec = Decoder::new(&bytes, FdTable::empty());
        let back = T::decode(&mut dec).unwrap();
        dec.finish().unwrap();
        (back, bytes)
    }

    #[test]
    fn every_container_describes_itself_in_the_idl() {
        assert_eq!(idl::<Vec<u8>>(), "binary");
        assert_eq!(idl::<Vec<i32>>(), "list<i32>");
        assert_eq!(idl::<VecDeque<i64>>(), "list<i64>");
        assert_eq!(idl::<BTreeSet<i16>>(), "set<i16>");
        assert_eq!(idl::<HashSet<String>>(), "set<string>");
        assert_eq!(idl::<BTreeMap<i16, Binary>>(), "map<i16, binary>");
        assert_eq!(idl::<HashMap<String, bool>>(), "map<string, bool>");
        assert_eq!(idl::<Box<f64>>(), "double");
    }

    #[test]
    // Asserted at run time, so that a wrong constant fails this test rather than the build.
    #[allow(clippy::assertions_on_constants)]
    fn a_map_carries_fds_if_its_keys_or_its_values_do() {
        assert!(<HashMap<i32, OwnedFd> as Wire>::HAS_FDS);
        assert!(<BTreeMap<i32, OwnedFd> as Wire>::HAS_FDS);
        assert!(!<HashMap<i32, String> as Wire>::HAS_FDS);
        assert!(!<BTreeMap<i32, String> as Wire>::HAS_FDS);
    }

    fn decode_as<T: Wire>(bytes: &[u8]) -> Result<T, DecodeError> {
        T::decode(&mut Decoder::new(bytes, FdTable::empty()))
    }

    fn wrong_type_of<T: std::fmt::Debug>(
        r: Result<T, DecodeError>,
    ) -> (&'static str, &'static str) {
        match r.unwrap_err().kind() {
            DecodeErrorKind::WrongType { expected, found } => (*expected, *found),
            other => panic!("expected WrongType, got {other:?}"),
        }
    }

    #[test]
    fn collection_elements_of_another_type_are_refused_unless_there_are_none() {
        // A list<i64> of small numbers: its varints would read as i32 too, so only the
        // element type code can tell.
        let longs = round_trip(vec![1i64, 2]).1;
        assert_eq!(wrong_type_of(decode_as::<Vec<i32>>(&longs)), ("i32", "i64"));
        assert_eq!(
            wrong_type_of(decode_as::<BTreeSet<i32>>(&longs)),
            ("i32", "i64")
        );
        // map<i16, i64> read with the wrong key type, then the wrong value type.
        let map = round_trip(BTreeMap::from([(1i16, 2i64)])).1;
        assert_eq!(
            wrong_type_of(decode_as::<BTreeMap<i32, i64>>(&map)),
            ("i32", "i16")
        );
        assert_eq!(
            wrong_type_of(decode_as::<BTreeMap<i16, i32>>(&map)),
            ("i32", "i64")
        );
        // Empty collections may carry any type code (some writers do).
        let empty = round_trip(Vec::<i64>::new()).1;
        assert_eq!(decode_as::<Vec<i32>>(&empty).unwrap(), Vec::<i32>::new());
        let empty = round_trip(BTreeMap::<i16, i64>::new()).1;
        assert!(
            decode_as::<BTreeMap<String, bool>>(&empty)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_box_travels_as_what_it_holds() {
        let (back, bytes) = round_trip(vec![Box::new(300i32), Box::new(-1)]);
        assert_eq!(back, [Box::new(300), Box::new(-1)]);
        assert_eq!(bytes, round_trip(vec![300i32, -1]).1);
    }

    #[test]
    fn binary_and_u64_bits_convert_both_ways() {
        let b = Binary::from(vec![1, 2, 3]);
        assert_eq!(b.len(), 3);
        assert_eq!(*b, [1, 2, 3]);
        assert_eq!(Vec::<u8>::from(b), [1, 2, 3]);
        assert_eq!(u64::from(U64Bits(u64::MAX - 1)), u64::MAX - 1);
        assert_eq!(
            <Option<Vec<u8>> as BinaryField<Option<Binary>>>::into_repr(None),
            None
        );
        assert_eq!(
            <Option<Vec<u8>> as BinaryField<Option<Binary>>>::into_repr(Some(vec![9])),
            Some(Binary(vec![9]))
        );
    }

    /// A hostile element count costs at most what the bytes behind it hold, and a small list
    /// gets exactly its size.
    #[test]
    fn decoding_reserves_the_count_given_up_to_64_kib() {
        let (small, _) = round_trip(vec![7i32; 10]);
        assert_eq!(small.capacity(), 10);
        // 20,000 i32s: the first 16,384 (64 KiB) are reserved up front, the rest by growth.
        let (large, _) = round_trip(vec![1i32; 20_000]);
        assert_eq!(large.capacity(), 2 * (64 * 1024 / 4));
    }

    /// A value shown with its `Display` when it has one (an optional one too), with `Debug`
    /// otherwise: how `CallError` shows a service's error.
    #[test]
    fn a_service_error_shows_its_display_or_else_its_debug() {
        #[derive(Debug)]
        struct Shown;
        impl Wire for Shown {
            const TTYPE: TType = TType::I32;
            fn idl_type(_: &mut Idl) -> String {
                "i32".into()
            }
            fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
                enc.write_i32(0);
                Ok(())
            }
            fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                dec.read_i32().map(|_| Shown)
            }
            fn fmt_display(&self, f: &mut std::fmt::Formatter<'_>) -> Option<std::fmt::Result> {
                Some(f.write_str("shown"))
            }
        }
        fn show<E: std::fmt::Debug + Field>(e: E) -> String {
            crate::CallError::Service(e).to_string()
        }
        assert_eq!(show(Shown), "shown");
        assert_eq!(show(Some(Shown)), "shown");
        assert_eq!(show(5i32), "the service returned an error: 5");
        assert_eq!(show(None::<Shown>), "the service returned an error: None");
    }
}
