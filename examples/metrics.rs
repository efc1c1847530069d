//! Call counts and latencies of an fdrpc server, recorded by a `CallHook` through the
//! [`metrics`] facade, and exported in the Prometheus text format.
//!
//! ```text
//! cargo run --example metrics
//! ```
//!
//! It serves a small file service on a socket pair, makes a few calls (one that succeeds,
//! one that fails with the service's error, one that times out, one that is refused), then
//! prints what Prometheus would scrape: `fdrpc_calls_total` by service, method and outcome,
//! `fdrpc_call_duration_seconds` by service and method, and `fdrpc_call_fds_total` by
//! direction. A daemon would serve the same text over HTTP (`metrics-exporter-prometheus`'s
//! `http-listener` feature) or push it; the hook stays the same with any `metrics` exporter.

use std::os::fd::OwnedFd;
use std::time::Duration;

use fdrpc::{ApplicationError, ApplicationErrorKind, CallEnd, CallHook, CallOutcome, Context};

/// Records every call's end: a counter by outcome, a histogram of durations, and counters of
/// the fds that came in and went out.
#[derive(Debug, Default)]
pub struct MetricsHook;

impl CallHook for MetricsHook {
    fn after(&self, call: &Context, end: &CallEnd) {
        let (service, method) = (call.service(), call.method());
        metrics::counter!(
            "fdrpc_calls_total",
            "service" => service,
            "method" => method,
            "outcome" => outcome_label(end.outcome),
        )
        .increment(1);
        metrics::histogram!(
            "fdrpc_call_duration_seconds",
            "service" => service,
            "method" => method,
        )
        .record(end.duration.as_secs_f64());
        for (direction, n) in [("in", end.fds_in), ("out", end.fds_out)] {
            metrics::counter!("fdrpc_call_fds_total", "service" => service, "direction" => direction)
                .increment(n as u64);
        }
    }
}

/// A label value for each outcome.
pub fn outcome_label(outcome: CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Ok => "ok",
        CallOutcome::ServiceError => "service_error",
        CallOutcome::Refused(_) => "refused",
        CallOutcome::Failed(_) => "failed",
        CallOutcome::Panicked => "panicked",
        CallOutcome::TimedOut => "timed_out",
        CallOutcome::Cancelled => "cancelled",
        _ => "other",
    }
}

/// Refuses `forbidden` to everyone: a per-method authorization hook beside the metrics.
#[derive(Debug, Default)]
pub struct Forbid;

impl CallHook for Forbid {
    fn before(&self, call: &Context) -> Result<(), ApplicationError> {
        if call.method() == "forbidden" {
            return Err(ApplicationError::new(
                ApplicationErrorKind::Unknown,
                "permission denied",
            ));
        }
        Ok(())
    }
}

/// Why a file could not be opened.
#[derive(fdrpc::Message, Debug)]
pub struct OpenError {
    pub message: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[fdrpc::service]
pub trait Files {
    /// `path`, opened read-only.
    async fn open(&self, path: String) -> Result<OwnedFd, OpenError>;
    /// Waits `ms` milliseconds.
    async fn slow(&self, ms: u64);
    /// Never runs: the hook refuses it.
    async fn forbidden(&self);
}

#[derive(Debug, Default)]
pub struct FilesImpl;

impl Files for FilesImpl {
    async fn open(&self, path: String) -> Result<OwnedFd, OpenError> {
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| OpenError {
                message: format!("{path}: {e}"),
            })
    }

    async fn slow(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn forbidden(&self) {}
}

/// Serves [`FilesImpl`] with both hooks, makes a few calls, and returns the Prometheus text.
pub async fn run(handle: &metrics_exporter_prometheus::PrometheusHandle) -> String {
    let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
    let server = tokio::spawn(async move {
        let _ = fdrpc::Server::new()
            .hook(Forbid)
            .hook(MetricsHook)
            .serve_connection(b, FilesServer::new(FilesImpl))
            .await;
    });
    let client = FilesClient::new(fdrpc::Client::new(a).expect("client"));
    let opened = client.open("/etc/hostname".into()).await;
    println!(
        "open(/etc/hostname): {}",
        if opened.is_ok() { "ok" } else { "failed" }
    );
    if let Err(e) = client.open("/nonexistent".into()).await {
        println!("open(/nonexistent): {e}");
    }
    if let Err(e) = client
        .with_timeout(Duration::from_millis(50))
        .slow(1000)
        .await
    {
        println!("slow(1000) with a 50 ms timeout: {e}");
    }
    client.slow(10).await.expect("slow(10)");
    if let Err(e) = client.forbidden().await {
        println!("forbidden(): {e}");
    }
    drop((client, opened));
    let _ = server.await;
    handle.render()
}

fn main() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("no other metrics recorder is installed");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let text = runtime.block_on(run(&handle));
    println!("\n{text}");
}
