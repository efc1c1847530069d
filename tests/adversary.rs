//! A hostile peer speaking raw THeader frames and SCM_RIGHTS to a real server. For every
//! case: the server's reaction (a `TApplicationException` reply, or the connection closed),
//! other connections keep working, and the process's fd count returns to its baseline.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use conformance::{Bundle, ConformanceBlockingClient, ConformanceImpl, ConformanceServer};
use fdrpc::Settings;
use fdrpc::codec::{Encoder, MessageType};

const PER_FRAME: usize = 64;
/// The server raises this to `PER_FRAME + 253`.
const QUEUED: usize = PER_FRAME + 253;
const STALL: Duration = Duration::from_millis(300);

/// An in-process conformance server with small limits, on its own runtime thread.
struct Harness {
    // Declared before the check: the server's fds are closed before the count is compared.
    server: ThreadServer,
    baseline: usize,
    _check: FdLeakCheck,
}

impl Harness {
    fn start() -> Harness {
        Self::start_with(|s| s)
    }

    /// A harness whose server's settings are further configured by `configure`.
    fn start_with(configure: impl FnOnce(Settings) -> Settings + Send + 'static) -> Harness {
        let check = fd_leak_check();
        let server = ThreadServer::start(
            move || {
                fdrpc::Server::with_settings(configure(
                    Settings::default()
                        .max_fds_per_frame(PER_FRAME)
                        .max_queued_fds(QUEUED)
                        .stall_timeout(STALL)
                        .max_backlog(64 << 10, 64)
                        .max_in_flight(32),
                ))
            },
            || ConformanceServer::new(ConformanceImpl::default()),
        );
        // Let the runtime settle before taking the baseline.
        std::thread::sleep(Duration::from_millis(50));
        Harness {
            server,
            baseline: fd_count(),
            _check: check,
        }
    }

    fn raw(&self) -> Raw {
        Raw::new(UnixStream::connect(&self.server.path).unwrap())
    }

    /// Another connection makes a call with an fd each way.
    fn others_still_work(&self) {
        let client = ConformanceBlockingClient::connect(&self.server.path)
            .unwrap()
            .with_timeout(Duration::from_secs(5));
        let fd = memfd(b"other");
        let id = ino(&fd);
        let back = client
            .echo(Bundle {
                label: "other".into(),
                fds: vec![fd.into()],
                spare: None,
            })
            .unwrap();
        assert_eq!(ino(&back.fds[0]), id);
    }

    /// The server closed `raw`; another connection still works, and once `raw` and the
    /// test's own `fds` are gone the process holds no more fds than at the start.
    fn closed_and_recovered(&self, mut raw: Raw, fds: impl Sized) {
        raw.expect_closed_within(STALL * 10);
        self.others_still_work();
        drop((raw, fds));
        self.settles();
    }

    /// Waits until the process holds no more fds than at the start.
    fn settles(&self) {
        settle_fd_count(self.baseline);
    }
}

#[test]
fn more_fds_than_the_frame_declares() {
    let h = Harness::start();
    let mut raw = h.raw();
    let fds = numbered(3);
    let f = fd_frame(1, 1, 0, &call("echo", 1, &echo_args(&[0])));
    raw.send(&f, &borrowed(&fds));
    // The call is answered with its one fd; the two extra fds stay unclaimed, so the
    // connection is closed after the stall timeout and they are closed with it.
    match raw.next(Duration::from_secs(5)) {
        Got::Reply { ty, fds: back, .. } => {
            assert_eq!(ty, MessageType::Reply);
            assert_eq!(back.len(), 1);
            assert_eq!(ino(&back[0]), ino(&fds[0]));
        }
        other => panic!("{other:?}"),
    }
    h.closed_and_recovered(raw, fds);
}

#[test]
fn fewer_fds_than_the_frame_declares() {
    let h = Harness::start();
    let raw = h.raw();
    let fds = numbered(1);
    let f = fd_frame(1, 2, 0, &call("echo", 1, &echo_args(&[0, 1])));
    raw.send(&f, &borrowed(&fds));
    h.closed_and_recovered(raw, fds);
}

