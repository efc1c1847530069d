//! Per-call hooks: `before` refuses calls with a typed error (per-method authorization by uid,
//! load shedding) without running their handlers; `after` sees how every call ended, how long
//! it took and how many fds went each way.

mod common;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::*;
use common::*;
use fdrpc::{ApplicationError, ApplicationErrorKind, CallEnd, CallHook, CallOutcome, Context};

mod gate {
    use std::os::fd::OwnedFd;

    #[derive(fdrpc::Message, Debug)]
    pub struct Oops {
        pub why: String,
    }

    #[fdrpc::service]
    pub trait Gate {
        /// Returns the fds it was given.
        async fn hand_back(&self, fds: Vec<OwnedFd>) -> Vec<OwnedFd>;
        /// Refused by the hook for the test's own uid.
        async fn admin(&self) -> i32;
        /// Panics.
        async fn boom(&self) -> i32;
        /// Waits `ms` milliseconds.
        async fn wait(&self, ms: u64);
        /// Fails with the declared exception.
        async fn oops(&self) -> Result<(), Oops>;
        /// Keeps nothing.
        #[oneway]
        async fn fire(&self, fd: OwnedFd);
    }

    pub struct GateImpl;

    impl Gate for GateImpl {
        async fn hand_back(&self, fds: Vec<OwnedFd>) -> Vec<OwnedFd> {
            fds
        }
        async fn admin(&self) -> i32 {
            panic!("the hook lets no one here")
        }
        async fn boom(&self) -> i32 {
            panic!("boom")
        }
        async fn wait(&self, ms: u64) {
            // A thread's timer, not tokio's: the suite also runs against the blocking server.
            let (done, wait) = futures::channel::oneshot::channel::<()>();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let _ = done.send(());
            });
            let _ = wait.await;
        }
        async fn oops(&self) -> Result<(), Oops> {
            Err(Oops {
                why: "on purpose".into(),
            })
        }
        async fn fire(&self, fd: OwnedFd) {
            drop(fd);
        }
    }
}

use gate::*;

/// Refuses `admin` to the test's own uid (anyone not root would be refused the same way), and
/// records how every call ended.
#[derive(Default)]
struct Recorder {
    ends: Mutex<Vec<(String, CallEnd)>>,
}

impl CallHook for Recorder {
    fn before(&self, call: &Context) -> Result<(), ApplicationError> {
        if call.method() == "admin" && call.peer().uid() == rustix::process::getuid().as_raw() {
            return Err(ApplicationError::new(
                ApplicationErrorKind::Unknown,
                format!(
                    "permission denied: uid {} may not call admin",
                    call.peer().uid()
                ),
            ));
        }
        assert_eq!(call.service(), "Gate");
        Ok(())
    }

    fn after(&self, call: &Context, end: &CallEnd) {
        self.ends
            .lock()
            .unwrap()
            .push((call.method().to_owned(), end.clone()));
    }
}

impl Recorder {
    /// The ends recorded for `method`, waiting up to five seconds for at least `n`.
    fn ends_of(&self, method: &str, n: usize) -> Vec<CallEnd> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let ends: Vec<_> = self
                .ends
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, e)| e.clone())
                .collect();
            if ends.len() >= n || std::time::Instant::now() > deadline {
                return ends;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn only_end_of(&self, method: &str) -> CallEnd {
        let ends = self.ends_of(method, 1);
        assert_eq!(ends.len(), 1, "{method}: {ends:?}");
        ends.into_iter().next().unwrap()
    }
}

fn gate(hook: Arc<Recorder>) -> (GateClient, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let _ = fdrpc::Server::new()
            .hook(hook)
            .serve_connection(b, GateServer::new(GateImpl))
            .await;
    });
    (GateClient::new(fdrpc::Client::new(a).unwrap()), server)
}

