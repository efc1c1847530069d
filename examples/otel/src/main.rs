//! fdrpc calls as one OpenTelemetry trace across two processes.
//!
//! fdrpc's spans (`client_call` on the client, `call` on the server) are `tracing` spans;
//! `tracing-opentelemetry` turns them into OpenTelemetry spans. What joins the two processes
//! is the `traceparent` a call carries, and the [`OtelBridge`] below (the 20 lines a program
//! copies) makes it carry the ids OpenTelemetry gave the client's span, and makes the
//! server's span a child of them. A collector then sees one tree: the client's own span, its
//! `client_call`, the server's `call`, and what the handler logs inside it.
//!
//! This example starts a copy of itself as the server, exports both processes' spans to
//! memory (a real program exports to its collector, e.g. with `opentelemetry-otlp`), prints
//! them, and checks that they are one trace with the server's span under the client's.
//!
//! Run with `cargo run -p fdrpc-example-otel`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Joins fdrpc's spans to OpenTelemetry's: a call carries its `client_call` span's
/// OpenTelemetry ids, and a server's `call` span gets the caller's as its parent.
struct OtelBridge;

impl fdrpc::TraceBridge for OtelBridge {
    fn context_of(&self, span: &tracing::Span) -> Option<fdrpc::TraceContext> {
        let otel = span.context();
        let sc = otel.span().span_context().clone();
        fdrpc::TraceContext::from_ids(
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
            sc.is_sampled(),
        )
    }

    fn set_parent(&self, span: &tracing::Span, parent: &fdrpc::TraceContext) {
        let flags = match parent.sampled() {
            true => TraceFlags::SAMPLED,
            false => TraceFlags::default(),
        };
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id().to_be_bytes()),
            SpanId::from_bytes(parent.span_id().to_be_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

#[fdrpc::service]
trait Inventory {
    /// How many of `item` are in stock.
    async fn stock(&self, item: String) -> u32;
}

struct InventoryImpl;

impl Inventory for InventoryImpl {
    async fn stock(&self, item: String) -> u32 {
        tracing::info!(item = item.as_str(), "counting");
        7
    }
}

/// Installs the subscriber (OpenTelemetry layer, spans exported to memory) and the bridge.
fn install(service: &'static str) -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the only subscriber");
    fdrpc::set_trace_bridge(OtelBridge).expect("the only bridge");
    (provider, exporter)
}

/// One line per span: name, trace id, span id, parent span id.
fn lines(spans: &[SpanData]) -> Vec<String> {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {}",
                s.name,
                s.span_context.trace_id(),
                s.span_context.span_id(),
                s.parent_span_id
            )
        })
        .collect()
}

/// The server: serves one connection, then prints its spans.
async fn serve(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (provider, exporter) = install("inventory");
    let listener = tokio::net::UnixListener::bind(path)?;
    println!("ready");
    let (conn, _) = listener.accept().await?;
    fdrpc::Server::new()
        .serve_connection(conn, InventoryServer::new(InventoryImpl))
        .await?;
    provider.force_flush()?;
    for line in lines(&exporter.get_finished_spans()?) {
        println!("{line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if let (Some(role), Some(path)) = (args.next(), args.next()) {
        if role == "serve" {
            return serve(&path).await;
        }
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("inventory.sock");
    let mut server = Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(server.stdout.take().ok_or("no stdout")?);
    let mut ready = String::new();
    out.read_line(&mut ready)?;
    assert_eq!(ready.trim(), "ready", "the server did not start");

    let (provider, exporter) = install("shop");
    // The client's own span: fdrpc's `client_call` is its child, and the server's spans
    // join the same trace.
    let checkout = tracing::info_span!("checkout");
    let client = InventoryClient::connect(&path).await?;
    let n = client
        .stock("lamp".into())
        .instrument(checkout.clone())
        .await?;
    assert_eq!(n, 7);
    drop(checkout);
    drop(client);
    provider.force_flush()?;

    let mine = lines(&exporter.get_finished_spans()?);
    let theirs: Vec<String> = out.lines().collect::<Result<_, _>>()?;
    assert!(server.wait()?.success(), "the server failed");
    drop(dir);
    println!("client spans (name trace span parent):");
    mine.iter().for_each(|l| println!("  {l}"));
    println!("server spans:");
    theirs.iter().for_each(|l| println!("  {l}"));

    // One trace; the server's `call` span is a child of the client's `client_call`.
    let field = |lines: &[String], name: &str, i: usize| -> String {
        lines
            .iter()
            .find(|l| l.split(' ').next() == Some(name))
            .and_then(|l| l.split(' ').nth(i))
            .unwrap_or_else(|| panic!("no `{name}` span"))
            .to_owned()
    };
    let trace = field(&mine, "checkout", 1);
    // (The server's `connection` span is a trace of its own: it spans every call of the
    // connection, whoever made them.)
    for l in mine
        .iter()
        .chain(&theirs)
        .filter(|l| !l.starts_with("connection "))
    {
        assert_eq!(l.split(' ').nth(1), Some(trace.as_str()), "{l}");
    }
    assert_eq!(field(&mine, "client_call", 3), field(&mine, "checkout", 2));
    assert_eq!(field(&theirs, "call", 3), field(&mine, "client_call", 2));
    println!("one trace across two processes: {trace}");
    Ok(())
}
