//! Frames waiting to be written, and the fds they own.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bytes::Bytes;

use super::error::FrameError;
use super::frame;
use super::unix::{self, SCM_MAX_FD};
use crate::codec::Encoded;

/// Most pieces (inline runs and spliced buffers) one `sendmsg` gathers.
const MAX_IOV: usize = 64;

/// Frames waiting to be written to one connection, with their fds.
///
/// Many frames go out in one `sendmsg` together with all their fds (up to [`SCM_MAX_FD`]),
/// which is what makes fd traffic fast: Linux returns at most one fd-carrying `sendmsg` per
/// `recvmsg`. The invariant that keeps the receiver's FIFO matching sound: a frame's fds ride
/// on a `sendmsg` whose data starts at or before the frame's last byte. So fds always go on
/// the next `sendmsg` after they are queued, and when more than [`SCM_MAX_FD`] are pending,
/// the write is cut short so that every remaining fd still has a byte of its frame to ride on.
///
/// Frame headers and small values are copied into one buffer; a large binary a message
/// shares (a [`Bytes`]) is not: it stays where it is, between the buffer's bytes, and goes to
/// the socket as one more iovec of the same `sendmsg`.
#[derive(Debug, Default)]
pub struct SendQueue {
    /// Inline bytes not yet written start at `buf[head]`.
    buf: Vec<u8>,
    head: usize,
    /// Shared buffers between the inline bytes: each goes just before `buf[at]`, in order.
    /// None is empty.
    spliced: VecDeque<(usize, Bytes)>,
    /// Bytes of the first spliced buffer already written.
    front_sent: usize,
    /// Bytes written to the socket since the queue was made.
    written: u64,
    /// Bytes queued since the queue was made.
    queued: u64,
    /// Fds not yet sent, with the stream offset just past the frame that owns each.
    fds: VecDeque<(u64, OwnedFd)>,
    /// Fds owned by all frames queued so far (wrapping), for `fdrpc-fd-seq`.
    fd_seq: i64,
}

