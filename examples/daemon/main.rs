//! A daemon the way systemd runs it: socket activation, readiness, and the fd store keeping
//! its state across restarts (the systemd-native version of `examples/handoff.rs`).
//!
//! - systemd listens on the socket (`fdrpc-counter.socket`) and passes it at start, named
//!   `counter`; the daemon serves it without binding anything.
//! - The count lives in a memfd, which the daemon puts in systemd's fd store under `state`;
//!   after `systemctl restart fdrpc-counter`, systemd passes it back and the count goes on.
//! - It says `READY=1` (with a `STATUS=`) once it serves, and `STOPPING=1` on SIGTERM.
//!
//! Try it without installing anything:
//!
//! ```text
//! cargo build --example daemon
//! systemd-socket-activate -l /tmp/counter.sock --fdname=counter target/debug/examples/daemon
//! ```
//!
//! To install it, copy `fdrpc-counter.socket` and `fdrpc-counter.service` (beside this file)
//! to `/etc/systemd/system`, the binary to `/usr/local/bin/fdrpc-counter`, and
//! `systemctl enable --now fdrpc-counter.socket`.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use fdrpc::systemd::{self, ListenFds, State};

#[fdrpc::service]
pub trait Counter {
    /// Adds one to the count and returns it. The count survives restarts.
    async fn bump(&self) -> u64;
    /// A copy of the memfd that holds the count: the fd the service manager keeps.
    async fn state(&self) -> OwnedFd;
}

/// The count, 8 bytes at the start of a memfd.
pub struct CounterImpl {
    state: Mutex<File>,
}

impl CounterImpl {
    fn read(state: &File) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        match state.read_exact_at(&mut bytes, 0) {
            Ok(()) => Ok(u64::from_le_bytes(bytes)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl Counter for CounterImpl {
    async fn bump(&self) -> u64 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let count = Self::read(&state).unwrap_or(0) + 1;
        if let Err(e) = state.write_all_at(&count.to_le_bytes(), 0) {
            eprintln!("daemon: could not keep the count: {e}");
        }
        count
    }

    async fn state(&self) -> OwnedFd {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.try_clone().expect("dup the state memfd").into()
    }
}

/// Serves the socket passed in `fds` until SIGTERM or SIGINT, with the state passed back
/// from the fd store (or a new one, which it stores).
pub async fn run(mut fds: ListenFds) -> Result<(), Box<dyn std::error::Error>> {
    let listener = match fds.take_listener(Some("counter"))? {
        Some(l) => l,
        None => fds.take_listener(None)?.ok_or(
            "no socket was passed: start me from fdrpc-counter.socket, or under systemd-socket-activate",
        )?,
    };
    let state = match fds.take_named("state") {
        Some(fd) => File::from(fd),
        None => {
            let fd =
                rustix::fs::memfd_create("fdrpc-counter-state", rustix::fs::MemfdFlags::CLOEXEC)?;
            // Kept by systemd from now on: a restart hands it back.
            systemd::store_fd("state", &fd)?;
            File::from(fd)
        }
    };
    let count = CounterImpl::read(&state)?;
    systemd::notify(&[
        State::Ready,
        State::Status(&format!("serving; count {count}")),
    ])?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = systemd::notify(&[State::Stopping]);
    };
    let service = CounterServer::new(CounterImpl {
        state: Mutex::new(state),
    });
    fdrpc::Server::new()
        .serve_with_shutdown(listener, service, stop)
        .await?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: first thing in main, before the runtime starts any thread: nothing else reads
    // or writes the environment meanwhile.
    let fds = unsafe { ListenFds::take_and_unset_env()? };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(fds))
}
