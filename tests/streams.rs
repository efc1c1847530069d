//! Server streams, sinks and bidirectional streams carrying fds: order, flow control,
//! cancellation, errors with fds, and interleaving with plain calls.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use conformance::{
    Bundle, ConformanceBlockingClient, ConformanceClient, ConformanceImpl, ConformanceServer,
    Failure,
};
use futures::StreamExt;

fn serve_conformance() -> (ConformanceClient, tokio::task::JoinHandle<()>) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let server = serve_connection(b, ConformanceServer::new(ConformanceImpl::default()));
    (
        ConformanceClient::new(fdrpc::Client::from_std(a).unwrap()),
        server,
    )
}

#[derive(fdrpc::Message, Debug)]
pub struct Numbered {
    pub n: i64,
    pub fd: OwnedFd,
}

#[fdrpc::service]
pub trait Probe {
    /// Items that never end; counts what it produces.
    async fn endless(&self) -> fdrpc::Stream<OwnedFd>;
    /// One item, then nothing for ever.
    async fn quiet(&self) -> fdrpc::Stream<i32>;
    /// `n` items, then a Failure carrying a memfd.
    async fn failing(&self, n: i32) -> fdrpc::Stream<OwnedFd, Failure>;
    /// Refuses before the stream opens unless `open`.
    async fn maybe(&self, open: bool) -> Result<fdrpc::Stream<i32>, Failure>;
    /// Checks that item i holds the text of i; returns how many did, or -1 - index of the
    /// first that did not. Reads slowly if `slow`.
    async fn ordered(&self, items: fdrpc::Stream<Numbered>, slow: bool) -> i64;
    /// Doubles each number, keeping its fd: a stream both ways.
    async fn doubled(&self, items: fdrpc::Stream<Numbered>) -> fdrpc::Stream<Numbered>;
    /// Takes the first item of `items`, drops the rest (cancelling the client's sink), and
    /// streams that item back.
    async fn first_only(&self, items: fdrpc::Stream<i32>) -> fdrpc::Stream<i32>;
    /// A first response carrying an fd, then `n` numbers; refused for a negative `n`.
    async fn with_header(&self, n: i32) -> Result<(Numbered, fdrpc::Stream<i32>), Failure>;
}

#[derive(Default)]
pub struct ProbeImpl {
    produced: Arc<AtomicUsize>,
    cancelled: Arc<AtomicBool>,
    /// Sink items `ordered` has checked.
    consumed: Arc<AtomicI64>,
}

/// Sets a flag when the producer's stream is dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Probe for ProbeImpl {
    async fn endless(&self) -> fdrpc::Stream<OwnedFd> {
        let produced = self.produced.clone();
        let flag = DropFlag(self.cancelled.clone());
        fdrpc::Stream::iter((0..).map(move |i: u64| {
            let _ = &flag;
            produced.fetch_add(1, Ordering::SeqCst);
            OwnedFd::from(memfd(i.to_string().as_bytes()))
        }))
    }

    async fn quiet(&self) -> fdrpc::Stream<i32> {
        let flag = DropFlag(self.cancelled.clone());
        fdrpc::Stream::from_stream(
            futures::stream::once(async { 1 })
                .chain(futures::stream::pending())
                .map(move |i| {
                    let _ = &flag;
                    i
                }),
        )
    }

    async fn failing(&self, n: i32) -> fdrpc::Stream<OwnedFd, Failure> {
        let items = (0..n).map(|i| Ok(OwnedFd::from(memfd(i.to_string().as_bytes()))));
        let fail = std::iter::once(Err(Failure {
            message: "ran dry".into(),
            log: Some(memfd(b"the log").into()),
        }));
        fdrpc::Stream::new(futures::stream::iter(items.chain(fail)))
    }

    async fn maybe(&self, open: bool) -> Result<fdrpc::Stream<i32>, Failure> {
        if open {
            Ok(fdrpc::Stream::iter(vec![1, 2, 3]))
        } else {
            Err(Failure {
                message: "refused".into(),
                log: Some(memfd(b"why").into()),
            })
        }
    }

    async fn ordered(&self, mut items: fdrpc::Stream<Numbered>, slow: bool) -> i64 {
        let mut i = 0;
        while let Some(item) = items.next().await {
            let Ok(item) = item;
            if item.n != i
                || contents(&item.fd) != i.to_string().as_bytes()
                || !is_cloexec(&item.fd)
            {
                return -1 - i;
            }
            i += 1;
            self.consumed.store(i, Ordering::SeqCst);
            if slow && i % 8 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        i
    }

    async fn with_header(&self, n: i32) -> Result<(Numbered, fdrpc::Stream<i32>), Failure> {
        if n < 0 {
            return Err(Failure {
                message: "negative".into(),
                log: Some(memfd(b"negative").into()),
            });
        }
        Ok((numbered(42), fdrpc::Stream::iter(0..n)))
    }

    async fn first_only(&self, mut items: fdrpc::Stream<i32>) -> fdrpc::Stream<i32> {
        let first = items.next().await.and_then(Result::ok);
        drop(items);
        fdrpc::Stream::iter(first)
    }

    async fn doubled(&self, items: fdrpc::Stream<Numbered>) -> fdrpc::Stream<Numbered> {
        fdrpc::Stream::from_stream(items.filter_map(|r| async move {
            r.ok().map(|x| Numbered {
                n: x.n * 2,
                fd: x.fd,
            })
        }))
    }
}

