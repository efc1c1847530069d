//! Every supported type through a real socketpair, fds nested everywhere a value can stand.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use common::*;

#[derive(fdrpc::Message, Debug, PartialEq, Clone, Copy)]
enum Color {
    Red,
    Green = 5,
    Blue,
    Negative = -3,
}

#[derive(fdrpc::Message, Debug, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(fdrpc::Message)]
struct Holder {
    label: String,
    fd: OwnedFd,
}

#[derive(fdrpc::Message)]
enum Payload {
    Nothing,
    Number(i64),
    File(File),
    Held(Holder),
    #[fdrpc(id = 10)]
    Many(Vec<OwnedFd>),
}

#[derive(fdrpc::Message, Debug, PartialEq)]
struct Empty;

#[derive(fdrpc::Message)]
struct Everything {
    flag: bool,
    off: bool,
    tiny: i8,
    small: i16,
    medium: i32,
    large: i64,
    ubyte: u8,
    ushort: u16,
    uint: u32,
    ulong: u64,
    size: usize,
    ratio: f64,
    text: String,
    #[fdrpc(binary)]
    blob: Vec<u8>,
    bytes: fdrpc::Binary,
    unit: (),
    empty: Empty,
    color: Color,
    colors: Vec<Color>,
    points: VecDeque<Point>,
    bools: Vec<bool>,
    set: HashSet<i32>,
    ordered: BTreeSet<String>,
    map: HashMap<String, i64>,
    tree: BTreeMap<i32, Vec<String>>,
    boxed: Box<Point>,
    maybe: Option<i32>,
    maybe_not: Option<String>,
    #[fdrpc(binary)]
    maybe_blob: Option<Vec<u8>>,
    nested: Vec<Vec<i32>>,
    // fds in every position
    fd: OwnedFd,
    file: File,
    opt_fd: Option<OwnedFd>,
    no_fd: Option<File>,
    fd_list: Vec<OwnedFd>,
    fd_map: HashMap<String, OwnedFd>,
    fd_tree: BTreeMap<i32, Vec<File>>,
    holder: Holder,
    holders: Vec<Holder>,
    boxed_fd: Box<OwnedFd>,
    union_plain: Payload,
    union_fd: Payload,
    union_nested: Payload,
    union_many: Payload,
    union_unit: Payload,
    stream: UnixStream,
    listener: UnixListener,
    datagram: UnixDatagram,
    pipe_r: std::io::PipeReader,
    pipe_w: std::io::PipeWriter,
    #[fdrpc(id = 200, rename = "renamed_field")]
    last: i32,
}

fn channel_pair() -> (fdrpc::Channel, fdrpc::Channel) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        fdrpc::Channel::new(a).unwrap(),
        fdrpc::Channel::new(b).unwrap(),
    )
}

