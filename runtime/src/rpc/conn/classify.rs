//! What a received frame is, decided once for every driver and both roles: a stream frame
//! (it has `fdrpc-stream`), or a message (a call, a oneway, a reply, an exception).

use std::time::Duration;

use super::call_headers::{HEADER_TIMEOUT, HEADER_TRACE, parse_timeout};
use super::stream_frame::{HEADER_CREDIT, HEADER_STREAM, StreamFrame, parse_credit};
use crate::codec::error::DecodeError;
use crate::codec::fd_table::FdTable;
use crate::codec::{Decoder, MessageHeader};
use crate::rpc::trace::TraceContext;
use crate::transport::error::{FrameError, TransportError};
use crate::transport::frame::Frame;

/// A received frame, classified.
#[derive(Debug)]
pub(crate) enum Classified<'f> {
    /// A frame with an `fdrpc-stream` header: it belongs to the stream of `seqid`, whatever
    /// its message type says.
    Stream {
        seqid: i32,
        kind: StreamFrame,
        /// `fdrpc-credit` of a `credit` frame; 0 for the other kinds.
        credit: u32,
        /// The payload after the message header.
        body: &'f [u8],
    },
    /// Any other frame.
    Message {
        header: MessageHeader<'f>,
        /// The payload after the message header.
        body: &'f [u8],
        /// `fdrpc-credit`, if present: the window a call opening a stream grants. `Err` if it
        /// is not a valid credit.
        credit: Option<Result<u32, Malformed>>,
        /// `client_timeout`: how long the caller waits, if it said (0 is no deadline). `Err`
        /// if it is not a valid timeout.
        timeout: Result<Option<Duration>, BadTimeout>,
        /// `traceparent`, unparsed: see [`parse_trace`].
        trace: Option<&'f [u8]>,
    },
}

/// A `client_timeout` that is not decimal milliseconds: [`Malformed::BadTimeout`], kept small
/// in the common case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BadTimeout;

impl From<BadTimeout> for Malformed {
    fn from(_: BadTimeout) -> Self {
        Malformed::BadTimeout
    }
}

/// The caller's trace, from a `traceparent` value: `None` if it is not one (an invalid one is
/// ignored, as W3C Trace Context asks).
pub(crate) fn parse_trace(value: &[u8]) -> Option<TraceContext> {
    std::str::from_utf8(value)
        .ok()
        .and_then(TraceContext::parse)
}

/// Why a frame could not be classified.
#[derive(Debug)]
pub(crate) enum Malformed {
    /// The payload does not start with a Thrift compact message header.
    Header(DecodeError),
    /// An `fdrpc-stream` value that is not one of the six kinds.
    UnknownStreamKind,
    /// An `fdrpc-credit` that is missing from a `credit` frame, not decimal, or above 65536.
    BadCredit,
    /// A `client_timeout` that is not decimal milliseconds.
    BadTimeout,
}

impl Malformed {
    /// The reason, for logs and replies.
    pub(crate) fn reason(&self) -> String {
        match self {
            Malformed::Header(e) => format!("undecodable message header: {e}"),
            Malformed::UnknownStreamKind => UNKNOWN_STREAM_KIND.into(),
            Malformed::BadCredit => BAD_CREDIT.into(),
            Malformed::BadTimeout => BAD_TIMEOUT.into(),
        }
    }

    /// What ends the connection when the peer sends such a frame.
    pub(crate) fn into_transport_error(self) -> TransportError {
        match self {
            Malformed::Header(e) => TransportError::Decode(e),
            Malformed::UnknownStreamKind => FrameError::Malformed(UNKNOWN_STREAM_KIND).into(),
            Malformed::BadCredit => FrameError::Malformed(BAD_CREDIT).into(),
            Malformed::BadTimeout => FrameError::Malformed(BAD_TIMEOUT).into(),
        }
    }
}

const UNKNOWN_STREAM_KIND: &str = "unknown `fdrpc-stream` value";
const BAD_CREDIT: &str = "`fdrpc-credit` missing, not decimal, or above 65536";
const BAD_TIMEOUT: &str = "`client_timeout` is not decimal milliseconds";

/// Classifies `frame`.
///
/// # Errors
///
/// [`Malformed`]: see its variants.
pub(crate) fn classify<'f>(frame: &Frame<'f>) -> Result<Classified<'f>, Malformed> {
    let payload = frame.payload;
    let mut dec = Decoder::new(payload, FdTable::empty());
    let header = dec.read_message_header().map_err(Malformed::Header)?;
    let body = payload
        .get(payload.len() - dec.remaining()..)
        .unwrap_or_default();
    // One pass over the info headers; the first of a key counts, as `Frame::header` has it.
    let (mut stream, mut credit, mut timeout, mut trace) = (None, None, None, None);
    for (key, value) in frame.headers() {
        if key == HEADER_STREAM.as_bytes() {
            stream.get_or_insert(value);
        } else if key == HEADER_CREDIT.as_bytes() {
            credit.get_or_insert(value);
        } else if key == HEADER_TIMEOUT.as_bytes() {
            timeout.get_or_insert(value);
        } else if key == HEADER_TRACE.as_bytes() {
            trace.get_or_insert(value);
        }
    }
    match stream {
        Some(kind) => {
            let kind = StreamFrame::parse(kind).ok_or(Malformed::UnknownStreamKind)?;
            let credit = match kind {
                StreamFrame::Credit => credit.and_then(parse_credit).ok_or(Malformed::BadCredit)?,
                _ => 0,
            };
            Ok(Classified::Stream {
                seqid: header.seqid,
                kind,
                credit,
                body,
            })
        }
        None => Ok(Classified::Message {
            header,
            body,
            credit: credit.map(|v| parse_credit(v).ok_or(Malformed::BadCredit)),
            timeout: match timeout {
                None => Ok(None),
                Some(v) => parse_timeout(v).ok_or(BadTimeout),
            },
            trace,
        }),
    }
}
