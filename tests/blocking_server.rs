//! The blocking server ([`fdrpc::BlockingServer`]), served with no async runtime: what the
//! rest of the suite does not show by running against it (`FDRPC_TEST_SERVER=blocking`, which
//! `.ci/run` uses for the adversary, deadline, stream and hook suites): calls that wait run
//! together on one connection, a handler woken from another thread, graceful shutdown, and
//! every fd accounted for.

mod common;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

#[fdrpc::service]
trait Waiter {
    /// Waits `ms` on another thread's timer, then hands `fd` back.
    async fn wait(&self, ms: u64, fd: OwnedFd) -> OwnedFd;
    /// How many `wait` calls have started.
    async fn started(&self) -> u64;
}

#[derive(Default)]
struct WaiterImpl {
    started: Arc<AtomicUsize>,
    /// `wait` calls dropped before they finished.
    dropped: Arc<AtomicUsize>,
}

/// Counts a drop unless disarmed.
struct Unless(Arc<AtomicUsize>, bool);
impl Drop for Unless {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Waiter for WaiterImpl {
    async fn wait(&self, ms: u64, fd: OwnedFd) -> OwnedFd {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = Unless(self.dropped.clone(), false);
        // Woken from another thread: the connection's loop must notice.
        let (done, wait) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            let _ = done.send(());
        });
        let _ = wait.await;
        guard.1 = true;
        fd
    }

    async fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst) as u64
    }
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn calls_that_wait_run_together_on_one_connection_and_hand_their_fds_back() {
    let _check = fd_leak_check();
    let server = ThreadServer::start_blocking(fdrpc::BlockingServer::new, || {
        WaiterServer::new(WaiterImpl::default())
    });
    let client = WaiterBlockingClient::connect(&server.path).unwrap();
    // Four calls of 500 ms from four threads on one connection: together they take about
    // 500 ms, one after another 2 s.
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                let fd = memfd(format!("fd {i}").as_bytes());
                let sent = ino(&fd);
                let back = client.wait(500, fd.into()).unwrap();
                assert_eq!(ino(&back), sent, "the same open file came back");
                assert!(is_cloexec(&back));
                assert_eq!(contents(&back), format!("fd {i}").as_bytes());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1900),
        "the calls ran one after another: {took:?}"
    );
    assert_eq!(client.started().unwrap(), 4);
    drop((client, server));
}

#[test]
fn a_deadline_drops_a_handler_that_waits_and_the_connection_goes_on() {
    let _check = fd_leak_check();
    let service = WaiterImpl::default();
    let dropped = service.dropped.clone();
    let server = ThreadServer::start_blocking(fdrpc::BlockingServer::new, move || {
        WaiterServer::new(service)
    });
    let client = WaiterBlockingClient::connect(&server.path).unwrap();
    let short = client.with_timeout(Duration::from_millis(100));
    let r = short.wait(10_000, memfd(b"x").into());
    assert!(
        matches!(r, Err(fdrpc::RpcError::Timeout(t)) if t == Duration::from_millis(100)),
        "{r:?}"
    );
    // The server dropped the handler (the deadline travelled with the call), with its fd.
    wait_until("the handler dropped", Duration::from_secs(5), || {
        dropped.load(Ordering::SeqCst) == 1
    });
    let back = client.wait(1, memfd(b"after").into()).unwrap();
    assert_eq!(contents(&back), b"after");
    drop((client, server));
}

#[test]
fn a_graceful_shutdown_lets_the_call_in_flight_finish_then_refuses_more() {
    let _check = fd_leak_check();
    let service = WaiterImpl::default();
    let started = service.started.clone();
    let dir = scratch_dir("blocking-shutdown");
    let path = dir.join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let shutdown = fdrpc::Shutdown::new();
    let serving = std::thread::spawn({
        let shutdown = shutdown.clone();
        move || {
            fdrpc::BlockingServer::new().serve_with_shutdown(
                listener,
                WaiterServer::new(service),
                &shutdown,
            )
        }
    });
    // The accept loop counts from just before its first `accept`, a connection while it lives.
    wait_until("the accept loop", Duration::from_secs(5), || {
        shutdown.loops() == 1
    });
    let client = WaiterBlockingClient::connect(&path).unwrap();
    let call = std::thread::spawn({
        let client = client.clone();
        move || client.wait(300, memfd(b"in flight").into())
    });
    wait_until("the call started", Duration::from_secs(5), || {
        started.load(Ordering::SeqCst) == 1
    });
    assert_eq!(shutdown.loops(), 2);
    let asked = Instant::now();
    shutdown.shutdown();
    // The call in flight finishes and its reply (and fd) arrives.
    let back = call.join().unwrap().unwrap();
    assert_eq!(contents(&back), b"in flight");
    // Then the server returns: the connection is closed, and no new call is served.
    serving.join().unwrap().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(shutdown.loops(), 0, "every loop ended");
    assert!(client.started().is_err(), "served after the shutdown");
    assert!(
        std::os::unix::net::UnixStream::connect(&path).is_err(),
        "still listening"
    );
    drop((back, client));
}
