//! A broker opens a file for a client and hands it over as a descriptor; the client reads the
//! file through the fd it received.
//!
//! Run with `cargo run --example quickstart`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

#[derive(fdrpc::Message)]
struct OpenRequest {
    path: String,
}

#[derive(fdrpc::Message)]
struct Opened {
    path: String,
    /// Checked on arrival: only a regular file can land here.
    file: fdrpc::RegularFile,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("fdrpc-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("greeting.txt");
    std::fs::File::create(&path)?.write_all(b"hello from a file the broker opened\n")?;

    let (client_end, broker_end) = UnixStream::pair()?;
    let broker = std::thread::spawn(move || -> Result<(), fdrpc::TransportError> {
        let mut chan = fdrpc::Channel::new(broker_end)?;
        let req: OpenRequest = chan.recv()?;
        let file = std::fs::File::open(&req.path)?;
        let file = fdrpc::RegularFile::new(file)?;
        chan.send(Opened {
            path: req.path,
            file,
        })
    });

    let mut chan = fdrpc::Channel::new(client_end)?;
    chan.send(OpenRequest {
        path: path.to_string_lossy().into_owned(),
    })?;
    let opened: Opened = chan.recv()?;
    let mut text = String::new();
    opened.file.into_inner().read_to_string(&mut text)?;
    print!("read through the received fd of {}: {text}", opened.path);

    broker.join().expect("broker thread panicked")?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
