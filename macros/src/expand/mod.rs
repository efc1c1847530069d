//! Code generation, one file per generated item.

pub(crate) mod client;
pub(crate) mod message;
pub(crate) mod server;
pub(crate) mod service;
