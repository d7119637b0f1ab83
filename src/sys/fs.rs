//! File-system calls std does not offer: `flock(2)` for the data-directory lock,
//! `openat2(2)` with `RESOLVE_BENEATH` for opening a path the kernel keeps inside a directory,
//! `preadv2(2)` with `RWF_NOWAIT` and `cachestat(2)` for reading or sending only what the page
//! cache holds.
//!
//! Owns: the hand-declared `flock`, `preadv2`, `sysconf` and `syscall` bindings and their safe
//! wrappers. Must not:
//! decide lock policy (which file, what message; `log::DirLock` does) or which paths a
//! request may name (`http::static_files` does).

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
/// Opens `relative` for reading, resolved by the kernel beneath the directory `dir`
/// (`openat2(2)` with `RESOLVE_BENEATH`): no `..`, absolute path or symlink can make the
/// resolution leave `dir`, and nothing can swap a component between a check and the open.
/// Never blocks on a FIFO (opened non-blocking; the caller checks what it opened).
///
/// Returns `Ok(None)` when the resolution would leave `dir` (an absolute symlink included,
/// even one that lands inside it again: the caller may check such a path another way).
///
/// # Errors
/// `Unsupported` where the kernel or a sandbox has no `openat2`; otherwise the open's error
/// (`NotFound`, a symlink loop, a permission).
pub fn open_beneath(dir: &File, relative: &std::path::Path) -> io::Result<Option<File>> {
    imp::open(dir, relative, false)
}

/// [`open_beneath`] that never waits for the disk (`RESOLVE_CACHED`): it fails with
/// `WouldBlock` unless every step of the path is in the kernel's lookup cache, for a caller
/// that must not block (a reactor) and can retry where waiting is allowed.
///
/// # Errors
/// `WouldBlock` as above; `Unsupported` before Linux 5.12; otherwise as [`open_beneath`].
pub fn open_beneath_cached(dir: &File, relative: &std::path::Path) -> io::Result<Option<File>> {
    imp::open(dir, relative, true)
}

/// Reads `buf.len()` bytes of `file` at `offset` only if they are in the page cache
/// (`preadv2(2)` with `RWF_NOWAIT`): never waits for the disk. Returns the bytes read, which
/// may be fewer (some pages cached, or the end of the file).
///
/// # Errors
/// `WouldBlock` when none of it is cached; `Unsupported` where the kernel or the file system
/// cannot tell (the caller reads where waiting is allowed); otherwise the read's error.
pub fn read_cached(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    imp::read_cached(file, offset, buf)
}

/// Whether the `len` bytes of `file` from `offset` are all in the page cache now
/// (`cachestat(2)`, Linux 6.5+), so that sending them waits for no disk. A snapshot: the
/// kernel may evict a page right after.
///
/// # Errors
/// `Unsupported` where the kernel or the file cannot tell (the caller assumes they are not).
pub fn is_cached(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    imp::is_cached(file, offset, len)
}

#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
))]
/// `openat2`, `preadv2` and `cachestat` on the architectures whose syscall numbers these are.
mod imp {
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;

    extern "C" {
        fn syscall(number: i64, ...) -> i64;
    }

    /// `struct open_how` (linux/openat2.h).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    /// The same number on every architecture (added after the tables were unified).
    const SYS_OPENAT2: i64 = 437;
    const O_RDONLY: u64 = 0;
    const O_NOCTTY: u64 = 0o400;
    const O_NONBLOCK: u64 = 0o4000;
    const O_CLOEXEC: u64 = 0o2000000;
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_BENEATH: u64 = 0x08;
    const RESOLVE_CACHED: u64 = 0x20;
    const RWF_NOWAIT: i32 = 0x08;
    const EOPNOTSUPP: i32 = 95;

    /// `struct iovec`.
    #[repr(C)]
    struct IoVec {
        base: *mut u8,
        len: usize,
    }

    extern "C" {
        fn preadv2(fd: i32, iov: *const IoVec, iovcnt: i32, offset: i64, flags: i32) -> isize;
    }

