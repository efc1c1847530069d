//! Property tests: arbitrary bytes and arbitrary fd counts never panic and never leak, and
//! arbitrary values round-trip.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use common::fds_everywhere::{FdsEverywhere, Slot};
use common::*;
use proptest::prelude::*;

#[derive(fdrpc::Message, Debug, Clone, PartialEq)]
struct Data {
    a: i64,
    b: Option<String>,
    c: Vec<i32>,
    d: BTreeMap<String, Vec<bool>>,
    e: f64,
    f: u32,
    #[fdrpc(binary)]
    g: Vec<u8>,
    h: Vec<i16>,
}

fn data() -> impl Strategy<Value = Data> {
    (
        any::<i64>(),
        proptest::option::of(".{0,20}"),
        proptest::collection::vec(any::<i32>(), 0..20),
        proptest::collection::btree_map(
            ".{0,8}",
            proptest::collection::vec(any::<bool>(), 0..5),
            0..5,
        ),
        any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<i16>(), 0..20),
    )
        .prop_map(|(a, b, c, d, e, f, g, h)| Data {
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_and_fd_counts_never_panic_or_leak(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        nfds in 0usize..6,
    ) {
        let _check = fd_leak_check();
        let _ = fdrpc::decode::<FdsEverywhere>(&bytes, numbered(nfds));
        let _ = fdrpc::decode::<Slot>(&bytes, numbered(nfds));
    }

    #[test]
    fn mutated_valid_messages_never_panic_or_leak(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        extra in 0usize..3,
    ) {
        let _check = fd_leak_check();
        let msg = FdsEverywhere {
            one: memfd(b"1").into(),
            maybe: Some(memfd(b"2").into()),
            list: numbered(2),
            nested: vec![numbered(1), vec![]],
            map: [("k".to_string(), OwnedFd::from(memfd(b"m")))].into_iter().collect(),
            tree: [(1, Slot::Many(numbered(2))), (2, Slot::Empty)].into_iter().collect(),
            slot: Slot::Fd(memfd(b"s").into()),
            boxed: Some(Box::new(FdsEverywhere {
                one: memfd(b"b").into(),
                maybe: None,
                list: vec![],
                nested: vec![],
                map: HashMap::new(),
                tree: BTreeMap::new(),
                slot: Slot::Empty,
                boxed: None,
                typed: None,
                sealed: None,
                text: String::new(),
                number: 0,
            })),
            typed: Some(fdrpc::RegularFile::new(memfd(b"t")).unwrap()),
            sealed: Some(fdrpc::SealedMemfd::with_contents("s", b"sealed").unwrap()),
            text: "hello".into(),
            number: 7,
        };
        let (mut bytes, mut fds) = fdrpc::encode(msg).unwrap();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        fds.extend(numbered(extra));
        let _ = fdrpc::decode::<FdsEverywhere>(&bytes, fds);
    }

    #[test]
    fn values_round_trip(d in data()) {
        let (bytes, fds) = fdrpc::encode(d.clone()).unwrap();
        prop_assert!(fds.is_empty());
        let back: Data = fdrpc::decode(&bytes, fds).unwrap();
        prop_assert_eq!(back, d);
    }

    /// Valid frames (any seqid, fd count, headers, payload) with a few bytes changed and
    /// perhaps cut short: every one reaches `parse_frame`, which returns a frame or an error
    /// and never panics; an unchanged frame always parses, with what was written.
    #[test]
    fn frame_parsing_never_panics(
        seqid in any::<i32>(),
        fds in 0usize..300,
        fd_seq in any::<i64>(),
        extra in proptest::collection::vec(("x-[a-z]{1,10}", ".{0,12}"), 0..3),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        use fdrpc::transport::frame::{frame_len, parse_frame, write_frame};
        let extra: Vec<(&str, &str)> =
            extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut bytes = Vec::new();
        write_frame(&mut bytes, seqid, fds, fd_seq, &extra, &payload).unwrap();
        if flips.is_empty() && cut.is_none() {
            let frame = parse_frame(&bytes).unwrap();
            prop_assert_eq!(frame_len(&bytes, 1 << 20).unwrap(), Some(bytes.len()));
            prop_assert_eq!(frame.seqid, seqid);
            prop_assert_eq!(frame.fds, fds);
            prop_assert_eq!(frame.fd_seq, (fds > 0).then_some(fd_seq));
            prop_assert_eq!(frame.payload, &payload[..]);
            prop_assert_eq!(frame.headers().count(), extra.len() + if fds > 0 { 2 } else { 0 });
        }
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let _ = frame_len(&bytes, 1 << 20);
        if let Ok(frame) = parse_frame(&bytes) {
            let _ = frame.headers().count();
        }
    }

    /// Arbitrary chunks with arbitrary fds through a real socket into the receive queue:
    /// frames or a typed error, and every fd closed once the queue is dropped.
    #[test]
    fn arbitrary_socket_traffic_never_panics_or_leaks(
        chunks in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 1..64), 0usize..4),
            1..8,
        ),
        valid_prefix in any::<bool>(),
    ) {
        let _check = fd_leak_check();
        let (a, b) = UnixStream::pair().unwrap();
        let mut rq = fdrpc::transport::RecvQueue::new(&fdrpc::Settings::default());
        if valid_prefix {
            let mut q = fdrpc::transport::SendQueue::new();
            q.push(1, b"\x82\x21\x01\x01x\x00", numbered(2), &[]).unwrap();
            q.flush_blocking(a.as_fd()).unwrap();
        }
        for (bytes, nfds) in chunks {
            let fds = numbered(nfds);
            let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
            if !borrowed.is_empty() {
                control.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed));
            }
            rustix::net::sendmsg(&a, &[std::io::IoSlice::new(&bytes)], &mut control, rustix::net::SendFlags::empty()).unwrap();
        }
        drop(a);
        'read: loop {
            loop {
                match rq.next_frame() {
                    Ok(Some(f)) => drop(f),
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
            match rq.fill_blocking(b.as_fd()) {
                Ok(fdrpc::transport::Fill::Read(_)) => {}
                Ok(_) => {
                    let _ = rq.check_clean_eof();
                    break;
                }
                Err(_) => break,
            }
        }
        drop((rq, b));
    }
}
