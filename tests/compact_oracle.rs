//! The hand-written compact codec against the `thrift` crate: byte-for-byte equal output,
//! and each side reads what the other wrote.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;

use common::*;
use thrift::protocol::{
    TCompactInputProtocol, TCompactOutputProtocol, TFieldIdentifier, TInputProtocol,
    TListIdentifier, TMapIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol,
    TSetIdentifier, TStructIdentifier, TType,
};

#[derive(fdrpc::Message, Debug, PartialEq)]
struct Inner {
    x: i32,
    s: String,
}

#[derive(fdrpc::Message)]
struct Sample {
    a: bool,
    b: i8,
    c: i16,
    d: i32,
    e: i64,
    f: f64,
    g: String,
    #[fdrpc(binary)]
    h: Vec<u8>,
    i: Vec<i32>,
    j: BTreeMap<String, i64>,
    k: Inner,
    l: Option<i32>,
    absent: Option<String>,
    m: Vec<bool>,
    #[fdrpc(id = 40)]
    n: i32,
    #[fdrpc(id = 38)]
    o: bool,
    fd: OwnedFd,
    set: BTreeSet<i16>,
    empty_list: Vec<String>,
    empty_map: BTreeMap<i32, i32>,
    big_list: Vec<i64>,
    #[fdrpc(id = 300)]
    far: Vec<Inner>,
}

fn sample() -> Sample {
    Sample {
        a: true,
        b: -7,
        c: -300,
        d: 123_456,
        e: -(1 << 40),
        f: 3.25,
        g: "text".into(),
        h: vec![0, 255, 7],
        i: vec![1, -1, 64],
        j: [("a".to_string(), 1i64), ("b".to_string(), -2)]
            .into_iter()
            .collect(),
        k: Inner {
            x: 9,
            s: "in".into(),
        },
        l: Some(-5),
        absent: None,
        m: vec![true, false],
        n: 20,
        o: false,
        fd: memfd(b"").into(),
        set: [3i16, 1, 2].into_iter().collect(),
        empty_list: vec![],
        empty_map: BTreeMap::new(),
        big_list: (0..20).map(|v| v * 1000).collect(),
        far: vec![Inner {
            x: 1,
            s: String::new(),
        }],
    }
}

fn fid(name: &str, ty: TType, id: i16) -> TFieldIdentifier {
    TFieldIdentifier::new(name, ty, id)
}

