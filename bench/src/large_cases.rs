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
