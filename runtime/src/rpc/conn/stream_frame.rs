//! The stream frames of the protocol (docs/PROTOCOL.md section 5): what the `fdrpc-stream`
//! and `fdrpc-credit` info headers say, parsed and named in one place.

/// `fdrpc-stream`: what a stream frame is. A frame with this header is never a call.
pub(crate) const HEADER_STREAM: &str = "fdrpc-stream";
/// `fdrpc-credit`: items granted, on `credit` frames and on the call that opens a stream.
pub(crate) const HEADER_CREDIT: &str = "fdrpc-credit";

/// The most items one `fdrpc-credit` may grant (the protocol's bound, which is also the
/// largest [`Settings::stream_window`](crate::Settings::stream_window)).
pub(crate) const MAX_CREDIT: u32 = crate::settings::MAX_STREAM_WINDOW;

/// The window of a stream whose opening call carries no `fdrpc-credit` (docs/PROTOCOL.md).
pub(crate) const ABSENT_CREDIT_WINDOW: u32 = 16;

/// The kinds of stream frames (`fdrpc-stream` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamFrame {
    /// From the producer: an item, result struct field 0.
    Item,
    /// From the producer: its error, result struct field 1; the stream is over.
    Error,
    /// From the producer: the stream is over.
    End,
    /// From the consumer: `fdrpc-credit` more items may be sent.
    Credit,
    /// From the consumer: no more items are wanted.
    Cancel,
    /// From the producer: it gave up without ending the stream.
    Abort,
}

impl StreamFrame {
    /// The kind of a frame carrying a producer's item, or its final error.
    pub(crate) fn carrying(is_error: bool) -> StreamFrame {
        if is_error {
            StreamFrame::Error
        } else {
            StreamFrame::Item
        }
    }

    /// The header value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StreamFrame::Item => "item",
            StreamFrame::Error => "error",
            StreamFrame::End => "end",
            StreamFrame::Credit => "credit",
            StreamFrame::Cancel => "cancel",
            StreamFrame::Abort => "abort",
        }
    }

    /// The kind a header value names, if any.
    pub(crate) fn parse(v: &[u8]) -> Option<Self> {
        Some(match v {
            b"item" => StreamFrame::Item,
            b"error" => StreamFrame::Error,
            b"end" => StreamFrame::End,
            b"credit" => StreamFrame::Credit,
            b"cancel" => StreamFrame::Cancel,
            b"abort" => StreamFrame::Abort,
            _ => return None,
        })
    }
}

/// Parses an `fdrpc-credit` value: decimal ASCII digits, 0 to [`MAX_CREDIT`]. Anything else
/// (a sign, spaces, a larger number) is `None`.
pub(crate) fn parse_credit(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 6 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    (n <= MAX_CREDIT).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_nothing_else_parses() {
        for k in [
            StreamFrame::Item,
            StreamFrame::Error,
            StreamFrame::End,
            StreamFrame::Credit,
            StreamFrame::Cancel,
            StreamFrame::Abort,
        ] {
            assert_eq!(StreamFrame::parse(k.as_str().as_bytes()), Some(k));
        }
        assert_eq!(StreamFrame::parse(b"Item"), None);
        assert_eq!(StreamFrame::parse(b""), None);
        assert_eq!(StreamFrame::carrying(true), StreamFrame::Error);
        assert_eq!(StreamFrame::carrying(false), StreamFrame::Item);
    }

    #[test]
    fn credit_is_decimal_and_bounded() {
        assert_eq!(parse_credit(b"0"), Some(0));
        assert_eq!(parse_credit(b"16"), Some(16));
        assert_eq!(parse_credit(b"65536"), Some(65536));
        assert_eq!(parse_credit(b"065536"), Some(65536));
        for bad in [
            &b"65537"[..],
            b"999999",
            b"1000000",
            b"",
            b"-1",
            b"+5",
            b" 5",
            b"5 ",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(parse_credit(bad), None, "{bad:?}");
        }
    }
}