/// A position in the queue: before `buf[head]`, or `off` bytes into spliced buffer `index`
/// when that buffer goes at `head`.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    head: usize,
    index: usize,
    off: usize,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether everything queued has been written.
    pub fn is_empty(&self) -> bool {
        self.written == self.queued
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        (self.queued - self.written) as usize
    }

    /// Fds queued and not yet sent.
    pub fn pending_fds(&self) -> usize {
        self.fds.len()
    }

    /// Bytes written to the socket since the queue was made: frames queued before
    /// [`SendQueue::queued`] was this are on their way once this passes it.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes queued since the queue was made, written or not: the stream offset just past the
    /// last frame queued.
    pub fn queued(&self) -> u64 {
        self.queued
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
        self.push_parts(seqid, payload, Vec::new(), fds, extra_headers)
    }

    /// Queues one frame whose payload is an encoded message: its inline bytes are copied, the
    /// buffers spliced into it are not. The message is left empty, its inline buffer kept
    /// for reuse.
    ///
    /// # Errors
    ///
    /// As [`SendQueue::push`].
    pub(crate) fn push_encoded(
        &mut self,
        seqid: i32,
        message: &mut Encoded,
        extra_headers: &[(&str, &str)],
    ) -> Result<(), FrameError> {
        let fds = std::mem::take(&mut message.fds);
        let spliced = std::mem::take(&mut message.spliced);
        let pushed = self.push_parts(seqid, &message.inline, spliced, fds, extra_headers);
        message.inline.clear();
        pushed
    }

    #[inline]
    fn push_parts(
        &mut self,
        seqid: i32,
        inline: &[u8],
        spliced: Vec<(usize, Bytes)>,
        fds: impl IntoIterator<Item = OwnedFd, IntoIter: ExactSizeIterator>,
        extra_headers: &[(&str, &str)],
    ) -> Result<(), FrameError> {
        let fds = fds.into_iter();
        let before = self.buf.len();
        let spliced_len: usize = if spliced.is_empty() {
            0
        } else {
            spliced.iter().map(|(_, b)| b.len()).sum()
        };
        if let Err(e) = frame::write_frame_parts(
            &mut self.buf,
            seqid,
            fds.len(),
            self.fd_seq,
            extra_headers,
            inline,
            spliced_len,
        ) {
            self.buf.truncate(before);
            return Err(e);
        }
        if !spliced.is_empty() {
            let payload_start = self.buf.len() - inline.len();
            self.spliced.extend(
                spliced
                    .into_iter()
                    .filter(|(_, b)| !b.is_empty())
                    .map(|(at, b)| (payload_start + at.min(inline.len()), b)),
            );
        }
        self.queued += (self.buf.len() - before + spliced_len) as u64;
        let end = self.queued;
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
        if start < self.written || end <= start || end != self.queued {
            return false;
        }
        let at = self.advanced(self.cursor(), (start - self.written) as usize);
        // A frame starts with its header, an inline byte.
        if at.off != 0
            || self
                .spliced
                .get(at.index)
                .is_some_and(|(a, _)| *a == at.head)
        {
            return false;
        }
        let Some(last) = self.buf.get(at.head..) else {
            return false;
        };
        let spliced_len: usize = self.spliced.range(at.index..).map(|(_, b)| b.len()).sum();
        let len = (end - start) as usize;
        // `start` must be where that frame begins, and none of its fds may have gone ahead
        // of its bytes (they ride on the first `sendmsg` after they are queued).
        let own = self
            .fds
            .iter()
            .rev()
            .take_while(|(at, _)| *at == end)
            .count();
        let whole = last.len() + spliced_len == len
            && matches!(frame::frame_len(last, usize::MAX), Ok(Some(n)) if n == len);
        if !whole || frame::parse_frame(last).map_or(true, |f| f.fds != own) {
            return false;
        }
        let removed = own as i64;
        self.fds.truncate(self.fds.len() - own);
        self.buf.truncate(at.head);
        self.spliced.truncate(at.index);
        self.queued = start;
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
        mut send: impl FnMut(BorrowedFd<'_>, &[IoSlice<'_>], &[BorrowedFd<'_>]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        while !self.is_empty() {
            let attach = self.fds.len().min(SCM_MAX_FD);
            let limit = if attach < self.fds.len() {
                self.cut_before_unsent(attach)
            } else {
                self.queued
            };
            let budget = (limit - self.written) as usize;
            let borrowed: Vec<BorrowedFd<'_>> = self
                .fds
                .iter()
                .take(attach)
                .map(|(_, fd)| fd.as_fd())
                .collect();
            let result = if self.spliced.is_empty() {
                // The common case: one run of inline bytes (no array of iovecs to fill).
                let end = self.head.saturating_add(budget).min(self.buf.len());
                let data = self.buf.get(self.head..end).unwrap_or_default();
                send(sock, &[IoSlice::new(data)], &borrowed)
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let pieces = self.gather(&mut iov, budget);
                send(sock, iov.get(..pieces).unwrap_or_default(), &borrowed)
            };
            let sent = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            drop(borrowed);
            // The kernel took the fds with the first byte: close our copies.
            self.fds.drain(..attach);
            self.advance(sent);
        }
        self.buf.clear();
        self.head = 0;
        self.spliced.clear();
        self.front_sent = 0;
        Ok(true)
    }

    /// Fills `iov` with the next `budget` bytes to write, in order; returns how many pieces.
    fn gather<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOV], mut budget: usize) -> usize {
        let mut n = 0;
        let mut take = |piece: &'a [u8], n: &mut usize| -> bool {
            let piece = piece.get(..budget.min(piece.len())).unwrap_or_default();
            if !piece.is_empty() {
                if let Some(slot) = iov.get_mut(*n) {
                    *slot = IoSlice::new(piece);
                    *n += 1;
                    budget -= piece.len();
                }
            }
            budget > 0 && *n < MAX_IOV
        };
        let mut pos = self.head;
        let mut off = self.front_sent;
        for (at, bytes) in &self.spliced {
            if !take(self.buf.get(pos..*at).unwrap_or_default(), &mut n) {
                return n;
            }
            pos = *at;
            if !take(bytes.get(off..).unwrap_or_default(), &mut n) {
                return n;
            }
            off = 0;
        }
        take(self.buf.get(pos..).unwrap_or_default(), &mut n);
        n
    }

    /// Where writing stands.
    fn cursor(&self) -> Cursor {
        Cursor {
            head: self.head,
            index: 0,
            off: self.front_sent,
        }
    }

    /// The position `n` bytes after `from`.
    fn advanced(&self, mut from: Cursor, mut n: usize) -> Cursor {
        while n > 0 {
            match self.spliced.get(from.index) {
                Some((at, bytes)) if *at == from.head => {
                    let left = bytes.len() - from.off;
                    if n < left {
                        from.off += n;
                        return from;
                    }
                    n -= left;
                    from.index += 1;
                    from.off = 0;
                }
                Some((at, _)) => {
                    let k = n.min(at - from.head);
                    from.head += k;
                    n -= k;
                }
                None => {
                    from.head = (from.head + n).min(self.buf.len());
                    return from;
                }
            }
        }
        from
    }

    /// Moves past `n` bytes just written; spliced buffers written in full are released.
    fn advance(&mut self, n: usize) {
        self.written += n as u64;
        if self.spliced.is_empty() {
            self.head = (self.head + n).min(self.buf.len());
            return;
        }
        let at = self.advanced(self.cursor(), n);
        self.spliced.drain(..at.index.min(self.spliced.len()));
        self.head = at.head;
        self.front_sent = at.off;
    }

    /// Where (a stream offset) a write that attaches the first `attach` pending fds must
    /// stop, so that the fds after them still have a byte of their frame to ride on: before
    /// the last `ceil(r / 253)` bytes of the frame owning the next unsent fd, `r` being that
    /// frame's remaining fds. Every fd has at least one placeholder byte in its frame, so
    /// this always leaves at least one byte to write now.
    fn cut_before_unsent(&self, attach: usize) -> u64 {
        let Some(&(owner_end, _)) = self.fds.get(attach) else {
            return self.queued;
        };
        let remaining = self
            .fds
            .iter()
            .skip(attach)
            .take_while(|(end, _)| *end == owner_end)
            .count();
        let reserve = remaining.div_ceil(SCM_MAX_FD) as u64;
        (owner_end - reserve).max(self.written + 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::cell::RefCell;
    use std::io::{self, IoSlice};
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
        let r = q.write_with(sock, |_, data: &[IoSlice<'_>], _| {
            *calls.borrow_mut() += 1;
            let len: usize = data.iter().map(|d| d.len()).sum();
            match results.borrow_mut().next() {
                Some(Ok(n)) => Ok(n.min(len)),
                Some(Err(e)) => Err(e),
                None => Ok(len),
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

    /// An encoded message of inline bytes with `spliced` buffers between them (at those
    /// inline offsets), and the same message flattened.
    fn spliced_message(
        inline: &[u8],
        spliced: &[(usize, &[u8])],
    ) -> (crate::codec::Encoded, Vec<u8>) {
        let mut flat = Vec::new();
        let mut from = 0;
        for (at, b) in spliced {
            flat.extend_from_slice(&inline[from..*at]);
            flat.extend_from_slice(b);
            from = *at;
        }
        flat.extend_from_slice(&inline[from..]);
        let message = crate::codec::Encoded {
            inline: inline.to_vec(),
            spliced: spliced
                .iter()
                .map(|(at, b)| (*at, bytes::Bytes::copy_from_slice(b)))
                .collect(),
            fds: Default::default(),
        };
        (message, flat)
    }

    /// Drains `q` through a `send` that takes at most `most` bytes per call; returns the
    /// bytes in the order they were written.
    fn drain(q: &mut SendQueue, most: usize) -> Vec<u8> {
        let out = RefCell::new(Vec::new());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock: BorrowedFd<'_> = std::os::fd::AsFd::as_fd(&a);
        let done = q
            .write_with(sock, |_, data: &[IoSlice<'_>], _| {
                let mut left = most;
                for d in data {
                    let n = left.min(d.len());
                    out.borrow_mut().extend_from_slice(&d[..n]);
                    left -= n;
                }
                Ok(most - left)
            })
            .unwrap();
        assert!(done && q.is_empty());
        out.into_inner()
    }

    #[test]
    fn spliced_buffers_go_out_in_place_whatever_the_writes_cut() {
        let big = vec![0xAA; 40_000];
        let other = vec![0xBB; 30_000];
        let inline: Vec<u8> = (0..50u8).collect();
        let pieces: [(usize, &[u8]); 3] = [(10, &big), (10, &other), (49, &big)];
        for most in [1, 7, 4096, 39_999, 1 << 20] {
            let mut q = SendQueue::new();
            let mut expected = Vec::new();
            q.push(1, b"head", Vec::new(), &[]).unwrap();
            crate::transport::frame::write_frame(&mut expected, 1, 0, 0, &[], b"head").unwrap();
            let (message, flat) = spliced_message(&inline, &pieces);
            q.push_encoded(2, &mut { message }, &[]).unwrap();
            crate::transport::frame::write_frame(&mut expected, 2, 0, 0, &[], &flat).unwrap();
            q.push(3, b"tail", Vec::new(), &[]).unwrap();
            crate::transport::frame::write_frame(&mut expected, 3, 0, 0, &[], b"tail").unwrap();
            assert_eq!(q.queued(), expected.len() as u64);
            assert_eq!(q.pending_bytes(), expected.len());
            let out = drain(&mut q, most);
            assert!(
                out == expected,
                "writes of {most} bytes reordered the stream"
            );
            assert_eq!(q.written(), expected.len() as u64);
        }
    }

    #[test]
    fn an_unsent_frame_with_spliced_buffers_is_taken_back_whole() {
        let big = vec![0xAA; 40_000];
        let mut q = SendQueue::new();
        q.push(1, b"first", Vec::new(), &[]).unwrap();
        let (start, mid) = (0, q.queued());
        let (message, _) = spliced_message(&[1, 2, 3, 4], &[(2, &big)]);
        q.push_encoded(2, &mut { message }, &[]).unwrap();
        let end = q.queued();
        // Not the frame's start, and not the last frame: refused.
        assert!(!q.remove_unsent(mid + 1, end));
        assert!(!q.remove_unsent(start, mid));
        assert!(q.remove_unsent(mid, end));
        assert_eq!(q.queued(), mid);
        assert!(q.spliced.is_empty(), "its buffer is released");
        let mut expected = Vec::new();
        crate::transport::frame::write_frame(&mut expected, 1, 0, 0, &[], b"first").unwrap();
        assert_eq!(drain(&mut q, 3), expected);
    }

    #[test]
    fn a_frame_partly_written_stays() {
        let big = vec![0xAA; 40_000];
        let mut q = SendQueue::new();
        let (message, _) = spliced_message(&[1, 2, 3, 4], &[(2, &big)]);
        q.push_encoded(2, &mut { message }, &[]).unwrap();
        let end = q.queued();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock: BorrowedFd<'_> = std::os::fd::AsFd::as_fd(&a);
        let first = RefCell::new(true);
        let r = q.write_with(sock, |_, _, _| {
            if first.replace(false) {
                Ok(100)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        assert!(matches!(r, Ok(false)));
        assert!(!q.remove_unsent(0, end));
        assert_eq!(q.pending_bytes() as u64, end - 100);
    }

    /// Frames of every shape (inline, spliced, with fds) pushed while earlier ones are half
    /// written, drained by writes of random sizes: the bytes and fds that come out are the
    /// frames in order, each fd on a write that starts at or before its frame's last byte.
    #[test]
    fn random_pushes_and_partial_writes_keep_the_stream_whole() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock: BorrowedFd<'_> = std::os::fd::AsFd::as_fd(&a);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        for _round in 0..40 {
            let mut q = SendQueue::new();
            let mut expected = Vec::new();
            let mut out = Vec::new();
            let mut fd_ends = Vec::new();
            let mut fds_seen = Vec::new();
            for f in 0..30 {
                let inline: Vec<u8> = (0..next(60) + 1).map(|i| (i as u8) ^ f as u8).collect();
                let mut spliced = Vec::new();
                for _ in 0..next(3) {
                    let at = next(inline.len() as u64 + 1) as usize;
                    let len = [0, 1, 20_000, 70_000][next(4) as usize];
                    spliced.push((at, vec![f as u8; len]));
                }
                spliced.sort_by_key(|(at, _)| *at);
                let pieces: Vec<(usize, &[u8])> =
                    spliced.iter().map(|(at, b)| (*at, &b[..])).collect();
                let (mut message, flat) = spliced_message(&inline, &pieces);
                let nfds = next(3) as usize;
                message.fds = (0..nfds)
                    .map(|_| std::os::fd::OwnedFd::from(a.try_clone().unwrap()))
                    .collect();
                let fd_seq = fd_ends.len() as i64;
                q.push_encoded(f, &mut message, &[]).unwrap();
                crate::transport::frame::write_frame(&mut expected, f, nfds, fd_seq, &[], &flat)
                    .unwrap();
                fd_ends.extend(std::iter::repeat_n(expected.len(), nfds));
                assert_eq!(q.queued(), expected.len() as u64);
                // Part of what is queued goes out now, more frames come before the rest.
                let mut writes = next(3);
                let _ = q.write_with(sock, |_, data: &[IoSlice<'_>], fds| {
                    if writes == 0 {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    writes -= 1;
                    let most = [1, 7, 5000, 100_000][next(4) as usize] as usize;
                    let start = out.len();
                    fds_seen.extend(std::iter::repeat_n(start, fds.len()));
                    let mut left = most;
                    for d in data {
                        let n = left.min(d.len());
                        out.extend_from_slice(&d[..n]);
                        left -= n;
                    }
                    Ok(most - left)
                });
                assert_eq!(q.written(), out.len() as u64);
                assert_eq!(q.pending_bytes(), expected.len() - out.len());
            }
            let _ = q.write_with(sock, |_, data: &[IoSlice<'_>], fds| {
                fds_seen.extend(std::iter::repeat_n(out.len(), fds.len()));
                for d in data {
                    out.extend_from_slice(d);
                }
                Ok(data.iter().map(|d| d.len()).sum())
            });
            assert!(q.is_empty());
            assert!(out == expected, "the stream differs");
            assert_eq!(fds_seen.len(), fd_ends.len());
            for (sent_at, end) in fds_seen.iter().zip(&fd_ends) {
                assert!(sent_at < end, "an fd went after its frame's last byte");
            }
        }
    }
}
