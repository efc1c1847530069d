//! Calls that are given up on: the deadline a call carries to the server (`client_timeout`),
//! the server dropping a handler whose deadline passed, and the `cancel` a client sends when
//! its call is dropped or times out; both through fdrpc's clients and through raw frames
//! written from docs/PROTOCOL.md.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use conformance::{
    ConformanceBlockingClient, ConformanceClient, ConformanceImpl, ConformanceServer,
};
use fdrpc::codec::{Encoder, MessageType, TType};

const WAIT: Duration = Duration::from_secs(5);

fn conformance_server() -> ThreadServer {
    ThreadServer::start(fdrpc::Server::new, || {
        ConformanceServer::new(ConformanceImpl::default())
    })
}

/// Asserts that something that should take about `expected` took at least that and not
/// grossly more (the bound is generous: CI machines are slow, but not by a second).
fn assert_about(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed < expected + Duration::from_millis(900),
        "took {elapsed:?}, expected about {expected:?}"
    );
}

#[test]
fn an_async_call_with_a_100ms_timeout_fails_then_and_its_handler_is_dropped() {
    // Counted from before the server starts (`run_async` shares this check's lock).
    let _check = fd_leak_check();
    let server = conformance_server();
    run_async(async {
        let client = ConformanceClient::connect(&server.path).await.unwrap();
        let start = Instant::now();
        let r = client
            .with_timeout(Duration::from_millis(100))
            .sleep(5000)
            .await;
        assert!(
            matches!(r, Err(fdrpc::RpcError::Timeout(d)) if d == Duration::from_millis(100)),
            "{r:?}"
        );
        assert_about(start.elapsed(), Duration::from_millis(100));
        assert_eq!(client.dropped().await.unwrap(), 1);
    });
}

#[test]
fn a_blocking_call_with_a_100ms_timeout_fails_then_and_its_handler_is_dropped() {
    let _check = fd_leak_check();
    let server = conformance_server();
    let client = ConformanceBlockingClient::connect(&server.path).unwrap();
    let start = Instant::now();
    let r = client.with_timeout(Duration::from_millis(100)).sleep(5000);
    assert!(matches!(r, Err(fdrpc::RpcError::Timeout(_))), "{r:?}");
    assert_about(start.elapsed(), Duration::from_millis(100));
    assert_eq!(client.dropped().unwrap(), 1);
}

#[test]
fn a_dropped_call_future_cancels_its_handler() {
    // Counted from before the server starts (`run_async` shares this check's lock).
    let _check = fd_leak_check();
    let server = conformance_server();
    run_async(async {
        let client = ConformanceClient::connect(&server.path).await.unwrap();
        let slow = client.without_timeout();
        let gave_up = tokio::time::timeout(Duration::from_millis(50), slow.sleep(60_000)).await;
        assert!(gave_up.is_err());
        // The cancel went out before this call: the handler is gone by the time it runs.
        assert_eq!(client.dropped().await.unwrap(), 1);
    });
}

#[test]
fn the_handler_sees_the_deadline_its_call_carried() {
    // Counted from before the server starts (`run_async` shares this check's lock).
    let _check = fd_leak_check();
    let server = conformance_server();
    run_async(async {
        let client = ConformanceClient::connect(&server.path).await.unwrap();
        let left = client.sleep(0).await.unwrap();
        assert!(
            (24_000..=25_000).contains(&left),
            "default timeout: {left} ms left"
        );
        let left = client
            .with_timeout(Duration::from_secs(3))
            .sleep(0)
            .await
            .unwrap();
        assert!(
            (2_000..=3_000).contains(&left),
            "3 s timeout: {left} ms left"
        );
        let left = client.without_timeout().sleep(0).await.unwrap();
        assert_eq!(left, -1, "no timeout, no deadline");
        let settings = fdrpc::Settings::default().call_timeout(None);
        let stream = tokio::net::UnixStream::connect(&server.path).await.unwrap();
        let untimed =
            ConformanceClient::new(fdrpc::Client::with_settings(stream, &settings).unwrap());
        assert_eq!(untimed.sleep(0).await.unwrap(), -1);
        assert_eq!(client.dropped().await.unwrap(), 0, "nothing was dropped");
    });
}

/// Holds a guard until dropped: reports that it started, and when its guard went.
mod holder {
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;
    use std::time::Instant;

    use tokio::sync::oneshot;

    #[fdrpc::service]
    pub trait Holder {
        /// Never returns; holds `fd` and a guard.
        async fn hold(&self, fd: OwnedFd);
    }

