//! The conformance service's messages and trait: what every peer of `conformance serve` speaks.
//! Kept apart from the server so that a client built without tokio can use it too
//! (`no-tokio/`).

use std::os::fd::OwnedFd;

#[derive(fdrpc::Message)]
pub struct Bundle {
    pub label: String,
    pub fds: Vec<OwnedFd>,
    pub spare: Option<OwnedFd>,
}
#[derive(fdrpc::Message, Debug)]
pub struct Failure {
    pub message: String,
    pub log: Option<OwnedFd>,
}
#[derive(fdrpc::Message)]
pub struct Peer {
    pub pid: i32,
    pub uid: i32,
    pub gid: i32,
}

#[fdrpc::service]
pub trait Conformance {
    /// The bundle as received: same label, the same open file descriptions.
    async fn echo(&self, bundle: Bundle) -> Bundle;
    /// `path` opened read-only; Failure with the OS error's text otherwise.
    async fn open(&self, path: String) -> Result<OwnedFd, Failure>;
    /// Always fails: Failure whose `log` is a memfd holding `reason`.
    async fn fail(&self, reason: String) -> Result<(), Failure>;
    /// Keeps `fd` under `key`.
    #[oneway]
    async fn deposit(&self, key: String, fd: OwnedFd);
    /// Removes and returns what is kept under `key`.
    async fn withdraw(&self, key: String) -> Option<OwnedFd>;
    /// The caller as the server saw it.
    async fn whoami(&self, cx: &fdrpc::Context) -> Peer;
    /// `count` memfds; the i-th (from 0) holds the decimal text of i.
    async fn memfds(&self, count: i32) -> fdrpc::Stream<OwnedFd>;
    /// The sum of the sizes (fstat) of the files streamed in.
    async fn total_size(&self, files: fdrpc::Stream<OwnedFd>) -> i64;
    /// Sleeps `ms` milliseconds, then returns how many milliseconds were left until the
    /// deadline this call carried when it started, or -1 when it carried none.
    async fn sleep(&self, cx: &fdrpc::Context, ms: i64) -> i64;
    /// How many `sleep` calls were dropped (deadline passed or cancelled) before they finished.
    async fn dropped(&self) -> i64;
}
