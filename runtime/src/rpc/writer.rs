//! The write side of an async connection: frames are queued by any task and written by one
//! writer task, so everything queued while it was asleep leaves in one `sendmsg` with all
//! its fds.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::error::ConnectionError;
use super::socket::Socket;
use crate::error::{FdStreamError, TransportError};
use crate::transport::SendQueue;

pub(crate) struct Writer {
    stream: Arc<Socket>,
    /// Bytes and fds of backlog beyond which stream producers wait for the peer to read.
    max_backlog: (usize, usize),
    /// How long a producer waits for room before the peer counts as not reading.
    stall: Duration,
    state: Mutex<State>,
    wake: Notify,
    drained: Notify,
}

struct State {
    queue: SendQueue,
    /// The writer task has been told there is work and has not finished it yet.
    scheduled: bool,
    /// Set once writing failed or the connection was closed; later pushes fail with it.
    error: Option<ConnectionError>,
}

impl Writer {
    pub(crate) fn new(stream: Arc<Socket>, max_backlog: (usize, usize), stall: Duration) -> Self {
        Writer {
            stream,
            max_backlog,
            stall,
            state: Mutex::new(State {
                queue: SendQueue::new(),
                scheduled: false,
                error: None,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue half-written: recover it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame; the writer task sends it.
    pub(crate) fn push(
        &self,
        seqid: i32,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        headers: &[(&str, &str)],
    ) -> Result<(), ConnectionError> {
        let mut st = self.lock();
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        st.queue
            .push(seqid, payload, fds, headers)
            .map_err(|e| ConnectionError::new(e.into()))?;
        if !st.scheduled {
            st.scheduled = true;
            drop(st);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Marks the connection failed: queued frames are dropped (their fds closed), and later
    /// pushes fail with `why`.
    pub(crate) fn fail(&self, why: ConnectionError) {
        let mut st = self.lock();
        if st.error.is_none() {
            st.error = Some(why);
        }
        st.queue = SendQueue::new();
        drop(st);
        self.drained.notify_waiters();
    }

    /// Writes what is queued now, from the calling task, if the socket takes it without
    /// blocking; otherwise leaves it to the writer task. A server's reader calls this once it
    /// has dispatched every frame a read brought, so the replies of a batch still leave in one
    /// `sendmsg`, without a task switch.
    pub(crate) fn flush_inline(&self) {
        let mut st = self.lock();
        if st.error.is_some() || st.queue.is_empty() {
            return;
        }
        // Would block, or failed: the writer task (already woken) handles it.
        if let Ok(true) = st.queue.write_to(self.stream.as_fd()) {
            st.scheduled = false;
            drop(st);
            self.drained.notify_waiters();
        }
    }

    /// Waits until the backlog has room for one more stream item. A peer that leaves its
    /// backlog unread for the stall timeout fails the connection: a stream it granted endless
    /// credit cannot make this side hold endless items and fds.
    ///
    /// # Errors
    ///
    /// The connection's failure.
    pub(crate) async fn room_for_item(&self) -> Result<(), ConnectionError> {
        let (bytes, fds) = self.max_backlog;
        if tokio::time::timeout(self.stall, self.wait_backlog_below(bytes, fds))
            .await
            .is_err()
        {
            let err = ConnectionError::new(TransportError::FdStream(FdStreamError::NotReading(
                self.stall,
            )));
            self.fail(err.clone());
            let _ = rustix::net::shutdown(self.stream.as_fd(), rustix::net::Shutdown::Both);
            return Err(err);
        }
        match &self.lock().error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Bytes and fds queued and not yet written.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let st = self.lock();
        (st.queue.pending_bytes(), st.queue.pending_fds())
    }

    /// Waits until the backlog is within `max_bytes` and `max_fds` (or writing failed).
    pub(crate) async fn wait_backlog_below(&self, max_bytes: usize, max_fds: usize) {
        loop {
            let notified = self.drained.notified();
            {
                let st = self.lock();
                if st.error.is_some()
                    || (st.queue.pending_bytes() <= max_bytes && st.queue.pending_fds() <= max_fds)
                {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until everything queued so far has been written (or writing failed).
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            {
                let st = self.lock();
                if st.error.is_some() || (st.queue.is_empty() && !st.scheduled) {
                    return;
                }
            }
            notified.await;
        }
    }

    /// The writer task: runs until writing fails. Returns the failure.
    pub(crate) async fn run(&self) -> ConnectionError {
        loop {
            self.wake.notified().await;
            loop {
                let result = {
                    let mut st = self.lock();
                    if st.error.is_some() {
                        Ok(true)
                    } else {
                        match st.queue.write_to(self.stream.as_fd()) {
                            Ok(true) => {
                                st.scheduled = false;
                                Ok(true)
                            }
                            other => other,
                        }
                    }
                };
                match result {
                    Ok(true) => {
                        self.drained.notify_waiters();
                        break;
                    }
                    Ok(false) => {
                        // Some of the backlog may have gone out: let waiters look again.
                        self.drained.notify_waiters();
                        if let Err(e) = self.stream.writable().await {
                            return self.failed(e);
                        }
                    }
                    Err(e) => return self.failed(e),
                }
            }
            if let Some(e) = self.lock().error.clone() {
                return e;
            }
        }
    }

    fn failed(&self, e: std::io::Error) -> ConnectionError {
        let err = ConnectionError::new(TransportError::Io(e));
        self.fail(err.clone());
        // Wake the reader too: a connection that cannot write is dead.
        let _ = rustix::net::shutdown(self.stream.as_fd(), rustix::net::Shutdown::Both);
        err
    }
}
