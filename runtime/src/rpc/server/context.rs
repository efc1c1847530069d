//! [`Context`]: what a handler may know about a call besides its arguments.

use std::sync::Arc;

use super::peer::PeerCredentials;

/// The call's context, passed to methods that declare a `cx: &fdrpc::Context` parameter (it is
/// not on the wire).
#[derive(Debug, Clone)]
pub struct Context {
    peer: Arc<PeerCredentials>,
    method: &'static str,
    seqid: i32,
}

impl Context {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new(peer: Arc<PeerCredentials>, method: &'static str, seqid: i32) -> Self {
        Context {
            peer,
            method,
            seqid,
        }
    }

    /// The credentials of the calling process (`SO_PEERCRED` when it connected).
    pub fn peer(&self) -> &PeerCredentials {
        &self.peer
    }

    /// The method's wire name.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The call's sequence id on its connection.
    pub fn seqid(&self) -> i32 {
        self.seqid
    }
}