#[test]
fn a_wrong_fd_sequence_number() {
    let h = Harness::start();
    let raw = h.raw();
    let fds = numbered(1);
    let f = fd_frame(1, 1, 7, &call("echo", 1, &echo_args(&[0])));
    raw.send(&f, &borrowed(&fds));
    h.closed_and_recovered(raw, fds);
}

#[test]
fn an_fd_sent_with_the_frame_before_its_own() {
    // A declares no fds but its sendmsg carries one; B declares one and carries none. Under
    // the FIFO rule this is batching: B gets the fd, and nothing is left over.
    let h = Harness::start();
    let mut raw = h.raw();
    let fd = memfd(b"early");
    let a = frame(1, &[], &call("whoami", 1, &[0]));
    let b = fd_frame(2, 1, 0, &call("echo", 2, &echo_args(&[0])));
    raw.send(&a, &[fd.as_fd()]);
    raw.send(&b, &[]);
    let mut echoed = None;
    for _ in 0..2 {
        if let Got::Reply { name, fds, .. } = raw.next(Duration::from_secs(5)) {
            if name == "echo" {
                echoed = Some(fds);
            }
        }
    }
    let echoed = echoed.expect("echo answered");
    assert_eq!(ino(&echoed[0]), ino(&fd));
    raw.still_answers(3);
    h.others_still_work();
    drop((raw, fd, echoed));
    h.settles();
}

#[test]
fn fds_without_any_fd_header() {
    let h = Harness::start();
    let mut raw = h.raw();
    let fds = numbered(2);
    raw.send(&frame(1, &[], &call("whoami", 1, &[0])), &borrowed(&fds));
    match raw.next(Duration::from_secs(5)) {
        Got::Reply { ty, .. } => assert_eq!(ty, MessageType::Reply),
        other => panic!("{other:?}"),
    }
    // Nobody claims the fds: closed after the stall timeout.
    h.closed_and_recovered(raw, fds);
}

#[test]
fn more_fds_than_the_per_frame_limit_in_one_sendmsg() {
    let h = Harness::start();
    let raw = h.raw();
    let fds = numbered(PER_FRAME + 10);
    let indices: Vec<i32> = (0..fds.len() as i32).collect();
    let f = fd_frame(1, fds.len(), 0, &call("echo", 1, &echo_args(&indices)));
    raw.send(&f, &borrowed(&fds));
    h.closed_and_recovered(raw, fds);
}

#[test]
fn more_fds_than_the_per_frame_limit_split_across_two_sendmsgs() {
    let h = Harness::start();
    let raw = h.raw();
    let fds = numbered(PER_FRAME + 10);
    let indices: Vec<i32> = (0..fds.len() as i32).collect();
    let f = fd_frame(1, fds.len(), 0, &call("echo", 1, &echo_args(&indices)));
    let half = fds.len() / 2;
    raw.send(&f[..1], &borrowed(&fds[..half]));
    raw.send(&f[1..], &borrowed(&fds[half..]));
    h.closed_and_recovered(raw, fds);
}

#[test]
fn more_unclaimed_fds_than_the_connection_budget() {
    let h = Harness::start();
    let raw = h.raw();
    let fds = numbered(200);
    raw.send(&[0], &borrowed(&fds));
    raw.send(&[0], &borrowed(&fds));
    assert!(2 * fds.len() > QUEUED);
    h.closed_and_recovered(raw, fds);
}

#[test]
fn bad_fd_indices_get_a_protocol_error_and_the_connection_goes_on() {
    let h = Harness::start();
    let mut raw = h.raw();
    let mut seq = 0i64;
    let mut seqid = 0;
    // (indices in the payload, fds attached)
    for (indices, nfds) in [
        (vec![3], 1usize), // out of range
        (vec![0, 0], 1),   // claimed twice
        (vec![0], 3),      // two left unclaimed
        (vec![-1], 1),     // negative
        (vec![i32::MAX], 2),
    ] {
        seqid += 1;
        let fds = numbered(nfds);
        let f = fd_frame(seqid, nfds, seq, &call("echo", seqid, &echo_args(&indices)));
        seq += nfds as i64;
        raw.send(&f, &borrowed(&fds));
        raw.expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
    }
    // fds sent to a method whose arguments hold none (fbthrift once crashed on this).
    let fds = numbered(2);
    raw.send(
        &fd_frame(9, 2, seq, &call("whoami", 9, &[0])),
        &borrowed(&fds),
    );
    raw.expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
    raw.still_answers(10);
    h.others_still_work();
    drop((raw, fds));
    h.settles();
}

