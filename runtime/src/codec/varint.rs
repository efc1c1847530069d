//! Unsigned LEB128 varints (7 bits a byte, low bits first): the integers of the compact
//! protocol and the fields of a THeader header, written and read in one place.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ends before the varint does.
    Truncated,
    /// The varint has bits beyond the width of its type.
    TooLong,
}

/// Appends `v` as a varint.
#[inline]
pub(crate) fn write(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint of at most `max_bits` significant bits from the front of `buf`. Returns the
/// value and the number of bytes it took.
///
/// Bits beyond `max_bits` are rejected rather than dropped, so a value never silently wraps.
#[inline]
pub(crate) fn read(buf: &[u8], max_bits: u32) -> Result<(u64, usize), VarintError> {
    // Most varints (lengths, small ints, field deltas) are one byte.
    if let Some(&b) = buf.first() {
        if b < 0x80 && (max_bits >= 7 || b >> max_bits == 0) {
            return Ok((b as u64, 1));
        }
    }
    read_long(buf, max_bits)
}

#[inline(never)]
fn read_long(buf: &[u8], max_bits: u32) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    for (i, &b) in buf.iter().enumerate() {
        let chunk = (b & 0x7f) as u64;
        if shift >= max_bits || (shift + 7 > max_bits && chunk >> (max_bits - shift) != 0) {
            return Err(VarintError::TooLong);
        }
        value |= chunk << shift;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        shift += 7;
    }
    Err(VarintError::Truncated)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_width_boundary() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            write(&mut out, v);
            assert_eq!(read(&out, 64), Ok((v, out.len())), "{v}");
        }
    }

    #[test]
    fn rejects_bits_beyond_the_width_and_truncation() {
        // 2^16 in a 16-bit varint.
        assert_eq!(read(&[0x80, 0x80, 0x04], 16), Err(VarintError::TooLong));
        assert_eq!(read(&[0xff, 0xff, 0x03], 16), Ok((0xffff, 3)));
        // Eleven bytes for a u64.
        assert_eq!(read(&[0x80; 11], 64), Err(VarintError::TooLong));
        // The 10th byte of a u64 may carry only one bit.
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(read(&max, 64), Ok((u64::MAX, 10)));
        max[9] = 0x02;
        assert_eq!(read(&max, 64), Err(VarintError::TooLong));
        assert_eq!(read(&[0x80], 64), Err(VarintError::Truncated));
        // Widths below a byte: the one-byte fast path must check them too.
        assert_eq!(read(&[0x0f], 4), Ok((0x0f, 1)));
        assert_eq!(read(&[0x10], 4), Err(VarintError::TooLong));
        assert_eq!(read(&[0x01], 1), Ok((1, 1)));
        assert_eq!(read(&[0x02], 1), Err(VarintError::TooLong));
        assert_eq!(read(&[], 64), Err(VarintError::Truncated));
    }
}
