//! A shared-memory pool on Wayland's `wl_shm_pool` model: one memfd, sized once and sealed,
//! sent once ([`SharedPool`], a message value with two fds); then buffers of it lent by name
//! ([`PoolBuffer`]: pool, slot, generation, offset, length) in any later message, and given
//! back when the receiver drops its view ([`PoolView`]) of one. Data crosses no socket and no
//! page is allocated or faulted in after the pool is made.
//!
//! Who can do what, and why each side stays sound (also in `docs/SECURITY.md`):
//!
//! - The memfd is sealed `SHRINK | GROW | FUTURE_WRITE | SEAL` once the sender has mapped it
//!   writable: nobody can truncate it (so no mapping of it can `SIGBUS`), and nobody, the
//!   receiver included, can write it any more except through the sender's own mapping. The
//!   sender's `&mut [u8]` of a free slot ([`PoolBufMut`]) is therefore exclusive.
//! - The receiver maps it read-only. The sender still writes it, so a hostile or buggy
//!   sender can change a buffer while the receiver looks at it. The receiver's safe API only
//!   copies out ([`PoolView::copy_to`], [`PoolView::for_each_chunk`], [`PoolView::to_vec`]),
//!   with a copy the compiler cannot see into (one `rep movsb` in inline assembly on x86-64,
//!   atomic loads elsewhere): a racing writer can make a copy inconsistent, never make it
//!   undefined behaviour, and what was copied cannot change under the reader afterwards. A `&[u8]` of the shared bytes is [`PoolView::as_slice_unchecked`],
//!   `unsafe`, for a peer trusted to keep its promise (an fdrpc [`Pool`] never writes a slot
//!   while it is lent).
//! - Releases go back through a pipe (the receiver holds the write end): 8 bytes, slot and
//!   generation, written atomically. The sender frees a slot only for a release naming a
//!   slot it lent under that generation; anything else (released twice, never lent, a stale
//!   generation, garbage) is counted as a [`ReleaseFault`] and changes nothing.
//! - A receiver that never releases makes the sender wait, within the time it allows
//!   ([`Pool::buffer_within`], or a timeout around [`Pool::buffer`]): backpressure, bounded by
//!   the number of slots.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
#[cfg(not(target_arch = "x86_64"))]
use std::sync::atomic::AtomicU8;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, OFlags, SealFlags};
use rustix::mm::ProtFlags;

use super::inspect::{self, Kind};
use crate::codec::error::{DecodeError, EncodeError};
use crate::codec::wire::{Field, Wire};
use crate::codec::{Decoder, Encoder, TType};
use crate::idl::{Idl, IdlField};

/// Most slots a pool may have (a receiver refuses more): every release of them fits in a
/// pipe's buffer at once, so a release is never lost to a full pipe.
pub const MAX_POOL_SLOTS: u32 = 1024;
/// Largest pool a receiver maps by default ([`SharedPool::map_within`] sets another bound).
pub const DEFAULT_MAX_POOL_BYTES: u64 = 1 << 30;
/// The seals a shared pool carries: no shrinking (no `SIGBUS` for a reader), no growing, no
/// new writer, no change of seals.
const POOL_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::FUTURE_WRITE)
    .union(SealFlags::SEAL);
/// Bytes of one release record: slot and generation, little-endian `u32`s.
const RELEASE_LEN: usize = 8;

/// What went wrong with a pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No slot came free in the time allowed: the receiver holds every buffer.
    #[error("every buffer of the pool is lent and none came back in {0:?}")]
    Exhausted(Duration),
    /// A buffer of another pool.
    #[error("the buffer names pool {found:#x}, this is pool {expected:#x}")]
    WrongPool {
        /// This pool's id.
        expected: u64,
        /// The buffer's.
        found: u64,
    },
    /// A buffer outside the pool: a slot it does not have, an offset that is not its slot's,
    /// or a length beyond the slot.
    #[error("buffer (slot {slot}, offset {offset}, length {len}) is outside the pool")]
    OutOfRange {
        /// The slot named.
        slot: u32,
        /// The offset named.
        offset: u64,
        /// The length named.
        len: u64,
    },
    /// The slot is already open in a view: the sender lent it twice.
    #[error("slot {0} is already open")]
    AlreadyOpen(u32),
    /// The pool cannot be shared (again) or mapped as described.
    #[error("bad pool: {0}")]
    Invalid(&'static str),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A release the sender did not accept (it changed nothing): see [`PoolStats::faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseFault {
    /// A slot the pool does not have.
    NoSuchSlot(u32),
    /// A slot not lent now: released twice, or never lent.
    NotLent(u32),
    /// A slot lent under another generation: a late release of an earlier lending.
    StaleGeneration {
        /// The slot.
        slot: u32,
        /// The generation the release named.
        released: u32,
        /// The slot's generation now.
        lent: u32,
    },
}

/// What a pool's slots are doing, for tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Slots lent and not given back.
    pub lent: usize,
    /// Slots free to write.
    pub free: usize,
    /// Releases refused since the pool was made.
    pub faults: u64,
    /// The last release refused.
    pub last_fault: Option<ReleaseFault>,
}

