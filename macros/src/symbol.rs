//! The keys of `#[fdrpc(...)]`, in one place.

pub(crate) const FDRPC: &str = "fdrpc";
pub(crate) const ID: &str = "id";
pub(crate) const RENAME: &str = "rename";
pub(crate) const BINARY: &str = "binary";
pub(crate) const FD: &str = "fd";
pub(crate) const CRATE: &str = "crate";
pub(crate) const NAME: &str = "name";
pub(crate) const ONEWAY: &str = "oneway";
