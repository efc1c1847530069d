//! Read buffers of connections that are waiting for data, kept per thread: a connection whose
//! buffer holds nothing gives it back here when a read finds the socket empty, and takes one
//! (this one, usually) when it next reads. A thousand connections waiting between calls then
//! hold no read memory, where each held 4 KiB or more before; a busy connection takes back the
//! buffer it gave a moment ago, with its bytes still initialised (no zeroing, no `malloc`).

use std::cell::RefCell;

use crate::codec::buffers::{self, SpareList};

/// A buffer larger than this is not kept (a read buffer grows to 64 KiB and a frame's length).
const MAX_KEPT: usize = 128 << 10;

thread_local! {
    static SPARE: SpareList = const { RefCell::new(Vec::new()) };
}

/// A read buffer: a spare one of this thread (its length and bytes as they were: only the
/// receive queue's own offsets say which bytes mean anything), or an empty one.
#[inline]
pub(super) fn take() -> Vec<u8> {
    buffers::take_from(&SPARE)
}

/// Keeps `buf` for a later [`take`] on this thread, or frees it if enough are kept.
#[inline]
pub(super) fn give(buf: Vec<u8>) {
    if buf.is_empty() || buf.len() > MAX_KEPT {
        return;
    }
    buffers::keep_in(&SPARE, buf, None);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_few_buffers_are_kept_per_thread_and_large_ones_are_freed() {
        give(vec![7; 4096]);
        let back = take();
        assert_eq!((back.len(), back[0]), (4096, 7), "taken back as it was");
        assert!(take().is_empty(), "none left");
        give(vec![0; MAX_KEPT + 1]);
        assert!(take().is_empty(), "too large to keep");
        for _ in 0..buffers::MAX_SPARE + 3 {
            give(vec![0; 16]);
        }
        let kept = std::iter::from_fn(|| Some(take()).filter(|v| !v.is_empty())).count();
        assert_eq!(kept, buffers::MAX_SPARE);
        std::thread::spawn(|| assert!(take().is_empty(), "per thread"))
            .join()
            .unwrap();
    }
}
