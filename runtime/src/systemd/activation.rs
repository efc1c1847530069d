//! Descriptors passed to a process at start the `sd_listen_fds(3)` way: fd 3 onwards,
//! `LISTEN_FDS` of them, for the process `LISTEN_PID`, named by `LISTEN_FDNAMES`.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first fd passed: `SD_LISTEN_FDS_START`.
const FIRST: RawFd = 3;

/// Whether this process has taken its passed fds (they can be owned once).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The descriptors passed to this process at start, with their names: the sockets of a
/// systemd socket unit (named by its `FileDescriptorName=`, or after the unit), fds the
/// service put in the fd store before a restart (named by their `FDNAME=`), or what a parent
/// passed with [`spawn_with_fds`]. Each is an `OwnedFd`, close-on-exec.
///
/// A passed fd nobody took is closed when this is dropped, with a warning that names it: a
/// socket systemd passed and nobody serves would otherwise leave its clients connecting to a
/// socket nobody accepts on.
#[derive(Debug, Default)]
pub struct ListenFds {
    fds: Vec<(String, OwnedFd)>,
}

impl ListenFds {
    /// Takes the descriptors passed to this process: none if `LISTEN_PID` is not this
    /// process, and none the second time (only one owner can close them). The environment is
    /// left as it is; children ignore it anyway, since `LISTEN_PID` is not theirs, but see
    /// [`ListenFds::take_and_unset_env`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `LISTEN_*` is malformed, or the error of marking an fd
    /// close-on-exec.
    pub fn take() -> io::Result<ListenFds> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return Ok(ListenFds::default());
        }
        let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()?.collect();
        Ok(ListenFds {
            fds: passed
                .into_iter()
                .map(|(fd, name)| {
                    // SAFETY: fds 3..3+LISTEN_FDS were passed to this process for it to own
                    // (LISTEN_PID is ours), and `TAKEN` makes this the only place that takes
                    // ownership of them.
                    (name, unsafe { OwnedFd::from_raw_fd(fd) })
                })
                .collect(),
        })
    }

    /// [`ListenFds::take`], and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from
    /// the environment, so that no child inherits them.
    ///
    /// # Errors
    ///
    /// As [`ListenFds::take`].
    ///
    /// # Safety
    ///
    /// As [`std::env::remove_var`]: no other thread may read or write the environment
    /// meanwhile. Call it first thing in `main`, before a runtime (`#[tokio::main]`) or any
    /// thread is started.
    pub unsafe fn take_and_unset_env() -> io::Result<ListenFds> {
        let fds = Self::take();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // SAFETY: the caller promises no other thread touches the environment.
            unsafe { std::env::remove_var(var) };
        }
        fds
    }

    /// How many are left.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether none are left.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The names of those left, in the order they were passed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fds.iter().map(|(n, _)| n.as_str())
    }

    /// Takes the first fd named `name`.
    pub fn take_named(&mut self, name: &str) -> Option<OwnedFd> {
        let i = self.fds.iter().position(|(n, _)| n == name)?;
        Some(self.fds.remove(i).1)
    }

    /// Takes the first listening `AF_UNIX` stream socket (named `name`, if given), as a
    /// [`Listener`](crate::Listener) to serve.
    ///
    /// When no fd is named `name` but nothing passed has a name (systemd calls them
    /// `unknown`: `systemd-socket-activate` without `--fdname`, a socket unit's
    /// `FileDescriptorName=` unset on an older systemd) and exactly one of them is a listening
    /// socket, that one is taken: the program was started with one socket whose name it could
    /// not be told.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the fd named `name` is not a listening Unix stream socket (it is
    /// closed), or the error of registering it with the runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn take_listener(&mut self, name: Option<&str>) -> io::Result<Option<crate::Listener>> {
        let found = match name {
            Some(name) => self
                .take_named(name)
                .or_else(|| self.take_sole_unnamed(name)),
            None => self.take_first_listener(),
        };
        found.map(crate::Listener::from_fd).transpose()
    }

    /// The first listening `AF_UNIX` stream socket.
    #[cfg(feature = "tokio")]
    fn take_first_listener(&mut self) -> Option<OwnedFd> {
        let i = self
            .fds
            .iter()
            .position(|(_, fd)| crate::transport::address::check_unix_stream(fd, true).is_ok())?;
        Some(self.fds.remove(i).1)
    }

    /// The one listening socket, when nothing passed has a name; see
    /// [`ListenFds::take_listener`].
    #[cfg(feature = "tokio")]
    fn take_sole_unnamed(&mut self, wanted: &str) -> Option<OwnedFd> {
        if self.fds.iter().any(|(n, _)| n != UNNAMED) {
            return None;
        }
        let listeners = self
            .fds
            .iter()
            .filter(|(_, fd)| crate::transport::address::check_unix_stream(fd, true).is_ok())
            .count();
        if listeners != 1 {
            return None;
        }
        tracing::info!(
            wanted,
            "fdrpc: no passed fd is named so, and the one passed socket has no name: serving it"
        );
        self.take_first_listener()
    }
}

