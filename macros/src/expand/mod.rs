//! Code generation, one file per generated item.

pub(crate) mod message;
