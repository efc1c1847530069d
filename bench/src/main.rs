//! fdrpc against the alternatives, client and server in separate processes.
//!
//! ```text
//! cargo run --release -p fdrpc-bench -- --pin same [--json] [--reps 5] [--iters 20000] [--only a,b]
//! cargo run --release -p fdrpc-bench -- --help   # every option
//! ```
//!
//! The binary re-executes itself as the server (`--serve KIND FD CPU`) with one end of a
//! socketpair inherited. Every case runs `--reps` times, interleaved with the others; the
//! table shows medians and min..max. See BENCHMARKS.md.

mod counts;
mod drive;
mod fdrpc_cases;
mod large_cases;
mod raw_cases;
mod soak;
mod stats;
mod tarpc_cases;
mod workload;
mod zbus_cases;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stats::{Sample, Spread, Summary, summarize};

#[global_allocator]
static ALLOC: counts::CountingAlloc = counts::CountingAlloc;

/// Where the client and the server of a case run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Pin {
    /// Both on one CPU (the figures BENCHMARKS.md compares).
    Same,
    /// On two CPUs.
    Split,
    /// Wherever the scheduler puts them.
    None,
}

/// fdrpc against raw SCM_RIGHTS loops, zbus and tarpc, client and server in separate
/// processes. Every case runs `--reps` times, interleaved with the others; the table shows
/// medians and min..max.
#[derive(Debug, clap::Parser)]
#[command(
    name = "fdrpc-bench",
    after_help = "Cases, columns and how to read them: BENCHMARKS.md."
)]
struct Options {
    /// Where client and server run.
    #[arg(long, value_enum, default_value = "same")]
    pin: Pin,
    /// Prints the results as JSON lines too.
    #[arg(long)]
    json: bool,
    /// Runs of each case.
    #[arg(long, default_value_t = 5, value_name = "N")]
    reps: usize,
    /// Calls per run of a small-call case (other cases scale from it).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    iters: usize,
    /// Runs only these cases (names as in the table, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CASE,...")]
    only: Option<Vec<String>>,
    /// Instead of the cases: a soak test of SECONDS (calls, streams, sinks and reconnects
    /// against one server, its memory and fds checked flat).
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["only", "json"])]
    soak: Option<u64>,
    /// Instead of the cases: the client half of a memory case (`idle`, `busy` or `called`), against a
    /// server started by hand at PATH (under `heaptrack`, say).
    #[arg(long, num_args = 2, value_names = ["idle|busy|called", "PATH"], conflicts_with_all = ["only", "json", "soak"])]
    drive_memory: Option<Vec<String>>,
}

