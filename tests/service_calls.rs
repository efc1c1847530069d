//! Every RPC shape through a real server, with fds both ways, checked by identity and by the
//! process's fd count (client and server share this process).

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use common::*;
use conformance::{
    Bundle, ConformanceBlockingClient, ConformanceClient, ConformanceImpl, ConformanceServer,
};

/// A server on one end of a socketpair; the returned handle finishes when the connection
/// does, after every handler and reply.
fn serve_pair() -> (ConformanceClient, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let _ = fdrpc::Server::new()
            .serve_connection(b, ConformanceServer::new(ConformanceImpl::default()))
            .await;
    });
    (
        ConformanceClient::new(fdrpc::Client::new(a).unwrap()),
        server,
    )
}

fn bundle(label: &str, n: usize, spare: bool) -> (Bundle, Vec<(u64, u64)>) {
    let fds: Vec<OwnedFd> = (0..n)
        .map(|k| memfd(format!("{label}:{k}").as_bytes()).into())
        .collect();
    let spare = spare.then(|| OwnedFd::from(memfd(format!("{label}:spare").as_bytes())));
    let mut ids: Vec<_> = fds.iter().map(ino).collect();
    if let Some(s) = &spare {
        ids.push(ino(s));
    }
    (
        Bundle {
            label: label.into(),
            fds,
            spare,
        },
        ids,
    )
}

fn check_bundle(b: &Bundle, label: &str, ids: &[(u64, u64)]) {
    assert_eq!(b.label, label);
    let mut got: Vec<_> = b.fds.iter().map(ino).collect();
    if let Some(s) = &b.spare {
        got.push(ino(s));
        assert_eq!(contents(s), format!("{label}:spare").as_bytes());
        assert!(is_cloexec(s));
    }
    assert_eq!(got, ids, "not the same files");
    for (k, fd) in b.fds.iter().enumerate() {
        assert_eq!(contents(fd), format!("{label}:{k}").as_bytes());
        assert!(is_cloexec(fd));
    }
}

