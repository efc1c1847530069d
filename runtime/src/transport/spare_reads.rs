//! Read buffers of connections that are waiting for data, kept per thread: a connection whose
//! buffer holds nothing gives it back here when a read finds the socket empty, and takes one
//! (this one, usually) when it next reads. A thousand idle connections then hold no read
//! memory at all, where each held its first 4 KiB before; a busy connection takes back the
//! buffer it gave a moment ago, with its bytes still initialised (no zeroing, no `malloc`).

use std::cell::RefCell;

/// Buffers kept per thread: one per connection a thread serves in turn, for a few.
const MAX_SPARE: usize = 4;
/// A buffer larger than this is not kept (a read buffer grows to 64 KiB and a frame's length).
const MAX_KEPT: usize = 128 << 10;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer: a spare one of this thread (its length and bytes as they were: only the
/// receive queue's own offsets say which bytes mean anything), or an empty one.
#[inline]
pub(super) fn take() -> Vec<u8> {
    SPARE
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `buf` for a later [`take`] on this thread, or frees it if enough are kept.
#[inline]
pub(super) fn give(buf: Vec<u8>) {
    if buf.is_empty() || buf.len() > MAX_KEPT {
        return;
    }
    let _ = SPARE.try_with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < MAX_SPARE {
            spare.push(buf);
        }
    });
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
        for _ in 0..MAX_SPARE + 3 {
            give(vec![0; 16]);
        }
        let kept = std::iter::from_fn(|| Some(take()).filter(|v| !v.is_empty())).count();
        assert_eq!(kept, MAX_SPARE);
        std::thread::spawn(|| assert!(take().is_empty(), "per thread"))
            .join()
            .unwrap();
    }
}