#[test]
fn before_refuses_by_method_and_uid_with_a_typed_error_and_the_handler_never_runs() {
    let hook = Arc::new(Recorder::default());
    run_async(async {
        let (client, server) = gate(hook.clone());
        match client.admin().await {
            Err(fdrpc::RpcError::Application(e)) => {
                assert_eq!(e.kind, ApplicationErrorKind::Unknown);
                assert!(e.message.starts_with("permission denied: uid"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Other methods run; the connection goes on.
        assert_eq!(client.hand_back(Vec::new()).await.unwrap().len(), 0);
        drop(client);
        server.await.unwrap();
    });
    let end = hook.only_end_of("admin");
    assert_eq!(
        end.outcome,
        CallOutcome::Refused(ApplicationErrorKind::Unknown)
    );
}

#[test]
fn after_sees_every_outcome_with_its_fds_and_duration() {
    let hook = Arc::new(Recorder::default());
    run_async(async {
        let (client, server) = gate(hook.clone());
        let fds = client.hand_back(numbered(3)).await.unwrap();
        assert_eq!(fds.len(), 3);
        drop(fds);
        assert!(matches!(
            client.boom().await,
            Err(fdrpc::RpcError::Application(e)) if e.kind == ApplicationErrorKind::InternalError
        ));
        client.wait(60).await.unwrap();
        assert!(client.oops().await.unwrap_err().into_service().is_some());
        client.fire(memfd(b"x").into()).await.unwrap();
        // A call its client gives up on.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(30),
            client.without_timeout().wait(60_000),
        )
        .await;
        assert!(gave_up.is_err());
        drop(client);
        server.await.unwrap();
    });
    let handed = hook.only_end_of("hand_back");
    assert_eq!(
        (handed.outcome, handed.fds_in, handed.fds_out),
        (CallOutcome::Ok, 3, 3)
    );
    assert_eq!(hook.only_end_of("boom").outcome, CallOutcome::Panicked);
    assert_eq!(hook.only_end_of("oops").outcome, CallOutcome::ServiceError);
    let fire = hook.only_end_of("fire");
    assert_eq!(
        (fire.outcome, fire.fds_in, fire.fds_out),
        (CallOutcome::Ok, 1, 0)
    );
    let waits = hook.ends_of("wait", 2);
    assert_eq!(waits.len(), 2, "{waits:?}");
    let finished = waits.iter().find(|e| e.outcome == CallOutcome::Ok).unwrap();
    assert!(
        finished.duration >= Duration::from_millis(60),
        "{finished:?}"
    );
    assert!(
        waits.iter().any(|e| e.outcome == CallOutcome::Cancelled),
        "{waits:?}"
    );
}

#[test]
fn after_sees_a_deadline_pass_and_arguments_that_do_not_decode() {
    let _check = fd_leak_check();
    let hook = Arc::new(Recorder::default());
    let server = ThreadServer::start(
        {
            let hook = hook.clone();
            move || fdrpc::Server::new().hook(hook)
        },
        || GateServer::new(GateImpl),
    );
    let mut raw = Raw::new(std::os::unix::net::UnixStream::connect(&server.path).unwrap());
    // `wait { 1: i64 ms = 5000 }` with a 50 ms deadline; nothing cancels it.
    let args = [0x16, 0x90, 0x4e, 0x00];
    raw.send(
        &frame(1, &[("client_timeout", "50")], &call("wait", 1, &args)),
        &[],
    );
    raw.expect_application_error(ApplicationErrorKind::Timeout);
    // `hand_back` whose list holds a string.
    raw.send(
        &frame(2, &[], &call("hand_back", 2, &[0x19, 0x18, 0x00])),
        &[],
    );
    raw.expect_application_error(ApplicationErrorKind::ProtocolError);
    let wait = hook.only_end_of("wait");
    assert_eq!(wait.outcome, CallOutcome::TimedOut);
    assert!(wait.duration >= Duration::from_millis(50), "{wait:?}");
    assert_eq!(
        hook.only_end_of("hand_back").outcome,
        CallOutcome::Failed(ApplicationErrorKind::ProtocolError)
    );
}

/// Sheds every call beyond the first `allowed`.
struct Shedder {
    allowed: usize,
    seen: AtomicUsize,
}

impl CallHook for Shedder {
    fn before(&self, _: &Context) -> Result<(), ApplicationError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(ApplicationError::new(
                ApplicationErrorKind::Loadshedding,
                "busy",
            ));
        }
        Ok(())
    }
}

/// Panics in both.
struct Broken;

impl CallHook for Broken {
    fn before(&self, call: &Context) -> Result<(), ApplicationError> {
        if call.method() == "boom" {
            panic!("hook bug");
        }
        Ok(())
    }
    fn after(&self, _: &Context, _: &CallEnd) {
        panic!("hook bug");
    }
}

#[test]
fn hooks_run_in_order_a_refusal_is_the_clients_error_and_a_panicking_hook_refuses() {
    run_async(async {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .hook(Broken)
                .hook(Shedder {
                    allowed: 2,
                    seen: AtomicUsize::new(0),
                })
                .serve_connection(b, GateServer::new(GateImpl))
                .await;
        });
        let client = GateClient::new(fdrpc::Client::new(a).unwrap());
        // A hook that panics in `before` refuses the call; the hooks after it never see it.
        assert!(matches!(
            client.boom().await,
            Err(fdrpc::RpcError::Application(e))
                if e.kind == ApplicationErrorKind::InternalError && e.message == "a call hook failed"
        ));
        let fd: OwnedFd = memfd(b"y").into();
        assert_eq!(client.hand_back(vec![fd]).await.unwrap().len(), 1);
        client.wait(0).await.unwrap();
        match client.wait(0).await {
            Err(fdrpc::RpcError::Application(e)) => {
                assert_eq!(
                    (e.kind, e.message.as_str()),
                    (ApplicationErrorKind::Loadshedding, "busy")
                );
            }
            other => panic!("{other:?}"),
        }
        drop(client);
        server.await.unwrap();
    });
}

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/metrics.rs"]
mod metrics_example;

