//! File descriptors on the command line: the ones `--push-fd` gives the call (inherited, or
//! opened from a path), how a returned one is described in the JSON output, and what
//! `--save-fd` and `--exec` do with them.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use rustix::fs::{FileType, OFlags, SealFlags};
use serde_json::{Value, json};

/// The fds a call may send: `--push-fd` ones by index, and paths opened on demand.
#[derive(Debug, Default)]
pub struct FdSource {
    pushed: Vec<OwnedFd>,
}

impl FdSource {
    /// Adds a `--push-fd` argument: the number of an fd this process inherited (`3` for the
    /// shell's `3<file`), or a path to open read-only.
    ///
    /// # Errors
    ///
    /// An fd that is not open, or a path that cannot be opened.
    pub fn push(&mut self, arg: &str) -> Result<(), String> {
        let fd = match arg.parse::<RawFd>() {
            Ok(n) => inherited(n).map_err(|e| format!("--push-fd {arg}: fd {n}: {e}"))?,
            Err(_) => open(Path::new(arg)).map_err(|e| format!("--push-fd {arg}: {e}"))?,
        };
        self.pushed.push(fd);
        Ok(())
    }

    /// The fd a JSON value names: an integer, the index of a `--push-fd` (its own copy, so an
    /// fd may be sent twice), or `{"path": "..."}`, opened read-only.
    ///
    /// # Errors
    ///
    /// An index with no `--push-fd`, a path that cannot be opened, or another value.
    pub fn fd(&self, json: &Value) -> Result<OwnedFd, String> {
        match json {
            Value::Number(n) => {
                let i = n.as_u64().ok_or("an fd index is 0 or more")?;
                let pushed = usize::try_from(i)
                    .ok()
                    .and_then(|i| self.pushed.get(i))
                    .ok_or_else(|| {
                        format!("fd index {i}, but {} --push-fd given", self.pushed.len())
                    })?;
                pushed
                    .try_clone()
                    .map_err(|e| format!("duplicating --push-fd {i}: {e}"))
            }
            Value::Object(o) => match o.get("path").and_then(Value::as_str) {
                Some(path) if o.len() == 1 => {
                    open(Path::new(path)).map_err(|e| format!("{path}: {e}"))
                }
                _ => Err(format!("expected {{\"path\": \"...\"}}, got {json}")),
            },
            other => Err(format!(
                "expected an fd: the index of a --push-fd (0 for the first), or {{\"path\": ...}}; got {other}"
            )),
        }
    }
}

