//! What the connection core asks of its driver, in one place: whether to wake the writer,
//! when to set the timer for (and what happens when it fires), and which calls their callers
//! cancelled. The driver owns the writer task, the timer and the handlers; the state of each
//! lives here, and nowhere else.
//!
//! The contract, as quinn-proto's `poll_transmit` / `poll_timeout` / `handle_timeout`:
//! - after any change, [`Conn::poll_transmit`]: `true` means frames are queued that no
//!   writer was asked for: wake it. The writer writes until the queue is empty, then says so
//!   with [`Conn::writer_idle`]. A reader that writes a batch of replies itself defers
//!   ([`Conn::defer_transmit`]) and ends the deferral before it waits ([`Conn::end_defer`]).
//! - after receiving, [`Conn::poll_timeout`]: `Some(at)` means set the timer for `at` (the
//!   earliest call deadline or receive stall, earlier than what the timer is set for). When
//!   it fires, [`Conn::handle_timeout`]. A task other than the timer's owner that started a
//!   call learns from [`Conn::take_timer_moved`] that the owner must poll again.
//! - after receiving, [`Conn::take_cancelled_calls`]: the server stops their handlers.

use std::task::Waker;
use std::time::{Duration, Instant};

use super::Conn;
use crate::rpc::error::ConnectionError;
use crate::transport::error::FdStreamError;

/// Where the writer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Nothing is queued that it was not asked to write.
    Idle,
    /// Frames are queued and the writer was not asked yet: [`Conn::poll_transmit`] says so.
    Wanted,
    /// Asked, and it has not emptied the queue since.
    Asked,
}

/// What the driver is asked to do; see the module docs.
#[derive(Debug)]
pub(super) struct Output {
    writer: Writer,
    /// The driver writes the queue itself soon: [`Conn::poll_transmit`] asks for no writer.
    deferred: bool,
    /// What the driver's timer is set for (`None`: not set).
    armed: Option<Instant>,
    /// A deadline earlier than `armed` was added since [`Conn::take_timer_moved`].
    timer_moved: bool,
    /// When the frame half-received, or the fds received and unclaimed, stall the connection.
    receive_stall: Option<Instant>,
    /// The stall timeout that `receive_stall` reports.
    stall: Duration,
    /// Calls whose callers sent `cancel`, for the server to stop.
    cancelled: Vec<i32>,
}

impl Output {
    pub(super) fn new(stall: Duration) -> Self {
        Output {
            writer: Writer::Idle,
            deferred: false,
            armed: None,
            timer_moved: false,
            receive_stall: None,
            stall,
            cancelled: Vec::new(),
        }
    }

    /// A frame was queued.
    pub(super) fn frame_queued(&mut self) {
        if self.writer == Writer::Idle {
            self.writer = Writer::Wanted;
        }
    }

    /// The queue is empty (written, or dropped with the connection).
    pub(super) fn writer_idle(&mut self) {
        self.writer = Writer::Idle;
    }

    /// A call that times out at `at` started.
    pub(super) fn deadline_added(&mut self, at: Instant) {
        if self.armed.is_none_or(|armed| at < armed) {
            self.timer_moved = true;
        }
    }

    /// The caller of call `seqid` cancelled it.
    pub(super) fn call_cancelled(&mut self, seqid: i32) {
        self.cancelled.push(seqid);
    }
}

impl Conn {
    /// Whether the driver must wake its writer now: frames are queued that no writer was
    /// asked for, and no deferral is on. Once `true`, the writer stays asked until
    /// [`Conn::writer_idle`].
    #[inline]
    pub(crate) fn poll_transmit(&mut self) -> bool {
        let o = &mut self.output;
        if o.writer == Writer::Wanted && !o.deferred {
            o.writer = Writer::Asked;
            return true;
        }
        false
    }

    /// From now until [`Conn::end_defer`], the driver writes the queue itself:
    /// [`Conn::poll_transmit`] asks for no writer (frames queued meanwhile are owed one).
    #[inline]
    pub(crate) fn defer_transmit(&mut self) {
        self.output.deferred = true;
    }

    /// Ends [`Conn::defer_transmit`]; [`Conn::poll_transmit`] says whether a writer is owed.
    #[inline]
    pub(crate) fn end_defer(&mut self) {
        self.output.deferred = false;
    }

    /// Whether a writer was asked for and has not emptied the queue since: always, while
    /// frames are queued outside a deferral.
    pub(crate) fn writer_asked(&self) -> bool {
        self.output.writer == Writer::Asked
    }

    /// The writer (or the driver writing in its place) wrote: if the queue is empty, the next
    /// frame asks for a writer again.
    pub(crate) fn writer_idle(&mut self) {
        if self.send.is_empty() {
            self.output.writer_idle();
        }
    }

    /// Whether a call started since the last look has a deadline earlier than the timer is set
    /// for: the timer's owner must [`Conn::poll_timeout`] again.
    #[inline]
    pub(crate) fn take_timer_moved(&mut self) -> bool {
        std::mem::take(&mut self.output.timer_moved)
    }

