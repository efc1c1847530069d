//! Hostile bytes and fd tables: every case is a typed error, no panic, and no fd left open.

mod common;

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use common::*;
use fdrpc::DecodeErrorKind as K;

#[derive(fdrpc::Message, Debug)]
struct Target {
    name: String,
    fd: OwnedFd,
    more: Vec<OwnedFd>,
    map: HashMap<String, OwnedFd>,
    opt: Option<OwnedFd>,
}

/// Bytes of a `Target` whose fd indices are `fd`, `more` (and nothing else).
fn target_bytes(fd: i32, more: &[i32]) -> Vec<u8> {
    let mut enc = fdrpc::codec::Encoder::new();
    let mut last = 0;
    enc.write_field_header(8, 1, &mut last);
    enc.write_binary(b"n").unwrap();
    enc.write_field_header(5, 2, &mut last);
    enc.write_i32(fd);
    enc.write_field_header(9, 3, &mut last);
    enc.write_list_header(fdrpc::codec::TType::I32, more.len())
        .unwrap();
    for &i in more {
        enc.write_i32(i);
    }
    enc.write_field_header(11, 4, &mut last);
    enc.write_map_header(fdrpc::codec::TType::Binary, fdrpc::codec::TType::I32, 0)
        .unwrap();
    enc.write_stop();
    enc.into_parts().0
}

fn decode_err(bytes: &[u8], nfds: usize) -> fdrpc::DecodeError {
    fdrpc::decode::<Target>(bytes, numbered(nfds)).expect_err("hostile input decoded")
}

#[test]
fn valid_indices_decode() {
    let _check = fd_leak_check();
    let t: Target = fdrpc::decode(&target_bytes(2, &[0, 1]), numbered(3)).unwrap();
    assert_eq!(contents(&t.fd), b"2");
    assert_eq!(contents(&t.more[0]), b"0");
    assert!(t.opt.is_none());
}

#[test]
fn index_out_of_range() {
    let _check = fd_leak_check();
    let e = decode_err(&target_bytes(3, &[0, 1]), 3);
    assert_eq!(e.kind(), &K::FdIndexOutOfRange { index: 3, count: 3 });
    assert_eq!(e.path(), "fd");
    let e = decode_err(&target_bytes(0, &[1, 2, 7]), 3);
    assert_eq!(e.kind(), &K::FdIndexOutOfRange { index: 7, count: 3 });
    assert_eq!(e.path(), "more[2]");
}

#[test]
fn negative_index() {
    let _check = fd_leak_check();
    let e = decode_err(&target_bytes(-1, &[0, 1]), 3);
    assert_eq!(
        e.kind(),
        &K::FdIndexOutOfRange {
            index: -1,
            count: 3
        }
    );
    let e = decode_err(&target_bytes(i32::MIN, &[]), 1);
    assert_eq!(
        e.kind(),
        &K::FdIndexOutOfRange {
            index: i32::MIN,
            count: 1
        }
    );
}

#[test]
fn index_claimed_twice() {
    let _check = fd_leak_check();
    let e = decode_err(&target_bytes(0, &[1, 0]), 2);
    assert_eq!(e.kind(), &K::FdIndexClaimedTwice(0));
    assert_eq!(e.path(), "more[1]");
}

#[test]
fn unclaimed_fds() {
    let _check = fd_leak_check();
    let e = decode_err(&target_bytes(0, &[1]), 5);
    assert_eq!(e.kind(), &K::UnclaimedFds(3));
}

#[test]
fn fds_sent_to_a_message_without_fd_fields() {
    #[derive(fdrpc::Message, Debug)]
    struct NoFds {
        n: i32,
    }
    let _check = fd_leak_check();
    let (bytes, _) = fdrpc::encode(NoFds { n: 1 }).unwrap();
    let e = fdrpc::decode::<NoFds>(&bytes, numbered(4)).unwrap_err();
    assert_eq!(e.kind(), &K::UnclaimedFds(4));
}

#[test]
fn truncated_payload_at_every_length() {
    let _check = fd_leak_check();
    let full = target_bytes(2, &[0, 1]);
    for len in 0..full.len() {
        let e = decode_err(&full[..len], 3);
        assert!(
            matches!(e.kind(), K::Truncated | K::LengthTooLarge(_)),
            "len {len}: {e}"
        );
    }
}

#[test]
fn wrong_thrift_type_for_a_field() {
    let _check = fd_leak_check();
    let mut bytes = target_bytes(0, &[]);
    // Field 1 announced as i32 instead of string.
    bytes[0] = 0x15;
    let e = decode_err(&bytes, 1);
    assert_eq!(
        e.kind(),
        &K::WrongType {
            expected: "binary",
            found: "i32"
        }
    );
    assert_eq!(e.path(), "name");
}

#[test]
fn trailing_bytes() {
    let _check = fd_leak_check();
    let mut bytes = target_bytes(0, &[]);
    bytes.push(0);
    assert_eq!(decode_err(&bytes, 1).kind(), &K::TrailingBytes(1));
}

#[test]
fn lengths_beyond_the_input_allocate_nothing() {
    let _check = fd_leak_check();
    // A string claiming 100 MiB in a 6-byte input.
    let bytes = [0x18, 0x80, 0x80, 0x80, 0x32, b'x'];
    assert!(matches!(decode_err(&bytes, 0).kind(), K::LengthTooLarge(_)));
    // A list claiming 2^31 - 1 elements.
    let bytes = [0x39, 0xf5, 0xff, 0xff, 0xff, 0xff, 0x07];
    assert!(matches!(decode_err(&bytes, 0).kind(), K::LengthTooLarge(_)));
    // A varint of eleven bytes.
    let bytes = [
        0x96, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(matches!(decode_err(&bytes, 0).kind(), K::BadVarint));
}

#[test]
fn deep_nesting_is_bounded() {
    let _check = fd_leak_check();
    // An unknown field 9 holding lists nested 100,000 deep: skipping must not recurse without
    // bound.
    let mut bytes = vec![0x99];
    bytes.extend(std::iter::repeat_n(0x19, 100_000));
    bytes.push(0);
    let e = decode_err(&bytes, 0);
    assert_eq!(e.kind(), &K::TooDeep(fdrpc::codec::DEFAULT_MAX_DEPTH));
    // Structs nested deep.
    let mut bytes = vec![0x9c];
    bytes.extend(std::iter::repeat_n(0x1c, 100_000));
    assert_eq!(
        decode_err(&bytes, 0).kind(),
        &K::TooDeep(fdrpc::codec::DEFAULT_MAX_DEPTH)
    );
}

#[test]
fn unknown_type_codes() {
    let _check = fd_leak_check();
    let e = decode_err(&[0x1d, 0], 0);
    assert_eq!(e.kind(), &K::UnknownType(13));
}

/// Arbitrary bytes with arbitrary fd counts: never a panic, never a leaked fd.
#[test]
fn random_bytes_never_panic_or_leak() {
    let _check = fd_leak_check();
    let valid = target_bytes(2, &[0, 1]);
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let fds = numbered(4);
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            valid.clone()
        } else {
            (0..(next() % 64)).map(|_| next() as u8).collect()
        };
        for _ in 0..(next() % 4) {
            if !bytes.is_empty() {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
        }
        let n = (next() % 5) as usize;
        let table: Vec<OwnedFd> = fds[..n].iter().map(|f| f.try_clone().unwrap()).collect();
        let _ = fdrpc::decode::<Target>(&bytes, table);
    }
}
