//! Typed errors of encoding and decoding values.

use std::fmt;
use std::io;

/// Why a message could not be encoded.
///
/// Encoding only fails on values Thrift cannot represent; the fds already moved into the
/// message's table are closed when the error is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An unsigned integer is larger than the Thrift integer it travels as. A `u64` that
    /// needs its full range travels as [`U64Bits`](crate::U64Bits).
    #[error("{value} does not fit in a Thrift {thrift_type}{hint}", hint = if *thrift_type == "i64" { "; to carry all 64 bits of a u64, use fdrpc::U64Bits (the i64 with the same bits)" } else { "" })]
    IntegerOutOfRange {
        /// The value as it was given.
        value: u64,
        /// The Thrift type that carries it (`i64`, ...).
        thrift_type: &'static str,
    },
    /// A string, binary or collection longer than Thrift's `i32` length prefix allows.
    #[error("a {what} of {len} elements is longer than Thrift allows (2^31 - 1)")]
    TooLong {
        /// What was too long (`string`, `list`, ...).
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// More fds than the sender's limit for one message.
    #[error("the message holds {count} fds, more than the limit of {limit}")]
    TooManyFds {
        /// Fds in the message.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Why bytes and fds could not be decoded into a value.
///
/// The error names the field where decoding stopped (outermost first, for example
/// `Opened.extra[3]`). Every fd that was not handed to the caller has been closed by the time
/// the error is returned.
pub struct DecodeError(Box<DecodeErrorInner>);

struct DecodeErrorInner {
    kind: DecodeErrorKind,
    /// Path segments, innermost first (pushed while unwinding).
    path: Vec<PathSegment>,
}

#[derive(Debug, Clone)]
enum PathSegment {
    Field(&'static str),
    Index(usize),
}

/// What went wrong while decoding; see [`DecodeError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a value.
    Truncated,
    /// A varint longer than its type allows.
    BadVarint,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// A byte that is not a Thrift compact type code.
    UnknownType(u8),
    /// A field or element has a Thrift type other than the one declared.
    WrongType {
        /// The Thrift type the receiver declares.
        expected: &'static str,
        /// The Thrift type found on the wire.
        found: &'static str,
    },
    /// A required field is absent.
    MissingField,
    /// A length or element count larger than the bytes that remain could hold.
    LengthTooLarge(u64),
    /// Structs, lists or maps nested deeper than the decoder allows.
    TooDeep(u32),
    /// An integer outside the range of the Rust type it decodes into.
    IntegerOutOfRange(i64),
    /// An enum value no variant carries.
    UnknownEnumValue(i32),
    /// A union with no field set, with an unknown field, or with more than one field set.
    InvalidUnion(&'static str),
    /// A fd index that is negative or not below the number of fds the frame carries.
    FdIndexOutOfRange {
        /// The index found on the wire.
        index: i32,
        /// The number of fds the frame carries.
        count: usize,
    },
    /// A fd index that an earlier field already claimed.
    FdIndexClaimedTwice(i32),
    /// Fds the frame carries that no field claimed.
    UnclaimedFds(usize),
    /// A typed fd that is not the kind of file its field requires.
    FdKindMismatch {
        /// What the field requires (`regular file`, `memfd sealed with ...`).
        expected: String,
        /// What arrived.
        found: String,
    },
    /// Inspecting a received fd failed.
    FdInspection(io::ErrorKind),
    /// Bytes left over after the value ended.
    TrailingBytes(usize),
    /// The Thrift message header is not what fdrpc expects.
    BadMessageHeader(String),
    /// A call's arguments were asked for a second time: they, and their fds, were already
    /// handed out.
    ArgumentsTaken,
}

impl DecodeError {
    /// A new error of this kind, not yet attached to a field.
    pub fn new(kind: DecodeErrorKind) -> Self {
        DecodeError(Box::new(DecodeErrorInner {
            kind,
            path: Vec::new(),
        }))
    }

    /// What went wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.0.kind
    }

    /// The field path where decoding stopped, such as `Opened.extra[3]`; empty at the top.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.0.path.iter().rev() {
            match seg {
                PathSegment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                PathSegment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// Records that the error happened inside field `name` (used by generated code).
    #[doc(hidden)]
    #[cold]
    pub fn in_field(mut self, name: &'static str) -> Self {
        self.0.path.push(PathSegment::Field(name));
        self
    }

    /// Records that the error happened inside element `index` of a collection.
    #[doc(hidden)]
    #[cold]
    pub fn at_index(mut self, index: usize) -> Self {
        self.0.path.push(PathSegment::Index(index));
        self
    }
}

impl From<DecodeErrorKind> for DecodeError {
    #[cold]
    fn from(kind: DecodeErrorKind) -> Self {
        DecodeError::new(kind)
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match self {
            Truncated => f.write_str("input ended inside a value"),
            BadVarint => f.write_str("malformed varint"),
            InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            UnknownType(t) => write!(f, "unknown Thrift compact type code {t}"),
            WrongType { expected, found } => {
                write!(f, "expected Thrift type {expected}, found {found}")
            }
            MissingField => f.write_str("required field is missing"),
            LengthTooLarge(n) => write!(f, "length {n} exceeds the bytes that remain"),
            TooDeep(d) => write!(f, "nesting deeper than {d} levels"),
            IntegerOutOfRange(v) => write!(f, "integer {v} is out of range for its Rust type"),
            UnknownEnumValue(v) => write!(f, "unknown enum value {v}"),
            InvalidUnion(why) => write!(f, "invalid union: {why}"),
            FdIndexOutOfRange { index, count } => {
                write!(
                    f,
                    "fd index {index} is out of range (the frame carries {count} fds)"
                )
            }
            FdIndexClaimedTwice(i) => write!(f, "fd index {i} is claimed twice"),
            UnclaimedFds(n) => write!(f, "{n} fds carried by the frame were claimed by no field"),
            FdKindMismatch { expected, found } => write!(f, "expected {expected}, found {found}"),
            FdInspection(kind) => write!(f, "could not inspect the received fd: {kind}"),
            TrailingBytes(n) => write!(f, "{n} bytes follow the value"),
            BadMessageHeader(why) => write!(f, "bad Thrift message header: {why}"),
            ArgumentsTaken => f.write_str("the call's arguments were already decoded"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_empty() {
            write!(f, "{}", self.0.kind)
        } else {
            write!(f, "in field `{path}`: {}", self.0.kind)
        }
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("kind", &self.0.kind)
            .field("path", &self.path())
            .finish()
    }
}

impl std::error::Error for DecodeError {}
