//! Running as a daemon: listeners the way daemons have them, a child process with a
//! connection, and systemd: socket activation by the real `systemd-socket-activate`,
//! notifications and the fd store checked on a real `NOTIFY_SOCKET` datagram socket.
//! `systemd-socket-activate` (Debian: systemd) is required under `FDRPC_REQUIRE_INTEROP=1`
//! (CI) and skipped with a message otherwise.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/daemon/main.rs"]
mod daemon;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use conformance::{
    Bundle, ConformanceBlockingClient, ConformanceClient, ConformanceImpl, ConformanceServer,
};
use daemon::CounterBlockingClient;

const WAIT: Duration = Duration::from_secs(10);
/// Set in a re-executed test binary: which child to be.
const CHILD: &str = "FDRPC_TEST_CHILD";

/// This test binary, to run as `child` (one of the ignored tests below).
fn child_command(child: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        child,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, child)
    .stdout(Stdio::null());
    cmd
}

/// Waits for `path` to appear, within [`WAIT`].
fn wait_for(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn terminate(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the child ended with {status}");
}

// ------------------------------------------------------------------------------- listeners

#[test]
fn bind_replaces_only_a_stale_socket_file() {
    run_async(async {
        let dir = scratch_dir("daemon-bind");
        let path = dir.join("s.sock");
        // A socket file nobody listens on any more: replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = fdrpc::Listener::bind_with_mode(&path, 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // One that something listens on: refused, and left alone.
        let e = fdrpc::Listener::bind(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
        // Serving it works.
        let server = tokio::spawn(
            fdrpc::Server::new()
                .serve(listener, ConformanceServer::new(ConformanceImpl::default())),
        );
        let client = ConformanceClient::connect(&path).await.unwrap();
        assert_eq!(
            client.whoami().await.unwrap().pid,
            std::process::id() as i32
        );
        drop(client);
        server.abort();
        // A file that is not a socket is never removed.
        let file = dir.join("notes.txt");
        std::fs::write(&file, b"keep me").unwrap();
        let e = fdrpc::Listener::bind(&file).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    });
}

const CONNECT_AS_NOBODY: &str = "FDRPC_TEST_CONNECT_AS_NOBODY";

/// The peer's credentials are its own: a process running as another user (uid and gid
/// 65534, started by this one when it runs as root) is seen with them, by the authorization
/// hook and by `cx.peer()` (its `whoami`).
#[test]
fn the_peers_uid_and_gid_are_its_own() {
    if !rustix::process::getuid().is_root() {
        eprintln!("SKIPPED: needs root to start a process as another user");
        return;
    }
    run_async(async {
        let name = format!("@fdrpc-test-nobody-{}", std::process::id());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let server = tokio::spawn(
            fdrpc::Server::new()
                .authorize(move |peer| {
                    record.lock().unwrap().push((peer.uid(), peer.gid()));
                    true
                })
                .serve(
                    fdrpc::Listener::bind(&name).unwrap(),
                    ConformanceServer::new(ConformanceImpl::default()),
                ),
        );
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", "connects_as_nobody", "--test-threads=1"])
            .env(CONNECT_AS_NOBODY, &name);
        std::os::unix::process::CommandExt::uid(&mut child, 65534);
        std::os::unix::process::CommandExt::gid(&mut child, 65534);
        let out = tokio::task::spawn_blocking(move || child.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "the child failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(*seen.lock().unwrap(), [(65534, 65534)]);
        server.abort();
        let _ = server.await;
    });
}

/// The child of `the_peers_uid_and_gid_are_its_own` (a no-op in a normal run): connects and
/// checks what the server saw.
#[test]
fn connects_as_nobody() {
    let Some(name) = std::env::var_os(CONNECT_AS_NOBODY) else {
        return;
    };
    let client = ConformanceBlockingClient::connect(&name).unwrap();
    let peer = client.whoami().unwrap();
    assert_eq!((peer.uid, peer.gid), (65534, 65534));
    assert_eq!(peer.pid, std::process::id() as i32);
}

/// A bare file name binds in the working directory (its parent, "", is taken as ".").
#[test]
fn a_bare_file_name_binds_in_the_working_directory() {
    run_async(async {
        let name = format!("fdrpc-test-relative-{}.sock", std::process::id());
        let bound = fdrpc::Listener::bind(&name);
        let here = std::path::Path::new(&name).exists();
        let _ = std::fs::remove_file(&name);
        drop(bound.unwrap());
        assert!(here, "no socket file {name} in the working directory");
    });
}

#[test]
fn abstract_names_for_servers_and_both_clients() {
    run_async(async {
        let name = format!("@fdrpc-test-{}", std::process::id());
        let listener = fdrpc::Listener::bind(&name).unwrap();
        assert!(
            fdrpc::Listener::bind_with_mode(&name, 0o600).is_err(),
            "no file, no mode"
        );
        let server = tokio::spawn(
            fdrpc::Server::new()
                .serve(listener, ConformanceServer::new(ConformanceImpl::default())),
        );
        let client = ConformanceClient::connect(&name).await.unwrap();
        assert_eq!(
            client.whoami().await.unwrap().pid,
            std::process::id() as i32
        );
        let n = name.clone();
        let pid = tokio::task::spawn_blocking(move || {
            ConformanceBlockingClient::connect(&n)
                .unwrap()
                .whoami()
                .unwrap()
                .pid
        })
        .await
        .unwrap();
        assert_eq!(pid, std::process::id() as i32);
        drop(client);
        server.abort();
    });
}

#[test]
fn listeners_and_connections_from_std_and_from_fds() {
    run_async(async {
        let dir = scratch_dir("daemon-fds");
        // A std listener, and the fd of one.
        for (i, as_fd) in [false, true].into_iter().enumerate() {
            let path = dir.join(format!("{i}.sock"));
            let std_listener = UnixListener::bind(&path).unwrap();
            let service = ConformanceServer::new(ConformanceImpl::default());
            let server = if as_fd {
                tokio::spawn(fdrpc::Server::new().serve(OwnedFd::from(std_listener), service))
            } else {
                tokio::spawn(fdrpc::Server::new().serve(std_listener, service))
            };
            let client = ConformanceClient::connect(&path).await.unwrap();
            assert_eq!(
                client.whoami().await.unwrap().uid,
                rustix::process::getuid().as_raw() as i32
            );
            drop(client);
            server.abort();
        }
        // An fd that is not a listening socket is refused with what it is.
        let (a, b) = UnixStream::pair().unwrap();
        let e = fdrpc::Listener::from_fd(a.into()).unwrap_err();
        assert!(e.to_string().contains("not listening"), "{e}");
        let e = fdrpc::Server::new()
            .serve(
                OwnedFd::from(std::fs::File::open("/proc/self/exe").unwrap()),
                ConformanceServer::new(ConformanceImpl::default()),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        // One connected stream, served from std and from its fd.
        let (c, s) = UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            fdrpc::Server::new()
                .serve_connection(s, ConformanceServer::new(ConformanceImpl::default()))
                .await
        });
        let client = ConformanceClient::from_std(c).unwrap();
        assert_eq!(
            client.whoami().await.unwrap().pid,
            std::process::id() as i32
        );
        drop(client);
        server.await.unwrap().unwrap();
        let server = tokio::spawn(async move {
            fdrpc::Server::new()
                .serve_connection(
                    OwnedFd::from(b),
                    ConformanceServer::new(ConformanceImpl::default()),
                )
                .await
        });
        server.await.unwrap().unwrap();
    });
}

// ------------------------------------------------------------------------------- a child

/// The child of `a_spawned_child_calls_its_parent_over_the_passed_connection`.
#[test]
#[ignore = "runs only as a child of the test below"]
fn child_worker() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let conn = fdrpc::child::connection()
        .unwrap()
        .expect("started by child::spawn");
    assert!(is_cloexec(&conn));
    let client =
        ConformanceBlockingClient::new(fdrpc::BlockingClient::new(conn)).with_timeout(WAIT);
    // An fd from the parent, read here, and one sent back.
    let fd = client.open("/proc/self/exe".into()).unwrap();
    assert!(rustix::fs::fstat(&fd).unwrap().st_size > 0);
    let back = client
        .echo(Bundle {
            label: format!("from child {}", std::process::id()),
            fds: vec![fd],
            spare: None,
        })
        .unwrap();
    assert_eq!(back.fds.len(), 1);
    // Nothing else came with the connection.
    assert!(fdrpc::child::connection().unwrap().is_none(), "taken once");
}

#[test]
fn a_spawned_child_calls_its_parent_over_the_passed_connection() {
    run_async(async {
        let mut cmd = child_command("child_worker");
        let (mut child, conn) = fdrpc::child::spawn(&mut cmd).unwrap();
        drop(cmd);
        fdrpc::Server::new()
            .serve_connection(conn, ConformanceServer::new(ConformanceImpl::default()))
            .await
            .unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the child failed: {status}");
    });
}

// ------------------------------------------------------------------------------- systemd

fn activator_present() -> bool {
    let present = Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        let msg = "systemd-socket-activate missing (Debian: systemd)";
        if std::env::var_os("FDRPC_REQUIRE_INTEROP").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
    present
}

/// A `NOTIFY_SOCKET` of our own: a datagram socket, as the service manager's.
struct NotifySocket {
    path: PathBuf,
    sock: UnixDatagram,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        NotifySocket { path, sock }
    }

    /// Reads notifications until every line of `want` has come; returns the fds that came,
    /// with the `FDNAME=` sent beside them.
    fn expect(&self, want: &[&str]) -> Vec<(String, OwnedFd)> {
        let mut missing: Vec<&str> = want.to_vec();
        let mut fds = Vec::new();
        while !missing.is_empty() {
            let mut buf = [0u8; 4096];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16))];
            let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let msg = rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                rustix::net::RecvFlags::CMSG_CLOEXEC,
            )
            .unwrap_or_else(|e| panic!("no notification ({missing:?} missing): {e}"));
            let text = String::from_utf8_lossy(&buf[..msg.bytes]).into_owned();
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("FDNAME="))
                .unwrap_or("")
                .to_owned();
            for cmsg in control.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(got) = cmsg {
                    fds.extend(got.map(|fd| (name.clone(), fd)));
                }
            }
            missing.retain(|w| !text.lines().any(|l| l == *w));
        }
        fds
    }
}