#[test]
fn every_type_round_trips_through_a_socket() {
    let _check = fd_leak_check();
    let dir = scratch_dir("roundtrip");
    let sock_path = dir.join("l.sock");

    let sent_fd = memfd(b"fd");
    let sent_file = memfd(b"file");
    let sent_opt = memfd(b"opt");
    let list: Vec<File> = (0..3)
        .map(|i| memfd(format!("list{i}").as_bytes()))
        .collect();
    let (stream_a, _stream_b) = UnixStream::pair().unwrap();
    let listener = UnixListener::bind(&sock_path).unwrap();
    let (dgram, _dgram_peer) = UnixDatagram::pair().unwrap();
    let (pipe_r, pipe_w) = std::io::pipe().unwrap();
    let ids_before: Vec<(u64, u64)> = vec![
        ino(&sent_fd),
        ino(&sent_file),
        ino(&sent_opt),
        ino(&stream_a),
        ino(&listener),
        ino(&dgram),
        ino(&pipe_r),
        ino(&pipe_w),
    ];
    // Keep duplicates to check identity of the description after the originals moved.
    let keep_fd = sent_fd.try_clone().unwrap();
    let keep_list: Vec<File> = list.iter().map(|f| f.try_clone().unwrap()).collect();

    let msg = Everything {
        flag: true,
        off: false,
        tiny: -8,
        small: -1600,
        medium: 1 << 30,
        large: i64::MIN,
        ubyte: 255,
        ushort: 65535,
        uint: u32::MAX,
        ulong: i64::MAX as u64,
        size: 12345,
        ratio: -2.5e-3,
        text: "héllo\0wörld".into(),
        blob: vec![0, 1, 2, 255],
        bytes: fdrpc::Binary(vec![9; 300]),
        unit: (),
        empty: Empty,
        color: Color::Blue,
        colors: vec![Color::Red, Color::Green, Color::Negative],
        points: (0..20).map(|i| Point { x: i, y: -i }).collect(),
        bools: vec![true, false, true],
        set: [1, 2, 3].into_iter().collect(),
        ordered: ["a".to_string(), "b".to_string()].into_iter().collect(),
        map: [("k".to_string(), 7i64)].into_iter().collect(),
        tree: [(1, vec!["x".to_string()]), (-1, vec![])]
            .into_iter()
            .collect(),
        boxed: Box::new(Point { x: 1, y: 2 }),
        maybe: Some(42),
        maybe_not: None,
        maybe_blob: Some(vec![]),
        nested: vec![vec![], vec![1, 2], vec![3]],
        fd: sent_fd.into(),
        file: sent_file,
        opt_fd: Some(sent_opt.into()),
        no_fd: None,
        fd_list: list.into_iter().map(OwnedFd::from).collect(),
        fd_map: [("m".to_string(), OwnedFd::from(memfd(b"map")))]
            .into_iter()
            .collect(),
        fd_tree: [(5, vec![memfd(b"t1"), memfd(b"t2")])]
            .into_iter()
            .collect(),
        holder: Holder {
            label: "h".into(),
            fd: memfd(b"holder").into(),
        },
        holders: (0..2)
            .map(|i| Holder {
                label: format!("h{i}"),
                fd: memfd(format!("holder{i}").as_bytes()).into(),
            })
            .collect(),
        boxed_fd: Box::new(memfd(b"boxed").into()),
        union_plain: Payload::Number(-77),
        union_fd: Payload::File(memfd(b"union")),
        union_nested: Payload::Held(Holder {
            label: "in union".into(),
            fd: memfd(b"union nested").into(),
        }),
        union_many: Payload::Many(vec![memfd(b"u0").into(), memfd(b"u1").into()]),
        union_unit: Payload::Nothing,
        stream: stream_a,
        listener,
        datagram: dgram,
        pipe_r,
        pipe_w,
        last: 99,
    };

    let (mut tx, mut rx) = channel_pair();
    tx.send(msg).unwrap();
    let got: Everything = rx.recv().unwrap();

    assert!(got.flag && !got.off);
    assert_eq!(
        (got.tiny, got.small, got.medium, got.large),
        (-8, -1600, 1 << 30, i64::MIN)
    );
    assert_eq!(
        (got.ubyte, got.ushort, got.uint, got.ulong),
        (255, 65535, u32::MAX, i64::MAX as u64)
    );
    assert_eq!(got.size, 12345);
    assert_eq!(got.ratio, -2.5e-3);
    assert_eq!(got.text, "héllo\0wörld");
    assert_eq!(got.blob, vec![0, 1, 2, 255]);
    assert_eq!(got.bytes.0, vec![9; 300]);
    assert_eq!(got.empty, Empty);
    assert_eq!(got.color, Color::Blue);
    assert_eq!(got.colors, vec![Color::Red, Color::Green, Color::Negative]);
    assert_eq!(
        got.points,
        (0..20).map(|i| Point { x: i, y: -i }).collect::<Vec<_>>()
    );
    assert_eq!(got.bools, vec![true, false, true]);
    assert_eq!(got.set, [1, 2, 3].into_iter().collect());
    assert_eq!(
        got.ordered,
        ["a".to_string(), "b".to_string()].into_iter().collect()
    );
    assert_eq!(got.map, [("k".to_string(), 7i64)].into_iter().collect());
    assert_eq!(
        got.tree,
        [(1, vec!["x".to_string()]), (-1, vec![])]
            .into_iter()
            .collect()
    );
    assert_eq!(*got.boxed, Point { x: 1, y: 2 });
    assert_eq!(got.maybe, Some(42));
    assert_eq!(got.maybe_not, None);
    assert_eq!(got.maybe_blob, Some(vec![]));
    assert_eq!(got.nested, vec![vec![], vec![1, 2], vec![3]]);
    assert_eq!(got.last, 99);

    // fds: same open file descriptions, close-on-exec, right contents in the right field.
    assert!(same_description(&got.fd, &keep_fd));
    assert_eq!(got.fd_list.len(), 3);
    for (fd, keep) in got.fd_list.iter().zip(&keep_list) {
        assert!(same_description(fd, keep));
    }
    let ids_after = vec![
        ino(&got.fd),
        ino(&got.file),
        ino(got.opt_fd.as_ref().unwrap()),
        ino(&got.stream),
        ino(&got.listener),
        ino(&got.datagram),
        ino(&got.pipe_r),
        ino(&got.pipe_w),
    ];
    assert_eq!(ids_before, ids_after);
    assert_eq!(contents(&got.fd), b"fd");
    assert_eq!(contents(&got.file), b"file");
    assert_eq!(contents(got.opt_fd.as_ref().unwrap()), b"opt");
    assert!(got.no_fd.is_none());
    for (i, fd) in got.fd_list.iter().enumerate() {
        assert_eq!(contents(fd), format!("list{i}").as_bytes());
        assert!(is_cloexec(fd));
    }
    assert_eq!(got.fd_map.len(), 1);
    assert_eq!(contents(&got.fd_map["m"]), b"map");
    assert_eq!(got.fd_tree.len(), 1);
    let tree: Vec<Vec<u8>> = got.fd_tree[&5].iter().map(contents).collect();
    assert_eq!(tree, [b"t1".to_vec(), b"t2".to_vec()]);
    assert_eq!(got.holder.label, "h");
    assert_eq!(contents(&got.holder.fd), b"holder");
    assert_eq!(got.holders.len(), 2);
    for (i, h) in got.holders.iter().enumerate() {
        assert_eq!(h.label, format!("h{i}"));
        assert_eq!(contents(&h.fd), format!("holder{i}").as_bytes());
    }
    assert_eq!(contents(&*got.boxed_fd), b"boxed");
    assert!(matches!(got.union_plain, Payload::Number(-77)));
    match &got.union_fd {
        Payload::File(f) => assert_eq!(contents(f), b"union"),
        _ => panic!("wrong variant"),
    }
    match &got.union_nested {
        Payload::Held(h) => {
            assert_eq!(h.label, "in union");
            assert_eq!(contents(&h.fd), b"union nested");
        }
        _ => panic!("wrong variant"),
    }
    match &got.union_many {
        Payload::Many(v) => {
            let all: Vec<Vec<u8>> = v.iter().map(contents).collect();
            assert_eq!(all, [b"u0".to_vec(), b"u1".to_vec()]);
        }
        _ => panic!("wrong variant"),
    }
    assert!(matches!(got.union_unit, Payload::Nothing));
    for fd in [
        got.fd.as_fd(),
        got.file.as_fd(),
        got.stream.as_fd(),
        got.listener.as_fd(),
        got.datagram.as_fd(),
        got.pipe_r.as_fd(),
        got.pipe_w.as_fd(),
    ] {
        assert!(is_cloexec(&fd));
    }
    drop(got);
    drop((keep_fd, keep_list, tx, rx));
}

