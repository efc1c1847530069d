//! fdrpc's own cases: async and blocking calls, streams, sinks, bulk oneways.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::drive::{concurrent_calls, in_flight, latencies, latencies_async, on_threads};
use crate::stats::Sample;
use crate::workload::{fd, payload};

#[derive(fdrpc::Message)]
pub struct Reply {
    pub data: fdrpc::Binary,
    pub fd: OwnedFd,
}

#[fdrpc::service]
pub trait Bench {
    /// 64 bytes and an fd in, 64 bytes and a fresh fd out.
    async fn call_fd(&self, data: fdrpc::Binary, fd: OwnedFd) -> Reply;
    /// 64 bytes in, 64 bytes out.
    async fn call_nofd(&self, data: fdrpc::Binary) -> fdrpc::Binary;
    /// `n` items, each a fresh fd.
    async fn items(&self, n: i64) -> fdrpc::Stream<OwnedFd>;
    /// Counts the fds streamed in.
    async fn absorb(&self, items: fdrpc::Stream<OwnedFd>) -> i64;
    /// Closes the fds it gets.
    #[oneway]
    async fn bulk(&self, fds: Vec<OwnedFd>);
    /// Returns once every earlier call on the connection has run.
    async fn fence(&self) -> i64;
    /// Holds the call for `millis`.
    async fn hold(&self, millis: i64) -> i64;
    /// 64 bytes and an fd, one way.
    #[oneway]
    async fn push(&self, data: fdrpc::Binary, fd: OwnedFd);
    /// Reads all of `data`, answers with as many bytes, written anew into a fresh vector.
    async fn echo_bytes(&self, data: Vec<u8>) -> Vec<u8>;
    /// Reads all of `data`, answers with as many bytes, written anew into a buffer the
    /// handler reuses (the `Bytes` way: no copy either way, no fresh pages).
    async fn echo_shared(&self, data: fdrpc::bytes::Bytes) -> fdrpc::bytes::Bytes;
    /// Maps the caller's pool; answers with the server's own (4 slots of 1 MiB).
    async fn attach_pool(&self, pool: fdrpc::SharedPool) -> fdrpc::SharedPool;
    /// Reads every byte of `buf` (giving it back), answers with a buffer of the server's
    /// pool written anew.
    async fn echo_pool(&self, buf: fdrpc::PoolBuffer) -> fdrpc::PoolBuffer;
    /// `n` buffers of 1 MiB of the server's pool, each written anew.
    async fn pool_frames(&self, n: i64) -> fdrpc::Stream<fdrpc::PoolBuffer>;
    /// Reads all of `frame` in place, answers with a frame of the same size, written in place.
    async fn echo_memfd(&self, frame: fdrpc::SealedMemfd) -> fdrpc::SealedMemfd;
}

#[derive(Default)]
pub struct BenchImpl {
    /// The buffer `echo_shared` writes its replies into, taken back once each is sent.
    out: std::sync::Mutex<fdrpc::bytes::BytesMut>,
    /// The caller's pool, mapped, and the server's own.
    pools: std::sync::Mutex<Option<(fdrpc::PoolReader, fdrpc::Pool)>>,
}

impl BenchImpl {
    fn pools(&self) -> (fdrpc::PoolReader, fdrpc::Pool) {
        self.pools
            .lock()
            .unwrap()
            .clone()
            .expect("attach_pool first")
    }
}

