//! THeader frames (Apache Thrift `doc/specs/HeaderFormat.md`) with fdrpc's info headers.
//!
//! ```text
//! u32 BE  length of everything after this field
//! u16 BE  magic 0x0FFF
//! u16 BE  flags (0)
//! u32 BE  sequence id (= the Thrift message's seqid)
//! u16 BE  header size / 4
//! header: varint protocol id (2 = compact), varint transform count (0),
//!         info id 1 (key/value): varint count, then count x (varint len, key, varint len, value),
//!         zero padding to a multiple of 4
//! payload: one Thrift compact-protocol message
//! ```

use super::error::FrameError;
use crate::codec::varint::{self, VarintError};

/// THeader magic.
pub const MAGIC: u16 = 0x0fff;
/// Protocol id of Thrift compact in the THeader header.
pub const PROTOCOL_COMPACT: u64 = 2;
/// Info header id of key/value headers.
const INFO_KEYVALUE: u64 = 1;
/// Bytes before the header section: length, magic, flags, seqid, header size.
const FIXED: usize = 4 + 2 + 2 + 4 + 2;

/// `fdrpc-fds`: the number of fds this frame owns (absent = 0).
pub const HEADER_FDS: &str = "fdrpc-fds";
/// `fdrpc-fd-seq`: fds owned by all earlier frames of this sender on this connection.
pub const HEADER_FD_SEQ: &str = "fdrpc-fd-seq";

/// Appends a frame to `out`: header with `fds`/`fd_seq` info headers (when `fds > 0`) and
/// `extra` key/value headers, then `payload`.
///
/// # Errors
///
/// [`FrameError::BadLength`] if the frame would exceed `u32` or the header 256 KiB.
pub fn write_frame(
    out: &mut Vec<u8>,
    seqid: i32,
    fds: usize,
    fd_seq: i64,
    extra: &[(&str, &str)],
    payload: &[u8],
) -> Result<(), FrameError> {
    write_frame_parts(out, seqid, fds, fd_seq, extra, payload, 0)
}

/// As [`write_frame`], for a payload of which `payload` is the part written here and
/// `elsewhere` more bytes follow (sent from other buffers: see `SendQueue`).
pub(crate) fn write_frame_parts(
    out: &mut Vec<u8>,
    seqid: i32,
    fds: usize,
    fd_seq: i64,
    extra: &[(&str, &str)],
    payload: &[u8],
    elsewhere: usize,
) -> Result<(), FrameError> {
    // One reservation for the whole frame (the fd headers' numbers take at most 20 digits
    // each, every varint of a header at most 10 bytes): a frame is written per call, and
    // growing the buffer as it goes cost more than the writing.
    let strings: usize = extra.iter().map(|(k, v)| k.len() + v.len() + 20).sum();
    out.reserve(FIXED + 8 + 80 + strings + payload.len());
    let start = out.len();
    let [s0, s1, s2, s3] = (seqid as u32).to_be_bytes();
    let [m0, m1] = MAGIC.to_be_bytes();
    out.extend_from_slice(&[0, 0, 0, 0, m0, m1, 0, 0, s0, s1, s2, s3, 0, 0]);
    let header_start = out.len();
    let count = extra.len() + if fds > 0 { 2 } else { 0 };
    if count > 0 {
        out.extend_from_slice(&[PROTOCOL_COMPACT as u8, 0, INFO_KEYVALUE as u8]);
        varint::write(out, count as u64);
        if fds > 0 {
            let mut num = itoa::Buffer::new();
            push_str(out, HEADER_FDS.as_bytes());
            push_str(out, num.format(fds).as_bytes());
            push_str(out, HEADER_FD_SEQ.as_bytes());
            push_str(out, num.format(fd_seq).as_bytes());
        }
        for (k, v) in extra {
            push_str(out, k.as_bytes());
            push_str(out, v.as_bytes());
        }
    } else {
        out.extend_from_slice(&[PROTOCOL_COMPACT as u8, 0]);
    }
    let padded = (out.len() - header_start).next_multiple_of(4);
    out.resize(header_start + padded, 0);
    let header_words = u16::try_from(padded / 4).map_err(|_| FrameError::BadLength {
        len: padded as u64,
        max: u16::MAX as usize * 4,
    })?;
    out.extend_from_slice(payload);
    let len = (out.len() - start - 4).saturating_add(elsewhere);
    let len32 = u32::try_from(len).map_err(|_| FrameError::BadLength {
        len: len as u64,
        max: u32::MAX as usize,
    })?;
    patch(out, start, &len32.to_be_bytes());
    patch(out, header_start - 2, &header_words.to_be_bytes());
    Ok(())
}

