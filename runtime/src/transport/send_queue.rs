//! Frames waiting to be written, and the fds they own.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::error::FrameError;
use super::frame;
use super::unix::{self, SCM_MAX_FD};

/// Frames waiting to be written to one connection, with their fds.
///
/// Many frames go out in one `sendmsg` together with all their fds (up to [`SCM_MAX_FD`]),
/// which is what makes fd traffic fast: Linux returns at most one fd-carrying `sendmsg` per
/// `recvmsg`. The invariant that keeps the receiver's FIFO matching sound: a frame's fds ride
/// on a `sendmsg` whose data starts at or before the frame's last byte. So fds always go on
/// the next `sendmsg` after they are queued, and when more than [`SCM_MAX_FD`] are pending,
/// the write is cut short so that every remaining fd still has a byte of its frame to ride on.
#[derive(Debug, Default)]
pub struct SendQueue {
    /// Bytes not yet written start at `buf[head]`.
    buf: Vec<u8>,
    head: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Fds not yet sent, with the stream offset just past the frame that owns each.
    fds: VecDeque<(u64, OwnedFd)>,
    /// Fds owned by all frames queued so far (wrapping), for `fdrpc-fd-seq`.
    fd_seq: i64,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether everything queued has been written.
    pub fn is_empty(&self) -> bool {
        self.head == self.buf.len()
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Fds queued and not yet sent.
    pub fn pending_fds(&self) -> usize {
        self.fds.len()
    }

    /// Bytes written to the socket since the queue was made: frames queued before
    /// [`SendQueue::queued`] was this are on their way once this passes it.
    pub fn written(&self) -> u64 {
        self.base + self.head as u64
    }

    /// Bytes queued since the queue was made, written or not: the stream offset just past the
    /// last frame queued.
    pub fn queued(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Queues one frame whose Thrift payload is `payload` and which owns `fds`.
    ///
    /// # Errors
    ///
    /// [`FrameError`] if the frame cannot be represented; nothing is queued and the fds are
    /// closed.
    pub fn push(
        &mut self,
        seqid: i32,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        extra_headers: &[(&str, &str)],
    ) -> Result<(), FrameError> {
        let before = self.buf.len();
        if let Err(e) = frame::write_frame(
            &mut self.buf,
            seqid,
            fds.len(),
            self.fd_seq,
            extra_headers,
            payload,
        ) {
            self.buf.truncate(before);
            return Err(e);
        }
        let end = self.base + self.buf.len() as u64;
        self.fd_seq = self.fd_seq.wrapping_add(fds.len() as i64);
        self.fds.extend(fds.into_iter().map(|fd| (end, fd)));
        Ok(())
    }

    /// Removes the frame queued last, at stream offsets `start..end` (as
    /// [`SendQueue::queued`] was before and after its [`SendQueue::push`]), if none of it has
    /// been written yet; its fds are closed and the fd sequence goes back by their number.
    /// Only the last frame can go: the offsets of every other frame, which callers hold, stay
    /// what they were. Returns whether the frame was removed.
    pub fn remove_unsent(&mut self, start: u64, end: u64) -> bool {
        if start < self.written() || end <= start || end != self.queued() {
            return false;
        }
        let s = (start - self.base) as usize;
        let Some(last) = self.buf.get(s..) else {
            return false;
        };
        // `start` must be where that frame begins, and none of its fds may have gone ahead
        // of its bytes (they ride on the first `sendmsg` after they are queued).
        let own = self
            .fds
            .iter()
            .rev()
            .take_while(|(at, _)| *at == end)
            .count();
        let whole = matches!(frame::frame_len(last, usize::MAX), Ok(Some(n)) if n == last.len());
        if !whole || frame::parse_frame(last).map_or(true, |f| f.fds != own) {
            return false;
        }
        let removed = own as i64;
        self.fds.truncate(self.fds.len() - own);
        self.buf.truncate(s);
        self.fd_seq = self.fd_seq.wrapping_sub(removed);
        true
    }

    /// Writes as much as the socket takes without blocking. Returns `Ok(true)` when the queue
    /// is empty, `Ok(false)` when the socket would block.
    ///
    /// # Errors
    ///
    /// The socket's error; the queue is left as it was before the failed call.
    pub fn write_to(&mut self, sock: BorrowedFd<'_>) -> io::Result<bool> {
        self.write_with(sock, unix::send)
    }

    /// Writes everything, waiting while the socket is full (for blocking use).
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn flush_blocking(&mut self, sock: BorrowedFd<'_>) -> io::Result<()> {
        self.write_with(sock, unix::send_blocking).map(|_| ())
    }

    fn write_with(
        &mut self,
        sock: BorrowedFd<'_>,
        send: impl Fn(BorrowedFd<'_>, &[u8], &[BorrowedFd<'_>]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        while self.head < self.buf.len() {
            let attach = self.fds.len().min(SCM_MAX_FD);
            let mut end = self.buf.len();
            if attach < self.fds.len() {
                end = self.cut_before_unsent(attach);
            }
            let data = self.buf.get(self.head..end).unwrap_or_default();
            let borrowed: Vec<BorrowedFd<'_>> = self
                .fds
                .iter()
                .take(attach)
                .map(|(_, fd)| fd.as_fd())
                .collect();
            let sent = match send(sock, data, &borrowed) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            drop(borrowed);
            // The kernel took the fds with the first byte: close our copies.
            self.fds.drain(..attach);
            self.head += sent;
        }
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.head = 0;
        Ok(true)
    }

    /// Where a write that attaches the first `attach` pending fds must stop, so that the
    /// fds after them still have a byte of their frame to ride on: before the last
    /// `ceil(r / 253)` bytes of the frame owning the next unsent fd, `r` being that frame's
    /// remaining fds. Every fd has at least one placeholder byte in its frame, so this always
    /// leaves at least one byte to write now.
    fn cut_before_unsent(&self, attach: usize) -> usize {
        let Some(&(owner_end, _)) = self.fds.get(attach) else {
            return self.buf.len();
        };
        let remaining = self
            .fds
            .iter()
            .skip(attach)
            .take_while(|(end, _)| *end == owner_end)
            .count();
        let reserve = remaining.div_ceil(SCM_MAX_FD) as u64;
        let limit = (owner_end - reserve - self.base) as usize;
        limit.max(self.head + 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::RefCell;
    use std::io;
    use std::os::fd::BorrowedFd;

    use super::SendQueue;

    /// A queue with one 10-byte payload frame, written through `results` (one per `send`
    /// call, each the bytes taken or an error); returns what `write_with` said, the calls
    /// made, and what is still pending.
    fn write_through(results: Vec<io::Result<usize>>) -> (io::Result<bool>, usize, usize) {
        let mut q = SendQueue::new();
        q.push(1, b"0123456789", Vec::new(), &[]).unwrap();
        let results = RefCell::new(results.into_iter());
        let calls = RefCell::new(0);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock: BorrowedFd<'_> = std::os::fd::AsFd::as_fd(&a);
        let r = q.write_with(sock, |_, data: &[u8], _| {
            *calls.borrow_mut() += 1;
            match results.borrow_mut().next() {
                Some(Ok(n)) => Ok(n.min(data.len())),
                Some(Err(e)) => Err(e),
                None => Ok(data.len()),
            }
        });
        let pending = q.pending_bytes();
        (r, calls.into_inner(), pending)
    }

    #[test]
    fn an_interrupted_send_is_retried() {
        let (r, calls, pending) = write_through(vec![Err(io::ErrorKind::Interrupted.into())]);
        assert!(matches!(r, Ok(true)), "{r:?}");
        assert_eq!((calls, pending), (2, 0));
    }

    #[test]
    fn a_send_that_would_block_leaves_the_rest_queued() {
        let (r, calls, pending) = write_through(vec![Ok(5), Err(io::ErrorKind::WouldBlock.into())]);
        assert!(matches!(r, Ok(false)), "{r:?}");
        assert_eq!(calls, 2);
        assert!(pending > 0 && pending < 60, "{pending}");
    }

    #[test]
    fn a_failed_send_is_reported_and_nothing_is_lost() {
        let (r, calls, pending) = write_through(vec![Err(io::ErrorKind::BrokenPipe.into())]);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(calls, 1);
        assert!(pending > 10, "the frame is still queued: {pending}");
    }
}
