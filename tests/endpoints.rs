//! Services as fields: `ClientEnd<P>` / `ServerEnd<P>` returned, passed, served, called back
//! and passed on; their lifetimes follow the connection; wrong fds are refused on arrival.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use fdrpc::{ClientEnd, Context, ServeEndpointError, ServerEnd};

#[derive(fdrpc::Message, Debug, PartialEq)]
pub struct Denied {
    pub reason: String,
}

/// What one user may do, and nothing more: the session a broker hands out.
#[fdrpc::service]
pub trait Session {
    /// The user this session was opened for.
    async fn user(&self) -> String;
    /// A file the user may read.
    async fn read(&self, name: String) -> Result<File, Denied>;
    /// Waits until the test opens the gate, then answers `n`.
    async fn after_gate(&self, n: i32) -> i32;
    /// The pid `cx.peer()` reports for this call.
    async fn peer_pid(&self, cx: &Context) -> i32;
    /// Whether `cx.peer()` has a pidfd.
    async fn peer_has_pidfd(&self, cx: &Context) -> bool;
}

/// A broker: checks its caller once, then hands out sessions.
#[fdrpc::service]
pub trait Broker {
    async fn open_session(
        &self,
        cx: &Context,
        user: String,
    ) -> Result<ClientEnd<SessionProtocol>, Denied>;
    /// Serves a session on a server end the caller made.
    async fn serve_session(
        &self,
        cx: &Context,
        end: ServerEnd<SessionProtocol>,
        user: String,
    ) -> Result<(), Denied>;
    /// Calls `listener` back `n` times while this call runs; returns the sum of its answers.
    async fn watch(&self, listener: ClientEnd<ListenerProtocol>, n: i32) -> i64;
    /// Calls through a session someone else was given.
    async fn relay(&self, session: ClientEnd<SessionProtocol>) -> String;
    /// Waits at the gate, then opens a session.
    async fn open_session_after_gate(
        &self,
        cx: &Context,
        user: String,
    ) -> Result<ClientEnd<SessionProtocol>, Denied>;
    /// A session per user, as a stream.
    async fn sessions(
        &self,
        cx: &Context,
        users: Vec<String>,
    ) -> fdrpc::Stream<ClientEnd<SessionProtocol>>;
}

/// A callback a client serves.
#[fdrpc::service]
pub trait Listener {
    async fn event(&self, i: i32) -> i32;
}

struct UserSession {
    user: String,
    gate: Arc<tokio::sync::Semaphore>,
    /// Calls waiting at the gate.
    waiting: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
}

