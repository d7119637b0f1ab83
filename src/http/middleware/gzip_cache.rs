//! A bounded cache of gzip variants, so that a body sent again is not deflated again: our
//! deflate runs at about 65 MiB/s, so a 1 MiB script costs some 15 ms of CPU per request and a
//! 32 KiB page half a millisecond, on a reactor when the route runs there.
//!
//! Owns: the variants, their keys, the least-recently-used order and the byte budget.
//! Must not: decide whether a response is compressed (the gzip layer does), nor read a file.
//!
//! A key can only find the variant of the very bytes the response would send:
//! - a file body is keyed by the file's version as `fstat` tells it through the body's own
//!   handle: device, inode, size, modification and status-change times ([`FileVersion`]). One is
//!   taken only for a file unchanged for [`FILE_SETTLED_AFTER`], and its variant is kept only
//!   when the same version is read again after the file was read: file times come from a coarse
//!   clock, so two writes within one tick may leave the same times, and a write sets them
//!   before it copies its data, so finding the times of before the read, after it, shows that
//!   no write started meanwhile. What remains: one `write` call that began more than
//!   [`FILE_SETTLED_AFTER`] before and is still copying while the file is read.
//! - bytes in memory are keyed by their length and CRC32C, and the bytes are kept with their
//!   variant and compared whole on a hit: two bodies with the same key are a miss, never a
//!   wrong body.
//!
//! One variant is made by one thread at a time: a miss on a key claims its making
//! ([`GzipCache::claim_file`], [`GzipCache::claim_bytes`]), and a miss on a key another thread
//! is making now sends its body as it is (still a right answer, with `Vary`) instead of
//! deflating it again. Without this, the first burst of requests for a large file deflated it
//! once per request at the same time (64 connections asking for a 1 MiB script: 64 times 45 ms
//! of CPU before the first variant was kept).

use crate::crypto::crc32c::crc32c;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Default budget of a cache: compressed variants and the bodies kept to compare, in bytes.
pub const GZIP_CACHE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most variants a cache holds, whatever their size (bounds the index's own memory).
pub const GZIP_CACHE_ENTRIES_MAX: usize = 4096;
/// Bodies in memory larger than this are not kept: each would need its copy kept to compare.
pub const GZIP_CACHE_PLAIN_BYTES_MAX: usize = 256 * 1024;
/// How long a file must have been left unchanged before its variant is kept (see the module
/// docs): far above the tick of the clock file times come from (at most 10 ms).
pub const FILE_SETTLED_AFTER: Duration = Duration::from_secs(1);
/// What an entry costs besides its bytes: the key, the index and the allocations' headers.
const ENTRY_OVERHEAD_BYTES: usize = 160;

/// A regular file's version, as `fstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileVersion {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileVersion {
    /// The version of the file behind `file` now, if the file is regular and has been left
    /// unchanged for [`FILE_SETTLED_AFTER`] by `now`'s clock.
    #[cfg(unix)]
    pub(crate) fn settled(file: &File, now: SystemTime) -> Option<FileVersion> {
        let version = Self::of(file)?;
        let settled_before = now.duration_since(std::time::UNIX_EPOCH).ok()?;
        let settled_before = settled_before.checked_sub(FILE_SETTLED_AFTER)?.as_nanos();
        let latest = version.modified_ns.max(version.changed_ns);
        (latest < settled_before as i128).then_some(version)
    }

    /// Elsewhere files have no inode to tell one from another: nothing is kept.
    #[cfg(not(unix))]
    pub(crate) fn settled(_file: &File, _now: SystemTime) -> Option<FileVersion> {
        None
    }

    /// Whether this version's whole file is the region `offset`, `len`.
    pub(crate) fn is_whole(&self, offset: u64, len: u64) -> bool {
        offset == 0 && len == self.size
    }

    /// Whether the file behind `file` is still at this version.
    pub(crate) fn still(&self, file: &File) -> bool {
        Self::of(file).as_ref() == Some(self)
    }

    #[cfg(unix)]
    fn of(file: &File) -> Option<FileVersion> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().ok()?;
        let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        meta.is_file().then(|| FileVersion {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            changed_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_file: &File) -> Option<FileVersion> {
        None
    }
}

/// What a cache key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// A whole file at one version.
    File(FileVersion),
    /// Bytes in memory, by length and CRC32C; the entry keeps the bytes to compare.
    Bytes { len: usize, crc: u32 },
}

