//! Descriptors as field types: the standard library's owned fd types, the types that check
//! what a received fd is, and the checks themselves.
//!
//! Organization:
//! - `std_types`: `OwnedFd`, `File`, the socket and pipe types as wire types (the socket and
//!   pipe types check their kind on arrival).
//! - `checked`: [`RegularFile`](crate::RegularFile), [`Directory`](crate::Directory),
//!   [`Fifo`](crate::Fifo), [`StreamSocket`](crate::StreamSocket),
//!   [`SealedMemfd`](crate::SealedMemfd): types whose very name says what the fd must be.
//! - `inspect`: `fstat`, `F_GETFL`, `SO_TYPE`, `F_GET_SEALS` checks of a received fd.
//! - `shared_memory`: [`MemfdMap`](crate::MemfdMap) and [`MemfdWriter`](crate::MemfdWriter):
//!   a sealed memfd read in place, and one written in place before it is sealed.
//! - `pool`: [`Pool`](crate::Pool) and its buffers: one memfd shared once, buffers in it lent
//!   by name and given back (the `wl_shm_pool` model).

pub(crate) mod checked;
pub(crate) mod inspect;
pub(crate) mod pool;
pub(crate) mod shared_memory;
mod std_types;
