//! The segmented append-only log: record framing, CRC32C, group commit, recovery, compaction.
//!
//! Owns: the on-disk format (docs/LOG_FORMAT.md) and the durability promise ("acknowledged
//! means fsynced"). Must not: decode event payloads; it stores opaque bytes.
//!
//! Layout: `DATA/LOCK` (exclusive `flock` while a [`Log`] is open) and `DATA/log/` holding
//! segments named by their first index, and `NEWEST`, the record of the newest one
//! (`extent`). The log's writer threads append frames (in `Durable`
//! mode two: one runs an `fdatasync` while the other writes the next group); readers
//! ([`read_range`]) open the files independently.

mod cut;
mod error;
mod extent;
pub(crate) mod fatal;
mod frame;
pub(crate) mod inbox;
mod prepare;
mod reader;
pub mod repair;
mod segment;
mod sync;
mod writer;

pub use cut::{cut_pending, CUT_FILE_NAME};
pub use error::{AppendError, Error};
pub use extent::{
    check_extent, extent_path, read_newest, record_newest, EXTENT_BYTES, EXTENT_FILE_NAME,
};
pub use frame::{
    encode_frame, encode_header, parse_frame, parse_header, Entries, EntryBatch, Frame, FrameError,
    Status, ENTRY_PREFIX_BYTES, FORMAT_VERSION, FRAME_BYTES_MAX, FRAME_HEAD_BYTES,
    FRAME_PREFIX_BYTES, HEADER_BYTES, SEGMENT_MAGIC,
};
pub use prepare::PREPARED_FILE_NAME;
pub use reader::{read_range, Cursor};
pub use segment::{
    discontinuity, index_named, is_zero_tail, list_segments, read_segment, replace_file_durably,
    segment_name, segment_path, sync_dir, used_bytes, valid_end, SEGMENT_BYTES_LIMIT,
    SEGMENT_FILE_BYTES_MAX,
};
pub use writer::{
    lock_data_dir, on_writer_thread, Append, Appended, DataDirLock, Done, Durability, Faults, Log,
    LogOptions, Recovery, APPEND_BYTES_MAX, GROUP_BYTES_MAX, LOCK_FILE_NAME, LOG_DIR_NAME,
    PREALLOCATE_CHUNK_BYTES, SEGMENT_BYTES_DEFAULT,
};