/// What the gzip layer sends for a body.
#[derive(Debug, Clone)]
pub(crate) enum Variant {
    /// The gzip member of the body.
    Gzip(Arc<[u8]>),
    /// The body does not shrink: sent as it is.
    Incompressible,
}

impl Variant {
    /// The variant of `plain`: gzip when it shrinks the body.
    fn of(plain: &[u8]) -> Variant {
        let packed = crate::crypto::deflate::gzip(plain);
        if packed.len() < plain.len() {
            Variant::Gzip(packed.into())
        } else {
            Variant::Incompressible
        }
    }

    fn len(&self) -> usize {
        match self {
            Variant::Gzip(bytes) => bytes.len(),
            Variant::Incompressible => 0,
        }
    }
}

struct Entry {
    variant: Variant,
    /// The body, for `Key::Bytes` entries, compared whole on a hit.
    plain: Option<Arc<[u8]>>,
    /// The tick of its last use: its place in `Index::by_use`.
    used: u64,
    /// What it counts against the budget.
    cost: usize,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Key, Entry>,
    /// Entries by last use, oldest first: the next to evict.
    by_use: BTreeMap<u64, Key>,
    /// Advances at each use.
    tick: u64,
    /// Sum of the entries' costs.
    bytes: usize,
    /// Keys whose variant a thread is making now (each held by a live [`Claim`], so there are
    /// never more than the threads that run requests).
    making: HashSet<Key>,
}

impl Index {
    /// Marks `key` used now; returns its entry.
    fn touch(&mut self, key: &Key) -> Option<&Entry> {
        let entry = self.entries.get_mut(key)?;
        self.by_use.remove(&entry.used);
        self.tick += 1;
        entry.used = self.tick;
        self.by_use.insert(self.tick, *key);
        Some(entry)
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.used);
            self.bytes -= entry.cost;
        }
    }

    fn check(&self) {
        assert_eq!(
            self.entries.len(),
            self.by_use.len(),
            "one use tick per entry"
        );
        debug_assert_eq!(
            self.bytes,
            self.entries.values().map(|e| e.cost).sum::<usize>(),
            "the byte count is the entries' costs"
        );
    }
}

/// How a cache has served, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GzipCacheStats {
    /// Variants sent from the cache.
    pub hits: u64,
    /// Variants made (bodies deflated) by the layer, kept or not.
    pub made: u64,
    /// Variants held now.
    pub entries: usize,
    /// Bytes held now, counted against the budget.
    pub bytes: usize,
    /// Answers sent uncompressed because another thread was making the same variant.
    pub sent_plain_while_making: u64,
}

/// The cache; see the module docs. Shared by the clones of one gzip layer.
pub(crate) struct GzipCache {
    index: Mutex<Index>,
    bytes_max: usize,
    hits: AtomicU64,
    made: AtomicU64,
    sent_plain_while_making: AtomicU64,
}

impl std::fmt::Debug for GzipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipCache")
            .field("bytes_max", &self.bytes_max)
            .field("stats", &self.stats())
            .finish()
    }
}