/// A live shared mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory, unmapped once by whoever drops it; who may read or
// write which part of it, and how, is what `Pool` and `PoolReader` enforce.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, every page at once (see `shared_memory::map`).
    fn new(fd: impl AsFd, len: usize, prot: ProtFlags) -> io::Result<Mapping> {
        Ok(Mapping {
            ptr: super::shared_memory::map(fd, len, prot)?,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        super::shared_memory::unmap(self.ptr, self.len);
    }
}

/// The sender's state of each slot.
#[derive(Debug)]
struct Slots {
    /// The generation a slot is lent under, if it is.
    lent: Vec<Option<u32>>,
    free: Vec<u32>,
    next_generation: u32,
    /// Bytes of a release record split across reads (a well-behaved receiver never splits
    /// one; a hostile one only confuses its own releases).
    partial: Vec<u8>,
    faults: u64,
    last_fault: Option<ReleaseFault>,
}

#[derive(Debug)]
struct PoolInner {
    id: u64,
    slot_size: usize,
    slots: u32,
    memfd: File,
    map: Mapping,
    /// The read end of the release pipe (non-blocking).
    releases: OwnedFd,
    /// The write end, until the pool is shared.
    release_writer: Mutex<Option<OwnedFd>>,
    state: Mutex<Slots>,
    #[cfg(feature = "tokio")]
    readable: std::sync::OnceLock<io::Result<tokio::io::unix::AsyncFd<OwnedFd>>>,
}

/// The sending side of a shared-memory pool: `slots` buffers of `slot_size` bytes in one
/// sealed memfd. Share it with one peer ([`Pool::share`], once), then write a free buffer
/// ([`Pool::buffer`]) and lend it ([`PoolBufMut::lend`]) in any message: only the
/// [`PoolBuffer`] naming it travels.
///
/// # Examples
///
/// ```
/// use fdrpc::{Pool, PoolBuffer, SharedPool};
///
/// let pool = Pool::new("frames", 4096, 2)?;
/// let shared: SharedPool = pool.share()?; // sent once, as a message value
/// let mut buf = pool.buffer_within(std::time::Duration::from_secs(1))?;
/// buf[..5].copy_from_slice(b"hello");
/// let lent: PoolBuffer = buf.lend(5)?; // sent in any later message
///
/// // The receiver:
/// let reader = shared.map()?;
/// let view = reader.open(lent)?;
/// assert_eq!(view.to_vec(), b"hello");
/// drop(view); // the slot goes back to the sender
/// assert_eq!(pool.stats().lent, 0);
/// # Ok::<(), fdrpc::PoolError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

fn invalid(why: &'static str) -> PoolError {
    PoolError::Invalid(why)
}

/// A pool id unlikely to repeat across processes and pools: pid, a per-process counter and
/// the time.
fn fresh_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (u64::from(std::process::id()) << 40) ^ (n << 24) ^ t
}

