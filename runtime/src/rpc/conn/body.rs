//! [`Body`]: the payload of a received reply or stream item, kept until its consumer decodes
//! it.

use bytes::Bytes;

use crate::codec::Decoder;
use crate::codec::fd_table::FdTable;

/// A received message's payload after its header: a copy of a small frame's (one allocation,
/// as cheap as it gets), or a view of a large frame's own memory (no copy; large binaries
/// decoded from it are views too).
#[derive(Debug)]
pub(crate) enum Body {
    Copied(Vec<u8>),
    Shared(Bytes),
}

impl Body {
    /// `body`, shared if it is part of `owner` (a large frame's memory), copied otherwise.
    pub(crate) fn new(body: &[u8], owner: Option<&Bytes>) -> Body {
        match owner {
            Some(_) => Body::Shared(crate::codec::view_of(owner, body)),
            None => Body::Copied(body.to_vec()),
        }
    }

    /// A decoder of the body whose fd indices refer to `fds`.
    pub(crate) fn decoder(&self, fds: FdTable) -> Decoder<'_> {
        match self {
            Body::Copied(v) => Decoder::new(v, fds),
            Body::Shared(b) => Decoder::shared(b, Some(b), fds),
        }
    }

    /// The bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Body::Copied(v) => v,
            Body::Shared(b) => b,
        }
    }
}
