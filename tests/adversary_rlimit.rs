//! The server near `RLIMIT_NOFILE`: a peer's fds that do not fit are truncated by the kernel
//! (`MSG_CTRUNC`); the server closes what did arrive, fails that connection, and keeps
//! serving the others. (Its own binary: it lowers a process-wide limit.)

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/conformance/main.rs"]
mod conformance;

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use conformance::{Bundle, ConformanceBlockingClient, ConformanceImpl, ConformanceServer};

#[test]
fn fds_beyond_rlimit_nofile_fail_only_that_connection() {
    let _check = fd_leak_check();
    let server = ThreadServer::start(fdrpc::Server::new, || {
        ConformanceServer::new(ConformanceImpl::default())
    });
    let path = server.path.clone();
    // A well-behaved client, connected before the limit drops.
    let good = ConformanceBlockingClient::connect(&path)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    assert_eq!(
        good.echo(Bundle {
            label: "before".into(),
            fds: vec![],
            spare: None
        })
        .unwrap()
        .label,
        "before"
    );
    std::thread::sleep(Duration::from_millis(50));
    let baseline = fd_count();
    let attacker = std::os::unix::net::UnixStream::connect(&path).unwrap();
    // The attacker's socket, and the server's end once it accepts.
    await_fd_count("the server accepting", |n| n >= baseline + 2);
    let fds = numbered(100);

    // Room for a handful of new fds only.
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut limit = 0;
    let mut free = 0;
    while free < 8 {
        if !open.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: old.maximum,
        },
    )
    .unwrap();

    let mut frame = Vec::new();
    let n = fds.len().to_string();
    fdrpc::transport::frame::write_frame(
        &mut frame,
        1,
        0,
        0,
        &[("fdrpc-fds", &n), ("fdrpc-fd-seq", "0")],
        b"\x82\x21\x01\x04echo\x00",
    )
    .unwrap();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed)));
    rustix::net::sendmsg(
        &attacker,
        &[IoSlice::new(&frame)],
        &mut control,
        rustix::net::SendFlags::NOSIGNAL,
    )
    .unwrap();

    // The server notices the truncation and closes the attacker's connection.
    attacker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = rustix::net::recv(&attacker, &mut buf, rustix::net::RecvFlags::empty());
    rustix::process::setrlimit(rustix::process::Resource::Nofile, old).unwrap();
    assert!(
        matches!(n, Ok((0, _)) | Err(rustix::io::Errno::CONNRESET)),
        "{n:?}"
    );

    // Every fd that did arrive was closed with the connection.
    drop(borrowed);
    drop((fds, attacker));
    settle_fd_count(baseline);
    // The other connection is unaffected.
    let back = good
        .echo(Bundle {
            label: "after".into(),
            fds: numbered(2),
            spare: None,
        })
        .unwrap();
    assert_eq!((back.label.as_str(), back.fds.len()), ("after", 2));
    drop((back, good));
    drop(server);
}