/// Which server a case's child runs.
#[derive(Clone, Copy)]
enum ServerKind {
    RawBlocking,
    RawTokio,
    RawTokioBatched,
    RawBulk,
    RawOneway,
    Raw1Mib,
    Raw1MibOneway,
    Fdrpc,
    /// fdrpc's blocking server (no async runtime).
    FdrpcBlocking,
    Zbus,
    Tarpc,
    /// A listener (the path is the case's to connect to): fdrpc on a current-thread runtime.
    FdrpcListener,
    /// A listener: fdrpc on a two-worker multi-thread runtime.
    FdrpcListenerMt,
    /// A listener: the raw batched server on a two-worker multi-thread runtime.
    RawBatchedListenerMt,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            ServerKind::RawBlocking => "raw-blocking",
            ServerKind::RawTokio => "raw-tokio",
            ServerKind::RawTokioBatched => "raw-tokio-batched",
            ServerKind::RawBulk => "raw-bulk",
            ServerKind::RawOneway => "raw-oneway",
            ServerKind::Raw1Mib => "raw-1mib",
            ServerKind::Raw1MibOneway => "raw-1mib-oneway",
            ServerKind::FdrpcListener => "fdrpc-listener",
            ServerKind::FdrpcListenerMt => "fdrpc-listener-mt",
            ServerKind::RawBatchedListenerMt => "raw-batched-listener-mt",
            ServerKind::Fdrpc => "fdrpc",
            ServerKind::FdrpcBlocking => "fdrpc-blocking",
            ServerKind::Zbus => "zbus",
            ServerKind::Tarpc => "tarpc",
        }
    }

    fn serve(name: &str, sock: UnixStream) {
        match name {
            "raw-blocking" => raw_cases::serve_blocking(sock),
            "raw-tokio" => raw_cases::serve_tokio(sock),
            "raw-tokio-batched" => raw_cases::serve_tokio_batched(sock),
            "raw-bulk" => raw_cases::serve_bulk(sock),
            "raw-oneway" => raw_cases::serve_oneway(sock),
            "raw-1mib" => large_cases::serve_raw(sock),
            "raw-1mib-oneway" => large_cases::serve_raw_oneway(sock),
            "fdrpc" => fdrpc_cases::serve(sock),
            "fdrpc-blocking" => fdrpc_cases::serve_blocking(sock),
            "zbus" => zbus_cases::serve(sock),
            "tarpc" => tarpc_cases::serve(sock),
            other => panic!("unknown server {other}"),
        }
    }

    /// Whether the server listens on a path (a case that connects as often as it likes).
    fn listens(self) -> bool {
        matches!(
            self,
            ServerKind::FdrpcListener
                | ServerKind::FdrpcListenerMt
                | ServerKind::RawBatchedListenerMt
        )
    }

    fn serve_listener(name: &str, path: &str) {
        match name {
            "fdrpc-listener" => fdrpc_cases::serve_listener(path, 1),
            "fdrpc-listener-mt" => fdrpc_cases::serve_listener(path, 2),
            "raw-batched-listener-mt" => raw_cases::serve_batched_listener(path, 2),
            other => panic!("unknown listener {other}"),
        }
    }
}

/// How a case talks to its server: over the socketpair it inherited, or by connecting to the
/// path it listens on.
#[derive(Clone, Copy)]
enum Runner {
    Pair(fn(UnixStream, usize) -> Sample),
    Path(fn(&str, usize) -> Sample),
}

struct Case {
    name: &'static str,
    unit: &'static str,
    server: ServerKind,
    run: Runner,
    /// Iterations relative to `--iters`.
    scale: f64,
}

