//! Snapshot files: `DATA/snapshots/NNNNNNNNNNNNNNNNNNNN.snap`, named by the last index they
//! cover, written atomically (temporary file, fsync, rename, fsync the directory) and
//! checksummed.
//!
//! Owns: the snapshot file format and its write/load protocol. Must not: delete log segments
//! (the engine does that, only after a snapshot is durable) or decode the state.

use crate::binary::Unspill;
use crate::crypto::crc32c;
use crate::log::{index_named, sync_dir, Error};
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the snapshots sub-directory of the data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";
/// First bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LITHSNAP";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Header: magic, version, reserved, index, body length, body CRC32C, header CRC32C.
pub const SNAPSHOT_HEADER_BYTES: usize = 40;
/// Snapshots kept on disk: the newest plus one fallback in case the newest is damaged.
pub const SNAPSHOTS_KEPT: usize = 2;
/// A snapshot file is written and `fdatasync`ed in pieces of this size: the log's own
/// `fdatasync`s then never queue behind more than one piece on the disk (one fsync of a
/// 100 MB file held the log's for tens of milliseconds: a pause that grew with the state).
pub const SNAPSHOT_SYNC_CHUNK_BYTES: usize = 4 << 20;

/// The steps of taking a snapshot, reported to the test hook after each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStep {
    /// The temporary file is written and fsynced, not yet renamed.
    TemporaryWritten,
    /// The rename is done, the directory not yet fsynced.
    Renamed,
    /// The directory is fsynced: the snapshot is durable; no segment deleted yet.
    Durable,
    /// Covered segments are deleted.
    SegmentsDeleted,
}

/// Test hook called after each [`SnapshotStep`]; returning `Err` stops the snapshot right
/// there, leaving the files exactly as a crash at that point would.
pub type SnapshotHook = Arc<dyn Fn(SnapshotStep) -> Result<(), String> + Send + Sync>;

/// Directory of snapshots in `data_dir`.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_DIR_NAME)
}

fn snapshot_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}.snap"))
}

/// The file of the snapshot covering `index` in `data_dir` (whether or not it exists).
pub fn snapshot_file(data_dir: &Path, index: u64) -> PathBuf {
    snapshot_path(&snapshot_dir(data_dir), index)
}

/// Indexes of the snapshot files present, ascending.
pub fn list_snapshots(data_dir: &Path) -> Result<Vec<u64>, Error> {
    let dir = snapshot_dir(data_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(&dir, "list", error)),
    };
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, "list", e))?;
        let name = entry.file_name();
        // Named as segments are: `+` and 19 digits, say, is not a snapshot.
        if let Some(index) = name.to_str().and_then(|name| index_named(name, ".snap")) {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    Ok(indexes)
}

/// Encodes the header for a snapshot of a body of `body_bytes` bytes with checksum `body_crc`
/// covering up to `index`.
fn encode_header(index: u64, body_bytes: u64, body_crc: u32) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&index.to_le_bytes());
    header[24..32].copy_from_slice(&body_bytes.to_le_bytes());
    header[32..36].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32c::crc32c(&header[..36]);
    header[36..40].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a snapshot header (magic, version, checksum); returns the body length it declares.
fn parse_header(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err("shorter than a snapshot header".to_string());
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if bytes[0..8] != SNAPSHOT_MAGIC || word(8) != SNAPSHOT_VERSION {
        return Err("bad magic or version".to_string());
    }
    if crc32c::crc32c(&bytes[..36]) != word(36) {
        return Err("header checksum mismatch".to_string());
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[24..32]);
    Ok(u64::from_le_bytes(length))
}

/// Reads the snapshot file at `path` whole, but only once its header checks out and the file
/// is as long as the header says (`Ok(Err(reason))` otherwise): a damaged or hostile file
/// (say, extended to a huge sparse size) is passed over without allocating its size.
pub(super) fn read_checked(path: &Path) -> Result<Result<Vec<u8>, String>, Error> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let header = match read_header(&mut file, path)? {
        Ok(header) => header,
        Err(reason) => return Ok(Err(reason)),
    };
    let file_bytes = SNAPSHOT_HEADER_BYTES as u64 + header.body_bytes;
    let mut whole = Vec::with_capacity(file_bytes as usize);
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| Error::io(path, "seek", e))?;
    // Bounded even if the file grew since (nothing should write it: it was renamed in place).
    file.take(file_bytes + 1)
        .read_to_end(&mut whole)
        .map_err(|e| Error::io(path, "read", e))?;
    Ok(Ok(whole))
}

