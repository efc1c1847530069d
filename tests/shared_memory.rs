//! `examples/shared_memory.rs` in one process: 1 MiB frames written in place, sealed, sent as
//! a stream, read in place, their checksums sent back through a sink. (CI also runs the
//! example itself, across two processes.)

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/shared_memory.rs"]
mod shared_memory;

use common::*;
use shared_memory::{FramesClient, FramesImpl, FramesServer, consume};

#[test]
fn frames_move_through_sealed_memfds_and_come_back_checked() {
    run_async(async {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .serve_connection(b, FramesServer::new(FramesImpl))
                .await;
        });
        let client = FramesClient::new(fdrpc::Client::new(a).unwrap());
        assert_eq!(consume(&client, 6).await.unwrap(), 6);
        drop(client);
        server.await.unwrap();
    });
}