fn cases() -> Vec<Case> {
    use Runner::{Pair, Path};
    use ServerKind::*;
    let c = |name, unit, server, run, scale| Case {
        name,
        unit,
        server,
        run,
        scale,
    };
    vec![
        c(
            "raw_blocking_fd",
            "ops/s",
            RawBlocking,
            Pair(raw_cases::blocking_fd),
            1.0,
        ),
        c(
            "raw_tokio_fd",
            "ops/s",
            RawTokio,
            Pair(raw_cases::tokio_fd),
            1.0,
        ),
        c(
            "raw_tokio_fd_pipelined",
            "ops/s",
            RawTokio,
            Pair(raw_cases::tokio_fd_pipelined),
            2.0,
        ),
        c(
            "raw_tokio_fd_batched",
            "ops/s",
            RawTokioBatched,
            Pair(raw_cases::tokio_fd_batched),
            4.0,
        ),
        c(
            "raw_oneway_fd_batched",
            "items/s",
            RawOneway,
            Pair(raw_cases::oneway_fd_batched),
            8.0,
        ),
        c(
            "fdrpc_async_fd",
            "ops/s",
            Fdrpc,
            Pair(fdrpc_cases::async_fd),
            1.0,
        ),
        c(
            "fdrpc_async_fd_in_task",
            "ops/s",
            Fdrpc,
            Pair(fdrpc_cases::async_fd_in_task),
            1.0,
        ),
        c(
            "fdrpc_async_fd_loaded",
            "ops/s",
            FdrpcListener,
            Path(fdrpc_cases::async_fd_loaded),
            0.5,
        ),
        c(
            "fdrpc_async_fd_64",
            "ops/s",
            Fdrpc,
            Pair(fdrpc_cases::async_fd_64),
            4.0,
        ),
        c(
            "raw_tokio_fd_batched_16x64",
            "ops/s",
            RawBatchedListenerMt,
            Path(raw_cases::tokio_fd_batched_16x64),
            8.0,
        ),
        c(
            "fdrpc_async_fd_16x64",
            "ops/s",
            FdrpcListenerMt,
            Path(fdrpc_cases::async_fd_16x64),
            4.0,
        ),
        c(
            "fdrpc_async_fd_100x1",
            "ops/s",
            FdrpcListener,
            Path(fdrpc_cases::async_fd_100x1),
            1.0,
        ),
        c(
            "fdrpc_blocking_fd",
            "ops/s",
            Fdrpc,
            Pair(fdrpc_cases::blocking_fd),
            1.0,
        ),
        c(
            "fdrpc_blocking_fd_blocking_server",
            "ops/s",
            FdrpcBlocking,
            Pair(fdrpc_cases::blocking_fd),
            1.0,
        ),
        c(
            "fdrpc_blocking_fd_8threads",
            "ops/s",
            Fdrpc,
            Pair(|s, n| fdrpc_cases::blocking_fd_threads(s, n, 8)),
            2.0,
        ),
        c(
            "fdrpc_blocking_hold5ms",
            "ops/s",
            Fdrpc,
            Pair(|s, n| fdrpc_cases::blocking_hold_threads(s, n, 1)),
            0.005,
        ),
        c(
            "fdrpc_blocking_hold5ms_8threads",
            "ops/s",
            Fdrpc,
            Pair(|s, n| fdrpc_cases::blocking_hold_threads(s, n, 8)),
            0.04,
        ),
        c(
            "fdrpc_async_nofd_64",
            "ops/s",
            Fdrpc,
            Pair(fdrpc_cases::async_nofd_64),
            4.0,
        ),
        c(
            "tarpc_nofd_64",
            "ops/s",
            Tarpc,
            Pair(tarpc_cases::nofd_64),
            2.0,
        ),
        c("zbus_p2p_fd", "ops/s", Zbus, Pair(zbus_cases::p2p_fd), 0.5),
        c(
            "zbus_p2p_fd_64",
            "ops/s",
            Zbus,
            Pair(zbus_cases::p2p_fd_64),
            0.5,
        ),
        c(
            "fdrpc_stream_fd",
            "items/s",
            Fdrpc,
            Pair(fdrpc_cases::stream_fd),
            2.0,
        ),
        c(
            "fdrpc_sink_fd",
            "items/s",
            Fdrpc,
            Pair(fdrpc_cases::sink_fd),
            2.0,
        ),
        c(
            "fdrpc_oneway_fd",
            "items/s",
            Fdrpc,
            Pair(fdrpc_cases::oneway_fd),
            2.0,
        ),
        c(
            "raw_bulk_253",
            "fds/s",
            RawBulk,
            Pair(|s, n| raw_cases::bulk_253(s, n * 10)),
            1.0,
        ),
        c(
            "fdrpc_bulk_253",
            "fds/s",
            Fdrpc,
            Pair(|s, n| fdrpc_cases::bulk(s, n * 10, 253)),
            1.0,
        ),
        c(
            "fdrpc_bulk_1000",
            "fds/s",
            Fdrpc,
            Pair(|s, n| fdrpc_cases::bulk(s, n * 10, 1000)),
            1.0,
        ),
        // 1 MiB each way per call: the throughput is in MiB/s of payload each way.
        c("raw_1mib", "MiB/s", Raw1Mib, Pair(large_cases::raw), 0.02),
        c(
            "fdrpc_binary_1mib",
            "MiB/s",
            Fdrpc,
            Pair(large_cases::fdrpc_shared),
            0.02,
        ),
        c(
            "fdrpc_vec_1mib",
            "MiB/s",
            Fdrpc,
            Pair(large_cases::fdrpc_binary),
            0.02,
        ),
        c(
            "tarpc_binary_1mib",
            "MiB/s",
            Tarpc,
            Pair(tarpc_cases::binary_1mib),
            0.02,
        ),
        c(
            "fdrpc_memfd_1mib",
            "MiB/s",
            Fdrpc,
            Pair(large_cases::fdrpc_memfd),
            0.02,
        ),
        c(
            "fdrpc_pool_1mib",
            "MiB/s",
            Fdrpc,
            Pair(large_cases::fdrpc_pool),
            0.05,
        ),
        c(
            "fdrpc_pool_1mib_in_place",
            "MiB/s",
            Fdrpc,
            Pair(large_cases::fdrpc_pool_in_place),
            0.05,
        ),
        // One way: MiB/s through the socket, and through a pool as stream items.
        c(
            "raw_1mib_oneway",
            "MiB/s",
            Raw1MibOneway,
            Pair(large_cases::raw_oneway),
            0.05,
        ),
        c(
            "fdrpc_pool_stream_1mib",
            "MiB/s",
            Fdrpc,
            Pair(large_cases::fdrpc_pool_stream),
            0.05,
        ),
        // The memory's own speed, for scale (its server is not used).
        c(
            "memcpy_1mib",
            "MiB/s",
            Raw1MibOneway,
            Pair(large_cases::memcpy),
            0.2,
        ),
    ]
}

