//! Notifications to the service manager (`sd_notify(3)`), through `NOTIFY_SOCKET`.

use std::io;
use std::os::fd::AsFd;

use sd_notify::NotifyState;

use super::activation::check_name;

/// A state change to tell the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State<'a> {
    /// `READY=1`: startup is finished (for `Type=notify` services).
    Ready,
    /// `STOPPING=1`: the service is shutting down.
    Stopping,
    /// `RELOADING=1`: the service is reloading its configuration.
    Reloading,
    /// `STATUS=...`: a line of text for `systemctl status`.
    Status(&'a str),
}

impl<'a> State<'a> {
    fn as_notify(self) -> NotifyState<'a> {
        match self {
            State::Ready => NotifyState::Ready,
            State::Stopping => NotifyState::Stopping,
            State::Reloading => NotifyState::Reloading,
            State::Status(s) => NotifyState::Status(s),
        }
    }
}

fn managed() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells the service manager of `states`. Returns `Ok(false)` when there is none
/// (`NOTIFY_SOCKET` unset): the call did nothing.
///
/// # Errors
///
/// The error of sending to `NOTIFY_SOCKET`.
pub fn notify(states: &[State<'_>]) -> io::Result<bool> {
    if !managed() {
        return Ok(false);
    }
    let states: Vec<NotifyState<'_>> = states.iter().map(|s| s.as_notify()).collect();
    sd_notify::notify(&states)?;
    Ok(true)
}

/// Puts a copy of `fd` in the service manager's fd store under `name` (`FDSTORE=1`,
/// `FDNAME=`): systemd keeps it while the service restarts, and passes it back at the next
/// start, named `name` among the [`ListenFds`](super::ListenFds). The unit needs
/// `FileDescriptorStoreMax=`. Returns `Ok(false)` when there is no service manager.
///
/// # Errors
///
/// `InvalidInput` for a name systemd would refuse, or the error of sending.
pub fn store_fd(name: &str, fd: impl AsFd) -> io::Result<bool> {
    check_name(name)?;
    if !managed() {
        return Ok(false);
    }
    sd_notify::notify_with_fds(
        &[NotifyState::FdStore, NotifyState::FdName(name)],
        &[fd.as_fd()],
    )?;
    Ok(true)
}

/// Removes the fds stored under `name` (`FDSTOREREMOVE=1`). Returns `Ok(false)` when there is
/// no service manager.
///
/// # Errors
///
/// `InvalidInput` for a name systemd would refuse, or the error of sending.
pub fn remove_stored_fd(name: &str) -> io::Result<bool> {
    check_name(name)?;
    if !managed() {
        return Ok(false);
    }
    sd_notify::notify(&[NotifyState::FdStoreRemove, NotifyState::FdName(name)])?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Without a service manager every call says it did nothing (`tests/daemon.rs` runs a
    /// daemon under a fake one, where they say they did).
    #[test]
    fn without_a_service_manager_nothing_is_sent_and_each_call_says_so() {
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            // Run under a service manager: these calls would reach it.
            return;
        }
        assert!(!managed());
        assert!(!notify(&[State::Ready, State::Status("up")]).unwrap());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(!store_fd("kept", &file).unwrap());
        assert!(!remove_stored_fd("kept").unwrap());
        // A name systemd would refuse is refused first, manager or not.
        for bad in ["", "a:b", "line\nbreak"] {
            let e = store_fd(bad, &file).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            let e = remove_stored_fd(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
