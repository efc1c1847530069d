//! The async client's reply path against a server that answers with arbitrary frames: replies
//! of every type and seqid, stream items and control frames for streams that do and do not
//! exist, fds attached, raw bytes. The client must not panic or hang, every call ends with a
//! value or a typed error, and once the client is gone every fd it received is closed.
#![no_main]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;

#[path = "../../examples/conformance/main.rs"]
#[allow(dead_code)]
mod conformance;

#[path = "../common/connection.rs"]
mod common;
use common::{Ops, fd_count, pool, send_with_fds};

const METHODS: [&str; 5] = ["echo", "memfds", "whoami", "withdraw", "total_size"];

fuzz_target!(|data: &[u8]| {
    let pool = pool();
    let rt = common::runtime();
    let before = fd_count();
    let (client_end, server) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    rt.block_on(async {
        client_end.set_nonblocking(true).unwrap();
        let client = conformance::ConformanceClient::new(
            fdrpc::Client::new(tokio::net::UnixStream::from_std(client_end).unwrap()).unwrap(),
        );
        // Calls of each shape, seqids 1 to 4, in flight when the "server" answers.
        let calls = async {
            let echo = client.echo(conformance::Bundle {
                label: "x".into(),
                fds: vec![pool.try_clone().unwrap()],
                spare: None,
            });
            let stream = async {
                if let Ok(mut s) = client.memfds(3).await {
                    while let Some(item) = s.next().await {
                        drop(item);
                    }
                }
            };
            let whoami = client.whoami();
            let withdraw = client.withdraw("k".into());
            let (a, (), c, d) = tokio::join!(echo, stream, whoami, withdraw);
            drop((a, c, d));
        };
        let answer = async {
            // Let the calls go out first.
            tokio::task::yield_now().await;
            let mut ops = Ops::new(data, &METHODS);
            while let Some((bytes, nfds)) = ops.next_frame() {
                let fds: Vec<OwnedFd> = (0..nfds).map(|_| pool.try_clone().unwrap()).collect();
                if !send_with_fds(&server, &bytes, &fds) {
                    break;
                }
            }
            // The server goes away: every call still waiting fails.
            let _ = server.shutdown(std::net::Shutdown::Both);
            common::drain(server.as_fd()).await;
        };
        tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(calls, answer) })
            .await
            .expect("the client hung");
        drop(client);
        drop(server);
        common::settle(before).await;
    });
});
