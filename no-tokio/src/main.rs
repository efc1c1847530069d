//! fdrpc built without its `tokio` feature: the generated service code, the blocking client
//! and the blocking server need no async runtime. `.ci/run` builds this, checks that tokio is
//! not in its dependency tree, and runs it both ways.
//!
//! ```text
//! cargo run -p fdrpc-no-tokio -- SOCKET     # call a running `conformance serve`
//! cargo run -p fdrpc-no-tokio -- --serve    # serve the conformance service with the
//!                                           # blocking server, and call it
//! ```

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

#[path = "../../examples/conformance/service.rs"]
mod service;

use service::{Bundle, Conformance, ConformanceBlockingClient, ConformanceServer, Failure, Peer};

/// The conformance service, served with no async runtime: what a privilege-separated helper
/// built this way would look like.
#[derive(Default)]
struct NoTokio {
    vault: std::sync::Mutex<std::collections::HashMap<String, OwnedFd>>,
}

impl Conformance for NoTokio {
    async fn echo(&self, bundle: Bundle) -> Bundle {
        bundle
    }
    async fn open(&self, path: String) -> Result<OwnedFd, Failure> {
        std::fs::File::open(&path)
            .map(Into::into)
            .map_err(|e| Failure {
                message: e.to_string(),
                log: None,
            })
    }
    async fn fail(&self, reason: String) -> Result<(), Failure> {
        Err(Failure {
            log: memfd(&reason).ok().map(Into::into),
            message: reason,
        })
    }
    async fn deposit(&self, key: String, fd: OwnedFd) {
        self.vault.lock().expect("vault").insert(key, fd);
    }
    async fn withdraw(&self, key: String) -> Option<OwnedFd> {
        self.vault.lock().expect("vault").remove(&key)
    }
    async fn whoami(&self, cx: &fdrpc::Context) -> Peer {
        Peer {
            pid: cx.peer().pid(),
            uid: cx.peer().uid() as i32,
            gid: cx.peer().gid() as i32,
        }
    }
    async fn memfds(&self, count: i32) -> fdrpc::Stream<OwnedFd> {
        fdrpc::Stream::iter(
            (0..count.max(0)).filter_map(|i| memfd(&i.to_string()).ok().map(Into::into)),
        )
    }
    async fn total_size(&self, mut files: fdrpc::Stream<OwnedFd>) -> i64 {
        use futures_util::StreamExt;
        let mut total = 0;
        while let Some(Ok(fd)) = files.next().await {
            total += rustix::fs::fstat(&fd).map(|st| st.st_size).unwrap_or(0);
        }
        total
    }
    async fn sleep(&self, _cx: &fdrpc::Context, _ms: i64) -> i64 {
        -1
    }
    async fn dropped(&self) -> i64 {
        0
    }
}

/// Serves [`NoTokio`] on a fresh socket with the blocking server, calls it, then shuts the
/// server down gracefully.
fn serve_and_call() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("server.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    let shutdown = fdrpc::Shutdown::new();
    let server = std::thread::spawn({
        let shutdown = shutdown.clone();
        move || {
            fdrpc::BlockingServer::new().serve_with_shutdown(
                listener,
                ConformanceServer::new(NoTokio::default()),
                &shutdown,
            )
        }
    });
    let called = run(path.to_str().ok_or("a path that is not UTF-8")?).and_then(|()| {
        // Served in this process: the server sees this process's credentials.
        let client = ConformanceBlockingClient::connect(&path)?;
        let me = client.whoami()?;
        if i64::from(me.pid) != i64::from(std::process::id()) {
            return Err(format!("whoami saw pid {}", me.pid).into());
        }
        Ok(())
    });
    shutdown.shutdown();
    let served = server.join().map_err(|_| "the server panicked")?;
    drop(dir);
    called?;
    served?;
    println!("fdrpc without tokio: the blocking server served them");
    Ok(())
}

fn memfd(text: &str) -> std::io::Result<std::fs::File> {
    let mut f = std::fs::File::from(rustix::fs::memfd_create(
        "fdrpc-no-tokio",
        rustix::fs::MemfdFlags::CLOEXEC,
    )?);
    f.write_all(text.as_bytes())?;
    Ok(f)
}

fn read(fd: OwnedFd) -> std::io::Result<String> {
    let mut f = std::fs::File::from(fd);
    f.rewind()?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

fn run(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = ConformanceBlockingClient::connect(path)?.with_timeout(Duration::from_secs(10));
    let back = client.echo(Bundle {
        label: "no tokio".into(),
        fds: vec![memfd("an fd")?.into()],
        spare: None,
    })?;
    let [fd] = <[OwnedFd; 1]>::try_from(back.fds).map_err(|_| "expected one fd back")?;
    if back.label != "no tokio" || read(fd)? != "an fd" {
        return Err("echo came back different".into());
    }
    let items: Vec<String> = client
        .memfds(3)?
        .map(|fd| read(fd?).map_err(Into::into))
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    if items != ["0", "1", "2"] {
        return Err(format!("memfds(3) gave {items:?}").into());
    }
    let total = client.total_size(
        ["ab", "cde"]
            .into_iter()
            .map(|t| OwnedFd::from(memfd(t).expect("memfd"))),
    )?;
    if total != 5 {
        return Err(format!("total_size gave {total}").into());
    }

    println!("fdrpc without tokio: echo, a stream and a sink with fds all worked");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arg] = args.as_slice() else {
        eprintln!("usage: fdrpc-no-tokio SOCKET | --serve");
        return ExitCode::from(2);
    };
    let done = if arg == "--serve" {
        serve_and_call()
    } else {
        run(arg)
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdrpc-no-tokio: {e}");
            ExitCode::FAILURE
        }
    }
}