#[test]
fn encode_decode_without_a_socket() {
    let _check = fd_leak_check();
    let (bytes, fds) = fdrpc::encode(Holder {
        label: "x".into(),
        fd: memfd(b"abc").into(),
    })
    .unwrap();
    assert_eq!(fds.len(), 1);
    // field 1: string "x"; field 2: i32 index 0; stop
    assert_eq!(bytes, [0x18, 1, b'x', 0x15, 0, 0]);
    let back: Holder = fdrpc::decode(&bytes, fds).unwrap();
    assert_eq!(contents(&back.fd), b"abc");
}

#[test]
fn unknown_fields_are_skipped_and_missing_required_fields_are_errors() {
    #[derive(fdrpc::Message)]
    #[fdrpc(rename = "Point")]
    struct PointV2 {
        x: i32,
        y: i32,
        z: Vec<BTreeMap<String, Point>>,
        w: Option<Holder>,
    }
    #[derive(fdrpc::Message, Debug)]
    struct OnlyZ {
        #[fdrpc(id = 3)]
        z: Vec<BTreeMap<String, Point>>,
        #[fdrpc(id = 1)]
        x: i32,
    }
    let _check = fd_leak_check();
    let newer = PointV2 {
        x: 1,
        y: 2,
        z: vec![
            [("p".to_string(), Point { x: 5, y: 6 })]
                .into_iter()
                .collect(),
        ],
        w: None,
    };
    let (bytes, fds) = fdrpc::encode(newer).unwrap();
    let old: Point = fdrpc::decode(&bytes, fds).unwrap();
    assert_eq!(old, Point { x: 1, y: 2 });

    let (bytes, fds) = fdrpc::encode(OnlyZ { z: vec![], x: 3 }).unwrap();
    let err = fdrpc::decode::<Point>(&bytes, fds).unwrap_err();
    assert_eq!(err.kind(), &fdrpc::DecodeErrorKind::MissingField);
    assert_eq!(err.path(), "y");
}

