//! Samples of one run of a case, and their summary over repetitions.

use std::time::Duration;

use crate::counts::PerOp;

/// What one run of a case measured.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Median and 99th percentile of one operation, for one-at-a-time cases.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Operations (or fds, for bulk cases) per second.
    pub ops_per_s: f64,
    /// Peak resident memory of the server, for memory cases.
    pub rss_mib: Option<f64>,
    /// Of the server's resident memory at the same moment (not the peak): its anonymous
    /// pages (heap, stacks: what its connections hold) and its file-backed ones (the
    /// binary's and libraries' pages, as many as the kernel mapped in around the ones run).
    pub rss_anon_mib: Option<f64>,
    pub rss_file_mib: Option<f64>,
    /// What an operation cost the client and the server besides time (see `counts`).
    pub client: Option<crate::counts::PerOp>,
    pub server: Option<crate::counts::PerOp>,
}

impl Sample {
    /// From per-operation latencies and the wall time of the whole run.
    pub fn from_latencies(mut lat: Vec<Duration>, total: Duration) -> Sample {
        crate::counts::add_ops(lat.len());
        lat.sort_unstable();
        let pick = |q: f64| {
            let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
            lat.get(i).map(|d| d.as_secs_f64() * 1e6)
        };
        Sample {
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            ops_per_s: lat.len() as f64 / total.as_secs_f64(),
            ..Sample::default()
        }
    }

    /// From a count of operations over a wall time.
    pub fn throughput(ops: usize, total: Duration) -> Sample {
        crate::counts::add_ops(ops);
        Sample {
            ops_per_s: ops as f64 / total.as_secs_f64(),
            ..Sample::default()
        }
    }
}

/// Median, minimum and maximum.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(mut v: Vec<f64>) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(Spread {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// A case's samples over all repetitions.
#[derive(Debug, Clone)]
pub struct Summary {
    pub case: &'static str,
    pub unit: &'static str,
    pub p50: Option<Spread>,
    pub p99: Option<Spread>,
    pub ops: Spread,
    pub rss: Option<Spread>,
    pub rss_anon: Option<Spread>,
    pub rss_file: Option<Spread>,
    /// Medians over the repetitions, field by field.
    pub client: Option<PerOp>,
    pub server: Option<PerOp>,
}

/// The median of each figure over the samples that have them.
fn median_per_op(v: Vec<PerOp>) -> Option<PerOp> {
    let med = |f: &dyn Fn(&PerOp) -> Option<f64>| {
        spread(v.iter().filter_map(f).collect()).map(|s| s.median)
    };
    Some(PerOp {
        allocs: med(&|p| Some(p.allocs))?,
        sleeps: med(&|p| Some(p.sleeps))?,
        syscalls: (0..5)
            .map(|i| med(&|p| p.syscalls.and_then(|s| s.get(i).copied())))
            .collect::<Option<Vec<f64>>>()
            .and_then(|v| v.try_into().ok()),
    })
}

pub fn summarize(case: &'static str, unit: &'static str, samples: &[Sample]) -> Summary {
    let opt = |f: fn(&Sample) -> Option<f64>| spread(samples.iter().filter_map(f).collect());
    Summary {
        case,
        unit,
        p50: opt(|s| s.p50_us),
        p99: opt(|s| s.p99_us),
        ops: spread(samples.iter().map(|s| s.ops_per_s).collect()).unwrap_or(Spread {
            median: 0.0,
            min: 0.0,
            max: 0.0,
        }),
        rss: opt(|s| s.rss_mib),
        rss_anon: opt(|s| s.rss_anon_mib),
        rss_file: opt(|s| s.rss_file_mib),
        client: median_per_op(samples.iter().filter_map(|s| s.client).collect()),
        server: median_per_op(samples.iter().filter_map(|s| s.server).collect()),
    }
}
