//! tarpc over a Unix socket with bincode: 64 bytes each way, no fds (it cannot carry them).

use std::os::unix::net::UnixStream;

use futures::StreamExt;
use tarpc::server::Channel;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::drive::in_flight;
use crate::stats::Sample;
use crate::workload::payload;

#[tarpc::service]
pub trait TBench {
    async fn call(data: Vec<u8>) -> Vec<u8>;
    /// Reads all of `data`, answers with as many bytes, written anew.
    async fn bytes(data: Vec<u8>) -> Vec<u8>;
}

#[derive(Clone)]
struct Server;

impl TBench for Server {
    async fn call(self, _: tarpc::context::Context, data: Vec<u8>) -> Vec<u8> {
        data
    }
    async fn bytes(self, _: tarpc::context::Context, data: Vec<u8>) -> Vec<u8> {
        crate::workload::bytes_reply(data, 7)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn serve(sock: UnixStream) {
    rt().block_on(async move {
        sock.set_nonblocking(true).unwrap();
        let s = tokio::net::UnixStream::from_std(sock).unwrap();
        let t = tarpc::serde_transport::new(Framed::new(s, codec()), Bincode::default());
        tarpc::server::BaseChannel::with_defaults(t)
            .execute(Server.serve())
            .for_each(|f| async move {
                tokio::spawn(f);
            })
            .await;
    });
}

/// Frames up to 4 MiB (the default is 8 MiB; 1 MiB payloads need more than the 64-byte ones).
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(4 << 20)
        .new_codec()
}

fn client(sock: UnixStream) -> TBenchClient {
    sock.set_nonblocking(true).unwrap();
    let s = tokio::net::UnixStream::from_std(sock).unwrap();
    let t = tarpc::serde_transport::new(Framed::new(s, codec()), Bincode::default());
    TBenchClient::new(tarpc::client::Config::default(), t).spawn()
}

/// 1 MiB each way, one call at a time (see `large_cases`).
pub fn binary_1mib(sock: UnixStream, iters: usize) -> Sample {
    use crate::workload::{SIZE, fill, sum};
    rt().block_on(async move {
        let client = client(sock);
        let mut n = 0u8;
        crate::drive::latencies_async(iters, || {
            n = n.wrapping_add(1);
            let c = client.clone();
            async move {
                let mut out = vec![0u8; SIZE];
                fill(&mut out, n);
                let back = c.bytes(tarpc::context::current(), out).await.unwrap();
                std::hint::black_box(sum(&back));
            }
        })
        .await
    })
}

pub fn nofd_64(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let client = client(sock);
        let data = payload();
        in_flight(iters, 64, || {
            let (c, data) = (client.clone(), data.clone());
            async move {
                c.call(tarpc::context::current(), data).await.unwrap();
            }
        })
        .await
    })
}