impl Pool {
    /// A pool named `name` (as `/proc/<pid>/fd` shows it) of `slots` buffers of at least
    /// `slot_size` bytes (rounded up to whole pages), allocated now.
    ///
    /// # Errors
    ///
    /// [`PoolError::Invalid`] for no slots, more than [`MAX_POOL_SLOTS`], an empty slot or a
    /// pool larger than the address space allows; the errors of `memfd_create`,
    /// `ftruncate`, `mmap` and `F_ADD_SEALS`, `pipe2`.
    pub fn new(name: &str, slot_size: usize, slots: u32) -> Result<Pool, PoolError> {
        if slots == 0 || slots > MAX_POOL_SLOTS {
            return Err(invalid("a pool has 1 to 1024 slots"));
        }
        let page = rustix::param::page_size();
        let slot_size = slot_size
            .checked_next_multiple_of(page)
            .filter(|&s| s > 0)
            .ok_or_else(|| invalid("a slot has at least one byte"))?;
        let len = slot_size
            .checked_mul(slots as usize)
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or_else(|| invalid("the pool is too large"))?;
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(io::Error::from)?;
        let memfd = File::from(fd);
        memfd.set_len(len as u64)?;
        let map = Mapping::new(&memfd, len, ProtFlags::READ | ProtFlags::WRITE)?;
        // After the writable mapping: it stays writable, and no other can be made.
        rustix::fs::fcntl_add_seals(&memfd, POOL_SEALS).map_err(io::Error::from)?;
        let (releases, writer) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(io::Error::from)?;
        Ok(Pool {
            inner: Arc::new(PoolInner {
                id: fresh_id(),
                slot_size,
                slots,
                memfd,
                map,
                releases,
                release_writer: Mutex::new(Some(writer)),
                state: Mutex::new(Slots {
                    lent: vec![None; slots as usize],
                    free: (0..slots).rev().collect(),
                    next_generation: 1,
                    partial: Vec::new(),
                    faults: 0,
                    last_fault: None,
                }),
                #[cfg(feature = "tokio")]
                readable: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The pool's id, which its buffers name.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Bytes in each slot.
    pub fn slot_size(&self) -> usize {
        self.inner.slot_size
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.inner.slots
    }

    /// What the slots are doing (releases that arrived are taken first).
    pub fn stats(&self) -> PoolStats {
        let mut st = self.inner.lock();
        if let Err(e) = self.inner.take_releases(&mut st) {
            tracing::debug!(error = %e, "fdrpc: reading a pool's releases failed");
        }
        PoolStats {
            lent: st.lent.iter().filter(|g| g.is_some()).count(),
            free: st.free.len(),
            faults: st.faults,
            last_fault: st.last_fault,
        }
    }

    /// The pool as a message value, to send to the one peer that reads it (a second call is
    /// an error: the release pipe has one writer, so releases are known to come from the
    /// peer the buffers were lent to).
    ///
    /// # Errors
    ///
    /// [`PoolError::Invalid`] if shared already; the error of duplicating the memfd.
    pub fn share(&self) -> Result<SharedPool, PoolError> {
        let writer = self
            .inner
            .release_writer
            .lock()
            .map_err(|_| invalid("poisoned"))?
            .take()
            .ok_or_else(|| invalid("a pool is shared with one peer, once"))?;
        Ok(SharedPool {
            id: self.inner.id,
            slot_size: self.inner.slot_size as u64,
            slots: self.inner.slots,
            memfd: self.inner.memfd.try_clone()?.into(),
            releases: writer,
        })
    }

    /// A free buffer, if one is free now (releases that arrived are taken first).
    ///
    /// # Errors
    ///
    /// The error of reading the release pipe.
    pub fn try_buffer(&self) -> Result<Option<PoolBufMut>, PoolError> {
        let mut st = self.inner.lock();
        self.inner.take_releases(&mut st)?;
        Ok(st.free.pop().map(|slot| PoolBufMut {
            pool: self.clone(),
            slot,
            lent: false,
        }))
    }

    /// A free buffer, waiting up to `timeout` for the receiver to give one back.
    ///
    /// # Errors
    ///
    /// [`PoolError::Exhausted`] if none came back in time; as [`Pool::try_buffer`].
    pub fn buffer_within(&self, timeout: Duration) -> Result<PoolBufMut, PoolError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(buf) = self.try_buffer()? {
                return Ok(buf);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PoolError::Exhausted(timeout));
            }
            let ts = rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [rustix::event::PollFd::new(
                &self.inner.releases,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    /// A free buffer, waiting for the receiver to give one back (wrap it in
    /// `tokio::time::timeout` to bound the wait). The pool's release pipe is registered with
    /// the tokio runtime of the first call; use the pool's async waits in that runtime.
    ///
    /// # Errors
    ///
    /// As [`Pool::try_buffer`]; [`PoolError::Invalid`] outside a tokio runtime (on the
    /// [`BlockingServer`](crate::BlockingServer), use [`Pool::buffer_within`]); the error of
    /// registering the release pipe with tokio.
    #[cfg(feature = "tokio")]
    pub async fn buffer(&self) -> Result<PoolBufMut, PoolError> {
        loop {
            if let Some(buf) = self.try_buffer()? {
                return Ok(buf);
            }
            if tokio::runtime::Handle::try_current().is_err() {
                // Registering would panic: no reactor to register with.
                return Err(invalid(
                    "Pool::buffer waits on tokio's reactor: call it inside a tokio runtime, or use buffer_within",
                ));
            }
            let readable = self.inner.readable.get_or_init(|| {
                let fd = self.inner.releases.try_clone()?;
                crate::rpc::driver::socket::register(fd, tokio::io::Interest::READABLE)
            });
            let readable = match readable {
                Ok(r) => r,
                Err(e) => return Err(io::Error::new(e.kind(), e.to_string()).into()),
            };
            let mut ready = readable.readable().await?;
            // Cleared before the pipe is read again: a release written after the read wakes
            // the next wait.
            ready.clear_ready();
        }
    }

    /// Takes back a buffer lent that the receiver never got (a call that failed before its
    /// frame was written). A buffer the receiver may hold must not be taken back: its view
    /// would see the next contents (still sound: its reads are copies).
    pub fn take_back(&self, buf: PoolBuffer) {
        let mut st = self.inner.lock();
        if buf.pool == self.inner.id
            && st.lent.get(buf.slot as usize) == Some(&Some(buf.generation))
        {
            if let Some(l) = st.lent.get_mut(buf.slot as usize) {
                *l = None;
            }
            st.free.push(buf.slot);
        }
    }

    /// The bytes of `slot`.
    fn slot_ptr(&self, slot: u32) -> *mut u8 {
        // In bounds: `slot < slots` and the mapping is `slots * slot_size` long.
        self.inner
            .map
            .ptr
            .as_ptr()
            .wrapping_add(slot as usize * self.inner.slot_size)
    }
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every release waiting in the pipe and frees the slots they validly name.
    fn take_releases(&self, st: &mut Slots) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let n = match rustix::io::read(&self.releases, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut bytes = std::mem::take(&mut st.partial);
            bytes.extend_from_slice(buf.get(..n).unwrap_or_default());
            let mut records = bytes.chunks_exact(RELEASE_LEN);
            for r in &mut records {
                let Some((slot, generation)) = r.split_first_chunk::<4>() else {
                    continue;
                };
                let slot = u32::from_le_bytes(*slot);
                let generation = u32::from_le_bytes(generation.try_into().unwrap_or_default());
                if let Err(fault) = release(st, slot, generation) {
                    tracing::debug!(?fault, pool = self.id, "fdrpc: pool release refused");
                    st.faults += 1;
                    st.last_fault = Some(fault);
                }
            }
            st.partial = records.remainder().to_vec();
        }
    }
}

/// Frees `slot` if it is lent under `generation`.
fn release(st: &mut Slots, slot: u32, generation: u32) -> Result<(), ReleaseFault> {
    let lent = st
        .lent
        .get_mut(slot as usize)
        .ok_or(ReleaseFault::NoSuchSlot(slot))?;
    match *lent {
        None => Err(ReleaseFault::NotLent(slot)),
        Some(g) if g != generation => Err(ReleaseFault::StaleGeneration {
            slot,
            released: generation,
            lent: g,
        }),
        Some(_) => {
            *lent = None;
            st.free.push(slot);
            Ok(())
        }
    }
}

/// A free slot of a [`Pool`], writable in place; [`PoolBufMut::lend`] it to send it, or drop
/// it to give it back unsent.
#[derive(Debug)]
pub struct PoolBufMut {
    pool: Pool,
    slot: u32,
    /// Lent: the slot is the receiver's until released, not free on drop.
    lent: bool,
}

impl Deref for PoolBufMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot lies inside the live mapping; this value is the only handle to
        // it (the allocator hands a free slot out once), and nobody else can write the
        // memfd (sealed `FUTURE_WRITE` after the pool's own mapping was made).
        unsafe {
            std::slice::from_raw_parts(self.pool.slot_ptr(self.slot), self.pool.inner.slot_size)
        }
    }
}

impl DerefMut for PoolBufMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the access exclusive in this process.
        unsafe {
            std::slice::from_raw_parts_mut(self.pool.slot_ptr(self.slot), self.pool.inner.slot_size)
        }
    }
}

impl PoolBufMut {
    /// Lends the first `len` bytes: returns the name to send. The slot comes back when the
    /// receiver drops its view (or through [`Pool::take_back`]).
    ///
    /// # Errors
    ///
    /// [`PoolError::OutOfRange`] if `len` exceeds the slot (the buffer is given back).
    pub fn lend(mut self, len: usize) -> Result<PoolBuffer, PoolError> {
        let inner = &self.pool.inner;
        let offset = self.slot as u64 * inner.slot_size as u64;
        if len > inner.slot_size {
            return Err(PoolError::OutOfRange {
                slot: self.slot,
                offset,
                len: len as u64,
            });
        }
        let mut st = inner.lock();
        let generation = st.next_generation;
        st.next_generation = st.next_generation.wrapping_add(1).max(1);
        if let Some(l) = st.lent.get_mut(self.slot as usize) {
            *l = Some(generation);
        }
        drop(st);
        let lent = PoolBuffer {
            pool: inner.id,
            slot: self.slot,
            generation,
            offset,
            len: len as u64,
        };
        self.lent = true;
        Ok(lent)
    }
}

impl Drop for PoolBufMut {
    fn drop(&mut self) {
        if !self.lent {
            self.pool.inner.lock().free.push(self.slot);
        }
    }
}

/// A pool as it travels: its id and shape, the memfd and the write end of its release pipe.
/// Received, [`SharedPool::map`] it once and [`PoolReader::open`] each buffer lent from it.
///
/// On the wire, the struct `FdrpcSharedPool { 1: i64 pool, 2: i64 slot_size, 3: i32 slots,
/// 4: fd memfd, 5: fd releases }` (`docs/PROTOCOL.md`).
#[derive(Debug)]
pub struct SharedPool {
    id: u64,
    slot_size: u64,
    slots: u32,
    memfd: OwnedFd,
    releases: OwnedFd,
}

impl SharedPool {
    /// The pool's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Maps the pool read-only, if it is at most [`DEFAULT_MAX_POOL_BYTES`].
    ///
    /// # Errors
    ///
    /// As [`SharedPool::map_within`].
    pub fn map(self) -> Result<PoolReader, PoolError> {
        self.map_within(DEFAULT_MAX_POOL_BYTES)
    }

