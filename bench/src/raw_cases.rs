//! The baselines: `sendmsg`/`recvmsg` with `SCM_RIGHTS` and nothing else. Each message is 64
//! bytes plus one fd; the server answers each with 64 bytes and a fresh fd.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;

use crate::drive::latencies;
use crate::stats::Sample;
use crate::workload::{PAYLOAD, fd, payload};

const MAX_FDS: usize = 253;

/// One `sendmsg` of `data` with `fds`; returns the bytes written.
fn send(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> rustix::io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        flags | SendFlags::NOSIGNAL,
    )
}

/// One `recvmsg`; fds go to `fifo`. Returns the bytes read.
fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fifo: &mut VecDeque<OwnedFd>,
    flags: RecvFlags,
) -> rustix::io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        flags | RecvFlags::CMSG_CLOEXEC,
    )?;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            fifo.extend(fds);
        }
    }
    Ok(msg.bytes)
}

/// Reads exactly one 64-byte message (blocking), with its fd.
fn recv_message(sock: &UnixStream, fifo: &mut VecDeque<OwnedFd>) -> bool {
    let mut buf = [0u8; PAYLOAD];
    let mut got = 0;
    while got < PAYLOAD {
        match recv(sock.as_fd(), &mut buf[got..], fifo, RecvFlags::empty()) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    true
}

/// The child: answers each 64-byte message with 64 bytes and a fresh fd (blocking).
pub fn serve_blocking(sock: UnixStream) {
    let mut fifo = VecDeque::new();
    let data = payload();
    while recv_message(&sock, &mut fifo) {
        fifo.clear();
        let reply = fd();
        if send(sock.as_fd(), &data, &[reply.as_fd()], SendFlags::empty()).is_err() {
            return;
        }
    }
}

pub fn blocking_fd(sock: UnixStream, iters: usize) -> Sample {
    let mut fifo = VecDeque::new();
    let data = payload();
    let one = || {
        let out = fd();
        send(sock.as_fd(), &data, &[out.as_fd()], SendFlags::empty()).unwrap();
        drop(out);
        assert!(recv_message(&sock, &mut fifo));
        assert_eq!(fifo.len(), 1);
        fifo.clear();
    };
    latencies(iters, one)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tokio_stream(sock: UnixStream) -> tokio::net::UnixStream {
    sock.set_nonblocking(true).unwrap();
    tokio::net::UnixStream::from_std(sock).unwrap()
}

async fn tsend(s: &tokio::net::UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> bool {
    let mut off = 0;
    let mut fds = fds;
    while off < data.len() {
        match s
            .async_io(Interest::WRITABLE, || {
                send(s.as_fd(), &data[off..], fds, SendFlags::DONTWAIT).map_err(Into::into)
            })
            .await
        {
            Ok(n) => {
                off += n;
                fds = &[];
            }
            Err(_) => return false,
        }
    }
    true
}

async fn trecv(s: &tokio::net::UnixStream, buf: &mut [u8], fifo: &mut VecDeque<OwnedFd>) -> usize {
    s.async_io(Interest::READABLE, || {
        recv(s.as_fd(), buf, fifo, RecvFlags::DONTWAIT).map_err(Into::into)
    })
    .await
    .unwrap_or(0)
}

/// The read side of the framed tokio cases: a 64 KiB buffer and an fd FIFO.
struct Inbox {
    buf: Vec<u8>,
    have: usize,
    fifo: VecDeque<OwnedFd>,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            buf: vec![0u8; 64 * 1024],
            have: 0,
            fifo: VecDeque::new(),
        }
    }

    /// Reads once; returns how many whole 64-byte messages arrived (their fds are closed), or
    /// `None` at the end of the stream.
    async fn read(&mut self, s: &tokio::net::UnixStream) -> Option<usize> {
        let n = trecv(s, &mut self.buf[self.have..], &mut self.fifo).await;
        if n == 0 {
            return None;
        }
        self.have += n;
        let whole = self.have / PAYLOAD;
        self.fifo.drain(..whole.min(self.fifo.len()));
        self.buf.copy_within(whole * PAYLOAD..self.have, 0);
        self.have -= whole * PAYLOAD;
        Some(whole)
    }
}

/// The child: tokio, one `sendmsg` per reply.
pub fn serve_tokio(sock: UnixStream) {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let data = payload();
        let mut inbox = Inbox::new();
        while let Some(whole) = inbox.read(&s).await {
            for _ in 0..whole {
                let reply = fd();
                if !tsend(&s, &data, &[reply.as_fd()]).await {
                    return;
                }
            }
        }
    })
}