/// A copy (close-on-exec) of fd `n`, which this process inherited.
pub fn inherited(n: RawFd) -> io::Result<OwnedFd> {
    // `fcntl` on a raw number: an fd that is not open is EBADF, with no `BorrowedFd` made
    // for it.
    // SAFETY: F_DUPFD_CLOEXEC reads no memory; it only duplicates `n` if it is open.
    let copy = unsafe { libc::fcntl(n, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// `path` opened read-only (a directory too).
fn open(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// What a returned fd is, as JSON: its kind (`file`, `memfd`, `directory`, `pipe`,
/// `socket`, ...), its `/proc` path, its size (files), seals (memfds) and open flags.
pub fn describe(fd: &OwnedFd) -> Value {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stat = rustix::fs::fstat(fd).ok();
    let file_type = stat.as_ref().map(|st| FileType::from_raw_mode(st.st_mode));
    let kind = match file_type {
        Some(FileType::RegularFile) if path.starts_with("/memfd:") => "memfd",
        Some(FileType::RegularFile) => "file",
        Some(FileType::Directory) => "directory",
        Some(FileType::Fifo) => "pipe",
        Some(FileType::Socket) => "socket",
        Some(FileType::CharacterDevice) => "character_device",
        Some(FileType::BlockDevice) => "block_device",
        Some(FileType::Symlink) => "symlink",
        _ => "other",
    };
    let mut out = json!({"kind": kind, "path": path});
    if let (Some(st), Some(FileType::RegularFile)) = (&stat, file_type) {
        out["size"] = json!(st.st_size);
    }
    if kind == "memfd" {
        if let Ok(seals) = rustix::fs::fcntl_get_seals(fd) {
            out["seals"] = json!(seal_names(seals));
        }
    }
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        out["flags"] = json!(flag_names(flags));
    }
    out
}

fn seal_names(seals: SealFlags) -> Vec<&'static str> {
    [
        (SealFlags::SEAL, "seal"),
        (SealFlags::SHRINK, "shrink"),
        (SealFlags::GROW, "grow"),
        (SealFlags::WRITE, "write"),
        (SealFlags::FUTURE_WRITE, "future_write"),
    ]
    .into_iter()
    .filter(|(f, _)| seals.contains(*f))
    .map(|(_, n)| n)
    .collect()
}

fn flag_names(flags: OFlags) -> Vec<&'static str> {
    let access = match flags & OFlags::RWMODE {
        f if f == OFlags::WRONLY => "write_only",
        f if f == OFlags::RDWR => "read_write",
        _ => "read_only",
    };
    let mut names = vec![access];
    for (f, n) in [
        (OFlags::APPEND, "append"),
        (OFlags::NONBLOCK, "nonblock"),
        (OFlags::PATH, "path"),
    ] {
        if flags.contains(f) {
            names.push(n);
        }
    }
    names
}

/// Copies what `fd` holds to `path` (a file or memfd from its start, without moving the
/// fd's own offset; a pipe or socket until its end).
///
/// # Errors
///
/// The errors of reading `fd` and of writing `path`.
pub fn save(fd: &OwnedFd, path: &Path) -> io::Result<u64> {
    let mut out = File::create(path)?;
    let regular = rustix::fs::fstat(fd)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
    if regular {
        let mut buf = vec![0u8; 64 << 10];
        let mut offset = 0u64;
        loop {
            let n = rustix::io::pread(fd, &mut buf, offset)?;
            if n == 0 {
                return Ok(offset);
            }
            io::Write::write_all(&mut out, &buf[..n])?;
            offset += n as u64;
        }
    }
    let mut input = File::from(fd.try_clone()?);
    io::copy(&mut input, &mut out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn open_with(path: &str, flags: OFlags) -> OwnedFd {
        rustix::fs::open(path, flags | OFlags::CLOEXEC, rustix::fs::Mode::empty()).unwrap()
    }

    /// Every kind of fd is described by its kind and flags, a memfd with its seals.
    #[test]
    fn a_returned_fd_is_described_by_kind_flags_and_seals() {
        let kind = |fd: &OwnedFd| describe(fd)["kind"].clone();
        let flags = |fd: &OwnedFd| describe(fd)["flags"].clone();
        assert_eq!(kind(&open_with("/", OFlags::RDONLY)), "directory");
        let null = open_with("/dev/null", OFlags::WRONLY | OFlags::APPEND);
        assert_eq!(kind(&null), "character_device");
        assert_eq!(flags(&null), json!(["write_only", "append"]));
        let rw = open_with("/dev/null", OFlags::RDWR | OFlags::NONBLOCK);
        assert_eq!(flags(&rw), json!(["read_write", "nonblock"]));
        let (r, w) = rustix::pipe::pipe().unwrap();
        assert_eq!((kind(&r), flags(&r)), ("pipe".into(), json!(["read_only"])));
        assert_eq!(flags(&w), json!(["write_only"]));
        let dir = std::env::temp_dir().join(format!("fdrpc-cli-fds-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        std::os::unix::fs::symlink("/", &dir).unwrap();
        let link = open_with(dir.to_str().unwrap(), OFlags::PATH | OFlags::NOFOLLOW);
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(kind(&link), "symlink");
        assert_eq!(flags(&link), json!(["read_only", "path"]));
        let memfd = rustix::fs::memfd_create(
            "described",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .unwrap();
        rustix::io::write(&memfd, b"four").unwrap();
        rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK | SealFlags::WRITE).unwrap();
        let d = describe(&memfd);
        assert_eq!(
            (&d["kind"], &d["size"], &d["seals"]),
            (&json!("memfd"), &json!(4), &json!(["shrink", "write"]))
        );
        assert_eq!(d["path"], "/memfd:described (deleted)");
        let file = describe(&open_with("/proc/self/exe", OFlags::RDONLY));
        assert_eq!(file["kind"], "file");
        assert!(file.get("seals").is_none(), "{file}");
    }
}
