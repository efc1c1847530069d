//! [`Driven`]: a connection as the code above its driver holds it (the server's dispatch,
//! stream producers and consumers): run something on the core, wait for room in the backlog,
//! start a task, wait until an instant. One enum rather than a trait object, so the tokio path
//! pays a branch, not an indirect call, and generic closures can go through it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::polled_conn::{PolledConn, PolledSleep};
#[cfg(feature = "tokio")]
use super::tokio_conn::TokioConn;
use crate::rpc::conn::Conn;
use crate::rpc::error::ConnectionError;

/// A connection and its driver.
#[derive(Debug, Clone)]
pub(crate) enum Driven {
    /// Driven by tokio (the async client, the [`Server`](crate::Server)).
    #[cfg(feature = "tokio")]
    Tokio(Arc<TokioConn>),
    /// Driven by one thread with no async runtime (the
    /// [`BlockingServer`](crate::BlockingServer)).
    Polled(Arc<PolledConn>),
}

impl Driven {
    /// Runs `f` on the connection, then does what the connection asks of its driver.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> R {
        match self {
            #[cfg(feature = "tokio")]
            Driven::Tokio(c) => c.with(f),
            Driven::Polled(c) => c.with(f),
        }
    }

    /// Waits until the backlog has room for one more stream item; see
    /// [`TokioConn::room_for_item`].
    ///
    /// # Errors
    ///
    /// The connection's failure (a peer that does not read fails it after the stall timeout).
    pub(crate) async fn room_for_item(&self) -> Result<(), ConnectionError> {
        match self {
            #[cfg(feature = "tokio")]
            Driven::Tokio(c) => c.room_for_item().await,
            Driven::Polled(c) => c.room_for_item().await,
        }
    }

    /// Runs `task` beside the connection: on the tokio runtime, or on the connection's own
    /// thread.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match self {
            #[cfg(feature = "tokio")]
            Driven::Tokio(_) => {
                tokio::spawn(task);
            }
            Driven::Polled(c) => c.spawn(task),
        }
    }

    /// `fut`'s output, or `None` once `deadline` passes (`fut` is dropped then).
    ///
    /// A future of its own rather than an `async fn`: a handler that waits is held in it, and
    /// an `async fn` would keep `fut` twice (as its argument and inside what it awaits).
    pub(crate) fn until<F: Future>(&self, deadline: Option<Instant>, fut: F) -> Until<F> {
        let timer = match (deadline, self) {
            (None, _) => Timer::Never,
            #[cfg(feature = "tokio")]
            (Some(at), Driven::Tokio(_)) => Timer::Tokio {
                sleep: tokio::time::sleep_until(at.into()),
            },
            (Some(at), Driven::Polled(c)) => Timer::Polled {
                sleep: c.sleep_until(at),
            },
        };
        Until { fut, timer }
    }

    /// Has `f` called once the connection ends (the server stops its handlers then).
    pub(crate) fn on_end(&self, f: Box<dyn Fn() + Send + Sync>) {
        match self {
            #[cfg(feature = "tokio")]
            Driven::Tokio(c) => c.on_end(f),
            Driven::Polled(c) => c.on_end(f),
        }
    }
}

/// The clock of a driver: tokio's, or a polled connection's loop.
#[cfg(feature = "tokio")]
type TokioSleep = tokio::time::Sleep;
/// (Without tokio, nothing makes this variant.)
#[cfg(not(feature = "tokio"))]
type TokioSleep = std::future::Pending<()>;

pin_project_lite::pin_project! {
    /// A future, until an instant on its connection's clock: see [`Driven::until`].
    pub(crate) struct Until<F> {
        #[pin]
        fut: F,
        #[pin]
        timer: Timer,
    }
}

pin_project_lite::pin_project! {
    /// What ends an [`Until`] early.
    #[project = TimerProj]
    enum Timer {
        Never,
        Tokio {
            #[pin]
            sleep: TokioSleep,
        },
        Polled {
            sleep: PolledSleep,
        },
    }
}

impl<F: Future> Future for Until<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        let passed = match this.timer.project() {
            TimerProj::Never => false,
            TimerProj::Tokio { sleep } => sleep.poll(cx).is_ready(),
            TimerProj::Polled { sleep } => Pin::new(sleep).poll(cx).is_ready(),
        };
        if passed {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
