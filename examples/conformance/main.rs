//! The conformance service: what other-language clients and the test suite call.
//!
//! ```text
//! cargo run --example conformance -- serve PATH   # serve on PATH until SIGINT/SIGTERM
//! cargo run --example conformance -- serve        # serve the socket systemd passed
//! cargo run --example conformance -- idl          # print the service's Thrift IDL
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

mod service;

pub use service::*;

/// The reference implementation of [`Conformance`].
#[derive(Debug, Default)]
pub struct ConformanceImpl {
    vault: Mutex<HashMap<String, OwnedFd>>,
    /// `sleep` calls dropped before they finished.
    dropped: AtomicI64,
}

/// Counts a `sleep` in `dropped` if it is dropped before it finishes.
struct UnlessFinished<'a> {
    dropped: &'a AtomicI64,
    finished: bool,
}

impl Drop for UnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Waits `d` on any server, the blocking one included (no async runtime's timer): a thread
/// sleeps and wakes the handler, which is dropped (and counted) if its call is cancelled first.
async fn sleep(d: Duration) {
    let (done, wait) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = done.send(());
    });
    let _ = wait.await;
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

    async fn sleep(&self, cx: &fdrpc::Context, ms: i64) -> i64 {
        let left = cx
            .remaining()
            .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut guard = UnlessFinished {
            dropped: &self.dropped,
            finished: false,
        };
        sleep(Duration::from_millis(ms.max(0).unsigned_abs())).await;
        guard.finished = true;
        left
    }

    async fn dropped(&self) -> i64 {
        self.dropped.load(Ordering::SeqCst)
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
    let listener = fdrpc::Listener::bind(path)?;
    let result = serve_on(listener).await;
    let _ = std::fs::remove_file(path);
    result
}

/// Serves [`ConformanceImpl`] on the listening socket passed to this process (systemd socket
/// activation) until SIGINT or SIGTERM.
pub async fn serve_passed(mut fds: fdrpc::systemd::ListenFds) -> std::io::Result<()> {
    let listener = fds.take_listener(None)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no PATH given and no listening socket passed (LISTEN_FDS)",
        )
    })?;
    serve_on(listener).await
}

/// Serves until SIGINT or SIGTERM, telling a service manager (`NOTIFY_SOCKET`) when it is
/// ready and when it stops.
async fn serve_on(listener: fdrpc::Listener) -> std::io::Result<()> {
    use fdrpc::systemd::{State, notify};
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = notify(&[State::Stopping]);
    };
    notify(&[State::Ready])?;
    // A test server: peers that stall give up their fds after 3 s rather than the default 10.
    let settings = fdrpc::Settings::default().stall_timeout(std::time::Duration::from_secs(3));
    fdrpc::Server::with_settings(settings)
        .serve_with_shutdown(
            listener,
            ConformanceServer::new(ConformanceImpl::default()),
            stop,
        )
        .await
}

fn usage() -> ! {
    eprintln!("usage: conformance serve [PATH] | conformance idl");
    eprintln!("  serve PATH  serve on PATH (or an abstract @name) until SIGINT/SIGTERM");
    eprintln!("  serve       serve the socket passed by socket activation (LISTEN_FDS)");
    eprintln!("  idl         print the service's Thrift IDL");
    std::process::exit(2)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, path] if cmd == "serve" => runtime()?.block_on(serve(std::path::Path::new(path))),
        [cmd] if cmd == "serve" => {
            // SAFETY: before the runtime starts any thread, nothing else reads or writes the
            // environment.
            let fds = unsafe { fdrpc::systemd::ListenFds::take_and_unset_env()? };
            runtime()?.block_on(serve_passed(fds))
        }
        [cmd] if cmd == "idl" => {
            print!("{}", ConformanceClient::idl());
            Ok(())
        }
        _ => usage(),
    }
}
