//! `sendmsg` and `recvmsg` with `SCM_RIGHTS` (no allocation per call; received fds are
//! `OwnedFd` the moment the control buffer is parsed), and the sender's credentials
//! (`SCM_CREDENTIALS`) on sockets that ask for them.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// Linux's `SCM_MAX_FD`: most fds one `sendmsg` may carry.
pub const SCM_MAX_FD: usize = 253;

/// Sends the bytes of `data` (in order) with `fds` attached to the first byte. Returns the
/// bytes written (at least one on success; the fds went with them).
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    data: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    debug_assert!(fds.len() <= SCM_MAX_FD);
    debug_assert!(data.iter().any(|d| !d.is_empty()));
    let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
    if fds.is_empty() {
        if let [one] = data {
            return Ok(rustix::net::send(sock, one, flags)?);
        }
        return Ok(rustix::net::sendmsg(
            sock,
            data,
            &mut SendAncillaryBuffer::default(),
            flags,
        )?);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many fds for one sendmsg",
        ));
    }
    Ok(rustix::net::sendmsg(sock, data, &mut control, flags)?)
}

/// Sends `data` and `fds` on a blocking socket, waiting while it would block.
pub(crate) fn send_blocking(
    sock: BorrowedFd<'_>,
    data: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    loop {
        match send(sock, data, fds) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(sock, rustix::event::PollFlags::OUT)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The credentials the kernel attached to bytes received on a socket with `SO_PASSCRED`
/// (`SCM_CREDENTIALS`): those of the process that sent them, in this process's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderCredentials {
    /// The sender's process id; 0 if the kernel recorded none (bytes sent before
    /// `SO_PASSCRED` was set).
    pub pid: i32,
    /// The sender's effective user id.
    pub uid: u32,
    /// The sender's effective group id.
    pub gid: u32,
}

/// What one `recvmsg` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes read (0 at end of stream).
    pub bytes: usize,
    /// The kernel truncated the control data (`MSG_CTRUNC`): fds were lost.
    pub truncated: bool,
    /// A control message other than `SCM_RIGHTS` and `SCM_CREDENTIALS` arrived (and was
    /// discarded).
    pub unexpected_control: bool,
    /// Who sent the bytes, if the socket has `SO_PASSCRED` set.
    pub sender: Option<SenderCredentials>,
}

/// Receives into `buf` without waiting; received fds are appended to `fifo`, close-on-exec.
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fifo: &mut VecDeque<OwnedFd>,
) -> io::Result<Received> {
    recv_flags(sock, buf, fifo, RecvFlags::DONTWAIT)
}

/// `SCM_PIDFD` (Linux 6.5+, `include/linux/socket.h`; libc does not name it yet): a pidfd the
/// kernel installed for us, on a socket that has `SO_PASSPIDFD` set.
const SCM_PIDFD: libc::c_int = 0x04;

/// Room for the most fds one message may carry and the sender's credentials.
const RECV_CONTROL_SPACE: usize = rustix::cmsg_space!(ScmRights(SCM_MAX_FD), ScmCredentials(1));

/// Receives into `buf` with `flags`; received fds are appended to `fifo`, close-on-exec.
///
/// The control messages are parsed here, not by rustix: its `UCred` holds a non-zero `Pid`,
/// and the kernel reports pid 0 for a sender it cannot name (outside this pid namespace, or
/// bytes sent before `SO_PASSCRED` was set), which would make rustix build an invalid value.
/// Any socket may have `SO_PASSCRED` set (a passed socket keeps its options), so every read
/// goes through this.
#[allow(unsafe_code)]
fn recv_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fifo: &mut VecDeque<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<Received> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // `u64`s: aligned for `cmsghdr`.
    let mut space = [MaybeUninit::<u64>::uninit(); RECV_CONTROL_SPACE.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    let flags = libc::MSG_CMSG_CLOEXEC | flags.bits() as libc::c_int;
    let n = loop {
        // SAFETY: `msg` points at `iov` (valid for writes of `buf.len()` bytes) and `space`
        // (valid for writes of `msg_controllen` bytes), both alive for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut unexpected_control = false;
    let mut sender = None;
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // `space`; `CMSG_FIRSTHDR`/`CMSG_NXTHDR` stay within them, and each payload is read
    // unaligned within its message's length. Every fd of `SCM_RIGHTS` is taken as an
    // `OwnedFd` at once (the kernel installed it for us; nothing else owns it), so none is
    // lost whatever else the buffer holds.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let len = ((*cmsg).cmsg_len as usize)
                .saturating_sub(data.offset_from(cmsg.cast::<u8>()) as usize);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    let n = len / std::mem::size_of::<libc::c_int>();
                    for i in 0..n {
                        let fd = data.cast::<libc::c_int>().add(i).read_unaligned();
                        fifo.push_back(OwnedFd::from_raw_fd(fd));
                    }
                }
                // Only a socket with `SO_PASSCRED` set gets these: the kernel writes them,
                // a peer cannot forge them.
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if len >= std::mem::size_of::<libc::ucred>() =>
                {
                    let cred = data.cast::<libc::ucred>().read_unaligned();
                    sender = Some(SenderCredentials {
                        pid: cred.pid,
                        uid: cred.uid,
                        gid: cred.gid,
                    });
                }
                // Not asked for, but an fd all the same: closed, not leaked.
                (libc::SOL_SOCKET, SCM_PIDFD) if len >= std::mem::size_of::<libc::c_int>() => {
                    drop(OwnedFd::from_raw_fd(
                        data.cast::<libc::c_int>().read_unaligned(),
                    ));
                    unexpected_control = true;
                }
                _ => unexpected_control = true,
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        bytes: n,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        unexpected_control,
        sender,
    })
}

