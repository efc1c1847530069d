//! A [`fdrpc::TraceBridge`] joins fdrpc's spans to a tracing system with ids of its own: the
//! call carries the ids its `client_call` span has there (not ids fdrpc made up), the
//! server's `call` span is given them as its parent before it is entered, and the handler's
//! trace is the server span's own ids. The bridge here stands in for OpenTelemetry
//! (`examples/otel` is the real one): it is installed once for the whole process, so it has
//! a test binary of its own.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use fdrpc::{TraceBridge, TraceContext};

#[fdrpc::service]
trait Traced {
    /// The trace the handler runs in, as `traceparent` writes it.
    async fn trace(&self, cx: &fdrpc::Context) -> String;
}

struct TracedImpl;

impl Traced for TracedImpl {
    async fn trace(&self, cx: &fdrpc::Context) -> String {
        assert_eq!(TraceContext::current().as_ref(), Some(cx.trace()));
        cx.trace().to_string()
    }
}

/// What the other system would say: a `client_call` span belongs to trace 0xfeed (as if it
/// were inside a span of the user's), a span given a parent belongs to the parent's trace;
/// span ids are 0x1000 + tracing's id of the span.
#[derive(Default)]
struct FakeOtel {
    /// Per span (tracing's id): the parent set on it.
    parents: Mutex<HashMap<u64, TraceContext>>,
    /// Every call of `set_parent`: the span's name and the parent.
    set: Mutex<Vec<(&'static str, TraceContext)>>,
    /// Every answer of `context_of`: the span's name and the ids.
    answered: Mutex<Vec<(&'static str, TraceContext)>>,
}

impl TraceBridge for &'static FakeOtel {
    fn context_of(&self, span: &tracing::Span) -> Option<TraceContext> {
        let id = span.id()?.into_u64();
        let name = span.metadata()?.name();
        let trace = match self.parents.lock().unwrap().get(&id) {
            Some(parent) => parent.trace_id(),
            None => 0xfeed,
        };
        let cx = TraceContext::from_ids(trace, 0x1000 + id, true)?;
        self.answered.lock().unwrap().push((name, cx));
        Some(cx)
    }

    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext) {
        let (Some(id), Some(meta)) = (span.id(), span.metadata()) else {
            return;
        };
        self.parents.lock().unwrap().insert(id.into_u64(), *parent);
        self.set.lock().unwrap().push((meta.name(), *parent));
    }
}

#[test]
fn the_call_carries_the_bridges_ids_and_the_server_span_takes_them_as_parent() {
    let otel: &'static FakeOtel = Box::leak(Box::default());
    // Spans exist only where a subscriber wants them: the registry wants every one.
    tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    fdrpc::set_trace_bridge(otel).unwrap();
    assert_eq!(
        fdrpc::set_trace_bridge(otel),
        Err(fdrpc::BridgeAlreadySet),
        "one bridge per process"
    );
    assert_eq!(TraceContext::from_ids(0, 1, true), None);
    assert_eq!(TraceContext::from_ids(1, 0, true), None);

    run_async(async {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .serve_connection(b, TracedServer::new(TracedImpl))
                .await;
        });
        let client = TracedClient::new(fdrpc::Client::new(a).unwrap());
        let handled = TraceContext::parse(&client.trace().await.unwrap()).unwrap();
        drop(client);
        server.await.unwrap();

        let answered = otel.answered.lock().unwrap().clone();
        let set = otel.set.lock().unwrap().clone();
        // The client asked for its span's ids once and sent exactly those.
        let [("client_call", sent), ("call", server_span)] = answered[..] else {
            panic!("{answered:?}");
        };
        assert_eq!(sent.trace_id(), 0xfeed);
        assert_eq!(set, [("call", sent)]);
        // The handler ran in the server span's own ids, of the caller's trace.
        assert_eq!(handled, server_span);
        assert_eq!(handled.trace_id(), 0xfeed);
        assert_ne!(handled.span_id(), sent.span_id());
    });
}