/// Body bytes read at a time when a snapshot file is checked without being loaded.
const SNAPSHOT_CHECK_CHUNK_BYTES: usize = 1 << 20;

/// A snapshot file checked whole by [`check_file`], still open: a copy made from `file`
/// copies the bytes checked, even if the file is pruned (unlinked) meanwhile.
pub(super) struct CheckedFile {
    /// The open file (anywhere: seek before reading).
    pub file: fs::File,
    /// The index its header names.
    pub index: u64,
    /// Its body's length; the file is the header and this many bytes.
    pub body_bytes: u64,
}

/// Checks the snapshot file at `path` as [`parse_snapshot`] does (header, length, body
/// checksum) without loading it: the body streams through a buffer of
/// `SNAPSHOT_CHECK_CHUNK_BYTES`, so `log verify` and `log backup` beside a running server
/// never hold a copy of a snapshot as large as its state. `Ok(Err(reason))` for damage.
pub(super) fn check_file(path: &Path) -> Result<Result<CheckedFile, String>, Error> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let header = match read_header(&mut file, path)? {
        Ok(header) => header,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut crc = 0;
    let mut left = header.body_bytes;
    let mut chunk = vec![0u8; SNAPSHOT_CHECK_CHUNK_BYTES];
    let mut reader = &file;
    while left > 0 {
        let want = usize::try_from(left).map_or(chunk.len(), |left| left.min(chunk.len()));
        match reader.read(&mut chunk[..want]) {
            Ok(0) => {
                return Ok(Err(
                    "shorter than its header says (cut while read)".to_string()
                ))
            }
            Ok(read) => {
                crc = crc32c::extend(crc, &chunk[..read]);
                left -= read as u64;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(Error::io(path, "read", error)),
        }
    }
    if crc != header.body_crc {
        return Ok(Err("body checksum mismatch".to_string()));
    }
    Ok(Ok(CheckedFile {
        file,
        index: header.index,
        body_bytes: header.body_bytes,
    }))
}

/// Checks a whole snapshot file; returns its index and body.
pub fn parse_snapshot(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let declared = parse_header(bytes)?;
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    if body.len() as u64 != declared {
        return Err(format!(
            "body is {} bytes, header says {declared}",
            body.len()
        ));
    }
    let body_crc = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
    if crc32c::crc32c(body) != body_crc {
        return Err("body checksum mismatch".to_string());
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&bytes[16..24]);
    Ok((u64::from_le_bytes(index), body))
}

/// The size in bytes of the snapshot file covering `index` in `data_dir` (header included),
/// or 0 when there is none (index 0, or the file is gone): the snapshot trigger weighs the
/// log tail against it, so an unreadable size means "no snapshot yet", never an error.
pub(super) fn file_bytes(data_dir: &Path, index: u64) -> u64 {
    if index == 0 {
        return 0;
    }
    fs::metadata(snapshot_file(data_dir, index)).map_or(0, |meta| meta.len())
}

/// Loads the newest snapshot that passes its checksums, logging (and skipping) damaged newer
/// ones: an older snapshot plus a longer log tail gives the same state. Each file's body is
/// handed to `decode` through a bounded window as it is read (never read whole), checksummed on
/// the way; what `decode` made is returned only once the whole body's checksum holds, else it
/// is dropped and the file passed over as damaged. A body that fails to decode although its
/// checksum holds is `decode`'s error (a snapshot this build cannot read is not damage).
pub fn load_newest_with<T>(
    data_dir: &Path,
    mut decode: impl FnMut(u64, &mut Unspill<'_>) -> Result<T, Error>,
) -> Result<Option<(u64, T)>, Error> {
    let dir = snapshot_dir(data_dir);
    for index in list_snapshots(data_dir)?.into_iter().rev() {
        let path = snapshot_path(&dir, index);
        match load_file(&path, index, &mut decode)? {
            Ok(value) => return Ok(Some((index, value))),
            Err(reason) => eprintln!("lithair: snapshot {} {reason}; ignored", path.display()),
        }
    }
    Ok(None)
}

/// Reads bodies in pieces of this size when only their checksum is wanted.
const CHECK_PIECE_BYTES: usize = 1 << 20;

/// One file of [`load_newest_with`]: `Ok(Err(reason))` when it is damaged or names another
/// index.
fn load_file<T>(
    path: &Path,
    index: u64,
    decode: &mut impl FnMut(u64, &mut Unspill<'_>) -> Result<T, Error>,
) -> Result<Result<T, String>, Error> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    load_from(file, path, index, decode)
}

/// [`load_file`] from `file`, open at its start (`path` names it in messages).
fn load_from<T>(
    mut file: fs::File,
    path: &Path,
    index: u64,
    decode: &mut impl FnMut(u64, &mut Unspill<'_>) -> Result<T, Error>,
) -> Result<Result<T, String>, Error> {
    let header = match read_header(&mut file, path)? {
        Ok(header) => header,
        Err(reason) => return Ok(Err(format!("is damaged ({reason})"))),
    };
    if header.index != index {
        return Ok(Err(format!("names index {}", header.index)));
    }
    let (mut read, mut crc, mut failed) = (0u64, 0u32, None);
    let decoded = {
        let mut source = |window: &mut Vec<u8>, want: usize| {
            let before = window.len();
            window.resize(before + want, 0);
            match file.read_exact(&mut window[before..]) {
                Ok(()) => {
                    crc = crc32c::extend(crc, &window[before..]);
                    read += want as u64;
                    Ok(())
                }
                Err(error) => {
                    window.truncate(before);
                    let message = format!("reading {}: {error}", path.display());
                    failed = Some(Error::io(path, "read", error));
                    Err(message)
                }
            }
        };
        let mut input = Unspill::new(header.body_bytes, &mut source);
        decode(index, &mut input).and_then(|value| {
            input.finish().map_err(|e| Error::Visitor {
                index,
                message: format!("snapshot does not decode: {e}"),
            })?;
            Ok(value)
        })
    };
    if let Some(error) = failed {
        return Err(error);
    }
    // The rest of the body, which a failed decode left unread, still counts for the checksum.
    let mut piece = vec![0u8; CHECK_PIECE_BYTES];
    while read < header.body_bytes {
        let want = (header.body_bytes - read).min(CHECK_PIECE_BYTES as u64) as usize;
        file.read_exact(&mut piece[..want])
            .map_err(|e| Error::io(path, "read", e))?;
        crc = crc32c::extend(crc, &piece[..want]);
        read += want as u64;
    }
    if crc != header.body_crc {
        return Ok(Err("is damaged (body checksum mismatch)".to_string()));
    }
    decoded.map(Ok)
}

/// What a checked header says.
struct Header {
    index: u64,
    body_bytes: u64,
    body_crc: u32,
}

/// Reads and checks the header of the snapshot file open as `file` at `path`, and that the
/// file is as long as it says (`Ok(Err(reason))` otherwise): a damaged or hostile file (say,
/// extended to a huge sparse size) is passed over without reading its body.
fn read_header(file: &mut fs::File, path: &Path) -> Result<Result<Header, String>, Error> {
    let bytes = file
        .metadata()
        .map_err(|e| Error::io(path, "stat", e))?
        .len();
    let mut header = vec![0u8; SNAPSHOT_HEADER_BYTES.min(bytes as usize)];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, "read", e))?;
    let declared = match parse_header(&header) {
        Ok(body_bytes) => body_bytes,
        Err(reason) => return Ok(Err(reason)),
    };
    let body_bytes = bytes - SNAPSHOT_HEADER_BYTES as u64;
    if body_bytes != declared {
        return Ok(Err(format!(
            "body is {body_bytes} bytes, header says {declared}"
        )));
    }
    let word = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    let mut index = [0u8; 8];
    index.copy_from_slice(&header[16..24]);
    Ok(Ok(Header {
        index: u64::from_le_bytes(index),
        body_bytes,
        body_crc: u32::from_le_bytes(word(32)),
    }))
}

fn step(hook: Option<&SnapshotHook>, at: SnapshotStep) -> Result<(), Error> {
    match hook.map(|hook| hook(at)) {
        Some(Err(message)) => Err(Error::Invalid {
            message: format!("snapshot stopped at {at:?}: {message}"),
        }),
        _ => Ok(()),
    }
}

/// Writes a snapshot atomically and durably: temporary file, fsync, rename, fsync directory.
pub fn write_snapshot(
    data_dir: &Path,
    index: u64,
    body: &[u8],
    hook: Option<&SnapshotHook>,
) -> Result<PathBuf, Error> {
    write_snapshot_with(data_dir, index, body.len() as u64, hook, |sink| sink(body))
}

/// Hands the pieces of a snapshot body on to the file being written; an error stops the write.
pub type BodySink<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), Error>;