#[test]
fn malformed_frames_close_the_connection() {
    let h = Harness::start();
    let valid = frame(1, &[], &call("whoami", 1, &[0]));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge length", vec![0x7f, 0xff, 0xff, 0xff, 0x0f, 0xff]),
        ("length below the minimum", vec![0, 0, 0, 3, 1, 2, 3]),
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    let mut wrong_magic = valid.clone();
    wrong_magic[4] = 0x80;
    cases.push(("wrong magic", wrong_magic));
    let mut wrong_protocol = valid.clone();
    wrong_protocol[14] = 0;
    cases.push(("binary protocol id", wrong_protocol));
    let mut transforms = valid.clone();
    transforms[15] = 1;
    cases.push(("a transform", transforms));
    let mut big_header = valid.clone();
    big_header[12] = 0x40;
    cases.push(("header larger than the frame", big_header));
    // An info section that claims 5 headers and holds none.
    let mut lying = Vec::new();
    lying.extend_from_slice(&[0, 0, 0, 0, 0x0f, 0xff, 0, 0, 0, 0, 0, 1, 0, 1]);
    lying.extend_from_slice(&[2, 0, 1, 5]);
    let payload = call("whoami", 1, &[0]);
    lying.extend_from_slice(&payload);
    let len = (lying.len() - 4) as u32;
    lying[..4].copy_from_slice(&len.to_be_bytes());
    cases.push(("info headers lie about their count", lying));
    let (n, s) = ("not a number".to_string(), "0".to_string());
    cases.push((
        "fd count not a number",
        frame(1, &[("fdrpc-fds", &n), ("fdrpc-fd-seq", &s)], &payload),
    ));
    for (what, bytes) in cases {
        let mut raw = h.raw();
        raw.send(&bytes, &[]);
        match raw.next(STALL * 10) {
            Got::Closed => {}
            other => panic!("{what}: expected the connection closed, got {other:?}"),
        }
    }
    // A truncated frame, then the end of the stream.
    let mut raw = h.raw();
    raw.send(&valid[..valid.len() - 3], &[]);
    raw.sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(raw.next(Duration::from_secs(5)), Got::Closed));
    drop(raw);
    h.others_still_work();
    h.settles();
}

#[test]
fn undecodable_payloads_get_an_error_reply() {
    let h = Harness::start();
    let mut raw = h.raw();
    // Nested 100,000 lists deep in an unknown field.
    let mut deep = vec![0x99];
    deep.extend(std::iter::repeat_n(0x19, 100_000));
    raw.send(&frame(1, &[], &call("whoami", 1, &deep)), &[]);
    raw.expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
    // A payload that is not a Thrift message at all.
    raw.send(&frame(2, &[], b"\x00\x01\x02"), &[]);
    raw.expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
    // An unknown method.
    raw.send(&frame(3, &[], &call("no_such_method", 3, &[0])), &[]);
    raw.expect_application_error(fdrpc::ApplicationErrorKind::UnknownMethod);
    // A reply sent to a server.
    let mut enc = Encoder::new();
    enc.write_message_header("whoami", MessageType::Reply, 4)
        .unwrap();
    enc.write_stop();
    raw.send(&frame(4, &[], &enc.into_parts().0), &[]);
    raw.expect_application_error(fdrpc::ApplicationErrorKind::InvalidMessageType);
    raw.still_answers(5);
    drop(raw);
    h.others_still_work();
    h.settles();
}