impl GzipCache {
    /// A cache of at most `bytes_max` bytes (0: keeps nothing).
    pub(crate) fn new(bytes_max: usize) -> Self {
        GzipCache {
            index: Mutex::new(Index::default()),
            bytes_max,
            hits: AtomicU64::new(0),
            made: AtomicU64::new(0),
            sent_plain_while_making: AtomicU64::new(0),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // Nothing under this lock calls out of this module, and its only panics are the
        // assertions of `keep`, which check a change already made whole: a poisoned lock
        // still guards a consistent index (it only caches; the worst is a miss).
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counted(&self, found: Option<Variant>) -> Option<Variant> {
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// The variant of `plain`, made now (deflated), and counted.
    pub(crate) fn make(&self, plain: &[u8]) -> Variant {
        self.made.fetch_add(1, Ordering::Relaxed);
        Variant::of(plain)
    }

    /// The variant of the file at `version`, if kept.
    pub(crate) fn file(&self, version: &FileVersion) -> Option<Variant> {
        let found = self
            .index()
            .touch(&Key::File(*version))
            .map(|e| e.variant.clone());
        self.counted(found)
    }

    /// The variant of `plain`, if kept: found by its key, then compared whole (outside the
    /// lock).
    pub(crate) fn bytes(&self, plain: &[u8]) -> Option<Variant> {
        if plain.len() > GZIP_CACHE_PLAIN_BYTES_MAX || self.bytes_max == 0 {
            return None;
        }
        let key = Self::bytes_key(plain);
        let kept = self
            .index()
            .touch(&key)
            .map(|e| (e.variant.clone(), e.plain.clone()));
        let found = match kept {
            Some((variant, Some(kept))) if *kept == *plain => Some(variant),
            _ => None,
        };
        self.counted(found)
    }

    fn bytes_key(plain: &[u8]) -> Key {
        Key::Bytes {
            len: plain.len(),
            crc: crc32c(plain),
        }
    }

    /// Claims the making of the variant of the file at `version` (see the module docs).
    pub(crate) fn claim_file(&self, version: FileVersion) -> Turn<'_> {
        self.claim(Key::File(version))
    }

    /// Claims the making of the variant of `plain` (see the module docs); bytes too large to
    /// keep are not claimed: their variant is never kept, so each request makes its own.
    pub(crate) fn claim_bytes(&self, plain: &[u8]) -> Turn<'_> {
        if plain.len() > GZIP_CACHE_PLAIN_BYTES_MAX {
            return Turn::Unkeyed;
        }
        self.claim(Self::bytes_key(plain))
    }

    fn claim(&self, key: Key) -> Turn<'_> {
        if self.bytes_max == 0 {
            return Turn::Unkeyed;
        }
        if self.index().making.insert(key) {
            Turn::Mine(Claim { cache: self, key })
        } else {
            self.sent_plain_while_making.fetch_add(1, Ordering::Relaxed);
            Turn::Busy
        }
    }

    fn keep(&self, key: Key, plain: Option<&[u8]>, variant: &Variant) {
        let cost = ENTRY_OVERHEAD_BYTES + variant.len() + plain.map_or(0, <[u8]>::len);
        // One entry may not take over the cache: past a quarter it would evict most others.
        if cost > self.bytes_max / 4 {
            return;
        }
        let plain = plain.map(Arc::<[u8]>::from);
        let mut index = self.index();
        index.remove(&key);
        while index.bytes + cost > self.bytes_max || index.entries.len() >= GZIP_CACHE_ENTRIES_MAX {
            let Some((_, oldest)) = index.by_use.first_key_value().map(|(t, k)| (*t, *k)) else {
                break;
            };
            index.remove(&oldest);
        }
        index.tick += 1;
        let used = index.tick;
        index.by_use.insert(used, key);
        index.bytes += cost;
        index.entries.insert(
            key,
            Entry {
                variant: variant.clone(),
                plain,
                used,
                cost,
            },
        );
        index.check();
        assert!(index.bytes <= self.bytes_max, "the budget holds");
    }

    /// Ends the making of `key`'s variant (its claim is dropped).
    fn release(&self, key: &Key) {
        let claimed = self.index().making.remove(key);
        assert!(claimed, "a claim's key is marked until the claim ends");
    }

    /// How the cache has served so far.
    pub(crate) fn stats(&self) -> GzipCacheStats {
        let index = self.index();
        GzipCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            made: self.made.load(Ordering::Relaxed),
            entries: index.entries.len(),
            bytes: index.bytes,
            sent_plain_while_making: self.sent_plain_while_making.load(Ordering::Relaxed),
        }
    }
}

