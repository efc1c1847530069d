//! Bytes and fds received, cut into frames that each own their fds.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::{FdStreamError, FrameError, TransportError};
use super::frame::{self, Frame};
use super::spare_reads;
use super::unix::{self, Received, SenderCredentials};
use crate::codec::fd_table::Fds;
use crate::settings::Settings;

/// The first read buffer of a connection: small, so idle connections cost little.
const FIRST_CHUNK: usize = 4 * 1024;
/// The largest read chunk: reads that fill the buffer double it up to this.
const READ_CHUNK: usize = 64 * 1024;
/// A frame at least this long is read into memory of its own rather than the shared buffer:
/// its large binaries are then handed out as views of that memory ([`Bytes`]), not copies.
const OWN_FRAME_MIN: usize = READ_CHUNK;
/// The memory of a frame read into its own is kept for the next large frame (once nothing
/// refers to it any more) if it is at most this large: a 4 MiB image and its headers fit.
const MAX_KEPT_FRAME: usize = (8 << 20) + READ_CHUNK;

/// The receive side of a connection: a byte buffer and a FIFO of received fds.
///
/// Each complete frame takes `fdrpc-fds` fds from the head of the FIFO, after checking that
/// its `fdrpc-fd-seq` equals the number of fds earlier frames claimed and that the fds have
/// arrived (the sender's invariant guarantees they came with or before the frame's last
/// byte). Any violation breaks the fd stream: the connection must be closed, and dropping
/// the queue closes every fd it holds.
#[derive(Debug)]
pub struct RecvQueue {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    /// When each run of fds in `fds` arrived: (time, count), oldest first.
    arrivals: VecDeque<(Instant, usize)>,
    /// When the first byte of the frame still incomplete arrived.
    partial_since: Option<Instant>,
    /// When the last read that brought bytes returned.
    last_read: Option<Instant>,
    /// Who sent the bytes of the last read that said (`SO_PASSCRED` sockets only).
    sender: Option<SenderCredentials>,
    claimed: i64,
    limits: RecvLimits,
    eof: bool,
    /// How much free space a read asks for; grows while reads fill it.
    chunk: usize,
    /// A large frame being read into memory of its own: the memory (as long as the frame)
    /// and the bytes of it received.
    own: Option<(Vec<u8>, usize)>,
    /// The last large frame returned, which its views share.
    returned: Option<Bytes>,
    /// Where the memory of a large frame comes back when its last view is dropped.
    home: Option<Arc<FrameHome>>,
}

/// The memory of one large frame, back from the views that shared it, for the next one.
#[derive(Debug, Default)]
struct FrameHome(Mutex<Option<Vec<u8>>>);

/// The memory of a received large frame, shared by the frame's views ([`Bytes`] made by
/// [`Bytes::from_owner`]); when the last goes, it returns to the connection's [`FrameHome`],
/// so a connection that receives large frames one after another reuses the same pages.
struct LentFrame {
    buf: Vec<u8>,
    home: Arc<FrameHome>,
}

