//! Helpers shared by the integration tests: fd accounting, fd identity, scratch fds.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

pub mod fds_everywhere;
pub mod raw;

static FD_LOCK: Mutex<()> = Mutex::new(());

/// A path in a directory of its own under the temp dir (the directory itself, or a file in
/// it), removed with the directory when dropped; derefs to the path.
pub struct Scratch {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh directory named `fdrpc-{tag}-` and random characters, made by `mkdir`, so that no
/// other test or process has it. A name made of the process id is not enough: pids wrap (at
/// 32,768 on the CI machines), and a directory an earlier process of the same id left behind
/// made a later test's `bind` fail with `AddrInUse`.
pub fn scratch_dir(tag: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("fdrpc-{tag}-"))
        .tempdir()
        .expect("make a scratch directory");
    Scratch {
        path: dir.path().to_path_buf(),
        _dir: dir,
    }
}

/// A file `name` holding `contents`, in a fresh [`scratch_dir`] of its own.
pub fn scratch_file(tag: &str, name: &str, contents: &str) -> Scratch {
    let Scratch { path, _dir } = scratch_dir(tag);
    let path = path.join(name);
    std::fs::write(&path, contents).expect("write a scratch file");
    Scratch { path, _dir }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Serializes the tests of one binary that count fds, and checks on drop that the count is
/// back where it started: nothing leaked, nothing closed twice. A check made inside another on
/// the same thread (a test that takes one, then calls `run_async`, which takes its own) shares
/// the outer one's lock.
pub struct FdLeakCheck {
    before: usize,
    _lock: Option<MutexGuard<'static, ()>>,
}

thread_local! {
    /// This thread holds `FD_LOCK`.
    static HOLDS_FD_LOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub fn fd_leak_check() -> FdLeakCheck {
    let lock = (!HOLDS_FD_LOCK.get()).then(|| {
        let guard = FD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        HOLDS_FD_LOCK.set(true);
        guard
    });
    // tokio's signal driver (part of every runtime's IO stack when the `signal` feature is
    // built) opens a process-wide socketpair on first use and keeps it: open it before any
    // count is taken.
    static TOKIO_GLOBALS: std::sync::Once = std::sync::Once::new();
    TOKIO_GLOBALS.call_once(|| {
        drop(
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap(),
        );
    });
    // Wait for what an earlier test was still closing on other threads.
    let mut before = fd_count();
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = fd_count();
        if again == before {
            break;
        }
        before = again;
    }
    FdLeakCheck {
        before,
        _lock: lock,
    }
}

/// Clears `HOLDS_FD_LOCK` when the outermost check ends, however it ends.
struct ReleasesFdLock(bool);

impl Drop for ReleasesFdLock {
    fn drop(&mut self) {
        if self.0 {
            HOLDS_FD_LOCK.set(false);
        }
    }
}

impl Drop for FdLeakCheck {
    fn drop(&mut self) {
        let _release = ReleasesFdLock(self._lock.is_some());
        if std::thread::panicking() {
            return;
        }
        // Some closes finish on other threads (a runtime's last handle, a reaped child):
        // give the count a moment to settle. A real leak does not go away.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut after = fd_count();
        while after != self.before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            after = fd_count();
        }
        if after != self.before {
            for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
                eprintln!("{:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
            }
        }
        assert_eq!(
            self.before, after,
            "fd count changed: {} before, {} after",
            self.before, after
        );
    }
}

/// A memfd holding `contents`, offset at 0.
pub fn memfd(contents: &[u8]) -> File {
    let fd = rustix::fs::memfd_create("fdrpc-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut f = File::from(fd);
    f.write_all(contents).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f
}

/// The whole contents of `f`, read from offset 0 with `pread`.
pub fn contents(f: &impl AsFd) -> Vec<u8> {
    let f = File::from(f.as_fd().try_clone_to_owned().unwrap());
    let mut out = Vec::new();
    let mut r = std::io::BufReader::new(&f);
    r.seek(SeekFrom::Start(0)).unwrap();
    r.read_to_end(&mut out).unwrap();
    out
}

/// Whether the fd has `FD_CLOEXEC`.
pub fn is_cloexec(fd: &impl AsFd) -> bool {
    rustix::io::fcntl_getfd(fd)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC)
}