impl Bench for BenchImpl {
    async fn call_fd(&self, data: fdrpc::Binary, fd_in: OwnedFd) -> Reply {
        drop(fd_in);
        Reply { data, fd: fd() }
    }
    async fn call_nofd(&self, data: fdrpc::Binary) -> fdrpc::Binary {
        data
    }
    async fn items(&self, n: i64) -> fdrpc::Stream<OwnedFd> {
        fdrpc::Stream::iter((0..n).map(|_| fd()))
    }
    async fn absorb(&self, mut items: fdrpc::Stream<OwnedFd>) -> i64 {
        let mut n = 0;
        while let Some(Ok(_)) = items.next().await {
            n += 1;
        }
        n
    }
    async fn bulk(&self, fds: Vec<OwnedFd>) {
        drop(fds);
    }
    async fn fence(&self) -> i64 {
        0
    }
    async fn hold(&self, millis: i64) -> i64 {
        tokio::time::sleep(Duration::from_millis(millis as u64)).await;
        millis
    }
    async fn push(&self, data: fdrpc::Binary, fd_in: OwnedFd) {
        drop((data, fd_in));
    }
    async fn echo_bytes(&self, data: Vec<u8>) -> Vec<u8> {
        crate::workload::bytes_reply(data, 7)
    }
    async fn echo_memfd(&self, frame: fdrpc::SealedMemfd) -> fdrpc::SealedMemfd {
        crate::workload::memfd_reply(frame, 7)
    }
    async fn attach_pool(&self, pool: fdrpc::SharedPool) -> fdrpc::SharedPool {
        let own = fdrpc::Pool::new("bench-server", crate::workload::SIZE, 4).unwrap();
        let shared = own.share().unwrap();
        *self.pools.lock().unwrap() = Some((pool.map().unwrap(), own));
        shared
    }
    async fn echo_pool(&self, buf: fdrpc::PoolBuffer) -> fdrpc::PoolBuffer {
        let (reader, own) = self.pools();
        crate::workload::read_pool_buffer(&reader, buf);
        crate::workload::write_pool_buffer(&own, 7).await
    }
    async fn pool_frames(&self, n: i64) -> fdrpc::Stream<fdrpc::PoolBuffer> {
        let (_, own) = self.pools();
        fdrpc::Stream::from_stream(futures::stream::unfold(0, move |i| {
            let own = own.clone();
            async move {
                if i == n {
                    return None;
                }
                Some((
                    crate::workload::write_pool_buffer(&own, i as u8).await,
                    i + 1,
                ))
            }
        }))
    }
    async fn echo_shared(&self, data: fdrpc::bytes::Bytes) -> fdrpc::bytes::Bytes {
        std::hint::black_box(crate::workload::sum(&data));
        drop(data);
        let mut out = self.out.lock().unwrap();
        crate::workload::fill_shared(&mut out, 7)
    }
}

/// The child's side: serves one connection on a single-threaded runtime.
pub fn serve(stream: UnixStream) {
    stream.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = tokio::net::UnixStream::from_std(stream).unwrap();
        let _ = fdrpc::Server::new()
            .serve_connection(stream, BenchServer::new(BenchImpl::default()))
            .await;
    });
}

/// The child's side with the blocking server: serves one connection on this thread, with no
/// async runtime.
pub fn serve_blocking(stream: UnixStream) {
    let _ = fdrpc::BlockingServer::new()
        .serve_connection(stream, BenchServer::new(BenchImpl::default()));
}

/// Serves a listener until killed, on a single-threaded runtime (`threads == 1`: the memory
/// cases, latency under load) or a multi-thread one with `threads` workers (the
/// multi-connection case).
pub fn serve_listener(path: &str, threads: usize) {
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    };
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        // SIGTERM ends it cleanly (its counts are reported as it returns); the memory cases
        // kill it.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let _ = fdrpc::Server::with_settings(fdrpc::Settings::default().max_connections(4096))
            .serve_with_shutdown(
                listener,
                BenchServer::new(BenchImpl::default()),
                async move {
                    term.recv().await;
                },
            )
            .await;
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(stream: UnixStream) -> BenchClient {
    BenchClient::from_std(stream).unwrap()
}

pub fn async_fd(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let data = fdrpc::Binary(payload());
        latencies_async(iters, || async {
            drop(c.call_fd(data.clone(), fd()).await.unwrap());
        })
        .await
    })
}

/// As [`async_fd`], from a spawned task rather than from `block_on`'s own future: tokio's
/// current-thread scheduler polls its I/O driver before it runs a `block_on` future another
/// task woke (one more `epoll_wait` a call), not before a task it woke.
pub fn async_fd_in_task(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let data = fdrpc::Binary(payload());
        tokio::spawn(async move {
            latencies_async(iters, || async {
                drop(c.call_fd(data.clone(), fd()).await.unwrap());
            })
            .await
        })
        .await
        .unwrap()
    })
}

