//! The clients against a server that lies: replies to calls nobody made, with fds nobody
//! asked for, naming another method, of the wrong message type; broken fd counts, truncated
//! and oversized frames; stream frames for streams that do not exist or have ended; a server
//! that stops reading. Each case: a typed error or the documented reaction (docs/PROTOCOL.md),
//! no panic, no leaked fd, and the client's other connections unaffected.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use fdrpc::codec::{Encoder, MessageType};
use fdrpc::{ApplicationErrorKind, RpcError};

#[fdrpc::service]
pub trait Target {
    async fn get(&self, n: i32) -> i32;
    async fn upload(&self, data: Vec<u8>, fd: OwnedFd) -> i32;
    async fn items(&self) -> fdrpc::Stream<i32>;
    #[oneway]
    async fn note(&self, data: Vec<u8>, fd: OwnedFd);
}

/// A message of type `ty` naming `name`, whose result struct's field 0 is `value`.
fn answer(name: &str, ty: MessageType, seqid: i32, value: i32) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.write_message_header(name, ty, seqid).unwrap();
    let mut last = 0;
    enc.write_field_header(5, 0, &mut last);
    enc.write_i32(value);
    enc.write_stop();
    enc.into_parts().0
}

/// The call the client sent: its seqid and method name.
fn take_call(server: &mut Raw) -> (i32, String) {
    match server.next(Duration::from_secs(5)) {
        Got::Reply {
            ty, seqid, name, ..
        } => {
            assert_eq!(ty, MessageType::Call);
            (seqid, name)
        }
        other => panic!("no call came: {other:?}"),
    }
}

/// The next call, after any stream frames the client sends first (a `cancel`, credit).
fn take_call_after_stream_frames(server: &mut Raw) -> (i32, String) {
    loop {
        match server.next(Duration::from_secs(5)) {
            Got::Reply {
                ty: MessageType::Call,
                seqid,
                name,
                ..
            } => return (seqid, name),
            Got::Reply {
                stream: Some(_), ..
            } => {}
            other => panic!("no call came: {other:?}"),
        }
    }
}

fn sockets() -> (UnixStream, Raw) {
    let (client, server) = UnixStream::pair().unwrap();
    (client, Raw::new(server))
}

/// A client on a second, honest connection still works while the first one is attacked.
fn bystander() -> (TargetBlockingClient, std::thread::JoinHandle<()>) {
    let (client, server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut raw = Raw::new(server);
        while let Got::Reply { seqid, name, .. } = raw.next(Duration::from_secs(10)) {
            raw.send(
                &frame(seqid, &[], &answer(&name, MessageType::Reply, seqid, 7)),
                &[],
            );
        }
    });
    (TargetBlockingClient::from_std(client), t)
}

/// Runs `client_side` with the client end of a connection whose other end a raw `server`
/// plays (on another thread), with a bystander connection that must keep working; checks
/// that no fd is left behind.
fn against(client_side: impl FnOnce(UnixStream), server: impl FnOnce(&mut Raw) + Send + 'static) {
    // Every client here must give up by its timeouts (2 s at most): one that waits for ever
    // fails the run instead of stalling it.
    let _watchdog = Watchdog::new(Duration::from_secs(30), "a client against a hostile server");
    let _check = fd_leak_check();
    let (a, mut raw) = sockets();
    let (other, other_server) = bystander();
    let serving = std::thread::spawn(move || {
        server(&mut raw);
        raw
    });
    client_side(a);
    assert_eq!(
        other.get(1).unwrap(),
        7,
        "a bystander connection was affected"
    );
    drop(other);
    drop(serving.join().unwrap());
    other_server.join().unwrap();
}

/// Runs `attack` with the blocking client against a raw `server`.
fn blocking(
    attack: impl FnOnce(&TargetBlockingClient) + Send,
    server: impl FnOnce(&mut Raw) + Send + 'static,
) {
    against(
        |a| attack(&TargetBlockingClient::from_std(a).with_timeout(Duration::from_secs(2))),
        server,
    );
}

/// The same with the async client.
fn asynchronous<F: std::future::Future<Output = ()>>(
    attack: impl FnOnce(TargetClient) -> F,
    server: impl FnOnce(&mut Raw) + Send + 'static,
) {
    against(
        |a| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = TargetClient::from_std(a)
                    .unwrap()
                    .with_timeout(Duration::from_secs(2));
                attack(client).await;
            });
        },
        server,
    );
}

fn is_protocol(r: &Result<i32, RpcError>, kind: ApplicationErrorKind) -> bool {
    matches!(r, Err(RpcError::Protocol(e)) if e.kind == kind)
}

/// Replies for seqids nobody waits for (with fds) are dropped with their fds; the real
/// reply then answers the call.
fn unknown_seqids(raw: &mut Raw) {
    let (seqid, name) = take_call(raw);
    let fds = numbered(3);
    let stray = fd_frame(
        seqid + 1000,
        3,
        0,
        &answer(&name, MessageType::Reply, seqid + 1000, 1),
    );
    raw.send(&stray, &borrowed(&fds));
    drop(fds);
    raw.send(
        &fd_frame(seqid, 0, 3, &answer(&name, MessageType::Reply, seqid, 42)),
        &[],
    );
}

