//! What `tracing` sees of calls: the server's span of each call (service, method, seqid, peer,
//! fds in and out, trace id) around the handler's own events, the client's span, the trace id
//! both share (also across a handler's own calls), and connection failures in the
//! connection's span. Captured by a layer that records every span's fields.

mod common;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Fields by name, values as their `Debug` text without quotes.
type Fields = BTreeMap<String, String>;

#[derive(Default)]
struct FieldsVisitor(Fields);

impl Visit for FieldsVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

/// An event as captured: its level and fields, and the spans it was in, innermost first,
/// each with its name and fields at the time.
#[derive(Debug, Clone)]
struct Captured {
    level: tracing::Level,
    fields: Fields,
    spans: Vec<(String, Fields)>,
}

impl Captured {
    /// The fields of the span named `name` around the event.
    fn span(&self, name: &str) -> &Fields {
        &self
            .spans
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no `{name}` span around {self:?}"))
            .1
    }
}

/// Every event, and every span as it closed.
#[derive(Default)]
struct Capture {
    events: Mutex<Vec<Captured>>,
    closed: Mutex<Vec<(String, Fields)>>,
}

struct CaptureLayer(Arc<Capture>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CaptureLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut v = FieldsVisitor::default();
        attrs.record(&mut v);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(v.0);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                let mut v = FieldsVisitor(std::mem::take(fields));
                values.record(&mut v);
                *fields = v.0;
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let mut v = FieldsVisitor::default();
        event.record(&mut v);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|s| {
                        let fields = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name().to_owned(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.events.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            fields: v.0,
            spans,
        });
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .cloned()
                .unwrap_or_default();
            self.0
                .closed
                .lock()
                .unwrap()
                .push((span.name().to_owned(), fields));
        }
    }
}

/// The capture all tests of this binary share (a subscriber is process-wide: handlers run on
/// the runtime's threads). Tests tell their events apart by unique field values.
fn capture() -> &'static Arc<Capture> {
    static CAPTURE: OnceLock<Arc<Capture>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Arc::new(Capture::default());
        let subscriber = tracing_subscriber::registry().with(CaptureLayer(capture.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    })
}

/// The events `matches` picks, waiting up to five seconds for at least `n`.
fn events_where(n: usize, matches: impl Fn(&Captured) -> bool) -> Vec<Captured> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<_> = capture()
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches(e))
            .cloned()
            .collect();
        if found.len() >= n || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The events whose field `key` is `value`, waiting up to five seconds for at least `n`.
fn events_with(key: &str, value: &str, n: usize) -> Vec<Captured> {
    events_where(n, |e| e.fields.get(key).is_some_and(|v| v == value))
}

/// The first event `matches` picks, waiting up to five seconds for it.
fn first_event_where(matches: impl Fn(&Captured) -> bool) -> Captured {
    events_where(1, matches)
        .into_iter()
        .next()
        .expect("no such event within five seconds")
}

/// A service whose handlers log, and one that calls another.
mod services {
    use std::os::fd::OwnedFd;

    #[fdrpc::service]
    pub trait Notes {
        /// Logs `word`, returns `fd`.
        async fn note(&self, word: String, fd: OwnedFd) -> OwnedFd;
        /// 1, then a value that cannot be encoded.
        async fn overflow(&self) -> fdrpc::Stream<u64>;
    }

    pub struct NotesImpl;

    impl Notes for NotesImpl {
        async fn note(&self, word: String, fd: OwnedFd) -> OwnedFd {
            tracing::info!(word = word.as_str(), "noted");
            fd
        }
        async fn overflow(&self) -> fdrpc::Stream<u64> {
            fdrpc::Stream::iter(vec![1, u64::MAX])
        }
    }

    #[fdrpc::service]
    pub trait Relay {
        /// Logs `word`, then has the notes service note it too.
        async fn relay(&self, word: String) -> bool;
    }

    pub struct RelayImpl(pub NotesClient);

    impl Relay for RelayImpl {
        async fn relay(&self, word: String) -> bool {
            tracing::info!(relayed = word.as_str(), "relaying");
            let (fd, _) = std::io::pipe().unwrap();
            self.0.note(word, fd.into()).await.is_ok()
        }
    }
}

use services::*;

fn notes_client() -> (NotesClient, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let _ = fdrpc::Server::new()
            .serve_connection(b, NotesServer::new(NotesImpl))
            .await;
    });
    (NotesClient::new(fdrpc::Client::new(a).unwrap()), server)
}

fn pipe_fd() -> OwnedFd {
    std::io::pipe().unwrap().0.into()
}

#[test]
fn a_user_event_inside_a_handler_carries_the_call_span() {
    capture();
    run_async(async {
        let (client, server) = notes_client();
        let fd = client.note("alpha".into(), pipe_fd()).await.unwrap();
        drop((client, fd));
        server.await.unwrap();
    });
    let events = events_with("word", "alpha", 1);
    assert_eq!(events.len(), 1, "{events:?}");
    let call = events[0].span("call");
    assert_eq!(call["service"], "Notes");
    assert_eq!(call["method"], "note");
    assert_eq!(call["seqid"], "1");
    assert_eq!(call["peer_pid"], std::process::id().to_string());
    assert_eq!(
        call["peer_uid"],
        rustix::process::getuid().as_raw().to_string()
    );
    assert_eq!(call["fds_in"], "1");
    assert_eq!(call["trace_id"].len(), 32, "{call:?}");
    // The span as it closed: the reply carried one fd.
    let closed = capture().closed.lock().unwrap().clone();
    let closed = closed
        .iter()
        .find(|(name, f)| name == "call" && f.get("trace_id") == call.get("trace_id"))
        .expect("the call span closed");
    assert_eq!(closed.1["fds_out"], "1");
    // The client's span of the same call, as it closed: its method, sequence id and trace.
    let (_, client_call) = capture()
        .closed
        .lock()
        .unwrap()
        .iter()
        .find(|(name, f)| name == "client_call" && f.get("trace_id") == call.get("trace_id"))
        .cloned()
        .expect("the client's span of the call closed");
    assert_eq!(client_call["method"], "note");
    assert_eq!(client_call["seqid"], "1");
}