/// The daemon of `a_daemon_under_socket_activation_keeps_its_state_in_the_fd_store`.
#[test]
#[ignore = "runs only under systemd-socket-activate, started by the test below"]
fn daemon_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let fds = fdrpc::systemd::ListenFds::take().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(daemon::run(fds))
        .unwrap();
}

#[test]
fn a_daemon_under_socket_activation_keeps_its_state_in_the_fd_store() {
    let _check = fd_leak_check();
    if !activator_present() {
        return;
    }
    let dir = scratch_dir("daemon-counter");
    let notify = NotifySocket::bind(&dir);
    let path = dir.join("counter.sock");
    // Started by the real activator, which listens and passes the socket named "counter".
    let child = child_command("daemon_child");
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&path)
        .arg("--fdname=counter")
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.path.display()))
        .arg(format!("--setenv={CHILD}=daemon_child"))
        .arg(child.get_program())
        .args(child.get_args())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&path);
    let client = CounterBlockingClient::connect(&path)
        .unwrap()
        .with_timeout(WAIT);
    assert_eq!(
        client.bump().unwrap(),
        1,
        "the first connection starts the daemon"
    );
    // It put its state in the fd store, and said it was ready.
    let stored = notify.expect(&["READY=1", "FDSTORE=1", "FDNAME=state"]);
    let [(name, state)] = <[_; 1]>::try_from(stored).expect("one stored fd");
    assert_eq!(name, "state");
    assert!(is_cloexec(&state));
    let shown = client.state().unwrap();
    assert_eq!(
        ino(&shown),
        ino(&state),
        "the stored fd is the daemon's state"
    );
    assert_eq!(client.bump().unwrap(), 2);
    drop((client, shown));
    terminate(&mut activator);
    notify.expect(&["STOPPING=1"]);

    // The restart, as systemd makes it: the socket and the stored state passed back.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let mut restarted = child_command("daemon_child");
    restarted.env("NOTIFY_SOCKET", &notify.path);
    let mut daemon = fdrpc::systemd::spawn_with_fds(
        &mut restarted,
        vec![("counter".into(), listener.into()), ("state".into(), state)],
    )
    .unwrap();
    drop(restarted);
    notify.expect(&["READY=1"]);
    let client = CounterBlockingClient::connect(&path)
        .unwrap()
        .with_timeout(WAIT);
    assert_eq!(client.bump().unwrap(), 3, "the count survived the restart");
    drop(client);
    terminate(&mut daemon);
    notify.expect(&["STOPPING=1"]);
    drop(notify);
}