/// Writes a snapshot whose body of `body_bytes` bytes `body` produces in pieces (handing each
/// to the sink it is given, in order), atomically and durably like [`write_snapshot`]: the
/// body goes to the temporary file as it comes, checksummed on the way, and the header is
/// written last, once the checksum is known, before the file is fsynced and renamed. So no
/// buffer holds the whole body, and a file cut short is never renamed into place (and its
/// header, zero until the end, names no snapshot).
pub fn write_snapshot_with(
    data_dir: &Path,
    index: u64,
    body_bytes: u64,
    hook: Option<&SnapshotHook>,
    body: impl FnOnce(BodySink<'_>) -> Result<(), Error>,
) -> Result<PathBuf, Error> {
    let dir = snapshot_dir(data_dir);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create directory", e))?;
    let path = snapshot_path(&dir, index);
    let temporary = dir.join(format!("{index:020}.snap.tmp"));
    if let Err(error) = write_temporary(&temporary, index, body_bytes, body) {
        // A failed write (a full disk, most often) must not leave its part-written file
        // holding the space the log needs: until the next successful snapshot or restart
        // nothing else removes it, and each failed attempt at a new index would add one.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    step(hook, SnapshotStep::TemporaryWritten)?;
    fs::rename(&temporary, &path).map_err(|e| Error::io(&path, "rename", e))?;
    step(hook, SnapshotStep::Renamed)?;
    sync_dir(&dir)?;
    step(hook, SnapshotStep::Durable)?;
    Ok(path)
}

/// Writes a zero header, then the body in pieces, each [`SNAPSHOT_SYNC_CHUNK_BYTES`]
/// `fdatasync`ed, then the real header, and fsyncs the file whole.
fn write_temporary(
    temporary: &Path,
    index: u64,
    body_bytes: u64,
    body: impl FnOnce(BodySink<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    let mut file = fs::File::create(temporary).map_err(|e| Error::io(temporary, "create", e))?;
    file.write_all(&[0u8; SNAPSHOT_HEADER_BYTES])
        .map_err(|e| Error::io(temporary, "write", e))?;
    let (mut written, mut unsynced, mut crc) = (0u64, 0usize, 0u32);
    body(&mut |piece: &[u8]| {
        if written + piece.len() as u64 > body_bytes {
            return Err(Error::Invalid {
                message: format!("snapshot {index}: the body is longer than {body_bytes} bytes"),
            });
        }
        for part in piece.chunks(SNAPSHOT_SYNC_CHUNK_BYTES) {
            file.write_all(part)
                .map_err(|e| Error::io(temporary, "write", e))?;
            crc = crc32c::extend(crc, part);
            written += part.len() as u64;
            unsynced += part.len();
            if unsynced >= SNAPSHOT_SYNC_CHUNK_BYTES {
                file.sync_data()
                    .map_err(|e| Error::io(temporary, "fsync", e))?;
                unsynced = 0;
            }
        }
        Ok(())
    })?;
    if written != body_bytes {
        return Err(Error::Invalid {
            message: format!("snapshot {index}: the body is {written} bytes, not {body_bytes}"),
        });
    }
    file.write_all_at(&encode_header(index, body_bytes, crc), 0)
        .map_err(|e| Error::io(temporary, "write", e))?;
    file.sync_all()
        .map_err(|e| Error::io(temporary, "fsync", e))
}

/// Cluster mode: the whole snapshot file covering exactly `index` (header included), as a
/// leader sends it to a follower; the follower checks its checksums on arrival.
pub fn read_snapshot_file(data_dir: &Path, index: u64) -> Result<Vec<u8>, Error> {
    let path = snapshot_path(&snapshot_dir(data_dir), index);
    // Through `read_checked`: a file whose header or size is wrong is refused before it is
    // read whole (a leader sends this file to a follower; it must not allocate a hostile size).
    read_checked(&path)?.map_err(|reason| Error::Invalid {
        message: format!("snapshot {index} is damaged: {reason}"),
    })
}

/// Cluster mode: installs a snapshot file received from a leader. Checks its checksums and
/// that it covers `index`, then writes it like a local snapshot (temporary file, fsync,
/// rename, fsync directory), so a crash leaves either no new file or a whole, valid one.
pub fn install_snapshot_file(data_dir: &Path, index: u64, file: &[u8]) -> Result<PathBuf, Error> {
    let invalid = |message: String| Error::Invalid { message };
    let (named, body) = parse_snapshot(file)
        .map_err(|reason| invalid(format!("received snapshot {index} is damaged: {reason}")))?;
    if named != index {
        return Err(invalid(format!(
            "received snapshot for index {index} covers {named}"
        )));
    }
    write_snapshot(data_dir, index, body, None)
}

/// Cluster mode: the snapshot file covering exactly `index`, open, with its size in bytes
/// (header included), as a leader sends it to followers a chunk at a time: its header and
/// length are checked (the follower checks the body's checksum once it has it all). Reads
/// through this handle see this file's bytes even if a newer snapshot prunes (unlinks) it
/// meanwhile, so a transfer never mixes two files.
///
/// # Errors
/// I/O failures, or a damaged header or size (`Error::Invalid`).
pub fn open_snapshot_file(data_dir: &Path, index: u64) -> Result<(fs::File, u64), Error> {
    let path = snapshot_path(&snapshot_dir(data_dir), index);
    let mut file = fs::File::open(&path).map_err(|e| Error::io(&path, "open", e))?;
    let invalid = |reason: String| Error::Invalid {
        message: format!("snapshot {index} is damaged: {reason}"),
    };
    let header = read_header(&mut file, &path)?.map_err(invalid)?;
    if header.index != index {
        return Err(invalid(format!("its header names index {}", header.index)));
    }
    Ok((file, SNAPSHOT_HEADER_BYTES as u64 + header.body_bytes))
}

/// Cluster mode: installs the snapshot file a leader sent, already written whole at
/// `received` (in the data directory: the same file system). Checks it as `check_file`
/// does, streaming (never holding it whole), and that it covers `index`; then makes it durable
/// and renames it into place (fsync, rename, fsync the directory), so a crash leaves either
/// no new snapshot or a whole, valid one. The bytes checked are the bytes installed: the
/// check, the fsync and the rename all go through one open handle of one file.
///
/// # Errors
/// A damaged or misnamed file (`Error::Invalid`), or I/O failures.
pub fn install_received_snapshot(
    data_dir: &Path,
    index: u64,
    received: &Path,
) -> Result<PathBuf, Error> {
    let invalid = |message: String| Error::Invalid { message };
    let checked = check_file(received)?
        .map_err(|reason| invalid(format!("received snapshot {index} is damaged: {reason}")))?;
    if checked.index != index {
        return Err(invalid(format!(
            "received snapshot for index {index} covers {}",
            checked.index
        )));
    }
    checked
        .file
        .sync_all()
        .map_err(|e| Error::io(received, "fsync", e))?;
    let dir = snapshot_dir(data_dir);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create directory", e))?;
    let path = snapshot_path(&dir, index);
    fs::rename(received, &path).map_err(|e| Error::io(&path, "rename", e))?;
    sync_dir(&dir)?;
    if let Some(from) = received.parent().filter(|from| *from != dir) {
        // The name is gone from there too: a restart must not find it again.
        sync_dir(from)?;
    }
    Ok(path)
}

/// Cluster mode: decodes the snapshot covering exactly `index` through `decode`, streaming
/// its body as `load_newest_with` does (a bounded window, never the whole file), and
/// returns the value only once the whole body's checksum holds.
///
/// # Errors
/// I/O failures, `decode`'s error, or a damaged file (`Error::Invalid`).
pub fn load_at_with<T>(
    data_dir: &Path,
    index: u64,
    mut decode: impl FnMut(u64, &mut Unspill<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let path = snapshot_path(&snapshot_dir(data_dir), index);
    load_file(&path, index, &mut decode)?.map_err(|reason| Error::Invalid {
        message: format!("snapshot {index} {reason}"),
    })
}

/// Cluster mode: [`load_at_with`] from the snapshot file covering `index` as
/// [`open_snapshot_file`] opened it, read from its start. A follower's engine opens the file
/// it installed as the install returns and decodes it later, on its applier: by then a newer
/// snapshot's prune may have unlinked the name, never this handle's bytes.
///
/// # Errors
/// I/O failures, `decode`'s error, or a damaged file (`Error::Invalid`).
pub(super) fn load_opened_with<T>(
    data_dir: &Path,
    index: u64,
    mut file: fs::File,
    mut decode: impl FnMut(u64, &mut Unspill<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let path = snapshot_path(&snapshot_dir(data_dir), index);
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| Error::io(&path, "seek", e))?;
    load_from(file, &path, index, &mut decode)?.map_err(|reason| Error::Invalid {
        message: format!("snapshot {index} {reason}"),
    })
}

/// Cluster mode: the body of the snapshot covering exactly `index`, checked.
pub fn load_at(data_dir: &Path, index: u64) -> Result<Vec<u8>, Error> {
    let file = read_snapshot_file(data_dir, index)?;
    match parse_snapshot(&file) {
        Ok((named, body)) if named == index => Ok(body.to_vec()),
        Ok((named, _)) => Err(Error::Invalid {
            message: format!("snapshot {index} names index {named}"),
        }),
        Err(reason) => Err(Error::Invalid {
            message: format!("snapshot {index} is damaged: {reason}"),
        }),
    }
}

/// Deletes leftover temporary files and all but the newest [`SNAPSHOTS_KEPT`] snapshots,
/// except `in_use`: the snapshot the state was loaded from, or (single node) the one a start
/// falls back to, which the log after it is kept for. Newer files than it may be damaged ones
/// that loading passed over; counting them must not delete the only good one (a restart would
/// then find no snapshot to start from once the log before it is compacted away).
pub fn prune(data_dir: &Path, in_use: Option<u64>) -> Result<(), Error> {
    let dir = snapshot_dir(data_dir);
    let indexes = list_snapshots(data_dir)?;
    let old = indexes.len().saturating_sub(SNAPSHOTS_KEPT);
    for &index in indexes[..old]
        .iter()
        .filter(|&&index| Some(index) != in_use)
    {
        let path = snapshot_path(&dir, index);
        fs::remove_file(&path).map_err(|e| Error::io(&path, "delete", e))?;
    }
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.ends_with(".snap.tmp"))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_every_damage_is_detected() {
        let body = b"snapshot body bytes".to_vec();
        let mut file = encode_header(77, body.len() as u64, crc32c::crc32c(&body)).to_vec();
        file.extend_from_slice(&body);
        assert_eq!(parse_snapshot(&file), Ok((77, &body[..])));
        for at in 0..file.len() {
            let mut damaged = file.clone();
            damaged[at] ^= 0x01;
            assert!(parse_snapshot(&damaged).is_err(), "flip at {at} accepted");
        }
        assert!(parse_snapshot(&file[..file.len() - 1]).is_err());
    }

    /// `check_file` streams a body of several chunks and agrees with `parse_snapshot` on a
    /// whole file, on a flipped byte in the last chunk, on a cut body and on a bad header.
    #[test]
    fn a_file_checked_without_loading_it_agrees_with_parse_snapshot() {
        let dir = std::env::temp_dir().join(format!("lithair-snap-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let body: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
        assert!(body.len() > 2 * SNAPSHOT_CHECK_CHUNK_BYTES);
        let path = write_snapshot(&dir, 12, &body, None).unwrap();
        let checked = check_file(&path).unwrap().expect("a whole snapshot");
        assert_eq!((checked.index, checked.body_bytes), (12, body.len() as u64));
        let whole = fs::read(&path).unwrap();
        let damage = |at: usize| {
            let mut damaged = whole.clone();
            damaged[at] ^= 0x40;
            fs::write(&path, &damaged).unwrap();
            assert!(parse_snapshot(&damaged).is_err());
            check_file(&path).unwrap().err()
        };
        assert_eq!(
            damage(whole.len() - 7).as_deref(),
            Some("body checksum mismatch")
        );
        assert!(damage(3).is_some(), "a bad magic");
        fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        assert!(check_file(&path).unwrap().is_err(), "a cut body");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_write_that_fails_part_way_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("lithair-snap-full-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let snapshots = snapshot_dir(&dir);
        fs::create_dir_all(&snapshots).unwrap();
        // The temporary file's name leads to /dev/full: every write fails with ENOSPC, as on
        // a disk that fills up while the snapshot is written.
        let temporary = snapshots.join(format!("{:020}.snap.tmp", 9));
        std::os::unix::fs::symlink("/dev/full", &temporary).unwrap();
        let error = write_snapshot(&dir, 9, b"state", None).unwrap_err();
        assert!(error.to_string().contains("snap.tmp"), "{error}");
        assert!(
            fs::symlink_metadata(&temporary).is_err(),
            "the part-written temporary file is removed"
        );
        assert!(list_snapshots(&dir).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Loading reads a body through a bounded window and keeps what it decoded only once the
    /// whole body's checksum holds: a flip in the last byte (decoded without complaint) falls
    /// back to the older file, and a body that does not decode though its checksum holds (the
    /// checksum then taken over the bytes the decoder left) is an error, not damage.
    #[test]
    fn a_loaded_body_counts_only_once_its_checksum_holds() {
        let dir = std::env::temp_dir().join(format!("lithair-snap-load-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        write_snapshot(&dir, 5, &body, None).unwrap();
        write_snapshot(&dir, 9, &body, None).unwrap();
        // Decodes the first byte only: the rest is read for the checksum alone.
        let first_byte = |_: u64, input: &mut Unspill<'_>| {
            let byte = input.part(|r| r.read_u8()).map_err(|e| Error::Invalid {
                message: e.to_string(),
            })?;
            while input.remaining() > 0 {
                input
                    .part(|r| r.read_bytes(r.remaining().clamp(1, 1 << 16)).map(|_| ()))
                    .map_err(|e| Error::Invalid {
                        message: e.to_string(),
                    })?;
            }
            Ok(byte)
        };
        assert_eq!(load_newest_with(&dir, first_byte).unwrap(), Some((9, 0)));
        let newest = snapshot_file(&dir, 9);
        let mut damaged = fs::read(&newest).unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        fs::write(&newest, &damaged).unwrap();
        assert_eq!(load_newest_with(&dir, first_byte).unwrap(), Some((5, 0)));
        let refuse = |_: u64, _: &mut Unspill<'_>| -> Result<(), Error> {
            Err(Error::Invalid {
                message: "does not decode".to_string(),
            })
        };
        let error = load_newest_with(&dir, refuse).expect_err("a whole file that does not decode");
        assert!(error.to_string().contains("does not decode"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_names_of_twenty_digits_are_snapshots() {
        let dir = std::env::temp_dir().join(format!("lithair-snap-names-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(snapshot_dir(&dir)).unwrap();
        for name in [
            "+0000000000000000007.snap",
            "0000000000000000007.snap",
            "00000000000000000007.snap.bak",
            "00000000000000000008.snap",
        ] {
            fs::write(snapshot_dir(&dir).join(name), b"x").unwrap();
        }
        assert_eq!(list_snapshots(&dir).unwrap(), [8]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_installed_file_is_checked_then_loadable() {
        let dir = std::env::temp_dir().join(format!("lithair-snap-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let body = b"state".to_vec();
        let mut file = encode_header(12, body.len() as u64, crc32c::crc32c(&body)).to_vec();
        file.extend_from_slice(&body);
        assert!(install_snapshot_file(&dir, 13, &file).is_err());
        let mut damaged = file.clone();
        damaged[SNAPSHOT_HEADER_BYTES] ^= 1;
        assert!(install_snapshot_file(&dir, 12, &damaged).is_err());
        assert!(list_snapshots(&dir).unwrap().is_empty());
        install_snapshot_file(&dir, 12, &file).unwrap();
        assert_eq!(load_at(&dir, 12).unwrap(), body);
        assert_eq!(read_snapshot_file(&dir, 12).unwrap(), file);
        // A file grown past what its header declares (here to a sparse 2 GiB) is refused
        // before it is read: the leader would have loaded all of it to send it.
        let path = snapshot_path(&snapshot_dir(&dir), 12);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1 << 31)
            .unwrap();
        let refused = read_snapshot_file(&dir, 12).expect_err("a damaged file");
        assert!(refused.to_string().contains("header says"), "{refused}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
