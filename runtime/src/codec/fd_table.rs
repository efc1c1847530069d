//! The fd table of a received frame: each index is claimed at most once, and every fd that is
//! not claimed is closed.

use std::os::fd::OwnedFd;

use smallvec::SmallVec;

use super::error::{DecodeError, DecodeErrorKind};

/// A message's fds as the runtime carries them: inline up to two (what almost every call
/// and reply has), so passing one costs no allocation.
pub(crate) type Fds = SmallVec<[OwnedFd; 2]>;

/// The fds a frame carries, in the order the sender encoded them.
///
/// Decoding a fd field claims its index; an index out of range or claimed twice is an error,
/// and [`FdTable::finish`] fails if any fd was left unclaimed. Every fd still in the table
/// when it is dropped is closed, so no error path leaks.
#[derive(Debug, Default)]
pub struct FdTable {
    slots: SmallVec<[Option<OwnedFd>; 2]>,
    claimed: usize,
}

impl FdTable {
    /// A table over `fds`, index `i` being `fds[i]`.
    pub fn new(fds: Vec<OwnedFd>) -> Self {
        Self::of(fds)
    }

    /// A table over the fds `fds` yields, in order.
    pub(crate) fn of(fds: impl IntoIterator<Item = OwnedFd>) -> Self {
        let fds = fds.into_iter();
        let mut slots = SmallVec::with_capacity(fds.size_hint().0);
        // One at a time, as `claim` in the receive queue does, for the same reason.
        for fd in fds {
            slots.push(Some(fd));
        }
        FdTable { slots, claimed: 0 }
    }

    /// An empty table.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Number of fds in the frame (claimed or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the frame carries no fds.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes fd `index` out of the table.
    ///
    /// # Errors
    ///
    /// [`DecodeErrorKind::FdIndexOutOfRange`] for a negative or too large index,
    /// [`DecodeErrorKind::FdIndexClaimedTwice`] for an index already taken.
    pub fn claim(&mut self, index: i32) -> Result<OwnedFd, DecodeError> {
        let count = self.slots.len();
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(DecodeErrorKind::FdIndexOutOfRange { index, count })?;
        let fd = slot
            .take()
            .ok_or(DecodeErrorKind::FdIndexClaimedTwice(index))?;
        self.claimed += 1;
        Ok(fd)
    }

    /// Succeeds if every fd was claimed; otherwise closes the rest and reports how many.
    ///
    /// # Errors
    ///
    /// [`DecodeErrorKind::UnclaimedFds`].
    #[inline]
    pub fn finish(self) -> Result<(), DecodeError> {
        let unclaimed = self.slots.len() - self.claimed;
        if unclaimed == 0 {
            Ok(())
        } else {
            // `self` drops here and closes what is left.
            Err(DecodeErrorKind::UnclaimedFds(unclaimed).into())
        }
    }
}