    pub fn read_cached(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let iov = IoVec {
            base: buf.as_mut_ptr(),
            len: buf.len(),
        };
        loop {
            // SAFETY: `iov` describes `buf`, which is borrowed mutably for the call and outlives
            // it; the kernel writes at most `buf.len()` bytes there. The descriptor is
            // borrowed from `file` for the call.
            let read = unsafe { preadv2(file.as_raw_fd(), &iov, 1, offset, RWF_NOWAIT) };
            if read >= 0 {
                let read = read as usize;
                assert!(read <= buf.len(), "preadv2 reported more bytes than asked");
                return Ok(read);
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(EINTR) => continue,
                Some(EAGAIN) => return Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Some(EOPNOTSUPP | ENOSYS | EINVAL) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, error))
                }
                _ => return Err(error),
            }
        }
    }
    /// `struct cachestat_range` (linux/mman.h).
    #[repr(C)]
    struct CachestatRange {
        offset: u64,
        len: u64,
    }

    /// `struct cachestat` (linux/mman.h): pages in the range by state.
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        cached: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }

    /// The same number on every architecture (added after the tables were unified).
    const SYS_CACHESTAT: i64 = 451;
    /// `_SC_PAGESIZE` of Linux's `sysconf`.
    const SC_PAGESIZE: i32 = 30;

    extern "C" {
        fn sysconf(name: i32) -> i64;
    }

    pub fn is_cached(file: &File, offset: u64, len: u64) -> io::Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        // SAFETY: sysconf takes no pointers and reads nothing of ours.
        let page = unsafe { sysconf(SC_PAGESIZE) };
        let page = u64::try_from(page)
            .ok()
            .filter(|&page| page > 0)
            .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
        let last = offset
            .checked_add(len - 1)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let pages = last / page - offset / page + 1;
        let range = CachestatRange { offset, len };
        let mut stat = Cachestat::default();
        loop {
            // SAFETY: `range` and `stat` are live locals of the layouts the kernel expects,
            // read and written during the call only; the descriptor is borrowed from `file`.
            let result = unsafe {
                syscall(
                    SYS_CACHESTAT,
                    file.as_raw_fd() as i64,
                    &range as *const CachestatRange,
                    &mut stat as *mut Cachestat,
                    0i64,
                )
            };
            if result == 0 {
                return Ok(stat.cached >= pages);
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(EINTR) => continue,
                // No cachestat (kernels before 6.5), or a file it does not describe.
                Some(ENOSYS | EOPNOTSUPP | EPERM | EINVAL) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, error))
                }
                _ => return Err(error),
            }
        }
    }

    const EPERM: i32 = 1;
    const EXDEV: i32 = 18;
    const EINVAL: i32 = 22;
    const ENOSYS: i32 = 38;
    const E2BIG: i32 = 7;
    const EINTR: i32 = 4;
    const EAGAIN: i32 = 11;

    pub fn open(dir: &File, relative: &std::path::Path, cached: bool) -> io::Result<Option<File>> {
        let path = CString::new(relative.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let cached_flag = if cached { RESOLVE_CACHED } else { 0 };
        let how = OpenHow {
            flags: O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | cached_flag,
        };
        loop {
            // SAFETY: `path` is a NUL-terminated string and `how` a live `open_how` of the
            // size passed, both read by the kernel during the call only; `dir`'s descriptor
            // is borrowed for the call. The variadic arguments are the ones openat2 takes.
            let fd = unsafe {
                syscall(
                    SYS_OPENAT2,
                    dir.as_raw_fd() as i64,
                    path.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            };
            if fd >= 0 {
                let fd = i32::try_from(fd).expect("a file descriptor fits an int");
                // SAFETY: the kernel just returned this descriptor, open and owned by nobody
                // else; the `File` closes it.
                return Ok(Some(unsafe { File::from_raw_fd(fd) }));
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(EINTR) => continue,
                // RESOLVE_BENEATH refused a step that leaves `dir`.
                Some(EXDEV) => return Ok(None),
                // RESOLVE_CACHED: a step is not in the lookup cache (the open would wait).
                Some(EAGAIN) if cached => return Err(io::Error::from(io::ErrorKind::WouldBlock)),
                // No openat2 (kernels before 5.6; RESOLVE_CACHED before 5.12: EINVAL), or a
                // sandbox that refuses it.
                Some(ENOSYS | EPERM | EINVAL | E2BIG | EAGAIN) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, error))
                }
                _ => return Err(error),
            }
        }
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
)))]
/// Elsewhere: every call is `Unsupported`, and callers take their portable paths.
mod imp {
    use std::fs::File;
    use std::io;