#[test]
fn half_a_frame_with_fds_then_silence() {
    let h = Harness::start();
    let mut raw = h.raw();
    let fds = numbered(5);
    let f = fd_frame(1, 5, 0, &call("echo", 1, &echo_args(&[0, 1, 2, 3, 4])));
    raw.send(&f[..f.len() / 2], &borrowed(&fds));
    let started = Instant::now();
    raw.expect_closed_within(STALL * 10);
    assert!(
        started.elapsed() >= STALL / 2,
        "closed before the stall timeout"
    );
    h.others_still_work();
    drop((raw, fds));
    h.settles();
}

#[test]
fn a_frame_trickled_in_a_byte_at_a_time_stalls_all_the_same() {
    // Bytes that keep arriving do not keep a frame that never completes alive: the stall
    // timeout counts from its first byte, not from the last read.
    let h = Harness::start();
    let mut raw = h.raw();
    let fds = numbered(5);
    let f = fd_frame(1, 5, 0, &call("echo", 1, &echo_args(&[0, 1, 2, 3, 4])));
    raw.send(&f[..8], &borrowed(&fds));
    let mut trickle = raw.sock.try_clone().unwrap();
    let rest = f[8..f.len() - 1].to_vec();
    let every = STALL / 15;
    // The trickle would last this long: the stall must come well before it ends.
    assert!(
        every * rest.len() as u32 >= STALL * 3,
        "frame too short to trickle"
    );
    let started = Instant::now();
    let trickler = std::thread::spawn(move || {
        for b in rest {
            if std::io::Write::write_all(&mut trickle, &[b]).is_err() {
                return true;
            }
            std::thread::sleep(every);
        }
        false
    });
    raw.expect_closed_within(STALL * 10);
    assert!(
        started.elapsed() >= STALL / 2,
        "closed before the stall timeout"
    );
    assert!(
        trickler.join().unwrap(),
        "the connection outlived the trickle: its bytes kept the frame alive"
    );
    h.others_still_work();
    drop((raw, fds));
    h.settles();
}

#[test]
fn the_parked_fd_is_the_peers_own_socket() {
    // The client parks its own end of the connection in a half-sent frame and closes its
    // copy: only the server now holds the socket that would tell it the peer is gone. The
    // stall timeout breaks the cycle.
    let h = Harness::start();
    let raw = h.raw();
    let own = raw.sock.try_clone().unwrap();
    let f = fd_frame(1, 1, 0, &call("echo", 1, &echo_args(&[0])));
    raw.send(&f[..10], &[own.as_fd()]);
    drop((raw, own));
    h.settles();
    h.others_still_work();
    h.settles();
}

#[test]
fn a_flood_of_frames_at_half_three_quarters_and_the_full_fd_limit() {
    let h = Harness::start();
    let sock = UnixStream::connect(&h.server.path).unwrap();
    let mut send = fdrpc::transport::SendQueue::new();
    let mut expected = Vec::new();
    let mut seqid = 0;
    for n in [PER_FRAME / 2, PER_FRAME * 3 / 4, PER_FRAME] {
        for _ in 0..20 {
            seqid += 1;
            let fds: Vec<OwnedFd> = (0..n)
                .map(|k| OwnedFd::from(memfd(format!("{seqid}:{k}").as_bytes())))
                .collect();
            let indices: Vec<i32> = (0..n as i32).collect();
            send.push(seqid, &call("echo", seqid, &echo_args(&indices)), fds, &[])
                .unwrap();
            expected.push((seqid, n));
        }
    }
    // Everything at once, batched into as few sendmsg calls as the fds allow, while the
    // replies are read.
    let mut raw = Raw::new(sock.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        send.flush_blocking(sock.as_fd()).unwrap();
        sock
    });
    // Every call answered once, by seqid, with exactly the fds it sent, in order.
    let mut got = std::collections::BTreeMap::new();
    while got.len() < expected.len() {
        match raw.next(Duration::from_secs(10)) {
            Got::Reply {
                ty,
                seqid,
                body,
                fds,
                ..
            } => {
                assert_eq!(ty, MessageType::Reply);
                let bundle: Bundle = fdrpc::decode(&body[1 + 1..body.len() - 1], fds)
                    .unwrap_or_else(|e| panic!("{e}"));
                for (k, fd) in bundle.fds.iter().enumerate() {
                    assert_eq!(contents(fd), format!("{seqid}:{k}").as_bytes());
                }
                assert!(
                    got.insert(seqid, bundle.fds.len()).is_none(),
                    "two replies to {seqid}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), expected);
    drop(writer.join().unwrap());
    drop(raw);
    h.others_still_work();
    h.settles();
}

#[test]
fn a_client_that_disconnects_with_calls_streams_and_fds_in_flight() {
    let h = Harness::start();
    let path = h.server.path.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = conformance::ConformanceClient::connect(&path)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = c.memfds(1_000_000).await.unwrap();
                use futures::StreamExt;
                for _ in 0..i {
                    let _ = s.next().await;
                }
                std::future::pending::<()>().await;
            }));
        }
        for _ in 0..20 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let _ = c
                    .echo(Bundle {
                        label: "x".into(),
                        fds: numbered(3),
                        spare: None,
                    })
                    .await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for t in &tasks {
            t.abort();
        }
        drop(client);
    });
    drop(rt);
    h.others_still_work();
    h.settles();
}