impl Drop for UserSession {
    fn drop(&mut self) {
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}

impl Session for UserSession {
    async fn user(&self) -> String {
        self.user.clone()
    }
    async fn read(&self, name: String) -> Result<File, Denied> {
        if name == format!("{}.txt", self.user) {
            Ok(memfd(format!("{}'s notes", self.user).as_bytes()))
        } else {
            Err(Denied {
                reason: format!("{} may not read {name}", self.user),
            })
        }
    }
    async fn after_gate(&self, n: i32) -> i32 {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        n
    }
    async fn peer_pid(&self, cx: &Context) -> i32 {
        cx.peer().pid()
    }
    async fn peer_has_pidfd(&self, cx: &Context) -> bool {
        cx.peer().pidfd().is_some()
    }
}

#[derive(Clone)]
struct Brokerage {
    gate: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
    /// Sessions whose implementation was dropped.
    ended: Arc<AtomicUsize>,
}

impl Default for Brokerage {
    fn default() -> Self {
        Brokerage {
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            waiting: Arc::default(),
            ended: Arc::default(),
        }
    }
}

impl Brokerage {
    fn session(&self, cx: &Context, user: String) -> Result<UserSession, Denied> {
        // The one check: this process's own uid, and a known user.
        if cx.peer().uid() != rustix::process::getuid().as_raw() || user == "mallory" {
            return Err(Denied {
                reason: format!("no session for {user}"),
            });
        }
        Ok(UserSession {
            user,
            gate: self.gate.clone(),
            waiting: self.waiting.clone(),
            ended: self.ended.clone(),
        })
    }
}

fn refused(e: ServeEndpointError) -> Denied {
    Denied {
        reason: e.to_string(),
    }
}

impl Broker for Brokerage {
    async fn open_session(
        &self,
        cx: &Context,
        user: String,
    ) -> Result<ClientEnd<SessionProtocol>, Denied> {
        let session = self.session(cx, user)?;
        let (client, server) = fdrpc::endpoints::<SessionProtocol>().unwrap();
        cx.serve(server, session).map_err(refused)?;
        Ok(client)
    }
    async fn serve_session(
        &self,
        cx: &Context,
        end: ServerEnd<SessionProtocol>,
        user: String,
    ) -> Result<(), Denied> {
        let session = self.session(cx, user)?;
        cx.serve(end, session).map_err(refused)
    }
    async fn watch(&self, listener: ClientEnd<ListenerProtocol>, n: i32) -> i64 {
        let mut sum = 0;
        if tokio::runtime::Handle::try_current().is_ok() {
            let listener = listener.into_client().unwrap();
            for i in 0..n {
                sum += i64::from(listener.event(i).await.unwrap());
            }
        } else {
            // The blocking server runs handlers with no tokio reactor.
            let listener = listener.into_blocking_client();
            for i in 0..n {
                sum += i64::from(listener.event(i).unwrap());
            }
        }
        sum
    }
    async fn open_session_after_gate(
        &self,
        cx: &Context,
        user: String,
    ) -> Result<ClientEnd<SessionProtocol>, Denied> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.open_session(cx, user).await
    }
    async fn sessions(
        &self,
        cx: &Context,
        users: Vec<String>,
    ) -> fdrpc::Stream<ClientEnd<SessionProtocol>> {
        let ends: Vec<_> = users
            .into_iter()
            .map(|user| self.open_session(cx, user))
            .collect();
        let mut opened = Vec::new();
        for end in ends {
            opened.push(end.await.unwrap());
        }
        fdrpc::Stream::from_stream(futures::stream::iter(opened))
    }
    async fn relay(&self, session: ClientEnd<SessionProtocol>) -> String {
        if tokio::runtime::Handle::try_current().is_ok() {
            session.into_client().unwrap().user().await.unwrap()
        } else {
            session.into_blocking_client().user().unwrap()
        }
    }
}

struct Tens;

impl Listener for Tens {
    async fn event(&self, i: i32) -> i32 {
        i * 10
    }
}

fn broker_server(brokerage: &Brokerage) -> ThreadServer {
    let b = brokerage.clone();
    ThreadServer::start(fdrpc::Server::new, move || BrokerServer::new(b))
}

/// Waits (up to 5 s) until `n` sessions' implementations were dropped.
fn await_ended(b: &Brokerage, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.ended.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} sessions ended within 5 s",
            b.ended.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(b.ended.load(Ordering::SeqCst), n);
}

/// The privilege-separation pattern: the broker checks the caller once and hands out a
/// session that can do only what that user may; the session's fds arrive like any other.
#[test]
fn a_broker_hands_out_sessions_that_can_do_only_what_their_user_may() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let server = broker_server(&brokerage);
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let alice = broker
        .open_session("alice".into())
        .unwrap()
        .into_blocking_client();
    assert_eq!(alice.user().unwrap(), "alice");
    let notes = alice.read("alice.txt".into()).unwrap();
    assert_eq!(contents(&notes), b"alice's notes");
    assert!(is_cloexec(&notes));
    match alice.read("bob.txt".into()) {
        Err(fdrpc::CallError::Service(d)) => assert_eq!(d.reason, "alice may not read bob.txt"),
        other => panic!("expected Denied, got {other:?}"),
    }
    match broker.open_session("mallory".into()) {
        Err(fdrpc::CallError::Service(d)) => assert_eq!(d.reason, "no session for mallory"),
        other => panic!("expected Denied, got {other:?}"),
    }
    // The session's connection is one more of the server's, ended with its client.
    drop((alice, notes));
    await_ended(&brokerage, 1);
    drop(broker);
    drop(server);
}