/// Whether `a` and `b` are the same open file description (shared offset: moving one moves
/// the other), not merely the same file.
pub fn same_description(a: &impl AsFd, b: &impl AsFd) -> bool {
    let sa = rustix::fs::fstat(a).unwrap();
    let sb = rustix::fs::fstat(b).unwrap();
    if (sa.st_dev, sa.st_ino) != (sb.st_dev, sb.st_ino) {
        return false;
    }
    if a.as_fd().as_raw_fd() == b.as_fd().as_raw_fd() {
        return true;
    }
    let old = rustix::fs::seek(a, rustix::fs::SeekFrom::Current(0)).unwrap();
    let probe = old + 12345;
    rustix::fs::seek(a, rustix::fs::SeekFrom::Start(probe)).unwrap();
    let seen = rustix::fs::seek(b, rustix::fs::SeekFrom::Current(0)).unwrap();
    rustix::fs::seek(a, rustix::fs::SeekFrom::Start(old)).unwrap();
    seen == probe
}

/// The `(st_dev, st_ino)` identity of the file behind `fd`.
pub fn ino(fd: &impl AsFd) -> (u64, u64) {
    let st = rustix::fs::fstat(fd).unwrap();
    (st.st_dev, st.st_ino)
}

/// `n` fresh memfds, the i-th holding the decimal text of `i`.
pub fn numbered(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|i| OwnedFd::from(memfd(i.to_string().as_bytes())))
        .collect()
}

/// Runs an async test on its own multi-threaded runtime, inside the fd-count check: the
/// runtime's own fds (epoll, eventfd) come and go within it.
pub fn run_async<F: std::future::Future<Output = ()>>(f: F) {
    let _check = fd_leak_check();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(f);
    drop(rt);
}

/// Serves `service` on one end of a socketpair (on the current runtime) and returns the other
/// end as a std stream for a blocking client, with the server's task: it finishes when the
/// connection does.
pub fn serve_for_blocking<S: fdrpc::Service>(
    service: S,
) -> (std::os::unix::net::UnixStream, tokio::task::JoinHandle<()>) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    (a, serve_connection(b, service))
}

/// Serves `service` on `stream` until the connection ends, with the tokio server on the
/// current runtime, or with `FDRPC_TEST_SERVER=blocking` the blocking server on a thread of
/// the runtime's blocking pool.
pub fn serve_connection<S: fdrpc::Service>(
    stream: std::os::unix::net::UnixStream,
    service: S,
) -> tokio::task::JoinHandle<()> {
    if std::env::var_os("FDRPC_TEST_SERVER").is_some_and(|v| v == "blocking") {
        return tokio::task::spawn_blocking(move || {
            let _ = fdrpc::BlockingServer::new().serve_connection(stream, service);
        });
    }
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    tokio::spawn(async move {
        let _ = fdrpc::Server::new().serve_connection(stream, service).await;
    })
}

/// Whether `program args…` runs and succeeds (a tool is installed).
pub fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether every interop tool in `found` (a name and whether it is here) is present. Without
/// them an interop test fails under `FDRPC_REQUIRE_INTEROP=1` (CI) and is skipped with a
/// message naming what is missing otherwise (`hint`: how to install it).
pub fn interop_tools(what: &str, found: &[(&str, bool)], hint: &str) -> bool {
    if found.iter().all(|(_, here)| *here) {
        return true;
    }
    let list: Vec<String> = found
        .iter()
        .map(|(name, here)| format!("{name}: {here}"))
        .collect();
    let msg = format!("{what} tools missing ({})", list.join(", "));
    if std::env::var_os("FDRPC_REQUIRE_INTEROP").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}; {hint}");
    false
}

/// Ends the test process if it is still alive `limit` after being made: a test that would
/// hang (a wait that a bug made endless) fails instead, with `what` on stderr. Dropping it
/// disarms it.
pub struct Watchdog {
    _disarm: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    pub fn new(limit: std::time::Duration, what: &'static str) -> Watchdog {
        let (disarm, armed) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                eprintln!("{what}: still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { _disarm: disarm }
    }
}

/// Waits up to `limit` for the peer of `sock` to hang up (`POLLRDHUP`: it shut down or closed
/// its end); whether it did. Data left unread in `sock` does not hide the hang-up.
pub fn hung_up_within(sock: &impl AsFd, limit: std::time::Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        sock,
        rustix::event::PollFlags::RDHUP,
    )];
    let limit = rustix::event::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: i64::from(limit.subsec_nanos()),
    };
    rustix::event::poll(&mut fds, Some(&limit)).unwrap();
    fds[0].revents().contains(rustix::event::PollFlags::RDHUP)
}

/// Waits up to five seconds for the process's fd count to satisfy `reached`, and returns it;
/// fails the test, naming `what` was awaited, if it does not.
pub fn await_fd_count(what: &str, reached: impl Fn(usize) -> bool) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = fd_count();
        if reached(now) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fd count stuck at {now}: {what} did not happen within 5 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits up to five seconds for the process's fd count to come back to `baseline`; fails the