#[test]
fn a_client_that_never_reads_its_replies() {
    let h = Harness::start();
    let sock = UnixStream::connect(&h.server.path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let raw = Raw::new(sock);
    // Calls whose replies each carry an fd, written until the server stops reading.
    let mut sent = 0;
    let started = Instant::now();
    let path_args = {
        let mut enc = Encoder::new();
        let mut last = 0;
        enc.write_field_header(8, 1, &mut last);
        enc.write_binary(b"/proc/self/exe").unwrap();
        enc.write_stop();
        enc.into_parts().0
    };
    let mut peak = 0;
    // A short send, or a socket that stays full for a while: the server has stopped reading
    // (its backlog of unread replies is full). The calls' replies are what it holds.
    let stopped = loop {
        let f = frame(sent + 1, &[], &call("open", sent + 1, &path_args));
        let mut fds = [rustix::event::PollFd::new(
            &raw.sock,
            rustix::event::PollFlags::OUT,
        )];
        let wait = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        if rustix::event::poll(&mut fds, Some(&wait)).unwrap() == 0 {
            break Instant::now();
        }
        match rustix::net::send(&raw.sock, &f, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) if n == f.len() => sent += 1,
            Ok(_) => break Instant::now(),
            Err(rustix::io::Errno::AGAIN) => continue,
            Err(e) => panic!("{e}"),
        }
        if sent % 100 == 0 {
            peak = peak.max(fd_count() - h.baseline);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server never stopped reading"
        );
    };
    assert!(sent > 0);
    // Until the server hangs up (its replies stay unread, the peer makes no progress): what
    // it holds meanwhile is bounded by its backlog and in-flight limits, not by `sent`, and it
    // hangs up one stall timeout after it stopped reading (a half-sent last call may make
    // that the stall of a half-received frame: the same timeout).
    let hung_up = loop {
        peak = peak.max(fd_count() - h.baseline);
        if hung_up_within(&raw.sock, Duration::from_millis(10)) {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < STALL * 10,
            "the server kept a connection whose replies stay unread"
        );
    };
    assert!(
        peak < 64 + 32 + 64 + 16,
        "{peak} fds held for {sent} unread calls"
    );
    assert!(
        hung_up < STALL * 2,
        "hung up {hung_up:?} after it stopped reading; the stall timeout is {STALL:?}"
    );
    drop(raw);
    h.others_still_work();
    h.settles();
}