/// Whose turn it is to make a variant after a miss.
pub(crate) enum Turn<'a> {
    /// This thread's: make it, then keep it through the claim.
    Mine(Claim<'a>),
    /// Another thread is making it now: send the body as it is.
    Busy,
    /// The variant would not be kept (too large, or no cache): make it, keep nothing.
    Unkeyed,
}

/// The making of one key's variant by this thread; others that miss the same key meanwhile
/// send their body as it is. Ends when dropped, kept or not (a failed read, a panic).
pub(crate) struct Claim<'a> {
    cache: &'a GzipCache,
    key: Key,
}

impl Claim<'_> {
    /// Keeps `variant` as that of the claimed file version.
    pub(crate) fn keep_file(self, variant: &Variant) {
        debug_assert!(matches!(self.key, Key::File(_)), "a file claim");
        self.cache.keep(self.key, None, variant);
    }

    /// Keeps `variant` as that of `plain` (a copy of which is kept to compare); `plain` is the
    /// body the claim was made for.
    pub(crate) fn keep_bytes(self, plain: &[u8], variant: &Variant) {
        assert_eq!(self.key, GzipCache::bytes_key(plain), "the claimed bytes");
        self.cache.keep(self.key, Some(plain), variant);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.cache.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seed: usize, len: usize) -> Vec<u8> {
        format!("body {seed}: compressible text, ")
            .repeat(len / 20 + 1)
            .into_bytes()[..len]
            .to_vec()
    }

    /// Keeps `variant` for `plain` as the gzip layer does: through a claim.
    fn keep_bytes(cache: &GzipCache, plain: &[u8], variant: &Variant) {
        match cache.claim_bytes(plain) {
            Turn::Mine(claim) => claim.keep_bytes(plain, variant),
            Turn::Unkeyed => {}
            Turn::Busy => panic!("no other thread is making it"),
        }
    }

    #[test]
    fn one_thread_at_a_time_makes_a_variant() {
        let cache = GzipCache::new(1 << 20);
        let page = text(1, 4000);
        let Turn::Mine(first) = cache.claim_bytes(&page) else {
            panic!("the first miss makes it");
        };
        assert!(matches!(cache.claim_bytes(&page), Turn::Busy));
        assert!(matches!(cache.claim_bytes(&page), Turn::Busy));
        let other = text(2, 4000);
        assert!(
            matches!(cache.claim_bytes(&other), Turn::Mine(_)),
            "other bytes are not held up"
        );
        // A making that ends without keeping (a failed read) lets the next miss try again.
        drop(first);
        let Turn::Mine(second) = cache.claim_bytes(&page) else {
            panic!("released");
        };
        second.keep_bytes(&page, &cache.make(&page));
        assert!(cache.bytes(&page).is_some());
        assert!(matches!(cache.claim_bytes(&page), Turn::Mine(_)));
        assert_eq!(cache.stats().sent_plain_while_making, 2);
        // Too large to keep, or no cache: never claimed, never held up.
        let large = text(3, GZIP_CACHE_PLAIN_BYTES_MAX + 1);
        assert!(matches!(cache.claim_bytes(&large), Turn::Unkeyed));
        assert!(matches!(
            GzipCache::new(0).claim_bytes(&page),
            Turn::Unkeyed
        ));
    }

    #[test]
    fn bytes_are_found_by_content_and_compared_whole() {
        let cache = GzipCache::new(1 << 20);
        let page = text(1, 4000);
        assert!(cache.bytes(&page).is_none());
        let variant = cache.make(&page);
        keep_bytes(&cache, &page, &variant);
        let Some(Variant::Gzip(packed)) = cache.bytes(&page) else {
            panic!("kept");
        };
        assert_eq!(
            crate::crypto::deflate::gunzip(&packed, 1 << 20).expect("gunzip"),
            page
        );
        // Same length, other bytes: a miss.
        let other = text(2, 4000);
        assert!(cache.bytes(&other).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.made, stats.entries), (1, 1, 1));
    }

    #[test]
    fn a_key_collision_is_a_miss_not_a_wrong_body() {
        let cache = GzipCache::new(1 << 20);
        let page = text(1, 2000);
        let impostor = text(2, 2000);
        // Plant the impostor's variant and bytes under the page's key, as a CRC32C collision
        // would.
        let variant = Variant::of(&impostor);
        cache.keep(GzipCache::bytes_key(&page), Some(&impostor), &variant);
        assert!(cache.bytes(&page).is_none());
        assert!(
            cache.bytes(&impostor).is_none(),
            "its own key holds nothing"
        );
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_budget_holds() {
        let entry_cost = |len: usize| {
            let plain = text(0, len);
            ENTRY_OVERHEAD_BYTES + plain.len() + Variant::of(&plain).len()
        };
        let budget = 4 * entry_cost(3000) + entry_cost(3000) / 2;
        let cache = GzipCache::new(budget);
        let pages: Vec<Vec<u8>> = (0..5).map(|i| text(i, 3000)).collect();
        for page in &pages[..4] {
            keep_bytes(&cache, page, &Variant::of(page));
        }
        assert_eq!(cache.stats().entries, 4);
        // Page 0 used again: page 1 is now the oldest.
        assert!(cache.bytes(&pages[0]).is_some());
        keep_bytes(&cache, &pages[4], &Variant::of(&pages[4]));
        assert!(cache.bytes(&pages[1]).is_none(), "evicted");
        for kept in [0, 2, 3, 4] {
            assert!(cache.bytes(&pages[kept]).is_some(), "page {kept} kept");
        }
        assert!(cache.stats().bytes <= budget);
        // An entry past a quarter of the budget is not kept at all.
        let big = text(9, budget);
        keep_bytes(&cache, &big, &Variant::of(&big));
        assert!(cache.bytes(&big).is_none());
        assert_eq!(cache.stats().entries, 4);
    }

    #[test]
    fn the_entry_count_is_bounded() {
        let cache = GzipCache::new(usize::MAX / 2);
        for i in 0..GZIP_CACHE_ENTRIES_MAX + 10 {
            let plain = i.to_le_bytes();
            keep_bytes(&cache, &plain, &Variant::Incompressible);
        }
        assert_eq!(cache.stats().entries, GZIP_CACHE_ENTRIES_MAX);
        assert!(
            cache.bytes(&0usize.to_le_bytes()).is_none(),
            "the oldest went"
        );
        let newest = GZIP_CACHE_ENTRIES_MAX + 9;
        assert!(cache.bytes(&newest.to_le_bytes()).is_some());
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = GzipCache::new(0);
        let page = text(1, 3000);
        keep_bytes(&cache, &page, &Variant::of(&page));
        assert!(cache.bytes(&page).is_none());
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn a_file_version_is_taken_only_once_settled_and_changes_with_a_write() {
        let path = std::env::temp_dir().join(format!("lithair-gzip-cache-{}", std::process::id()));
        std::fs::write(&path, b"first").expect("write");
        let file = File::open(&path).expect("open");
        let now = SystemTime::now();
        assert!(
            FileVersion::settled(&file, now).is_none(),
            "just written: not settled"
        );
        let later = now + FILE_SETTLED_AFTER + Duration::from_millis(50);
        let version = FileVersion::settled(&file, later).expect("settled by then");
        assert!(version.still(&file));
        // Same length, same modification time set back: the status-change time still moves
        // (once the coarse clock file times come from has ticked).
        std::thread::sleep(Duration::from_millis(20));
        let modified = file.metadata().and_then(|m| m.modified()).expect("mtime");
        std::fs::write(&path, b"other").expect("rewrite");
        let rewritten = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open to write");
        rewritten.set_modified(modified).expect("set mtime back");
        assert!(!version.still(&file), "a write is a new version");
        let _ = std::fs::remove_file(&path);
    }
}