/// A server end made by the caller, sent as an argument, served by the server: the caller
/// holds a session from its first byte, before the call that serves it returns.
#[test]
fn a_server_end_sent_as_an_argument_is_served_there() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let server = broker_server(&brokerage);
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let (client, end) = fdrpc::endpoints::<SessionProtocol>().unwrap();
    let bob = client.into_blocking_client();
    broker.serve_session(end, "bob".into()).unwrap();
    assert_eq!(bob.user().unwrap(), "bob");
    // A refused one: the end is closed, and the client sees it.
    let (client, end) = fdrpc::endpoints::<SessionProtocol>().unwrap();
    let refused = client.into_blocking_client();
    assert!(broker.serve_session(end, "mallory".into()).is_err());
    assert!(refused.closed().is_closed());
    match refused.user() {
        Err(fdrpc::RpcError::Connection(e)) => assert!(e.is_closed(), "{e}"),
        other => panic!("expected the connection closed, got {other:?}"),
    }
    drop((bob, refused, broker));
    await_ended(&brokerage, 1);
    drop(server);
}

/// Endpoints as stream items: each arrives served and callable.
#[test]
fn endpoints_arrive_as_stream_items() {
    let brokerage = Brokerage::default();
    let b = brokerage.clone();
    let broker_state = brokerage.clone();
    run_async(async move {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = serve_connection(theirs, BrokerServer::new(b));
        let broker = BrokerClient::from_std(ours).unwrap();
        let mut items = broker
            .sessions(vec!["ann".into(), "ben".into(), "cat".into()])
            .await
            .unwrap();
        let mut users = Vec::new();
        while let Some(end) = futures::StreamExt::next(&mut items).await {
            let session = end.unwrap().into_client().unwrap();
            users.push(session.user().await.unwrap());
        }
        assert_eq!(users, ["ann", "ben", "cat"]);
        drop(items);
        // The sessions ended; the connection that opened them is served on.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while brokerage_ended(&broker_state) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sessions did not end"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let none = broker.sessions(Vec::new()).await.unwrap();
        assert_eq!(futures::StreamExt::count(none).await, 0);
        drop(broker);
        server.await.unwrap();
    });
    await_ended(&brokerage, 3);
}

/// A callback: the client serves a listener, passes its client end, and the service calls
/// it back while the original call is still running.
#[test]
fn a_service_calls_the_caller_back_during_the_call() {
    let brokerage = Brokerage::default();
    let b = brokerage.clone();
    run_async(async move {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = serve_connection(theirs, BrokerServer::new(b));
        let broker = BrokerClient::from_std(ours).unwrap();
        let (listener, end) = fdrpc::endpoints::<ListenerProtocol>().unwrap();
        let served = tokio::spawn(end.serve(Tens));
        let sum = tokio::time::timeout(Duration::from_secs(10), broker.watch(listener, 100))
            .await
            .expect("a callback deadlocked")
            .unwrap();
        assert_eq!(sum, (0..100).map(|i| i * 10).sum::<i64>());
        // The service dropped its client end when the call ended: the listener's serving ends.
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the listener outlived its only client")
            .unwrap()
            .unwrap();
        drop(broker);
        server.await.unwrap();
    });
}

/// An endpoint passed through two hops: issued by the broker to this client, passed by it to
/// the broker's `relay`, which calls through it.
#[test]
fn an_endpoint_passed_on_is_called_by_its_new_holder() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let server = broker_server(&brokerage);
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let carol = broker.open_session("carol".into()).unwrap();
    assert_eq!(broker.relay(carol).unwrap(), "carol");
    // The relay dropped the end after its call: the session ended.
    await_ended(&brokerage, 1);
    drop(broker);
    drop(server);
}

/// A graceful shutdown ends a served endpoint as it ends any connection: its call in flight
/// finishes, then the client is told the endpoint closed.
#[test]
fn a_graceful_shutdown_lets_session_calls_finish_then_closes_them() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let mut server = broker_server(&brokerage);
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let dave = broker
        .open_session("dave".into())
        .unwrap()
        .into_blocking_client();
    assert_eq!(dave.user().unwrap(), "dave");
    let in_flight = {
        let dave = dave.clone();
        std::thread::spawn(move || dave.after_gate(7))
    };
    let probe = {
        let dave = dave.clone();
        std::thread::spawn(move || dave.after_gate(8))
    };
    // Both calls have reached their handlers.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while brokerage.waiting.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the calls never reached the gate"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    server.begin_shutdown();
    brokerage.gate.add_permits(2);
    assert_eq!(in_flight.join().unwrap().unwrap(), 7);
    assert_eq!(probe.join().unwrap().unwrap(), 8);
    let why = dave.closed();
    assert!(why.is_closed(), "{why}");
    await_ended(&brokerage, 1);
    drop((dave, broker));
    drop(server);
}

