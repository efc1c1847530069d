//! The stream protocol exactly as docs/PROTOCOL.md section 5 states it, played by a peer
//! written from the document alone (raw frames), against the conformance server; and the
//! client's side of the one policy for malformed stream frames.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::raw::*;
use common::*;
use conformance::{ConformanceImpl, ConformanceServer};
use fdrpc::Settings;
use fdrpc::codec::{Encoder, MessageType};

const WAIT: Duration = Duration::from_secs(5);

/// A conformance server and a raw connection to it; on drop, the fd count is checked.
struct Peer {
    raw: Raw,
    baseline: usize,
    // Dropped before the check: the server's fds close first.
    _server: ThreadServer,
    _check: FdLeakCheck,
}

impl Peer {
    fn start() -> Peer {
        Self::start_on(false, fdrpc::DEFAULT_WINDOW)
    }

    /// On a current-thread server granting sinks `window` items: a handler runs only after
    /// its connection's reader has handed over every frame of a read.
    fn start_current_thread(window: u32) -> Peer {
        Self::start_on(true, window)
    }

    fn start_on(current_thread: bool, window: u32) -> Peer {
        let check = fd_leak_check();
        let start = if current_thread {
            ThreadServer::start_current_thread
        } else {
            ThreadServer::start
        };
        let server = start(
            move || {
                fdrpc::Server::with_settings(
                    Settings::default()
                        .stall_timeout(Duration::from_secs(2))
                        .stream_window(window),
                )
            },
            || ConformanceServer::new(ConformanceImpl::default()),
        );
        let baseline = fd_count();
        Peer {
            raw: Raw::new(UnixStream::connect(&server.path).unwrap()),
            baseline,
            _server: server,
            _check: check,
        }
    }

    fn send(&self, bytes: &[u8]) {
        self.raw.send(bytes, &[]);
    }

    fn next(&mut self) -> Got {
        self.raw.next(WAIT)
    }

    /// A `whoami` call, and the proof that every frame the server sent before its reply has
    /// arrived: whatever the server queued earlier comes first.
    fn fence(&mut self, seqid: i32) -> Vec<Got> {
        self.send(&frame(seqid, &[], &call("whoami", seqid, &[0])));
        let mut before = Vec::new();
        loop {
            match self.next() {
                Got::Reply { name, seqid: s, .. } if name == "whoami" && s == seqid => {
                    return before;
                }
                other @ Got::Reply { .. } => before.push(other),
                other => panic!("no answer to the fence: {other:?}"),
            }
        }
    }

    /// The process holds no more fds than once the server was listening.
    fn settles(self) {
        let baseline = self.baseline;
        drop(self.raw);
        settle_fd_count(baseline);
    }
}

/// `{name}_args { 1: i32 value }`.
fn i32_args(value: i32) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut last = 0;
    enc.write_field_header(5, 1, &mut last);
    enc.write_i32(value);
    enc.write_stop();
    enc.into_parts().0
}

/// A stream frame from the client: a ONEWAY message named `name` on `seqid`, with `body`
/// (a struct, stop byte included).
fn stream_frame(seqid: i32, name: &str, kind: &str, credit: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.write_message_header(name, MessageType::Oneway, seqid)
        .unwrap();
    let (mut payload, _) = enc.into_parts();
    payload.extend_from_slice(body);
    let mut headers = vec![("fdrpc-stream", kind)];
    if let Some(c) = credit {
        headers.push(("fdrpc-credit", c));
    }
    frame(seqid, &headers, &payload)
}

/// The `memfds` call on `seqid` granting `credit` (as written) in `fdrpc-credit`.
fn memfds(seqid: i32, count: i32, credit: Option<&str>) -> Vec<u8> {
    let headers: Vec<(&str, &str)> = credit.map(|c| ("fdrpc-credit", c)).into_iter().collect();
    frame(seqid, &headers, &call("memfds", seqid, &i32_args(count)))
}

/// Expects the opening reply of `memfds` on `seqid`: a REPLY with an empty result struct and
/// no stream header.
fn expect_opened(got: Got, seqid: i32) {
    match got {
        Got::Reply {
            ty,
            name,
            seqid: s,
            stream: None,
            body,
            fds,
            ..
        } => {
            assert_eq!(
                (ty, name.as_str(), s),
                (MessageType::Reply, "memfds", seqid)
            );
            assert_eq!(body, [0], "an empty result struct");
            assert!(fds.is_empty());
        }
        other => panic!("expected the opening reply, got {other:?}"),
    }
}