/// The name systemd gives a passed fd that has none.
#[cfg(feature = "tokio")]
const UNNAMED: &str = "unknown";

impl Drop for ListenFds {
    fn drop(&mut self) {
        if !self.fds.is_empty() {
            let names: Vec<&str> = self.fds.iter().map(|(n, _)| n.as_str()).collect();
            tracing::warn!(
                ?names,
                "fdrpc: passed fds nobody took are closed; clients of a passed socket among them \
                 now connect to nothing (take it with `take_listener` or `take_named`)"
            );
        }
    }
}

impl IntoIterator for ListenFds {
    type Item = (String, OwnedFd);
    type IntoIter = std::vec::IntoIter<(String, OwnedFd)>;

    fn into_iter(mut self) -> Self::IntoIter {
        std::mem::take(&mut self.fds).into_iter()
    }
}

/// Starts `command` with `fds` passed the `sd_listen_fds(3)` way: fd 3 onwards, with
/// `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set to the child's own pid, so that
/// [`ListenFds::take`] (or any `sd_listen_fds` reader) in the child takes them. Only these fds
/// reach the child besides what `command` itself passes; the copies here close once it is
/// spawned. A command can be spawned this way once: spawning it again fails (`EBADF`: its fds
/// went to the first child).
///
/// `command`'s program, arguments, environment changes (`env`, `env_remove`), working
/// directory, stdio and user are honoured; `env_clear` is not (the child starts from this
/// process's environment), and neither are `pre_exec` closures added after this call.
///
/// # Errors
///
/// `InvalidInput` for a name that systemd would refuse (empty, longer than 255 bytes, or
/// holding `:` or a control character) or a NUL in the program, an argument or the
/// environment; or the errors of duplicating an fd and of spawning.
pub fn spawn_with_fds(command: &mut Command, fds: Vec<(String, OwnedFd)>) -> io::Result<Child> {
    for (name, _) in &fds {
        check_name(name)?;
    }
    let n = fds.len();
    // Move every fd above the range it must land in, so that putting them in place cannot
    // overwrite one not yet placed. The copies are close-on-exec: only the placed ones
    // reach the child.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|(_, fd)| rustix::io::fcntl_dupfd_cloexec(fd, FIRST + n as RawFd))
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
    let exec = Exec::new(command, n, &names.join(":"))?;
    drop(fds);
    // The child uses the numbers; this process closes its copies as soon as it has spawned,
    // and a later spawn of the same command, whose numbers might name other fds by then,
    // fails instead of passing them.
    let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let spent = Arc::new(AtomicBool::new(false));
    let mut exec = Some(exec);
    let spent_in_child = spent.clone();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe code may run (another thread of the parent may have held the
    // allocator's lock at the fork). It allocates nothing: it loads an atomic, calls dup2,
    // getpid and execve, formats the pid with `itoa` on the stack into a buffer allocated
    // before the fork, and returns only errors that are a raw errno (`io::Error`'s OS
    // representation holds the number, no box; std sends the parent that errno). It never
    // returns on success: std would otherwise replace the environment with its own copy,
    // built before the fork, without `LISTEN_PID`.
    unsafe {
        command.pre_exec(move || {
            if spent_in_child.load(Ordering::Acquire) {
                // The fds went to an earlier spawn of this command.
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            for (i, fd) in raw.iter().enumerate() {
                // dup2 clears close-on-exec on the new fd.
                if libc::dup2(*fd, FIRST + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            match exec.as_mut() {
                Some(exec) => Err(exec.run()),
                None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            }
        });
    }
    let child = command.spawn();
    spent.store(true, Ordering::Release);
    drop(high);
    child
}

/// What the child executes, prepared before the fork: the program, its arguments, and its
/// whole environment with a slot for `LISTEN_PID`.
struct Exec {
    program: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    /// `LISTEN_PID=` and room for the digits and a NUL, filled in the child.
    listen_pid: Vec<u8>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into the CStrings and the buffer owned by the same struct,
// whose heap memory does not move; they are only read, in the child, by execvpe.
unsafe impl Send for Exec {}
// SAFETY: as for Send; nothing mutates through a shared reference.
unsafe impl Sync for Exec {}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

/// The file `program` names: itself if it holds a `/`, else the first executable of that name
/// in `path`.
fn resolve(program: &OsStr, path: Option<&OsString>) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = path.map_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"), |p| {
        p.as_os_str()
    });
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|f| rustix::fs::access(f, rustix::fs::Access::EXEC_OK).is_ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in PATH", program.to_string_lossy()),
            )
        })
}

