//! The workload every case carries: a 64-byte payload and one fd each way. The fd is a dup of
//! an open file; whoever receives an fd closes it. And the large payloads' (1 MiB each way,
//! every byte written by the sender and read by the receiver), with the handlers' side of
//! them, which every stack's server shares.

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

/// The payload size.
pub const SIZE: usize = 1 << 20;

/// Writes the payload of call `n` into `buf`.
pub fn fill(buf: &mut [u8], n: u8) {
    buf.fill(n);
}

/// Writes the payload of call `n` into `buf`'s memory (taken back from the message sent last,
/// once nothing refers to it) and hands it out to be sent.
pub fn fill_shared(buf: &mut fdrpc::bytes::BytesMut, n: u8) -> fdrpc::bytes::Bytes {
    use fdrpc::bytes::BufMut;
    buf.reserve(SIZE);
    buf.put_bytes(n, SIZE);
    buf.split().freeze()
}

/// Reads every byte of `buf`.
pub fn sum(buf: &[u8]) -> u64 {
    buf.chunks(8)
        .map(|c| c.iter().fold(0u64, |a, &b| a + u64::from(b)))
        .fold(0u64, u64::wrapping_add)
}

/// The handler side of `fdrpc_memfd_1mib`: reads the frame in place, answers with a new one
/// written in place.
pub fn memfd_reply(frame: fdrpc::SealedMemfd, n: u8) -> fdrpc::SealedMemfd {
    std::hint::black_box(sum(&frame.map().unwrap()));
    let mut out = fdrpc::MemfdWriter::new("bench", SIZE).unwrap();
    fill(&mut out, n);
    out.seal().unwrap()
}

/// The handler side of `fdrpc_binary_1mib`.
pub fn bytes_reply(data: Vec<u8>, n: u8) -> Vec<u8> {
    std::hint::black_box(sum(&data));
    let mut out = vec![0u8; SIZE];
    fill(&mut out, n);
    out
}
