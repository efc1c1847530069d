//! What the macros see of their input, with spans kept for errors.

pub(crate) mod message;
pub(crate) mod service;

pub(crate) use message::{Container, Data, EnumValue, Field, UnionVariant};
