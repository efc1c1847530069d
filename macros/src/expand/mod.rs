//! Code generation: `message` for `#[derive(Message)]`, `service` for `#[fdrpc::service]`.

pub(crate) mod message;
pub(crate) mod service;
