//! Rules that span several fields or methods, one function per rule.

pub(crate) mod message;
pub(crate) mod service;

pub(crate) use message::{check, check_type};