impl Exec {
    fn new(command: &Command, fds: usize, names: &str) -> io::Result<Exec> {
        let c = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command")
            })
        };
        let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (key, value) in command.get_envs() {
            match value {
                Some(v) => vars.insert(key.to_owned(), v.to_owned()),
                None => vars.remove(key),
            };
        }
        let args: Vec<CString> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(c)
            .collect::<io::Result<_>>()?;
        // Looked up here, in the child's PATH, as `execvp` would in the child.
        let program = c(resolve(command.get_program(), vars.get(OsStr::new("PATH")))?.as_os_str())?;
        for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            vars.remove(OsStr::new(key));
        }
        let mut env: Vec<CString> = Vec::with_capacity(vars.len() + 2);
        for (k, v) in &vars {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            env.push(c(OsStr::from_bytes(&entry))?);
        }
        env.push(c(OsStr::new(&format!("LISTEN_FDS={fds}")))?);
        env.push(c(OsStr::new(&format!("LISTEN_FDNAMES={names}")))?);
        let mut listen_pid = LISTEN_PID.to_vec();
        listen_pid.resize(LISTEN_PID.len() + 24, 0);
        let argv = args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([listen_pid.as_ptr().cast(), std::ptr::null()])
            .collect();
        Ok(Exec {
            program,
            _args: args,
            _env: env,
            listen_pid,
            argv,
            envp,
        })
    }

    /// In the child: writes its pid into `LISTEN_PID=` and executes. Returns only on failure.
    fn run(&mut self) -> io::Error {
        let mut digits = itoa::Buffer::new();
        // SAFETY: getpid cannot fail.
        let pid = digits.format(unsafe { libc::getpid() });
        // A pid has at most 10 digits; the slot holds 24 and stays NUL-terminated.
        if let Some(slot) = self
            .listen_pid
            .get_mut(LISTEN_PID.len()..LISTEN_PID.len() + pid.len())
        {
            slot.copy_from_slice(pid.as_bytes());
        }
        // SAFETY: `argv` and `envp` are NULL-terminated arrays of NUL-terminated strings that
        // `self` owns and keeps alive; execve only returns on failure.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        io::Error::last_os_error()
    }
}