impl AsRef<[u8]> for LentFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for LentFrame {
    fn drop(&mut self) {
        if self.buf.capacity() > MAX_KEPT_FRAME {
            return;
        }
        if let Ok(mut slot) = self.home.0.lock() {
            if slot.is_none() {
                *slot = Some(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// The settings a receive queue applies.
#[derive(Debug, Clone, Copy)]
struct RecvLimits {
    max_frame_size: usize,
    max_fds_per_frame: usize,
    max_queued_fds: usize,
}

/// A complete frame and the fds it owns.
#[derive(Debug)]
pub struct ReceivedFrame<'a> {
    /// The parsed frame.
    pub frame: Frame<'a>,
    /// The fds the frame owns, in order (index `i` of its payload is `fds[i]`).
    pub fds: Fds,
    /// The frame's bytes as shared memory, for a large frame (its payload is part of it):
    /// what a large binary decoded from it can be a view of.
    pub owner: Option<&'a Bytes>,
}

/// What [`RecvQueue::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Read this many bytes.
    Read(usize),
    /// Nothing to read now (non-blocking socket).
    WouldBlock,
    /// The peer closed its end.
    Eof,
}

impl RecvQueue {
    /// An empty queue applying the receive limits of `settings` (frame size, fds per frame,
    /// fds queued), for a client or a [`Channel`](crate::Channel).
    pub fn new(settings: &Settings) -> Self {
        Self::with_limits(settings, false)
    }

    /// An empty queue applying a server's receive limits of `settings`: a frame carries at
    /// most half the server's fd budget.
    pub(crate) fn for_server(settings: &Settings) -> Self {
        Self::with_limits(settings, true)
    }

    fn with_limits(settings: &Settings, server: bool) -> Self {
        let per_frame = settings.fds_per_frame_limit(server);
        let limits = RecvLimits {
            max_frame_size: settings.max_frame_size,
            max_fds_per_frame: per_frame,
            // A sender may batch up to 253 fds ahead of a frame as large as the limit.
            max_queued_fds: settings.queued_fds_limit(per_frame),
        };
        RecvQueue {
            buf: Vec::new(),
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            arrivals: VecDeque::new(),
            partial_since: None,
            last_read: None,
            sender: None,
            claimed: 0,
            limits,
            eof: false,
            chunk: FIRST_CHUNK,
            own: None,
            returned: None,
            home: None,
        }
    }

    /// When this connection stalls if nothing changes: `timeout` after the first byte of an
    /// incomplete frame arrived, or after the oldest fd no frame has claimed arrived. `None`
    /// when nothing is pending. A peer that parks fds in a half-sent frame (or sends fds no
    /// frame claims) must not pin them for ever.
    pub fn stall_deadline(&self, timeout: Duration) -> Option<Instant> {
        let oldest_fd = self.arrivals.front().map(|(t, _)| *t);
        let since = match (self.partial_since, oldest_fd) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(since + timeout)
    }

    /// Who sent the bytes of the last read, on a socket with `SO_PASSCRED` set (the kernel
    /// attaches them to every read there, and never merges two senders' bytes in one read);
    /// `None` on other sockets.
    pub fn sender(&self) -> Option<SenderCredentials> {
        self.sender
    }

    /// When the last read that brought bytes returned: every frame returned so far had
    /// arrived by then. `None` before the first.
    pub fn last_read_at(&self) -> Option<Instant> {
        self.last_read
    }

    /// Bytes received but not yet part of a returned frame.
    pub fn buffered_bytes(&self) -> usize {
        self.end - self.start + self.own.as_ref().map_or(0, |(_, got)| *got)
    }

    /// Fds received but not yet claimed by a frame.
    pub fn queued_fds(&self) -> usize {
        self.fds.len()
    }

    /// Whether the peer has closed its end.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Reads once from `sock` (non-blocking).
    ///
    /// # Errors
    ///
    /// The socket's error, or an [`FdStreamError`] (wrapped in [`TransportError`]) when the
    /// kernel truncated the control data, a foreign control message arrived, or more fds wait
    /// than [`Settings::max_queued_fds`].
    pub fn fill(&mut self, sock: BorrowedFd<'_>) -> Result<Fill, TransportError> {
        self.fill_with(sock, unix::recv)
    }

    /// Reads once from `sock`, waiting until something arrives.
    ///
    /// # Errors
    ///
    /// As [`RecvQueue::fill`].
    pub fn fill_blocking(&mut self, sock: BorrowedFd<'_>) -> Result<Fill, TransportError> {
        self.fill_with(sock, |s, b, f| unix::recv_until(s, b, f, None))
    }

    /// Reads once from `sock`, waiting until something arrives or `deadline` passes
    /// ([`Fill::WouldBlock`] then).
    ///
    /// # Errors
    ///
    /// As [`RecvQueue::fill`].
    pub fn fill_until(
        &mut self,
        sock: BorrowedFd<'_>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Fill, TransportError> {
        self.fill_with(sock, |s, b, f| {
            unix::recv_until(s, b, f, deadline).map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    io::ErrorKind::WouldBlock.into()
                } else {
                    e
                }
            })
        })
    }