    pub struct Guard(pub Option<oneshot::Sender<Instant>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(Instant::now());
            }
        }
    }

    pub struct HolderImpl {
        pub started: Mutex<Option<oneshot::Sender<()>>>,
        pub dropped: Mutex<Option<oneshot::Sender<Instant>>>,
    }

    impl Holder for HolderImpl {
        async fn hold(&self, fd: OwnedFd) {
            let _guard = Guard(self.dropped.lock().unwrap().take());
            let _fd = fd;
            if let Some(tx) = self.started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::future::pending::<()>().await;
        }
    }
}

#[test]
fn a_handler_holding_a_guard_sees_it_dropped_within_50ms_of_the_client_dropping_the_call() {
    use holder::*;
    run_async(async {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let service = HolderServer::new(HolderImpl {
            started: std::sync::Mutex::new(Some(started_tx)),
            dropped: std::sync::Mutex::new(Some(dropped_tx)),
        });
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new().serve_connection(b, service).await;
        });
        let client = HolderClient::new(fdrpc::Client::new(a).unwrap());
        // The handler holds the write end of a pipe; the read end sees EOF once it is closed.
        let (reader, writer) = std::io::pipe().unwrap();
        let mut call = Box::pin(client.hold(writer.into()));
        tokio::select! {
            r = &mut call => panic!("hold returned: {r:?}"),
            r = tokio::time::timeout(WAIT, started_rx) => r.unwrap().unwrap(),
        }
        let gave_up = Instant::now();
        drop(call);
        let dropped_at = tokio::time::timeout(WAIT, dropped_rx)
            .await
            .expect("the guard is dropped")
            .unwrap();
        let after = dropped_at.saturating_duration_since(gave_up);
        assert!(
            after < Duration::from_millis(50),
            "dropped {after:?} after the call"
        );
        // The fd in the handler's arguments is closed with it.
        let reader = OwnedFd::from(reader);
        let mut fds = [rustix::event::PollFd::new(
            &reader,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&timeout)).unwrap(), 1);
        assert_eq!(
            rustix::io::read(&reader, &mut [0u8; 1]).unwrap(),
            0,
            "EOF: the write end is closed"
        );
        drop(client);
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    });
}

// ---------------------------------------------------------------- the wire, from the document

/// `sleep_args { 1: i64 ms }`.
fn sleep_args(ms: i64) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut last = 0;
    enc.write_field_header(TType::I64 as u8, 1, &mut last);
    enc.write_i64(ms);
    enc.write_stop();
    enc.into_parts().0
}

/// The i64 in field 0 of a result struct.
fn i64_result(body: &[u8]) -> i64 {
    let mut dec = fdrpc::codec::Decoder::new(body, fdrpc::FdTable::empty());
    let mut last = 0;
    let (ty, id) = dec.read_field_header(&mut last).unwrap().unwrap();
    assert_eq!((ty, id), (TType::I64, 0));
    dec.read_i64().unwrap()
}

/// A raw connection to a fresh conformance server.
fn raw_peer() -> (Raw, ThreadServer) {
    let server = conformance_server();
    let raw = Raw::new(UnixStream::connect(&server.path).unwrap());
    (raw, server)
}