#[test]
fn replies_to_calls_nobody_made_are_dropped_with_their_fds() {
    blocking(|c| assert_eq!(c.get(1).unwrap(), 42), unknown_seqids);
    asynchronous(
        |c| async move { assert_eq!(c.get(1).await.unwrap(), 42) },
        unknown_seqids,
    );
}

/// A reply naming another method, then one of type CALL, then ONEWAY.
fn lies_about_the_reply(raw: &mut Raw) {
    let (seqid, _) = take_call(raw);
    raw.send(
        &frame(seqid, &[], &answer("other", MessageType::Reply, seqid, 1)),
        &[],
    );
    for ty in [MessageType::Call, MessageType::Oneway] {
        let (seqid, name) = take_call(raw);
        raw.send(&frame(seqid, &[], &answer(&name, ty, seqid, 1)), &[]);
    }
}

#[test]
fn a_reply_with_the_wrong_name_or_type_is_a_protocol_error() {
    blocking(
        |c| {
            let r = c.get(1);
            assert!(
                is_protocol(&r, ApplicationErrorKind::WrongMethodName),
                "{r:?}"
            );
            for _ in 0..2 {
                let r = c.get(1);
                assert!(
                    is_protocol(&r, ApplicationErrorKind::InvalidMessageType),
                    "{r:?}"
                );
            }
        },
        lies_about_the_reply,
    );
    asynchronous(
        |c| async move {
            let r = c.get(1).await;
            assert!(
                is_protocol(&r, ApplicationErrorKind::WrongMethodName),
                "{r:?}"
            );
            for _ in 0..2 {
                let r = c.get(1).await;
                assert!(
                    is_protocol(&r, ApplicationErrorKind::InvalidMessageType),
                    "{r:?}"
                );
            }
        },
        lies_about_the_reply,
    );
}

/// A reply to a method returning an `i32`, carrying two fds.
fn fds_nobody_asked_for(raw: &mut Raw) {
    let (seqid, name) = take_call(raw);
    let fds = numbered(2);
    raw.send(
        &fd_frame(seqid, 2, 0, &answer(&name, MessageType::Reply, seqid, 5)),
        &borrowed(&fds),
    );
}

#[test]
fn fds_nobody_asked_for_are_closed() {
    // The value decodes; the fds the result does not claim are closed with it (the decoder's
    // rule for unclaimed fds, docs/PROTOCOL.md).
    let check = |r: Result<i32, RpcError>| match r {
        Ok(5) | Err(RpcError::Decode(_)) => {}
        other => panic!("{other:?}"),
    };
    blocking(|c| check(c.get(1)), fds_nobody_asked_for);
    asynchronous(
        |c| async move { check(c.get(1).await) },
        fds_nobody_asked_for,
    );
}

/// Frames that break the transport: the connection fails, every call on it with it.
/// A server's misdeed, by name.
type Attack = (&'static str, Box<dyn Fn(&mut Raw) + Send>);

fn broken_frames() -> Vec<Attack> {
    vec![
        (
            "fds declared but not sent",
            Box::new(|raw: &mut Raw| {
                let (seqid, name) = take_call(raw);
                raw.send(
                    &fd_frame(seqid, 2, 0, &answer(&name, MessageType::Reply, seqid, 5)),
                    &[],
                );
            }),
        ),
        (
            "a wrong fd sequence",
            Box::new(|raw: &mut Raw| {
                let (seqid, name) = take_call(raw);
                let fds = numbered(1);
                raw.send(
                    &fd_frame(seqid, 1, 9, &answer(&name, MessageType::Reply, seqid, 5)),
                    &borrowed(&fds),
                );
            }),
        ),
        (
            "a truncated frame, then the end",
            Box::new(|raw: &mut Raw| {
                let (seqid, name) = take_call(raw);
                let f = frame(seqid, &[], &answer(&name, MessageType::Reply, seqid, 5));
                raw.send(&f[..f.len() - 3], &[]);
                let _ = raw.sock.shutdown(std::net::Shutdown::Both);
            }),
        ),
        (
            "an oversized frame",
            Box::new(|raw: &mut Raw| {
                let _ = take_call(raw);
                let mut f = (64u32 << 20).to_be_bytes().to_vec();
                f.extend_from_slice(&[0x0f, 0xff, 0, 0]);
                raw.send(&f, &[]);
            }),
        ),
        (
            "a frame whose payload is not a Thrift message",
            Box::new(|raw: &mut Raw| {
                let (seqid, _) = take_call(raw);
                raw.send(&frame(seqid, &[], &[0xff, 0xff, 0xff]), &[]);
            }),
        ),
        (
            "not THeader at all",
            Box::new(|raw: &mut Raw| {
                let _ = take_call(raw);
                raw.send(b"HTTP/1.1 200 OK\r\n\r\n", &[]);
            }),
        ),
    ]
}

#[test]
fn broken_frames_fail_the_connection_with_a_typed_error() {
    for (what, attack) in broken_frames() {
        let started = Instant::now();
        blocking(
            |c| match c.get(1) {
                Err(RpcError::Connection(_)) => {}
                other => panic!("{what}: {other:?}"),
            },
            attack,
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: too slow"
        );
    }
    for (what, attack) in broken_frames() {
        asynchronous(
            |c| async move {
                match c.get(1).await {
                    Err(RpcError::Connection(_)) => {}
                    other => panic!("{what}: {other:?}"),
                }
                assert!(c.client().is_closed());
            },
            attack,
        );
    }
}

/// A stream item of `items` on `seqid` carrying `v` (an `i32` in field 0).
fn stream_item(seqid: i32, v: i32) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.write_message_header("items", MessageType::Reply, seqid)
        .unwrap();
    let mut last = 0;
    enc.write_field_header(5, 0, &mut last);
    enc.write_i32(v);
    enc.write_stop();
    enc.into_parts().0
}

