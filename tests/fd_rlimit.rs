//! The receiver near `RLIMIT_NOFILE`: the kernel installs what fits and sets `MSG_CTRUNC`.
//! fdrpc reports a broken fd stream and closes every fd that did arrive. (Its own binary: it
//! lowers a process-wide limit.)

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use common::*;
use fdrpc::Settings;
use fdrpc::transport::{RecvQueue, SendQueue};

#[test]
fn control_truncation_is_detected_and_nothing_leaks() {
    let _check = fd_leak_check();
    let (a, b) = UnixStream::pair().unwrap();
    let fds = numbered(20);
    let mut q = SendQueue::new();
    q.push(1, b"payload", fds, &[]).unwrap();
    q.flush_blocking(a.as_fd()).unwrap();

    let before = fd_count();
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    // The smallest limit that leaves exactly 3 free fd numbers below it.
    let mut limit = 0;
    let mut free = 0;
    while free < 3 {
        if !open.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let low = rustix::process::Rlimit {
        current: Some(limit),
        maximum: old.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, low).unwrap();
    let mut rq = RecvQueue::new(&Settings::default());
    let result = rq.fill_blocking(b.as_fd());
    rustix::process::setrlimit(rustix::process::Resource::Nofile, old).unwrap();

    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            fdrpc::TransportError::FdStream(fdrpc::FdStreamError::ControlTruncated)
        ),
        "{err}"
    );
    // The few fds that did arrive (3, or 4 counting the slot `read_dir` used above) are held by
    // the queue until it is dropped with the connection.
    let held = fd_count() - before;
    assert!((3..=4).contains(&held), "{held} fds held");
    drop(rq);
    assert_eq!(fd_count(), before);
    assert!(b.as_raw_fd() > 0);
    drop((a, b));
}
