//! SIGINT / SIGTERM turned into a readable descriptor: the handler only writes 8 bytes to a
//! registered fd (async-signal-safe); the server polls that fd and shuts down gracefully.
//!
//! Owns: the process-wide signal dispositions for SIGINT and SIGTERM.
//! Must not: do anything in the handler beyond one `write`.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

/// The descriptor the handler writes to; -1 when none.
static NOTIFY_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" {
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
}

extern "C" fn on_termination(_signal: c_int) {
    let fd = NOTIFY_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `one` lives on this stack frame for the call
        // and we pass its exact size. A failed write (fd closed) is harmless and ignored.
        unsafe {
            write(fd, (&one as *const u64).cast::<c_void>(), 8);
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::c_int;

    const SA_RESTART: c_int = 0x1000_0000;

    /// glibc/musl `struct sigaction` on Linux (x86-64 and aarch64 share this layout).
    #[repr(C)]
    struct SigAction {
        handler: usize,
        mask: [u64; 16],
        flags: c_int,
        restorer: usize,
    }

    extern "C" {
        fn sigaction(signum: c_int, act: *const SigAction, oldact: *mut SigAction) -> c_int;
    }

    pub fn install(signal: c_int, handler: extern "C" fn(c_int)) -> std::io::Result<()> {
        let action = SigAction {
            handler: handler as usize,
            mask: [0; 16],
            flags: SA_RESTART,
            restorer: 0,
        };
        // SAFETY: `action` is a fully initialised sigaction read by the kernel during the call;
        // the handler only performs an async-signal-safe write. A null oldact is allowed.
        let rc = unsafe { sigaction(signal, &action, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::ffi::c_int;

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
    }

    pub fn install(signum: c_int, handler: extern "C" fn(c_int)) -> std::io::Result<()> {
        // SAFETY: BSD `signal` keeps the handler installed and restarts syscalls; the handler
        // only performs an async-signal-safe write.
        let previous = unsafe { signal(signum, handler as usize) };
        if previous == usize::MAX {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Routes SIGINT and SIGTERM to a write of 8 bytes on `fd` (an eventfd or pipe kept open for
/// the life of the process or until `clear_termination_fd`).
pub fn notify_on_termination(fd: RawFd) -> io::Result<()> {
    assert!(fd >= 0, "signal notification fd must be valid, got {fd}");
    NOTIFY_FD.store(fd, Ordering::SeqCst);
    imp::install(SIGINT, on_termination)?;
    imp::install(SIGTERM, on_termination)
}

/// Stops writing to the registered fd (before it is closed). Signals are then ignored.
pub fn clear_termination_fd() {
    NOTIFY_FD.store(-1, Ordering::SeqCst);
}