#[test]
fn unsigned_integers_are_checked_not_truncated() {
    #[derive(fdrpc::Message)]
    struct Wide {
        v: i64,
    }
    #[derive(fdrpc::Message, Debug)]
    struct Narrow {
        v: u32,
    }
    #[derive(fdrpc::Message, Debug)]
    struct Big {
        v: u64,
    }
    let (bytes, fds) = fdrpc::encode(Wide { v: -1 }).unwrap();
    let err = fdrpc::decode::<Narrow>(&bytes, fds).unwrap_err();
    assert_eq!(err.kind(), &fdrpc::DecodeErrorKind::IntegerOutOfRange(-1));
    assert_eq!(
        err.to_string(),
        "in field `v`: integer -1 is out of range for its Rust type"
    );
    let (bytes, fds) = fdrpc::encode(Wide { v: 1 << 40 }).unwrap();
    assert!(fdrpc::decode::<Narrow>(&bytes, fds).is_err());
    let err = fdrpc::encode(Big { v: u64::MAX }).unwrap_err();
    assert!(matches!(
        err,
        fdrpc::EncodeError::IntegerOutOfRange {
            value: u64::MAX,
            ..
        }
    ));
    assert!(
        err.to_string().contains("use fdrpc::U64Bits"),
        "the error names the opt-in: {err}"
    );
    let (bytes, fds) = fdrpc::encode(Big { v: i64::MAX as u64 }).unwrap();
    assert_eq!(
        fdrpc::decode::<Big>(&bytes, fds).unwrap().v,
        i64::MAX as u64
    );
}

#[test]
fn u64_bits_carry_the_full_range_as_the_i64_with_the_same_bits() {
    #[derive(fdrpc::Message, Debug, PartialEq)]
    struct Hashes {
        one: fdrpc::U64Bits,
        many: Vec<fdrpc::U64Bits>,
        maybe: Option<fdrpc::U64Bits>,
    }
    #[derive(fdrpc::Message, Debug, PartialEq)]
    struct Signed {
        one: i64,
        many: Vec<i64>,
        maybe: Option<i64>,
    }
    let h = Hashes {
        one: fdrpc::U64Bits(u64::MAX),
        many: vec![0.into(), (1u64 << 63).into(), 42.into()],
        maybe: Some(fdrpc::U64Bits(u64::MAX - 1)),
    };
    let (bytes, fds) = fdrpc::encode(h).unwrap();
    assert_eq!(
        fdrpc::decode::<Signed>(&bytes, fds).unwrap(),
        Signed {
            one: -1,
            many: vec![0, i64::MIN, 42],
            maybe: Some(-2)
        },
        "a stock Thrift peer sees the i64 with the same bits"
    );
    let (bytes, fds) = fdrpc::encode(Hashes {
        one: u64::MAX.into(),
        many: vec![],
        maybe: None,
    })
    .unwrap();
    let back = fdrpc::decode::<Hashes>(&bytes, fds).unwrap();
    assert_eq!(*back.one, u64::MAX);
    assert!(fdrpc::message_idl::<Hashes>().contains("1: required i64 one,"));
}

