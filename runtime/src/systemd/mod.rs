//! Running under systemd (or anything that speaks its protocols): descriptors passed at start
//! ([`ListenFds`]: socket activation, the fd store, a parent process), and notifications to
//! the service manager ([`notify`], [`store_fd`]).
//!
//! The protocols are `sd_listen_fds(3)` and `sd_notify(3)`. The `sd-notify` crate (pure Rust,
//! no libsystemd) does the reading of `LISTEN_*` and the sending of notifications; this
//! module adds ownership (every fd an `OwnedFd`, taken once), names, and checks.
//!
//! Organization:
//! - `activation`: [`ListenFds`], and [`spawn_with_fds`] for the other side (a parent
//!   passing fds to a child the same way).
//! - `notify`: [`notify`] with [`State`]s, [`store_fd`], [`remove_stored_fd`].
//!
//! # Examples
//!
//! A daemon that serves the socket systemd passed it, and says when it is ready:
//!
//! ```no_run
//! # async fn run<S: fdrpc::Service>(service: S) -> std::io::Result<()> {
//! use fdrpc::systemd::{self, ListenFds, State};
//!
//! let mut fds = ListenFds::take()?;
//! let listener = fds.take_listener(Some("broker"))?.expect("started by broker.socket");
//! systemd::notify(&[State::Ready, State::Status("serving")])?;
//! fdrpc::Server::new().serve(listener, service).await
//! # }
//! ```

mod activation;
mod notify;

pub use activation::{ListenFds, spawn_with_fds};
pub use notify::{State, notify, remove_stored_fd, store_fd};