    /// Maps the pool read-only, if it is at most `max_bytes`.
    ///
    /// # Errors
    ///
    /// [`PoolError::Invalid`] for a shape that is not a pool's (no slots, more than
    /// [`MAX_POOL_SLOTS`], slots not whole pages, larger than `max_bytes`, larger than the
    /// memfd); the error of `fstat` or `mmap`.
    pub fn map_within(self, max_bytes: u64) -> Result<PoolReader, PoolError> {
        let page = rustix::param::page_size() as u64;
        if self.slots == 0 || self.slots > MAX_POOL_SLOTS {
            return Err(invalid("a pool has 1 to 1024 slots"));
        }
        if self.slot_size == 0 || !self.slot_size.is_multiple_of(page) {
            return Err(invalid("a pool's slots are whole pages"));
        }
        let len = self
            .slot_size
            .checked_mul(u64::from(self.slots))
            .filter(|&l| l <= max_bytes)
            .ok_or_else(|| invalid("the pool is larger than this side maps"))?;
        let size = rustix::fs::fstat(&self.memfd)
            .map_err(io::Error::from)?
            .st_size;
        if u64::try_from(size).map_or(true, |s| s < len) {
            return Err(invalid(
                "the memfd is smaller than the pool it claims to be",
            ));
        }
        let len = usize::try_from(len).map_err(|_| invalid("the pool is too large"))?;
        let map = Mapping::new(&self.memfd, len, ProtFlags::READ)?;
        Ok(PoolReader {
            inner: Arc::new(ReaderInner {
                id: self.id,
                slot_size: self.slot_size as usize,
                slots: self.slots,
                map,
                releases: self.releases,
                open: Mutex::new(vec![false; self.slots as usize]),
            }),
        })
    }
}

#[derive(Debug)]
struct ReaderInner {
    id: u64,
    slot_size: usize,
    slots: u32,
    map: Mapping,
    releases: OwnedFd,
    /// Slots with a live view.
    open: Mutex<Vec<bool>>,
}

/// A received pool, mapped read-only: opens the buffers lent from it.
#[derive(Debug, Clone)]
pub struct PoolReader {
    inner: Arc<ReaderInner>,
}

impl PoolReader {
    /// The pool's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// A view of the buffer `buf` names, checked against the pool: its id, its slot, its
    /// offset (the slot's) and its length (within the slot). Dropping the view gives the
    /// buffer back to the sender.
    ///
    /// # Errors
    ///
    /// [`PoolError::WrongPool`], [`PoolError::OutOfRange`], or [`PoolError::AlreadyOpen`]
    /// for a slot another view holds. Nothing is released on error.
    pub fn open(&self, buf: PoolBuffer) -> Result<PoolView, PoolError> {
        let inner = &self.inner;
        if buf.pool != inner.id {
            return Err(PoolError::WrongPool {
                expected: inner.id,
                found: buf.pool,
            });
        }
        let out_of_range = || PoolError::OutOfRange {
            slot: buf.slot,
            offset: buf.offset,
            len: buf.len,
        };
        if buf.slot >= inner.slots
            || buf.offset != buf.slot as u64 * inner.slot_size as u64
            || buf.len > inner.slot_size as u64
        {
            return Err(out_of_range());
        }
        let mut open = inner.open.lock().unwrap_or_else(|p| p.into_inner());
        let slot = open.get_mut(buf.slot as usize).ok_or_else(out_of_range)?;
        if *slot {
            return Err(PoolError::AlreadyOpen(buf.slot));
        }
        *slot = true;
        Ok(PoolView {
            reader: self.inner.clone(),
            slot: buf.slot,
            generation: buf.generation,
            len: buf.len as usize,
        })
    }
}

/// A buffer lent from a pool, open for reading; given back to the sender on drop.
///
/// The safe reads copy out (see the module's safety model), so a sender that writes the
/// buffer meanwhile (which an fdrpc [`Pool`] never does) can make a copy inconsistent but
/// never unsound. Copying costs about 20 µs per MiB more than reading in place on this
/// project's test machine; [`PoolView::as_slice_unchecked`] reads in place for a trusted
/// sender.
#[derive(Debug)]
pub struct PoolView {
    reader: Arc<ReaderInner>,
    slot: u32,
    generation: u32,
    len: usize,
}

impl PoolView {
    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ptr(&self) -> *const u8 {
        // In bounds: `open` checked `slot < slots` and `len <= slot_size`.
        self.reader
            .map
            .ptr
            .as_ptr()
            .wrapping_add(self.slot as usize * self.reader.slot_size)
    }

    /// Copies the bytes from `offset` into `dst` (as many as fit); returns how many.
    pub fn copy_to(&self, offset: usize, dst: &mut [u8]) -> usize {
        let n = self.len.saturating_sub(offset).min(dst.len());
        // SAFETY: `offset..offset + n` lies inside the slot, inside the live read-only
        // mapping; the source is only read through atomic loads (see `atomic_copy`).
        unsafe {
            atomic_copy(
                self.ptr().wrapping_add(offset),
                dst.get_mut(..n).unwrap_or_default(),
            )
        };
        n
    }

    /// The bytes, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len];
        self.copy_to(0, &mut out);
        out
    }

    /// Calls `f` with the bytes in order, a chunk (at most 16 KiB) at a time, each copied into
    /// a buffer of this call: one pass over the shared memory, in cache-sized pieces.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) {
        let mut chunk = [0u8; 16 * 1024];
        let mut at = 0;
        while at < self.len {
            let n = self.copy_to(at, &mut chunk);
            f(chunk.get(..n).unwrap_or_default());
            at += n;
        }
    }

    /// The bytes in place, as a slice.
    ///
    /// # Safety
    ///
    /// Nothing may write the buffer while the slice lives: the sender must be trusted to
    /// keep its promise (an fdrpc [`Pool`] writes a slot only while it is not lent; a
    /// hostile sender can write it at any time, which would be a data race).
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        // SAFETY: in bounds of the live mapping; no writer, by the caller's promise.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