#[test]
fn the_trace_id_travels_with_the_call_and_with_the_calls_its_handler_makes() {
    capture();
    run_async(async {
        let (notes, notes_server) = notes_client();
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let relay_server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .serve_connection(b, RelayServer::new(RelayImpl(notes)))
                .await;
        });
        let relay = RelayClient::new(fdrpc::Client::new(a).unwrap());
        let cx =
            fdrpc::TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .unwrap();
        // Made inside a trace, the call carries it on (a client outside any trace starts a
        // new one, as the test above shows).
        assert!(cx.attach(relay.relay("beta".into())).await.unwrap());
        drop(relay);
        relay_server.await.unwrap();
        notes_server.await.unwrap();
    });
    let relayed = events_with("relayed", "beta", 1);
    let noted = events_with("word", "beta", 1);
    assert_eq!((relayed.len(), noted.len()), (1, 1));
    let trace = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(relayed[0].span("call")["trace_id"], trace);
    assert_eq!(relayed[0].span("call")["service"], "Relay");
    // The relay's own call to the notes service: its client span inside the relay's call
    // span, and the notes handler's span, all of the same trace.
    assert_eq!(noted[0].span("call")["trace_id"], trace);
    assert_eq!(noted[0].span("call")["service"], "Notes");
}

#[test]
fn a_call_that_comes_without_a_trace_starts_one_that_its_handler_carries_on() {
    capture();
    run_async(async {
        let (notes, notes_server) = notes_client();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let b = tokio::net::UnixStream::from_std(b).unwrap();
        let relay_server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .serve_connection(b, RelayServer::new(RelayImpl(notes)))
                .await;
        });
        // A caller that traces nothing (no subscriber on its thread, no current trace)
        // sends no `traceparent`.
        tokio::task::spawn_blocking(move || {
            let relay = RelayBlockingClient::from_std(a);
            let none = tracing::subscriber::NoSubscriber::default();
            assert!(
                tracing::subscriber::with_default(none, || relay.relay("delta".into())).unwrap()
            );
        })
        .await
        .unwrap();
        relay_server.await.unwrap();
        notes_server.await.unwrap();
    });
    let relayed = events_with("relayed", "delta", 1);
    let noted = events_with("word", "delta", 1);
    assert_eq!((relayed.len(), noted.len()), (1, 1));
    // The relay started a trace: its span records it, and its own call carried it to the
    // notes service.
    let trace = &relayed[0].span("call")["trace_id"];
    assert_eq!(trace.len(), 32, "{trace}");
    assert_eq!(&noted[0].span("call")["trace_id"], trace);
}

#[test]
fn a_blocking_call_carries_its_trace_too() {
    capture();
    run_async(async {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let b = tokio::net::UnixStream::from_std(b).unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .serve_connection(b, NotesServer::new(NotesImpl))
                .await;
        });
        tokio::task::spawn_blocking(move || {
            let client = NotesBlockingClient::from_std(a);
            let cx = fdrpc::TraceContext::new_root();
            let fd = cx.scope(|| client.note("gamma".into(), pipe_fd())).unwrap();
            drop(fd);
            let noted = events_with("word", "gamma", 1);
            assert_eq!(noted.len(), 1);
            assert_eq!(
                noted[0].span("call")["trace_id"],
                format!("{:032x}", cx.trace_id())
            );
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

#[test]
fn a_connection_failure_is_a_warning_in_the_connection_span() {
    use common::raw::*;
    let _check = fd_leak_check();
    capture();
    let server = ThreadServer::start(fdrpc::Server::new, || NotesServer::new(NotesImpl));
    let mut raw = Raw::new(std::os::unix::net::UnixStream::connect(&server.path).unwrap());
    // A stream frame of a kind that does not exist: the connection is closed.
    raw.send(
        &frame(5, &[("fdrpc-stream", "teleport")], &call("note", 5, &[0])),
        &[],
    );
    raw.expect_closed_within(Duration::from_secs(5));
    let warning = first_event_where(|e| {
        e.level == tracing::Level::WARN
            && e.fields
                .get("error")
                .is_some_and(|v| v.contains("fdrpc-stream"))
    });
    let connection = warning.span("connection");
    assert_eq!(connection["peer_pid"], std::process::id().to_string());
}

#[test]
fn an_unencodable_stream_item_is_logged_as_an_error_in_the_call_span() {
    use futures::StreamExt;
    capture();
    run_async(async {
        let (client, server) = notes_client();
        let mut items = client.overflow().await.unwrap();
        assert_eq!(items.next().await.unwrap().unwrap(), 1);
        assert!(items.next().await.unwrap().is_err());
        drop((client, items));
        server.await.unwrap();
    });
    let max = u64::MAX.to_string();
    let logged = first_event_where(|e| e.fields.get("error").is_some_and(|v| v.contains(&max)));
    assert_eq!(logged.level, tracing::Level::ERROR);
    assert_eq!(logged.span("call")["method"], "overflow");
}