    pub fn open(
        _dir: &File,
        _relative: &std::path::Path,
        _cached: bool,
    ) -> io::Result<Option<File>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub fn read_cached(_file: &File, _offset: u64, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub fn is_cached(_file: &File, _offset: u64, _len: u64) -> io::Result<bool> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Bytes just written are in the page cache; a hole never read is not (where the kernel
    /// can tell: `cachestat` is Linux 6.5+).
    #[test]
    fn written_bytes_are_cached_and_an_unread_hole_is_not() {
        let path = std::env::temp_dir().join(format!("lithair-cachestat-{}", std::process::id()));
        let written = vec![7u8; 3 * 4096 + 100];
        std::fs::write(&path, &written).expect("write");
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let whole = written.len() as u64;
        match is_cached(&file, 0, whole) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("cachestat unsupported here: {e}");
                let _ = std::fs::remove_file(&path);
                return;
            }
            cached => assert!(cached.expect("cachestat"), "just written"),
        }
        assert!(
            is_cached(&file, 4095, 2).expect("cachestat"),
            "across a page"
        );
        assert!(
            is_cached(&file, whole, 0).expect("cachestat"),
            "nothing to send"
        );
        file.set_len(whole + (1 << 20)).expect("extend with a hole");
        assert!(!is_cached(&file, 0, whole + (1 << 20)).expect("cachestat"));
        assert!(!is_cached(&file, whole + 8192, 4096).expect("cachestat"));
        assert!(
            is_cached(&file, 0, whole).expect("cachestat"),
            "the written part still"
        );
        assert!(is_cached(&file, u64::MAX, 2).is_err(), "a range past u64");
        let _ = std::fs::remove_file(&path);
    }

    /// Inside the directory (a relative symlink that stays inside included) opens; a path or
    /// a symlink that leaves it, or an absolute symlink, is `None`; a missing file is an error.
    #[test]
    fn a_path_opens_only_beneath_its_directory() {
        let base = std::env::temp_dir().join(format!("lithair-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("sub/in.txt"), b"inside").expect("write");
        std::fs::write(base.join("out.txt"), b"outside").expect("write");
        std::os::unix::fs::symlink("sub/in.txt", root.join("rel")).expect("symlink");
        std::os::unix::fs::symlink("../out.txt", root.join("up")).expect("symlink");
        std::os::unix::fs::symlink(root.join("sub/in.txt"), root.join("abs")).expect("symlink");
        let dir = File::open(&root).expect("open the root");
        let read = |relative: &str| match open_beneath(&dir, Path::new(relative)) {
            Ok(Some(file)) => Ok(Some(std::io::read_to_string(file).expect("read"))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.kind()),
        };
        if read("sub/in.txt") == Err(io::ErrorKind::Unsupported) {
            eprintln!("no openat2 here: nothing to check");
            return;
        }
        assert_eq!(read("sub/in.txt"), Ok(Some("inside".into())));
        assert_eq!(read("rel"), Ok(Some("inside".into())));
        assert_eq!(read("sub/../sub/in.txt"), Ok(Some("inside".into())));
        assert_eq!(read("../out.txt"), Ok(None));
        assert_eq!(read("sub/../../out.txt"), Ok(None));
        assert_eq!(read("up"), Ok(None));
        assert_eq!(read("abs"), Ok(None));
        assert_eq!(
            read(base.join("out.txt").to_str().expect("utf-8")),
            Ok(None)
        );
        assert_eq!(read("missing"), Err(io::ErrorKind::NotFound));
        // Cached: the path was just resolved, and the file just read, so both are in memory.
        match open_beneath_cached(&dir, Path::new("sub/in.txt")) {
            Ok(Some(file)) => {
                let mut buf = [0u8; 16];
                match read_cached(&file, 1, &mut buf) {
                    Ok(n) => assert_eq!(&buf[..n], b"nside"),
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}"),
                }
            }
            Ok(None) => panic!("inside the root"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}"),
        }
        // A way out is refused, or (leaving the cached walk to follow the link) would wait.
        match open_beneath_cached(&dir, Path::new("up")) {
            Ok(None) => {}
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Unsupported
                ),
                "{e}"
            ),
            Ok(Some(_)) => panic!("opened a file outside the root"),
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
