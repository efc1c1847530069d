//! Large payloads, 1 MiB each way per call, one call at a time: as plain bytes over the
//! socket (the limit), as an fdrpc `binary` argument and result, as a tarpc `Vec<u8>`, and as
//! an fdrpc sealed memfd written in place and read through a read-only mapping. In every case
//! the sender writes the whole payload and the receiver reads all of it (a sum of its bytes),
//! so each side touches each byte once.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use crate::drive::{latencies, latencies_async};
use crate::stats::Sample;
use crate::workload::{SIZE, fill, sum};

/// The child for `raw_1mib`: reads 1 MiB, reads it all, answers with 1 MiB (blocking).
pub fn serve_raw(mut sock: UnixStream) {
    let mut buf = vec![0u8; SIZE];
    let mut out = vec![0u8; SIZE];
    let mut n = 0u8;
    while sock.read_exact(&mut buf).is_ok() {
        std::hint::black_box(sum(&buf));
        n = n.wrapping_add(1);
        fill(&mut out, n);
        if sock.write_all(&out).is_err() {
            return;
        }
    }
}

/// The child for `raw_1mib_oneway`: reads 1 MiB messages, every byte of each, until the
/// peer stops writing; then answers one byte.
pub fn serve_raw_oneway(mut sock: UnixStream) {
    let mut buf = vec![0u8; SIZE];
    while sock.read_exact(&mut buf).is_ok() {
        std::hint::black_box(sum(&buf));
    }
    let _ = sock.write_all(&[1]);
}

/// 1 MiB messages one way, as fast as the socket takes them and the reader reads them: the
/// socket's one-way limit (MiB/s), counted until the reader has read the last.
pub fn raw_oneway(mut sock: UnixStream, iters: usize) -> Sample {
    let mut out = vec![0u8; SIZE];
    let start = std::time::Instant::now();
    for i in 0..iters {
        fill(&mut out, i as u8);
        sock.write_all(&out).unwrap();
    }
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut done = [0u8; 1];
    sock.read_exact(&mut done).unwrap();
    Sample::throughput(iters, start.elapsed())
}

/// One in-process copy of 1 MiB between two buffers that stay in place: the memory's own
/// speed, for scale (the socket is not used).
pub fn memcpy(_sock: UnixStream, iters: usize) -> Sample {
    let src = vec![1u8; SIZE];
    let mut dst = vec![0u8; SIZE];
    dst.copy_from_slice(&src);
    let start = std::time::Instant::now();
    for _ in 0..iters {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    Sample::throughput(iters, start.elapsed())
}

pub fn raw(mut sock: UnixStream, iters: usize) -> Sample {
    let mut out = vec![0u8; SIZE];
    let mut buf = vec![0u8; SIZE];
    let mut n = 0u8;
    latencies(iters, || {
        n = n.wrapping_add(1);
        fill(&mut out, n);
        sock.write_all(&out).unwrap();
        sock.read_exact(&mut buf).unwrap();
        std::hint::black_box(sum(&buf));
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn fdrpc_binary(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = crate::fdrpc_cases::BenchClient::from_std(stream).unwrap();
        let mut n = 0u8;
        latencies_async(iters, || {
            n = n.wrapping_add(1);
            let c = c.clone();
            async move {
                let mut out = vec![0u8; SIZE];
                fill(&mut out, n);
                let back = c.echo_bytes(out).await.unwrap();
                std::hint::black_box(sum(&back));
            }
        })
        .await
    })
}

/// As `fdrpc_binary`, the `Bytes` way: the argument goes out from the caller's buffer (reused
/// across calls), the result is a view of the received frame.
pub fn fdrpc_shared(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = crate::fdrpc_cases::BenchClient::from_std(stream).unwrap();
        let mut n = 0u8;
        let mut buf = fdrpc::bytes::BytesMut::new();
        latencies_async(iters, || {
            n = n.wrapping_add(1);
            let c = c.clone();
            let out = crate::workload::fill_shared(&mut buf, n);
            async move {
                let back = c.echo_shared(out).await.unwrap();
                std::hint::black_box(sum(&back));
            }
        })
        .await
    })
}

/// 1 MiB each way per call through pools: the caller writes a buffer of its pool and lends
/// it, the server reads it and answers with a buffer of its own pool, which the caller reads.
pub fn fdrpc_pool(stream: UnixStream, iters: usize) -> Sample {
    pool_round_trips(stream, iters, crate::workload::read_pool_buffer)
}

/// As `fdrpc_pool`, the caller reading the server's buffers in place (`unsafe`, trusted
/// sender); the server still copies out.
pub fn fdrpc_pool_in_place(stream: UnixStream, iters: usize) -> Sample {
    pool_round_trips(stream, iters, crate::workload::read_pool_buffer_in_place)
}

fn pool_round_trips(
    stream: UnixStream,
    iters: usize,
    read: fn(&fdrpc::PoolReader, fdrpc::PoolBuffer),
) -> Sample {
    rt().block_on(async move {
        let c = crate::fdrpc_cases::BenchClient::from_std(stream).unwrap();
        let pool = fdrpc::Pool::new("bench-client", SIZE, 2).unwrap();
        let theirs = c
            .attach_pool(pool.share().unwrap())
            .await
            .unwrap()
            .map()
            .unwrap();
        let mut n = 0u8;
        latencies_async(iters, || {
            n = n.wrapping_add(1);
            let (c, pool, theirs) = (c.clone(), pool.clone(), theirs.clone());
            async move {
                let lent = crate::workload::write_pool_buffer(&pool, n).await;
                let back = c.echo_pool(lent).await.unwrap();
                read(&theirs, back);
            }
        })
        .await
    })
}

/// A server stream of 1 MiB buffers of the server's pool, each read by the client and given
/// back (items/s = MiB/s).
pub fn fdrpc_pool_stream(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = crate::fdrpc_cases::BenchClient::from_std(stream).unwrap();
        let pool = fdrpc::Pool::new("bench-client", 4096, 1).unwrap();
        let theirs = c
            .attach_pool(pool.share().unwrap())
            .await
            .unwrap()
            .map()
            .unwrap();
        let start = std::time::Instant::now();
        let mut items = c.pool_frames(iters as i64).await.unwrap();
        let mut n = 0;
        while let Some(item) = futures::StreamExt::next(&mut items).await {
            crate::workload::read_pool_buffer(&theirs, item.unwrap());
            n += 1;
        }
        assert_eq!(n, iters);
        Sample::throughput(n, start.elapsed())
    })
}

pub fn fdrpc_memfd(stream: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let c = crate::fdrpc_cases::BenchClient::from_std(stream).unwrap();
        let mut n = 0u8;
        latencies_async(iters, || {
            n = n.wrapping_add(1);
            let c = c.clone();
            async move {
                let mut frame = fdrpc::MemfdWriter::new("bench", SIZE).unwrap();
                fill(&mut frame, n);
                let back = c.echo_memfd(frame.seal().unwrap()).await.unwrap();
                std::hint::black_box(sum(&back.map().unwrap()));
            }
        })
        .await
    })
}