/// Stream frames for a stream that does not exist, and items after a stream's end: dropped
/// with their fds; the calls go on.
fn stray_stream_frames(raw: &mut Raw) {
    let (seqid, name) = take_call(raw);
    assert_eq!(name, "items");
    let item = |v: i32| stream_item(seqid, v);
    // The reply opens the stream (an empty result struct), one item, the end.
    let mut opened = Encoder::new();
    opened
        .write_message_header("items", MessageType::Reply, seqid)
        .unwrap();
    opened.write_stop();
    raw.send(&frame(seqid, &[], &opened.into_parts().0), &[]);
    raw.send(&frame(seqid, &[("fdrpc-stream", "item")], &item(1)), &[]);
    let mut end = Encoder::new();
    end.write_message_header("items", MessageType::Reply, seqid)
        .unwrap();
    end.write_stop();
    let end = end.into_parts().0;
    raw.send(&frame(seqid, &[("fdrpc-stream", "end")], &end), &[]);
    // After the end: an item with an fd, credit for the ended stream and for one that never
    // was.
    let fds = numbered(1);
    raw.send(
        &{
            let mut f = Vec::new();
            fdrpc::transport::frame::write_frame(
                &mut f,
                seqid,
                1,
                0,
                &[("fdrpc-stream", "item")],
                &item(2),
            )
            .unwrap();
            f
        },
        &borrowed(&fds),
    );
    drop(fds);
    raw.send(
        &frame(
            seqid,
            &[("fdrpc-stream", "credit"), ("fdrpc-credit", "5")],
            &end,
        ),
        &[],
    );
    raw.send(
        &frame(
            seqid + 77,
            &[("fdrpc-stream", "credit"), ("fdrpc-credit", "5")],
            &end,
        ),
        &[],
    );
    // The client goes on: its next call is answered.
    let (seqid, name) = take_call_after_stream_frames(raw);
    raw.send(
        &fd_frame(seqid, 0, 1, &answer(&name, MessageType::Reply, seqid, 9)),
        &[],
    );
}

#[test]
fn stray_stream_frames_are_dropped_with_their_fds() {
    blocking(
        |c| {
            let got: Vec<i32> = c.items().unwrap().map(Result::unwrap).collect();
            assert_eq!(got, [1]);
            assert_eq!(c.get(1).unwrap(), 9);
        },
        stray_stream_frames,
    );
    asynchronous(
        |c| async move {
            use futures::StreamExt;
            let got: Vec<i32> = c.items().await.unwrap().map(Result::unwrap).collect().await;
            assert_eq!(got, [1]);
            assert_eq!(c.get(1).await.unwrap(), 9);
        },
        stray_stream_frames,
    );
}

/// A server that reads the first call, then nothing more, and never answers.
fn stops_reading(raw: &mut Raw) {
    let _ = take_call(raw);
    // Keeps the socket open, unread, until the client is gone (or 20 s).
    let _ = hung_up_within(&raw.sock, Duration::from_secs(20));
}

#[test]
fn a_server_that_stops_reading_cannot_hold_a_blocking_call_past_its_timeout() {
    blocking(
        |c| {
            let c = c.with_timeout(Duration::from_millis(500));
            assert!(matches!(c.get(1), Err(RpcError::Timeout(_))));
            // Calls large enough to fill the socket buffer: each returns by its timeout, and
            // a clone is not held behind it.
            for size in [300 << 10, 1 << 20] {
                let started = Instant::now();
                let r = c.upload(vec![1; size], numbered(1).pop().unwrap());
                assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{size}: {:?}",
                    started.elapsed()
                );
            }
            let started = Instant::now();
            assert!(c.clone().get(2).is_err());
            assert!(started.elapsed() < Duration::from_secs(2));
        },
        stops_reading,
    );
}

