//! Byte-range locks of an open file description (Linux `F_OFD_SETLK`).
//!
//! Each lock belongs to the open file description it was taken through, not
//! to a process or a thread: two `Database` handles of one process hold their
//! locks apart, and the kernel drops them all when the description is closed,
//! however its process ended. Locks are advisory and cover byte ranges that
//! need not exist in the file, so one file carries many of them.

#[cfg(not(any(target_os = "linux", target_os = "android")))]
compile_error!(
    "larch needs open-file-description locks (F_OFD_SETLK), which only Linux has; \
     DESIGN.md, \"Many processes\", \"Portability\", says what another system needs"
);

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Who else may hold the same byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Any number of shared holders, no exclusive one.
    Shared,
    /// One holder, no shared ones.
    Exclusive,
}

/// Takes the lock on byte `at` of `file` in `mode` if no other open file
/// description holds a conflicting one; returns whether it did. Taking a lock
/// this description already holds on the byte converts it to `mode` at once.
pub(crate) fn try_lock(file: &File, at: u64, mode: Mode) -> io::Result<bool> {
    let kind = match mode {
        Mode::Shared => libc::F_RDLCK,
        Mode::Exclusive => libc::F_WRLCK,
    };
    match fcntl(file, libc::F_OFD_SETLK, at, kind) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes the lock on byte `at` of `file` in `mode`, waiting while another
/// open file description holds a conflicting one.
pub(crate) fn lock(file: &File, at: u64, mode: Mode) -> io::Result<()> {
    let kind = match mode {
        Mode::Shared => libc::F_RDLCK,
        Mode::Exclusive => libc::F_WRLCK,
    };
    loop {
        match fcntl(file, libc::F_OFD_SETLKW, at, kind) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(drop),
        }
    }
}

/// Releases this description's lock on byte `at`, if it holds one.
pub(crate) fn unlock(file: &File, at: u64) -> io::Result<()> {
    fcntl(file, libc::F_OFD_SETLK, at, libc::F_UNLCK).map(drop)
}

/// Whether another open file description holds any lock on byte `at`. (This
/// description's own locks never count.)
pub(crate) fn held_elsewhere(file: &File, at: u64) -> io::Result<bool> {
    Ok(holder(file, at)?.is_some())
}

/// How another open file description holds byte `at`, if one does (an
/// exclusive holder is reported before shared ones).
pub(crate) fn holder(file: &File, at: u64) -> io::Result<Option<Mode>> {
    Ok(match fcntl(file, libc::F_OFD_GETLK, at, libc::F_WRLCK)? {
        libc::F_UNLCK => None,
        libc::F_RDLCK => Some(Mode::Shared),
        _ => Some(Mode::Exclusive),
    })
}

/// One `fcntl` on byte `at`; returns the lock type the kernel wrote back (for
/// `F_OFD_GETLK`: the conflicting lock, or `F_UNLCK`).
fn fcntl(file: &File, cmd: libc::c_int, at: u64, kind: libc::c_int) -> io::Result<libc::c_int> {
    let start = libc::off_t::try_from(at)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock offset out of range"))?;
    // SAFETY: `flock` is plain old data; all-zero is a valid value of it
    // (and `l_pid` must be 0 for open-file-description locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    // SAFETY: the descriptor is open for as long as `file` lives, and `fl` is
    // a valid, exclusively borrowed `flock` for the call, as these commands
    // require.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(libc::c_int::from(fl.l_type))
}
