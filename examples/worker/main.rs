//! A parent that spawns a sandboxed worker and serves it files: two processes, one
//! connection passed at start (`fdrpc::child`), the worker shut in an empty root where it
//! cannot open anything, and still reading every file, through the fds the parent sends.
//!
//! Run with `cargo run --example worker`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

#[derive(fdrpc::Message, Debug)]
pub struct Denied {
    pub reason: String,
}

#[fdrpc::service]
pub trait Files {
    /// The names of the files the worker may read.
    async fn names(&self) -> Vec<String>;
    /// One of them, opened read-only by the parent.
    async fn open(&self, name: String) -> Result<fdrpc::RegularFile, Denied>;
    /// What the worker found in a file.
    async fn report(&self, name: String, lines: u64);
}

/// The parent's side: serves the files of one directory, and prints the reports.
struct Parent {
    dir: PathBuf,
    names: Vec<String>,
}

impl Files for Parent {
    async fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    async fn open(&self, name: String) -> Result<fdrpc::RegularFile, Denied> {
        // Only the files it listed: a name is never a path.
        if !self.names.contains(&name) {
            return Err(Denied {
                reason: format!("{name}: not one of the files served"),
            });
        }
        let deny = |e: std::io::Error| Denied {
            reason: format!("{name}: {e}"),
        };
        let file = std::fs::File::open(self.dir.join(&name)).map_err(deny)?;
        fdrpc::RegularFile::new(file).map_err(deny)
    }

    async fn report(&self, name: String, lines: u64) {
        println!("parent: the worker counted {lines} lines in {name}");
    }
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir(dir.join("jail"))?;
    let mut names = Vec::new();
    for (name, lines) in [("a.txt", 3), ("b.txt", 5), ("c.txt", 8)] {
        let text: String = (0..lines).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.join(name), text)?;
        names.push(name.to_owned());
    }
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("worker").arg(dir.join("jail"));
    let (mut child, conn) = fdrpc::child::spawn(&mut command)?;
    // Served until the worker closes its end.
    fdrpc::Server::new()
        .serve_connection(
            conn,
            FilesServer::new(Parent {
                dir: dir.clone(),
                names,
            }),
        )
        .await?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    scratch.close()?;
    if !status.success() {
        return Err(format!("the worker failed: {status}").into());
    }
    println!("parent: the worker is done");
    Ok(())
}

/// Shuts this process in `jail`, an empty directory, if the system lets it (a user namespace
/// and chroot); says what happened either way.
fn sandbox(jail: &Path) {
    let shut_in = (|| -> std::io::Result<()> {
        if !rustix::process::getuid().is_root() {
            // SAFETY: a new user namespace leaves the fd table alone; the worker has one
            // thread (unshare refuses otherwise).
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)? };
        }
        rustix::process::chroot(jail)?;
        std::env::set_current_dir("/")?;
        Ok(())
    })();
    match shut_in {
        Ok(()) => println!("worker: shut in an empty root; no path opens any more"),
        Err(e) => println!("worker: could not shut myself in ({e}); going on without"),
    }
}

fn worker(jail: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let conn = fdrpc::child::connection()?.ok_or("not started by the parent")?;
    sandbox(jail);
    let files = FilesBlockingClient::new(fdrpc::BlockingClient::new(conn));
    for name in files.names()? {
        let file = files.open(name.clone())?;
        let lines = BufReader::new(file.into_inner()).lines().count() as u64;
        files.report(name, lines)?;
    }
    if let Err(fdrpc::CallError::Service(denied)) = files.open("../../etc/passwd".into()) {
        println!("worker: asked for a path, and was told: {}", denied.reason);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, jail] if mode == "worker" => worker(Path::new(jail)),
        [] => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(parent()),
        _ => Err("usage: worker (the parent; it starts the worker itself)".into()),
    }
}