#[test]
fn a_vec_of_u8_is_thrift_binary_everywhere() {
    #[derive(fdrpc::Message, Debug, PartialEq)]
    struct Blobs {
        one: Vec<u8>,
        many: Vec<Vec<u8>>,
        maybe: Option<Vec<u8>>,
        #[fdrpc(binary)]
        marked: Vec<u8>,
        small: Vec<u16>,
    }
    #[derive(fdrpc::Message, Debug, PartialEq)]
    struct AsBinary {
        one: fdrpc::Binary,
        many: Vec<fdrpc::Binary>,
        maybe: Option<fdrpc::Binary>,
        marked: fdrpc::Binary,
        small: Vec<u16>,
    }
    let blobs = || Blobs {
        one: vec![0, 1, 255],
        many: vec![b"ab".to_vec(), vec![]],
        maybe: Some(vec![7; 3]),
        marked: b"m".to_vec(),
        small: vec![300],
    };
    let (bytes, _) = fdrpc::encode(blobs()).unwrap();
    // Thrift binary: one length byte and the bytes (a list<i16> would take three bytes
    // for 0, 1, 255, with a header).
    assert_eq!(&bytes[..5], [0x18, 3, 0, 1, 255]);
    let (same, _) = fdrpc::encode(AsBinary {
        one: vec![0, 1, 255].into(),
        many: vec![b"ab".to_vec().into(), Vec::new().into()],
        maybe: Some(vec![7; 3].into()),
        marked: b"m".to_vec().into(),
        small: vec![300],
    })
    .unwrap();
    assert_eq!(bytes, same, "the same bytes as fdrpc::Binary");
    assert_eq!(fdrpc::decode::<Blobs>(&bytes, Vec::new()).unwrap(), blobs());
    let idl = fdrpc::message_idl::<Blobs>();
    for line in [
        "1: required binary one,",
        "2: required list<binary> many,",
        "3: optional binary maybe,",
        "4: required binary marked,",
        "5: required list<i32> small,",
    ] {
        assert!(idl.contains(line), "{line} in\n{idl}");
    }
}

#[test]
fn unions_reject_zero_or_several_fields() {
    // A struct with two fields has the shape of a union with two fields set.
    #[derive(fdrpc::Message)]
    struct Two {
        nothing: (),
        number: i64,
    }
    let (bytes, fds) = fdrpc::encode(Two {
        nothing: (),
        number: 1,
    })
    .unwrap();
    let err = fdrpc::decode::<Payload>(&bytes, fds).err().unwrap();
    assert!(
        matches!(err.kind(), fdrpc::DecodeErrorKind::InvalidUnion(_)),
        "{err}"
    );
    let err = fdrpc::decode::<Payload>(&[0], vec![]).err().unwrap();
    assert!(
        matches!(err.kind(), fdrpc::DecodeErrorKind::InvalidUnion(_)),
        "{err}"
    );
    let err = fdrpc::decode::<Color>(&[0x0e], vec![]).unwrap_err();
    assert_eq!(err.kind(), &fdrpc::DecodeErrorKind::UnknownEnumValue(7));
}

/// Generated code must not depend on the prelude names the user's scope can shadow.
mod hygiene {
    #![allow(dead_code, non_camel_case_types)]
    struct Result;
    struct Ok;
    struct Err;
    struct Option;
    struct Some;
    struct None;
    struct Vec;
    struct String;

