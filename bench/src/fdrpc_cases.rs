//! fdrpc's own cases: async and blocking calls, streams, sinks, bulk oneways.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::drive::{in_flight, latencies, latencies_async, on_threads};
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
}

pub struct BenchImpl;

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
            .serve_connection(stream, BenchServer::new(BenchImpl))
            .await;
    });
}

/// Serves a listener (for the memory cases) until killed.
pub fn serve_listener(path: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let _ = fdrpc::Server::with_settings(fdrpc::Settings::default().max_connections(4096))
            .serve(listener, BenchServer::new(BenchImpl))
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