/// The same struct written by the `thrift` crate, field by field (fd index 0 as an i32).
fn thrift_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut o = TCompactOutputProtocol::new(&mut out);
        o.write_message_begin(&TMessageIdentifier::new("method", TMessageType::Call, 77))
            .unwrap();
        o.write_struct_begin(&TStructIdentifier::new("Sample"))
            .unwrap();
        o.write_field_begin(&fid("a", TType::Bool, 1)).unwrap();
        o.write_bool(true).unwrap();
        o.write_field_end().unwrap();
        o.write_field_begin(&fid("b", TType::I08, 2)).unwrap();
        o.write_i8(-7).unwrap();
        o.write_field_begin(&fid("c", TType::I16, 3)).unwrap();
        o.write_i16(-300).unwrap();
        o.write_field_begin(&fid("d", TType::I32, 4)).unwrap();
        o.write_i32(123_456).unwrap();
        o.write_field_begin(&fid("e", TType::I64, 5)).unwrap();
        o.write_i64(-(1 << 40)).unwrap();
        o.write_field_begin(&fid("f", TType::Double, 6)).unwrap();
        o.write_double(3.25).unwrap();
        o.write_field_begin(&fid("g", TType::String, 7)).unwrap();
        o.write_string("text").unwrap();
        o.write_field_begin(&fid("h", TType::String, 8)).unwrap();
        o.write_bytes(&[0, 255, 7]).unwrap();
        o.write_field_begin(&fid("i", TType::List, 9)).unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::I32, 3))
            .unwrap();
        for v in [1, -1, 64] {
            o.write_i32(v).unwrap();
        }
        o.write_list_end().unwrap();
        o.write_field_begin(&fid("j", TType::Map, 10)).unwrap();
        o.write_map_begin(&TMapIdentifier::new(TType::String, TType::I64, 2))
            .unwrap();
        o.write_string("a").unwrap();
        o.write_i64(1).unwrap();
        o.write_string("b").unwrap();
        o.write_i64(-2).unwrap();
        o.write_map_end().unwrap();
        o.write_field_begin(&fid("k", TType::Struct, 11)).unwrap();
        o.write_struct_begin(&TStructIdentifier::new("Inner"))
            .unwrap();
        o.write_field_begin(&fid("x", TType::I32, 1)).unwrap();
        o.write_i32(9).unwrap();
        o.write_field_begin(&fid("s", TType::String, 2)).unwrap();
        o.write_string("in").unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.write_field_begin(&fid("l", TType::I32, 12)).unwrap();
        o.write_i32(-5).unwrap();
        o.write_field_begin(&fid("m", TType::List, 14)).unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::Bool, 2))
            .unwrap();
        o.write_bool(true).unwrap();
        o.write_bool(false).unwrap();
        o.write_field_begin(&fid("n", TType::I32, 40)).unwrap();
        o.write_i32(20).unwrap();
        o.write_field_begin(&fid("o", TType::Bool, 38)).unwrap();
        o.write_bool(false).unwrap();
        o.write_field_end().unwrap();
        o.write_field_begin(&fid("fd", TType::I32, 17)).unwrap();
        o.write_i32(0).unwrap();
        o.write_field_begin(&fid("set", TType::Set, 18)).unwrap();
        o.write_set_begin(&TSetIdentifier::new(TType::I16, 3))
            .unwrap();
        for v in [1i16, 2, 3] {
            o.write_i16(v).unwrap();
        }
        o.write_field_begin(&fid("empty_list", TType::List, 19))
            .unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::String, 0))
            .unwrap();
        o.write_field_begin(&fid("empty_map", TType::Map, 20))
            .unwrap();
        o.write_map_begin(&TMapIdentifier::new(TType::I32, TType::I32, 0))
            .unwrap();
        o.write_field_begin(&fid("big_list", TType::List, 21))
            .unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::I64, 20))
            .unwrap();
        for v in 0..20i64 {
            o.write_i64(v * 1000).unwrap();
        }
        o.write_field_begin(&fid("far", TType::List, 300)).unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
            .unwrap();
        o.write_struct_begin(&TStructIdentifier::new("Inner"))
            .unwrap();
        o.write_field_begin(&fid("x", TType::I32, 1)).unwrap();
        o.write_i32(1).unwrap();
        o.write_field_begin(&fid("s", TType::String, 2)).unwrap();
        o.write_string("").unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.write_message_end().unwrap();
        o.flush().unwrap();
    }
    out
}

fn fdrpc_bytes() -> (Vec<u8>, Vec<OwnedFd>) {
    let mut enc = fdrpc::codec::Encoder::new();
    enc.write_message_header("method", fdrpc::codec::MessageType::Call, 77)
        .unwrap();
    fdrpc::Wire::encode(sample(), &mut enc).unwrap();
    enc.into_parts()
}

#[test]
fn encoder_output_is_byte_identical_to_the_thrift_crate() {
    let _check = fd_leak_check();
    let (ours, fds) = fdrpc_bytes();
    assert_eq!(fds.len(), 1);
    assert_eq!(ours, thrift_bytes());
}

