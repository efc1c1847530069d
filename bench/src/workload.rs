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

/// Reads every byte of the pool buffer `buf` (through the view's copy-out, a cache-sized
/// chunk at a time), then gives it back.
pub fn read_pool_buffer(reader: &fdrpc::PoolReader, buf: fdrpc::PoolBuffer) {
    let view = reader.open(buf).unwrap();
    let mut total = 0u64;
    view.for_each_chunk(|c| total = total.wrapping_add(sum(c)));
    std::hint::black_box(total);
}

/// As [`read_pool_buffer`], in place: the `unsafe` read for a trusted sender.
pub fn read_pool_buffer_in_place(reader: &fdrpc::PoolReader, buf: fdrpc::PoolBuffer) {
    let view = reader.open(buf).unwrap();
    // SAFETY: the sender is this benchmark's fdrpc `Pool`, which does not write a lent slot.
    std::hint::black_box(sum(unsafe { view.as_slice_unchecked() }));
}

/// Writes the payload of call `n` into a free buffer of `pool` (waiting for one to come
/// back) and lends it.
pub async fn write_pool_buffer(pool: &fdrpc::Pool, n: u8) -> fdrpc::PoolBuffer {
    let mut buf = pool.buffer().await.unwrap();
    fill(&mut buf[..SIZE], n);
    buf.lend(SIZE).unwrap()
}

/// Reads every byte of `buf`, eight at a time (a wrapping sum of its 64-bit words, and of
/// the bytes of a short tail): about memory speed. (Until 2026-12-06 it added byte by byte,
/// ~200 µs per MiB on this machine, which then dominated every large case.)
pub fn sum(buf: &[u8]) -> u64 {
    let words = buf.chunks_exact(8);
    let tail = words.remainder().iter().map(|&b| u64::from(b)).sum::<u64>();
    words
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()))
        .fold(tail, u64::wrapping_add)
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
