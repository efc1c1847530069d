//! `--soak SECONDS`: mixed calls, streams, sinks and oneways with fds on many connections to
//! a server in another process, for a long time. Prints throughput, the server's RSS and both
//! processes' fd counts every interval, and fails if RSS or an fd count grows steadily.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::fdrpc_cases::BenchClient;
use crate::workload::{fd, payload};

/// Connections the soak keeps busy.
const CONNECTIONS: usize = 16;
/// How often a line is printed.
const EVERY: Duration = Duration::from_secs(5);

/// One sample of the soak.
struct Point {
    at: Duration,
    ops: u64,
    server_rss_kib: u64,
    server_fds: usize,
    client_fds: usize,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds_of(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One connection's loop: a call with an fd each way, a stream of 16 fds, a sink of 16 fds,
/// 16 oneways with an fd and a fence; repeated until `stop`.
async fn mix(c: BenchClient, ops: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let data = fdrpc::Binary(payload());
    while !stop.load(Ordering::Relaxed) {
        let reply = c.call_fd(data.clone(), fd()).await.expect("call");
        drop(reply);
        let mut items = c.items(16).await.expect("stream");
        let mut n = 0;
        while let Some(item) = items.next().await {
            drop(item.expect("item"));
            n += 1;
        }
        assert_eq!(n, 16);
        let taken = c
            .absorb(fdrpc::Stream::iter((0..16).map(|_| fd())))
            .await
            .expect("sink");
        assert_eq!(taken, 16);
        for _ in 0..16 {
            c.push(data.clone(), fd()).await.expect("oneway");
        }
        c.fence().await.expect("fence");
        ops.fetch_add(1 + 16 + 16 + 16 + 1, Ordering::Relaxed);
    }
}

/// Runs the soak against the server listening on `path` (process `server_pid`) for
/// `seconds`. Returns whether it passed.
pub fn run(path: &str, server_pid: u32, seconds: u64) -> bool {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut points = Vec::new();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let c = BenchClient::connect(path).await.expect("connect");
            tasks.push(tokio::spawn(mix(c, ops.clone(), stop.clone())));
        }
        println!("| s | ops/s | server RSS MiB | server fds | client fds |");
        println!("|---:|---:|---:|---:|---:|");
        let mut last = (Duration::ZERO, 0);
        while started.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(EVERY).await;
            let p = Point {
                at: started.elapsed(),
                ops: ops.load(Ordering::Relaxed),
                server_rss_kib: rss_kib(server_pid),
                server_fds: fds_of(&server_pid.to_string()),
                client_fds: fds_of("self"),
            };
            let rate = (p.ops - last.1) as f64 / (p.at - last.0).as_secs_f64();
            last = (p.at, p.ops);
            println!(
                "| {:.0} | {:.0} | {:.1} | {} | {} |",
                p.at.as_secs_f64(),
                rate,
                p.server_rss_kib as f64 / 1024.0,
                p.server_fds,
                p.client_fds
            );
            points.push(p);
            // A connection's loop that failed ends the soak.
            if tasks.iter().any(|t| t.is_finished()) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            if let Err(e) = t.await {
                eprintln!("soak: a connection failed: {e}");
                points.clear();
            }
        }
    });
    judge(&points)
}

/// What a check reads off a sample.
type Measure = &'static dyn Fn(&Point) -> f64;

/// Steady growth: after a warm-up third, the last third's mean exceeds the middle third's by
/// more than the tolerance.
fn judge(points: &[Point]) -> bool {
    if points.len() < 6 {
        eprintln!("soak: too few samples to judge (run at least 30 s)");
        return false;
    }
    let third = points.len() / 3;
    let mean =
        |s: &[Point], f: &dyn Fn(&Point) -> f64| s.iter().map(f).sum::<f64>() / s.len() as f64;
    let middle = &points[third..2 * third];
    let last = &points[2 * third..];
    let mut ok = true;
    let checks: [(&str, Measure, f64); 3] = [
        ("server RSS", &|p| p.server_rss_kib as f64, 1.10),
        ("server fds", &|p| p.server_fds as f64, 1.0),
        ("client fds", &|p| p.client_fds as f64, 1.0),
    ];
    for (what, f, tolerance) in checks {
        let (m, l) = (mean(middle, f), mean(last, f));
        // fds: any growth beyond a few in flight is a leak; RSS: 10%.
        let grew = if tolerance > 1.0 {
            l > m * tolerance
        } else {
            l > m + 8.0
        };
        println!(
            "{what}: middle third {m:.0}, last third {l:.0}{}",
            if grew { "  GREW" } else { "" }
        );
        ok &= !grew;
    }
    ok
}