/// Copies `dst.len()` bytes from shared memory at `src` that another process may be writing.
///
/// A plain `memcpy` from memory that is written meanwhile would be a data race in Rust's
/// memory model. On x86-64 the copy is one `rep movsb` in inline assembly: the compiler
/// cannot see into it, so it cannot assume the source is stable (no race it could exploit
/// exists at the language level); the hardware copies at `memcpy` speed, and a concurrent
/// writer can only make the copy inconsistent. Elsewhere, atomic relaxed loads.
///
/// # Safety
///
/// `src..src + dst.len()` must be readable memory for the whole call.
#[cfg(target_arch = "x86_64")]
unsafe fn atomic_copy(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    // SAFETY: `rep movsb` reads `len` bytes at `src` (readable: the caller) and writes `len`
    // bytes at `dst` (ours, exclusively, for the call); the direction flag is clear on entry
    // to Rust code, as the ABI requires; rdi, rsi and rcx are declared clobbered.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rdi") dst.as_mut_ptr() => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// As the x86-64 version, with atomic relaxed loads: eight bytes at a time where `src` is
/// aligned, single bytes elsewhere.
///
/// # Safety
///
/// `src..src + dst.len()` must be readable memory for the whole call.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn atomic_copy(src: *const u8, dst: &mut [u8]) {
    let mut i = 0;
    let len = dst.len();
    while i < len && (src as usize + i) % 8 != 0 {
        // SAFETY: in bounds (caller); an `AtomicU8` has no alignment requirement.
        let b = unsafe { AtomicU8::from_ptr(src.add(i).cast_mut()) }.load(Ordering::Relaxed);
        if let Some(d) = dst.get_mut(i) {
            *d = b;
        }
        i += 1;
    }
    while i + 8 <= len {
        // SAFETY: in bounds (caller) and 8-aligned (the loop above).
        let w = unsafe { AtomicU64::from_ptr(src.add(i).cast::<u64>().cast_mut()) }
            .load(Ordering::Relaxed);
        if let Some(d) = dst.get_mut(i..i + 8) {
            d.copy_from_slice(&w.to_ne_bytes());
        }
        i += 8;
    }
    while i < len {
        // SAFETY: as in the first loop.
        let b = unsafe { AtomicU8::from_ptr(src.add(i).cast_mut()) }.load(Ordering::Relaxed);
        if let Some(d) = dst.get_mut(i) {
            *d = b;
        }
        i += 1;
    }
}

impl Drop for PoolView {
    fn drop(&mut self) {
        let [s0, s1, s2, s3] = self.slot.to_le_bytes();
        let [g0, g1, g2, g3] = self.generation.to_le_bytes();
        let record: [u8; RELEASE_LEN] = [s0, s1, s2, s3, g0, g1, g2, g3];
        // One write of 8 bytes to a pipe is atomic; the pipe holds every slot's release, so
        // it is never full with a well-behaved pair. A sender gone is not an error here.
        match rustix::io::write(&self.reader.releases, &record) {
            Ok(_) | Err(rustix::io::Errno::PIPE) => {}
            Err(e) => tracing::debug!(error = %e, slot = self.slot, "fdrpc: pool release lost"),
        }
        if let Ok(mut open) = self.reader.open.lock() {
            if let Some(o) = open.get_mut(self.slot as usize) {
                *o = false;
            }
        }
    }
}

/// The name of a buffer lent from a pool: what travels in a message instead of the bytes.
/// Received, [`PoolReader::open`] it.
///
/// On the wire, the struct `FdrpcPoolBuffer { 1: i64 pool, 2: i32 slot, 3: i32 generation,
/// 4: i64 offset, 5: i64 len }` (`docs/PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolBuffer {
    pool: u64,
    slot: u32,
    generation: u32,
    offset: u64,
    len: u64,
}

