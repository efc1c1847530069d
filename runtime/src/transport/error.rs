//! Typed errors of framing and of the socket layer.

use std::io;

use crate::codec::error::{DecodeError, EncodeError};

/// Why a THeader frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame length is below the THeader minimum or above the configured maximum.
    #[error("frame length {len} is outside 10..={max}")]
    BadLength {
        /// The length the frame declares.
        len: u64,
        /// The largest frame accepted.
        max: usize,
    },
    /// The magic is not THeader's `0x0FFF`.
    #[error("bad magic {0:#06x} (THeader is 0x0fff)")]
    BadMagic(u16),
    /// The header section is larger than the frame.
    #[error("header size {header} does not fit in a frame of {frame} bytes")]
    BadHeaderSize {
        /// The header size in bytes.
        header: usize,
        /// The frame size after the length field.
        frame: usize,
    },
    /// A protocol other than compact (2).
    #[error("protocol id {0} is not compact (2)")]
    UnsupportedProtocol(u64),
    /// Transforms (compression) are not supported.
    #[error("THeader transforms are not supported ({0} present)")]
    UnsupportedTransform(u64),
    /// The header section is malformed.
    #[error("malformed THeader header: {0}")]
    Malformed(&'static str),
    /// An `fdrpc-fds` or `fdrpc-fd-seq` value that is not a decimal integer in range.
    #[error("bad `{key}` header value")]
    BadFdHeader {
        /// The header key.
        key: &'static str,
    },
    /// More fds than the per-frame limit.
    #[error("frame declares {count} fds, more than the limit of {limit}")]
    TooManyFds {
        /// Fds the frame declares.
        count: u64,
        /// The configured limit.
        limit: usize,
    },
}

/// Why the fd stream of a connection is broken. The connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FdStreamError {
    /// The frame claims fds that were not received with or before its bytes.
    #[error("frame declares {declared} fds but only {available} arrived")]
    MissingFds {
        /// Fds the frame declares.
        declared: usize,
        /// Fds waiting in the receive queue.
        available: usize,
    },
    /// The frame's `fdrpc-fd-seq` disagrees with the number of fds claimed so far.
    #[error("fd sequence mismatch: frame says {declared}, receiver has claimed {claimed}")]
    SequenceMismatch {
        /// The frame's `fdrpc-fd-seq`.
        declared: i64,
        /// Fds claimed by earlier frames.
        claimed: i64,
    },
    /// The kernel truncated the control message (`MSG_CTRUNC`): fds were lost.
    #[error("control data truncated (MSG_CTRUNC): fds were lost, likely RLIMIT_NOFILE")]
    ControlTruncated,
    /// Fds received but not yet claimed by a frame exceed the per-connection budget.
    #[error("{queued} fds wait unclaimed, more than the budget of {budget}")]
    BudgetExceeded {
        /// Fds waiting.
        queued: usize,
        /// The budget.
        budget: usize,
    },
    /// The peer closed the connection with fds that no frame claimed.
    #[error("connection closed with {0} unclaimed fds")]
    UnclaimedAtEof(usize),
    /// A control message other than `SCM_RIGHTS`.
    #[error("unexpected control message")]
    UnexpectedControlMessage,
    /// A frame stayed incomplete, or received fds stayed unclaimed, for longer than the
    /// timeout (a peer pinning fds in a half-sent frame).
    #[error("stalled: a frame stayed incomplete or fds stayed unclaimed for {0:?}")]
    Stalled(std::time::Duration),
    /// The peer stopped reading: replies stayed unwritten for longer than the timeout.
    #[error("the peer has not read its replies for {0:?}")]
    NotReading(std::time::Duration),
}

/// Errors of sending or receiving one message over a socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The message could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The payload could not be decoded.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A frame was malformed.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// The fd stream is broken.
    #[error("fd stream: {0}")]
    FdStream(#[from] FdStreamError),
    /// The peer closed the connection (between frames).
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed by peer inside a frame ({0} bytes pending)")]
    ClosedMidFrame(usize),
}