#[test]
fn the_server_wide_fd_budget_pauses_reading_instead_of_running_out() {
    // A budget of 600 fds over all connections (a frame may then carry at most 300).
    let h = Harness::start_with(|s| s.fd_budget(600).max_fds_per_frame(300).max_queued_fds(600));
    // Two peers park 250 fds each in half-sent frames, and close their own copies: the
    // server now holds 500 of its 600.
    let mut parkers = Vec::new();
    for _ in 0..2 {
        let raw = h.raw();
        let fds = numbered(250);
        let indices: Vec<i32> = (0..250).collect();
        let f = fd_frame(1, 250, 0, &call("echo", 1, &echo_args(&indices)));
        raw.send(&f[..20], &borrowed(&fds));
        parkers.push(raw);
    }
    // Once the server has read the parked fds: those 500, and both ends of two connections.
    await_fd_count("the server reading the parked fds", |n| {
        n >= h.baseline + 504
    });
    // A third peer's call needs a share of the budget to be read: it waits until the stall
    // timeout releases the parked fds, instead of the server taking more.
    let started = Instant::now();
    h.others_still_work();
    assert!(
        started.elapsed() >= STALL / 2,
        "served before any budget was released"
    );
    assert!(fd_count() - h.baseline <= 600 + 16);
    drop(parkers);
    h.settles();
}

#[test]
fn endless_credit_to_a_stream_the_peer_never_reads() {
    // The peer asks for a million memfds, grants all the credit it can, and never reads: the
    // server's producer waits for the peer to drain its backlog (64 fds here) instead of
    // making more, and gives up on the connection after the stall timeout.
    let h = Harness::start();
    let raw = h.raw();
    let mut args = Encoder::new();
    let mut last = 0;
    args.write_field_header(5, 1, &mut last);
    args.write_i32(1_000_000);
    args.write_stop();
    let args = args.into_parts().0;
    raw.send(
        &frame(1, &[("fdrpc-credit", "65536")], &call("memfds", 1, &args)),
        &[],
    );
    let mut credit = Encoder::new();
    credit
        .write_message_header("memfds", MessageType::Oneway, 1)
        .unwrap();
    credit.write_stop();
    let credit = credit.into_parts().0;
    for _ in 0..20 {
        raw.send(
            &frame(
                1,
                &[("fdrpc-stream", "credit"), ("fdrpc-credit", "65536")],
                &credit,
            ),
            &[],
        );
    }
    let mut peak = 0;
    let started = Instant::now();
    while started.elapsed() < STALL * 4 {
        peak = peak.max(fd_count().saturating_sub(h.baseline));
        std::thread::sleep(Duration::from_millis(10));
    }
    // The socket buffers hold some items too; the server's own backlog is bounded by 64.
    assert!(
        peak < 64 + 300,
        "{peak} fds held for a peer that never reads"
    );
    // The server closed the connection: what the socket still holds, then the end.
    h.closed_and_recovered(raw, ());
}

/// Connections beyond `max_connections` are closed at once; those within it are served.
#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let h = Harness::start_with(|s| s.max_connections(2));
    let mut first = h.raw();
    let mut second = h.raw();
    first.still_answers(1);
    second.still_answers(1);
    let mut third = h.raw();
    let started = Instant::now();
    third.expect_closed_within(Duration::from_secs(5));
    assert!(started.elapsed() < STALL, "{:?}", started.elapsed());
    // The two within the limit go on; once one goes, a new connection is served.
    first.still_answers(2);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = h.raw();
        // The server had not seen the first one go yet: it closes the new connection, before
        // the call is sent (the send fails) or after (the reply never comes).
        let closed = match again.try_send(&frame(3, &[], &call("whoami", 3, &[0])), &[]) {
            Ok(_) => match again.next(Duration::from_secs(5)) {
                Got::Reply { name, .. } if name == "whoami" => break,
                Got::Closed => true,
                other => panic!("{other:?}"),
            },
            Err(e) => {
                assert!(
                    matches!(e, rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET),
                    "{e}"
                );
                true
            }
        };
        assert!(closed && Instant::now() < deadline, "no room after a close");
    }
    drop((second, third));
    h.settles();
}

/// A `sleep(ms)` call on `seqid`.
fn sleep_call(seqid: i32, ms: i64) -> Vec<u8> {
    let mut enc = fdrpc::codec::Encoder::new();
    let mut last = 0;
    enc.write_field_header(6, 1, &mut last);
    enc.write_i64(ms);
    enc.write_stop();
    frame(seqid, &[], &call("sleep", seqid, &enc.into_parts().0))
}