#[test]
fn a_blocking_call_larger_than_the_socket_buffer_is_written_whole() {
    blocking(
        |c| {
            // 4 MiB cannot be written at once: the call must keep writing until it is all on
            // its way, not only until the socket is full, before it waits for its reply.
            let r = c.upload(vec![7; 4 << 20], numbered(1).pop().unwrap());
            assert_eq!(r.unwrap(), 4 << 20);
        },
        |raw| match raw.next(Duration::from_secs(5)) {
            Got::Reply {
                ty: MessageType::Call,
                seqid,
                name,
                body,
                fds,
                ..
            } => {
                assert_eq!((name.as_str(), fds.len()), ("upload", 1));
                assert!(body.len() > 4 << 20);
                let reply = answer(&name, MessageType::Reply, seqid, 4 << 20);
                raw.send(&frame(seqid, &[], &reply), &[]);
            }
            other => panic!("no whole call came: {other:?}"),
        },
    );
}

/// Sends all of the reply to the first call but its last three bytes; with `then_finish`,
/// sends them with the reply to a second call once that comes. Keeps the socket open until
/// the client is gone.
fn half_a_reply(then_finish: bool) -> impl FnOnce(&mut Raw) + Send + 'static {
    move |raw| {
        let (seqid, name) = take_call(raw);
        let first = frame(seqid, &[], &answer(&name, MessageType::Reply, seqid, 1));
        let (sent, rest) = first.split_at(first.len() - 3);
        raw.send(sent, &[]);
        if then_finish {
            // The first call's cancel comes before the second call.
            let (seqid, name) = take_call_after_stream_frames(raw);
            let mut more = rest.to_vec();
            more.extend(frame(
                seqid,
                &[],
                &answer(&name, MessageType::Reply, seqid, 2),
            ));
            raw.send(&more, &[]);
        }
        let _ = hung_up_within(&raw.sock, Duration::from_secs(20));
    }
}

fn blocking_with_stall_timeout(stream: UnixStream, stall: Duration) -> TargetBlockingClient {
    let settings = fdrpc::Settings::default().stall_timeout(stall);
    TargetBlockingClient::new(fdrpc::BlockingClient::with_settings(stream, &settings))
}

#[test]
fn a_half_sent_reply_ends_a_blocking_call_without_a_timeout_after_the_stall_timeout() {
    against(
        |a| {
            let stall = Duration::from_millis(300);
            let c = blocking_with_stall_timeout(a, stall);
            assert!(!c.client().is_closed());
            let started = Instant::now();
            match c.get(1) {
                Err(RpcError::Connection(e)) => assert!(
                    matches!(
                        e.transport(),
                        fdrpc::TransportError::FdStream(fdrpc::FdStreamError::Stalled(d))
                            if *d == stall
                    ),
                    "{e}"
                ),
                other => panic!("{other:?}"),
            }
            assert!(started.elapsed() >= stall);
            assert!(c.client().is_closed());
        },
        half_a_reply(false),
    );
}

#[test]
fn a_blocking_call_that_times_out_before_a_half_sent_reply_stalls_leaves_the_connection_working() {
    against(
        |a| {
            let c = blocking_with_stall_timeout(a, Duration::from_secs(10));
            let r = c.with_timeout(Duration::from_millis(200)).get(1);
            assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
            assert!(!c.client().is_closed());
            // The rest of the first reply comes (and is dropped: its call gave up), then the
            // second call's.
            assert_eq!(c.with_timeout(Duration::from_secs(5)).get(2).unwrap(), 2);
        },
        half_a_reply(true),
    );
}

#[test]
fn a_blocking_call_waiting_while_another_thread_reads_keeps_its_own_timeout() {
    let (first_came, first_call) = std::sync::mpsc::channel();
    against(
        |a| {
            let c = TargetBlockingClient::from_std(a);
            std::thread::scope(|s| {
                // This call reads the socket for everyone until its 3 s are up.
                let reader = s.spawn(|| c.with_timeout(Duration::from_secs(3)).get(1));
                first_call.recv_timeout(Duration::from_secs(5)).unwrap();
                // Calls with a shorter timeout sleep while it reads (the first may still find
                // the socket free and read itself; the second cannot): each must wake at its
                // own deadline, not at the reader's.
                for _ in 0..2 {
                    let started = Instant::now();
                    let r = c.with_timeout(Duration::from_millis(200)).get(2);
                    assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
                    assert!(
                        started.elapsed() < Duration::from_millis(1500),
                        "woke after {:?}",
                        started.elapsed()
                    );
                }
                let r = reader.join().unwrap();
                assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
            });
        },
        move |raw| {
            // Takes the calls and answers none.
            let _ = take_call(raw);
            first_came.send(()).unwrap();
            while let Got::Reply { .. } = raw.next(Duration::from_secs(20)) {}
        },
    );
}

/// The memfds this process holds (the calls' fds are memfds; nothing else here makes any).
fn memfds_held() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:fdrpc-test"))
        })
        .count()
}