/// Expects item `i` of `memfds` on `seqid`: an `item` frame whose result field 0 is index 0,
/// with one fd holding the text of `i`.
fn expect_item(got: Got, seqid: i32, i: usize) {
    match got {
        Got::Reply {
            ty,
            seqid: s,
            stream: Some(kind),
            body,
            fds,
            ..
        } => {
            assert_eq!((ty, s, kind.as_str()), (MessageType::Reply, seqid, "item"));
            let item = success_fd(&body, fds);
            assert_eq!(contents(&item), i.to_string().as_bytes());
            assert!(is_cloexec(&item));
        }
        other => panic!("expected item {i}, got {other:?}"),
    }
}

/// Field 0 of a result struct holding an fd, and nothing else.
fn success_fd(body: &[u8], fds: Vec<OwnedFd>) -> OwnedFd {
    let mut dec = fdrpc::codec::Decoder::new(body, fdrpc::FdTable::new(fds));
    let mut last = 0;
    let (ty, id) = dec.read_field_header(&mut last).unwrap().unwrap();
    assert_eq!((ty, id), (fdrpc::codec::TType::I32, 0));
    let fd = dec.read_fd().unwrap();
    assert!(dec.read_field_header(&mut last).unwrap().is_none());
    dec.finish().unwrap();
    fd
}

/// Field 0 of a result struct holding an i64.
fn success_i64(body: &[u8]) -> i64 {
    let mut dec = fdrpc::codec::Decoder::new(body, fdrpc::FdTable::empty());
    let mut last = 0;
    let (ty, id) = dec.read_field_header(&mut last).unwrap().unwrap();
    assert_eq!((ty, id), (fdrpc::codec::TType::I64, 0));
    let v = dec.read_i64().unwrap();
    assert!(dec.read_field_header(&mut last).unwrap().is_none());
    v
}

/// A sink item of `total_size` carrying `fd`, after `sent` fds sent earlier.
fn sink_item(seqid: i32, sent: usize) -> Vec<u8> {
    let mut item = Encoder::new();
    item.write_message_header("total_size", MessageType::Oneway, seqid)
        .unwrap();
    let mut last = 0;
    item.write_field_header(5, 0, &mut last);
    item.write_i32(0);
    item.write_stop();
    let (payload, _) = item.into_parts();
    let seq = sent.to_string();
    frame(
        seqid,
        &[
            ("fdrpc-stream", "item"),
            ("fdrpc-fds", "1"),
            ("fdrpc-fd-seq", &seq),
        ],
        &payload,
    )
}

fn expect_kind(got: Got, seqid: i32, kind: &str) {
    match got {
        Got::Reply {
            seqid: s,
            stream: Some(k),
            fds,
            ..
        } => {
            assert_eq!((s, k.as_str()), (seqid, kind));
            assert!(fds.is_empty());
        }
        other => panic!("expected `{kind}`, got {other:?}"),
    }
}

#[test]
fn an_exact_grant_sees_the_end() {
    let mut p = Peer::start();
    p.send(&memfds(1, 3, Some("3")));
    expect_opened(p.next(), 1);
    for i in 0..3 {
        expect_item(p.next(), 1, i);
    }
    expect_kind(p.next(), 1, "end");
    assert!(p.fence(2).is_empty(), "nothing after the end");
    p.settles();
}

#[test]
fn a_zero_grant_sees_the_end_of_an_empty_stream() {
    let mut p = Peer::start();
    p.send(&memfds(1, 0, Some("0")));
    expect_opened(p.next(), 1);
    expect_kind(p.next(), 1, "end");
    p.settles();
}

#[test]
fn no_item_goes_without_credit() {
    let mut p = Peer::start();
    p.send(&memfds(1, 2, Some("0")));
    expect_opened(p.next(), 1);
    assert!(p.fence(2).is_empty(), "an item sent without credit");
    p.send(&stream_frame(1, "memfds", "credit", Some("1"), &[0]));
    expect_item(p.next(), 1, 0);
    assert!(p.fence(3).is_empty(), "one credit, one item");
    p.send(&stream_frame(1, "memfds", "credit", Some("5"), &[0]));
    expect_item(p.next(), 1, 1);
    expect_kind(p.next(), 1, "end");
    p.settles();
}

