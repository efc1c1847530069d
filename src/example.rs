//! What the macros generate, on a sample service: this module exists only in the
//! documentation (it is not compiled into your program).
//!
//! The source is the trait [`Broker`] and the messages below:
//!
//! ```ignore
//! #[derive(fdrpc::Message, Debug)]
//! pub struct Opened {
//!     pub path: String,
//!     pub file: std::fs::File,
//! }
//!
//! #[derive(fdrpc::Message, Debug)]
//! pub struct Denied {
//!     pub reason: String,
//!     pub log: Option<OwnedFd>,
//! }
//!
//! #[fdrpc::service]
//! pub trait Broker {
//!     async fn open(&self, path: String) -> Result<Opened, Denied>;
//!     async fn whoami(&self, cx: &fdrpc::Context) -> u32;
//!     #[oneway]
//!     async fn log(&self, line: String);
//!     async fn watch(&self, dir: String) -> fdrpc::Stream<OwnedFd>;
//!     async fn upload(&self, files: fdrpc::Stream<std::fs::File>) -> u64;
//!     async fn exchange(&self, outgoing: fdrpc::Stream<OwnedFd>) -> fdrpc::Stream<OwnedFd, Denied>;
//! }
//! ```
//!
//! From it, `#[fdrpc::service]` generates:
//!
//! - [`BrokerClient`]: the async client. Its constructors ([`BrokerClient::connect`],
//!   [`BrokerClient::new`], [`BrokerClient::from_std`], [`BrokerClient::multiplexed`]), its
//!   handles ([`BrokerClient::with_timeout`], [`BrokerClient::without_timeout`],
//!   [`BrokerClient::client`]), and one method per service method, with what it returns and
//!   how it fails.
//! - [`BrokerBlockingClient`]: the same for plain threads.
//! - [`BrokerServer`]: what [`Server::serve`](crate::Server::serve) takes.
//!
//! The trait itself is rewritten so that its methods return `Send` futures; an implementation
//! is written with `async fn` all the same.

use std::os::fd::OwnedFd;

/// A file the broker opened, and the path it opened.
#[derive(crate::Message, Debug)]
#[fdrpc(crate = crate)]
pub struct Opened {
    /// The path as asked.
    pub path: String,
    /// The open file.
    pub file: std::fs::File,
}

/// Why the broker refused, with its log of the decision.
#[derive(crate::Message, Debug)]
#[fdrpc(crate = crate)]
pub struct Denied {
    /// Why.
    pub reason: String,
    /// The log, as a file the client can read.
    pub log: Option<OwnedFd>,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "denied: {}", self.reason)
    }
}

/// A file broker: the sample service.
#[crate::service(crate = crate)]
pub trait Broker {
    /// Opens `path` for reading, if the caller may.
    async fn open(&self, path: String) -> Result<Opened, Denied>;
    /// The caller's uid, as the server saw it (`cx` is not on the wire).
    async fn whoami(&self, cx: &crate::Context) -> u32;
    /// Appends `line` to the log; no reply.
    #[oneway]
    async fn log(&self, line: String);
    /// An fd for each change in `dir`, as it happens.
    async fn watch(&self, dir: String) -> crate::Stream<OwnedFd>;
    /// The total size of the files the client sends.
    async fn upload(&self, files: crate::Stream<std::fs::File>) -> u64;
    /// Fds both ways: each one the client sends comes back, until the broker refuses one.
    async fn exchange(&self, outgoing: crate::Stream<OwnedFd>) -> crate::Stream<OwnedFd, Denied>;
}