#[test]
fn the_async_client_bounds_its_queue_and_takes_back_calls_that_timed_out_unsent() {
    asynchronous(
        |c| async move {
            let c = c.with_timeout(Duration::from_millis(300));
            assert!(matches!(c.get(1).await, Err(RpcError::Timeout(_))));
            // Far more than the socket buffer and the backlog bound (4 MiB, 1024 fds) hold,
            // each with an fd: without the bound, all 300 would be queued and the fds beyond
            // the 253 that one `sendmsg` carries would stay here.
            let mut calls = Vec::new();
            for _ in 0..300 {
                let c = c.clone();
                calls.push(tokio::spawn(async move {
                    c.upload(vec![1; 256 << 10], numbered(1).pop().unwrap())
                        .await
                }));
            }
            for call in calls {
                let r = call.await.unwrap();
                assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
            }
            // What is still queued is within the bound, and the calls whose frames had not
            // started are gone with their fds where they were last in the queue.
            let held = memfds_held();
            assert!(held <= 1, "{held} fds of timed-out calls still held");
        },
        stops_reading,
    );
    // Calls queued whole behind one that fills the socket: see
    // `calls_given_up_unsent_are_taken_back_or_cancelled`.
}

#[test]
fn the_blocking_client_bounds_its_queue_and_takes_back_calls_that_timed_out_unsent() {
    blocking(
        |c| {
            let c = c.with_timeout(Duration::from_millis(300));
            assert!(matches!(c.get(1), Err(RpcError::Timeout(_))));
            // 64 threads share the client, each calling with 1 MiB and an fd, against a
            // server that reads nothing: every call times out, and the queue never held more
            // than the backlog bound (4 MiB) and one frame.
            // (That the queue itself stays within the bound meanwhile is
            // `blocking_conn.rs`'s `calls_wait_for_room_and_a_call_without_any_queues_nothing`.)
            std::thread::scope(|s| {
                let calls: Vec<_> = (0..64)
                    .map(|_| {
                        let c = c.clone();
                        s.spawn(move || c.upload(vec![1; 1 << 20], numbered(1).pop().unwrap()))
                    })
                    .collect();
                for call in calls {
                    let r = call.join().unwrap();
                    assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
                }
            });
            // Calls that waited for room queued nothing; those whose frames had not started
            // were taken back with their fds where they were last in the queue.
            let held = memfds_held();
            assert!(held <= 1, "{held} fds of timed-out calls still held");
            // A blocking oneway returns once written; none can be now, and each one given up
            // unsent leaves with its fd.
            for _ in 0..20 {
                let r = c.note(vec![1; 1 << 20], numbered(1).pop().unwrap());
                assert!(matches!(r, Err(RpcError::Timeout(_))), "{r:?}");
            }
            let held = memfds_held();
            assert!(held <= 1, "{held} fds of oneways given up still held");
        },
        stops_reading,
    );
}

#[test]
fn oneways_wait_for_room_in_a_bounded_queue() {
    asynchronous(
        |c| async move {
            let c = c.with_timeout(Duration::from_millis(100));
            assert!(matches!(c.get(1).await, Err(RpcError::Timeout(_))));
            // 40 oneways of 256 KiB with an fd each (10 MiB) to a server that reads nothing:
            // the queue stops at its bound, and the oneways beyond it fail with `Timeout`.
            let (mut queued, mut refused) = (0, 0);
            for _ in 0..40 {
                match c.note(vec![1; 256 << 10], numbered(1).pop().unwrap()).await {
                    Ok(()) => queued += 1,
                    Err(RpcError::Timeout(_)) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(queued + refused, 40);
            assert!(queued <= 20, "{queued} oneways queued past a 4 MiB bound");
            assert!(refused >= 20, "{refused}");
            let held = memfds_held();
            assert!(held <= 1, "{held} fds held");
        },
        stops_reading,
    );
}

/// Takes the `items` call and returns its seqid and the frames that answer it: the reply that
/// opens the stream, then an item for each of `values`.
fn open_items(raw: &mut Raw, values: std::ops::Range<i32>) -> (i32, Vec<u8>) {
    let (seqid, name) = take_call(raw);
    assert_eq!(name, "items");
    let mut opened = Encoder::new();
    opened
        .write_message_header("items", MessageType::Reply, seqid)
        .unwrap();
    opened.write_stop();
    let mut all = frame(seqid, &[], &opened.into_parts().0);
    for v in values {
        all.extend(frame(
            seqid,
            &[("fdrpc-stream", "item")],
            &stream_item(seqid, v),
        ));
    }
    (seqid, all)
}

/// A stream's producer that sends more items than the client granted (64 by default).
fn beyond_the_credit(raw: &mut Raw) {
    let (_, all) = open_items(raw, 0..70);
    raw.send(&all, &[]);
    // The client cancels the stream.
    loop {
        match raw.next(Duration::from_secs(5)) {
            Got::Reply {
                stream: Some(k), ..
            } if k == "cancel" => break,
            Got::Reply { .. } => continue,
            other => panic!("no cancel: {other:?}"),
        }
    }
}

#[test]
fn items_beyond_the_credit_fail_the_stream_with_a_protocol_error() {
    let check = |got: Vec<Result<i32, String>>| {
        let ok: Vec<i32> = got
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(ok, (0..64).collect::<Vec<_>>());
        assert_eq!(got.len(), 65, "{got:?}");
        assert!(
            got[64]
                .as_ref()
                .unwrap_err()
                .contains("more items than it was granted")
        );
    };
    blocking(
        |c| {
            let got = c
                .items()
                .unwrap()
                .map(|r| {
                    r.map_err(|e| match e {
                        fdrpc::CallError::Rpc(RpcError::Protocol(e)) => e.message,
                        other => panic!("{other:?}"),
                    })
                })
                .collect();
            check(got);
        },
        beyond_the_credit,
    );
    asynchronous(
        |c| async move {
            use futures::StreamExt;
            let got = c
                .items()
                .await
                .unwrap()
                .map(|r| {
                    r.map_err(|e| match e {
                        fdrpc::CallError::Rpc(RpcError::Protocol(e)) => e.message,
                        other => panic!("{other:?}"),
                    })
                })
                .collect()
                .await;
            check(got);
        },
        beyond_the_credit,
    );
}

/// A stream's producer that sends one item, then `abort` with `cause` (an encoded
/// `TApplicationException` struct).
fn aborts_with(cause: Vec<u8>) -> impl FnOnce(&mut Raw) + Send + 'static {
    move |raw: &mut Raw| {
        let (seqid, mut all) = open_items(raw, 1..2);
        let mut abort = Encoder::new();
        abort
            .write_message_header("items", MessageType::Reply, seqid)
            .unwrap();
        let (mut payload, _) = abort.into_parts();
        payload.extend(cause);
        all.extend(frame(seqid, &[("fdrpc-stream", "abort")], &payload));
        raw.send(&all, &[]);
    }
}

/// A `TApplicationException` struct: `1: string message` (if any), `2: i32 type`.
fn application_exception(message: &str, kind: i32) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut last = 0;
    if !message.is_empty() {
        enc.write_field_header(8, 1, &mut last);
        enc.write_binary(message.as_bytes()).unwrap();
    }
    enc.write_field_header(5, 2, &mut last);
    enc.write_i32(kind);
    enc.write_stop();
    enc.into_parts().0
}

