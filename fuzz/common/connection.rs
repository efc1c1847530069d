//! What the connection fuzz targets share: fds to attach, the fd count, a runtime, and the
//! interpretation of fuzz input as a sequence of frames.
#![allow(dead_code)]

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::Duration;

/// An fd to attach, opened once outside the count.
pub fn pool() -> &'static OwnedFd {
    static POOL: OnceLock<OwnedFd> = OnceLock::new();
    POOL.get_or_init(|| {
        rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC).unwrap()
    })
}

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The fd count comes back to `before`, within the runtime: tasks aborted when their
/// connection ended are dropped (with what they hold) the next time it runs.
pub async fn settle(before: usize) {
    for _ in 0..500 {
        if fd_count() == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        eprintln!("{:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
    }
    assert_eq!(fd_count(), before, "fds leaked");
}

/// One current-thread runtime for every input (made outside the fd count).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// One `sendmsg` of `bytes` with `fds`; `false` once the socket takes no more.
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        control.push(rustix::net::SendAncillaryMessage::ScmRights(&borrowed));
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
    )
    .is_ok()
}

/// Reads (and drops, fds closed) everything the other side sends until it closes.
pub async fn drain(sock: BorrowedFd<'_>) {
    let sock = rustix::io::fcntl_dupfd_cloexec(sock, 0).unwrap();
    // The dup is owned here and registered once (what the deprecation is about).
    #[allow(deprecated)]
    let sock = tokio::io::unix::AsyncFd::new(sock).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut guard = sock.readable().await.unwrap();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        match rustix::net::recvmsg(
            guard.get_inner(),
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::DONTWAIT | rustix::net::RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => {
                let fds: Vec<OwnedFd> = control
                    .drain()
                    .flat_map(|m| match m {
                        rustix::net::RecvAncillaryMessage::ScmRights(r) => r.collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                drop(fds);
                if r.bytes == 0 {
                    return;
                }
            }
            Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
            Err(_) => return,
        }
    }
}

/// Fuzz input read as frames: mostly well-formed THeader frames around compact messages of
/// the given methods, with stream headers, credit, timeouts and fds; sometimes raw bytes.
pub struct Ops<'a> {
    data: &'a [u8],
    methods: &'a [&'a str],
    /// fds declared so far, for `fdrpc-fd-seq`.
    declared: i64,
}

impl<'a> Ops<'a> {
    pub fn new(data: &'a [u8], methods: &'a [&'a str]) -> Self {
        Ops {
            data,
            methods,
            declared: 0,
        }
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }

    /// The next frame's bytes and how many fds to attach to them.
    pub fn next_frame(&mut self) -> Option<(Vec<u8>, usize)> {
        let op = self.byte()?;
        let nfds = usize::from(op >> 5) % 4;
        if op & 0x0f == 0x0f {
            // Raw bytes.
            let n = usize::from(self.byte()?);
            return Some((self.bytes(n).to_vec(), nfds));
        }
        let seqid = i32::from(self.byte()? % 8);
        let ty = match op & 3 {
            0 => fdrpc::codec::MessageType::Call,
            1 => fdrpc::codec::MessageType::Oneway,
            2 => fdrpc::codec::MessageType::Reply,
            _ => fdrpc::codec::MessageType::Exception,
        };
        let method = self.methods[usize::from(self.byte()?) % self.methods.len()];
        let mut payload = fdrpc::codec::Encoder::new();
        let _ = payload.write_message_header(method, ty, seqid);
        let mut payload = payload.into_parts().0;
        let n = usize::from(self.byte()?);
        payload.extend_from_slice(self.bytes(n));
        let mut headers: Vec<(&str, String)> = Vec::new();
        let flags = self.byte().unwrap_or(0);
        if flags & 1 != 0 {
            let kinds = ["item", "end", "error", "abort", "credit", "cancel", "more"];
            headers.push(("fdrpc-stream", kinds[usize::from(flags >> 4) % kinds.len()].into()));
        }
        if flags & 2 != 0 {
            headers.push(("fdrpc-credit", (u32::from(flags >> 2) * 3).to_string()));
        }
        if flags & 4 != 0 {
            headers.push(("client_timeout", (u32::from(flags) * 7).to_string()));
        }
        // The fd sequence is right unless the input says otherwise.
        let seq = if flags & 8 != 0 { self.declared + 1 } else { self.declared };
        let declared = if op & 0x10 != 0 { nfds + 1 } else { nfds };
        self.declared += declared as i64;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut out = Vec::new();
        fdrpc::transport::frame::write_frame(&mut out, seqid, declared, seq, &headers, &payload)
            .ok()?;
        Some((out, nfds))
    }
}
