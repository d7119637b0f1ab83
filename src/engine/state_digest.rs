//! State digests: the function that computes a state's digest from scratch
//! ([`digest`]), and [`MultisetHash`], the order-independent sum a large state keeps up in
//! `apply` so that its digest ([`State::digest`]) costs no pass over the state.
//!
//! Owns: what "the digest of a state" means (equal for equal states, whatever the history that
//! built them: insert order, updates then deletes, replay, a snapshot loaded or installed) and
//! the count of full recomputations ([`full_digests`]), which lets a test check that a path
//! (the cluster status) never makes one.
//! Must not: hold a state-sized buffer (a full recomputation hashes the pieces of
//! `State::encode_spilled`, or whatever a state's `digest_from_scratch` walks).

use super::state::State;
use crate::binary;
use crate::crypto::sha256::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of a state digest.
pub const DIGEST_BYTES: usize = 32;

/// Lanes of a [`MultisetHash`]: a SHA-256 digest read as this many little-endian `u64`s.
pub const MULTISET_LANES: usize = DIGEST_BYTES / 8;

/// Full recomputations of a state digest made by this process ([`digest`] calls).
static FULL_DIGESTS: AtomicU64 = AtomicU64::new(0);

/// The state digest computed from the whole state ([`State::digest_from_scratch`]): a pass
/// over every record, O(state). Two states that are equal have equal digests, whatever
/// history built each one, so comparing digests is how replays (`replay` prints it) and
/// replicas (every `/_lithair/cluster` answer carries one) are checked against each other.
///
/// What the digest hashes is the state's to say: by default SHA-256 of its binary encoding
/// (see [`encoding_digest`]); an `AppState` hashes the kept sums of its collections (see
/// `app::state`), which it can also answer without the pass ([`State::digest`]). This
/// function is the reference the kept digest is checked against (`Engine::digest` asserts
/// that the two agree), never what a status answer computes.
pub fn digest<S: State>(state: &S) -> [u8; DIGEST_BYTES] {
    FULL_DIGESTS.fetch_add(1, Ordering::Relaxed);
    state.digest_from_scratch()
}

/// How many full recomputations ([`digest`]) this process has made: a test reads it before
/// and after a path that must not pass over the whole state (a status answer).
pub fn full_digests() -> u64 {
    FULL_DIGESTS.load(Ordering::Relaxed)
}

/// SHA-256 of the binary encoding of the state, the default [`State::digest_from_scratch`]:
/// equal for equal states as long as the encoding is deterministic (e.g. ordered maps).
///
/// Hashed from the two passes of [`State::encode_spilled`] (the bytes of
/// [`binary::Encode::encode`]), so it holds at most a piece of the encoding, never a copy the
/// size of the state.
pub fn encoding_digest<S: State>(state: &S) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha256::new();
    let mut feed = |piece: &[u8]| {
        hasher.update(piece);
        Ok(())
    };
    binary::spill_through(|spill| state.encode_spilled(spill), &mut feed);
    hasher.finalize()
}

/// A digest as lowercase hex, for printing.
pub fn digest_hex(digest: &[u8; DIGEST_BYTES]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An order-independent digest of a multiset of items (an additive hash, "AdHash" of Bellare
/// and Micciancio): each item is hashed to SHA-256 by the caller ([`MultisetHash::item`]), the
/// digest is read as four 64-bit lanes, and the lanes are summed mod 2^64, with the number of
/// items beside them. Adding or removing an item costs one SHA-256 of it, whatever the number
/// of items; a set reached by any sequence of adds and removes has the sum of its items alone.
///
/// What it is for: telling whether two replicas that should hold the same items diverged (an
/// item missing, extra or changed moves the sum; two different sets of honest items share a
/// sum with negligible probability). What it is not for: an adversary choosing the items.
/// Sums of hashes admit constructed collisions far below the work of a SHA-256 collision
/// (Wagner's generalized birthday attack), so it must never stand for a commitment to data
/// someone else controls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MultisetHash {
    lanes: [u64; MULTISET_LANES],
    count: u64,
}

impl MultisetHash {
    /// The sum of no items.
    pub const EMPTY: MultisetHash = MultisetHash {
        lanes: [0; MULTISET_LANES],
        count: 0,
    };

    /// The hash of one item written by `write` into a SHA-256 (which the caller feeds with an
    /// unambiguous encoding of the item: length-prefixed or self-delimiting parts).
    pub fn item(write: impl FnOnce(&mut Sha256)) -> [u8; DIGEST_BYTES] {
        let mut hasher = Sha256::new();
        write(&mut hasher);
        hasher.finalize()
    }

    /// Adds an item of hash `item` (from [`MultisetHash::item`]).
    pub fn add(&mut self, item: &[u8; DIGEST_BYTES]) {
        for (lane, word) in self.lanes.iter_mut().zip(words(item)) {
            *lane = lane.wrapping_add(word);
        }
        self.count += 1;
    }

    /// Removes an item of hash `item`, which was added before.
    ///
    /// # Panics
    /// If the multiset is empty: a removal without its add is a broken invariant of the caller.
    pub fn remove(&mut self, item: &[u8; DIGEST_BYTES]) {
        assert!(
            self.count > 0,
            "an item removed from an empty multiset hash"
        );
        for (lane, word) in self.lanes.iter_mut().zip(words(item)) {
            *lane = lane.wrapping_sub(word);
        }
        self.count -= 1;
    }

    /// Number of items.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Feeds the sum (count, then lanes, little-endian) into `hasher`: the part of a digest
    /// that stands for the items.
    pub fn write_to(&self, hasher: &mut Sha256) {
        hasher.update(&self.count.to_le_bytes());
        for lane in self.lanes {
            hasher.update(&lane.to_le_bytes());
        }
    }
}

/// The lanes of an item hash.
fn words(item: &[u8; DIGEST_BYTES]) -> impl Iterator<Item = u64> + '_ {
    item.chunks_exact(8).map(|word| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        u64::from_le_bytes(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(n: u8) -> [u8; DIGEST_BYTES] {
        MultisetHash::item(|h| h.update(&[n]))
    }

    #[test]
    fn removing_what_was_added_gives_back_the_empty_sum() {
        let mut sum = MultisetHash::EMPTY;
        sum.add(&item(1));
        sum.add(&item(2));
        assert_ne!(sum, MultisetHash::EMPTY);
        sum.remove(&item(1));
        sum.remove(&item(2));
        assert_eq!(sum, MultisetHash::EMPTY);
    }

    #[test]
    fn a_repeated_item_counts_twice() {
        let (mut once, mut twice) = (MultisetHash::EMPTY, MultisetHash::EMPTY);
        once.add(&item(1));
        twice.add(&item(1));
        twice.add(&item(1));
        assert_ne!(once, twice);
        twice.remove(&item(1));
        assert_eq!(once, twice);
    }

    #[test]
    #[should_panic(expected = "empty multiset")]
    fn removing_from_nothing_stops() {
        let mut sum = MultisetHash::EMPTY;
        sum.remove(&item(1));
    }

    proptest! {
        /// Any order of adds reaches the same sum; a different set reaches another.
        #[test]
        fn the_sum_is_independent_of_order(items in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut forward = MultisetHash::EMPTY;
            let mut backward = MultisetHash::EMPTY;
            for &n in &items {
                forward.add(&item(n));
            }
            for &n in items.iter().rev() {
                backward.add(&item(n));
            }
            prop_assert_eq!(forward, backward);
            let mut other = forward;
            other.add(&item(0));
            prop_assert_ne!(other, forward);
        }
    }
}