    #[derive(fdrpc::Message)]
    struct r#Raw {
        r#type: i32,
        r#match: std::option::Option<std::os::fd::OwnedFd>,
        list: std::vec::Vec<std::string::String>,
    }

    #[derive(fdrpc::Message)]
    enum r#Kind {
        r#A(i32),
        B,
    }

    #[derive(fdrpc::Message)]
    struct Generic<T: fdrpc::Wire> {
        value: T,
    }

    #[test]
    fn raw_identifiers_and_shadowed_prelude() {
        let (bytes, fds) = fdrpc::encode(r#Raw {
            r#type: 3,
            r#match: std::option::Option::None,
            list: std::vec::Vec::new(),
        })
        .unwrap();
        let back: r#Raw = fdrpc::decode(&bytes, fds).unwrap();
        assert_eq!(back.r#type, 3);
        let (bytes, fds) = fdrpc::encode(Generic { value: 5u16 }).unwrap();
        assert_eq!(fdrpc::decode::<Generic<u16>>(&bytes, fds).unwrap().value, 5);
        let _ = r#Kind::B;
        let _ = r#Kind::r#A(1);
    }
}

/// `#[fdrpc(binary)]` sees an `Option` through what macros wrap a type in: a `$t:ty` of
/// `macro_rules!` (an invisible group) and parentheses.
#[test]
#[allow(unused_parens)] // the point: a parenthesized type (the derive's code spans it too)
fn binary_sees_an_option_through_macro_groups_and_parentheses() {
    macro_rules! with_field {
        ($name:ident, $t:ty) => {
            #[derive(fdrpc::Message, Debug, PartialEq)]
            struct $name {
                #[fdrpc(binary)]
                data: $t,
            }
        };
    }
    with_field!(Grouped, Option<Vec<u8>>);
    #[derive(fdrpc::Message, Debug, PartialEq)]
    struct Parenthesized {
        #[fdrpc(binary)]
        data: (Option<Vec<u8>>),
    }
    let (bytes, _) = fdrpc::encode(Grouped {
        data: Some(vec![1, 2]),
    })
    .unwrap();
    assert_eq!(
        fdrpc::decode::<Grouped>(&bytes, vec![]).unwrap(),
        Grouped {
            data: Some(vec![1, 2])
        }
    );
    let (same, _) = fdrpc::encode(Parenthesized {
        data: Some(vec![1, 2]),
    })
    .unwrap();
    assert_eq!(same, bytes, "both as optional binary");
    let (none, _) = fdrpc::encode(Parenthesized { data: None }).unwrap();
    assert_eq!(
        fdrpc::decode::<Grouped>(&none, vec![]).unwrap(),
        Grouped { data: None }
    );
}

/// A union variant's `#[fdrpc(id = N)]` is its field id on the wire and in the IDL; the others
/// count from 1 by position.
#[test]
fn a_union_variants_id_is_its_field_id() {
    #[derive(fdrpc::Message, Debug, PartialEq)]
    enum Shape {
        Dot,
        #[fdrpc(id = 7)]
        Circle(i32),
    }
    #[derive(fdrpc::Message, Debug, PartialEq)]
    struct Holder {
        shape: Shape,
    }
    let idl = fdrpc::message_idl::<Holder>();
    assert!(idl.contains("7: i32 Circle"), "{idl}");
    assert!(idl.contains("1: "), "{idl}");
    // Field 1 (the holder's `shape`): a struct whose field 7 is an i32 (compact: delta 7,
    // type 5), zigzag 21 = -11.
    let (bytes, _) = fdrpc::encode(Holder {
        shape: Shape::Circle(-11),
    })
    .unwrap();
    assert_eq!(bytes, [0x1c, 0x75, 21, 0, 0]);
    assert_eq!(
        fdrpc::decode::<Holder>(&bytes, vec![]).unwrap().shape,
        Shape::Circle(-11)
    );
}