    fn fill_with(
        &mut self,
        sock: BorrowedFd<'_>,
        recv: impl Fn(BorrowedFd<'_>, &mut [u8], &mut VecDeque<OwnedFd>) -> io::Result<Received>,
    ) -> Result<Fill, TransportError> {
        self.returned = None;
        // A large frame complete but not yet taken leaves what follows to the shared buffer.
        let filling = |own: &Option<(Vec<u8>, usize)>| matches!(own, Some((frame, got)) if *got < frame.len());
        if !filling(&self.own) {
            self.make_room();
        }
        let into_own = filling(&self.own);
        let spare = match &mut self.own {
            Some((frame, got)) if into_own => frame.get_mut(*got..).unwrap_or_default(),
            _ => self.buf.get_mut(self.end..).unwrap_or_default(),
        };
        let before = self.fds.len();
        let result = recv(sock, spare, &mut self.fds);
        let now = Instant::now();
        if self.fds.len() > before {
            self.arrivals.push_back((now, self.fds.len() - before));
        }
        let got = match result {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.park();
                return Ok(Fill::WouldBlock);
            }
            Err(e) => return Err(e.into()),
        };
        if got.truncated {
            return Err(FdStreamError::ControlTruncated.into());
        }
        if got.unexpected_control {
            return Err(FdStreamError::UnexpectedControlMessage.into());
        }
        if self.fds.len() > self.limits.max_queued_fds {
            return Err(FdStreamError::BudgetExceeded {
                queued: self.fds.len(),
                budget: self.limits.max_queued_fds,
            }
            .into());
        }
        if got.bytes == 0 {
            self.eof = true;
            return Ok(Fill::Eof);
        }
        if let (true, Some((_, filled))) = (into_own, &mut self.own) {
            *filled += got.bytes;
        } else {
            if got.bytes == self.buf.len() - self.end && self.chunk < READ_CHUNK {
                // The read filled the buffer: more was probably waiting.
                self.chunk *= 2;
            }
            self.end += got.bytes;
        }
        self.last_read = Some(now);
        if got.sender.is_some() {
            self.sender = got.sender;
        }
        if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        Ok(Fill::Read(got.bytes))
    }

    /// While the socket is empty: a buffer that holds no bytes goes back to this thread's
    /// spares (the connection may wait a long time), to be taken again by the next read.
    fn park(&mut self) {
        if self.start == self.end && !self.buf.is_empty() {
            spare_reads::give(std::mem::take(&mut self.buf));
            (self.start, self.end) = (0, 0);
        }
    }

    /// Makes sure there is free space after `end`: enough for the frame being received if
    /// its length is known, and at least a read chunk otherwise.
    fn make_room(&mut self) {
        if self.buf.is_empty() {
            self.buf = spare_reads::take();
        }
        let pending = self.end - self.start;
        // (For a frame already complete this asks no more room than a read: it is all
        // buffered. The drivers take complete frames before reading again anyway.)
        let want = match frame::frame_len(
            self.buf.get(self.start..self.end).unwrap_or_default(),
            self.limits.max_frame_size,
        ) {
            Ok(Some(total)) if total >= OWN_FRAME_MIN && total > pending && self.own.is_none() => {
                self.read_into_own(total);
                return;
            }
            Ok(Some(total)) => total.max(self.chunk),
            _ => self.chunk,
        };
        // Too little room after `end`: less than a read, or less than the whole frame.
        let short = |len: usize, end: usize| len - end < self.chunk.min(want) || len < want;
        // Move the pending bytes to the front before growing: a buffer grown while consumed
        // bytes sit in front of the pending ones would grow with every read that ends inside a
        // frame, without bound.
        if self.start > 0 && short(self.buf.len(), self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end = pending;
            self.start = 0;
        }
        if short(self.buf.len(), self.end) {
            let new_len = (self.end + self.chunk).max(want);
            self.buf.resize(new_len, 0);
        }
    }

    /// Goes on reading the large frame of `total` bytes whose start is buffered into memory
    /// of its own: the last large frame's, if it is back, or fresh.
    fn read_into_own(&mut self, total: usize) {
        let home = self.home.get_or_insert_with(Default::default);
        let back = home.0.lock().ok().and_then(|mut slot| slot.take());
        let mut frame = match back {
            // Its bytes are initialised already: only a longer frame zeroes the difference.
            Some(mut v) => {
                v.resize(total, 0);
                v
            }
            None => vec![0; total],
        };
        let pending = self.buf.get(self.start..self.end).unwrap_or_default();
        if let Some(head) = frame.get_mut(..pending.len()) {
            head.copy_from_slice(pending);
        }
        self.own = Some((frame, pending.len()));
        self.start = 0;
        self.end = 0;
    }

