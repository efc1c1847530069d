//! Shared memory without `unsafe` for the user: a read-only mapping of a sealed memfd
//! ([`MemfdMap`]), and a memfd written in place through a writable mapping, then sealed
//! ([`MemfdWriter`]), so a large payload is written once and never copied by fdrpc.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::AsFd;
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::checked::{SealedMemfd, seals};

/// A read-only mapping of a [`SealedMemfd`]'s contents, from [`SealedMemfd::map`]: a `&[u8]`
/// backed by the memfd's pages, shared with every process that maps it, copied by nobody.
/// Unmapped on drop.
#[derive(Debug)]
pub struct MemfdMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapped bytes cannot change (see `SealedMemfd::map`), so they may be read from
// any thread, and the mapping is unmapped exactly once, by whichever thread drops it.
unsafe impl Send for MemfdMap {}
// SAFETY: as above; `&MemfdMap` only hands out `&[u8]`.
unsafe impl Sync for MemfdMap {}

impl Deref for MemfdMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes (or dangling with `len` 0),
        // whose contents the seals keep from changing.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for MemfdMap {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for MemfdMap {
    fn drop(&mut self) {
        unmap(self.ptr, self.len);
    }
}

/// Unmaps `len` bytes at `ptr` (nothing for an empty mapping).
pub(super) fn unmap(ptr: NonNull<u8>, len: usize) {
    if len > 0 {
        // SAFETY: `ptr` and `len` are exactly what `mmap` returned and was asked for, and
        // this is the only place that unmaps them.
        let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast::<c_void>(), len) };
    }
}

/// Maps `len` bytes of `fd` shared, with `prot`; a dangling pointer for `len` 0 (mmap refuses
/// an empty mapping).
pub(super) fn map(fd: impl AsFd, len: usize, prot: ProtFlags) -> io::Result<NonNull<u8>> {
    if len == 0 {
        return Ok(NonNull::dangling());
    }
    // POPULATE: the pages are mapped (and, for a new memfd, allocated) in one go, not one
    // fault per 4 KiB page as they are first touched; a 1 MiB frame is 256 faults otherwise.
    let flags = MapFlags::SHARED | MapFlags::POPULATE;
    // SAFETY: a fresh mapping at an address the kernel chooses, aliasing no Rust object.
    let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) }?;
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl<const SEALS: u32> SealedMemfd<SEALS> {
    /// Maps the contents read-only, for reading in place: no copy, no `unsafe`.
    ///
    /// The memfd must carry `F_SEAL_SHRINK` and `F_SEAL_WRITE` (checked now, whatever `SEALS`
    /// says), which is what makes this sound: with `SHRINK` sealed the file cannot become
    /// shorter than the mapping, so reading it never faults (`SIGBUS`); with `WRITE` sealed
    /// nobody can change the bytes, by `write` or through a mapping (sealing `WRITE` fails
    /// while a writable shared mapping exists, and none can be made after), so a `&[u8]` of
    /// them is as immutable as Rust requires. `F_SEAL_FUTURE_WRITE` alone would not do: a
    /// writable mapping made before it was sealed still writes.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` without those seals; the errors of `fstat` and `mmap`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fdrpc::SealedMemfd;
    ///
    /// let frame = SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::with_contents("frame", b"pixels")?;
    /// let map = frame.map()?;
    /// assert_eq!(&map[..], b"pixels");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn map(&self) -> io::Result<MemfdMap> {
        let present = rustix::fs::fcntl_get_seals(self.as_fd())?;
        let needed = SealFlags::SHRINK | SealFlags::WRITE;
        if !present.contains(needed) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a memfd is mapped only if sealed against shrinking and writing (F_SEAL_SHRINK, F_SEAL_WRITE)",
            ));
        }
        let len = usize::try_from(self.len()?).map_err(|_| io::ErrorKind::OutOfMemory)?;
        let ptr = map(self.as_fd(), len, ProtFlags::READ)?;
        Ok(MemfdMap { ptr, len })
    }

    /// A memfd of `len` bytes to fill in place, then seal: see [`MemfdWriter`].
    ///
    /// # Errors
    ///
    /// As [`MemfdWriter::new`].
    pub fn writer(name: &str, len: usize) -> io::Result<MemfdWriter> {
        MemfdWriter::new(name, len)
    }
}

/// A new memfd mapped writable, to fill in place (it dereferences to `&mut [u8]`), then seal
/// into a [`SealedMemfd`]: a large payload is written once, where it will be read, and never
/// copied by fdrpc (unlike [`SealedMemfd::with_contents`], which copies its argument in).
///
/// # Examples
///
/// ```
/// use fdrpc::SealedMemfd;
///
/// let mut frame = SealedMemfd::<{ fdrpc::seals::IMMUTABLE }>::writer("frame", 1 << 20)?;
/// frame.fill(0xab);
/// frame[..5].copy_from_slice(b"hello");
/// let sealed = frame.seal()?;
/// assert_eq!(&sealed.map()?[..5], b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct MemfdWriter {
    file: File,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the writable mapping is owned by this value alone; nothing else refers to it.
unsafe impl Send for MemfdWriter {}

impl MemfdWriter {
    /// Creates a memfd named `name` of `len` zero bytes, sealable, and maps it writable.
    ///
    /// # Errors
    ///
    /// The errors of `memfd_create`, `ftruncate` and `mmap`.
    pub fn new(name: &str, len: usize) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let ptr = map(&fd, len, ProtFlags::READ | ProtFlags::WRITE)?;
        Ok(MemfdWriter {
            file: File::from(fd),
            ptr,
            len,
        })
    }

    /// Unmaps the writable mapping and seals the memfd with [`seals::IMMUTABLE`]: from now on
    /// nobody, this process included, can change or resize it.
    ///
    /// # Errors
    ///
    /// The error of `F_ADD_SEALS`.
    pub fn seal(self) -> io::Result<SealedMemfd> {
        self.seal_with::<{ seals::IMMUTABLE }>()
    }

    /// As [`MemfdWriter::seal`], with the seals `S`.
    ///
    /// # Errors
    ///
    /// The error of `F_ADD_SEALS`.
    pub fn seal_with<const S: u32>(self) -> io::Result<SealedMemfd<S>> {
        let this = std::mem::ManuallyDrop::new(self);
        // `F_SEAL_WRITE` fails while a writable shared mapping exists: unmap it first.
        unmap(this.ptr, this.len);
        // SAFETY: `this` is never used or dropped again; the file is moved out once.
        let file = unsafe { std::ptr::read(&this.file) };
        rustix::fs::fcntl_add_seals(&file, SealFlags::from_bits_retain(S))?;
        SealedMemfd::new(file)
    }
}

impl Deref for MemfdWriter {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: a live mapping of `len` bytes that only this value can write.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for MemfdWriter {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MemfdWriter {
    fn drop(&mut self) {
        unmap(self.ptr, self.len);
    }
}