pub fn tokio_fd(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let mut fifo = VecDeque::new();
        let data = payload();
        let mut buf = [0u8; PAYLOAD];
        let mut lat = Vec::with_capacity(iters);
        let mut start = Instant::now();
        crate::counts::add_ops(iters / 10);
        for i in 0..iters + iters / 10 {
            if i == iters / 10 {
                lat.clear();
                start = Instant::now();
            }
            let t = Instant::now();
            let out = fd();
            assert!(tsend(&s, &data, &[out.as_fd()]).await);
            drop(out);
            let mut got = 0;
            while got < PAYLOAD {
                let n = trecv(&s, &mut buf[got..], &mut fifo).await;
                assert!(n > 0);
                got += n;
            }
            fifo.clear();
            lat.push(t.elapsed());
        }
        Sample::from_latencies(lat, start.elapsed())
    })
}

/// 64 requests in flight, one `sendmsg` per request.
pub fn tokio_fd_pipelined(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let data = payload();
        let mut inbox = Inbox::new();
        let start = Instant::now();
        let mut sent = 0;
        let mut done = 0;
        while sent < 64.min(iters) {
            let out = fd();
            assert!(tsend(&s, &data, &[out.as_fd()]).await);
            sent += 1;
        }
        while done < iters {
            let whole = inbox.read(&s).await.expect("server closed");
            for _ in 0..whole {
                done += 1;
                if sent < iters {
                    let out = fd();
                    assert!(tsend(&s, &data, &[out.as_fd()]).await);
                    sent += 1;
                }
            }
        }
        Sample::throughput(iters, start.elapsed())
    })
}

/// Writes all of `out` with all of `fds` (at most 253) on the first `sendmsg`.
async fn tsend_batch(s: &tokio::net::UnixStream, out: &[u8], fds: &[OwnedFd]) -> bool {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    tsend(s, out, &borrowed).await
}

/// The child for the batched case: replies to everything a read brought in one `sendmsg`.
pub fn serve_tokio_batched(sock: UnixStream) {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let data = payload();
        let mut inbox = Inbox::new();
        let mut out = Vec::with_capacity(64 * PAYLOAD);
        let mut fds = Vec::with_capacity(64);
        while let Some(whole) = inbox.read(&s).await {
            for _ in 0..whole {
                out.extend_from_slice(&data);
                fds.push(fd());
            }
            if !out.is_empty() {
                if !tsend_batch(&s, &out, &fds).await {
                    return;
                }
                out.clear();
                fds.clear();
            }
        }
    })
}

/// 64 in flight; everything queued goes in one `sendmsg` with all its fds, and reads fill a
/// large buffer with an fd FIFO: the limit for a framed protocol.
pub fn tokio_fd_batched(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let data = payload();
        let mut inbox = Inbox::new();
        let mut out = Vec::with_capacity(64 * PAYLOAD);
        let mut fds = Vec::with_capacity(64);
        let start = Instant::now();
        let (mut sent, mut done) = (0, 0);
        while done < iters {
            while sent < iters && sent - done < 64 {
                out.extend_from_slice(&data);
                fds.push(fd());
                sent += 1;
            }
            if !out.is_empty() {
                assert!(tsend_batch(&s, &out, &fds).await);
                out.clear();
                fds.clear();
            }
            done += inbox.read(&s).await.expect("server closed");
        }
        Sample::throughput(iters, start.elapsed())
    })
}

/// The child for bulk: drains messages of one byte and 253 fds, closing the fds; answers `!`
/// with one byte so that the sender can tell when everything arrived.
pub fn serve_bulk(sock: UnixStream) {
    let mut fifo = VecDeque::new();
    let mut buf = [0u8; 4096];
    loop {
        match recv(sock.as_fd(), &mut buf, &mut fifo, RecvFlags::empty()) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                fifo.clear();
                if buf[..n].contains(&b'!') {
                    let _ = send(sock.as_fd(), b"k", &[], SendFlags::empty());
                }
            }
        }
    }
}

/// One-way `sendmsg` of 253 fds each; fds per second.
pub fn bulk_253(sock: UnixStream, total_fds: usize) -> Sample {
    let msgs = total_fds / MAX_FDS;
    let start = Instant::now();
    for _ in 0..msgs {
        let fds: Vec<OwnedFd> = (0..MAX_FDS).map(|_| fd()).collect();
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        send(sock.as_fd(), b".", &borrowed, SendFlags::empty()).unwrap();
    }
    send(sock.as_fd(), b"!", &[], SendFlags::empty()).unwrap();
    let mut fifo = VecDeque::new();
    let mut b = [0u8; 1];
    recv(sock.as_fd(), &mut b, &mut fifo, RecvFlags::empty()).unwrap();
    Sample::throughput(msgs * MAX_FDS, start.elapsed())
}