/// Dropping the future that serves (the tokio server's way to stop at once) closes the
/// endpoints it serves too; the client's death notification fires.
#[test]
fn dropping_the_server_closes_its_endpoints() {
    let brokerage = Brokerage::default();
    let b = brokerage.clone();
    run_async(async move {
        let dir = scratch_dir("endpoints");
        let path = dir.join("broker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let serving = tokio::spawn(fdrpc::Server::new().serve(listener, BrokerServer::new(b)));
        let broker = BrokerClient::connect(&path).await.unwrap();
        let erin = broker
            .open_session("erin".into())
            .await
            .unwrap()
            .into_client()
            .unwrap();
        assert_eq!(erin.user().await.unwrap(), "erin");
        serving.abort();
        let why = tokio::time::timeout(Duration::from_secs(5), erin.closed())
            .await
            .expect("no death notification within 5 s");
        assert!(why.is_closed(), "{why}");
        assert!(erin.user().await.is_err());
        drop((erin, broker));
        let _ = serving.await;
    });
    await_ended(&brokerage, 1);
}

/// Endpoints count toward the server's connections: with room for two, the broker's own
/// connection and one session fit, a second session is refused with why.
#[test]
fn served_endpoints_count_toward_max_connections() {
    count_toward_max_connections(|b| {
        ThreadServer::start(
            || fdrpc::Server::with_settings(fdrpc::Settings::default().max_connections(2)),
            move || BrokerServer::new(b),
        )
    });
}

/// The same on the blocking server.
#[test]
fn served_endpoints_count_toward_max_connections_on_the_blocking_server() {
    count_toward_max_connections(|b| {
        ThreadServer::start_blocking(
            || fdrpc::BlockingServer::with_settings(fdrpc::Settings::default().max_connections(2)),
            move || BrokerServer::new(b),
        )
    });
}

fn count_toward_max_connections(start: impl FnOnce(Brokerage) -> ThreadServer) {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let server = start(brokerage.clone());
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let first = broker.open_session("frank".into()).unwrap();
    match broker.open_session("grace".into()) {
        Err(fdrpc::CallError::Service(d)) => assert_eq!(
            d.reason,
            "the server serves its maximum of 2 connections already"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The refused session's implementation was dropped; the first one lives on.
    await_ended(&brokerage, 1);
    let first = first.into_blocking_client();
    assert_eq!(first.user().unwrap(), "frank");
    drop(first);
    await_ended(&brokerage, 2);
    // Its slot is free again.
    let again = broker
        .open_session("grace".into())
        .unwrap()
        .into_blocking_client();
    assert_eq!(again.user().unwrap(), "grace");
    drop((again, broker));
    drop(server);
}

/// The same sessions on the blocking server, with no async runtime.
#[test]
fn the_blocking_server_serves_sessions_too() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let b = brokerage.clone();
    // Calls in flight at shutdown get a third of a second to finish.
    let settings = fdrpc::Settings::default().stall_timeout(Duration::from_millis(300));
    let server = ThreadServer::start_blocking(
        move || fdrpc::BlockingServer::with_settings(settings),
        move || BrokerServer::new(b),
    );
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let heidi = broker
        .open_session("heidi".into())
        .unwrap()
        .into_blocking_client();
    assert_eq!(heidi.user().unwrap(), "heidi");
    assert_eq!(
        broker
            .relay(broker.open_session("ivan".into()).unwrap())
            .unwrap(),
        "ivan"
    );
    await_ended(&brokerage, 1);
    // Heidi's session has a call in flight, which never finishes, when the server stops:
    // the graceful shutdown gives it the stall timeout, then ends the session, and returns
    // only once the session's thread is done (its implementation dropped).
    let in_flight = {
        let heidi = heidi.clone();
        std::thread::spawn(move || heidi.after_gate(1))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while brokerage.waiting.load(Ordering::SeqCst) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the gate"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(server);
    assert_eq!(brokerage.ended.load(Ordering::SeqCst), 2);
    assert!(in_flight.join().unwrap().is_err());
    assert!(heidi.closed().is_closed());
    drop((heidi, broker));
}

/// A shutting-down server takes no more endpoints: a handler that serves one after the
/// shutdown began is told so (the blocking server, whose shutdown flag is set at once).
#[test]
fn a_shutting_down_server_refuses_new_endpoints() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let b = brokerage.clone();
    let mut server =
        ThreadServer::start_blocking(fdrpc::BlockingServer::new, move || BrokerServer::new(b));
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let late = {
        let broker = broker.clone();
        std::thread::spawn(move || broker.open_session_after_gate("lou".into()))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while brokerage.waiting.load(Ordering::SeqCst) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the gate"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    server.begin_shutdown();
    brokerage.gate.add_permits(1);
    match late.join().unwrap() {
        Err(fdrpc::CallError::Service(d)) => assert_eq!(d.reason, "the server is shutting down"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    await_ended(&brokerage, 1);
    drop((broker, server));
}

/// `SO_PEERCRED` on a pair's end names the process that made the pair (the broker), so a
/// session's calls say who sent them instead (`SO_PASSCRED`): passed to another process, the
/// end's calls carry that process's pid.
#[test]
fn a_sessions_caller_is_whoever_holds_its_end_now() {
    let brokerage = Brokerage::default();
    let _check = fd_leak_check();
    let server = broker_server(&brokerage);
    let broker = BrokerBlockingClient::connect(&server.path).unwrap();
    let mut kim = broker.open_session("kim".into()).unwrap();
    let (session, theirs) = fdrpc::endpoints::<SessionProtocol>().unwrap();
    let served = std::thread::spawn(move || {
        theirs.serve_blocking(UserSession {
            user: "lee".into(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            waiting: Arc::default(),
            ended: Arc::default(),
        })
    });
    let mine = std::process::id() as i32;
    // Called by the process that made the pair, a session keeps what the connection knew of
    // its peer: its pidfd too (where the kernel gives one), which credentials taken from a
    // call do not have.
    let (probe, _other) = UnixStream::pair().unwrap();
    if fdrpc::PeerCredentials::of(&probe)
        .unwrap()
        .pidfd()
        .is_some()
    {
        let here = ClientEnd::<SessionProtocol>::new(kim.into_stream());
        let stream = here.into_stream();
        let check = ClientEnd::<SessionProtocol>::new(stream.try_clone().unwrap());
        assert!(check.into_blocking_client().peer_has_pidfd().unwrap());
        kim = ClientEnd::new(stream);
    }
    // Each called here first, through a dup of its end: the calls are this process's.
    let mut ends = Vec::new();
    for end in [kim, session] {
        let stream = end.into_stream();
        let here = ClientEnd::<SessionProtocol>::new(stream.try_clone().unwrap());
        assert_eq!(here.into_blocking_client().peer_pid().unwrap(), mine);
        ends.push(ClientEnd::new(stream));
    }
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "endpoint_child", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    let (mut child, conn) = fdrpc::child::spawn(&mut command).unwrap();
    let child_pid = child.id() as i32;
    assert_ne!(child_pid, mine);
    let mut to_child = fdrpc::Channel::new(conn).unwrap();
    // Passed on (and closed here): the child's calls on them say the child's pid, on the
    // broker's session and on the one served here alike.
    to_child.send(ForChild { sessions: ends }).unwrap();
    let back: FromChild = to_child.recv().unwrap();
    assert_eq!(back.pids, vec![child_pid, child_pid]);
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert!(status.success(), "the child failed: {status}");
    drop((to_child, broker));
    await_ended(&brokerage, 1);
    served.join().unwrap().unwrap();
    drop(server);
}

const CHILD_ENV: &str = "FDRPC_ENDPOINTS_TEST_CHILD";

#[derive(fdrpc::Message)]
struct ForChild {
    sessions: Vec<ClientEnd<SessionProtocol>>,
}

#[derive(fdrpc::Message)]
struct FromChild {
    pids: Vec<i32>,
}

/// The child of `a_sessions_caller_is_whoever_holds_its_end_now` (a no-op in a normal run):
/// calls on each session it is sent and reports the pids their servers saw.
#[test]
fn endpoint_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let conn = fdrpc::child::connection().unwrap().unwrap();
    let mut parent = fdrpc::Channel::new(conn).unwrap();
    let got: ForChild = parent.recv().unwrap();
    let pids = got
        .sessions
        .into_iter()
        .map(|end| end.into_blocking_client().peer_pid().unwrap())
        .collect();
    parent.send(FromChild { pids }).unwrap();
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(fdrpc::Message)]
struct Any {
    fd: OwnedFd,
}

#[derive(fdrpc::Message, Debug)]
struct WantsClientEnd {
    fd: ClientEnd<SessionProtocol>,
}

#[derive(fdrpc::Message, Debug)]
struct WantsServerEnd {
    fd: ServerEnd<SessionProtocol>,
}

fn found_instead(fd: impl Into<OwnedFd>) -> String {
    let (bytes, fds) = fdrpc::encode(Any { fd: fd.into() }).unwrap();
    let e = fdrpc::decode::<WantsClientEnd>(&bytes, fds).unwrap_err();
    assert_eq!(e.path(), "fd");
    match e.kind() {
        fdrpc::DecodeErrorKind::FdKindMismatch { expected, found } => {
            assert_eq!(expected, "a connected unix stream socket");
            found.clone()
        }
        other => panic!("expected a kind mismatch, got {other:?}"),
    }
}

/// An endpoint must arrive as a connected Unix stream socket: a file, a listening socket, an
/// unconnected one or a datagram socket is a typed decode error (and is closed).
#[test]
fn an_endpoint_field_refuses_every_other_kind_of_fd() {
    let _check = fd_leak_check();
    assert_eq!(found_instead(memfd(b"x")), "a regular file");
    let dir = scratch_dir("endpoints");
    let listening = UnixListener::bind(dir.join("l.sock")).unwrap();
    assert_eq!(found_instead(listening), "a listening unix stream socket");
    let unconnected = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    assert_eq!(
        found_instead(unconnected),
        "an unconnected unix stream socket"
    );
    let (dgram, _other) = UnixDatagram::pair().unwrap();
    assert_eq!(found_instead(dgram), "a datagram socket");
    // Both ends of a pair arrive, as either end type, and stay connected to each other.
    let (a, b) = UnixStream::pair().unwrap();
    let (bytes, fds) = fdrpc::encode(Any { fd: a.into() }).unwrap();
    let client = fdrpc::decode::<WantsClientEnd>(&bytes, fds).unwrap().fd;
    let (bytes, fds) = fdrpc::encode(Any { fd: b.into() }).unwrap();
    let server = fdrpc::decode::<WantsServerEnd>(&bytes, fds).unwrap().fd;
    assert!(is_cloexec(&client) && is_cloexec(&server));
    let mut client = client.into_stream();
    let mut server = server.into_stream();
    std::io::Write::write_all(&mut client, b"ping").unwrap();
    let mut got = [0u8; 4];
    std::io::Read::read_exact(&mut server, &mut got).unwrap();
    assert_eq!(&got, b"ping");
}

/// The exported IDL names the service on the other end of each endpoint, and describes it.
#[test]
fn the_idl_names_the_service_of_each_endpoint() {
    let idl = BrokerBlockingClient::idl();
    assert!(
        idl.contains(
            "typedef i32 SessionClientEnd (fdrpc.fd = \"unix_stream_socket\", fdrpc.endpoint = \"client:Session\")"
        ),
        "{idl}"
    );
    assert!(
        idl.contains(
            "typedef i32 SessionServerEnd (fdrpc.fd = \"unix_stream_socket\", fdrpc.endpoint = \"server:Session\")"
        ),
        "{idl}"
    );
    assert!(
        idl.contains("typedef i32 ListenerClientEnd (fdrpc.fd = \"unix_stream_socket\", fdrpc.endpoint = \"client:Listener\")"),
        "{idl}"
    );
    for service in ["service Broker", "service Session", "service Listener"] {
        assert_eq!(idl.matches(service).count(), 1, "{service} in:\n{idl}");
    }
    assert!(idl.contains("SessionClientEnd open_session("), "{idl}");
}

fn brokerage_ended(b: &Brokerage) -> usize {
    b.ended.load(Ordering::SeqCst)
}