/// An `abort` ends the stream after what came before it with the producer's cause; one
/// that gives none (an empty struct, or an empty message) reads as UNKNOWN, "the producer
/// aborted the stream" (docs/PROTOCOL.md).
#[test]
fn an_aborted_stream_fails_with_the_producers_cause_or_a_generic_one() {
    let generic = (
        ApplicationErrorKind::Unknown,
        "the producer aborted the stream".to_owned(),
    );
    for (cause, expected) in [
        (vec![0], generic.clone()),
        (application_exception("", 7), generic.clone()),
        (
            application_exception("disk on fire", 6),
            (
                ApplicationErrorKind::InternalError,
                "disk on fire".to_owned(),
            ),
        ),
    ] {
        let expected = expected.clone();
        blocking(
            |c| {
                let got: Vec<_> = c.items().unwrap().collect();
                assert_eq!(got.len(), 2, "{got:?}");
                assert_eq!(*got[0].as_ref().unwrap(), 1);
                match &got[1] {
                    Err(fdrpc::CallError::Rpc(RpcError::Application(e))) => {
                        assert_eq!((e.kind, e.message.clone()), expected);
                    }
                    other => panic!("{other:?}"),
                }
            },
            aborts_with(cause),
        );
    }
}

/// What a server that reads late saw: each frame's method, and its `fdrpc-stream` kind.
type Seen = Vec<(String, Option<String>)>;

/// A server that takes the first call, then reads nothing until told to (`go`), having said
/// when the next call's bytes fill its socket (`filling`); then it reads every frame, answers
/// the `get` that marks the end, and reports what it saw.
fn reads_late(
    filling: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
    seen: std::sync::mpsc::Sender<Seen>,
) -> impl FnOnce(&mut Raw) + Send + 'static {
    move |raw: &mut Raw| {
        let _ = take_call(raw);
        let mut readable = [rustix::event::PollFd::new(
            &raw.sock,
            rustix::event::PollFlags::IN,
        )];
        let five_s = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        assert_eq!(
            rustix::event::poll(&mut readable, Some(&five_s)).unwrap(),
            1
        );
        filling.send(()).unwrap();
        go.recv_timeout(Duration::from_secs(20))
            .expect("told to read");
        let mut frames = Vec::new();
        loop {
            match raw.next(Duration::from_secs(10)) {
                Got::Reply {
                    name,
                    seqid,
                    stream,
                    ..
                } => {
                    if name == "get" && stream.is_none() {
                        raw.send(
                            &frame(seqid, &[], &answer(&name, MessageType::Reply, seqid, 9)),
                            &[],
                        );
                        break;
                    }
                    frames.push((name, stream));
                }
                other => panic!("no end marker: {other:?}"),
            }
        }
        seen.send(frames).unwrap();
    }
}