/// Calls `dropped` on seqid `seqid` and returns its answer (the next frame must be it).
fn dropped_count(raw: &mut Raw, seqid: i32) -> i64 {
    raw.send(&frame(seqid, &[], &call("dropped", seqid, &[0])), &[]);
    match raw.next(WAIT) {
        Got::Reply {
            ty, seqid: s, body, ..
        } => {
            assert_eq!((ty, s), (MessageType::Reply, seqid));
            i64_result(&body)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_timeout_header_sets_the_deadline_and_its_passing_is_answered_with_timeout() {
    let _check = fd_leak_check();
    let (mut raw, _server) = raw_peer();
    let start = Instant::now();
    let sleep = call("sleep", 1, &sleep_args(5000));
    raw.send(&frame(1, &[("client_timeout", "100")], &sleep), &[]);
    match raw.next(WAIT) {
        Got::Reply {
            ty,
            name,
            seqid,
            body,
            ..
        } => {
            assert_eq!(
                (ty, name.as_str(), seqid),
                (MessageType::Exception, "sleep", 1)
            );
            assert_eq!(exception_code(&body), 12, "TApplicationException TIMEOUT");
        }
        other => panic!("{other:?}"),
    }
    assert_about(start.elapsed(), Duration::from_millis(100));
    assert_eq!(dropped_count(&mut raw, 2), 1);
}

/// Calls of four timeouts waiting on one connection at once, each answered at its own
/// deadline: the server's one deadline timer per connection is told of a deadline earlier
/// than the one it waits for, and a handler that finishes in time is not timed out.
fn calls_of_mixed_timeouts_time_out_each_at_its_own_deadline(server: ThreadServer) {
    let mut raw = Raw::new(UnixStream::connect(&server.path).unwrap());
    let start = Instant::now();
    // (seqid, timeout, how long its handler sleeps), sent in this order, each but the first
    // with a deadline earlier than those before it; each followed by a quick call whose
    // answer says the server has read it (and has had time to wait for the deadlines so far).
    let calls = [
        (1, 700, 5_000),
        (2, 400, 5_000),
        (3, 150, 5_000),
        (4, 700, 300),
    ];
    for (seqid, timeout, sleeps) in calls {
        let timeout = timeout.to_string();
        let sleep = call("sleep", seqid, &sleep_args(sleeps));
        raw.send(&frame(seqid, &[("client_timeout", &timeout)], &sleep), &[]);
        let quick = seqid + 10;
        raw.send(
            &frame(quick, &[], &call("sleep", quick, &sleep_args(0))),
            &[],
        );
        match raw.next(WAIT) {
            Got::Reply { ty, seqid: s, .. } => assert_eq!((ty, s), (MessageType::Reply, quick)),
            other => panic!("{other:?}"),
        }
    }
    // In the order they end: 3 timed out, 4 answered after its 300 ms, then 2 and 1 timed out.
    for (seqid, ends_after) in [(3, 150), (4, 300), (2, 400), (1, 700)] {
        match raw.next(WAIT) {
            Got::Reply {
                ty, seqid: s, body, ..
            } => {
                assert_eq!(s, seqid, "answered out of order");
                if seqid == 4 {
                    assert_eq!(ty, MessageType::Reply, "finished in time");
                } else {
                    assert_eq!(ty, MessageType::Exception);
                    assert_eq!(exception_code(&body), 12, "TApplicationException TIMEOUT");
                }
            }
            other => panic!("{other:?}"),
        }
        let elapsed = start.elapsed();
        let expected = Duration::from_millis(ends_after);
        assert!(
            elapsed >= expected && elapsed < expected + Duration::from_millis(500),
            "call {seqid} ended after {elapsed:?}, expected about {expected:?}"
        );
    }
    assert_eq!(dropped_count(&mut raw, 5), 3);
}

#[test]
fn calls_of_mixed_timeouts_on_one_connection_time_out_each_at_its_own_deadline() {
    let _check = fd_leak_check();
    calls_of_mixed_timeouts_time_out_each_at_its_own_deadline(conformance_server());
}

#[test]
fn calls_of_mixed_timeouts_on_one_blocking_server_connection_time_out_each_at_its_own_deadline() {
    let _check = fd_leak_check();
    let server = ThreadServer::start_blocking(fdrpc::BlockingServer::new, || {
        ConformanceServer::new(ConformanceImpl::default())
    });
    calls_of_mixed_timeouts_time_out_each_at_its_own_deadline(server);
}

#[test]
fn the_handler_sees_the_client_timeout_and_zero_or_none_is_no_deadline() {
    let _check = fd_leak_check();
    let (mut raw, _server) = raw_peer();
    for (seqid, headers, expect) in [
        (1, &[("client_timeout", "60000")][..], 59_000..=60_000),
        (2, &[("client_timeout", "0")][..], -1..=-1),
        (3, &[][..], -1..=-1),
    ] {
        raw.send(
            &frame(seqid, headers, &call("sleep", seqid, &sleep_args(0))),
            &[],
        );
        match raw.next(WAIT) {
            Got::Reply { ty, body, .. } => {
                assert_eq!(ty, MessageType::Reply);
                let left = i64_result(&body);
                assert!(expect.contains(&left), "{headers:?}: {left}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_malformed_client_timeout_refuses_the_call_and_the_connection_goes_on() {
    let _check = fd_leak_check();
    let (mut raw, _server) = raw_peer();
    for (seqid, bad) in [(1, "soon"), (2, "-5"), (3, "1.5"), (4, "")] {
        raw.send(
            &frame(
                seqid,
                &[("client_timeout", bad)],
                &call("sleep", seqid, &sleep_args(0)),
            ),
            &[],
        );
        let why = raw.expect_application_error(fdrpc::ApplicationErrorKind::ProtocolError);
        assert!(why.contains("`client_timeout`"), "{bad}: {why}");
    }
    raw.still_answers(5);
}

#[test]
fn a_cancel_frame_drops_the_handler_and_nothing_more_is_sent_for_its_call() {
    let _check = fd_leak_check();
    let (mut raw, _server) = raw_peer();
    raw.send(&frame(7, &[], &call("sleep", 7, &sleep_args(60_000))), &[]);
    // The control frame a client sends for a call it gave up on: an empty struct on the
    // call's seqid, with `fdrpc-stream: cancel`.
    let mut enc = Encoder::new();
    enc.write_message_header("sleep", MessageType::Oneway, 7)
        .unwrap();
    enc.write_stop();
    raw.send(
        &frame(7, &[("fdrpc-stream", "cancel")], &enc.into_parts().0),
        &[],
    );
    assert_eq!(
        dropped_count(&mut raw, 8),
        1,
        "dropped before the next frame was read"
    );
    match raw.next(Duration::from_millis(300)) {
        Got::Nothing => {}
        other => panic!("something was sent for the cancelled call: {other:?}"),
    }
    // A cancel for a call that is not running is ignored.
    raw.send(
        &frame(99, &[("fdrpc-stream", "cancel")], &{
            let mut enc = Encoder::new();
            enc.write_message_header("sleep", MessageType::Oneway, 99)
                .unwrap();
            enc.write_stop();
            enc.into_parts().0
        }),
        &[],
    );
    raw.still_answers(9);
}

#[test]
fn a_peer_that_closes_its_connection_cancels_its_calls_but_one_that_only_stops_sending_does_not() {
    let _check = fd_leak_check();
    let server = conformance_server();
    // Stops sending, still reads: its call runs to the end and is answered.
    let mut half = Raw::new(UnixStream::connect(&server.path).unwrap());
    half.send(&frame(1, &[], &call("sleep", 1, &sleep_args(50))), &[]);
    half.sock.shutdown(std::net::Shutdown::Write).unwrap();
    match half.next(WAIT) {
        Got::Reply {
            ty, seqid, body, ..
        } => {
            assert_eq!((ty, seqid, i64_result(&body)), (MessageType::Reply, 1, -1));
        }
        other => panic!("{other:?}"),
    }
    // Closes: its call is dropped at once, long before the stall timeout.
    let gone = Raw::new(UnixStream::connect(&server.path).unwrap());
    gone.send(&frame(1, &[], &call("sleep", 1, &sleep_args(60_000))), &[]);
    let mut watcher = Raw::new(UnixStream::connect(&server.path).unwrap());
    // Nothing dropped yet; then the peer closes (its call is read before the end of the
    // stream either way).
    assert_eq!(dropped_count(&mut watcher, 1), 0);
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seqid = 2;
    while dropped_count(&mut watcher, seqid) != 1 {
        assert!(
            Instant::now() < deadline,
            "the closed peer's call still runs"
        );
        std::thread::sleep(Duration::from_millis(10));
        seqid += 1;
    }
}

/// A call's deadline counts from when it arrived, not from when the server got round to it:
/// a call that waits behind another for the connection's only call slot has that wait taken
/// off its time.
#[test]
fn a_call_waiting_for_a_call_slot_has_its_wait_counted_against_its_deadline() {
    let _check = fd_leak_check();
    let server = ThreadServer::start(
        || fdrpc::Server::with_settings(fdrpc::Settings::default().max_in_flight(1)),
        || ConformanceServer::new(ConformanceImpl::default()),
    );
    let mut raw = Raw::new(UnixStream::connect(&server.path).unwrap());
    // Both calls in one write, so that both arrive with one read.
    let mut both = frame(1, &[], &call("sleep", 1, &sleep_args(400)));
    both.extend(frame(
        2,
        &[("client_timeout", "2000")],
        &call("sleep", 2, &sleep_args(0)),
    ));
    raw.send(&both, &[]);
    let mut left = None;
    for _ in 0..2 {
        match raw.next(WAIT) {
            Got::Reply {
                ty, seqid: 2, body, ..
            } => {
                assert_eq!(ty, MessageType::Reply);
                left = Some(i64_result(&body));
            }
            Got::Reply { ty, seqid: 1, .. } => assert_eq!(ty, MessageType::Reply),
            other => panic!("{other:?}"),
        }
    }
    // 2000 ms from arrival, of which about 400 passed waiting for the first call's slot.
    let left = left.expect("the second call's reply");
    assert!((1000..=1650).contains(&left), "{left} ms left");
}
