//! Samples of one run of a case, and their summary over repetitions.

use std::time::Duration;

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
}

impl Sample {
    /// From per-operation latencies and the wall time of the whole run.
    pub fn from_latencies(mut lat: Vec<Duration>, total: Duration) -> Sample {
        lat.sort_unstable();
        let pick = |q: f64| {
            let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
            lat.get(i).map(|d| d.as_secs_f64() * 1e6)
        };
        Sample {
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            ops_per_s: lat.len() as f64 / total.as_secs_f64(),
            rss_mib: None,
        }
    }

    /// From a count of operations over a wall time.
    pub fn throughput(ops: usize, total: Duration) -> Sample {
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
    }
}