#[test]
fn echo_with_0_1_and_many_fds_both_ways() {
    run_async(async {
        let (client, server) = serve_pair();
        for (n, spare) in [(0, false), (1, false), (0, true), (3, true), (300, true)] {
            let label = format!("echo{n}");
            let (b, ids) = bundle(&label, n, spare);
            let keep: Vec<OwnedFd> = b.fds.iter().map(|f| f.try_clone().unwrap()).collect();
            let back = client.echo(b).await.unwrap();
            check_bundle(&back, &label, &ids);
            for (sent, got) in keep.iter().zip(&back.fds) {
                assert!(same_description(sent, got));
            }
        }
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn open_returns_an_fd_or_a_failure() {
    run_async(async {
        let (client, server) = serve_pair();
        let fd = client.open("/proc/self/exe".into()).await.unwrap();
        assert!(is_cloexec(&fd));
        assert_eq!(
            rustix::fs::fstat(&fd).unwrap().st_size,
            std::fs::metadata("/proc/self/exe").unwrap().len() as i64
        );
        drop(fd);
        match client.open("/definitely/not/here".into()).await {
            Err(fdrpc::CallError::Service(f)) => {
                assert!(f.message.contains("No such file"), "{}", f.message);
                assert!(f.log.is_none());
            }
            other => panic!("expected a Failure, got {other:?}"),
        }
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn errors_carry_fds() {
    run_async(async {
        let (client, server) = serve_pair();
        match client.fail("disk on fire".into()).await {
            Err(fdrpc::CallError::Service(f)) => {
                assert_eq!(f.message, "disk on fire");
                let log = f.log.expect("the failure carries its log");
                assert_eq!(contents(&log), b"disk on fire");
                assert!(is_cloexec(&log));
            }
            other => panic!("expected a Failure, got {other:?}"),
        }
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn oneway_deposits_are_seen_by_a_later_withdraw() {
    run_async(async {
        let (client, server) = serve_pair();
        let mut ids = Vec::new();
        for i in 0..50 {
            let f = memfd(format!("deposit {i}").as_bytes());
            ids.push(ino(&f));
            client.deposit(format!("k{i}"), f.into()).await.unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            let fd = client
                .withdraw(format!("k{i}"))
                .await
                .unwrap()
                .expect("deposited");
            assert_eq!(ino(&fd), *id);
            assert_eq!(contents(&fd), format!("deposit {i}").as_bytes());
        }
        assert!(client.withdraw("k0".into()).await.unwrap().is_none());
        drop(client);
        server.await.unwrap();
    });
}

/// A oneway goes out as a ONEWAY message, and its caller goes on without a reply: here
/// the peer is a raw socket that never answers.
#[test]
fn a_oneway_is_sent_as_one_and_waits_for_no_reply() {
    // (`run_async` checks the fd count before and after.)
    run_async(async {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let a = tokio::net::UnixStream::from_std(a).unwrap();
        let client = ConformanceClient::new(fdrpc::Client::new(a).unwrap());
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            client.deposit("k".into(), memfd(b"kept").into()),
        )
        .await;
        sent.expect("the oneway waited for a reply").unwrap();
        client.client().flush().await;
        let mut raw = common::raw::Raw::new(b);
        match raw.next(Duration::from_secs(30)) {
            common::raw::Got::Reply { ty, name, fds, .. } => {
                assert_eq!(ty, fdrpc::codec::MessageType::Oneway);
                assert_eq!(name, "deposit");
                assert_eq!(fds.len(), 1);
                assert_eq!(contents(&fds[0]), b"kept");
            }
            other => panic!("expected the oneway's frame, got {other:?}"),
        }
    });
}

/// A call's future is what a caller keeps per call in flight (and moves into a task or a
/// `FuturesUnordered`): the plain call path keeps it small. (It was 1336 bytes when plain
/// calls shared the sink and stream machinery; the bound leaves room for compiler changes.)
#[test]
fn a_calls_future_stays_small() {
    run_async(async {
        let (client, server) = serve_pair();
        let call = client.whoami();
        let size = std::mem::size_of_val(&call);
        assert!(size <= 768, "a call's future is {size} bytes");
        drop(call);
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn sixty_four_concurrent_calls_get_their_own_fds() {
    run_async(async {
        let (client, server) = serve_pair();
        for round in 0..5 {
            let calls = (0..64).map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let label = format!("r{round}c{i}");
                    let (b, ids) = bundle(&label, i % 4, i % 3 == 0);
                    let back = client.echo(b).await.unwrap();
                    check_bundle(&back, &label, &ids);
                })
            });
            for c in futures::future::join_all(calls).await {
                c.unwrap();
            }
        }
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn peer_credentials_are_the_callers() {
    run_async(async {
        let (client, server) = serve_pair();
        let me = client.whoami().await.unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert_eq!(me.uid, rustix::process::getuid().as_raw() as i32);
        assert_eq!(me.gid, rustix::process::getgid().as_raw() as i32);
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn an_authorization_hook_can_refuse_the_uid() {
    run_async(async {
        let dir = scratch_dir("calls");
        let path = dir.join("auth.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let me = rustix::process::getuid().as_raw();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            fdrpc::Server::new()
                .authorize(move |peer| peer.uid() != me)
                .serve_with_shutdown(
                    listener,
                    ConformanceServer::new(ConformanceImpl::default()),
                    async move {
                        let _ = stop_rx.await;
                    },
                ),
        );
        let client = ConformanceClient::connect(&path).await.unwrap();
        let err = client.whoami().await.err().expect("refused");
        assert!(matches!(err, fdrpc::RpcError::Connection(_)), "{err}");
        drop(client);
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}

#[test]
fn the_blocking_client_does_everything() {
    run_async(async {
        let (a, server) = serve_for_blocking(ConformanceServer::new(ConformanceImpl::default()));
        tokio::task::spawn_blocking(move || {
            let client = ConformanceBlockingClient::from_std(a);
            for (n, spare) in [(0, false), (1, true), (5, true), (254, false)] {
                let label = format!("blocking{n}");
                let (b, ids) = bundle(&label, n, spare);
                check_bundle(&client.echo(b).unwrap(), &label, &ids);
            }
            let fd = client.open("/proc/self/exe".into()).unwrap();
            assert!(is_cloexec(&fd));
            let f = client
                .fail("blocked".into())
                .unwrap_err()
                .into_service()
                .unwrap();
            assert_eq!(contents(f.log.as_ref().unwrap()), b"blocked");
            client.deposit("b".into(), memfd(b"kept").into()).unwrap();
            let kept = client.withdraw("b".into()).unwrap().unwrap();
            assert_eq!(contents(&kept), b"kept");
            assert_eq!(client.whoami().unwrap().pid, std::process::id() as i32);
            assert_eq!(
                client.client().introspect().unwrap(),
                <ConformanceBlockingClient as fdrpc::Described>::idl()
            );
            // Several threads share one blocking client.
            std::thread::scope(|s| {
                for t in 0..4 {
                    let client = client.clone();
                    s.spawn(move || {
                        for i in 0..20 {
                            let label = format!("t{t}i{i}");
                            let (b, ids) = bundle(&label, 2, true);
                            check_bundle(&client.echo(b).unwrap(), &label, &ids);
                        }
                    });
                }
            });
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

/// Methods the conformance server does not have, and arguments it cannot decode, get a
/// `TApplicationException`; the connection keeps working.
mod mismatched {
    use super::*;

    #[derive(fdrpc::Message)]
    pub struct NotABundle {
        pub label: i64,
    }

    #[fdrpc::service(rename = "Conformance")]
    pub trait Other {
        async fn nonexistent(&self) -> i32;
        async fn echo(&self, bundle: NotABundle) -> i32;
        #[fdrpc(name = "withdraw")]
        async fn withdraw_with_fds(&self, key: String, stray: Vec<OwnedFd>) -> Option<OwnedFd>;
    }

    #[test]
    fn unknown_methods_and_bad_arguments_are_application_errors() {
        run_async(async {
            let (a, b) = tokio::net::UnixStream::pair().unwrap();
            let server = tokio::spawn(async move {
                let _ = fdrpc::Server::new()
                    .serve_connection(b, ConformanceServer::new(ConformanceImpl::default()))
                    .await;
            });
            let inner = fdrpc::Client::new(a).unwrap();
            let other = OtherClient::new(inner.clone());
            let conf = ConformanceClient::new(inner);
            match other.nonexistent().await {
                Err(fdrpc::RpcError::Application(e)) => {
                    assert_eq!(e.kind, fdrpc::ApplicationErrorKind::UnknownMethod)
                }
                r => panic!("{r:?}"),
            }
            match other.echo(NotABundle { label: 5 }).await {
                Err(fdrpc::RpcError::Application(e)) => {
                    assert_eq!(e.kind, fdrpc::ApplicationErrorKind::ProtocolError)
                }
                r => panic!("{r:?}"),
            }
            // fds sent to a method whose arguments hold none: refused, and closed.
            let stray: Vec<OwnedFd> = numbered(3);
            match other.withdraw_with_fds("x".into(), stray).await {
                Err(fdrpc::RpcError::Application(e)) => {
                    assert_eq!(e.kind, fdrpc::ApplicationErrorKind::ProtocolError)
                }
                r => panic!("{r:?}"),
            }
            // Still serving.
            assert_eq!(
                conf.echo(bundle("after", 1, false).0).await.unwrap().label,
                "after"
            );
            drop((other, conf));
            server.await.unwrap();
        });
    }
}

/// A service whose handlers misbehave.
mod misbehaving {
    use super::*;

    #[fdrpc::service]
    pub trait Slow {
        async fn sleep_then_fd(&self, millis: u64) -> OwnedFd;
        /// Blocks the server's thread: the caller's `cancel` is read only after the reply left.
        async fn block_then_fd(&self, millis: u64) -> OwnedFd;
        async fn panic(&self) -> i32;
    }

    pub struct SlowImpl;

    impl Slow for SlowImpl {
        async fn sleep_then_fd(&self, millis: u64) -> OwnedFd {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            memfd(b"late").into()
        }
        async fn block_then_fd(&self, millis: u64) -> OwnedFd {
            std::thread::sleep(Duration::from_millis(millis));
            memfd(b"late").into()
        }
        async fn panic(&self) -> i32 {
            panic!("handler bug")
        }
    }

    /// A hook that says when each call starts.
    struct Started(tokio::sync::mpsc::UnboundedSender<()>);

    impl fdrpc::CallHook for Started {
        fn before(&self, _: &fdrpc::Context) -> Result<(), fdrpc::ApplicationError> {
            let _ = self.0.send(());
            Ok(())
        }
    }

    fn serve() -> (SlowClient, tokio::task::JoinHandle<()>) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new()
                .serve_connection(b, SlowServer::new(SlowImpl))
                .await;
        });
        (SlowClient::new(fdrpc::Client::new(a).unwrap()), server)
    }

    #[test]
    fn a_panicking_handler_fails_only_its_call() {
        run_async(async {
            let (client, server) = serve();
            match client.panic().await {
                Err(fdrpc::RpcError::Application(e)) => {
                    assert_eq!(e.kind, fdrpc::ApplicationErrorKind::InternalError)
                }
                r => panic!("{r:?}"),
            }
            let fd = client.sleep_then_fd(0).await.unwrap();
            assert_eq!(contents(&fd), b"late");
            drop((client, fd));
            server.await.unwrap();
        });
    }

    /// Replies that come after their call timed out, or after its future was dropped, are
    /// discarded at once with their fds, while the connection lives on.
    #[test]
    fn timeouts_and_dropped_calls_close_late_fds() {
        // The server runs on a thread of its own and its handler blocks that thread, so the
        // replies really come late (a `cancel` cannot stop a handler that is not polled).
        let _check = fd_leak_check();
        let server =
            ThreadServer::start_current_thread(fdrpc::Server::new, || SlowServer::new(SlowImpl));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = SlowClient::connect(&server.path).await.unwrap();
            // Warm up: the connection's tasks and buffers exist before the baseline.
            drop(client.block_then_fd(0).await.unwrap());
            let baseline = fd_count();
            let quick = client.with_timeout(Duration::from_millis(20));
            match quick.block_then_fd(200).await {
                Err(fdrpc::RpcError::Timeout(_)) => {}
                r => panic!("{r:?}"),
            }
            // A call whose future is dropped.
            let dropped =
                tokio::time::timeout(Duration::from_millis(20), client.block_then_fd(200)).await;
            assert!(dropped.is_err());
            // The server answers in order: once this reply is here, both late replies were
            // received before it, and their fds must be closed already.
            let fd = client.block_then_fd(0).await.unwrap();
            assert_eq!(contents(&fd), b"late");
            drop(fd);
            // The baseline may include an fd the server's thread was about to close; with
            // the late replies' fds kept, the count stays above it.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while fd_count() > baseline {
                assert!(
                    std::time::Instant::now() < deadline,
                    "late replies' fds kept: {} open, {baseline} before",
                    fd_count()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop((client, quick));
        });
        drop((rt, server));
    }

    #[test]
    fn graceful_shutdown_finishes_calls_in_flight() {
        run_async(async {
            let dir = scratch_dir("calls");
            let path = dir.join("slow.sock");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            // Tells the test when the call has started on the server.
            let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
            let server = tokio::spawn(
                fdrpc::Server::new()
                    .hook(Started(started_tx))
                    .serve_with_shutdown(listener, SlowServer::new(SlowImpl), async move {
                        let _ = stop_rx.await;
                    }),
            );
            // A connection that made its call and waits, idle, when the server stops: its
            // reader is waiting for data, and must be told.
            let idle = SlowClient::connect(&path).await.unwrap();
            drop(idle.sleep_then_fd(0).await.unwrap());
            // (Its call started too.)
            started_rx.recv().await.unwrap();
            let client = SlowClient::connect(&path).await.unwrap();
            let call = tokio::spawn({
                let client = client.clone();
                async move { client.sleep_then_fd(200).await }
            });
            tokio::time::timeout(Duration::from_secs(5), started_rx.recv())
                .await
                .expect("the call never started");
            stop_tx.send(()).unwrap();
            let fd = call.await.unwrap().expect("the call in flight finishes");
            assert_eq!(contents(&fd), b"late");
            // The idle reader is told of the stop: the server returns, it does not wait for
            // the client to go.
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the server did not return after its shutdown")
                .unwrap()
                .unwrap();
            // The connections are closed now.
            assert!(client.sleep_then_fd(0).await.is_err());
            assert!(idle.sleep_then_fd(0).await.is_err());
            drop((client, idle, fd));
        });
    }
}

/// The server process dies with calls pending.
mod server_killed {
    use super::*;

    const CHILD_ENV: &str = "FDRPC_TEST_CHILD_SOCKET";

    /// Runs in a child process (re-executed test binary): serves the slow service.
    #[test]
    #[ignore = "runs only as the child of server_killed_mid_call"]
    fn child_server() {
        let Ok(path) = std::env::var(CHILD_ENV) else {
            return;
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let _ = fdrpc::Server::new()
                .serve(
                    listener,
                    misbehaving::SlowServer::new(misbehaving::SlowImpl),
                )
                .await;
        });
    }

    #[test]
    fn server_killed_mid_call() {
        run_async(async {
            let dir = scratch_dir("calls");
            let path = dir.join("child.sock");
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "server_killed::child_server",
                    "--ignored",
                    "--nocapture",
                ])
                .env(CHILD_ENV, &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let client = loop {
                match misbehaving::SlowClient::connect(&path).await {
                    Ok(c) => break c,
                    Err(e) => {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "the child server never listened: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            assert_eq!(contents(&client.sleep_then_fd(0).await.unwrap()), b"late");
            let pending: Vec<_> = (0..8)
                .map(|_| {
                    let c = client.clone();
                    tokio::spawn(async move { c.sleep_then_fd(60_000).await })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let killed = std::time::Instant::now();
            child.kill().unwrap();
            for p in pending {
                match p.await.unwrap() {
                    Err(fdrpc::RpcError::Connection(_)) => {}
                    r => panic!("{r:?}"),
                }
            }
            assert!(
                killed.elapsed() < Duration::from_secs(5),
                "pending calls failed slowly"
            );
            child.wait().unwrap();
            assert!(client.client().is_closed());
            drop(client);
        });
    }
}

#[allow(dead_code)]
fn unused(_: &dyn AsFd) {}

#[test]
fn peer_credentials_include_a_pidfd_where_the_kernel_has_one() {
    let _check = fd_leak_check();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let peer = fdrpc::PeerCredentials::of(&a).unwrap();
    assert_eq!(peer.pid(), std::process::id() as i32);
    assert_eq!(peer.uid(), rustix::process::getuid().as_raw());
    // SO_PEERPIDFD is Linux 6.5+; where it exists, the pidfd names the same process.
    if let Some(pidfd) = peer.pidfd() {
        let fdinfo = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pidfd)
        ))
        .unwrap();
        let pid_line = fdinfo.lines().find(|l| l.starts_with("Pid:")).unwrap();
        assert_eq!(
            pid_line.split_whitespace().nth(1).unwrap(),
            std::process::id().to_string()
        );
        assert!(is_cloexec(&pidfd));
    } else {
        // Required where the kernel has it: Linux 6.5 and later.
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(
            (major, minor) < (6, 5),
            "kernel {release} has SO_PEERPIDFD, but no pidfd came back"
        );
        eprintln!("no SO_PEERPIDFD on kernel {release}");
    }
}

/// A service whose methods take names the generated clients have items of.
mod clashing_names {
    use super::*;

    #[fdrpc::service]
    pub trait Named {
        /// A method that takes the name of the clients' `idl()`: the method wins.
        async fn idl(&self) -> String;
        async fn ping(&self, n: i32) -> i32;
    }

    pub struct NamedImpl;

    impl Named for NamedImpl {
        async fn idl(&self) -> String {
            "the service's own idl".into()
        }
        async fn ping(&self, n: i32) -> i32 {
            n + 1
        }
    }

    #[test]
    fn a_method_named_idl_takes_the_name_and_the_idl_stays_reachable() {
        run_async(async {
            let (a, b) = tokio::net::UnixStream::pair().unwrap();
            let server = tokio::spawn(async move {
                let _ = fdrpc::Server::new()
                    .serve_connection(b, NamedServer::new(NamedImpl))
                    .await;
            });
            let client = NamedClient::new(fdrpc::Client::new(a).unwrap());
            assert_eq!(client.idl().await.unwrap(), "the service's own idl");
            assert_eq!(client.ping(1).await.unwrap(), 2);
            let idl = <NamedClient as fdrpc::Described>::idl();
            assert!(idl.contains("service Named"), "{idl}");
            assert!(idl.contains("string idl()"), "{idl}");
            assert_eq!(<NamedBlockingClient as fdrpc::Described>::NAME, "Named");
            assert_eq!(client.client().introspect().await.unwrap(), idl);
            drop(client);
            server.await.unwrap();
        });
    }
}

/// Calls from several threads on one blocking client.
mod blocking_threads {
    use super::*;

    #[fdrpc::service]
    pub trait Gate {
        /// Returns once `parties` calls are inside it at the same time.
        async fn meet(&self, parties: i32) -> i32;
    }

    #[derive(Default)]
    pub struct GateImpl {
        inside: std::sync::Mutex<i32>,
        all_in: tokio::sync::Notify,
    }

    impl Gate for GateImpl {
        async fn meet(&self, parties: i32) -> i32 {
            let notified = self.all_in.notified();
            let here = {
                let mut inside = self.inside.lock().unwrap();
                *inside += 1;
                *inside
            };
            if here >= parties {
                self.all_in.notify_waiters();
            } else {
                notified.await;
            }
            here
        }
    }

    #[test]
    fn calls_from_threads_sharing_a_blocking_client_are_in_flight_together() {
        run_async(async {
            let (a, server) = serve_for_blocking(GateServer::new(GateImpl::default()));
            tokio::task::spawn_blocking(move || {
                // Each call returns only once all eight are in the server at once: calls that
                // took turns on the connection would time out instead.
                let client = GateBlockingClient::from_std(a).with_timeout(Duration::from_secs(10));
                let mut seen: Vec<i32> = std::thread::scope(|s| {
                    let threads: Vec<_> = (0..8)
                        .map(|_| {
                            let client = client.clone();
                            s.spawn(move || client.meet(8).unwrap())
                        })
                        .collect();
                    threads.into_iter().map(|t| t.join().unwrap()).collect()
                });
                seen.sort_unstable();
                assert_eq!(seen, (1..=8).collect::<Vec<_>>());
            })
            .await
            .unwrap();
            server.await.unwrap();
        });
    }
}

/// Stopping a server by dropping (aborting) what serves it.
mod aborted_server {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[fdrpc::service]
    pub trait Hold {
        /// Holds `fd` until the call is dropped; never returns.
        async fn hold(&self, fd: OwnedFd) -> i32;
    }

    #[derive(Default)]
    pub struct Seen {
        entered: AtomicUsize,
        dropped: AtomicUsize,
        changed: tokio::sync::Notify,
    }

    impl Seen {
        async fn wait(&self, what: impl Fn(&Seen) -> bool) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let notified = self.changed.notified();
                if what(self) {
                    return;
                }
                tokio::time::timeout_at(deadline, notified)
                    .await
                    .expect("the handlers did not get there within 5 s");
            }
        }
    }

    pub struct HoldImpl(Arc<Seen>);

    struct OnDrop(Arc<Seen>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
            self.0.changed.notify_waiters();
        }
    }

    impl Hold for HoldImpl {
        async fn hold(&self, fd: OwnedFd) -> i32 {
            let _guard = OnDrop(self.0.clone());
            self.0.entered.fetch_add(1, Ordering::SeqCst);
            self.0.changed.notify_waiters();
            let _fd = fd;
            std::future::pending().await
        }
    }

    #[test]
    fn aborting_the_server_ends_every_connection_within_a_second() {
        run_async(async {
            let dir = scratch_dir("calls");
            let path = dir.join("held.sock");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let seen = Arc::new(Seen::default());
            let server = tokio::spawn(
                fdrpc::Server::new().serve(listener, HoldServer::new(HoldImpl(seen.clone()))),
            );
            // Two clients without a timeout, each with a call the server holds.
            let client = HoldClient::connect(&path).await.unwrap();
            let call = tokio::spawn({
                let c = client.clone();
                async move { c.hold(memfd(b"async").into()).await }
            });
            let blocking = HoldBlockingClient::connect(&path).unwrap();
            let bcall =
                tokio::task::spawn_blocking(move || blocking.hold(memfd(b"blocking").into()));
            seen.wait(|s| s.entered.load(Ordering::SeqCst) == 2).await;
            server.abort();
            let ended = tokio::time::timeout(Duration::from_secs(1), call)
                .await
                .expect("the async call ended within a second")
                .unwrap();
            assert!(
                matches!(ended, Err(fdrpc::RpcError::Connection(_))),
                "{ended:?}"
            );
            let ended = tokio::time::timeout(Duration::from_secs(1), bcall)
                .await
                .expect("the blocking call ended within a second")
                .unwrap();
            assert!(
                matches!(ended, Err(fdrpc::RpcError::Connection(_))),
                "{ended:?}"
            );
            // The handlers' futures were dropped, and with them the fds they held.
            seen.wait(|s| s.dropped.load(Ordering::SeqCst) == 2).await;
            assert!(client.client().is_closed());
            drop(client);
        });
    }
}

/// Several services on one socket, the way Apache Thrift multiplexes them.
mod several_services {
    use super::*;

    #[fdrpc::service]
    pub trait Alpha {
        async fn ping(&self, n: i32) -> i32;
        async fn alpha_only(&self, fd: OwnedFd) -> i64;
    }

    #[fdrpc::service]
    pub trait Beta {
        async fn ping(&self, n: i32) -> i32;
        async fn beta_only(&self) -> i32;
    }

    pub struct AlphaImpl;
    impl Alpha for AlphaImpl {
        async fn ping(&self, n: i32) -> i32 {
            n + 1
        }
        async fn alpha_only(&self, fd: OwnedFd) -> i64 {
            rustix::fs::fstat(&fd).unwrap().st_size
        }
    }

    pub struct BetaImpl;
    impl Beta for BetaImpl {
        async fn ping(&self, n: i32) -> i32 {
            n + 100
        }
        async fn beta_only(&self) -> i32 {
            2
        }
    }

    fn unknown_method(e: &fdrpc::RpcError) -> &str {
        match e {
            fdrpc::RpcError::Application(a) => {
                assert_eq!(a.kind, fdrpc::ApplicationErrorKind::UnknownMethod);
                &a.message
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_services_share_a_socket_and_a_connection() {
        run_async(async {
            let (a, b) = tokio::net::UnixStream::pair().unwrap();
            let server = tokio::spawn(async move {
                let _ = fdrpc::Server::new()
                    .serve_connection(b, (AlphaServer::new(AlphaImpl), BetaServer::new(BetaImpl)))
                    .await;
            });
            let conn = fdrpc::Client::new(a).unwrap();
            let alpha = AlphaClient::multiplexed(conn.clone());
            let beta = BetaClient::multiplexed(conn.clone());
            // Concurrent calls to both, on one connection.
            let (x, y) = tokio::join!(alpha.ping(1), beta.ping(1));
            assert_eq!((x.unwrap(), y.unwrap()), (2, 101));
            assert_eq!(alpha.alpha_only(memfd(b"12345").into()).await.unwrap(), 5);
            // A plain name reaches the one service that has it; a shared one must be named.
            let plain = AlphaClient::new(conn.clone());
            assert_eq!(plain.alpha_only(memfd(b"1").into()).await.unwrap(), 1);
            assert_eq!(BetaClient::new(conn.clone()).beta_only().await.unwrap(), 2);
            let e = plain.ping(1).await.unwrap_err();
            assert!(unknown_method(&e).contains("Service:ping"), "{e}");
            // Introspection describes both, in one document.
            let idl = conn.introspect().await.unwrap();
            assert!(
                idl.contains("service Alpha {") && idl.contains("service Beta {"),
                "{idl}"
            );
            drop((alpha, beta, plain, conn));
            server.await.unwrap();
        });
    }

    #[test]
    fn a_single_service_takes_multiplexed_names_and_refuses_other_services() {
        run_async(async {
            let (a, server) = serve_for_blocking(AlphaServer::new(AlphaImpl));
            tokio::task::spawn_blocking(move || {
                let conn = fdrpc::BlockingClient::new(a);
                assert_eq!(
                    AlphaBlockingClient::multiplexed(conn.clone())
                        .ping(1)
                        .unwrap(),
                    2
                );
                assert_eq!(AlphaBlockingClient::new(conn.clone()).ping(2).unwrap(), 3);
                let e = BetaBlockingClient::multiplexed(conn.clone())
                    .beta_only()
                    .unwrap_err();
                assert!(unknown_method(&e).contains("no service `Beta`"), "{e}");
                // The connection goes on.
                assert_eq!(AlphaBlockingClient::new(conn).ping(3).unwrap(), 4);
            })
            .await
            .unwrap();
            server.await.unwrap();
        });
    }
}

/// A service behind an `Arc` is the same service: its IDL, its name (a multiplexed call
/// routes by it), its methods (a call is dispatched by them) and its description (what
/// introspection returns).
#[test]
fn a_service_behind_an_arc_serves_and_describes_itself() {
    run_async(async {
        let service = std::sync::Arc::new(ConformanceServer::new(ConformanceImpl::default()));
        assert_eq!(fdrpc::Service::idl(&*service), ConformanceClient::idl());
        assert_eq!(fdrpc::Service::idl(&service), ConformanceClient::idl());
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let _ = fdrpc::Server::new().serve_connection(b, service).await;
        });
        let untyped = fdrpc::Client::new(a).unwrap();
        let plain = ConformanceClient::new(untyped.clone());
        let multiplexed = ConformanceClient::multiplexed(untyped.clone());
        let me = std::process::id() as i32;
        assert_eq!(plain.whoami().await.unwrap().pid, me);
        assert_eq!(multiplexed.whoami().await.unwrap().pid, me);
        assert_eq!(
            untyped.introspect().await.unwrap(),
            ConformanceClient::idl()
        );
        drop((plain, multiplexed, untyped));
        server.await.unwrap();
    });
}