pub fn async_fd_64(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let data = fdrpc::Binary(payload());
        in_flight(iters, 64, || {
            let (c, data) = (c.clone(), data.clone());
            async move {
                drop(c.call_fd(data, fd()).await.unwrap());
            }
        })
        .await
    })
}

pub fn async_nofd_64(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let data = fdrpc::Binary(payload());
        in_flight(iters, 64, || {
            let (c, data) = (c.clone(), data.clone());
            async move {
                drop(c.call_nofd(data).await.unwrap());
            }
        })
        .await
    })
}

pub fn blocking_fd(stream: UnixStream, iters: usize) -> Sample {
    let c = BenchBlockingClient::from_std(stream);
    let data = fdrpc::Binary(payload());
    latencies(iters, || drop(c.call_fd(data.clone(), fd()).unwrap()))
}

/// Calls with 1 fd each way from `threads` threads sharing one blocking client.
pub fn blocking_fd_threads(stream: UnixStream, iters: usize, threads: usize) -> Sample {
    let c = BenchBlockingClient::from_std(stream);
    on_threads(iters, threads, c, |c| {
        drop(c.call_fd(fdrpc::Binary(payload()), fd()).unwrap());
    })
}

/// Calls whose handler holds each for 5 ms, from `threads` threads sharing one blocking
/// client: with the calls in flight together, 8 threads make close to 8 times the calls of 1.
pub fn blocking_hold_threads(stream: UnixStream, iters: usize, threads: usize) -> Sample {
    let c = BenchBlockingClient::from_std(stream);
    on_threads(iters, threads, c, |c| {
        assert_eq!(c.hold(5).unwrap(), 5);
    })
}

pub fn stream_fd(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let start = Instant::now();
        let mut s = c.items(iters as i64).await.unwrap();
        let mut n = 0;
        while let Some(item) = s.next().await {
            drop(item.unwrap());
            n += 1;
        }
        assert_eq!(n, iters);
        Sample::throughput(n, start.elapsed())
    })
}

pub fn sink_fd(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let start = Instant::now();
        let n = c
            .absorb(fdrpc::Stream::iter((0..iters).map(|_| fd())))
            .await
            .unwrap();
        assert_eq!(n as usize, iters);
        Sample::throughput(iters, start.elapsed())
    })
}

/// Oneway calls of `per_call` fds each; fds per second.
pub fn bulk(stream: UnixStream, total_fds: usize, per_call: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let calls = total_fds / per_call;
        let start = Instant::now();
        for _ in 0..calls {
            let fds: Vec<OwnedFd> = (0..per_call).map(|_| fd()).collect();
            c.bulk(fds).await.unwrap();
            // Each oneway is written before the next is built, as a raw sender would.
            c.client().flush().await;
        }
        c.fence().await.unwrap();
        Sample::throughput(calls * per_call, start.elapsed())
    })
}

/// Peak RSS of a server holding `conns` idle connections.
pub fn idle_connections(path: &str, conns: usize) -> Vec<UnixStream> {
    (0..conns)
        .map(|_| UnixStream::connect(path).unwrap())
        .collect()
}

/// `conns` connections that each made one call and then wait, held for `hold`: what a
/// daemon's clients cost it between their calls.
pub fn connections_after_a_call(path: &str, conns: usize, hold: std::time::Duration) {
    rt().block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..conns {
            let c = BenchClient::connect(path).await.unwrap();
            let back = c.call_nofd(fdrpc::Binary(payload())).await.unwrap();
            assert_eq!(back.0.len(), payload().len());
            clients.push(c);
        }
        tokio::time::sleep(hold).await;
    });
}

/// 64 calls in flight on each of `conns` connections.
pub fn calls_in_flight(path: &str, conns: usize) {
    rt().block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(BenchClient::connect(path).await.unwrap());
        }
        let mut calls = Vec::new();
        for c in &clients {
            for _ in 0..64 {
                let c = c.clone();
                calls.push(tokio::spawn(async move { c.hold(300).await.unwrap() }));
            }
        }
        for call in calls {
            call.await.unwrap();
        }
    });
}

