//! A whole server connection driven by arbitrary sequences of frames: calls of every shape of
//! the conformance service (fds attached), stream and control frames, raw bytes, wrong fd
//! counts; then the peer closes. The server must not panic or hang (it must notice the peer
//! is gone even while it is not reading), and once the connection is over every fd it
//! received is closed.
#![no_main]

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/conformance/main.rs"]
#[allow(dead_code)]
mod conformance;

#[path = "../common/connection.rs"]
mod common;
use common::{Ops, fd_count, pool, send_with_fds};

const METHODS: [&str; 9] = [
    "echo",
    "memfds",
    "total_size",
    "whoami",
    "deposit",
    "withdraw",
    "sleep",
    "fdrpc.idl",
    "Conformance:echo",
];

fuzz_target!(|data: &[u8]| {
    let pool = pool();
    let rt = common::runtime();
    let before = fd_count();
    let (client, server_end) = UnixStream::pair().unwrap();
    client.set_nonblocking(true).unwrap();
    // What the peer sends, written before the server runs (a few KiB at most: it fits the
    // socket buffer), then the peer stops writing.
    let mut ops = Ops::new(data, &METHODS);
    while let Some((bytes, nfds)) = ops.next_frame() {
        let fds: Vec<OwnedFd> = (0..nfds).map(|_| pool.try_clone().unwrap()).collect();
        if !send_with_fds(&client, &bytes, &fds) {
            break;
        }
    }
    // The peer goes away: the server must notice (reading or not), end every call and close
    // every fd, within the time limit.
    drop(client);
    rt.block_on(async {
        server_end.set_nonblocking(true).unwrap();
        let stream = tokio::net::UnixStream::from_std(server_end).unwrap();
        let settings = fdrpc::Settings::default()
            .stall_timeout(Duration::from_millis(20))
            .max_in_flight(8);
        let server = fdrpc::Server::with_settings(settings);
        let serve = server.serve_connection(
            stream,
            conformance::ConformanceServer::new(conformance::ConformanceImpl::default()),
        );
        let served = tokio::time::timeout(Duration::from_secs(5), serve)
            .await
            .expect("the server hung");
        drop(served);
        common::settle(before).await;
    });
});
