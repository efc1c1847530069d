//! Services as fields, across two processes: a broker checks its caller once and hands it a
//! session that can do only what that caller may (privilege separation); the caller passes a
//! callback the session calls while the caller's own call is still running.
//!
//! Run with `cargo run --example broker`. The broker starts a worker copy of this program
//! with a connection (`fdrpc::child`), serves `Broker` on it, and serves each session on the
//! same server. The worker opens a session, reads through it, is refused what its user may
//! not read, and watches a file with a `Listener` it serves itself.

use std::fs::File;
use std::io::Read;

use fdrpc::{ClientEnd, Context};

#[derive(fdrpc::Message, Debug)]
pub struct Denied {
    pub reason: String,
}

/// What one user may do: read its own files, be told of changes.
#[fdrpc::service]
pub trait Session {
    /// The user this session is for.
    async fn user(&self) -> String;
    /// The pid of the process that sent this call, as the kernel says.
    async fn caller_pid(&self, cx: &Context) -> i32;
    /// One of the user's files, opened by the broker.
    async fn open(&self, name: String) -> Result<File, Denied>;
    /// Tells `listener` of `changes` changes to `name`, each while this call runs; returns
    /// how many the listener acknowledged.
    async fn watch(
        &self,
        name: String,
        changes: u32,
        listener: ClientEnd<ListenerProtocol>,
    ) -> Result<u32, Denied>;
}

/// The door: checks the caller once and hands out sessions.
#[fdrpc::service]
pub trait Broker {
    async fn open_session(
        &self,
        cx: &Context,
        user: String,
    ) -> Result<ClientEnd<SessionProtocol>, Denied>;
}

/// A callback, served by the worker.
#[fdrpc::service]
pub trait Listener {
    /// Change `seq` of `name` happened; true to acknowledge it.
    async fn changed(&self, name: String, seq: u32) -> bool;
}

/// One user's rights: its own files and nothing else.
struct UserSession {
    user: String,
}

impl UserSession {
    fn check(&self, name: &str) -> Result<(), Denied> {
        if name.starts_with(&format!("{}/", self.user)) {
            Ok(())
        } else {
            Err(Denied {
                reason: format!("{} may not read {name}", self.user),
            })
        }
    }
}

impl Session for UserSession {
    async fn user(&self) -> String {
        self.user.clone()
    }

    async fn caller_pid(&self, cx: &Context) -> i32 {
        cx.peer().pid()
    }

    async fn open(&self, name: String) -> Result<File, Denied> {
        self.check(&name)?;
        // A memfd stands in for the file the broker would open with its own rights.
        let fd = rustix::fs::memfd_create(name.as_str(), rustix::fs::MemfdFlags::CLOEXEC).map_err(
            |e| Denied {
                reason: e.to_string(),
            },
        )?;
        let file = File::from(fd);
        std::io::Write::write_all(&mut &file, format!("the contents of {name}").as_bytes())
            .and_then(|()| std::io::Seek::rewind(&mut &file))
            .map_err(|e| Denied {
                reason: e.to_string(),
            })?;
        Ok(file)
    }

    async fn watch(
        &self,
        name: String,
        changes: u32,
        listener: ClientEnd<ListenerProtocol>,
    ) -> Result<u32, Denied> {
        self.check(&name)?;
        let listener = listener.into_client().map_err(|e| Denied {
            reason: e.to_string(),
        })?;
        let mut acknowledged = 0;
        for seq in 0..changes {
            if listener
                .changed(name.clone(), seq)
                .await
                .map_err(|e| Denied {
                    reason: e.to_string(),
                })?
            {
                acknowledged += 1;
            }
        }
        Ok(acknowledged)
    }
}

struct Door;

impl Broker for Door {
    async fn open_session(
        &self,
        cx: &Context,
        user: String,
    ) -> Result<ClientEnd<SessionProtocol>, Denied> {
        // The one check: a caller opens the session of its own user and no other (a real
        // broker would look the uid up; `uid<N>` stands in for the name).
        if user != format!("uid{}", cx.peer().uid()) {
            return Err(Denied {
                reason: format!("uid {} may not open {user}'s session", cx.peer().uid()),
            });
        }
        println!(
            "broker: session for {user}, asked by pid {}",
            cx.peer().pid()
        );
        let (client, server) = fdrpc::endpoints::<SessionProtocol>().map_err(|e| Denied {
            reason: e.to_string(),
        })?;
        cx.serve(server, UserSession { user }).map_err(|e| Denied {
            reason: e.to_string(),
        })?;
        Ok(client)
    }
}

struct Printer;

impl Listener for Printer {
    async fn changed(&self, name: String, seq: u32) -> bool {
        println!("worker: {name} changed ({seq})");
        true
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return worker().await;
    }
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("worker");
    let (mut child, conn) = fdrpc::child::spawn(&mut command)?;
    // The broker's server, on its connection to the worker; each session is one more
    // connection of it, and ends with it.
    fdrpc::Server::new()
        .serve_connection(conn, BrokerServer::new(Door))
        .await?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    if !status.success() {
        return Err(format!("the worker failed: {status}").into());
    }
    println!("broker: the worker is done");
    Ok(())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let conn = fdrpc::child::connection()?.ok_or("not started by the broker")?;
    let broker = BrokerClient::from_std(conn)?;
    let me = std::process::id();
    let user = format!("uid{}", rustix::process::getuid().as_raw());
    let session = broker.open_session(user.clone()).await?.into_client()?;
    println!("worker (pid {me}): session for {}", session.user().await?);
    // The broker made the session's socket pair, yet the session knows who calls on it.
    let seen = session.caller_pid().await?;
    if seen != me as i32 {
        return Err(format!("the session saw pid {seen}, not {me}").into());
    }
    let mut text = String::new();
    let mine = format!("{user}/notes");
    session
        .open(mine.clone())
        .await?
        .read_to_string(&mut text)?;
    println!("worker: read \"{text}\"");
    match session.open("someone-else/notes".into()).await {
        Err(fdrpc::CallError::Service(denied)) => println!("worker: refused: {}", denied.reason),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    // The callback: a Listener served here, its client end passed to the session, which
    // calls it while `watch` runs.
    let (listener, end) = fdrpc::endpoints::<ListenerProtocol>()?;
    let served = tokio::spawn(end.serve(Printer));
    let acknowledged = session.watch(mine, 3, listener).await?;
    println!("worker: {acknowledged} changes acknowledged");
    // The session dropped its client of our listener when `watch` ended.
    served.await??;
    match broker.open_session("uid12345".into()).await {
        Err(fdrpc::CallError::Service(denied)) => println!("worker: refused: {}", denied.reason),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    Ok(())
}
