//! The workload every case carries: a 64-byte payload and one fd each way. The fd is a dup of
//! an open file; whoever receives an fd closes it.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

pub const PAYLOAD: usize = 64;

fn file() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| File::open("/proc/self/exe").expect("open /proc/self/exe"))
}

/// A fresh dup of the shared open file.
pub fn fd() -> OwnedFd {
    file().try_clone().expect("dup").into()
}

pub fn payload() -> Vec<u8> {
    vec![0xab; PAYLOAD]
}
