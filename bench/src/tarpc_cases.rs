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
}

#[derive(Clone)]
struct Server;

impl TBench for Server {
    async fn call(self, _: tarpc::context::Context, data: Vec<u8>) -> Vec<u8> {
        data
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
        let t = tarpc::serde_transport::new(
            Framed::new(s, LengthDelimitedCodec::new()),
            Bincode::default(),
        );
        tarpc::server::BaseChannel::with_defaults(t)
            .execute(Server.serve())
            .for_each(|f| async move {
                tokio::spawn(f);
            })
            .await;
    });
}

pub fn nofd_64(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        sock.set_nonblocking(true).unwrap();
        let s = tokio::net::UnixStream::from_std(sock).unwrap();
        let t = tarpc::serde_transport::new(
            Framed::new(s, LengthDelimitedCodec::new()),
            Bincode::default(),
        );
        let client = TBenchClient::new(tarpc::client::Config::default(), t).spawn();
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