/// systemd's rule for fd names (`FDNAME=`, `FileDescriptorName=`).
pub(super) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.bytes().any(|b| b == b':' || b < 0x20 || b == 0x7f)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{name}` is not a valid fd name: 1 to 255 bytes, no `:` or control characters"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_command_spawned_again_fails_with_ebadf_and_passes_nothing() {
        let (mine, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut command = Command::new("true");
        let mut child = spawn_with_fds(&mut command, vec![("x".into(), mine.into())]).unwrap();
        assert!(child.wait().unwrap().success());
        // The numbers the closure would dup2 may name other fds by now: it refuses, with a
        // raw errno (what the child can report without allocating).
        let again = command.spawn().map(|mut c| c.wait());
        match again {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}"),
            Ok(status) => panic!("spawned again: {status:?}"),
        }
    }

    #[test]
    fn a_child_that_cannot_take_its_fds_is_not_spawned() {
        use std::os::unix::process::CommandExt;
        let fds: Vec<(String, OwnedFd)> = (0..3)
            .map(|i| {
                let (mine, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                (format!("s{i}"), mine.into())
            })
            .collect();
        let mut command = Command::new("true");
        // SAFETY: setrlimit is a system call; nothing is allocated in the child.
        unsafe {
            command.pre_exec(|| {
                // Fd 4 and up cannot be made: the second fd's dup2 fails.
                let limit = libc::rlimit {
                    rlim_cur: 4,
                    rlim_max: 4,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match spawn_with_fds(&mut command, fds) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}"),
            Ok(mut child) => panic!("spawned: {:?}", child.wait()),
        }
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn a_name_not_passed_takes_the_one_unnamed_socket_and_nothing_else() {
        let listening = |path: &std::path::Path| -> OwnedFd {
            std::os::unix::net::UnixListener::bind(path).unwrap().into()
        };
        // Not named by the pid: pids wrap, and one an earlier process left would be in use.
        let dir = tempfile::Builder::new()
            .prefix("fdrpc-listenfds-")
            .tempdir()
            .unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let file = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        // One unnamed socket (and an unnamed file beside it): taken for any name.
        let mut fds = ListenFds {
            fds: vec![(UNNAMED.into(), file()), (UNNAMED.into(), listening(&a))],
        };
        assert_eq!((fds.len(), fds.is_empty()), (2, false));
        assert_eq!(fds.names().collect::<Vec<_>>(), [UNNAMED, UNNAMED]);
        let listener = fds.take_listener(Some("broker")).unwrap().unwrap();
        std::os::unix::net::UnixStream::connect(&a).unwrap();
        drop(listener);
        assert_eq!(fds.len(), 1, "the file stays");
        assert!(fds.take_named(UNNAMED).is_some());
        assert_eq!((fds.len(), fds.is_empty()), (0, true));
        // Two unnamed sockets: which one is meant cannot be told.
        let _ = std::fs::remove_file(&a);
        let mut fds = ListenFds {
            fds: vec![
                (UNNAMED.into(), listening(&a)),
                (UNNAMED.into(), listening(&b)),
            ],
        };
        assert!(fds.take_listener(Some("broker")).unwrap().is_none());
        // A named one elsewhere: names are in use, so the unnamed one is not taken for it.
        let _ = std::fs::remove_file(&a);
        let mut fds = ListenFds {
            fds: vec![("admin".into(), file()), (UNNAMED.into(), listening(&a))],
        };
        assert_eq!(fds.names().collect::<Vec<_>>(), ["admin", UNNAMED]);
        assert!(fds.take_listener(Some("broker")).unwrap().is_none());
        assert_eq!(fds.into_iter().count(), 2);
    }

    #[test]
    fn fd_names_follow_systemds_rule() {
        check_name("broker").unwrap();
        check_name(&"x".repeat(255)).unwrap();
        // The bounds of "control character": space and `~` are fine, 0x1f and DEL are not.
        check_name("a b~").unwrap();
        for bad in ["", "a:b", "a\nb", "a\x1fb", "a\x7fb", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