/// The server of `conformance_serve_takes_the_activated_socket_and_says_it_is_ready`.
#[test]
#[ignore = "runs only under systemd-socket-activate, started by the test below"]
fn conformance_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let fds = fdrpc::systemd::ListenFds::take().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(conformance::serve_passed(fds))
        .unwrap();
}

#[test]
fn conformance_serve_takes_the_activated_socket_and_says_it_is_ready() {
    let _check = fd_leak_check();
    if !activator_present() {
        return;
    }
    let dir = scratch_dir("daemon-conformance");
    let notify = NotifySocket::bind(&dir);
    let path = dir.join("conformance.sock");
    let child = child_command("conformance_child");
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&path)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.path.display()))
        .arg(format!("--setenv={CHILD}=conformance_child"))
        .arg(child.get_program())
        .args(child.get_args())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&path);
    let client = ConformanceBlockingClient::connect(&path)
        .unwrap()
        .with_timeout(WAIT);
    let fd = memfd(b"through the activated socket");
    let id = ino(&fd);
    let back = client
        .echo(Bundle {
            label: "activated".into(),
            fds: vec![fd.into()],
            spare: None,
        })
        .unwrap();
    assert_eq!(ino(&back.fds[0]), id);
    notify.expect(&["READY=1"]);
    drop((client, back));
    terminate(&mut activator);
    notify.expect(&["STOPPING=1"]);
    drop(notify);
}

