//! `Chunked<T>`: a vector held in reference-counted chunks, so that a clone shares every full
//! chunk (one reference count each) and copies only the short tail after them, and a change
//! afterwards copies only the chunk it touches.
//!
//! Why: the committed state is copied under its read lock (a snapshot of a state that clones
//! cheaply, the sequencer's copy after a leader change), and the applier waits for that lock.
//! The idempotency window's ring of keys is the bulk of that copy (10 MB for the default
//! 100,000 keys): copied slot by slot, a copy of the window took 1.4–1.9 ms (`cargo bench
//! --bench window`: `clone`); in chunks it is a hundred reference counts and a tail of at most
//! a chunk, and the applier copies the chunks its next writes take, once each, outside any
//! lock.
//!
//! Owns: the chunk layout (full chunks of `1 << shift` elements, then an owned, shorter tail).
//! Must not: know what it holds.

use std::sync::Arc;

/// A vector in shared chunks (see the module doc).
/// INVARIANT: every chunk holds exactly `1 << shift` elements; the elements after the last
/// full chunk are in `tail`, which is shorter.
#[derive(Debug, Clone)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    /// The elements after the chunks, owned: appending to it counts no references (a clone
    /// copies it, at most a chunk's worth).
    tail: Vec<T>,
    shift: u32,
}

impl<T: Clone> Chunked<T> {
    /// An empty vector whose chunks will hold `1 << shift` elements.
    pub(crate) fn new(shift: u32) -> Chunked<T> {
        assert!(shift < usize::BITS, "chunks of 2^{shift} elements");
        Chunked {
            chunks: Vec::new(),
            tail: Vec::new(),
            shift,
        }
    }

    /// Elements a full chunk holds.
    fn chunk_len(&self) -> usize {
        1 << self.shift
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        (self.chunks.len() << self.shift) + self.tail.len()
    }

    /// The element at `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &T {
        let (chunk, offset) = (index >> self.shift, index & (self.chunk_len() - 1));
        match self.chunks.get(chunk) {
            Some(full) => &full[offset],
            // Past the chunks: the tail's, or out of bounds (the indexing panics).
            None => &self.tail[index - (self.chunks.len() << self.shift)],
        }
    }

    /// The element at `index`, to change: its chunk is copied first if a clone shares it.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    #[inline]
    pub(crate) fn get_mut(&mut self, index: usize) -> &mut T {
        let (chunk, offset) = (index >> self.shift, index & (self.chunk_len() - 1));
        let start_of_tail = self.chunks.len() << self.shift;
        match self.chunks.get_mut(chunk) {
            Some(full) => &mut Arc::make_mut(full)[offset],
            None => &mut self.tail[index - start_of_tail],
        }
    }

    /// Appends `value`. `final_len` is the most elements this vector will ever hold (or
    /// more): the tail is allocated once per chunk, no larger than that needs, and a full
    /// tail becomes a chunk without being copied.
    pub(crate) fn push(&mut self, value: T, final_len: usize) {
        let len = self.len();
        assert!(final_len > len, "a push past the final length");
        if self.tail.capacity() == 0 {
            self.tail
                .reserve_exact((final_len - len).min(self.chunk_len()));
        }
        self.tail.push(value);
        if self.tail.len() == self.chunk_len() {
            self.chunks.push(Arc::new(std::mem::take(&mut self.tail)));
        }
    }

    /// The elements in order (tests list them).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .chain(&self.tail)
    }

    /// Whether the chunk holding `index` is shared with a clone (tests check what a change
    /// copies).
    #[cfg(test)]
    pub(crate) fn shares_chunk_with(&self, other: &Chunked<T>, index: usize) -> bool {
        let chunk = index >> self.shift;
        match (self.chunks.get(chunk), other.chunks.get(chunk)) {
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
            _ => false, // a tail is never shared
        }
    }

    /// Allocated element capacity (tests check that nothing is reallocated).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.chunks
            .iter()
            .map(|chunk| chunk.capacity())
            .sum::<usize>()
            + self.tail.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_where_they_were_put_across_chunks() {
        let mut pushed = Chunked::new(2);
        for value in 0..11u32 {
            pushed.push(value, 11);
        }
        assert_eq!(pushed.len(), 11);
        assert_eq!(
            pushed.iter().copied().collect::<Vec<_>>(),
            (0..11).collect::<Vec<_>>()
        );
        assert_eq!(
            pushed.capacity(),
            11,
            "the tail is sized to the final length"
        );
        for index in 0..11 {
            assert_eq!(*pushed.get(index), index as u32);
        }
        assert_eq!(Chunked::<u8>::new(2).iter().count(), 0);
    }

    #[test]
    fn a_change_after_a_clone_copies_only_its_chunk() {
        let mut original = Chunked::new(2);
        for _ in 0..12 {
            original.push(0u64, 12);
        }
        let copy = original.clone();
        *original.get_mut(5) = 9;
        assert_eq!(*original.get(5), 9);
        assert_eq!(*copy.get(5), 0, "the clone keeps its value");
        assert!(!original.shares_chunk_with(&copy, 5));
        assert!(original.shares_chunk_with(&copy, 0));
        assert!(original.shares_chunk_with(&copy, 11));
        // Unshared now: a second change copies nothing more.
        *original.get_mut(6) = 3;
        assert_eq!(*copy.get(6), 0);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn an_index_out_of_bounds_panics() {
        let mut chunked = Chunked::new(3);
        for value in 0..4u8 {
            chunked.push(value, 8);
        }
        let _ = chunked.get(4);
    }
}
