//! The open-file limit (RLIMIT_NOFILE): 10k connections need more than the usual 1024.
//!
//! Owns: reading and raising the soft limit.
//! Must not: raise the hard limit (that needs privileges and is the operator's call).

use std::ffi::c_int;
use std::io;

#[cfg(target_os = "linux")]
const RLIMIT_NOFILE: c_int = 7;
#[cfg(not(target_os = "linux"))]
const RLIMIT_NOFILE: c_int = 8;

/// Never ask for more than this many descriptors, even with an unlimited hard limit.
pub const FD_LIMIT_CEILING: u64 = 1 << 20;

#[repr(C)]
struct RLimit {
    current: u64,
    maximum: u64,
}

extern "C" {
    fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
    fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
}

/// Returns (soft, hard) limits on open descriptors.
pub fn fd_limit() -> io::Result<(u64, u64)> {
    let mut limit = RLimit {
        current: 0,
        maximum: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit struct for the duration of the call.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.current, limit.maximum))
}

/// Raises the soft limit to the hard limit (capped at `FD_LIMIT_CEILING`); returns the new
/// soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (current, maximum) = fd_limit()?;
    let target = maximum.min(FD_LIMIT_CEILING);
    if current >= target {
        return Ok(current);
    }
    let limit = RLimit {
        current: target,
        maximum,
    };
    // SAFETY: `limit` is a valid rlimit struct read by the kernel during the call.
    if unsafe { setrlimit(RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_stays_under_hard_limit() {
        let (soft, hard) = fd_limit().expect("getrlimit");
        assert!(soft <= hard);
        let raised = raise_fd_limit().expect("setrlimit");
        assert!(raised >= soft.min(FD_LIMIT_CEILING));
        assert!(raised <= hard);
    }
}