/// test with both counts if it does not.
pub fn settle_fd_count(baseline: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = fd_count();
        if now == baseline {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fd count stuck at {now}, baseline {baseline}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A server listening on a fresh socket path, on its own two-worker runtime thread, so that
/// blocking clients and raw sockets can talk to it from the test thread. Stopped, joined and
/// its directory removed on drop.
pub struct ThreadServer {
    /// The socket the server listens on.
    pub path: std::path::PathBuf,
    /// Removed once the server has stopped (fields drop after [`Drop::drop`] joined it).
    _dir: Scratch,
    stop: Option<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How a [`ThreadServer`] is told to stop.
enum Stop {
    Tokio(tokio::sync::oneshot::Sender<()>),
    Blocking(fdrpc::Shutdown),
}

impl ThreadServer {
    /// Serves `service()` with the server `server()` builds; returns once it is listening.
    pub fn start<S: fdrpc::Service>(
        server: impl FnOnce() -> fdrpc::Server + Send + 'static,
        service: impl FnOnce() -> S + Send + 'static,
    ) -> ThreadServer {
        Self::start_on(false, server, service)
    }

    /// As [`ThreadServer::start`], on a current-thread runtime: a handler runs only once the
    /// connection's reader has handed over every frame of a read, which makes what a peer
    /// sends in one `sendmsg` arrive as one batch.
    pub fn start_current_thread<S: fdrpc::Service>(
        server: impl FnOnce() -> fdrpc::Server + Send + 'static,
        service: impl FnOnce() -> S + Send + 'static,
    ) -> ThreadServer {
        Self::start_on(true, server, service)
    }

    /// Serves `service()` with the [`fdrpc::BlockingServer`] `server()` builds, on a plain
    /// thread; returns once it is listening.
    pub fn start_blocking<S: fdrpc::Service>(
        server: impl FnOnce() -> fdrpc::BlockingServer + Send + 'static,
        service: impl FnOnce() -> S + Send + 'static,
    ) -> ThreadServer {
        let (dir, path) = Self::fresh_path();
        let shutdown = fdrpc::Shutdown::new();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            server()
                .serve_with_shutdown(listener, service(), &stop)
                .unwrap();
        });
        // Listening, and its accept loop's one fd (the eventfd that wakes it) is open: counts
        // taken from now on are stable. (Waited for as the loop's registration, not as a
        // rise in the fd count, which another test closing an fd at that moment can hide.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while shutdown.loops() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the blocking server's accept loop did not start within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        ThreadServer {
            path,
            _dir: dir,
            stop: Some(Stop::Blocking(shutdown)),
            thread: Some(thread),
        }
    }

    fn fresh_path() -> (Scratch, std::path::PathBuf) {
        let dir = scratch_dir("test");
        let path = dir.join("server.sock");
        (dir, path)
    }

    fn start_on<S: fdrpc::Service>(
        current_thread: bool,
        server: impl FnOnce() -> fdrpc::Server + Send + 'static,
        service: impl FnOnce() -> S + Send + 'static,
    ) -> ThreadServer {
        // `FDRPC_TEST_SERVER=blocking`: the same tests against the blocking server, with the
        // same settings, authorization and hooks (how CI runs whole suites against it).
        if std::env::var_os("FDRPC_TEST_SERVER").is_some_and(|v| v == "blocking") {
            return Self::start_blocking(move || fdrpc::BlockingServer::from(server()), service);
        }
        let (dir, path) = Self::fresh_path();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let thread = std::thread::spawn(move || {
            let rt = if current_thread {
                tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .unwrap()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_io()
                    .enable_time()
                    .build()
                    .unwrap()
            };
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&p).unwrap();
                ready_tx.send(()).unwrap();
                server()
                    .serve_with_shutdown(listener, service(), async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ready_rx.recv().unwrap();
        ThreadServer {
            path,
            _dir: dir,
            stop: Some(Stop::Tokio(stop_tx)),
            thread: Some(thread),
        }
    }
}

impl ThreadServer {
    /// Starts the server's graceful shutdown (as dropping it does) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        match self.stop.take() {
            Some(Stop::Tokio(stop)) => {
                let _ = stop.send(());
            }
            Some(Stop::Blocking(shutdown)) => shutdown.shutdown(),
            None => {}
        }
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        match self.stop.take() {
            Some(Stop::Tokio(stop)) => {
                let _ = stop.send(());
            }
            Some(Stop::Blocking(shutdown)) => shutdown.shutdown(),
            None => {}
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