/// The first byte of the message that ends a one-way run.
const END: u8 = 0xee;

/// The child for the one-way case: reads messages (64 bytes, most with an fd), closes their
/// fds, and answers the end message with one byte.
pub fn serve_oneway(sock: UnixStream) {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let mut buf = vec![0u8; 64 * 1024];
        let mut have = 0;
        let mut fifo = VecDeque::new();
        loop {
            let n = trecv(&s, &mut buf[have..], &mut fifo).await;
            if n == 0 {
                return;
            }
            have += n;
            let whole = have / PAYLOAD;
            let ended = (0..whole).any(|i| buf[i * PAYLOAD] == END);
            fifo.clear();
            buf.copy_within(whole * PAYLOAD..have, 0);
            have -= whole * PAYLOAD;
            if ended && !tsend(&s, b"k", &[]).await {
                return;
            }
        }
    })
}

/// One-way messages of 64 bytes and 1 fd, 64 to a `sendmsg` with all their fds, read into a
/// large buffer with an fd FIFO: the limit for oneway calls and stream and sink items.
pub fn oneway_fd_batched(sock: UnixStream, iters: usize) -> Sample {
    rt().block_on(async move {
        let s = tokio_stream(sock);
        let data = payload();
        let run = |n: usize| {
            let (s, data) = (&s, &data);
            async move {
                let start = Instant::now();
                let mut out = Vec::with_capacity(64 * PAYLOAD);
                let mut fds = Vec::with_capacity(64);
                let mut sent = 0;
                while sent < n {
                    while sent < n && fds.len() < 64 {
                        out.extend_from_slice(data);
                        fds.push(fd());
                        sent += 1;
                    }
                    assert!(tsend_batch(s, &out, &fds).await);
                    out.clear();
                    fds.clear();
                }
                let mut end = vec![0u8; PAYLOAD];
                end[0] = END;
                assert!(tsend(s, &end, &[]).await);
                let mut k = [0u8; 1];
                let mut fifo = VecDeque::new();
                assert_eq!(trecv(s, &mut k, &mut fifo).await, 1);
                start.elapsed()
            }
        };
        crate::counts::add_ops(iters / 10);
        run(iters / 10).await;
        Sample::throughput(iters, run(iters).await)
    })
}

/// The child for the 16-connection batched case: a listener on a multi-thread runtime, each
/// connection answered as in [`serve_tokio_batched`].
pub fn serve_batched_listener(path: &str, threads: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        // SIGTERM ends it (its counts are reported as it returns).
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = term.recv() => return,
            };
            let Ok((s, _)) = accepted else {
                return;
            };
            tokio::spawn(async move {
                let data = payload();
                let mut inbox = Inbox::new();
                let mut out = Vec::with_capacity(64 * PAYLOAD);
                let mut fds = Vec::with_capacity(64);
                while let Some(whole) = inbox.read(&s).await {
                    for _ in 0..whole {
                        out.extend_from_slice(&data);
                        fds.push(fd());
                    }
                    if !out.is_empty() {
                        if !tsend_batch(&s, &out, &fds).await {
                            return;
                        }
                        out.clear();
                        fds.clear();
                    }
                }
            });
        }
    });
}

/// [`tokio_fd_batched`] on 16 connections at once.
pub fn tokio_fd_batched_16x64(path: &str, iters: usize) -> Sample {
    let path = path.to_owned();
    rt().block_on(async move {
        let mut socks = Vec::new();
        for _ in 0..16 {
            socks.push(std::sync::Arc::new(
                tokio::net::UnixStream::connect(&path).await.unwrap(),
            ));
        }
        let run = |total: usize| {
            let socks = socks.clone();
            async move {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for s in socks {
                    tasks.push(tokio::spawn(async move {
                        let data = payload();
                        let mut inbox = Inbox::new();
                        let mut out = Vec::with_capacity(64 * PAYLOAD);
                        let mut fds = Vec::with_capacity(64);
                        let (mut sent, mut done) = (0, 0);
                        let mine = total / 16;
                        while done < mine {
                            while sent < mine && sent - done < 64 {
                                out.extend_from_slice(&data);
                                fds.push(fd());
                                sent += 1;
                            }
                            if !out.is_empty() {
                                assert!(tsend_batch(&s, &out, &fds).await);
                                out.clear();
                                fds.clear();
                            }
                            done += inbox.read(&s).await.expect("server closed");
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            }
        };
        crate::counts::add_ops(iters / 10);
        run(iters / 10).await;
        Sample::throughput(iters / 16 * 16, run(iters).await)
    })
}