impl PoolBuffer {
    /// The id of the pool it is lent from.
    pub fn pool(&self) -> u64 {
        self.pool
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn i64_field(id: i16, v: u64, last: &mut i16, enc: &mut Encoder) {
    enc.write_field_header(TType::I64 as u8, id, last);
    enc.write_i64(v as i64);
}

fn i32_field(id: i16, v: u32, last: &mut i16, enc: &mut Encoder) {
    enc.write_field_header(TType::I32 as u8, id, last);
    enc.write_i32(v as i32);
}

fn missing(name: &'static str) -> DecodeError {
    DecodeError::from(crate::codec::error::DecodeErrorKind::MissingField).in_field(name)
}

fn field(id: i16, name: &str, ty: &str) -> IdlField {
    IdlField::new(id, name, ty.to_owned(), false)
}

impl Wire for PoolBuffer {
    const TTYPE: TType = TType::Struct;
    fn idl_type(idl: &mut Idl) -> String {
        if idl.begin("FdrpcPoolBuffer") {
            idl.define_struct(
                "FdrpcPoolBuffer",
                vec![
                    field(1, "pool", "i64"),
                    field(2, "slot", "i32"),
                    field(3, "generation", "i32"),
                    field(4, "offset", "i64"),
                    field(5, "len", "i64"),
                ],
            );
        }
        "FdrpcPoolBuffer".into()
    }
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        let mut last = 0;
        i64_field(1, self.pool, &mut last, enc);
        i32_field(2, self.slot, &mut last, enc);
        i32_field(3, self.generation, &mut last, enc);
        i64_field(4, self.offset, &mut last, enc);
        i64_field(5, self.len, &mut last, enc);
        enc.write_stop();
        Ok(())
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.enter()?;
        let (mut pool, mut slot, mut generation, mut offset, mut len) =
            (None, None, None, None, None);
        let mut last = 0;
        while let Some((ty, id)) = dec.read_field_header(&mut last)? {
            match id {
                1 => pool = Some(<i64 as Field>::decode_field(dec, ty)? as u64),
                2 => slot = Some(<i32 as Field>::decode_field(dec, ty)? as u32),
                3 => generation = Some(<i32 as Field>::decode_field(dec, ty)? as u32),
                4 => offset = Some(<i64 as Field>::decode_field(dec, ty)? as u64),
                5 => len = Some(<i64 as Field>::decode_field(dec, ty)? as u64),
                _ => dec.skip(ty)?,
            }
        }
        dec.leave();
        Ok(PoolBuffer {
            pool: pool.ok_or_else(|| missing("pool"))?,
            slot: slot.ok_or_else(|| missing("slot"))?,
            generation: generation.ok_or_else(|| missing("generation"))?,
            offset: offset.ok_or_else(|| missing("offset"))?,
            len: len.ok_or_else(|| missing("len"))?,
        })
    }
}

impl Wire for SharedPool {
    const TTYPE: TType = TType::Struct;
    const HAS_FDS: bool = true;
    fn idl_type(idl: &mut Idl) -> String {
        if idl.begin("FdrpcSharedPool") {
            let memfd = idl.fd_typedef(
                "pool_memfd",
                "fdrpc.fd = \"sealed_memfd\", fdrpc.seals = \"shrink\"",
            );
            let pipe = <super::checked::Fifo as Wire>::idl_type(idl);
            idl.define_struct(
                "FdrpcSharedPool",
                vec![
                    field(1, "pool", "i64"),
                    field(2, "slot_size", "i64"),
                    field(3, "slots", "i32"),
                    field(4, "memfd", &memfd),
                    field(5, "releases", &pipe),
                ],
            );
        }
        "FdrpcSharedPool".into()
    }
    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        let mut last = 0;
        i64_field(1, self.id, &mut last, enc);
        i64_field(2, self.slot_size, &mut last, enc);
        i32_field(3, self.slots, &mut last, enc);
        enc.write_field_header(TType::I32 as u8, 4, &mut last);
        enc.write_fd(self.memfd)?;
        enc.write_field_header(TType::I32 as u8, 5, &mut last);
        enc.write_fd(self.releases)?;
        enc.write_stop();
        Ok(())
    }
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        dec.enter()?;
        let (mut id, mut slot_size, mut slots, mut memfd, mut releases) =
            (None, None, None, None, None);
        let mut last = 0;
        while let Some((ty, field)) = dec.read_field_header(&mut last)? {
            match field {
                1 => id = Some(<i64 as Field>::decode_field(dec, ty)? as u64),
                2 => slot_size = Some(<i64 as Field>::decode_field(dec, ty)? as u64),
                3 => slots = Some(<i32 as Field>::decode_field(dec, ty)? as u32),
                4 => {
                    crate::codec::wire::expect_type::<i32>(ty)?;
                    let fd = dec.read_fd()?;
                    // Unshrinkable, so a mapping of it never faults with SIGBUS.
                    inspect::require(&fd, &Kind::Sealed(SealFlags::SHRINK))
                        .map_err(|e| e.in_field("memfd"))?;
                    memfd = Some(fd);
                }
                5 => {
                    crate::codec::wire::expect_type::<i32>(ty)?;
                    let fd = dec.read_fd()?;
                    inspect::require(
                        &fd,
                        &Kind::PipeEnd {
                            access: OFlags::WRONLY,
                        },
                    )
                    .map_err(|e| e.in_field("releases"))?;
                    releases = Some(fd);
                }
                _ => dec.skip(ty)?,
            }
        }
        dec.leave();
        let releases: OwnedFd = releases.ok_or_else(|| missing("releases"))?;
        // A receiver never waits on a full pipe: a release that does not fit is dropped.
        let flags = rustix::fs::fcntl_getfl(&releases)
            .map_err(io::Error::from)
            .map_err(|e| e_decode(&e))?;
        rustix::fs::fcntl_setfl(&releases, flags | OFlags::NONBLOCK)
            .map_err(io::Error::from)
            .map_err(|e| e_decode(&e))?;
        Ok(SharedPool {
            id: id.ok_or_else(|| missing("pool"))?,
            slot_size: slot_size.ok_or_else(|| missing("slot_size"))?,
            slots: slots.ok_or_else(|| missing("slots"))?,
            memfd: memfd.ok_or_else(|| missing("memfd"))?,
            releases,
        })
    }
}

