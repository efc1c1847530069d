//! The conformance service: what other-language clients and the test suite call.
//!
//! ```text
//! cargo run --example conformance -- serve PATH   # serve on PATH until SIGINT/SIGTERM
//! cargo run --example conformance -- idl          # print the service's Thrift IDL
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

mod service;

pub use service::*;

/// The reference implementation of [`Conformance`].
#[derive(Debug, Default)]
pub struct ConformanceImpl {
    vault: Mutex<HashMap<String, OwnedFd>>,
}

fn memfd_holding(text: &str) -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("fdrpc-failure-log", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(text.as_bytes())?;
    Ok(file.into())
}

impl Conformance for ConformanceImpl {
    async fn echo(&self, bundle: Bundle) -> Bundle {
        bundle
    }

    async fn open(&self, path: String) -> Result<OwnedFd, Failure> {
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| Failure {
                message: e.to_string(),
                log: None,
            })
    }

    async fn fail(&self, reason: String) -> Result<(), Failure> {
        let log = memfd_holding(&reason).ok();
        Err(Failure {
            message: reason,
            log,
        })
    }

    async fn deposit(&self, key: String, fd: OwnedFd) {
        // A key deposited twice keeps the newer fd; the older one closes.
        self.vault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, fd);
    }

    async fn withdraw(&self, key: String) -> Option<OwnedFd> {
        self.vault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
    }

    async fn memfds(&self, count: i32) -> fdrpc::Stream<OwnedFd> {
        // Each memfd is made when the client has credit for it, so a slow reader never makes
        // this side hold more than its window of fds.
        let items = (0..count.max(0)).map_while(|i| match memfd_holding(&i.to_string()) {
            Ok(fd) => Some(fd),
            Err(e) => {
                eprintln!("conformance: memfd_create failed: {e}; ending the stream");
                None
            }
        });
        fdrpc::Stream::iter(items)
    }

    async fn total_size(&self, mut files: fdrpc::Stream<OwnedFd>) -> i64 {
        use futures::StreamExt;
        let mut total = 0;
        while let Some(Ok(fd)) = files.next().await {
            total += rustix::fs::fstat(&fd).map(|st| st.st_size).unwrap_or(0);
        }
        total
    }

    async fn whoami(&self, cx: &fdrpc::Context) -> Peer {
        let peer = cx.peer();
        Peer {
            pid: peer.pid(),
            uid: peer.uid() as i32,
            gid: peer.gid() as i32,
        }
    }
}

/// Serves [`ConformanceImpl`] on `path` until SIGINT or SIGTERM, then removes the socket.
pub async fn serve(path: &std::path::Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    // A test server: peers that stall give up their fds after 3 s rather than the default 10.
    let settings = fdrpc::Settings::default().stall_timeout(std::time::Duration::from_secs(3));
    let result = fdrpc::Server::with_settings(settings)
        .serve_with_shutdown(
            listener,
            ConformanceServer::new(ConformanceImpl::default()),
            stop,
        )
        .await;
    let _ = std::fs::remove_file(path);
    result
}

fn usage() -> ! {
    eprintln!("usage: conformance serve PATH | conformance idl");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, path] if cmd == "serve" => serve(std::path::Path::new(path)).await,
        [cmd] if cmd == "idl" => {
            print!("{}", ConformanceClient::idl());
            Ok(())
        }
        _ => usage(),
    }
}
