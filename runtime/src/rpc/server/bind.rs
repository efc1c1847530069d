//! Binding a socket file so that its permission bits hold from the first instant a client
//! can connect, and nothing is changed through a path someone else could replace.
//!
//! The socket is bound inside a fresh directory of its own beside the path (mode 0700: no one
//! else can reach it), given its mode there (through the directory's fd), and then renamed
//! onto the path. `rename` puts it in place at once, with its mode; it replaces a stale socket
//! file without a separate unlink, and it follows no symbolic link at its destination. A
//! symbolic link, or any file that is not a socket, at the path is refused, never followed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};

/// Longest path `sun_path` holds, with its NUL.
const SUN_PATH_MAX: usize = 107;

/// Binds the file `path` and listens, with the socket's permission bits set to `mode` (if
/// given) before any client can connect.
///
/// # Errors
///
/// `AddrInUse` if a server listens on `path`; `AlreadyExists` if `path` is a symbolic link or
/// a file that is not a socket; or the error of making the directory, binding, `chmod` or
/// `rename`.
pub(crate) fn bind_file(path: &Path, mode: Option<u32>) -> io::Result<UnixListener> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the socket path names no file")
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_target(path)?;
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    )?;
    let (private, private_fd) = private_dir(&parent_fd)?;
    let bound = bind_in(parent, &parent_fd, &private, &private_fd, name, path, mode);
    // The directory goes in every case: the socket was renamed out of it, or is removed.
    let _ = rustix::fs::unlinkat(&private_fd, "s", AtFlags::empty());
    let _ = rustix::fs::unlinkat(&parent_fd, private.as_os_str(), AtFlags::REMOVEDIR);
    bound
}

fn bind_in(
    parent: &Path,
    parent_fd: &OwnedFd,
    private: &Path,
    private_fd: &OwnedFd,
    name: &std::ffi::OsStr,
    path: &Path,
    mode: Option<u32>,
) -> io::Result<UnixListener> {
    // The socket's own path inside the directory if it fits in `sun_path`, else the same
    // directory reached through its fd (`/proc/self/fd/N`), which always fits.
    let direct = parent.join(private).join("s");
    let at = if direct.as_os_str().as_bytes().len() <= SUN_PATH_MAX {
        direct
    } else {
        PathBuf::from(format!("/proc/self/fd/{}/s", private_fd.as_raw_fd()))
    };
    let listener = UnixListener::bind(&at)?;
    if let Some(mode) = mode {
        rustix::fs::chmodat(private_fd, "s", Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    // Looked at again just before the rename: a server that started on the path meanwhile
    // keeps it.
    check_target(path)?;
    rustix::fs::renameat(private_fd, "s", parent_fd, name)?;
    Ok(listener)
}

/// Makes a directory only this user can enter, beside the path: its name and an fd of it.
fn private_dir(parent: &OwnedFd) -> io::Result<(PathBuf, OwnedFd)> {
    static N: AtomicU64 = AtomicU64::new(0);
    loop {
        let name = PathBuf::from(format!(
            ".fdrpc-bind-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match rustix::fs::mkdirat(parent, name.as_os_str(), Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::openat(
            parent.as_fd(),
            name.as_os_str(),
            OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        return Ok((name, fd));
    }
}

/// What is at `path` may be replaced: nothing, or a socket file nobody listens on.
fn check_target(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} {what}; not replacing it", path.display()),
        )
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link"));
    }
    if !meta.file_type().is_socket() {
        return Err(refuse("exists and is not a socket"));
    }
    let in_use = |why: &str| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: {why}", path.display()),
        )
    };
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(in_use("a server is listening on it")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "fdrpc: replacing a stale socket file");
            Ok(())
        }
        Err(e) => Err(in_use(&format!("could not tell whether it is in use: {e}"))),
    }
}