fn e_decode(e: &io::Error) -> DecodeError {
    crate::codec::error::DecodeErrorKind::FdKindMismatch {
        expected: "a pipe's write end".into(),
        found: e.to_string(),
    }
    .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use rustix::mm::MapFlags;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn lend(pool: &Pool, fill: u8, len: usize) -> PoolBuffer {
        let mut buf = pool.buffer_within(MS).unwrap();
        buf[..len].fill(fill);
        buf.lend(len).unwrap()
    }

    /// The lines of `/proc/self/maps` that map the memfd named `name`.
    fn mappings_of(name: &str) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let needle = format!("/memfd:{name} ");
        maps.lines().filter(|l| l.contains(&needle)).count()
    }

    #[test]
    fn a_pool_and_its_readers_unmap_everything_when_dropped() {
        let name = format!("unmap-check-{}", std::process::id());
        let pool = Pool::new(&name, 4096, 2).unwrap();
        let reader = pool.share().unwrap().map().unwrap();
        let view = reader.open(lend(&pool, 7, 100)).unwrap();
        assert!(mappings_of(&name) >= 2, "the sender's and the reader's");
        drop((view, reader, pool));
        assert_eq!(mappings_of(&name), 0);
    }

    /// A release record written by hand, as a hostile receiver would.
    fn release_raw(shared_releases: &OwnedFd, bytes: &[u8]) {
        assert_eq!(
            rustix::io::write(shared_releases, bytes).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn a_buffer_is_lent_read_and_given_back_and_its_slot_reused() {
        let pool = Pool::new("t", 100, 2).unwrap();
        assert_eq!(pool.slot_size(), rustix::param::page_size());
        assert_eq!(pool.slots(), 2);
        let other = Pool::new("t", 100, 3).unwrap();
        assert_eq!(other.slots(), 3);
        assert_ne!(pool.id(), other.id());
        let shared = other.share().unwrap();
        assert_eq!(shared.id(), other.id());
        drop((other, shared));
        let reader = pool.share().unwrap().map().unwrap();
        let mut slots = std::collections::HashSet::new();
        for round in 0..10u8 {
            let lent = lend(&pool, round, 3000);
            assert_eq!((lent.len(), lent.is_empty()), (3000, false));
            slots.insert(lent.slot);
            let view = reader.open(lent).unwrap();
            assert_eq!((view.len(), view.is_empty()), (3000, false));
            assert!(view.to_vec().iter().all(|&b| b == round));
            assert_eq!(pool.stats().lent, 1);
            drop(view);
            assert_eq!(
                pool.stats(),
                PoolStats {
                    lent: 0,
                    free: 2,
                    faults: 0,
                    last_fault: None
                }
            );
        }
        assert!(slots.len() <= 2, "{slots:?}");
        let empty = lend(&pool, 0, 0);
        assert_eq!(
            (empty.pool(), empty.len(), empty.is_empty()),
            (pool.id(), 0, true)
        );
        let view = reader.open(empty).unwrap();
        assert_eq!((view.len(), view.is_empty()), (0, true));
    }

    #[test]
    fn a_receiver_that_keeps_every_buffer_makes_the_sender_wait_then_fail() {
        let pool = Pool::new("t", 4096, 2).unwrap();
        let reader = pool.share().unwrap().map().unwrap();
        let a = reader.open(lend(&pool, 1, 10)).unwrap();
        let _b = reader.open(lend(&pool, 2, 10)).unwrap();
        assert!(pool.try_buffer().unwrap().is_none());
        let start = Instant::now();
        assert!(matches!(
            pool.buffer_within(20 * MS),
            Err(PoolError::Exhausted(_))
        ));
        assert!(start.elapsed() >= 20 * MS);
        // One comes back: the wait ends at once.
        let waiter = std::thread::spawn({
            let pool = pool.clone();
            move || pool.buffer_within(Duration::from_secs(30)).map(|b| b.slot)
        });
        drop(a);
        assert!(waiter.join().unwrap().is_ok());
    }

    #[test]
    fn a_buffer_not_lent_goes_back_when_dropped() {
        let pool = Pool::new("t", 4096, 1).unwrap();
        drop(pool.try_buffer().unwrap().unwrap());
        assert!(pool.try_buffer().unwrap().is_some());
        assert!(matches!(
            pool.try_buffer().unwrap().unwrap().lend(4097),
            Err(PoolError::OutOfRange { .. })
        ));
        assert_eq!(pool.stats().free, 1, "a lend refused gives the buffer back");
        let lent = lend(&pool, 0, 1);
        pool.take_back(lent);
        assert_eq!(pool.stats().free, 1);
        // Only a buffer this pool lent, under the generation it is lent under, comes back: not
        // another pool's (same slot, same generation), not one already given back.
        let other = Pool::new("t", 4096, 1).unwrap();
        other.take_back(lend(&other, 0, 1));
        let theirs = lend(&other, 0, 1);
        let mine = lend(&pool, 0, 1);
        assert_eq!(
            (theirs.slot, theirs.generation),
            (mine.slot, mine.generation)
        );
        pool.take_back(theirs);
        assert_eq!((pool.stats().lent, pool.stats().free), (1, 0));
        pool.take_back(mine);
        assert_eq!((pool.stats().lent, pool.stats().free), (0, 1));
        pool.take_back(mine);
        assert_eq!((pool.stats().lent, pool.stats().free), (0, 1));
        other.take_back(theirs);
        assert_eq!(other.stats().free, 1);
    }

    #[test]
    fn releases_twice_unknown_stale_or_torn_are_refused_and_change_nothing() {
        let pool = Pool::new("t", 4096, 2).unwrap();
        let shared = pool.share().unwrap();
        let rel = shared.releases.try_clone().unwrap();
        let first = lend(&pool, 1, 1);
        let record = |slot: u32, generation: u32| {
            let mut r = slot.to_le_bytes().to_vec();
            r.extend_from_slice(&generation.to_le_bytes());
            r
        };
        release_raw(&rel, &record(first.slot, first.generation));
        release_raw(&rel, &record(first.slot, first.generation));
        let st = pool.stats();
        assert_eq!((st.lent, st.free, st.faults), (0, 2, 1));
        assert_eq!(st.last_fault, Some(ReleaseFault::NotLent(first.slot)));
        release_raw(&rel, &record(7, 1));
        assert_eq!(pool.stats().last_fault, Some(ReleaseFault::NoSuchSlot(7)));
        // The slot lent again under a new generation: a late release of the old one is stale.
        let again = lend(&pool, 2, 1);
        let other = lend(&pool, 3, 1);
        let (old_slot, old_gen) = if again.slot == first.slot {
            (again.slot, first.generation)
        } else {
            (other.slot, first.generation)
        };
        release_raw(&rel, &record(old_slot, old_gen));
        assert!(matches!(
            pool.stats().last_fault,
            Some(ReleaseFault::StaleGeneration { released, .. }) if released == old_gen
        ));
        assert_eq!(pool.stats().lent, 2, "a stale release frees nothing");
        // A record split across writes still counts once whole; bytes of garbage only
        // confuse the releases of the peer that wrote them.
        let r = record(again.slot, again.generation);
        release_raw(&rel, &r[..3]);
        assert_eq!(pool.stats().lent, 2);
        release_raw(&rel, &r[3..]);
        assert_eq!(pool.stats().lent, 1);
        assert_eq!(pool.stats().faults, 3);
    }

    #[test]
    fn nobody_can_shrink_grow_or_write_the_pool_but_its_owner() {
        let pool = Pool::new("t", 4096, 1).unwrap();
        let shared = pool.share().unwrap();
        let mut buf = pool.try_buffer().unwrap().unwrap();
        buf[..4].copy_from_slice(b"mine");
        let fd = &shared.memfd;
        assert!(rustix::fs::ftruncate(fd, 0).is_err(), "shrunk");
        assert!(rustix::fs::ftruncate(fd, 1 << 20).is_err(), "grown");
        assert!(rustix::io::pwrite(fd, b"evil", 0).is_err(), "written");
        let writable = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                4096,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        };
        assert!(writable.is_err(), "mapped writable");
        assert!(
            rustix::fs::fallocate(
                fd,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                0,
                4096
            )
            .is_err(),
            "a hole punched"
        );
        assert!(
            rustix::fs::fcntl_add_seals(fd, SealFlags::WRITE).is_err(),
            "sealed again"
        );
        assert_eq!(&buf[..4], b"mine");
    }

    #[test]
    fn a_reader_checks_every_buffer_against_the_pool() {
        let pool = Pool::new("t", 4096, 2).unwrap();
        let reader = pool.share().unwrap().map().unwrap();
        let lent = lend(&pool, 1, 10);
        let bad = |f: &dyn Fn(&mut PoolBuffer)| {
            let mut b = lent;
            f(&mut b);
            reader.open(b).unwrap_err()
        };
        assert!(matches!(bad(&|b| b.pool ^= 1), PoolError::WrongPool { .. }));
        // A slot past the end, with the offset it would have: refused before any address
        // is made of it.
        assert!(matches!(
            bad(&|b| {
                b.slot = 2;
                b.offset = 2 * 4096;
            }),
            PoolError::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(&|b| b.slot = u32::MAX),
            PoolError::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(&|b| b.offset += 1),
            PoolError::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(&|b| b.len = 4097),
            PoolError::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(&|b| b.len = u64::MAX),
            PoolError::OutOfRange { .. }
        ));
        let view = reader.open(lent).unwrap();
        assert!(matches!(reader.open(lent), Err(PoolError::AlreadyOpen(_))));
        drop(view);
        // Nothing was released by the refusals: only the one view.
        let st = pool.stats();
        assert_eq!((st.lent, st.faults), (0, 0));
    }

    #[test]
    fn a_pool_is_mapped_only_as_large_as_allowed_and_as_its_memfd() {
        let pool = Pool::new("t", 4096, 4).unwrap();
        let shared = pool.share().unwrap();
        let (memfd, releases) = (
            shared.memfd.try_clone().unwrap(),
            shared.releases.try_clone().unwrap(),
        );
        assert!(matches!(
            shared.map_within(4096 * 3),
            Err(PoolError::Invalid(_))
        ));
        let shape = |slot_size: u64, slots: u32| SharedPool {
            id: 7,
            slot_size,
            slots,
            memfd: memfd.try_clone().unwrap(),
            releases: releases.try_clone().unwrap(),
        };
        // Larger than its memfd.
        assert!(matches!(shape(4096, 8).map(), Err(PoolError::Invalid(_))));
        // Not a pool's shape: no slots, more than the most, slots of no or part pages.
        let page = rustix::param::page_size() as u64;
        for (slot_size, slots) in [
            (page, 0),
            (page, MAX_POOL_SLOTS + 1),
            (0, 1),
            (page + 1, 1),
            (page / 2, 2),
        ] {
            let got = shape(slot_size, slots).map_within(u64::MAX);
            // Refused for its shape, before the memfd's size is looked at.
            assert!(
                matches!(got, Err(PoolError::Invalid(e)) if !e.contains("smaller")),
                "{slot_size} x {slots}"
            );
        }
        // At the bounds: as many slots as allowed (the shape passes; the memfd is too small),
        // and exactly as large as the limit.
        assert!(matches!(
            shape(page, MAX_POOL_SLOTS).map_within(u64::MAX),
            Err(PoolError::Invalid(e)) if e.contains("smaller")
        ));
        let exact = shape(4096, 4).map_within(4096 * 4).unwrap();
        assert_eq!((exact.id(), exact.inner.slots), (7, 4));
        drop((exact, memfd, releases));
        assert!(pool.share().is_err(), "shared once");
    }

    #[test]
    fn copies_out_are_exact_at_every_alignment() {
        let pool = Pool::new("t", 8192, 1).unwrap();
        let reader = pool.share().unwrap().map().unwrap();
        let mut buf = pool.try_buffer().unwrap().unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 7 + i / 251) as u8;
        }
        let expected = buf[..8000].to_vec();
        let view = reader.open(buf.lend(8000).unwrap()).unwrap();
        for offset in [0, 1, 3, 7, 8, 9, 4095, 7990, 8000, 9000] {
            let mut dst = vec![0u8; 37];
            let n = view.copy_to(offset, &mut dst);
            let want = expected
                .get(offset..)
                .map_or(&[][..], |r| &r[..r.len().min(37)]);
            assert_eq!(&dst[..n], want, "at {offset}");
        }
        let mut joined = Vec::new();
        let mut chunks = 0;
        view.for_each_chunk(|c| {
            joined.extend_from_slice(c);
            chunks += 1;
        });
        assert!(joined == expected);
        assert_eq!(chunks, 1, "8000 bytes fit one 16 KiB chunk");
        assert!(view.to_vec() == expected);
        // SAFETY: this test's own pool, written before it was lent and not since.
        assert!(unsafe { view.as_slice_unchecked() } == &expected[..]);
    }

    #[test]
    fn a_shared_pool_travels_and_is_checked_on_arrival() {
        let pool = Pool::new("t", 4096, 2).unwrap();
        let (bytes, fds) = crate::encode(pool.share().unwrap()).unwrap();
        let shared: SharedPool = crate::decode(&bytes, fds).unwrap();
        let nonblocking = |fd: &OwnedFd| {
            rustix::fs::fcntl_getfl(fd)
                .unwrap()
                .contains(OFlags::NONBLOCK)
        };
        assert!(nonblocking(&shared.releases), "still non-blocking");
        // A release pipe another implementation left blocking is made non-blocking on arrival.
        let (r, w) = rustix::pipe::pipe().unwrap();
        assert!(!nonblocking(&w));
        let theirs = SharedPool {
            id: shared.id,
            slot_size: shared.slot_size,
            slots: shared.slots,
            memfd: shared.memfd.try_clone().unwrap(),
            releases: w,
        };
        let (bytes, fds) = crate::encode(theirs).unwrap();
        let theirs: SharedPool = crate::decode(&bytes, fds).unwrap();
        assert!(nonblocking(&theirs.releases));
        drop((theirs, r));
        let reader = shared.map().unwrap();
        let lent = lend(&pool, 9, 5);
        let (bytes, fds) = crate::encode(lent).unwrap();
        let back: PoolBuffer = crate::decode(&bytes, fds).unwrap();
        assert_eq!(back, lent);
        assert_eq!(reader.open(back).unwrap().to_vec(), [9; 5]);

        // A memfd that can shrink, or a pipe's read end for releases, is refused.
        let unsealed: OwnedFd =
            rustix::fs::memfd_create("u", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let fake = |memfd: OwnedFd, releases: OwnedFd| SharedPool {
            id: 1,
            slot_size: 4096,
            slots: 1,
            memfd,
            releases,
        };
        let (bytes, fds) = crate::encode(fake(unsealed, w.try_clone().unwrap())).unwrap();
        let e = crate::decode::<SharedPool>(&bytes, fds).unwrap_err();
        assert!(e.to_string().contains("memfd"), "{e}");
        let sealed = pool.inner.memfd.try_clone().unwrap().into();
        let (bytes, fds) = crate::encode(fake(sealed, r)).unwrap();
        let e = crate::decode::<SharedPool>(&bytes, fds).unwrap_err();
        assert!(e.to_string().contains("releases"), "{e}");
        drop(w);
    }
}
