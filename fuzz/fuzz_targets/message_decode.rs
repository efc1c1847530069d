//! Decoding a message with fds in every position from any bytes and any number of fds: no
//! panic, and every fd not handed out is closed.
#![no_main]

use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/fds_everywhere.rs"]
mod fds_everywhere;
use fds_everywhere::FdsEverywhere;

fn pool() -> &'static OwnedFd {
    static POOL: OnceLock<OwnedFd> = OnceLock::new();
    POOL.get_or_init(|| rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, bytes)) = data.split_first() else {
        return;
    };
    // The pool's own fd is opened once, outside the count.
    let pool = pool();
    let before = fd_count();
    let fds: Vec<OwnedFd> = (0..n % 8).map(|_| pool.try_clone().unwrap()).collect();
    let decoded = fdrpc::decode::<FdsEverywhere>(bytes, fds);
    drop(decoded);
    assert_eq!(fd_count(), before, "fds leaked");
});