/// Overwrites the bytes at `at` (reserved earlier, so always in bounds).
fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    varint::write(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// How long a frame is, from its first four bytes.
///
/// Returns `Ok(None)` while fewer than 4 bytes are present, otherwise the whole frame's size
/// including the length field.
///
/// # Errors
///
/// [`FrameError::BadLength`] if the declared length is below the THeader minimum or above
/// `max_frame`.
pub fn frame_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    let Some(head) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*head) as usize;
    if !(FIXED - 4..=max_frame).contains(&len) {
        return Err(FrameError::BadLength {
            len: len as u64,
            max: max_frame,
        });
    }
    Ok(Some(len + 4))
}

/// A parsed frame, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// THeader flags.
    pub flags: u16,
    /// THeader sequence id.
    pub seqid: i32,
    /// `fdrpc-fds` (0 if absent).
    pub fds: usize,
    /// `fdrpc-fd-seq`, if present.
    pub fd_seq: Option<i64>,
    /// The key/value section, for [`Frame::headers`].
    info: &'a [u8],
    /// The Thrift message.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Iterates the key/value info headers (all of them, `fdrpc-fds` included).
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.info }
    }

    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Iterator over a frame's key/value info headers; see [`Frame::headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        // The section was validated by `parse_frame`; a failure here only ends iteration.
        let mut cur = Cursor { buf: self.rest };
        let k = cur.string().ok()?;
        let v = cur.string().ok()?;
        self.rest = cur.buf;
        Some((k, v))
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, FrameError> {
        // A header's varints are one byte but for strings of 128 bytes or more: read those here,
        // the rest out of line.
        if let [b, rest @ ..] = self.buf {
            if *b < 0x80 {
                self.buf = rest;
                return Ok(u64::from(*b));
            }
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, FrameError> {
        let (v, len) = varint::read(self.buf, 64).map_err(|e| match e {
            VarintError::Truncated => FrameError::Malformed("header ends inside a varint"),
            VarintError::TooLong => FrameError::Malformed("varint too long"),
        })?;
        self.buf = self.buf.get(len..).unwrap_or_default();
        Ok(v)
    }

    #[inline(always)]
    fn string(&mut self) -> Result<&'a [u8], FrameError> {
        let len = self.varint()?;
        match self
            .buf
            .split_at_checked(usize::try_from(len).unwrap_or(usize::MAX))
        {
            Some((s, rest)) => {
                self.buf = rest;
                Ok(s)
            }
            None => Err(FrameError::Malformed("header string runs past the header")),
        }
    }
}

/// A decimal integer header value, as `str::parse` reads one (an optional sign, then
/// digits, nothing else), without its UTF-8 check and generic parser: two of these per frame
/// that carries fds.
fn parse_int<T: TryFrom<i64>>(v: &[u8], key: &'static str) -> Result<T, FrameError> {
    let bad = || FrameError::BadFdHeader { key };
    let (negative, digits) = match v {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, v),
    };
    // An unsigned type takes no minus sign, not even on a zero.
    if digits.is_empty() || (negative && T::try_from(-1).is_err()) {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        let d = i64::from(d - b'0');
        // Accumulated negatively when negative, so that i64::MIN parses.
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or_else(bad)?;
    }
    T::try_from(n).map_err(|_| bad())
}

