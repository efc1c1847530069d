//! Calls a running `conformance serve` with fdrpc built without its `tokio` feature: the
//! generated service code and the blocking client need no async runtime. `.ci/run` builds
//! this, checks that tokio is not in its dependency tree, and runs it.
//!
//! ```text
//! cargo run -p fdrpc-no-tokio -- SOCKET
//! ```

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

#[path = "../../examples/conformance/service.rs"]
mod service;

use service::{Bundle, ConformanceBlockingClient};

fn memfd(text: &str) -> std::io::Result<std::fs::File> {
    let mut f = std::fs::File::from(rustix::fs::memfd_create(
        "fdrpc-no-tokio",
        rustix::fs::MemfdFlags::CLOEXEC,
    )?);
    f.write_all(text.as_bytes())?;
    Ok(f)
}

fn read(fd: OwnedFd) -> std::io::Result<String> {
    let mut f = std::fs::File::from(fd);
    f.rewind()?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

fn run(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = ConformanceBlockingClient::connect(path)?.with_timeout(Duration::from_secs(10));
    let back = client.echo(Bundle {
        label: "no tokio".into(),
        fds: vec![memfd("an fd")?.into()],
        spare: None,
    })?;
    let [fd] = <[OwnedFd; 1]>::try_from(back.fds).map_err(|_| "expected one fd back")?;
    if back.label != "no tokio" || read(fd)? != "an fd" {
        return Err("echo came back different".into());
    }
    let items: Vec<String> = client
        .memfds(3)?
        .map(|fd| read(fd?).map_err(Into::into))
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    if items != ["0", "1", "2"] {
        return Err(format!("memfds(3) gave {items:?}").into());
    }
    let total = client.total_size(
        ["ab", "cde"]
            .into_iter()
            .map(|t| OwnedFd::from(memfd(t).expect("memfd"))),
    )?;
    if total != 5 {
        return Err(format!("total_size gave {total}").into());
    }
    println!("fdrpc without tokio: echo, a stream and a sink with fds all worked");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: fdrpc-no-tokio SOCKET");
        return ExitCode::from(2);
    };
    match run(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdrpc-no-tokio: {e}");
            ExitCode::FAILURE
        }
    }
}