#[test]
fn decoder_reads_what_the_thrift_crate_wrote() {
    let _check = fd_leak_check();
    let bytes = thrift_bytes();
    let mut dec = fdrpc::codec::Decoder::new(&bytes, fdrpc::FdTable::new(numbered(1)));
    let h = dec.read_message_header().unwrap();
    assert_eq!(
        (h.name, h.ty, h.seqid),
        ("method", fdrpc::codec::MessageType::Call, 77)
    );
    let s = <Sample as fdrpc::Wire>::decode(&mut dec).unwrap();
    dec.finish().unwrap();
    assert!(s.a && !s.o);
    assert_eq!(
        (s.b, s.c, s.d, s.e, s.f),
        (-7, -300, 123_456, -(1 << 40), 3.25)
    );
    assert_eq!((s.g.as_str(), s.h.as_slice()), ("text", &[0u8, 255, 7][..]));
    assert_eq!(s.i, vec![1, -1, 64]);
    assert_eq!(s.j["b"], -2);
    assert_eq!(
        s.k,
        Inner {
            x: 9,
            s: "in".into()
        }
    );
    assert_eq!((s.l, s.absent.as_deref()), (Some(-5), None));
    assert_eq!(s.m, vec![true, false]);
    assert_eq!(s.n, 20);
    assert_eq!(contents(&s.fd), b"0");
    assert_eq!(s.set.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(s.big_list[19], 19_000);
    assert_eq!(s.far[0].x, 1);
}

#[test]
fn the_thrift_crate_reads_what_fdrpc_wrote() {
    let _check = fd_leak_check();
    let (bytes, _fds) = fdrpc_bytes();
    let mut i = TCompactInputProtocol::new(&bytes[..]);
    let m = i.read_message_begin().unwrap();
    assert_eq!((m.name.as_str(), m.sequence_number), ("method", 77));
    i.read_struct_begin().unwrap();
    let mut seen = Vec::new();
    loop {
        let f = i.read_field_begin().unwrap();
        if f.field_type == TType::Stop {
            break;
        }
        let id = f.id.unwrap();
        match id {
            1 => assert!(i.read_bool().unwrap()),
            4 => assert_eq!(i.read_i32().unwrap(), 123_456),
            7 => assert_eq!(i.read_string().unwrap(), "text"),
            8 => assert_eq!(i.read_bytes().unwrap(), vec![0, 255, 7]),
            17 => assert_eq!(i.read_i32().unwrap(), 0),
            38 => assert!(!i.read_bool().unwrap()),
            40 => assert_eq!(i.read_i32().unwrap(), 20),
            _ => i.skip(f.field_type).unwrap(),
        }
        i.read_field_end().unwrap();
        seen.push(id);
    }
    assert_eq!(
        seen,
        vec![
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 40, 38, 17, 18, 19, 20, 21, 300
        ]
    );
}

/// A unit-only enum is a Thrift `enum`: an `i32` on the wire, its variant's value.
#[derive(fdrpc::Message, Debug, PartialEq, Clone, Copy)]
enum Mode {
    Read,
    Write = 7,
    Append,
}

#[derive(fdrpc::Message, Debug, PartialEq)]
struct WithModes {
    mode: Mode,
    modes: Vec<Mode>,
}

#[test]
fn a_unit_only_enum_is_an_i32_as_the_thrift_crate_writes_it() {
    let value = WithModes {
        mode: Mode::Write,
        modes: vec![Mode::Read, Mode::Append],
    };
    let (bytes, fds) = fdrpc::encode(value).unwrap();
    assert!(fds.is_empty());
    // The thrift crate writes the same struct with i32 fields.
    let mut expected = Vec::new();
    {
        let mut o = TCompactOutputProtocol::new(&mut expected);
        o.write_struct_begin(&TStructIdentifier::new("WithModes"))
            .unwrap();
        o.write_field_begin(&fid("mode", TType::I32, 1)).unwrap();
        o.write_i32(7).unwrap();
        o.write_field_end().unwrap();
        o.write_field_begin(&fid("modes", TType::List, 2)).unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::I32, 2))
            .unwrap();
        o.write_i32(0).unwrap();
        o.write_i32(8).unwrap();
        o.write_list_end().unwrap();
        o.write_field_end().unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.flush().unwrap();
    }
    assert_eq!(bytes, expected);
    let back: WithModes = fdrpc::decode(&expected, Vec::new()).unwrap();
    assert_eq!(
        back,
        WithModes {
            mode: Mode::Write,
            modes: vec![Mode::Read, Mode::Append]
        }
    );
    // A value that is no variant is a typed error, not a panic.
    let mut bad = Vec::new();
    {
        let mut o = TCompactOutputProtocol::new(&mut bad);
        o.write_struct_begin(&TStructIdentifier::new("WithModes"))
            .unwrap();
        o.write_field_begin(&fid("mode", TType::I32, 1)).unwrap();
        o.write_i32(3).unwrap();
        o.write_field_end().unwrap();
        o.write_field_begin(&fid("modes", TType::List, 2)).unwrap();
        o.write_list_begin(&TListIdentifier::new(TType::I32, 0))
            .unwrap();
        o.write_list_end().unwrap();
        o.write_field_end().unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.flush().unwrap();
    }
    let err = fdrpc::decode::<WithModes>(&bad, Vec::new()).unwrap_err();
    assert!(err.to_string().contains('3'), "{err}");
    assert!(err.to_string().contains("mode"), "{err}");
}
