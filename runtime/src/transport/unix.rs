//! `sendmsg` and `recvmsg` with `SCM_RIGHTS` (rustix: no allocation per call, and received
//! fds are `OwnedFd` the moment the control buffer is parsed; unparsed ones are closed).

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

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

/// What one `recvmsg` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes read (0 at end of stream).
    pub bytes: usize,
    /// The kernel truncated the control data (`MSG_CTRUNC`): fds were lost.
    pub truncated: bool,
    /// A control message other than `SCM_RIGHTS` arrived (and was discarded).
    pub unexpected_control: bool,
}

/// Receives into `buf` without waiting; received fds are appended to `fifo`, close-on-exec.
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fifo: &mut VecDeque<OwnedFd>,
) -> io::Result<Received> {
    recv_flags(sock, buf, fifo, RecvFlags::DONTWAIT)
}

/// Receives into `buf` with `flags`; received fds are appended to `fifo`, close-on-exec.
fn recv_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fifo: &mut VecDeque<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | flags,
    )?;
    let mut unexpected_control = false;
    for cmsg in control.drain() {
        match cmsg {
            RecvAncillaryMessage::ScmRights(fds) => fifo.extend(fds),
            // Dropping it closes any fds it holds.
            _ => unexpected_control = true,
        }
    }
    Ok(Received {
        bytes: msg.bytes,
        truncated: msg.flags.contains(ReturnFlags::CTRUNC),
        unexpected_control,
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
