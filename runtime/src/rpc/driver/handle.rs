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
    pub(crate) async fn until<F: Future>(
        &self,
        deadline: Option<Instant>,
        fut: F,
    ) -> Option<F::Output> {
        let Some(at) = deadline else {
            return Some(fut.await);
        };
        match self {
            #[cfg(feature = "tokio")]
            Driven::Tokio(_) => tokio::time::timeout_at(at.into(), fut).await.ok(),
            Driven::Polled(c) => {
                Until {
                    fut,
                    sleep: c.sleep_until(at),
                }
                .await
            }
        }
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

pin_project_lite::pin_project! {
    /// A future, until an instant on a polled connection's clock.
    struct Until<F> {
        #[pin]
        fut: F,
        sleep: PolledSleep,
    }
}

impl<F: Future> Future for Until<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