/// Receives on a blocking or non-blocking socket, waiting while nothing is available, until
/// `deadline` (`TimedOut` then).
pub(crate) fn recv_until(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fifo: &mut VecDeque<OwnedFd>,
    deadline: Option<Instant>,
) -> io::Result<Received> {
    // Without a deadline, let a blocking socket wait in the kernel: one syscall, not
    // recvmsg, poll, recvmsg. (A non-blocking socket still returns EAGAIN and is polled.)
    // With one, wait first: a reply is rarely there the moment its call is sent, so a read
    // first would cost an `EAGAIN` on nearly every call (measured: poll, recvmsg is one
    // syscall fewer per blocking call than recvmsg, poll, recvmsg).
    let mut flags = match deadline {
        None => RecvFlags::empty(),
        Some(d) => {
            // Past the deadline, what is there is still read, once (as before the wait).
            match wait_until(sock, rustix::event::PollFlags::IN, Some(d)) {
                Err(e) if e.kind() != io::ErrorKind::TimedOut => return Err(e),
                _ => {}
            }
            RecvFlags::DONTWAIT
        }
    };
    loop {
        let got = recv_flags(sock, buf, fifo, flags);
        flags = RecvFlags::DONTWAIT;
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_until(sock, rustix::event::PollFlags::IN, deadline)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn wait(sock: BorrowedFd<'_>, flags: rustix::event::PollFlags) -> io::Result<()> {
    wait_until(sock, flags, None)
}

/// Waits until a write to `sock` may not block, or `deadline` passes (`TimedOut` then; a
/// wait that ends at the deadline returns `Ok`, and the next one `TimedOut`).
pub(crate) fn wait_writable(sock: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<()> {
    wait_until(sock, rustix::event::PollFlags::OUT, deadline)
}

/// Waits until the peer of `sock` has closed it or shut down its writing side (or the
/// socket failed): `POLLRDHUP`, which unlike readability is not set by data waiting.
pub(crate) fn wait_hangup(sock: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::event::PollFlags;
    loop {
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(
            sock,
            PollFlags::RDHUP,
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_)
                if fds[0]
                    .revents()
                    .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR) =>
            {
                return Ok(());
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for `flags` on `sock`, until `deadline` (`TimedOut` then).
fn wait_until(
    sock: BorrowedFd<'_>,
    flags: rustix::event::PollFlags,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let timeout = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            Some(
                rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }),
            )
        }
    };
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(sock, flags)];
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn read(sock: &UnixStream, fifo: &mut VecDeque<OwnedFd>) -> (Vec<u8>, Received) {
        let mut buf = [0u8; 64];
        let got = recv(sock.as_fd(), &mut buf, fifo).unwrap();
        (buf[..got.bytes].to_vec(), got)
    }

    /// Without `SO_PASSCRED` no credentials come; with it, every read says who sent its bytes,
    /// and fds sent with them arrive as before.
    #[test]
    fn credentials_come_only_where_asked_for() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut fifo = VecDeque::new();
        (&a).write_all(b"one").unwrap();
        let (bytes, got) = read(&b, &mut fifo);
        assert_eq!((bytes.as_slice(), got.sender), (&b"one"[..], None));
        rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(
            send(a.as_fd(), &[IoSlice::new(b"two")], &[r.as_fd()]).unwrap(),
            3
        );
        let (bytes, got) = read(&b, &mut fifo);
        assert_eq!(bytes, b"two");
        assert_eq!(fifo.len(), 1);
        assert!(!got.unexpected_control && !got.truncated);
        let me = SenderCredentials {
            pid: std::process::id() as i32,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        };
        assert_eq!(got.sender, Some(me));
    }

    /// Pidfds this process holds (other tests of this binary may open some meanwhile).
    fn pidfds() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().contains("pidfd"))
            .count()
    }

    /// A pidfd the kernel attaches (`SO_PASSPIDFD`, Linux 6.5+) is not ours to keep: closed
    /// at once, and the read reports a foreign control message (the connection fails).
    #[test]
    #[allow(unsafe_code)]
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    fn an_unasked_pidfd_is_closed_not_leaked() {
        // `SO_PASSPIDFD` on the asm-generic architectures (x86-64, aarch64, riscv64, ...).
        let kind: libc::c_int = 76;
        let mut closed = false;
        // A pidfd another test opened meanwhile could hide a leak once, not three times.
        for _ in 0..3 {
            let (a, b) = UnixStream::pair().unwrap();
            let on: libc::c_int = 1;
            // SAFETY: `on` is a valid c_int for the length given; `b` is an open socket.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&b),
                    libc::SOL_SOCKET,
                    kind,
                    (&raw const on).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return; // a kernel before 6.5
            }
            let before = pidfds();
            (&a).write_all(b"x").unwrap();
            let mut fifo = VecDeque::new();
            let (bytes, got) = read(&b, &mut fifo);
            assert_eq!(bytes, b"x");
            assert!(got.unexpected_control);
            assert!(fifo.is_empty());
            if pidfds() == before {
                closed = true;
                break;
            }
        }
        assert!(closed, "the pidfd stayed open");
    }

    /// Bytes sent before `SO_PASSCRED` was set carry no sender: the kernel reports pid 0
    /// (which rustix's non-zero `Pid` cannot hold; this parser must, and does).
    #[test]
    fn bytes_sent_before_passcred_report_pid_zero() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"early").unwrap();
        rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
        let mut fifo = VecDeque::new();
        let (bytes, got) = read(&b, &mut fifo);
        assert_eq!(bytes, b"early");
        assert_eq!(got.sender.map(|s| s.pid), Some(0));
    }
}