/// Waits up to five seconds for `flag` to be set; fails with `what` if it is not.
async fn set_within_5s(flag: &AtomicBool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !flag.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`set_within_5s`] for a thread outside any runtime.
fn block_on_set_within_5s(flag: &AtomicBool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !flag.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve_probe(probe: ProbeImpl) -> (ProbeClient, tokio::task::JoinHandle<()>) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let server = serve_connection(b, ProbeServer::new(probe));
    (
        ProbeClient::new(fdrpc::Client::from_std(a).unwrap()),
        server,
    )
}

fn numbered(n: i64) -> Numbered {
    Numbered {
        n,
        fd: memfd(n.to_string().as_bytes()).into(),
    }
}

#[test]
fn a_stream_of_ten_thousand_fds_arrives_in_order() {
    run_async(async {
        let (client, server) = serve_conformance();
        let mut stream = client.memfds(10_000).await.unwrap();
        let mut i = 0;
        while let Some(fd) = stream.next().await {
            let fd = fd.unwrap();
            assert_eq!(contents(&fd), i.to_string().as_bytes(), "item {i}");
            assert!(is_cloexec(&fd));
            i += 1;
        }
        assert_eq!(i, 10_000);
        drop((stream, client));
        server.await.unwrap();
    });
}

#[test]
fn a_sink_of_ten_thousand_fds_arrives_in_order() {
    run_async(async {
        let (client, server) = serve_probe(ProbeImpl::default());
        let items = fdrpc::Stream::iter((0..10_000).map(numbered));
        assert_eq!(client.ordered(items, false).await.unwrap(), 10_000);
        drop(client);
        server.await.unwrap();

        let (client, server) = serve_conformance();
        let sizes = (0..10_000usize).map(|i| i % 7 + 1);
        let expected: i64 = sizes.clone().map(|s| s as i64).sum();
        let files = fdrpc::Stream::iter(sizes.map(|s| OwnedFd::from(memfd(&vec![b'x'; s]))));
        assert_eq!(client.total_size(files).await.unwrap(), expected);
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn a_slow_consumer_bounds_what_the_producer_has_outstanding() {
    run_async(async {
        let probe = ProbeImpl::default();
        let produced = probe.produced.clone();
        let (client, server) = serve_probe(probe);
        let mut stream = client.endless().await.unwrap();
        let mut max_outstanding = 0;
        for consumed in 1..=300usize {
            let fd = stream.next().await.unwrap().unwrap();
            assert_eq!(contents(&fd), (consumed - 1).to_string().as_bytes());
            if consumed % 50 == 0 {
                // Give the producer every chance to run ahead.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // In flight or buffered: at most the window. Made by the producer: one more, the
            // item it pulls to learn whether the stream has ended, which it holds until
            // credit comes (so that `end` needs no credit; docs/PROTOCOL.md section 5).
            let outstanding = produced.load(Ordering::SeqCst) - consumed;
            max_outstanding = max_outstanding.max(outstanding);
            assert!(
                outstanding <= fdrpc::DEFAULT_WINDOW as usize + 1,
                "{outstanding} items outstanding with a window of {}",
                (fdrpc::DEFAULT_WINDOW as usize)
            );
        }
        assert!(
            max_outstanding > 0,
            "the producer never ran ahead: the test proves nothing"
        );
        drop((stream, client));
        server.await.unwrap();
    });
}

#[test]
fn dropping_the_client_stream_cancels_the_producer() {
    run_async(async {
        let probe = ProbeImpl::default();
        let (produced, cancelled) = (probe.produced.clone(), probe.cancelled.clone());
        let (client, server) = serve_probe(probe);
        let mut stream = client.endless().await.unwrap();
        for _ in 0..5 {
            stream.next().await.unwrap().unwrap();
        }
        drop(stream);
        set_within_5s(&cancelled, "the producer was never told").await;
        let made = produced.load(Ordering::SeqCst);
        assert!(
            made <= 5 + (fdrpc::DEFAULT_WINDOW as usize),
            "{made} items made for 5 consumed"
        );
        // The connection goes on.
        let mut again = client.maybe(true).await.unwrap();
        assert_eq!(again.next().await.unwrap().unwrap(), 1);
        drop((again, client));
        server.await.unwrap();
    });
}

/// A producer waiting for its next item (not for credit) still learns of a cancel: its
/// stream is dropped.
#[test]
fn a_cancel_reaches_a_producer_that_waits_for_its_next_item() {
    run_async(async {
        let probe = ProbeImpl::default();
        let cancelled = probe.cancelled.clone();
        let (client, server) = serve_probe(probe);
        let mut stream = client.quiet().await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert!(!cancelled.load(Ordering::SeqCst));
        drop(stream);
        set_within_5s(&cancelled, "the waiting producer was never told").await;
        drop(client);
        server.await.unwrap();
    });
    // The same for a client's sink that goes on beside the stream its call opened: the
    // server drops it after one item, while the client's stream waits for its next.
    run_async(async {
        let (client, server) = serve_probe(ProbeImpl::default());
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(cancelled.clone());
        let sink = fdrpc::Stream::from_stream(
            futures::stream::once(async { 7 })
                .chain(futures::stream::pending())
                .map(move |i| {
                    let _ = &flag;
                    i
                }),
        );
        let back: Vec<i32> = client
            .first_only(sink)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(back, [7]);
        set_within_5s(&cancelled, "the client's waiting sink was never told").await;
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn a_producer_error_arrives_typed_with_its_fd() {
    run_async(async {
        let (client, server) = serve_probe(ProbeImpl::default());
        let mut stream = client.failing(3).await.unwrap();
        for i in 0..3 {
            assert_eq!(
                contents(&stream.next().await.unwrap().unwrap()),
                i.to_string().as_bytes()
            );
        }
        match stream.next().await {
            Some(Err(fdrpc::CallError::Service(f))) => {
                assert_eq!(f.message, "ran dry");
                assert_eq!(contents(f.log.as_ref().unwrap()), b"the log");
            }
            other => panic!("{other:?}"),
        }
        assert!(stream.next().await.is_none());
        match client.maybe(false).await {
            Err(fdrpc::CallError::Service(f)) => {
                assert_eq!(contents(f.log.as_ref().unwrap()), b"why")
            }
            other => panic!("{other:?}"),
        }
        let all: Vec<i32> = client
            .maybe(true)
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(all, vec![1, 2, 3]);
        drop((stream, client));
        server.await.unwrap();
    });
}

#[test]
fn a_slow_sink_consumer_bounds_what_the_client_sends() {
    run_async(async {
        let probe = ProbeImpl::default();
        let consumed = probe.consumed.clone();
        let (client, server) = serve_probe(probe);
        let pulled = Arc::new(AtomicI64::new(0));
        let max_ahead = Arc::new(AtomicI64::new(0));
        let items = {
            let (pulled, max_ahead) = (pulled.clone(), max_ahead.clone());
            fdrpc::Stream::iter((0..2_000).map(move |i| {
                let ahead =
                    pulled.fetch_add(1, Ordering::SeqCst) + 1 - consumed.load(Ordering::SeqCst);
                max_ahead.fetch_max(ahead, Ordering::SeqCst);
                numbered(i)
            }))
        };
        let result = client.ordered(items, true).await.unwrap();
        assert_eq!(result, 2_000);
        assert_eq!(pulled.load(Ordering::SeqCst), 2_000);
        // The client pulls an item only with credit: at most a window ahead of the server
        // (plus the one item the server is looking at).
        let ahead = max_ahead.load(Ordering::SeqCst);
        assert!(
            ahead <= fdrpc::DEFAULT_WINDOW as i64 + 1,
            "{ahead} items ahead"
        );
        assert!(
            ahead > 1,
            "the client never ran ahead: the test proves nothing"
        );
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn streams_both_ways() {
    run_async(async {
        let (client, server) = serve_probe(ProbeImpl::default());
        let out = client
            .doubled(fdrpc::Stream::iter((0..500).map(numbered)))
            .await
            .unwrap();
        let got: Vec<Numbered> = out.map(|r| r.unwrap()).collect().await;
        assert_eq!(got.len(), 500);
        for (i, x) in got.iter().enumerate() {
            assert_eq!(x.n, 2 * i as i64);
            assert_eq!(contents(&x.fd), i.to_string().as_bytes());
        }
        drop((got, client));
        server.await.unwrap();
    });
}

#[test]
fn streams_and_calls_interleave_on_one_connection() {
    run_async(async {
        let (client, server) = serve_conformance();
        let mut tasks = Vec::new();
        for s in 0..8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = client.memfds(300 + s).await.unwrap();
                let mut i = 0;
                while let Some(fd) = stream.next().await {
                    assert_eq!(contents(&fd.unwrap()), i.to_string().as_bytes());
                    i += 1;
                }
                assert_eq!(i, 300 + s);
            }));
        }
        for c in 0..32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let label = format!("call{c}");
                let fd = memfd(label.as_bytes());
                let id = ino(&fd);
                let back = client
                    .echo(Bundle {
                        label: label.clone(),
                        fds: vec![fd.into()],
                        spare: None,
                    })
                    .await
                    .unwrap();
                assert_eq!(back.label, label);
                assert_eq!(ino(&back.fds[0]), id);
            }));
        }
        for s in 0..4 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let files = fdrpc::Stream::iter(
                    (0..200).map(move |_| OwnedFd::from(memfd(&vec![0; s + 1]))),
                );
                assert_eq!(
                    client.total_size(files).await.unwrap(),
                    200 * (s as i64 + 1)
                );
            }));
        }
        for t in futures::future::join_all(tasks).await {
            t.unwrap();
        }
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn the_blocking_client_iterates_streams_and_feeds_sinks() {
    run_async(async {
        let (a, server) = serve_for_blocking(ConformanceServer::new(ConformanceImpl::default()));
        tokio::task::spawn_blocking(move || {
            let client = ConformanceBlockingClient::from_std(a);
            let mut n = 0;
            for fd in client.memfds(1_000).unwrap() {
                assert_eq!(contents(&fd.unwrap()), n.to_string().as_bytes());
                n += 1;
            }
            assert_eq!(n, 1_000);
            // Stop early: the rest is cancelled and the connection goes on.
            let mut partial = client.memfds(1_000_000).unwrap();
            for i in 0..10 {
                assert_eq!(
                    contents(&partial.next().unwrap().unwrap()),
                    i.to_string().as_bytes()
                );
            }
            drop(partial);
            let files = (0..3_000).map(|i| OwnedFd::from(memfd(&vec![1; i % 5 + 1])));
            let expected: i64 = (0..3_000).map(|i| (i % 5 + 1) as i64).sum();
            assert_eq!(client.total_size(files).unwrap(), expected);
            assert_eq!(
                client
                    .echo(Bundle {
                        label: "after".into(),
                        fds: vec![],
                        spare: None
                    })
                    .unwrap()
                    .label,
                "after"
            );
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

/// Dropping a blocking client's stream iterator cancels the stream: the server's producer is
/// dropped (not left waiting for credit with its call slot), and the connection goes on.
#[test]
fn the_blocking_client_cancels_a_stream_it_drops() {
    run_async(async {
        let probe = ProbeImpl::default();
        let (produced, cancelled) = (probe.produced.clone(), probe.cancelled.clone());
        let (a, server) = serve_for_blocking(ProbeServer::new(probe));
        tokio::task::spawn_blocking(move || {
            let client = ProbeBlockingClient::from_std(a).with_timeout(Duration::from_secs(10));
            let mut endless = client.endless().unwrap();
            for i in 0..10u64 {
                let fd = endless.next().unwrap().unwrap();
                assert_eq!(contents(&fd), i.to_string().as_bytes());
            }
            drop(endless);
            block_on_set_within_5s(
                &cancelled,
                "the server's producer still runs: no cancel came",
            );
            // Never more than the window (64) beyond what was taken, plus the one item the
            // producer holds to learn whether the stream ended.
            let made = produced.load(Ordering::SeqCst);
            assert!((10..=10 + 64 + 1).contains(&made), "{made} produced");
            assert_eq!(
                client.maybe(true).unwrap().map(|x| x.unwrap()).sum::<i32>(),
                6
            );
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

#[test]
fn the_blocking_client_streams_both_ways() {
    run_async(async {
        let (a, server) = serve_for_blocking(ProbeServer::new(ProbeImpl::default()));
        tokio::task::spawn_blocking(move || {
            let client = ProbeBlockingClient::from_std(a).with_timeout(Duration::from_secs(10));
            // The sink (500 items, 16 at a time) is fed while the stream is read.
            let doubled = client.doubled((0..500).map(numbered)).unwrap();
            let mut n = 0;
            for x in doubled {
                let x = x.unwrap();
                assert_eq!(x.n, 2 * n);
                assert_eq!(contents(&x.fd), n.to_string().as_bytes());
                assert!(is_cloexec(&x.fd));
                n += 1;
            }
            assert_eq!(n, 500);
            // Dropped early: both directions stop and the connection goes on.
            let mut partial = client.doubled((0..1_000_000).map(numbered)).unwrap();
            assert_eq!(partial.next().unwrap().unwrap().n, 0);
            drop(partial);
            assert_eq!(client.maybe(true).unwrap().count(), 3);
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

#[test]
fn a_first_response_alongside_the_stream() {
    run_async(async {
        let (client, server) = serve_probe(ProbeImpl::default());
        let (head, items) = client.with_header(3).await.unwrap();
        assert_eq!(head.n, 42);
        assert_eq!(contents(&head.fd), b"42");
        assert!(is_cloexec(&head.fd));
        let items: Vec<i32> = items.map(|r| r.unwrap()).collect().await;
        assert_eq!(items, vec![0, 1, 2]);
        match client.with_header(-1).await {
            Err(fdrpc::CallError::Service(f)) => {
                assert_eq!(contents(f.log.as_ref().unwrap()), b"negative")
            }
            other => panic!("{other:?}"),
        }
        drop((head, client));
        server.await.unwrap();
    });
}

/// A server shutting down gracefully ends every stream it produces with an `abort` whose
/// cause says so, before the connection closes: both clients see that error, not a lost
/// connection. (Run against both servers: CI runs this suite with `FDRPC_TEST_SERVER=blocking`
/// too.)
#[test]
fn a_server_shutting_down_ends_its_streams_with_an_abort_that_says_so() {
    let _check = fd_leak_check();
    let is_shutdown = |e: &str| e.contains("the server is shutting down");
    // The async client.
    let mut server =
        ThreadServer::start(
            fdrpc::Server::new,
            || ProbeServer::new(ProbeImpl::default()),
        );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let last = rt.block_on(async {
        let client = ProbeClient::connect(&server.path).await.unwrap();
        let mut endless = client.endless().await.unwrap();
        for _ in 0..3 {
            endless.next().await.unwrap().unwrap();
        }
        server.begin_shutdown();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the stream never ended"
            );
            match endless.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e.to_string(),
                None => break "ended without a cause".into(),
            }
        }
    });
    drop(rt);
    assert!(is_shutdown(&last), "the async client saw {last:?}");
    drop(server);

    // The blocking client.
    let mut server =
        ThreadServer::start(
            fdrpc::Server::new,
            || ProbeServer::new(ProbeImpl::default()),
        );
    let client = ProbeBlockingClient::connect(&server.path)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    let mut endless = client.endless().unwrap();
    endless.set_item_timeout(Some(Duration::from_secs(20)));
    for _ in 0..3 {
        endless.next().unwrap().unwrap();
    }
    server.begin_shutdown();
    let last = loop {
        match endless.next() {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
            None => break "ended without a cause".into(),
        }
    };
    assert!(is_shutdown(&last), "the blocking client saw {last:?}");
    drop((endless, client));
    drop(server);
}