#[test]
fn the_metrics_example_exports_counts_and_latencies_by_outcome() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let mut text = String::new();
    run_async(async {
        text = metrics_example::run(&handle).await;
    });
    for line in [
        r#"fdrpc_calls_total{service="Files",method="open",outcome="service_error"} 1"#,
        r#"fdrpc_calls_total{service="Files",method="forbidden",outcome="refused"} 1"#,
        r#"fdrpc_calls_total{service="Files",method="slow",outcome="ok"} 1"#,
        r#"fdrpc_call_duration_seconds_count{service="Files",method="slow"} 2"#,
        r#"fdrpc_call_duration_seconds_count{service="Files",method="open"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    // The call that timed out: the server's deadline or the client's cancel, whichever came
    // first.
    assert!(
        text.contains(r#"method="slow",outcome="timed_out"} 1"#)
            || text.contains(r#"method="slow",outcome="cancelled"} 1"#),
        "{text}"
    );
}

/// A service whose method `list` travels as `entries` (`list` is a Thrift reserved word).
mod renamed {
    #[fdrpc::service(rename = "Catalog")]
    pub trait Catalogue {
        /// Refused by the hook below, whatever its wire name.
        #[fdrpc(rename = "entries")]
        async fn list(&self, cx: &fdrpc::Context) -> i32;
        /// Says which method its context names.
        async fn get_entry(&self, cx: &fdrpc::Context) -> String;
    }

    pub struct CatalogueImpl;

    impl Catalogue for CatalogueImpl {
        async fn list(&self, _cx: &fdrpc::Context) -> i32 {
            panic!("the hook lets no one here")
        }
        async fn get_entry(&self, cx: &fdrpc::Context) -> String {
            format!("{:?}", CatalogueMethod::of(cx))
        }
    }
}

/// Refuses `Catalogue::list` to everyone, written against the method, not its wire name.
struct NoListing;

impl CallHook for NoListing {
    fn before(&self, call: &Context) -> Result<(), ApplicationError> {
        if renamed::CatalogueMethod::of(call) == Some(renamed::CatalogueMethod::List) {
            return Err(ApplicationError::new(
                ApplicationErrorKind::Unknown,
                "permission denied: no listing",
            ));
        }
        Ok(())
    }
}

#[test]
fn a_hook_written_with_the_typed_method_follows_a_rename() {
    use renamed::CatalogueMethod;
    assert_eq!(CatalogueMethod::List.name(), "entries");
    assert_eq!(CatalogueMethod::GetEntry.name(), "get_entry");
    assert_eq!(
        CatalogueMethod::from_name("entries"),
        Some(CatalogueMethod::List)
    );
    assert_eq!(
        CatalogueMethod::from_name("list"),
        None,
        "the Rust name does not travel"
    );
    assert_eq!(
        CatalogueMethod::ALL,
        [CatalogueMethod::List, CatalogueMethod::GetEntry]
    );
    assert_eq!(CatalogueMethod::SERVICE, "Catalog");
    assert_eq!(CatalogueMethod::List.to_string(), "entries");
    run_async(async {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .hook(NoListing)
                .serve_connection(b, renamed::CatalogueServer::new(renamed::CatalogueImpl))
                .await;
        });
        let client = renamed::CatalogueClient::new(fdrpc::Client::new(a).unwrap());
        match client.list().await {
            Err(fdrpc::RpcError::Application(e)) => {
                assert_eq!(e.message, "permission denied: no listing");
            }
            other => panic!("the renamed method slipped past the hook: {other:?}"),
        }
        assert_eq!(client.get_entry().await.unwrap(), "Some(GetEntry)");
        drop(client);
        server.await.unwrap();
    });
}