fn pin_self(cpu: Option<usize>) {
    let mut set = rustix::thread::CpuSet::new();
    match cpu {
        Some(c) => set.set(c),
        None => {
            for c in 0..rustix::thread::CpuSet::MAX_CPU.min(1024) {
                set.set(c);
            }
        }
    }
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn cpus(pin: Pin) -> (Option<usize>, Option<usize>) {
    match pin {
        Pin::Same => (Some(0), Some(0)),
        Pin::Split => (Some(0), Some(1)),
        Pin::None => (None, None),
    }
}

/// Spawns this binary as a server with `fd` inherited.
fn spawn_server(args: &[String], inherit: Option<&OwnedFd>) -> Child {
    spawn_server_reporting(args, inherit, None)
}

/// As [`spawn_server`]; the server writes what it counted to `report` when it ends.
fn spawn_server_reporting(
    args: &[String],
    inherit: Option<&OwnedFd>,
    report: Option<&std::path::Path>,
) -> Child {
    if let Some(fd) = inherit {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).unwrap();
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    // Not the parent's stdout: a server left behind must not hold a pipe the parent's
    // output goes down (`--json | ...` waited for it).
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    match report {
        Some(path) => cmd.env(counts::REPORT_ENV, path),
        None => cmd.env_remove(counts::REPORT_ENV),
    };
    cmd.spawn().unwrap()
}

/// Waits until a server listens at `path`: the socket's file appears at `bind`, before
/// `listen`, and a connection made in between is refused (a case's client then panicked, and
/// its server was left waiting). The probe connection is closed at once.
fn wait_listening(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "no server listens at {path:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn reap(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn run_case(case: &Case, pin: Pin, iters: usize) -> Sample {
    let n = ((iters as f64) * case.scale) as usize;
    let (_, server_cpu) = cpus(pin);
    let cpu = server_cpu
        .map(|c| c.to_string())
        .unwrap_or_else(|| "-".into());
    match case.run {
        Runner::Pair(run) => {
            let (client, server) = UnixStream::pair().unwrap();
            let server = OwnedFd::from(server);
            let args = vec![
                "--serve".to_string(),
                case.server.name().to_string(),
                server.as_raw_fd().to_string(),
                cpu,
            ];
            let report = std::env::temp_dir().join(format!(
                "fdrpc-bench-counts-{}-{}",
                std::process::id(),
                case.name
            ));
            let _ = std::fs::remove_file(&report);
            let child = spawn_server_reporting(&args, Some(&server), Some(&report));
            drop(server);
            // Counted from here on: this thread and the threads the case starts (the
            // server was started before, so it is not in these counts).
            let (counters, start) = counts::Counters::start();
            let mut sample = run(client, n);
            let mine = counters.finish(start);
            reap(child);
            let theirs = counts::read_report(&report);
            let _ = std::fs::remove_file(&report);
            sample.client = counts::PerOp::of(&mine, mine.ops);
            sample.server = theirs.and_then(|t| counts::PerOp::of(&t, mine.ops));
            sample
        }
        Runner::Path(run) => {
            assert!(case.server.listens(), "{} needs a listener", case.name);
            let dir = std::env::temp_dir().join(format!(
                "fdrpc-bench-{}-{}",
                std::process::id(),
                case.name
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s.sock");
            let args = vec![
                "--serve-listener".to_string(),
                case.server.name().to_string(),
                path.to_string_lossy().into_owned(),
                cpu,
            ];
            let report = dir.join("counts");
            let child = spawn_server_reporting(&args, None, Some(&report));
            wait_listening(&path);
            let (counters, start) = counts::Counters::start();
            let mut sample = run(path.to_str().unwrap(), n);
            let mine = counters.finish(start);
            // Ended by SIGTERM, it reports what it counted as it returns.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
            reap(child);
            let theirs = counts::read_report(&report);
            let _ = std::fs::remove_dir_all(&dir);
            sample.client = counts::PerOp::of(&mine, mine.ops);
            sample.server = theirs.and_then(|t| counts::PerOp::of(&t, mine.ops));
            sample
        }
    }
}

/// A process's peak RSS (`VmHWM`), and its anonymous and file-backed resident pages now
/// (`RssAnon`, `RssFile`), in MiB.
fn rss_mib(pid: u32) -> [Option<f64>; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["VmHWM:", "RssAnon:", "RssFile:"].map(|key| {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    })
}

fn memory_case(name: &'static str, pin: Pin, scenario: impl FnOnce(&str)) -> Sample {
    let dir = std::env::temp_dir().join(format!("fdrpc-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let (_, server_cpu) = cpus(pin);
    let args = vec![
        "--serve-listener".to_string(),
        ServerKind::FdrpcListener.name().to_string(),
        path.to_string_lossy().into_owned(),
        server_cpu
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
    ];
    let mut child = spawn_server(&args, None);
    wait_listening(&path);
    scenario(path.to_str().unwrap());
    let [peak, anon, file] = rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Sample {
        rss_mib: peak,
        rss_anon_mib: anon,
        rss_file_mib: file,
        ..Sample::default()
    }
}

fn fmt_spread(s: Option<Spread>, digits: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) => format!(
            "{:.d$} ({:.d$}..{:.d$})",
            s.median,
            s.min,
            s.max,
            d = digits
        ),
    }
}

fn fmt_ops(s: &Summary) -> String {
    if s.ops.median == 0.0 {
        return "–".into();
    }
    format!(
        "{:.0} ({:.0}..{:.0}) {}",
        s.ops.median, s.ops.min, s.ops.max, s.unit
    )
}

fn find<'a>(all: &'a [Summary], name: &str) -> Option<&'a Summary> {
    all.iter().find(|s| s.case == name)
}

fn targets(all: &[Summary]) -> Vec<(String, f64, f64, bool)> {
    let p50 = |n: &str| find(all, n).and_then(|s| s.p50).map(|s| s.median);
    let ops = |n: &str| find(all, n).map(|s| s.ops.median);
    let rss = |n: &str| find(all, n).and_then(|s| s.rss).map(|s| s.median);
    let mut out = Vec::new();
    let mut lower = |label: &str, a: Option<f64>, b: Option<f64>, limit: f64| {
        if let (Some(a), Some(b)) = (a, b) {
            out.push((label.to_string(), a / b, limit, a / b <= limit));
        }
    };
    lower(
        "fdrpc_async_fd p50 / raw_tokio_fd p50",
        p50("fdrpc_async_fd"),
        p50("raw_tokio_fd"),
        1.05,
    );
    lower(
        "fdrpc_blocking_fd p50 / raw_blocking_fd p50",
        p50("fdrpc_blocking_fd"),
        p50("raw_blocking_fd"),
        1.15,
    );
    lower(
        "fdrpc_blocking_fd_blocking_server p50 / raw_blocking_fd p50",
        p50("fdrpc_blocking_fd_blocking_server"),
        p50("raw_blocking_fd"),
        1.1,
    );
    lower(
        "fdrpc_async_fd p50 / zbus_p2p_fd p50",
        p50("fdrpc_async_fd"),
        p50("zbus_p2p_fd"),
        0.5,
    );
    lower(
        "memory_1000_idle_connections (MiB)",
        rss("memory_1000_idle_connections"),
        Some(1.0),
        8.0,
    );
    lower(
        "memory_100x64_calls_in_flight (MiB)",
        rss("memory_100x64_calls_in_flight"),
        Some(1.0),
        11.0,
    );
    let mut higher = |label: &str, a: Option<f64>, b: Option<f64>, limit: f64| {
        if let (Some(a), Some(b)) = (a, b) {
            out.push((label.to_string(), a / b, limit, a / b >= limit));
        }
    };
    higher(
        "fdrpc_async_fd_64 / raw_tokio_fd_batched",
        ops("fdrpc_async_fd_64"),
        ops("raw_tokio_fd_batched"),
        0.75,
    );
    higher(
        "fdrpc_async_fd_16x64 / raw_tokio_fd_batched_16x64",
        ops("fdrpc_async_fd_16x64"),
        ops("raw_tokio_fd_batched_16x64"),
        0.75,
    );
    for case in ["fdrpc_stream_fd", "fdrpc_sink_fd", "fdrpc_oneway_fd"] {
        higher(
            &format!("{case} / raw_oneway_fd_batched"),
            ops(case),
            ops("raw_oneway_fd_batched"),
            0.75,
        );
    }
    higher(
        "fdrpc_binary_1mib / raw_1mib",
        ops("fdrpc_binary_1mib"),
        ops("raw_1mib"),
        0.8,
    );
    higher(
        "fdrpc_pool_1mib / raw_1mib",
        ops("fdrpc_pool_1mib"),
        ops("raw_1mib"),
        3.0,
    );
    higher(
        "fdrpc_pool_stream_1mib / raw_1mib_oneway",
        ops("fdrpc_pool_stream_1mib"),
        ops("raw_1mib_oneway"),
        4.0,
    );
    higher(
        "fdrpc_memfd_1mib / tarpc_binary_1mib",
        ops("fdrpc_memfd_1mib"),
        ops("tarpc_binary_1mib"),
        3.0,
    );
    higher(
        "fdrpc_async_fd_64 / raw_tokio_fd_pipelined",
        ops("fdrpc_async_fd_64"),
        ops("raw_tokio_fd_pipelined"),
        2.0,
    );
    higher(
        "fdrpc_async_fd_64 / zbus_p2p_fd_64",
        ops("fdrpc_async_fd_64"),
        ops("zbus_p2p_fd_64"),
        3.0,
    );
    higher(
        "fdrpc_async_nofd_64 / tarpc_nofd_64",
        ops("fdrpc_async_nofd_64"),
        ops("tarpc_nofd_64"),
        1.0,
    );
    higher(
        "fdrpc_blocking_hold5ms_8threads / fdrpc_blocking_hold5ms",
        ops("fdrpc_blocking_hold5ms_8threads"),
        ops("fdrpc_blocking_hold5ms"),
        7.0,
    );
    higher(
        "fdrpc_bulk_253 / raw_bulk_253 (fds/s)",
        ops("fdrpc_bulk_253"),
        ops("raw_bulk_253"),
        0.8,
    );
    out
}

/// One side's per-operation figures as a JSON object, or `null`.
fn json_per_op(p: Option<&counts::PerOp>) -> String {
    let Some(p) = p else {
        return "null".into();
    };
    let mut fields = vec![
        format!("\"allocs\": {:.2}", p.allocs),
        format!("\"sleeps\": {:.2}", p.sleeps),
    ];
    if let Some(sys) = p.syscalls {
        for (name, v) in counts::syscall_names().iter().zip(sys) {
            fields.push(format!("\"{name}\": {v:.2}"));
        }
    }
    format!("{{{}}}", fields.join(", "))
}

/// The second table: what an operation cost each side besides time.
fn print_per_op(summaries: &[Summary]) {
    let names = counts::syscall_names();
    println!(
        "\nPer operation, client / server (warm-up included; a server that is killed rather \
         than ending reports nothing: –). sleeps = voluntary context switches.\n"
    );
    println!("| case | allocs | sleeps | {} |", names.join(" | "));
    println!("|---|---:|---:|{}", "---:|".repeat(names.len()));
    let side = |p: Option<&counts::PerOp>, f: &dyn Fn(&counts::PerOp) -> Option<f64>| {
        p.and_then(f)
            .map_or_else(|| "–".to_string(), |v| format!("{v:.2}"))
    };
    for s in summaries.iter().filter(|s| s.client.is_some()) {
        let pair = |f: &dyn Fn(&counts::PerOp) -> Option<f64>| {
            format!(
                "{} / {}",
                side(s.client.as_ref(), f),
                side(s.server.as_ref(), f)
            )
        };
        let sys: Vec<String> = (0..names.len())
            .map(|i| pair(&|p| p.syscalls.and_then(|v| v.get(i).copied())))
            .collect();
        println!(
            "| {} | {} | {} | {} |",
            s.case,
            pair(&|p| Some(p.allocs)),
            pair(&|p| Some(p.sleeps)),
            sys.join(" | ")
        );
    }
}

fn json_num(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}"))
        .unwrap_or_else(|| "null".into())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let cpu = args.get(3).and_then(|c| c.parse().ok());
        if cpu.is_some() {
            pin_self(cpu);
        }
        let fd: i32 = args[2].parse().unwrap();
        // SAFETY: the parent handed this fd down for this purpose; nothing else owns it.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        let _report = counts::report_at_exit();
        ServerKind::serve(&args[1], sock);
        return;
    }
    if args.first().map(String::as_str) == Some("--serve-listener") {
        if let Some(cpu) = args.get(3).and_then(|c| c.parse().ok()) {
            pin_self(Some(cpu));
        }
        let _report = counts::report_at_exit();
        ServerKind::serve_listener(&args[1], &args[2]);
        return;
    }
    // `--serve` and `--serve-listener` (above) are how the binary runs as a case's server;
    // everything else is the command line a person types.
    let Options {
        pin,
        json,
        reps,
        iters,
        only,
        soak,
        drive_memory,
    } = clap::Parser::parse();
    if let Some(mode) = drive_memory {
        // The client half of a memory case, against a server started by hand (under
        // `heaptrack`, say): see "Profiling" in BENCHMARKS.md.
        match (mode.first().map(String::as_str), mode.get(1)) {
            (Some("idle"), Some(path)) => {
                let _conns = fdrpc_cases::idle_connections(path, 1000);
                std::thread::sleep(Duration::from_secs(1));
            }
            (Some("busy"), Some(path)) => fdrpc_cases::calls_in_flight(path, 100),
            (Some("called"), Some(path)) => {
                fdrpc_cases::connections_after_a_call(path, 1000, Duration::from_secs(1));
            }
            _ => {
                eprintln!("fdrpc-bench: --drive-memory idle|busy|called PATH");
                std::process::exit(2);
            }
        }
        return;
    }
    if let Some(seconds) = soak {
        let dir = std::env::temp_dir().join(format!("fdrpc-soak-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let args = vec![
            "--serve-listener".to_string(),
            ServerKind::FdrpcListenerMt.name().to_string(),
            path.to_string_lossy().into_owned(),
            "-".to_string(),
        ];
        let mut child = spawn_server(&args, None);
        wait_listening(&path);
        let ok = soak::run(path.to_str().unwrap(), child.id(), seconds);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        if !ok {
            eprintln!("soak: FAILED");
            std::process::exit(1);
        }
        println!("soak: passed");
        return;
    }
    let (client_cpu, _) = cpus(pin);
    pin_self(client_cpu);

    let all = cases();
    let selected: Vec<&Case> = all
        .iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|n| n == c.name)))
        .collect();
    let run_memory = only
        .as_ref()
        .is_none_or(|o| o.iter().any(|n| n.starts_with("memory")));
    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); selected.len()];
    let mut mem_idle = Vec::new();
    let mut mem_busy = Vec::new();
    let mut mem_called = Vec::new();
    for rep in 0..reps {
        for (k, case) in selected.iter().enumerate() {
            samples[k].push(run_case(case, pin, iters));
        }
        if run_memory && rep < 3 {
            mem_idle.push(memory_case("idle", pin, |p| {
                let conns = fdrpc_cases::idle_connections(p, 1000);
                std::thread::sleep(Duration::from_millis(300));
                drop(conns);
            }));
            mem_busy.push(memory_case("busy", pin, |p| {
                fdrpc_cases::calls_in_flight(p, 100)
            }));
            mem_called.push(memory_case("called", pin, |p| {
                fdrpc_cases::connections_after_a_call(p, 1000, Duration::from_millis(300));
            }));
        }
        eprintln!("rep {}/{reps} done at {:.0?}", rep + 1, started.elapsed());
    }
    let mut summaries: Vec<Summary> = selected
        .iter()
        .zip(&samples)
        .map(|(c, s)| summarize(c.name, c.unit, s))
        .collect();
    if run_memory {
        summaries.push(summarize("memory_1000_idle_connections", "MiB", &mem_idle));
        summaries.push(summarize("memory_100x64_calls_in_flight", "MiB", &mem_busy));
        summaries.push(summarize(
            "memory_1000_connections_after_a_call",
            "MiB",
            &mem_called,
        ));
    }

    if json {
        for s in &summaries {
            println!(
                "{{\"case\": \"{}\", \"p50_us\": {}, \"p99_us\": {}, \"ops_per_s\": {}, \"peak_rss_mib\": {}, \"rss_anon_mib\": {}, \"rss_file_mib\": {}, \"client_per_op\": {}, \"server_per_op\": {}}}",
                s.case,
                json_num(s.p50.map(|x| x.median)),
                json_num(s.p99.map(|x| x.median)),
                if s.ops.median == 0.0 {
                    "null".into()
                } else {
                    format!("{:.1}", s.ops.median)
                },
                json_num(s.rss.map(|x| x.median)),
                json_num(s.rss_anon.map(|x| x.median)),
                json_num(s.rss_file.map(|x| x.median)),
                json_per_op(s.client.as_ref()),
                json_per_op(s.server.as_ref()),
            );
        }
        return;
    }
    println!(
        "pin: {pin:?}, {reps} repetitions, {iters} iterations per one-at-a-time case, wall time {:.0?}\n",
        started.elapsed()
    );
    println!(
        "| case | p50 µs | p99 µs | throughput | peak RSS MiB | of it at the end: anon / file MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for s in &summaries {
        let split = match (s.rss_anon, s.rss_file) {
            (Some(a), Some(f)) => format!("{:.2} / {:.2}", a.median, f.median),
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {split} |",
            s.case,
            fmt_spread(s.p50, 1),
            fmt_spread(s.p99, 1),
            fmt_ops(s),
            fmt_spread(s.rss, 2)
        );
    }
    print_per_op(&summaries);
    println!("\n| target | ratio | goal | met |");
    println!("|---|---:|---:|---|");
    for (label, ratio, goal, met) in targets(&summaries) {
        let op = if label.contains("p50") || label.starts_with("memory") {
            "≤"
        } else {
            "≥"
        };
        println!(
            "| {label} | {ratio:.2} | {op} {goal} | {} |",
            if met { "yes" } else { "**no**" }
        );
    }
}
