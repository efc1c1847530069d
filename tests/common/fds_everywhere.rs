//! A message with fds in every position a value can stand, shared by the property tests and
//! the `message_decode` fuzz target (which includes this file by path).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;

/// A union whose variants hold none, one or many fds.
#[derive(fdrpc::Message, Debug)]
pub enum Slot {
    Empty,
    Fd(OwnedFd),
    Many(Vec<OwnedFd>),
}

/// Fds bare, optional, in lists, lists of lists, maps, unions, recursion and typed wrappers.
#[derive(fdrpc::Message, Debug)]
pub struct FdsEverywhere {
    pub one: OwnedFd,
    pub maybe: Option<OwnedFd>,
    pub list: Vec<OwnedFd>,
    pub nested: Vec<Vec<OwnedFd>>,
    pub map: HashMap<String, OwnedFd>,
    pub tree: BTreeMap<i32, Slot>,
    pub slot: Slot,
    pub boxed: Option<Box<FdsEverywhere>>,
    pub typed: Option<fdrpc::RegularFile>,
    pub sealed: Option<fdrpc::SealedMemfd>,
    pub text: String,
    pub number: u16,
}
