//! The THeader frame fdrpc writes, byte for byte, and its limits; the fd table's accounting.

mod common;

use common::*;
use fdrpc::transport::frame::{parse_frame, write_frame};

/// A frame without fds or headers: exactly the bytes of docs/PROTOCOL.md section 2.
#[test]
fn a_frame_without_fds_is_written_byte_for_byte() {
    let mut out = vec![0xaa]; // Frames are appended: what is there stays.
    write_frame(&mut out, 1, 0, 0, &[], b"x").unwrap();
    assert_eq!(
        out,
        [
            0xaa, // before the frame
            0, 0, 0, 15, // LENGTH: 10 + 4 bytes of header + 1 of payload
            0x0f, 0xff, // magic
            0, 0, // flags
            0, 0, 0, 1, // seqid
            0, 1, // header size in words
            2, 0, 0, 0, // protocol id (compact), no transforms, padding
            b'x',
        ]
    );
}

/// With fds: the two fd headers, the info block's count, the padding.
#[test]
fn a_frame_with_fds_carries_its_count_and_sequence() {
    let mut out = Vec::new();
    write_frame(&mut out, -2, 3, 7, &[("k", "v")], b"").unwrap();
    let mut header = vec![2, 0, 1, 3];
    for s in ["fdrpc-fds", "3", "fdrpc-fd-seq", "7", "k", "v"] {
        header.push(s.len() as u8);
        header.extend_from_slice(s.as_bytes());
    }
    while header.len() % 4 != 0 {
        header.push(0);
    }
    let mut expected = ((10 + header.len()) as u32).to_be_bytes().to_vec();
    expected.extend_from_slice(&[0x0f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xfe]);
    expected.extend_from_slice(&((header.len() / 4) as u16).to_be_bytes());
    expected.extend_from_slice(&header);
    assert_eq!(out, expected);
    let f = parse_frame(&out).unwrap();
    assert_eq!((f.seqid, f.fds, f.fd_seq), (-2, 3, Some(7)));
}

/// A header section beyond what THeader's 16-bit word count can say is refused, and nothing
/// of the frame is left behind.
#[test]
fn a_header_too_large_for_theader_is_refused() {
    let big = "v".repeat(300 << 10);
    let mut out = vec![1, 2, 3];
    let err = write_frame(&mut out, 1, 0, 0, &[("k", &big)], b"").unwrap_err();
    match err {
        fdrpc::FrameError::BadLength { len, max } => {
            assert_eq!(max, 65535 * 4);
            // Protocol id, transforms, info id, count, key, value (3-byte varint length),
            // padded to words.
            let raw = 4 + 2 + 3 + big.len();
            assert_eq!(len as usize, raw.div_ceil(4) * 4);
        }
        other => panic!("{other:?}"),
    }
}

/// The fd table counts what a frame brought, claimed or not.
#[test]
fn the_fd_table_counts_its_fds() {
    let _check = fd_leak_check();
    let empty = fdrpc::FdTable::empty();
    assert_eq!((empty.len(), empty.is_empty()), (0, true));
    let mut three = fdrpc::FdTable::new(numbered(3));
    assert_eq!((three.len(), three.is_empty()), (3, false));
    let first = three.claim(0).unwrap();
    assert_eq!(contents(&first), b"0");
    // Claimed or not, the frame brought three.
    assert_eq!(three.len(), 3);
    drop((first, three));
}

/// `LENGTH` below the fixed part, or above the limit, is refused before anything is read.
#[test]
fn frame_lengths_out_of_range_are_refused() {
    use fdrpc::transport::frame::frame_len;
    assert_eq!(frame_len(&[0, 0, 0], 100).unwrap(), None);
    assert_eq!(frame_len(&[0, 0, 0, 10], 100).unwrap(), Some(14));
    assert_eq!(frame_len(&[0, 0, 0, 100], 100).unwrap(), Some(104));
    for (len, max) in [(9u32, 100usize), (0, 100), (101, 100)] {
        match frame_len(&len.to_be_bytes(), max) {
            Err(fdrpc::FrameError::BadLength { len: l, max: m }) => {
                assert_eq!((l, m), (u64::from(len), max));
            }
            other => panic!("{len}: {other:?}"),
        }
    }
}

/// A header size that runs past the frame is refused with both sizes.
#[test]
fn a_header_larger_than_its_frame_is_refused() {
    let mut f = Vec::new();
    write_frame(&mut f, 1, 0, 0, &[], b"xyz").unwrap();
    // Say the header is 2 words (8 bytes) where 4 header bytes and 3 of payload follow.
    f[12..14].copy_from_slice(&2u16.to_be_bytes());
    match parse_frame(&f) {
        Err(fdrpc::FrameError::BadHeaderSize { header, frame }) => {
            assert_eq!((header, frame), (8, f.len() - 4));
        }
        other => panic!("{other:?}"),
    }
    // Exactly up to the end: an empty payload, which parses.
    let mut g = Vec::new();
    write_frame(&mut g, 1, 0, 0, &[], b"").unwrap();
    assert_eq!(parse_frame(&g).unwrap().payload, b"");
}