#[test]
fn the_window_is_sixteen_when_the_call_grants_none() {
    let mut p = Peer::start();
    p.send(&memfds(1, 100, None));
    expect_opened(p.next(), 1);
    let before = p.fence(2);
    assert_eq!(before.len(), 16, "items sent on the default window");
    for (i, got) in before.into_iter().enumerate() {
        expect_item(got, 1, i);
    }
    p.send(&stream_frame(1, "memfds", "cancel", None, &[0]));
    p.settles();
}

#[test]
fn a_cancel_stops_the_stream_and_later_credit_is_dropped() {
    let mut p = Peer::start();
    p.send(&memfds(1, 1000, Some("4")));
    expect_opened(p.next(), 1);
    for i in 0..4 {
        expect_item(p.next(), 1, i);
    }
    p.send(&stream_frame(1, "memfds", "cancel", None, &[0]));
    // Not acknowledged; credit for the cancelled stream goes nowhere.
    p.send(&stream_frame(1, "memfds", "credit", Some("100"), &[0]));
    assert!(p.fence(2).is_empty(), "items after a cancel");
    p.settles();
}

/// A client that stops sending (shuts down its write side) in the middle of a sink: the sink
/// breaks off, and the call is still answered, with PROTOCOL_ERROR (docs/PROTOCOL.md).
#[test]
fn a_sink_whose_client_stops_sending_breaks_off_and_the_call_is_still_answered() {
    let mut p = Peer::start();
    p.send(&frame(1, &[], &call("total_size", 1, &[0])));
    expect_kind(p.next(), 1, "credit");
    let f = memfd(b"1234567");
    p.raw.send(&sink_item(1, 0), &[f.as_fd()]);
    p.raw.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let why = p
        .raw
        .expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
    assert!(
        why.starts_with("the sink broke off before its end"),
        "{why}"
    );
}

#[test]
fn a_sink_gets_its_window_and_may_end_before_using_it() {
    let mut p = Peer::start();
    p.send(&frame(1, &[], &call("total_size", 1, &[0])));
    // The server grants the sink's first window with a `credit` frame.
    match p.next() {
        Got::Reply {
            ty,
            name,
            seqid,
            stream,
            credit,
            ..
        } => {
            assert_eq!(
                (ty, name.as_str(), seqid),
                (MessageType::Reply, "total_size", 1)
            );
            assert_eq!(stream.as_deref(), Some("credit"));
            assert_eq!(credit, Some(fdrpc::DEFAULT_WINDOW.to_string()));
        }
        other => panic!("{other:?}"),
    }
    let f = memfd(b"12345");
    p.raw.send(&sink_item(1, 0), &[f.as_fd()]);
    p.send(&stream_frame(1, "total_size", "end", None, &[0]));
    match p.next() {
        Got::Reply {
            ty,
            stream: None,
            body,
            ..
        } => {
            assert_eq!(ty, MessageType::Reply);
            assert_eq!(success_i64(&body), 5);
        }
        other => panic!("{other:?}"),
    }
    // And an empty sink: `end` first, before the server's credit is even read.
    p.send(&frame(2, &[], &call("total_size", 2, &[0])));
    p.send(&stream_frame(2, "total_size", "end", None, &[0]));
    expect_kind(p.next(), 2, "credit");
    match p.next() {
        Got::Reply {
            seqid: 2,
            stream: None,
            body,
            ..
        } => assert_eq!(success_i64(&body), 0),
        other => panic!("{other:?}"),
    }
    drop(f);
    p.settles();
}

