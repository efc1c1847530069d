//! Credit-based flow control and the routing of stream frames.
//!
//! Each stream has one producer and one consumer. The consumer grants credit (a number of
//! items); the producer takes one unit per item and waits when it has none. The consumer
//! buffers at most what it granted, and rejects items beyond it.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::error::RpcError;

/// `fdrpc-stream`: what a stream frame is.
pub(crate) const HEADER_STREAM: &str = "fdrpc-stream";
/// `fdrpc-credit`: items granted (on credit frames, and on the call that opens a stream).
pub(crate) const HEADER_CREDIT: &str = "fdrpc-credit";

/// The window a consumer grants when the call does not say (`fdrpc-credit` absent).
pub const DEFAULT_WINDOW: u32 = 16;
/// The largest window a consumer may grant in one frame.
pub(crate) const MAX_WINDOW: u32 = 1 << 16;

/// The kinds of stream frames (`fdrpc-stream` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamFrame {
    /// An item: result struct field 0.
    Item,
    /// The producer's error, ending the stream: result struct field 1.
    Error,
    /// The end of the stream.
    End,
    /// The consumer grants `fdrpc-credit` more items.
    Credit,
    /// The consumer does not want more items.
    Cancel,
    /// The producer gave up without ending the stream (its call was dropped).
    Abort,
}

impl StreamFrame {
    /// The kind of a frame carrying a producer's item, or its final error.
    pub(crate) fn carrying(is_error: bool) -> StreamFrame {
        if is_error {
            StreamFrame::Error
        } else {
            StreamFrame::Item
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StreamFrame::Item => "item",
            StreamFrame::Error => "error",
            StreamFrame::End => "end",
            StreamFrame::Credit => "credit",
            StreamFrame::Cancel => "cancel",
            StreamFrame::Abort => "abort",
        }
    }

    pub(crate) fn parse(v: &[u8]) -> Option<Self> {
        Some(match v {
            b"item" => StreamFrame::Item,
            b"error" => StreamFrame::Error,
            b"end" => StreamFrame::End,
            b"credit" => StreamFrame::Credit,
            b"cancel" => StreamFrame::Cancel,
            b"abort" => StreamFrame::Abort,
            _ => return None,
        })
    }
}

/// A data frame handed to a consumer, still encoded.
pub(crate) enum Inbound {
    /// An item or an error: the body of a result struct and the frame's fds.
    Data { body: Vec<u8>, fds: Vec<OwnedFd> },
    /// The producer ended the stream.
    End,
    /// The stream broke (connection lost, protocol violated).
    Failed(RpcError),
}

/// The producer side's credit: a semaphore the consumer's credit frames add to. Closing it
/// cancels the producer.
#[derive(Debug)]
pub(crate) struct Credit {
    sem: Semaphore,
    cancelled: tokio::sync::Notify,
}

impl Credit {
    pub(crate) fn new(initial: u32) -> Arc<Self> {
        Arc::new(Credit {
            sem: Semaphore::new(initial as usize),
            cancelled: tokio::sync::Notify::new(),
        })
    }

    /// Waits until the consumer cancels.
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.cancelled.notified();
            if self.sem.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn grant(&self, n: u32) {
        // Bounded so that a hostile peer cannot overflow the semaphore.
        let room = Semaphore::MAX_PERMITS.saturating_sub(self.sem.available_permits());
        self.sem.add_permits((n as usize).min(room));
    }

    /// Takes one unit, waiting for it; `false` once cancelled.
    pub(crate) async fn take(&self) -> bool {
        match self.sem.acquire().await {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn cancel(&self) {
        self.sem.close();
        self.cancelled.notify_waiters();
    }
}

/// The consumer side's bookkeeping of what it granted.
#[derive(Debug)]
pub(crate) struct Window {
    /// Items granted and not yet received.
    outstanding: u32,
    /// Items consumed since the last grant.
    consumed: u32,
    window: u32,
}

impl Window {
    pub(crate) fn new(window: u32) -> Self {
        Window {
            outstanding: window,
            consumed: 0,
            window,
        }
    }

    /// An item arrived: `false` if the producer exceeded its credit.
    pub(crate) fn received(&mut self) -> bool {
        match self.outstanding.checked_sub(1) {
            Some(n) => {
                self.outstanding = n;
                true
            }
            None => false,
        }
    }

    /// An item was consumed; returns a grant to send, once half the window is used.
    pub(crate) fn consumed(&mut self) -> Option<u32> {
        self.consumed += 1;
        if self.consumed >= self.window.div_ceil(2) {
            let grant = self.consumed;
            self.consumed = 0;
            self.outstanding += grant;
            Some(grant)
        } else {
            None
        }
    }
}

/// Where a connection's reader sends a stream's data frames.
pub(crate) type InboundTx = mpsc::UnboundedSender<Inbound>;