/// With `max_in_flight` calls running, the server reads no further call until one ends.
#[test]
fn calls_beyond_max_in_flight_wait_unread() {
    let h = Harness::start_with(|s| s.max_in_flight(2));
    let mut raw = h.raw();
    let started = Instant::now();
    let calls: Vec<u8> = (1..=3).flat_map(|seqid| sleep_call(seqid, 300)).collect();
    raw.send(&calls, &[]);
    let mut answered = Vec::new();
    while answered.len() < 3 {
        match raw.next(Duration::from_secs(5)) {
            Got::Reply { seqid, ty, .. } => {
                assert_eq!(ty, MessageType::Reply);
                answered.push((seqid, started.elapsed()));
            }
            other => panic!("{other:?}"),
        }
    }
    answered.sort();
    // The first two ran together; the third started only when one of them ended.
    assert!(answered[0].1 < Duration::from_millis(550), "{answered:?}");
    assert!(answered[1].1 < Duration::from_millis(550), "{answered:?}");
    assert!(answered[2].1 >= Duration::from_millis(590), "{answered:?}");
    drop(raw);
    h.settles();
}

/// A peer that takes every call slot with calls that wait, then closes: the server is not
/// reading it (no slot is free), yet notices, and drops the handlers at once.
#[test]
fn a_peer_that_closes_with_every_call_slot_taken_has_its_handlers_dropped() {
    let h = Harness::start();
    let raw = h.raw();
    // 32 calls fill the slots (`max_in_flight`); the 33rd stays unread.
    let calls: Vec<u8> = (1..=33)
        .flat_map(|seqid| sleep_call(seqid, 60_000))
        .collect();
    raw.send(&calls, &[]);
    let client = ConformanceBlockingClient::connect(&h.server.path)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    // Wait until the 32 run, then close.
    let deadline = Instant::now() + Duration::from_secs(5);
    drop(raw);
    loop {
        let dropped = client.dropped().unwrap();
        if dropped >= 32 {
            assert_eq!(dropped, 32);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{dropped} of 32 handlers dropped after the peer closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);
    h.settles();
}

/// Limits of zero are taken as one (the documented clamps of `Settings`): a server with
/// `max_in_flight(0)` and `max_connections(0)` still reads calls, one at a time, on one
/// connection, instead of never reading or refusing everyone.
#[test]
fn zero_limits_serve_one_call_on_one_connection() {
    let h = Harness::start_with(|s| s.max_in_flight(0).max_connections(0));
    let mut first = h.raw();
    first.still_answers(1);
    first.still_answers(2);
    let mut second = h.raw();
    second.expect_closed_within(Duration::from_secs(5));
    drop((first, second));
    h.settles();
}

/// A frame may carry at most half the server's fd budget (after its floor of 506): a frame
/// declaring more could never be received whole, so it is refused as soon as its header is
/// read, not left to stall until the stall timeout.
#[test]
fn a_frame_with_more_fds_than_half_a_small_budget_is_refused_at_once() {
    let stall = Duration::from_secs(20);
    let h = Harness::start_with(move |s| {
        s.fd_budget(10)
            .max_fds_per_frame(1024)
            .max_queued_fds(2048)
            .stall_timeout(stall)
    });
    let mut raw = h.raw();
    // The budget is 506 (its floor), so a frame carries at most 253; this one declares 300.
    let fds = numbered(300);
    let indices: Vec<i32> = (0..300).collect();
    let f = fd_frame(1, fds.len(), 0, &call("echo", 1, &echo_args(&indices)));
    let started = Instant::now();
    raw.send(&f[..1], &borrowed(&fds[..253]));
    raw.send(&f[1..], &borrowed(&fds[253..]));
    raw.expect_closed_within(stall / 2);
    assert!(started.elapsed() < stall / 2, "{:?}", started.elapsed());
    drop((raw, fds));
    h.others_still_work();
    h.settles();
}
