//! zbus peer-to-peer: a method taking and returning 64 bytes and an fd.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::drive::{in_flight, latencies_async};
use crate::stats::Sample;
use crate::workload::{fd, payload};

struct BenchIface;

#[zbus::interface(name = "org.fdrpc.Bench")]
impl BenchIface {
    async fn call(&self, data: Vec<u8>, fd_in: zbus::OwnedFd) -> (Vec<u8>, zbus::OwnedFd) {
        drop(fd_in);
        (data, zbus::OwnedFd::from(fd()))
    }
}

#[zbus::proxy(
    interface = "org.fdrpc.Bench",
    default_path = "/bench",
    default_service = "org.fdrpc.Bench"
)]
trait Bench {
    fn call(&self, data: Vec<u8>, fd_in: zbus::Fd<'_>) -> zbus::Result<(Vec<u8>, zbus::OwnedFd)>;
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn serve(sock: UnixStream) {
    rt().block_on(async move {
        let conn = zbus::connection::Builder::unix_stream(sock)
            .server(zbus::Guid::generate())
            .p2p()
            .serve_at("/bench", BenchIface)
            .build()
            .await
            .unwrap();
        // Serve until the client goes away.
        let mut closed = zbus::MessageStream::from(&conn);
        use futures::StreamExt;
        while let Some(m) = closed.next().await {
            if m.is_err() {
                break;
            }
        }
    });
}

async fn proxy(sock: UnixStream) -> (zbus::Connection, BenchProxy<'static>) {
    let conn = zbus::connection::Builder::unix_stream(sock)
        .p2p()
        .build()
        .await
        .unwrap();
    let proxy = BenchProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    (conn, proxy)
}

pub fn p2p_fd(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let (_conn, p) = proxy(sock).await;
        let data = payload();
        latencies_async(iters, || async {
            let f = fd();
            let (_, back) = p
                .call(data.clone(), zbus::Fd::from(f.as_fd()))
                .await
                .unwrap();
            drop((f, back));
        })
        .await
    })
}

pub fn p2p_fd_64(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let (_conn, p) = proxy(sock).await;
        let data = payload();
        in_flight(iters, 64, || {
            let (p, data) = (p.clone(), data.clone());
            async move {
                let f = fd();
                let (_, back) = p.call(data, zbus::Fd::from(f.as_fd())).await.unwrap();
                drop((f, back));
            }
        })
        .await
    })
}
