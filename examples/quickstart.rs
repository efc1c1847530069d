//! A file broker: the server opens files for its clients and hands them over as descriptors;
//! the client reads the file through the fd it received.
//!
//! Run with `cargo run --example quickstart`.

use std::io::{Read, Write};

#[derive(fdrpc::Message, Debug)]
pub struct Opened {
    pub path: String,
    /// Checked on arrival: only a regular file can land here.
    pub file: fdrpc::RegularFile,
}

#[derive(fdrpc::Message, Debug)]
pub struct Denied {
    pub reason: String,
}

#[fdrpc::service]
pub trait Broker {
    /// Opens `path` read-only for the caller.
    async fn open(&self, path: String) -> Result<Opened, Denied>;
}

struct FileBroker;

impl Broker for FileBroker {
    async fn open(&self, path: String) -> Result<Opened, Denied> {
        let denied = |e: std::io::Error| Denied {
            reason: e.to_string(),
        };
        let file = std::fs::File::open(&path).map_err(denied)?;
        let file = fdrpc::RegularFile::new(file).map_err(denied)?;
        Ok(Opened { path, file })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("broker.sock");
    let path = dir.path().join("greeting.txt");
    std::fs::File::create(&path)?.write_all(b"hello from a file the broker opened\n")?;

    // The server: one task serving the broker on a Unix socket.
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let server = tokio::spawn(fdrpc::Server::new().serve(listener, BrokerServer::new(FileBroker)));

    // The client: asks for the file and reads it through the received fd.
    let client = BrokerClient::connect(&socket).await?;
    let opened = client.open(path.to_string_lossy().into_owned()).await?;
    let mut text = String::new();
    opened.file.into_inner().read_to_string(&mut text)?;
    print!(
        "read through the fd the broker sent for {}: {text}",
        opened.path
    );

    match client.open("/no/such/file".into()).await {
        Err(fdrpc::CallError::Service(denied)) => println!("and a denial: {}", denied.reason),
        other => return Err(format!("expected a denial, got {other:?}").into()),
    }

    server.abort();
    dir.close()?;
    Ok(())
}
