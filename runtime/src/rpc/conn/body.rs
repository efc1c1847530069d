//! [`Body`]: the payload of a received reply or stream item, kept until its consumer decodes
//! it.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::Decoder;
use crate::codec::fd_table::FdTable;

/// Bytes of a copied body kept inline, without an allocation: most replies and stream
/// items of small calls fit (a result with an fd index and a few fields is 10 to 100 bytes).
const INLINE_BODY: usize = 112;

/// A received message's payload after its header: a copy of a small frame's (inline up to
/// [`INLINE_BODY`] bytes, one allocation above), or a view of a large frame's own memory
/// (no copy; large binaries decoded from it are views too).
#[derive(Debug)]
pub(crate) enum Body {
    Copied(SmallVec<[u8; INLINE_BODY]>),
    Shared(Bytes),
}

impl Body {
    /// `body`, shared if it is part of `owner` (a large frame's memory), copied otherwise.
    pub(crate) fn new(body: &[u8], owner: Option<&Bytes>) -> Body {
        match owner {
            Some(_) => Body::Shared(crate::codec::view_of(owner, body)),
            None => Body::Copied(SmallVec::from_slice(body)),
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
