//! File-system calls std does not offer: `flock(2)` for the data-directory lock.
//!
//! Owns: the hand-declared `flock` binding and its safe wrapper. Must not: decide lock policy
//! (which file, what message); `log::DirLock` does.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;

extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

/// Takes an exclusive, non-blocking `flock` on `file`.
///
/// Returns `Ok(false)` when another open file description (usually another process) holds the
/// lock; the lock is released when every descriptor of `file` is closed.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open descriptor borrowed from `file` for the duration of the call;
    // `flock` only reads its two integer arguments and touches no memory of ours.
    let result = unsafe { flock(fd, LOCK_EX | LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(error)
    }
}
