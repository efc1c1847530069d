//! The `fdrpc` command against a live conformance server: introspection, every method with
//! fds in and out, a stream, a sink, `--push-fd` from the shell, `--save-fd`, `--exec`,
//! Ctrl-C on a stream, and the exit status of every kind of failure.

#[path = "../../tests/common/mod.rs"]
mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/conformance/main.rs"]
mod conformance;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use conformance::{ConformanceImpl, ConformanceServer};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_fdrpc");

fn server() -> ThreadServer {
    ThreadServer::start(fdrpc::Server::new, || {
        ConformanceServer::new(ConformanceImpl::default())
    })
}

/// Runs `fdrpc ARGS` to its end (at most 30 s).
fn fdrpc(args: &[&str]) -> Output {
    run(Command::new(BIN).args(args), None)
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "fdrpc did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// The JSON lines of stdout.
fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sock(s: &ThreadServer) -> &str {
    s.path.to_str().unwrap()
}

fn scratch(name: &str, contents: &str) -> Scratch {
    scratch_file("cli-test", name, contents)
}

#[test]
fn introspect_prints_the_idl_and_a_json_description_with_the_fd_fields() {
    let _check = fd_leak_check();
    let s = server();
    let out = fdrpc(&["introspect", sock(&s)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let idl = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        idl.trim_end(),
        conformance::ConformanceClient::idl().trim_end()
    );
    let out = fdrpc(&["introspect", "--json", sock(&s)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let methods = d["services"][0]["methods"].as_array().unwrap();
    let echo = methods.iter().find(|m| m["name"] == "echo").unwrap();
    assert_eq!(echo["params"][0]["fds"], true);
    let memfds = methods.iter().find(|m| m["name"] == "memfds").unwrap();
    assert_eq!(memfds["stream"]["item"], "fd");
    let total = methods.iter().find(|m| m["name"] == "total_size").unwrap();
    assert_eq!(total["sink"]["item"], "fd");
    let fields = d["types"]["Bundle"]["fields"].as_array().unwrap();
    let fds: Vec<_> = fields
        .iter()
        .map(|f| (f["name"].clone(), f["fds"].clone()))
        .collect();
    assert_eq!(
        fds,
        [
            (json!("label"), json!(false)),
            (json!("fds"), json!(true)),
            (json!("spare"), json!(true))
        ]
    );
    assert!(!methods.iter().any(|m| m["name"] == "_fdrpc_idl"));
}

#[test]
fn whoami_prints_the_caller_as_the_server_saw_it() {
    let _check = fd_leak_check();
    let s = server();
    let child = Command::new(BIN)
        .args(["call", sock(&s), "whoami"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stderr(&out), "", "nothing to warn about");
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["pid"], json!(pid));
    assert_eq!(me["uid"], json!(rustix::process::getuid().as_raw()));
    assert_eq!(me["gid"], json!(rustix::process::getgid().as_raw()));
}

#[test]
fn echo_takes_fds_the_shell_opened_and_describes_the_ones_it_returns() {
    let _check = fd_leak_check();
    let s = server();
    let file = scratch("echo.txt", "echoed");
    let other = scratch("spare.txt", "spare!!");
    // `3<file`: the fd the command inherits; `--push-fd PATH`: one it opens.
    let script = format!(
        "exec {BIN} call --push-fd 3 --push-fd {} {} echo '{}' 3<{}",
        other.display(),
        sock(&s),
        json!({"bundle": {"label": "x", "fds": [0, 0], "spare": 1}}),
        file.display(),
    );
    let out = run(Command::new("sh").args(["-c", &script]), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let echoed = &lines(&out)[0];
    assert_eq!(echoed["label"], "x");
    for fd in echoed["fds"].as_array().unwrap() {
        assert_eq!(fd["kind"], "file");
        assert_eq!(fd["path"], file.to_str().unwrap());
        assert_eq!(fd["size"], 6);
        assert_eq!(fd["flags"], json!(["read_only"]));
    }
    assert_eq!(echoed["spare"]["path"], other.to_str().unwrap());
    assert_eq!(echoed["spare"]["size"], 7);
    // `--push-fd PATH` opens the file for reading only.
    assert_eq!(echoed["spare"]["flags"], json!(["read_only"]));
}

#[test]
fn a_returned_fd_is_handed_to_exec_and_its_status_is_ours() {
    let _check = fd_leak_check();
    let s = server();
    let file = scratch("opened.txt", "through fd 3\n");
    let args = json!({"path": file.to_str().unwrap()}).to_string();
    // `open`, its fd handed to `sh -c SCRIPT`.
    let exec = |script: &str| {
        fdrpc(&[
            "call",
            sock(&s),
            "open",
            &args,
            "--exec",
            "--",
            "sh",
            "-c",
            script,
        ])
    };
    let out = exec("echo \"$LISTEN_FDS $LISTEN_FDNAMES\"; cat <&3; exit 7");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut l = text.lines();
    let described: Value = serde_json::from_str(l.next().unwrap()).unwrap();
    assert_eq!(described["path"], file.to_str().unwrap());
    assert_eq!(l.next(), Some("1 result"));
    assert_eq!(l.next(), Some("through fd 3"));
    // A command killed by a signal: 128 + its number, as a shell reports it.
    let out = exec("kill -TERM $$");
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
}

#[test]
fn a_declared_exception_is_json_with_status_1_and_its_fd_can_be_saved() {
    let _check = fd_leak_check();
    let s = server();
    let saved = scratch("log.out", "");
    let save = format!("log={}", saved.display());
    let out = fdrpc(&[
        "call",
        sock(&s),
        "fail",
        r#"{"reason": "on purpose"}"#,
        "--save-fd",
        &save,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failure = &lines(&out)[0];
    assert_eq!(failure["message"], "on purpose");
    assert_eq!(failure["log"]["kind"], "memfd");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "on purpose");
    let missing = "/nonexistent/fdrpc";
    let args = json!({"path": missing}).to_string();
    let out = fdrpc(&["call", sock(&s), "open", &args]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        lines(&out)[0]["message"]
            .as_str()
            .unwrap()
            .contains("No such file")
    );
}

#[test]
fn an_fd_deposited_by_path_is_withdrawn_and_saved() {
    let _check = fd_leak_check();
    let s = server();
    let file = scratch("vault.txt", "kept");
    let path = file.to_str().unwrap();
    let out = fdrpc(&[
        "call",
        "--push-fd",
        path,
        sock(&s),
        "deposit",
        r#"{"key": "k", "fd": 0}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a oneway prints nothing");
    let copy = scratch("copy.txt", "");
    let save = format!("result={}", copy.display());
    let out = fdrpc(&[
        "call",
        sock(&s),
        "withdraw",
        r#"{"key": "k"}"#,
        "--save-fd",
        &save,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out)[0]["path"], path);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "kept");
    let out = fdrpc(&["call", sock(&s), "withdraw", r#"{"key": "k"}"#]);
    assert_eq!(lines(&out), [Value::Null], "nothing left");
}

#[test]
fn a_stream_prints_a_line_per_item_and_a_sink_reads_a_line_per_item() {
    let _check = fd_leak_check();
    let s = server();
    let out = fdrpc(&["call", sock(&s), "memfds", r#"{"count": 3}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let items = lines(&out);
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(
            (item["kind"].as_str(), item["size"].as_i64()),
            (Some("memfd"), Some(1))
        );
    }
    let a = scratch("a.txt", "12345");
    let b = scratch("b.txt", "123");
    let input = format!(
        "{}\n\n{}\n",
        json!({"path": a.to_str().unwrap()}),
        json!({"path": b.to_str().unwrap()})
    );
    let out = run(
        Command::new(BIN).args(["call", sock(&s), "total_size"]),
        Some(&input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out), [json!(8)]);
    // A line that is not an item: the sink is aborted, the status is a usage error.
    let input = format!("{}\n[1]\n", json!({"path": a.to_str().unwrap()}));
    let out = run(
        Command::new(BIN).args(["call", sock(&s), "total_size"]),
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_cancels_a_stream_cleanly() {
    let _check = fd_leak_check();
    let s = server();
    let mut child = Command::new(BIN)
        .args(["call", sock(&s), "memfds", r#"{"count": 100000000}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first item, then interrupt (the output is drained meanwhile: the command
    // may be waiting to write).
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("memfd"), "{first}");
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "fdrpc did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(5));
    };
    drain.join().unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    // The server cancelled the stream and goes on.
    let out = fdrpc(&["call", sock(&s), "dropped"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn failures_have_distinct_statuses_and_say_what_is_wrong() {
    let _check = fd_leak_check();
    let s = server();
    for (args, code, says) in [
        (vec!["call", sock(&s), "nope"], 2, "no method `nope`"),
        (vec!["call", sock(&s), "open", "{"], 2, "not JSON"),
        (
            vec!["call", sock(&s), "open", r#"{"path": 5}"#],
            2,
            "`path`: expected string",
        ),
        (
            vec!["call", sock(&s), "open", r#"{"pat": "x"}"#],
            2,
            "no parameter `pat`; the parameters are: path (string)",
        ),
        (
            vec![
                "call",
                sock(&s),
                "echo",
                r#"{"bundle": {"label": "x", "fds": [{"path": "/", "mode": "w"}]}}"#,
            ],
            2,
            r#"expected {"path": "..."}"#,
        ),
        (
            vec![
                "call",
                sock(&s),
                "echo",
                r#"{"bundle": {"label": "x", "fds": [0]}}"#,
            ],
            2,
            "fd index 0, but 0 --push-fd",
        ),
        (
            vec!["call", sock(&s), "whoami", "--push-fd", "77"],
            2,
            "--push-fd 77",
        ),
        (
            vec![
                "call",
                sock(&s),
                "sleep",
                r#"{"ms": 5000}"#,
                "--timeout",
                "0.1",
            ],
            3,
            "no reply within",
        ),
        (
            vec!["call", "/nonexistent/fdrpc.sock", "whoami"],
            3,
            "cannot connect",
        ),
        (vec!["call", sock(&s)], 2, "METHOD"),
        (
            vec!["call", sock(&s), "whoami", "--save-fd", "log="],
            2,
            "--save-fd log=: expected FIELD=PATH",
        ),
        (
            vec!["call", sock(&s), "memfds", r#"{"count": 2147483648}"#],
            2,
            "`count`: expected i32",
        ),
    ] {
        let out = fdrpc(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn a_stream_whose_reader_goes_away_ends_quietly() {
    let _check = fd_leak_check();
    let s = server();
    let script = format!(
        "{BIN} call {} memfds '{{\"count\": 100000000}}' | head -n 2",
        sock(&s)
    );
    let out = run(
        Command::new("bash").args(["-o", "pipefail", "-c", &script]),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = fdrpc(&["call", sock(&s), "dropped"]);
    assert!(out.status.success(), "the server goes on: {}", stderr(&out));
}

#[test]
fn help_shows_the_exit_statuses() {
    // Serialized with the tests that count fds: a child's pipes open fds here meanwhile.
    let _check = fd_leak_check();
    let out = fdrpc(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit status"));
}

/// Records the trace id of each call the server runs.
struct SeenTraces(std::sync::Arc<std::sync::Mutex<Vec<u128>>>);

impl fdrpc::CallHook for SeenTraces {
    fn before(&self, call: &fdrpc::Context) -> Result<(), fdrpc::ApplicationError> {
        self.0.lock().unwrap().push(call.trace().trace_id());
        Ok(())
    }
}

#[test]
fn calls_carry_the_trace_of_traceparent_and_exec_continues_it() {
    let _check = fd_leak_check();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = SeenTraces(seen.clone());
    let s = ThreadServer::start(
        move || fdrpc::Server::new().hook(hook),
        || ConformanceServer::new(ConformanceImpl::default()),
    );
    let file = scratch("traced.txt", "traced\n");
    let args = json!({"path": file.to_str().unwrap()}).to_string();
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let exec = [
        "--exec",
        "--",
        "sh",
        "-c",
        "printf '%s\\n' \"$TRACEPARENT\"",
    ];
    let mut cmd = Command::new(BIN);
    cmd.env("TRACEPARENT", parent)
        .args(["call", sock(&s), "open", &args])
        .args(exec);
    let out = run(&mut cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The server ran `open` in the caller's trace (introspection runs without hooks).
    assert_eq!(*seen.lock().unwrap(), [0x0af7651916cd43dd8448eb211c80319c]);
    // The command continues it, as a span of its own.
    let text = String::from_utf8(out.stdout).unwrap();
    let handed = text.lines().last().unwrap();
    assert!(
        handed.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && handed != parent,
        "{handed}"
    );

    // Without TRACEPARENT (or with one that is not), each command starts a trace of its own.
    seen.lock().unwrap().clear();
    for _ in 0..2 {
        let mut cmd = Command::new(BIN);
        cmd.env("TRACEPARENT", "not a trace")
            .args(["call", sock(&s), "open", &args])
            .args(exec);
        let out = run(&mut cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let handed = fdrpc::TraceContext::parse(text.lines().last().unwrap()).unwrap();
        assert_eq!(seen.lock().unwrap().last(), Some(&handed.trace_id()));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[0] != seen[1] && !seen.contains(&0x0af7651916cd43dd8448eb211c80319c));
}

/// A stream that ends with its declared error: served by a small service of this test.
mod countdown {
    #[derive(fdrpc::Message, Debug)]
    pub struct Liftoff {
        pub reason: String,
    }

    #[fdrpc::service]
    pub trait Countdown {
        /// `from`, `from - 1`, ..., 1, then the error.
        async fn count(&self, from: i32) -> fdrpc::Stream<i32, Liftoff>;
    }

    pub struct CountdownImpl;

    impl Countdown for CountdownImpl {
        async fn count(&self, from: i32) -> fdrpc::Stream<i32, Liftoff> {
            let items = (1..=from).rev().map(Ok).chain(std::iter::once(Err(Liftoff {
                reason: "liftoff".into(),
            })));
            fdrpc::Stream::new(futures_util::stream::iter(items))
        }
    }
}

#[test]
fn a_stream_that_ends_with_its_declared_error_prints_it_and_exits_1() {
    let _check = fd_leak_check();
    let s = ThreadServer::start(fdrpc::Server::new, || {
        countdown::CountdownServer::new(countdown::CountdownImpl)
    });
    let out = fdrpc(&["call", sock(&s), "count", r#"{"from": 3}"#]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        lines(&out),
        [
            json!(3),
            json!(2),
            json!(1),
            json!({"error": {"reason": "liftoff"}})
        ]
    );
}

/// A service whose method returns an endpoint: a session of its own.
mod sessions {
    use fdrpc::{ClientEnd, Context};

    #[fdrpc::service]
    pub trait Lobby {
        async fn open_session(&self, cx: &Context, user: String) -> ClientEnd<SessionProtocol>;
        async fn two_sessions(&self, cx: &Context) -> Vec<ClientEnd<SessionProtocol>>;
    }

    #[fdrpc::service]
    pub trait Session {
        async fn greet(&self, greeting: String) -> String;
        /// Milliseconds left until the call's deadline, or -1 for a call without one.
        async fn left(&self, cx: &Context) -> i64;
    }

    pub struct LobbyImpl;

    struct SessionImpl(String);

    impl Session for SessionImpl {
        async fn greet(&self, greeting: String) -> String {
            format!("{greeting}, {}", self.0)
        }
        async fn left(&self, cx: &Context) -> i64 {
            cx.remaining()
                .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
    }

    fn session(cx: &Context, user: String) -> ClientEnd<SessionProtocol> {
        let (client, server) = fdrpc::endpoints::<SessionProtocol>().unwrap();
        cx.serve(server, SessionImpl(user)).unwrap();
        client
    }

    impl Lobby for LobbyImpl {
        async fn open_session(&self, cx: &Context, user: String) -> ClientEnd<SessionProtocol> {
            session(cx, user)
        }
        async fn two_sessions(&self, cx: &Context) -> Vec<ClientEnd<SessionProtocol>> {
            vec![session(cx, "a".into()), session(cx, "b".into())]
        }
    }
}

/// An endpoint in the IDL and the JSON description; `--then` calls on the one a reply
/// returned; `--exec` hands it to a command, which calls on it as `fd:3`.
#[test]
fn a_returned_endpoint_is_called_with_then_or_handed_to_exec() {
    let _check = fd_leak_check();
    let s = ThreadServer::start(fdrpc::Server::new, || {
        sessions::LobbyServer::new(sessions::LobbyImpl)
    });
    let out = fdrpc(&["introspect", sock(&s)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let idl = String::from_utf8(out.stdout).unwrap();
    assert!(idl.contains("fdrpc.endpoint = \"client:Session\""), "{idl}");
    assert!(idl.contains("service Session"), "{idl}");
    let out = fdrpc(&["introspect", "--json", sock(&s)]);
    let described: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        described.to_string().contains("\"client_end:Session\""),
        "{described:#}"
    );

    let out = fdrpc(&[
        "call",
        sock(&s),
        "open_session",
        r#"{"user": "kim"}"#,
        "--then",
        "greet",
        r#"{"greeting": "hello"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let l = lines(&out);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[0]["endpoint"], "client_end:Session");
    assert_eq!(l[0]["kind"], "socket");
    assert_eq!(l[1], json!("hello, kim"));

    let out = fdrpc(&[
        "call",
        sock(&s),
        "open_session",
        r#"{"user": "lee"}"#,
        "--exec",
        "--",
        BIN,
        "call",
        "fd:3",
        "greet",
        r#"{"greeting": "hi"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out)[1], json!("hi, lee"));

    // Two endpoints: `--then` cannot choose, and says so.
    let out = fdrpc(&["call", sock(&s), "two_sessions", "--then", "greet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("returned 2 client endpoints"),
        "{}",
        stderr(&out)
    );
    // `fd:N` that is not a connection.
    let out = fdrpc(&["call", "fd:0", "greet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fd:0: not a stream socket"),
        "{}",
        stderr(&out)
    );
}

/// `--timeout 0` means no deadline, on the call and on `--then`'s; a positive one is carried;
/// `--exec` runs after a `--then` that succeeded, and its status is the command's.
#[test]
fn timeouts_reach_both_calls_and_exec_follows_then() {
    let _check = fd_leak_check();
    let s = server();
    let left = |extra: &[&str]| -> i64 {
        let mut args = vec!["call", sock(&s), "sleep", r#"{"ms": 1}"#];
        args.extend_from_slice(extra);
        let out = fdrpc(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        lines(&out)[0].as_i64().unwrap()
    };
    assert_eq!(left(&["--timeout", "0"]), -1, "no deadline");
    let carried = left(&["--timeout", "30"]);
    assert!((1..=30_000).contains(&carried), "{carried}");

    let lobby = ThreadServer::start(fdrpc::Server::new, || {
        sessions::LobbyServer::new(sessions::LobbyImpl)
    });
    let then_left = |timeout: &str| -> i64 {
        let out = fdrpc(&[
            "call",
            sock(&lobby),
            "open_session",
            r#"{"user": "kim"}"#,
            "--timeout",
            timeout,
            "--then",
            "left",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        lines(&out)[1].as_i64().unwrap()
    };
    assert_eq!(then_left("0"), -1);
    let carried = then_left("30");
    assert!((1..=30_000).contains(&carried), "{carried}");
    let out = fdrpc(&[
        "call",
        sock(&lobby),
        "open_session",
        r#"{"user": "kim"}"#,
        "--then",
        "greet",
        r#"{"greeting": "hi"}"#,
        "--exec",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
}

/// A stream's lines that cannot be written (a full disk) end the command with a usage
/// failure naming the cause, not as if the reader had gone away.
#[test]
fn a_stream_that_cannot_be_written_fails_with_the_cause() {
    let _check = fd_leak_check();
    let s = server();
    let mut child = Command::new(BIN)
        .args(["call", sock(&s), "memfds", r#"{"count": 3}"#])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "fdrpc did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writing stdout: No space left on device"),
        "{}",
        stderr(&out)
    );
}

/// Enums and maps, both ways.
mod shapes {
    use std::collections::BTreeMap;

    #[derive(fdrpc::Message, Debug, Clone, Copy, PartialEq)]
    pub enum Level {
        Low,
        High = 10,
    }

    #[fdrpc::service]
    pub trait Shapes {
        /// `High` for each count of 10 or more, else `Low`, in key order.
        async fn levels(&self, counts: BTreeMap<String, i32>) -> Vec<Level>;
        /// The levels counted by name.
        async fn count(&self, levels: Vec<Level>) -> BTreeMap<String, i32>;
        /// The sum of key times value.
        async fn weigh(&self, weights: BTreeMap<i32, i32>) -> i64;
    }

    pub struct ShapesImpl;

    impl Shapes for ShapesImpl {
        async fn levels(&self, counts: BTreeMap<String, i32>) -> Vec<Level> {
            counts
                .values()
                .map(|&n| if n >= 10 { Level::High } else { Level::Low })
                .collect()
        }
        async fn count(&self, levels: Vec<Level>) -> BTreeMap<String, i32> {
            let mut out = BTreeMap::new();
            for l in levels {
                *out.entry(format!("{l:?}")).or_insert(0) += 1;
            }
            out
        }
        async fn weigh(&self, weights: BTreeMap<i32, i32>) -> i64 {
            weights
                .iter()
                .map(|(&k, &v)| i64::from(k) * i64::from(v))
                .sum()
        }
    }
}

#[test]
fn enums_and_maps_are_json_by_name() {
    let _check = fd_leak_check();
    let s = ThreadServer::start(fdrpc::Server::new, || {
        shapes::ShapesServer::new(shapes::ShapesImpl)
    });
    let out = fdrpc(&[
        "call",
        sock(&s),
        "levels",
        r#"{"counts": {"a": 1, "b": 12, "c": 10}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out), [json!(["Low", "High", "High"])]);
    let out = fdrpc(&[
        "call",
        sock(&s),
        "count",
        r#"{"levels": ["High", "Low", "High"]}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out), [json!({"High": 2, "Low": 1})]);
    // A map whose keys are not strings is a list of [key, value] pairs, not an object.
    let out = fdrpc(&[
        "call",
        sock(&s),
        "weigh",
        r#"{"weights": [[2, 3], [10, 1]]}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out), [json!(16)]);
    let out = fdrpc(&["call", sock(&s), "weigh", r#"{"weights": {"2": 3}}"#]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected map<i32, i32>, as a list of [key, value] pairs"),
        "{}",
        stderr(&out)
    );
    let out = fdrpc(&["call", sock(&s), "levels", r#"{"counts": 5}"#]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected map<string, i32>, as an object"),
        "{}",
        stderr(&out)
    );
}
