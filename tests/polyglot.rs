//! Other languages: the exported IDL is accepted by the stock Thrift compiler, a stock
//! Python client calls the Rust server with fds, and the Rust client calls a stock Python
//! server with fds. Needs `thrift` (Debian: thrift-compiler) and Python's `thrift` package;
//! `.ci/run` installs both and sets `FDRPC_REQUIRE_INTEROP=1` so that missing tools fail.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/handoff.rs"]
mod handoff;

use std::collections::{BTreeMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use conformance::{
    Bundle, ConformanceBlockingClient, ConformanceClient, ConformanceImpl, ConformanceServer,
};

/// The Python that runs the peers: `FDRPC_PYTHON` (CI: a fresh virtual environment with the
/// package of `python/` installed), or `python3`.
fn python() -> String {
    std::env::var("FDRPC_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether the Thrift compiler, and a Python with the `fdrpc` package (`python/`) and the
/// `thrift` package installed, are here.
fn tools_present() -> bool {
    interop_tools(
        "interop",
        &[
            ("thrift compiler", runs("thrift", &["--version"])),
            (
                "python fdrpc and thrift",
                runs(
                    &python(),
                    &["-E", "-c", "import fdrpc, thrift.protocol.THeaderProtocol"],
                ),
            ),
        ],
        "install thrift-compiler and `pip install ./python` (set FDRPC_PYTHON to a venv's python)",
    )
}

/// Writes `idl` as `name.thrift` in `dir` and generates Python from it into `dir/gen`.
fn compile(dir: &Path, name: &str, idl: &str) -> PathBuf {
    let file = dir.join(format!("{name}.thrift"));
    std::fs::write(&file, idl).unwrap();
    let gen_dir = dir.join("gen");
    std::fs::create_dir_all(&gen_dir).unwrap();
    let out = Command::new("thrift")
        .args(["--gen", "py", "-out"])
        .arg(&gen_dir)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the thrift compiler rejected the IDL of {name}:\n{}\n--- IDL ---\n{idl}",
        String::from_utf8_lossy(&out.stderr)
    );
    gen_dir
}

/// Runs the Python peer `tests/interop/{script}` against the socket `path` with the stubs in
/// `gen_dir` (a std child on a blocking thread: tokio's child reaper would open a
/// process-wide signal socketpair that outlives the test's fd count; `timeout`: a peer that
/// hangs fails the test instead of the CI run). Fails unless it succeeds; returns its output.
async fn run_python_client(script: &str, path: &Path, gen_dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let args = (script, path.to_owned(), gen_dir.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["120", &python(), "-E"])
            .arg(&args.0)
            .arg(&args.1)
            .arg(&args.2)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

mod every_type {
    use super::*;

    #[derive(fdrpc::Message, Debug, Clone, Copy, PartialEq)]
    pub enum Level {
        Low,
        High = 10,
    }

    #[derive(fdrpc::Message)]
    pub struct Inner {
        pub fd: OwnedFd,
    }

    #[derive(fdrpc::Message)]
    pub enum Choice {
        Nothing,
        Number(i64),
        File(fdrpc::RegularFile),
        Nested(Inner),
    }

    #[derive(fdrpc::Message)]
    #[fdrpc(rename = "Kitchen")]
    pub struct Everything {
        pub flag: bool,
        pub tiny: i8,
        pub small: i16,
        pub medium: i32,
        pub large: i64,
        pub unsigned: u32,
        pub ratio: f64,
        pub text: String,
        #[fdrpc(binary)]
        pub blob: Vec<u8>,
        pub unit: (),
        pub level: Level,
        pub list: Vec<Vec<i32>>,
        pub set: HashSet<String>,
        pub map: BTreeMap<String, OwnedFd>,
        pub boxed: Box<Inner>,
        #[fdrpc(id = 40, rename = "maybe_file")]
        pub maybe: Option<std::fs::File>,
        pub choice: Choice,
        pub dir: fdrpc::Directory,
        pub fifo: fdrpc::Fifo,
        pub sock: fdrpc::StreamSocket,
        pub sealed: fdrpc::SealedMemfd,
        pub unix: std::os::unix::net::UnixStream,
        pub reader: std::io::PipeReader,
    }

    #[derive(fdrpc::Message, Debug)]
    pub enum Refusal {
        Denied(String),
        Gone,
    }

    /// A service using every kind of type and method.
    #[fdrpc::service(rename = "EveryKind")]
    pub trait Kinds {
        async fn everything(&self, e: Everything, #[fdrpc(binary)] raw: Vec<u8>) -> Everything;
        async fn refuse(&self) -> Result<Option<Level>, Refusal>;
        #[oneway]
        async fn drop_it(&self, choice: Choice);
        async fn items(&self, n: i32) -> fdrpc::Stream<Inner, Refusal>;
        async fn gather(&self, items: fdrpc::Stream<Choice>) -> Result<i64, Refusal>;
        async fn both(&self, items: fdrpc::Stream<i32>) -> Result<fdrpc::Stream<i32>, Refusal>;
        async fn headed(&self) -> (Inner, fdrpc::Stream<Inner>);
    }
}

#[test]
fn every_service_idl_is_accepted_by_the_thrift_compiler() {
    // Every test here holds the fd-count lock: the compiler runs open pipes.
    let _check = fd_leak_check();
    if !tools_present() {
        return;
    }
    let dir = scratch_dir("polyglot-idl");
    compile(&dir, "conformance", &ConformanceClient::idl());
    compile(&dir, "quickstart", &quickstart::BrokerClient::idl());
    let handoff = handoff::SupervisorClient::idl();
    compile(&dir, "handoff", &handoff);
    assert!(
        handoff.contains("typedef i32 tcp_listener_fd (fdrpc.fd = \"inet_stream_socket\")"),
        "{handoff}"
    );
    let kinds = every_type::KindsClient::idl();
    compile(&dir, "kinds", &kinds);
    // The IDL says what the wire does.
    for needle in [
        "typedef i32 fd (fdrpc.fd = \"any\")",
        "typedef i32 regular_file_fd (fdrpc.fd = \"regular_file\")",
        "fdrpc.fd = \"sealed_memfd\", fdrpc.seals = \"F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE\"",
        "enum Level {\n  Low = 0,\n  High = 10,\n}",
        "union Choice {",
        "exception Refusal {",
        "40: optional fd maybe_file,",
        "14: required map<string, fd> map_,",
        "12: required list<list<i32>> list_,",
        "2: required i8 tiny,",
        "3: required i16 small,",
        "6: required i64 unsigned_,",
        "Kitchen everything(1: Kitchen e, 2: binary raw)",
        "Level refuse() throws (1: Refusal error)",
        "oneway void drop_it(1: Choice choice)",
        "void items(1: i32 n) (fdrpc.stream = \"Inner\", fdrpc.stream_error = \"Refusal\")",
        "i64 gather() throws (1: Refusal error) (fdrpc.sink = \"Choice\")",
        "string _fdrpc_idl()",
        "Inner headed() (fdrpc.stream = \"Inner\")",
    ] {
        assert!(kinds.contains(needle), "missing {needle:?} in\n{kinds}");
    }
    // Doc comments travel as IDL comments: the service's, and each method's.
    assert!(
        kinds.contains("A service using every kind of type and method."),
        "{kinds}"
    );
    let conformance = ConformanceClient::idl();
    for doc in [
        "The bundle as received: same label, the same open file descriptions.",
        "`count` memfds; the i-th (from 0) holds the decimal text of i.",
    ] {
        assert!(
            conformance.contains(doc),
            "missing {doc:?} in\n{conformance}"
        );
    }
    // Compiled for another language too.
    let out = Command::new("thrift")
        .args(["--gen", "cpp", "-out"])
        .arg(&*dir)
        .arg(dir.join("kinds.thrift"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stock_python_client_calls_the_rust_server_with_fds() {
    run_async(async {
        if !tools_present() {
            return;
        }
        let dir = scratch_dir("polyglot-pyclient");
        let gen_dir = compile(&dir, "conformance", &ConformanceClient::idl());
        let path = dir.join("conformance.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(fdrpc::Server::new().serve_with_shutdown(
            listener,
            ConformanceServer::new(ConformanceImpl::default()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        for name in ["client.py", "streams_client.py"] {
            assert!(
                run_python_client(name, &path, &gen_dir)
                    .await
                    .contains("passed")
            );
        }
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}

/// A service that lends buffers of its shared-memory pool, for a Python peer to read.
mod lender {
    use std::sync::Mutex;
    use std::time::Duration;

    #[fdrpc::service]
    pub trait Lender {
        /// The server's pool (once per connection).
        async fn pool(&self) -> fdrpc::SharedPool;
        /// A buffer of `len` bytes of the pool, byte `i` being `(i + seed) % 251`.
        async fn lend(&self, len: i64, seed: i32) -> fdrpc::PoolBuffer;
        /// Buffers lent and not given back.
        async fn lent(&self) -> i64;
    }

    #[derive(Default)]
    pub struct LenderImpl(Mutex<Option<fdrpc::Pool>>);

    impl Lender for LenderImpl {
        async fn pool(&self) -> fdrpc::SharedPool {
            let pool = fdrpc::Pool::new("lender", 128 * 1024, 2).unwrap();
            let shared = pool.share().unwrap();
            *self.0.lock().unwrap() = Some(pool);
            shared
        }
        async fn lend(&self, len: i64, seed: i32) -> fdrpc::PoolBuffer {
            let pool = self.0.lock().unwrap().clone().unwrap();
            let mut buf = pool.buffer_within(Duration::from_secs(10)).unwrap();
            for (i, b) in buf[..len as usize].iter_mut().enumerate() {
                *b = ((i + seed as usize) % 251) as u8;
            }
            buf.lend(len as usize).unwrap()
        }
        async fn lent(&self) -> i64 {
            let pool = self.0.lock().unwrap().clone().unwrap();
            pool.stats().lent as i64
        }
    }
}

/// The stock-Thrift Python peer maps a Rust server's pool, reads lent buffers through `mmap`
/// and gives them back by writing to the release pipe (docs/PROTOCOL.md).
#[test]
fn a_stock_python_client_reads_and_releases_pool_buffers() {
    run_async(async {
        if !tools_present() {
            return;
        }
        let dir = scratch_dir("polyglot-pool");
        let gen_dir = compile(&dir, "lender", &lender::LenderClient::idl());
        let path = dir.join("lender.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(fdrpc::Server::new().serve_with_shutdown(
            listener,
            lender::LenderServer::new(lender::LenderImpl::default()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let out = run_python_client("pool_client.py", &path, &gen_dir).await;
        assert!(out.contains("passed"));
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}

/// A second service, served beside the conformance service on one socket.
mod tally {
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[fdrpc::service]
    pub trait Tally {
        /// Adds `n` to the running total and returns it.
        async fn add(&self, n: i64) -> i64;
        /// The size of the file behind `fd`.
        async fn size(&self, fd: OwnedFd) -> i64;
    }

    #[derive(Default)]
    pub struct TallyImpl(AtomicI64);

    impl Tally for TallyImpl {
        async fn add(&self, n: i64) -> i64 {
            self.0.fetch_add(n, Ordering::SeqCst) + n
        }
        async fn size(&self, fd: OwnedFd) -> i64 {
            rustix::fs::fstat(&fd).map(|st| st.st_size).unwrap_or(-1)
        }
    }
}

#[test]
fn a_stock_python_multiplexed_client_calls_two_services_on_one_socket() {
    run_async(async {
        if !tools_present() {
            return;
        }
        let dir = scratch_dir("polyglot-multiplexed");
        let path = dir.join("services.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(fdrpc::Server::new().serve_with_shutdown(
            listener,
            (
                ConformanceServer::new(ConformanceImpl::default()),
                tally::TallyServer::new(tally::TallyImpl::default()),
            ),
            async move {
                let _ = stop_rx.await;
            },
        ));
        // The Python code is generated from the server's live IDL: both services, one file.
        let client = ConformanceClient::connect(&path).await.unwrap();
        let idl = client.client().introspect().await.unwrap();
        drop(client);
        let gen_dir = compile(&dir, "services", &idl);
        let out = run_python_client("multiplexed_client.py", &path, &gen_dir).await;
        assert!(out.contains("all calls passed"));
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}

#[test]
fn the_rust_client_calls_a_stock_python_server_with_fds() {
    let _check = fd_leak_check();
    if !tools_present() {
        return;
    }
    let dir = scratch_dir("polyglot-pyserver");
    let gen_dir = compile(&dir, "conformance", &ConformanceClient::idl());
    let path = dir.join("python.sock");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/server.py");
    let mut child = Command::new("timeout")
        .args(["120", &python(), "-E"])
        .arg(&script)
        .arg(&path)
        .arg(&gen_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let client = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => {
                break ConformanceBlockingClient::from_std(s).with_timeout(Duration::from_secs(20));
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("python server did not start: {e}"),
        }
    };
    // echo: the same open file descriptions come back from Python.
    let fds = numbered(3);
    let ids: Vec<_> = fds.iter().map(ino).collect();
    let spare = memfd(b"spare");
    let spare_id = ino(&spare);
    let back = client
        .echo(Bundle {
            label: "from rust".into(),
            fds,
            spare: Some(spare.into()),
        })
        .unwrap();
    assert_eq!(back.label, "from rust");
    assert_eq!(back.fds.iter().map(ino).collect::<Vec<_>>(), ids);
    for (i, fd) in back.fds.iter().enumerate() {
        assert_eq!(contents(fd), i.to_string().as_bytes());
        assert!(is_cloexec(fd));
    }
    assert_eq!(ino(back.spare.as_ref().unwrap()), spare_id);
    drop(back);
    // open and fail.
    let fd = client.open("/proc/self/exe".into()).unwrap();
    assert!(is_cloexec(&fd));
    drop(fd);
    let f = client
        .fail("python said no".into())
        .unwrap_err()
        .into_service()
        .unwrap();
    assert_eq!(f.message, "python said no");
    assert_eq!(contents(f.log.as_ref().unwrap()), b"python said no");
    drop(f);
    // deposit and withdraw.
    let kept = memfd(b"kept in python");
    let kept_id = ino(&kept);
    client.deposit("k".into(), kept.into()).unwrap();
    let back = client.withdraw("k".into()).unwrap().unwrap();
    assert_eq!(ino(&back), kept_id);
    assert_eq!(contents(&back), b"kept in python");
    drop(back);
    assert!(client.withdraw("k".into()).unwrap().is_none());
    // A server stream produced in Python as this client grants credit (150 items: more than
    // one window), each item an fd.
    let items: Vec<OwnedFd> = client
        .memfds(150)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(items.len(), 150);
    for (i, fd) in items.iter().enumerate() {
        assert_eq!(contents(fd), i.to_string().as_bytes());
        assert!(is_cloexec(fd));
    }
    drop(items);
    // One given up after an item: the Python producer is closed by the cancel, its late
    // items are dropped here, and the next call gets its own reply.
    let mut given_up = client.memfds(100).unwrap();
    assert_eq!(contents(&given_up.next().unwrap().unwrap()), b"0");
    drop(given_up);
    assert_eq!(client.whoami().unwrap().pid, std::process::id() as i32);
    // A sink consumed in Python, granting credit 16 items at a time.
    let files = (0..100).map(|i| OwnedFd::from(memfd(&vec![1; i % 7 + 1])));
    let expected: i64 = (0..100).map(|i| (i % 7 + 1) as i64).sum();
    assert_eq!(client.total_size(files).unwrap(), expected);
    assert_eq!(client.whoami().unwrap().pid, std::process::id() as i32);
    drop(client);
    let status = child.wait().unwrap();
    assert!(status.success(), "python server failed: {status}");
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("connection closed, 1 streams cancelled"),
        "the python server said: {said}"
    );
}

#[test]
fn a_live_server_answers_introspection_with_its_idl() {
    run_async(async {
        let dir = scratch_dir("polyglot-introspect");
        let path = dir.join("live.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(fdrpc::Server::new().serve_with_shutdown(
            listener,
            ConformanceServer::new(ConformanceImpl::default()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        // (`fdrpc introspect` prints the same: cli/tests/cli.rs.)
        let client = ConformanceClient::connect(&path).await.unwrap();
        assert_eq!(
            client.client().introspect().await.unwrap(),
            ConformanceClient::idl()
        );
        drop(client);
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}

/// Streams and sinks that end with their declared error (an error carrying an fd), between
/// Rust and the Python package, both ways.
mod countdown {
    use std::os::fd::OwnedFd;

    use futures::StreamExt;

    #[derive(fdrpc::Message, Debug)]
    pub struct Refusal {
        pub why: String,
        pub log: Option<OwnedFd>,
    }

    #[fdrpc::service]
    pub trait Countdown {
        /// `from`, `from - 1`, ..., 1, then the error `Refusal { why: "liftoff", log }`, its
        /// log a memfd holding "from {from}".
        async fn countdown(&self, from: i32) -> fdrpc::Stream<i32, Refusal>;
        /// "{sum of the items} then {why}: {the log's text}" for a sink that ends with its
        /// error, "{sum} then end" for one that ends.
        async fn tally(&self, items: fdrpc::Stream<i32, Refusal>) -> String;
    }

    pub struct CountdownImpl;

    impl Countdown for CountdownImpl {
        async fn countdown(&self, from: i32) -> fdrpc::Stream<i32, Refusal> {
            let log = super::memfd(format!("from {from}").as_bytes());
            let items = (1..=from).rev().map(Ok).chain(std::iter::once(Err(Refusal {
                why: "liftoff".into(),
                log: Some(log.into()),
            })));
            fdrpc::Stream::new(futures::stream::iter(items))
        }
        async fn tally(&self, mut items: fdrpc::Stream<i32, Refusal>) -> String {
            let mut sum = 0;
            while let Some(item) = items.next().await {
                match item {
                    Ok(n) => sum += n,
                    Err(refusal) => {
                        let log = refusal
                            .log
                            .as_ref()
                            .map(super::contents)
                            .unwrap_or_default();
                        return format!(
                            "{sum} then {}: {}",
                            refusal.why,
                            String::from_utf8_lossy(&log)
                        );
                    }
                }
            }
            format!("{sum} then end")
        }
    }
}

/// The Python package's client reads a Rust stream's declared error (with its fd) and ends a
/// sink with one; the Rust client reads a Python producer's declared error and ends a sink
/// served in Python with one.
#[test]
fn declared_stream_errors_cross_between_rust_and_python_both_ways() {
    let _check = fd_leak_check();
    if !tools_present() {
        return;
    }
    let dir = scratch_dir("polyglot-countdown");
    let gen_dir = compile(&dir, "countdown", &countdown::CountdownClient::idl());
    let path = dir.join("rust.sock");
    run_async(async {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(fdrpc::Server::new().serve_with_shutdown(
            listener,
            countdown::CountdownServer::new(countdown::CountdownImpl),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let out = run_python_client("stream_errors.py", &path, &gen_dir).await;
        assert!(out.contains("client passed"), "{out}");
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
    // The other way: the same script serves, the Rust client calls.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/stream_errors.py");
    let served = dir.join("python.sock");
    let mut child = Command::new("timeout")
        .args(["120", &python(), "-E"])
        .arg(&script)
        .arg(&served)
        .arg(&gen_dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    let client = countdown::CountdownBlockingClient::connect(&served)
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    let mut items = client.countdown(3).unwrap();
    let got: Vec<i32> = items.by_ref().take(3).map(|i| i.unwrap()).collect();
    assert_eq!(got, [3, 2, 1]);
    let refusal = items.next().unwrap().unwrap_err().into_service().unwrap();
    assert_eq!(refusal.why, "python liftoff");
    let log = refusal.log.unwrap();
    assert!(is_cloexec(&log));
    assert_eq!(contents(&log), b"python from 3");
    assert!(items.next().is_none());
    drop((items, log));
    let log = memfd(b"rust's reason");
    let sent = [
        Ok(5),
        Ok(6),
        Err(countdown::Refusal {
            why: "rust stops".into(),
            log: Some(log.into()),
        }),
    ];
    assert_eq!(
        client.tally(sent).unwrap(),
        "11 then rust stops: rust's reason"
    );
    assert_eq!(client.tally([Ok(1), Ok(2)]).unwrap(), "3 then end");
    drop(client);
    let status = child.wait().unwrap();
    assert!(status.success(), "python server failed: {status}");
}
