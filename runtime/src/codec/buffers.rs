//! Spare encode buffers, kept per thread: an encoder takes one instead of a fresh allocation,
//! and a payload goes back once its bytes are copied into a send queue. For small messages
//! this saves a `malloc` and the reallocations of a growing buffer on every call; for large
//! ones (a 1 MiB `binary`), the page faults of fresh memory, which cost more than the copy.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Buffers kept per thread, in each list.
pub(crate) const MAX_SPARE: usize = 4;
/// A buffer larger than this is not kept: 1 MiB and room for its headers.
pub(crate) const MAX_KEPT: usize = (1 << 20) + (64 << 10);
/// The most capacity kept per thread in all: one large buffer and a few small ones, so a
/// runtime with many worker threads holds a bounded amount of idle memory.
const MAX_KEPT_TOTAL: usize = MAX_KEPT + (256 << 10);

/// A thread's spare buffers: at most [`MAX_SPARE`], taken last in, first out. The mechanism
/// of this module's encode buffers and of the receive queues' read buffers
/// (`transport/spare_reads.rs`), which differ only in what they keep.
pub(crate) type SpareList = RefCell<Vec<Vec<u8>>>;

thread_local! {
    static SPARE: SpareList = const { RefCell::new(Vec::new()) };
}

/// A spare buffer of `list` on this thread, as it was kept, or an empty one.
#[inline]
pub(crate) fn take_from(list: &'static LocalKey<SpareList>) -> Vec<u8> {
    list.try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `buf` in `list` on this thread if fewer than [`MAX_SPARE`] are kept and, with
/// `max_total`, their capacities and its own stay within it; otherwise frees it.
#[inline]
pub(crate) fn keep_in(list: &'static LocalKey<SpareList>, buf: Vec<u8>, max_total: Option<usize>) {
    let _ = list.try_with(|s| {
        let mut spare = s.borrow_mut();
        let room = max_total.is_none_or(|max| {
            spare.iter().map(Vec::capacity).sum::<usize>() + buf.capacity() <= max
        });
        if spare.len() < MAX_SPARE && room {
            spare.push(buf);
        }
    });
}

/// An empty buffer, with the capacity a spare one had, if any.
#[inline]
pub(crate) fn take() -> Vec<u8> {
    take_from(&SPARE)
}

/// Keeps `buf` for a later [`take`] on this thread, if it is worth keeping.
#[inline]
pub(crate) fn give(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_KEPT {
        return;
    }
    buf.clear();
    keep_in(&SPARE, buf, Some(MAX_KEPT_TOTAL));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_on_their_thread_and_huge_ones_are_not_kept() {
        let mut b = take();
        b.extend_from_slice(&[1; 1000]);
        let cap = b.capacity();
        give(b);
        let again = take();
        assert!(again.is_empty() && again.capacity() == cap);
        give(Vec::with_capacity(MAX_KEPT + 1));
        assert_eq!(take().capacity(), 0, "too big to keep");
        for _ in 0..MAX_SPARE + 2 {
            give(Vec::with_capacity(8));
        }
        let kept = std::iter::from_fn(|| Some(take()).filter(|v| v.capacity() > 0)).count();
        assert_eq!(kept, MAX_SPARE);
    }

    #[test]
    fn a_thread_keeps_at_most_one_large_buffer() {
        give(Vec::with_capacity(MAX_KEPT));
        give(Vec::with_capacity(MAX_KEPT));
        let kept: Vec<usize> = std::iter::from_fn(|| Some(take()).filter(|v| v.capacity() > 0))
            .map(|v| v.capacity())
            .collect();
        assert!(matches!(kept[..], [one] if one >= MAX_KEPT), "{kept:?}");
    }
}