#[allow(dead_code)]
fn unused(_: &dyn AsFd) {}

/// A symbolic link planted at the socket path (in a directory others can write, it may point
/// at anything the daemon can change) is refused, never followed: its target keeps its mode
/// and the link stays a link.
#[test]
fn a_symlink_at_the_socket_path_is_refused_and_its_target_untouched() {
    run_async(async {
        let dir = scratch_dir("daemon-bind-symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"private").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("s.sock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        for bound in [
            fdrpc::Listener::bind_with_mode(&path, 0o666),
            fdrpc::Listener::bind(&path),
        ] {
            let e = bound.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        }
        assert_eq!(
            std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"private");
        // Nothing is left beside it (the private directory of the bind is gone).
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["s.sock", "victim"]);
    });
}

/// The socket file appears at its path with the mode asked for, all at once: the directory
/// sees it moved in (`IN_MOVED_TO`), never created there and then `chmod`-ed (`IN_CREATE`,
/// `IN_ATTRIB`), which would leave a moment in which a client the mode refuses can connect.
/// Long paths, beyond `sun_path`'s 108 bytes once the private directory is added, bind too.
#[test]
fn the_mode_holds_from_the_first_connection() {
    use rustix::fs::inotify;
    run_async(async {
        let dir = scratch_dir("daemon-bind-mode");
        let path = dir.join("s.sock");
        let watch =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).unwrap();
        inotify::add_watch(
            &watch,
            &*dir,
            inotify::WatchFlags::CREATE
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::ATTRIB,
        )
        .unwrap();
        let listener = fdrpc::Listener::bind_with_mode(&path, 0o600).unwrap();
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let mut reader = inotify::Reader::new(&watch, &mut buf);
        let mut seen = Vec::new();
        while let Ok(event) = reader.next() {
            if event.file_name().is_some_and(|n| n.to_bytes() == b"s.sock") {
                seen.push(event.events());
            }
        }
        assert_eq!(
            seen,
            [inotify::ReadFlags::MOVED_TO],
            "what the directory saw"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(listener);
        // A long path: the socket is bound through the private directory's fd.
        // 100 bytes in all: it fits `sun_path`, the private directory beside it would not.
        let long = dir.join("x".repeat(100 - 13 - dir.as_os_str().len()));
        std::fs::create_dir_all(&long).unwrap();
        let long_path = long.join("server.sock");
        assert_eq!(long_path.as_os_str().len(), 100, "{}", long_path.display());
        let listener = fdrpc::Listener::bind_with_mode(&long_path, 0o640).unwrap();
        assert_eq!(
            std::fs::metadata(&long_path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        std::os::unix::net::UnixStream::connect(&long_path).unwrap();
        drop(listener);
    });
}

/// Calls every notification function under the fake manager of the test below; exits
/// non-zero (a failed assertion) unless each says it sent.
#[test]
#[ignore = "runs only with NOTIFY_SOCKET set, started by the test below"]
fn notify_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    use fdrpc::systemd::{State, notify, remove_stored_fd, store_fd};
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(notify(&[State::Status("checking")]).unwrap());
    assert!(store_fd("kept", &file).unwrap());
    assert!(remove_stored_fd("kept").unwrap());
    assert!(notify(&[State::Stopping]).unwrap());
}

/// Under a service manager each call sends its message and says so (`Ok(true)`); without one
/// (the runtime's unit tests) each says it did nothing.
#[test]
fn under_a_service_manager_every_notification_is_sent_and_says_so() {
    let _check = fd_leak_check();
    let dir = scratch_dir("daemon-notify");
    let notify = NotifySocket::bind(&dir);
    let status = child_command("notify_child")
        .env("NOTIFY_SOCKET", &notify.path)
        .status()
        .unwrap();
    assert!(status.success(), "the child failed: {status}");
    let stored = notify.expect(&["STATUS=checking", "FDSTORE=1", "FDNAME=kept"]);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "kept");
    drop(stored);
    assert!(
        notify
            .expect(&["FDSTOREREMOVE=1", "FDNAME=kept"])
            .is_empty()
    );
    assert!(notify.expect(&["STOPPING=1"]).is_empty());
}