#[test]
fn a_sink_item_beyond_the_credit_is_cancelled_and_refused_and_the_connection_goes_on() {
    // A handler that takes items as they come grants more credit as it goes; on a
    // current-thread server it takes none before every item of the small batch below has
    // arrived. The window is 2, so the third item is one too many.
    let mut p = Peer::start_current_thread(2);
    p.send(&frame(1, &[], &call("total_size", 1, &[0])));
    expect_kind(p.next(), 1, "credit");
    // One item more than the window, in one `sendmsg`: the server has them all before its
    // handler takes any (taking items grants more credit).
    let n = 3;
    let fds: Vec<OwnedFd> = (0..n)
        .map(|i| OwnedFd::from(memfd(&vec![1; i + 1])))
        .collect();
    let frames: Vec<u8> = (0..n).flat_map(|i| sink_item(1, i)).collect();
    p.raw.send(&frames, &borrowed(&fds));
    let mut saw_cancel = false;
    loop {
        match p.next() {
            Got::Reply {
                stream: Some(k), ..
            } if k == "cancel" => saw_cancel = true,
            Got::Reply {
                ty: MessageType::Exception,
                seqid: 1,
                body,
                ..
            } => {
                assert_eq!(
                    fdrpc::ApplicationErrorKind::from_code(exception_code(&body)),
                    fdrpc::ApplicationErrorKind::ProtocolError
                );
                break;
            }
            Got::Reply {
                stream: Some(k), ..
            } if k == "credit" => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        saw_cancel,
        "the server sends `cancel` before its error reply"
    );
    p.raw.still_answers(2);
    drop(fds);
    p.settles();
}

#[test]
fn a_call_with_a_bad_credit_is_refused_and_the_connection_goes_on() {
    let mut p = Peer::start();
    for (seqid, credit) in [
        (1, "-1"),
        (2, "65537"),
        (3, "sixteen"),
        (4, ""),
        // Leading zeros beyond six digits: refused, not read as 16 (nor overflowed).
        (6, "00000000000000000000016"),
    ] {
        p.send(&memfds(seqid, 3, Some(credit)));
        let why = p
            .raw
            .expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
        assert!(why.contains("`fdrpc-credit`"), "{credit}: {why}");
    }
    p.send(&memfds(5, 1, Some("65536")));
    expect_opened(p.next(), 5);
    expect_item(p.next(), 5, 0);
    expect_kind(p.next(), 5, "end");
    p.settles();
}

#[test]
fn malformed_stream_frames_close_the_connection() {
    for (what, f) in [
        (
            "an unknown kind",
            stream_frame(1, "memfds", "more", Some("1"), &[0]),
        ),
        (
            "credit without a count",
            stream_frame(1, "memfds", "credit", None, &[0]),
        ),
        (
            "credit not decimal",
            stream_frame(1, "memfds", "credit", Some("0x10"), &[0]),
        ),
        (
            "credit above 65536",
            stream_frame(1, "memfds", "credit", Some("65537"), &[0]),
        ),
    ] {
        let mut p = Peer::start();
        p.send(&f);
        match p.next() {
            Got::Closed => {}
            other => panic!("{what}: expected the connection closed, got {other:?}"),
        }
        p.settles();
    }
}

#[test]
fn a_frame_with_a_stream_header_is_never_a_call() {
    let mut p = Peer::start();
    // A CALL message named like a method, but marked as a stream frame of a stream that does
    // not exist: dropped, not run.
    let mut headers = vec![("fdrpc-stream", "end")];
    p.send(&frame(7, &headers, &call("whoami", 7, &[0])));
    headers[0].1 = "credit";
    headers.push(("fdrpc-credit", "1"));
    p.send(&frame(8, &headers, &call("whoami", 8, &[0])));
    assert!(
        p.fence(9).is_empty(),
        "a stream frame was answered as a call"
    );
    p.settles();
}

/// The client's side of the same policy: a server that sends an unknown `fdrpc-stream` kind
/// fails the connection, with the reason.
#[test]
fn a_client_facing_an_unknown_stream_kind_fails_the_connection() {
    run_async(async {
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut raw = Raw::new(b);
            let Got::Reply { seqid, .. } = raw.next(WAIT) else {
                panic!("no call")
            };
            let mut enc = Encoder::new();
            enc.write_message_header("memfds", MessageType::Reply, seqid)
                .unwrap();
            enc.write_stop();
            let opened = enc.into_parts().0;
            raw.send(&frame(seqid, &[], &opened), &[]);
            raw.send(&frame(seqid, &[("fdrpc-stream", "more")], &opened), &[]);
            raw.expect_closed_within(WAIT);
        });
        let client = conformance::ConformanceClient::from_std(a).unwrap();
        let mut items = client.memfds(3).await.unwrap();
        match futures::StreamExt::next(&mut items).await {
            Some(Err(fdrpc::CallError::Rpc(fdrpc::RpcError::Connection(e)))) => {
                assert!(e.to_string().contains("fdrpc-stream"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(client.client().is_closed());
        drop((items, client));
        tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
    });
}
