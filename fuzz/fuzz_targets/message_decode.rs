//! Decoding a message with fds in every position from any bytes and any number of fds: no
//! panic, and every fd not handed out is closed.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[derive(fdrpc::Message, Debug)]
enum Slot {
    Empty,
    Fd(OwnedFd),
    Many(Vec<OwnedFd>),
}

#[derive(fdrpc::Message, Debug)]
struct FdsEverywhere {
    one: OwnedFd,
    maybe: Option<OwnedFd>,
    list: Vec<OwnedFd>,
    nested: Vec<Vec<OwnedFd>>,
    map: HashMap<String, OwnedFd>,
    tree: BTreeMap<i32, Slot>,
    slot: Slot,
    boxed: Option<Box<FdsEverywhere>>,
    typed: Option<fdrpc::RegularFile>,
    sealed: Option<fdrpc::SealedMemfd>,
    text: String,
    number: u16,
}

fn pool() -> &'static OwnedFd {
    static POOL: OnceLock<OwnedFd> = OnceLock::new();
    POOL.get_or_init(|| rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, bytes)) = data.split_first() else { return };
    // The pool's own fd is opened once, outside the count.
    let pool = pool();
    let before = fd_count();
    let fds: Vec<OwnedFd> = (0..n % 8).map(|_| pool.try_clone().unwrap()).collect();
    let decoded = fdrpc::decode::<FdsEverywhere>(bytes, fds);
    drop(decoded);
    assert_eq!(fd_count(), before, "fds leaked");
});