/// Calls queued behind one whose frame fills the socket give up (time out) while none of
/// their frames is written, in the order `calls` lists them (each `(stream, timeout)`: an
/// `items` stream call or a small `upload` with an fd). Returns what the server saw once it
/// read everything, and whether every fd of the calls given up was released.
fn give_up_behind_a_full_socket(calls: &'static [(bool, u64)]) -> (Seen, bool) {
    use std::sync::mpsc;
    let (filling_tx, filling) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let (seen_tx, seen) = mpsc::channel();
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let released_in = released.clone();
    asynchronous(
        move |c| async move {
            let short = c.with_timeout(Duration::from_millis(100));
            assert!(matches!(short.get(1).await, Err(RpcError::Timeout(_))));
            let long = c.with_timeout(Duration::from_secs(10));
            let first = tokio::spawn(async move {
                long.upload(vec![1; 3 << 20], numbered(1).pop().unwrap())
                    .await
            });
            tokio::task::spawn_blocking(move || filling.recv_timeout(Duration::from_secs(5)))
                .await
                .unwrap()
                .expect("the upload fills the socket");
            let held = memfds_held();
            let mut tasks = Vec::new();
            for &(stream, ms) in calls {
                let c = c.with_timeout(Duration::from_millis(ms));
                tasks.push(tokio::spawn(async move {
                    if stream {
                        c.items().await.map(|_| ()).unwrap_err()
                    } else {
                        c.upload(vec![2; 1024], numbered(1).pop().unwrap())
                            .await
                            .unwrap_err()
                    }
                }));
                // Queued in this order.
                tokio::task::yield_now().await;
            }
            for task in tasks {
                let e = task.await.unwrap();
                assert!(matches!(e, RpcError::Timeout(_)), "{e:?}");
            }
            released_in.store(memfds_held() == held, std::sync::atomic::Ordering::SeqCst);
            // The upload that filled the socket is given up too (it was partly written: it
            // stays, and is cancelled).
            first.abort();
            assert!(first.await.unwrap_err().is_cancelled());
            go.send(()).unwrap();
            // The end marker: once it is answered, everything queued before it was read.
            let c = c.with_timeout(Duration::from_secs(10));
            assert_eq!(c.get(2).await.unwrap(), 9);
        },
        reads_late(filling_tx, go_rx, seen_tx),
    );
    let seen = seen
        .recv_timeout(Duration::from_secs(5))
        .expect("the server's report");
    (seen, released.load(std::sync::atomic::Ordering::SeqCst))
}

/// Calls given up before any of their frames was written leave the send queue with their
/// fds, so that the server never hears of them, in whichever order they give up, once they
/// are last in the queue; a stream call that cannot leave is cancelled behind its frame.
#[test]
fn calls_given_up_unsent_are_taken_back_or_cancelled() {
    let named = |name: &str, kind: Option<&str>| (name.to_owned(), kind.map(str::to_owned));
    let (upload, items) = (named("upload", None), named("items", None));
    let cancel = |name| named(name, Some("cancel"));
    // A plain call gives up first, with a stream call behind it; then the stream call: both
    // leave, the first once the second has.
    let (seen, released) = give_up_behind_a_full_socket(&[(false, 200), (true, 400)]);
    assert_eq!(
        seen,
        [cancel("get"), upload.clone(), cancel("upload")],
        "only the first call and the upload that filled the socket"
    );
    assert!(released, "the fd of a call taken back is still held");
    // A stream call gives up first, with a plain call behind it: the stream call is cancelled
    // (its cancel queued behind the plain call), so neither can leave.
    let (seen, _) = give_up_behind_a_full_socket(&[(true, 200), (false, 400)]);
    assert_eq!(
        seen,
        [
            cancel("get"),
            upload.clone(),
            items,
            upload,
            cancel("items"),
            cancel("upload")
        ],
        "the stream call and its cancel, once"
    );
}

/// A server that opens a stream, sends three items and closes the connection.
fn three_items_then_gone(raw: &mut Raw) {
    let (_, all) = open_items(raw, 0..3);
    raw.send(&all, &[]);
    let _ = raw.sock.shutdown(std::net::Shutdown::Both);
}

/// Items that arrived before the connection ended stay readable; the stream's failure comes
/// after them.
#[test]
fn items_received_before_the_connection_ends_are_read_before_its_failure() {
    let check = |got: Vec<Result<i32, String>>| {
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[..3], [Ok(0), Ok(1), Ok(2)]);
        assert!(got[3].is_err(), "{got:?}");
    };
    asynchronous(
        |c| async move {
            let stream = c.items().await.unwrap();
            // Taken only once the client has seen the connection end.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !c.client().is_closed() {
                assert!(Instant::now() < deadline, "the end was not seen");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            use futures::StreamExt;
            check(stream.map(|r| r.map_err(|e| e.to_string())).collect().await);
        },
        three_items_then_gone,
    );
}

