//! File preallocation: `fallocate(2)` on 64-bit Linux, so log segments are overwritten in place
//! instead of growing with every append (a growing file makes each `fdatasync` also commit a
//! size and block-allocation change).
//!
//! Owns: the hand-declared `fallocate` binding and its safe wrapper. Must not: decide how much
//! to preallocate or what to do without it (`log::writer` does).

use std::fs::File;
use std::io;

/// Allocates disk blocks for the first `len` bytes of `file`, extending its size to `len` if it
/// is shorter (the new bytes read as zeros); never shrinks it.
///
/// Returns `Ok(false)` where preallocation is not supported (another platform, or a file system
/// without `fallocate`): the caller goes on without it.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn preallocate(file: &File, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    const EOPNOTSUPP: i32 = 95;
    const ENOSYS: i32 = 38;
    extern "C" {
        fn fallocate(fd: i32, mode: i32, offset: i64, len: i64) -> i32;
    }
    let Ok(len) = i64::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "preallocation length too large",
        ));
    };
    if len == 0 {
        return Ok(true);
    }
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open descriptor borrowed from `file` for the duration of the call;
    // `fallocate` only reads its four integer arguments (mode 0: allocate and extend the size)
    // and touches no memory of ours. `off_t` is `i64` on 64-bit Linux.
    let result = unsafe { fallocate(fd, 0, 0, len) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(EOPNOTSUPP) | Some(ENOSYS) => Ok(false),
        _ => Err(error),
    }
}

/// Allocates disk blocks for the first `len` bytes of `file` (unsupported here: `Ok(false)`).
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn preallocate(file: &File, len: u64) -> io::Result<bool> {
    let _ = (file, len);
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    #[test]
    fn preallocation_extends_with_zeros_and_never_shrinks() {
        let path = std::env::temp_dir().join(format!("lithair-prealloc-{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("create");
        file.write_all(b"head").expect("write");
        let supported = preallocate(&file, 4096).expect("preallocate");
        if supported {
            assert_eq!(file.metadata().expect("stat").len(), 4096);
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0)).expect("seek");
            file.read_to_end(&mut bytes).expect("read");
            assert_eq!(&bytes[..4], b"head");
            assert!(bytes[4..].iter().all(|&b| b == 0));
            assert!(preallocate(&file, 100).expect("smaller"));
            assert_eq!(file.metadata().expect("stat").len(), 4096);
        }
        drop(file);
        let _ = std::fs::remove_file(&path);
    }
}