/// Parses one whole frame (as sized by [`frame_len`]).
///
/// # Errors
///
/// A [`FrameError`] for a wrong magic, a header that does not fit, a protocol other than
/// compact, transforms, malformed info headers, or fd headers that are not integers.
pub fn parse_frame(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    let bad_len = || FrameError::BadLength {
        len: frame.len() as u64,
        max: usize::MAX,
    };
    let fixed: &[u8; FIXED] = frame.first_chunk().ok_or_else(bad_len)?;
    let [_, _, _, _, m0, m1, f0, f1, s0, s1, s2, s3, h0, h1] = *fixed;
    let magic = u16::from_be_bytes([m0, m1]);
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let flags = u16::from_be_bytes([f0, f1]);
    let seqid = u32::from_be_bytes([s0, s1, s2, s3]) as i32;
    let header_len = u16::from_be_bytes([h0, h1]) as usize * 4;
    let after = frame.get(FIXED..).ok_or_else(bad_len)?;
    if header_len > after.len() {
        return Err(FrameError::BadHeaderSize {
            header: header_len,
            frame: frame.len() - 4,
        });
    }
    let (header, payload) = after.split_at(header_len);
    let mut cur = Cursor { buf: header };
    let proto = cur.varint()?;
    if proto != PROTOCOL_COMPACT {
        return Err(FrameError::UnsupportedProtocol(proto));
    }
    let transforms = cur.varint()?;
    if transforms != 0 {
        return Err(FrameError::UnsupportedTransform(transforms));
    }
    let mut out = Frame {
        flags,
        seqid,
        fds: 0,
        fd_seq: None,
        info: &[],
        payload,
    };
    // Key/value sections in order; like Apache Thrift, padding (id 0) or an info id this
    // reader does not know ends the header, and the rest of it is ignored.
    let mut fds_seen = false;
    let mut seq_seen = false;
    let mut info_start: Option<usize> = None;
    let mut info_end = 0;
    while let Some(&first) = cur.buf.first() {
        if first == 0 {
            break;
        }
        let id = cur.varint()?;
        if id != INFO_KEYVALUE {
            break;
        }
        let count = cur.varint()?;
        let section_start = header.len() - cur.buf.len();
        for _ in 0..count {
            let k = cur.string()?;
            let v = cur.string()?;
            // A match on the literals compares lengths first: most keys differ there.
            match k {
                b"fdrpc-fds" => {
                    if std::mem::replace(&mut fds_seen, true) {
                        return Err(FrameError::Malformed("`fdrpc-fds` given twice"));
                    }
                    out.fds = parse_int(v, HEADER_FDS)?;
                }
                b"fdrpc-fd-seq" => {
                    if std::mem::replace(&mut seq_seen, true) {
                        return Err(FrameError::Malformed("`fdrpc-fd-seq` given twice"));
                    }
                    out.fd_seq = Some(parse_int(v, HEADER_FD_SEQ)?);
                }
                _ => {}
            }
        }
        // Only the first section is kept for `headers()`; fdrpc writes one.
        if info_start.is_none() {
            info_start = Some(section_start);
            info_end = header.len() - cur.buf.len();
        }
    }
    if let Some(start) = info_start {
        out.info = header.get(start..info_end).unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn integer_headers_parse_as_str_parse_does() {
        let cases = [
            "0",
            "7",
            "+5",
            "-1",
            "-0",
            "",
            "-",
            "+",
            "1a",
            " 1",
            "1 ",
            "٣",
            "00012",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "99999999999999999999",
        ];
        for c in cases {
            let ours: Result<i64, _> = parse_int(c.as_bytes(), HEADER_FD_SEQ);
            assert_eq!(ours.ok(), c.parse::<i64>().ok(), "i64 {c:?}");
            let ours: Result<usize, _> = parse_int(c.as_bytes(), HEADER_FDS);
            // Above i64::MAX the header is refused either way (no frame has that many fds).
            let std = c
                .parse::<usize>()
                .ok()
                .filter(|&n| i64::try_from(n).is_ok());
            assert_eq!(ours.ok(), std, "usize {c:?}");
        }
        assert!(matches!(
            parse_int::<usize>(b"x", HEADER_FDS),
            Err(FrameError::BadFdHeader { key: HEADER_FDS })
        ));
    }

    #[test]
    fn round_trip_with_headers() {
        let mut out = Vec::new();
        write_frame(&mut out, 7, 3, -5, &[("k", "v")], b"payload").unwrap();
        let total = frame_len(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(total, out.len());
        let f = parse_frame(&out).unwrap();
        assert_eq!(f.seqid, 7);
        assert_eq!(f.fds, 3);
        assert_eq!(f.fd_seq, Some(-5));
        assert_eq!(f.payload, b"payload");
        assert_eq!(f.header("k"), Some(&b"v"[..]));
        assert_eq!(f.headers().count(), 3);
        assert_eq!((out.len() - 14 - f.payload.len()) % 4, 0);
    }

    #[test]
    fn headers_of_every_length_round_trip() {
        // Lengths around the one-byte varint's edge (127, 128) and two bytes' (16383, 16384).
        for n in [0, 1, 127, 128, 129, 300, 16383, 16384] {
            let (key, value) = ("k".repeat(n.max(1)), "v".repeat(n));
            let mut out = Vec::new();
            write_frame(&mut out, 9, 2, 40, &[(&key, &value), ("x", "y")], b"body").unwrap();
            assert_eq!(frame_len(&out, 1 << 20).unwrap(), Some(out.len()), "{n}");
            let f = parse_frame(&out).unwrap();
            assert_eq!((f.seqid, f.fds, f.fd_seq), (9, 2, Some(40)), "{n}");
            assert_eq!(f.header(&key), Some(value.as_bytes()), "{n}");
            assert_eq!(f.header("x"), Some(&b"y"[..]), "{n}");
            assert_eq!(f.headers().count(), 4, "{n}");
            assert_eq!(f.payload, b"body");
            let header = usize::from(u16::from_be_bytes([out[12], out[13]])) * 4;
            assert_eq!(FIXED + header + 4, out.len(), "{n}");
        }
    }

    #[test]
    fn no_fds_no_headers() {
        let mut out = Vec::new();
        write_frame(&mut out, -1, 0, 99, &[], b"x").unwrap();
        let f = parse_frame(&out).unwrap();
        assert_eq!(f.seqid, -1);
        assert_eq!(f.fds, 0);
        assert_eq!(f.fd_seq, None);
    }

    #[test]
    fn fd_sequence_extremes() {
        for seq in [i64::MIN, -1, 0, i64::MAX] {
            let mut out = Vec::new();
            write_frame(&mut out, 1, 1, seq, &[], b"p").unwrap();
            assert_eq!(parse_frame(&out).unwrap().fd_seq, Some(seq));
        }
    }

    #[test]
    fn rejects_lies() {
        let mut out = Vec::new();
        write_frame(&mut out, 1, 1, 0, &[], b"p").unwrap();
        let mut bad = out.clone();
        bad[4] = 0x1f;
        assert!(matches!(parse_frame(&bad), Err(FrameError::BadMagic(_))));
        let mut bad = out.clone();
        bad[12] = 0xff;
        assert!(matches!(
            parse_frame(&bad),
            Err(FrameError::BadHeaderSize { .. })
        ));
        let mut bad = out.clone();
        bad[14] = 0;
        assert!(matches!(
            parse_frame(&bad),
            Err(FrameError::UnsupportedProtocol(0))
        ));
        assert!(frame_len(&[0, 0, 0, 1], 100).is_err());
        assert!(frame_len(&[0xff, 0, 0, 0], 100).is_err());
        assert_eq!(frame_len(&[0, 0], 100), Ok(None));
    }
}