    /// The next complete frame, if one is buffered, with its fds.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] for a malformed frame, or an [`FdStreamError`] for a count or
    /// sequence mismatch. Either way the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<ReceivedFrame<'_>>, TransportError> {
        self.returned = None;
        if let Some((frame, got)) = &self.own {
            if *got < frame.len() {
                return Ok(None);
            }
            let Some((buf, _)) = self.own.take() else {
                return Ok(None);
            };
            let lent = LentFrame {
                buf,
                home: self.home.get_or_insert_with(Default::default).clone(),
            };
            let owner = &*self.returned.insert(Bytes::from_owner(lent));
            self.partial_since = None;
            let (frame, fds) = claim(
                owner,
                &mut self.fds,
                &mut self.arrivals,
                &mut self.claimed,
                self.limits,
            )?;
            return Ok(Some(ReceivedFrame {
                frame,
                fds,
                owner: Some(owner),
            }));
        }
        let avail = self.buf.get(self.start..self.end).unwrap_or_default();
        let Some(total) = frame::frame_len(avail, self.limits.max_frame_size)? else {
            return Ok(None);
        };
        let Some(bytes) = avail.get(..total) else {
            return Ok(None);
        };
        let (frame, fds) = claim(
            bytes,
            &mut self.fds,
            &mut self.arrivals,
            &mut self.claimed,
            self.limits,
        )?;
        self.start += total;
        // What follows is the start of the next frame, which arrived with the last read at the
        // latest (no clock is read per frame).
        self.partial_since = if self.start < self.end {
            self.last_read
        } else {
            None
        };
        Ok(Some(ReceivedFrame {
            frame,
            fds,
            owner: None,
        }))
    }

    /// At end of stream: an error if a frame was cut off or fds arrived that no frame claimed.
    ///
    /// # Errors
    ///
    /// [`TransportError::ClosedMidFrame`] or [`FdStreamError::UnclaimedAtEof`].
    pub fn check_clean_eof(&self) -> Result<(), TransportError> {
        if self.buffered_bytes() > 0 {
            return Err(TransportError::ClosedMidFrame(self.buffered_bytes()));
        }
        if !self.fds.is_empty() {
            return Err(FdStreamError::UnclaimedAtEof(self.fds.len()).into());
        }
        Ok(())
    }
}