/// Answers the first call with a `TApplicationException` of kind `TIMEOUT` (12), as a server
/// whose deadline for the call (from its `client_timeout`) passed; keeps the socket open
/// until the client is gone.
fn times_out_first(raw: &mut Raw) {
    let (seqid, name) = take_call(raw);
    let mut exception = Encoder::new();
    exception
        .write_message_header(&name, MessageType::Exception, seqid)
        .unwrap();
    let (mut payload, _) = exception.into_parts();
    payload.extend(application_exception("deadline passed", 12));
    raw.send(&frame(seqid, &[], &payload), &[]);
    let _ = hung_up_within(&raw.sock, Duration::from_secs(20));
}

/// A server's `TIMEOUT` for a call sent with a timeout is that timeout passing, as if the
/// client had noticed first: `RpcError::Timeout` with the call's timeout, not an application
/// error; the connection goes on. (A call without a timeout sees the exception as it is.)
#[test]
fn a_servers_timeout_for_a_call_with_a_timeout_is_the_calls_timeout() {
    let timeout = Duration::from_secs(7);
    blocking(
        |c| {
            let c = c.with_timeout(timeout);
            assert_eq!(c.client().timeout(), Some(timeout));
            let r = c.get(1);
            assert!(
                matches!(r, Err(RpcError::Timeout(t)) if t == timeout),
                "{r:?}"
            );
            assert!(!c.client().is_closed());
        },
        times_out_first,
    );
    blocking(
        |c| {
            let c = c.without_timeout();
            assert_eq!(c.client().timeout(), None);
            match c.get(1) {
                Err(RpcError::Application(e)) => {
                    assert_eq!(e.kind, ApplicationErrorKind::Timeout);
                    assert_eq!(e.message, "deadline passed");
                }
                other => panic!("{other:?}"),
            }
        },
        times_out_first,
    );
    asynchronous(
        |c| async move {
            let c = c.with_timeout(timeout);
            assert_eq!(c.client().timeout(), Some(timeout));
            let r = c.get(1).await;
            assert!(
                matches!(r, Err(RpcError::Timeout(t)) if t == timeout),
                "{r:?}"
            );
            assert!(!c.client().is_closed());
        },
        times_out_first,
    );
}

/// `flush` returns once what is queued is written: a oneway far larger than the socket
/// buffer arrives whole although the client's runtime ends right after (and with it the
/// task that would have written the rest).
#[test]
fn an_async_flush_returns_once_a_large_oneway_is_written_whole() {
    asynchronous(
        |c| async move {
            c.note(vec![9; 4 << 20], numbered(1).pop().unwrap())
                .await
                .unwrap();
            c.client().flush().await;
        },
        |raw| match raw.next(Duration::from_secs(5)) {
            Got::Reply {
                ty: MessageType::Oneway,
                name,
                body,
                fds,
                ..
            } => {
                assert_eq!((name.as_str(), fds.len()), ("note", 1));
                assert!(body.len() > 4 << 20);
            }
            other => panic!("no whole oneway came: {other:?}"),
        },
    );
}

/// A blocking stream's item timeout can be changed between items: the next item that does
/// not come within it ends the stream with `Timeout` of that length.
#[test]
fn a_blocking_streams_item_timeout_applies_from_when_it_is_set() {
    blocking(
        |c| {
            let c = c.with_timeout(Duration::from_secs(5));
            let mut items = c.items().unwrap();
            assert_eq!(items.next().unwrap().unwrap(), 1);
            let short = Duration::from_millis(200);
            items.set_item_timeout(Some(short));
            let started = Instant::now();
            match items.next() {
                Some(Err(fdrpc::CallError::Rpc(RpcError::Timeout(t)))) => assert_eq!(t, short),
                other => panic!("{other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(2));
        },
        |raw| {
            let (_, opened) = open_items(raw, 1..2);
            raw.send(&opened, &[]);
            let _ = hung_up_within(&raw.sock, Duration::from_secs(20));
        },
    );
}

/// `cancel` on an async stream tells the server at once, while the stream is still held (not
/// only when it is dropped).
#[test]
fn an_async_streams_cancel_reaches_the_server_while_the_stream_is_held() {
    let (cancelled, cancel_seen) = std::sync::mpsc::channel();
    asynchronous(
        |c| async move {
            use futures::StreamExt;
            let mut items = c.items().await.unwrap();
            assert_eq!(items.next().await.unwrap().unwrap(), 1);
            items.cancel();
            let seen = tokio::task::spawn_blocking(move || {
                cancel_seen.recv_timeout(Duration::from_secs(5))
            });
            assert_eq!(
                seen.await.unwrap(),
                Ok(()),
                "no cancel while the stream was held"
            );
            drop(items);
        },
        move |raw| {
            let (seqid, opened) = open_items(raw, 1..2);
            raw.send(&opened, &[]);
            match raw.next(Duration::from_secs(5)) {
                Got::Reply {
                    seqid: s, stream, ..
                } if s == seqid && stream.as_deref() == Some("cancel") => {}
                other => panic!("no cancel came: {other:?}"),
            }
            cancelled.send(()).unwrap();
            let _ = hung_up_within(&raw.sock, Duration::from_secs(20));
        },
    );
}
