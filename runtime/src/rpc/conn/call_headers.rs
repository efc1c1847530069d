//! The info headers a call may carry besides the stream ones (docs/PROTOCOL.md section 6):
//! how long its caller waits (`client_timeout`, as fbthrift names it) and the trace it belongs
//! to (`traceparent`, as W3C Trace Context names it), parsed and written in one place.

use std::time::Duration;

use crate::rpc::trace::{TRACEPARENT_LEN, TraceContext};

/// `client_timeout`: milliseconds the caller waits for the reply, counted from when it sent
/// the call; decimal. fbthrift's clients send it and its servers honour it under this name.
pub(crate) const HEADER_TIMEOUT: &str = "client_timeout";
/// `traceparent`: the caller's trace context, in the W3C format.
pub(crate) const HEADER_TRACE: &str = "traceparent";

/// The longest timeout taken: about 49 days. A longer one is taken as this.
pub(crate) const MAX_TIMEOUT_MS: u64 = u32::MAX as u64;

/// Parses a `client_timeout` value: decimal ASCII digits, at most 20 (a value above
/// [`MAX_TIMEOUT_MS`] is taken as that). `Some(None)` for 0 (no deadline, as fbthrift sends no
/// header then); `None` if malformed.
pub(crate) fn parse_timeout(v: &[u8]) -> Option<Option<Duration>> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = v.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some((ms != 0).then(|| Duration::from_millis(ms.min(MAX_TIMEOUT_MS))))
}

/// A timeout in whole milliseconds, for `client_timeout`: rounded up, so that a timeout below
/// a millisecond is not sent as 0 (none); at most [`MAX_TIMEOUT_MS`].
pub(crate) fn timeout_ms(d: Duration) -> u64 {
    // In u64 (a u128 division is a library call, on every call a client makes): seconds
    // beyond `MAX_TIMEOUT_MS` saturate before they could overflow.
    let whole = d.as_secs().saturating_mul(1000);
    let part = u64::from(d.subsec_nanos().div_ceil(1_000_000));
    whole.saturating_add(part).clamp(1, MAX_TIMEOUT_MS)
}

/// The headers of a call this side sends, formatted without allocating.
pub(crate) struct CallHeaders {
    credit: itoa::Buffer,
    timeout: itoa::Buffer,
    trace: [u8; TRACEPARENT_LEN],
}

impl CallHeaders {
    pub(crate) fn new() -> Self {
        CallHeaders {
            credit: itoa::Buffer::new(),
            timeout: itoa::Buffer::new(),
            trace: [0; TRACEPARENT_LEN],
        }
    }

    /// The headers of a call granting `credit` to the stream it opens (if any), waiting
    /// `timeout` (if any), in `trace` (if any).
    pub(crate) fn headers<'a>(
        &'a mut self,
        credit: Option<u32>,
        timeout: Option<Duration>,
        trace: Option<&TraceContext>,
    ) -> ([(&'static str, &'a str); 3], usize) {
        let mut out = [("", ""); 3];
        if credit.is_none() && timeout.is_none() && trace.is_none() {
            return (out, 0);
        }
        let mut n = 0;
        let mut add = |header| {
            if let Some(slot) = out.get_mut(n) {
                *slot = header;
                n += 1;
            }
        };
        if let Some(c) = credit {
            add((super::stream_frame::HEADER_CREDIT, self.credit.format(c)));
        }
        if let Some(t) = timeout {
            add((HEADER_TIMEOUT, self.timeout.format(timeout_ms(t))));
        }
        if let Some(t) = trace {
            add((HEADER_TRACE, t.format(&mut self.trace)));
        }
        (out, n)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_decimal_milliseconds_and_zero_is_none() {
        assert_eq!(
            parse_timeout(b"100"),
            Some(Some(Duration::from_millis(100)))
        );
        assert_eq!(parse_timeout(b"0"), Some(None));
        assert_eq!(
            parse_timeout(b"99999999999999999999"),
            Some(Some(Duration::from_millis(MAX_TIMEOUT_MS)))
        );
        assert_eq!(
            parse_timeout(b"18446744073709551616"),
            Some(Some(Duration::from_millis(MAX_TIMEOUT_MS)))
        );
        for bad in [
            &b""[..],
            b"-1",
            b"1.5",
            b" 1",
            b"1 ",
            b"0x10",
            b"999999999999999999999",
        ] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timeouts_round_up_to_a_millisecond() {
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1500)), 2);
        assert_eq!(timeout_ms(Duration::from_millis(250)), 250);
        assert_eq!(timeout_ms(Duration::MAX), MAX_TIMEOUT_MS);
        // As the u128 arithmetic it replaces, at the edges.
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(999_999),
            Duration::from_nanos(1_000_001),
            Duration::new(1, 999_999_999),
            Duration::from_millis(MAX_TIMEOUT_MS - 1),
            Duration::from_millis(MAX_TIMEOUT_MS) + Duration::from_nanos(1),
            Duration::new(u64::MAX / 1000, 0),
        ] {
            let old = u64::try_from(d.as_nanos().div_ceil(1_000_000).max(1))
                .unwrap_or(u64::MAX)
                .min(MAX_TIMEOUT_MS);
            assert_eq!(timeout_ms(d), old, "{d:?}");
        }
    }

    #[test]
    fn headers_are_written_in_order_and_only_when_given() {
        let mut h = CallHeaders::new();
        let (hs, n) = h.headers(None, None, None);
        assert_eq!(n, 0, "{hs:?}");
        let cx = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid");
        let (hs, n) = h.headers(Some(16), Some(Duration::from_millis(30_000)), Some(&cx));
        assert_eq!(
            &hs[..n],
            [
                ("fdrpc-credit", "16"),
                ("client_timeout", "30000"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                )
            ]
        );
        let (hs, n) = h.headers(None, Some(Duration::from_millis(5)), None);
        assert_eq!(&hs[..n], [("client_timeout", "5")]);
    }
}