/// Oneway calls of 64 bytes and 1 fd, flushed every 64 (one `sendmsg` each, as the raw
/// batched sender); items per second, counted once a fence call comes back.
pub fn oneway_fd(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = client(stream);
        let data = fdrpc::Binary(payload());
        let run = |n: usize| {
            let (c, data) = (c.clone(), data.clone());
            async move {
                let start = Instant::now();
                for i in 0..n {
                    c.push(data.clone(), fd()).await.unwrap();
                    if i % 64 == 63 {
                        c.client().flush().await;
                    }
                }
                c.fence().await.unwrap();
                start.elapsed()
            }
        };
        crate::counts::add_ops(iters / 10);
        run(iters / 10).await;
        Sample::throughput(iters, run(iters).await)
    })
}

/// 16 connections to a multi-thread server, 64 calls in flight on each.
pub fn async_fd_16x64(path: &str, iters: usize) -> Sample {
    across_connections(path, iters, 16, |c, calls| async move {
        let data = fdrpc::Binary(payload());
        concurrent_calls(calls, 64, || {
            let (c, data) = (c.clone(), data.clone());
            async move {
                drop(c.call_fd(data, fd()).await.unwrap());
            }
        })
        .await;
    })
}

/// 100 connections to a single-threaded server, each with one call (1 fd each way) at a time:
/// the server reads every connection once per call, and the connections take turns on its
/// one thread (its per-thread spare read buffers are fewer than the connections).
pub fn async_fd_100x1(path: &str, iters: usize) -> Sample {
    across_connections(path, iters, 100, |c, calls| async move {
        let data = fdrpc::Binary(payload());
        for _ in 0..calls {
            drop(c.call_fd(data.clone(), fd()).await.unwrap());
        }
    })
}

/// `conns` connections to the server at `path`, each making its share of the calls in a task
/// of its own (`each(client, calls)`): a tenth of the calls to warm up, then the throughput of
/// all of them.
fn across_connections<Fut>(
    path: &str,
    iters: usize,
    conns: usize,
    each: impl Fn(BenchClient, usize) -> Fut,
) -> Sample
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let path = path.to_owned();
    rt().block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(BenchClient::connect(&path).await.unwrap());
        }
        let (clients, each) = (&clients, &each);
        let run = |total: usize| async move {
            let start = Instant::now();
            let tasks: Vec<_> = clients
                .iter()
                .map(|c| tokio::spawn(each(c.clone(), total / conns)))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            start.elapsed()
        };
        crate::counts::add_ops(iters / 10 / conns * conns);
        run(iters / 10).await;
        Sample::throughput(iters / conns * conns, run(iters).await)
    })
}

/// Latency of one-at-a-time calls with 1 fd each way on one connection while another
/// connection to the same (single-threaded) server keeps 64 calls in flight: the p99 shows
/// whether a busy peer starves a quiet one.
pub fn async_fd_loaded(path: &str, iters: usize) -> Sample {
    let path = path.to_owned();
    // The load runs on a thread of its own, as another process's client would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let loader = std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            rt().block_on(async move {
                let busy = BenchClient::connect(&path).await.unwrap();
                let data = fdrpc::Binary(payload());
                let mut first = Some(ready_tx);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    concurrent_calls(640, 64, || {
                        let (c, data) = (busy.clone(), data.clone());
                        async move {
                            drop(c.call_fd(data, fd()).await.unwrap());
                        }
                    })
                    .await;
                    if let Some(tx) = first.take() {
                        tx.send(()).unwrap();
                    }
                }
            })
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the load never started");
    let sample = rt().block_on(async move {
        let quiet = BenchClient::connect(&path).await.unwrap();
        let data = fdrpc::Binary(payload());
        latencies_async(iters, || async {
            drop(quiet.call_fd(data.clone(), fd()).await.unwrap());
        })
        .await
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    loader.join().unwrap();
    sample
}