/// Parses the complete frame `bytes` and takes the fds it owns from the head of `fifo`,
/// after checking its fd count and sequence against what earlier frames claimed.
#[inline(always)]
fn claim<'a>(
    bytes: &'a [u8],
    fifo: &mut VecDeque<OwnedFd>,
    arrivals: &mut VecDeque<(Instant, usize)>,
    claimed: &mut i64,
    limits: RecvLimits,
) -> Result<(Frame<'a>, Fds), TransportError> {
    let parsed = frame::parse_frame(bytes)?;
    if parsed.fds > limits.max_fds_per_frame {
        return Err(FrameError::TooManyFds {
            count: parsed.fds as u64,
            limit: limits.max_fds_per_frame,
        }
        .into());
    }
    if let Some(seq) = parsed.fd_seq {
        if seq != *claimed {
            return Err(FdStreamError::SequenceMismatch {
                declared: seq,
                claimed: *claimed,
            }
            .into());
        }
    } else if parsed.fds > 0 {
        return Err(FrameError::BadFdHeader {
            key: frame::HEADER_FD_SEQ,
        }
        .into());
    }
    if parsed.fds > fifo.len() {
        return Err(FdStreamError::MissingFds {
            declared: parsed.fds,
            available: fifo.len(),
        }
        .into());
    }
    // One at a time: SmallVec's generic `extend` from a drain costs ~70 instructions more
    // for the one or two fds a frame usually has. (`fifo` holds at least `parsed.fds`.)
    let mut fds = Fds::with_capacity(parsed.fds);
    for _ in 0..parsed.fds {
        if let Some(fd) = fifo.pop_front() {
            fds.push(fd);
        }
    }
    let mut to_forget = parsed.fds;
    while to_forget > 0 {
        let Some(front) = arrivals.front_mut() else {
            break;
        };
        let n = front.1.min(to_forget);
        front.1 -= n;
        to_forget -= n;
        if front.1 == 0 {
            arrivals.pop_front();
        }
    }
    *claimed = claimed.wrapping_add(parsed.fds as i64);
    Ok((parsed, fds))
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    /// Reads `n` bytes (as many as fit) through a fake `recvmsg`, and consumes all but `keep`
    /// of the bytes buffered, as returned frames would; returns the bytes read.
    fn read(rq: &mut RecvQueue, n: usize, keep: usize) -> usize {
        let unused = std::io::stdin();
        let got = rq.fill_with(unused.as_fd(), |_, spare, _| {
            let bytes = n.min(spare.len());
            // 0xFF...: never a valid frame length, so no frame's size guides the buffer.
            spare[..bytes].fill(0xFF);
            Ok(Received {
                bytes,
                truncated: false,
                unexpected_control: false,
                sender: None,
            })
        });
        let Ok(Fill::Read(bytes)) = got else {
            panic!("{got:?}");
        };
        rq.start = rq.end - keep;
        bytes
    }

    /// A read that finds the socket empty.
    fn would_block(rq: &mut RecvQueue) {
        let unused = std::io::stdin();
        let got = rq.fill_with(unused.as_fd(), |_, _, _| {
            Err(io::ErrorKind::WouldBlock.into())
        });
        assert!(matches!(got, Ok(Fill::WouldBlock)), "{got:?}");
    }

    #[test]
    fn a_connection_waiting_with_nothing_buffered_holds_no_read_buffer() {
        let mut frame = Vec::new();
        frame::write_frame(&mut frame, 1, 0, 0, &[], b"hello").unwrap();
        let mut rq = RecvQueue::new(&Settings::default());
        // Never sent anything: the read that found nothing gave its buffer back.
        would_block(&mut rq);
        assert_eq!(rq.buf.capacity(), 0);
        // Half a frame buffered: the buffer stays while the rest is awaited.
        feed(&mut rq, &frame[..7], usize::MAX);
        would_block(&mut rq);
        assert_eq!(rq.buffered_bytes(), 7);
        assert!(rq.buf.len() >= FIRST_CHUNK);
        feed(&mut rq, &frame[7..], usize::MAX);
        assert_eq!(rq.next_frame().unwrap().unwrap().frame.payload, b"hello");
        // All taken: the next empty read gives it back, and the read after takes it again
        // (the same memory, from this thread's spares) and reads into it as before.
        let memory = rq.buf.as_ptr();
        would_block(&mut rq);
        assert_eq!(rq.buf.capacity(), 0);
        feed(&mut rq, &frame, usize::MAX);
        assert_eq!(rq.buf.as_ptr(), memory);
        assert_eq!(rq.next_frame().unwrap().unwrap().frame.payload, b"hello");
        assert!(rq.next_frame().unwrap().is_none());
    }

    #[test]
    fn an_idle_connection_keeps_a_small_buffer_and_busy_reads_grow_it_to_the_chunk_limit() {
        let mut rq = RecvQueue::new(&Settings::default());
        // Reads that do not fill the buffer leave it at its first size.
        for _ in 0..100 {
            assert_eq!(read(&mut rq, 100, 0), 100);
        }
        assert_eq!((rq.chunk, rq.buf.len()), (FIRST_CHUNK, FIRST_CHUNK));
        // Each read that fills the buffer doubles the next read, up to READ_CHUNK and no more
        // (a byte stays buffered each time, as the start of the next frame would).
        let mut sizes = Vec::new();
        for _ in 0..8 {
            sizes.push(read(&mut rq, usize::MAX, 1));
        }
        assert_eq!(
            sizes,
            [4, 8, 16, 32, 64, 64, 64, 64].map(|k| k * 1024),
            "read sizes"
        );
        assert_eq!(rq.chunk, READ_CHUNK);
        assert_eq!(rq.buf.len(), 1 + READ_CHUNK);
    }

    /// Feeds `bytes` in reads of at most `most`; returns the room each read was offered.
    fn feed(rq: &mut RecvQueue, bytes: &[u8], most: usize) -> Vec<usize> {
        let unused = std::io::stdin();
        let mut offered = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let room = std::cell::Cell::new(0);
            let got = rq.fill_with(unused.as_fd(), |_, spare, _| {
                room.set(spare.len());
                let n = spare.len().min(most).min(bytes.len() - at);
                spare[..n].copy_from_slice(&bytes[at..at + n]);
                Ok(Received {
                    bytes: n,
                    truncated: false,
                    unexpected_control: false,
                    sender: None,
                })
            });
            let Ok(Fill::Read(n)) = got else {
                panic!("{got:?}");
            };
            offered.push(room.get());
            at += n;
        }
        offered
    }

    #[test]
    fn once_a_frames_length_is_known_the_buffer_makes_room_for_all_of_it() {
        let mut rq = RecvQueue::new(&Settings::default());
        let mut frame = Vec::new();
        frame::write_frame(&mut frame, 1, 0, 0, &[], &vec![7; 1 << 20]).unwrap();
        // A small first read learns the length; the next read is offered room for the rest
        // of the frame at once, and the frame then comes in reads of up to that size.
        let offered = feed(&mut rq, &frame, 100_000);
        assert_eq!(offered[0], FIRST_CHUNK);
        assert!(offered[1] >= frame.len() - FIRST_CHUNK, "{offered:?}");
        assert_eq!(
            offered.len(),
            2 + (frame.len() - FIRST_CHUNK) / 100_000,
            "{offered:?}"
        );
        let got = rq.next_frame().unwrap().unwrap();
        assert_eq!(got.frame.payload.len(), 1 << 20);
        assert_eq!(rq.buffered_bytes(), 0);
    }

    #[test]
    fn every_read_is_offered_at_least_a_chunk() {
        let mut rq = RecvQueue::new(&Settings::default());
        // 3000 bytes of a frame whose length is not known yet, then more: the buffer grows
        // for a whole chunk rather than offering the 1096 bytes left.
        assert_eq!(feed(&mut rq, &[0xFF; 3000], 3000), [FIRST_CHUNK]);
        assert_eq!(feed(&mut rq, &[0xFF; 10], 10), [FIRST_CHUNK]);
        assert_eq!(rq.buf.len(), 3000 + FIRST_CHUNK);
    }

    #[test]
    fn reads_that_always_end_inside_a_frame_reuse_the_buffer_instead_of_growing_it() {
        // Every read leaves the start of a frame behind (as a peer that writes a frame and
        // the first byte of the next one does): the bytes before it are consumed, so the
        // buffer must be reused, not grown by every read.
        let mut rq = RecvQueue::new(&Settings::default());
        for _ in 0..10_000 {
            assert_eq!(read(&mut rq, 1000, 1), 1000);
        }
        assert!(rq.buf.len() <= 2 * FIRST_CHUNK, "{} bytes", rq.buf.len());
        for _ in 0..1_000 {
            read(&mut rq, usize::MAX, 1);
        }
        assert!(rq.buf.len() <= 2 * READ_CHUNK, "{} bytes", rq.buf.len());
    }

    #[test]
    fn a_large_frame_is_read_into_memory_of_its_own_which_comes_back_when_its_views_go() {
        let mut rq = RecvQueue::new(&Settings::default());
        let payload: Vec<u8> = (0..(1 << 20)).map(|i| i as u8).collect();
        let mut frame = Vec::new();
        frame::write_frame(&mut frame, 1, 0, 0, &[], &payload).unwrap();
        let small = {
            let mut f = Vec::new();
            frame::write_frame(&mut f, 2, 0, 0, &[], b"after").unwrap();
            f
        };
        let mut stream = frame.clone();
        stream.extend_from_slice(&small);
        // Reads stop at the large frame's end: what follows goes to the shared buffer.
        feed(&mut rq, &stream, 300_000);
        let got = rq.next_frame().unwrap().unwrap();
        assert!(got.frame.payload == &payload[..]);
        let owner = got.owner.cloned().unwrap(); // a large frame is shared
        let first = owner.as_ptr();
        let view = crate::codec::view_of(Some(&owner), got.frame.payload);
        assert_eq!(
            view.as_ptr(),
            got.frame.payload.as_ptr(),
            "a view, not a copy"
        );
        drop(got);
        let next = rq.next_frame().unwrap().unwrap();
        assert_eq!(
            (next.frame.payload, next.owner.is_none()),
            (&b"after"[..], true)
        );
        drop(next);
        assert_eq!(rq.buffered_bytes(), 0);

        // While a view lives, the next large frame gets fresh memory; once every view of
        // a frame is gone, its memory is the next one's.
        feed(&mut rq, &frame, 300_000);
        let second = rq.next_frame().unwrap().unwrap().owner.cloned().unwrap();
        assert_ne!(second.as_ptr(), first, "the first frame is still viewed");
        drop((owner, view));
        drop(second);
        feed(&mut rq, &frame, 300_000);
        let third = rq.next_frame().unwrap().unwrap();
        let reused = third.owner.as_ref().unwrap().as_ptr();
        assert_eq!(reused, first, "the first frame's memory, back");
        assert!(third.frame.payload == &payload[..]);
    }

    #[test]
    fn a_large_frame_cut_off_is_reported_at_end_of_stream() {
        let mut rq = RecvQueue::new(&Settings::default());
        let mut frame = Vec::new();
        frame::write_frame(&mut frame, 1, 0, 0, &[], &vec![5; 200_000]).unwrap();
        feed(&mut rq, &frame[..150_000], 100_000);
        assert!(rq.own.is_some());
        assert_eq!(rq.buffered_bytes(), 150_000);
        assert!(rq.next_frame().unwrap().is_none());
        assert!(matches!(
            rq.check_clean_eof(),
            Err(TransportError::ClosedMidFrame(150_000))
        ));
    }
}