    /// When the frames in the driver's receive queue stall the connection (a frame
    /// half-received, fds unclaimed: `RecvQueue::stall_deadline`), if they do.
    pub(crate) fn set_receive_stall(&mut self, at: Option<Instant>) {
        self.output.receive_stall = at;
    }

    /// The instant the driver's timer must be set for, if it must be set (again): the earliest
    /// call deadline or receive stall, when it is earlier than what the timer is set for, or
    /// the timer is not set. From then on the timer counts as set for it. A timer set too
    /// early fires, finds nothing due, and is set for what is.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let calls = self.calls.as_mut().and_then(|c| c.next_deadline());
        let due = match (calls, self.output.receive_stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        if self.output.armed.is_some_and(|armed| armed <= due) {
            return None;
        }
        self.output.armed = Some(due);
        Some(due)
    }

    /// The driver's timer fired at `now`: every call whose deadline passed fails with
    /// [`RpcError::Timeout`](crate::RpcError::Timeout) (their wakers are added to `wake`;
    /// their callers forget them, which tells the server), and the timer counts as not set.
    ///
    /// # Errors
    ///
    /// [`FdStreamError::Stalled`] if the receive stall passed: the driver fails the
    /// connection.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        wake: &mut Vec<Waker>,
    ) -> Result<(), ConnectionError> {
        self.output.armed = None;
        if self.output.receive_stall.is_some_and(|s| now >= s) {
            return Err(ConnectionError::new(
                FdStreamError::Stalled(self.output.stall).into(),
            ));
        }
        if let Some(calls) = &mut self.calls {
            calls.expire(now, wake);
        }
        Ok(())
    }

    /// The calls whose callers cancelled them since the last look: the server stops their
    /// handlers (once it has released the connection).
    pub(crate) fn take_cancelled_calls(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.output.cancelled)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::fd::AsFd;

    use super::super::{CallOptions, Role};
    use super::*;
    use crate::codec::MessageType;
    use crate::rpc::deadline::Deadline;
    use crate::settings::Settings;

    fn oneway(c: &mut Conn) {
        c.start_call(&"m".into(), &CallOptions::new(MessageType::Oneway), |_| {
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn the_writer_is_asked_for_once_until_the_queue_empties_and_not_while_deferred() {
        let mut c = Conn::new(Role::Client, &Settings::default());
        assert!(!c.poll_transmit(), "nothing queued");
        oneway(&mut c);
        assert!(c.poll_transmit());
        oneway(&mut c);
        assert!(!c.poll_transmit(), "asked already");
        assert!(c.writer_asked());
        c.writer_idle();
        assert!(c.writer_asked(), "frames are still queued");
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(
            c.send_queue().write_to(sock.as_fd()).unwrap(),
            "written whole"
        );
        c.writer_idle();
        assert!(!c.writer_asked());
        // Deferred: owed, asked for when the deferral ends.
        c.defer_transmit();
        oneway(&mut c);
        assert!(!c.poll_transmit());
        c.end_defer();
        assert!(c.poll_transmit());
    }

    #[test]
    fn the_timer_is_set_for_the_earliest_of_the_deadlines_and_the_receive_stall() {
        let mut c = Conn::new(Role::Client, &Settings::default());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let call = |c: &mut Conn, t| {
            let mut o = CallOptions::new(MessageType::Call);
            o.deadline = Some(Deadline::from(t0, ms(t)));
            o.expire_here = true;
            c.start_call(&"m".into(), &o, |_| Ok(())).unwrap()
        };
        assert_eq!(c.poll_timeout(), None, "nothing due");
        call(&mut c, 30);
        assert!(c.take_timer_moved());
        assert_eq!(c.poll_timeout(), Some(t0 + ms(30)));
        assert_eq!(c.poll_timeout(), None, "set already");
        call(&mut c, 50);
        assert!(!c.take_timer_moved(), "later: the timer fires first");
        c.set_receive_stall(Some(t0 + ms(20)));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(20)), "the stall is earlier");
        c.set_receive_stall(None);
        let mut wake = Vec::new();
        c.handle_timeout(t0 + ms(20), &mut wake).unwrap();
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(30)),
            "fired: set for what is due"
        );
        c.handle_timeout(t0 + ms(30), &mut wake).unwrap();
        assert_eq!(c.poll_timeout(), Some(t0 + ms(50)));
        c.set_receive_stall(Some(t0 + ms(40)));
        assert!(c.handle_timeout(t0 + ms(40), &mut wake).is_err(), "stalled");
        // A call without a deadline, or one the driver times itself, needs no timer.
        let mut c = Conn::new(Role::Client, &Settings::default());
        let mut o = CallOptions::new(MessageType::Call);
        o.deadline = Some(Deadline::from(t0, ms(10)));
        c.start_call(&"m".into(), &o, |_| Ok(())).unwrap();
        assert!(!c.take_timer_moved());
        assert_eq!(c.poll_timeout(), None);
    }
}
