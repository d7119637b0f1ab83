//! `Encode`/`Decode` for sequences, arrays, maps and sets.
//!
//! Owns: counts validated before allocation, nesting depth for containers, and the canonical
//! (sorted by encoded key bytes) order of hash-based collections.
//! Must not: let iteration order of a `HashMap`/`HashSet` leak into the bytes, or accept a map
//! with a repeated key (decoding then re-encoding must give the same bytes).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

use super::varint::write_varint;
use super::{capacity_for, Decode, Encode, Error, ErrorKind, Reader};

impl<T: Encode> Encode for [T] {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len() as u64);
        T::encode_slice(self, out);
    }
}

impl<T: Encode> Encode for Vec<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_slice().encode(out);
    }
}

/// Reads a count then that many elements, one nesting level deeper.
#[inline]
fn decode_counted<T: Decode>(r: &mut Reader<'_>) -> Result<Vec<T>, Error> {
    r.nested(|r| {
        let count = r.read_count(T::ENCODED_BYTES_MIN)?;
        T::decode_vec(r, count)
    })
}

impl<T: Decode> Decode for Vec<T> {
    const ENCODED_BYTES_MIN: usize = 1;

    #[inline]
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_counted(r)
    }
}

impl<T: Decode> Decode for Box<[T]> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_counted(r).map(Vec::into_boxed_slice)
    }
}

impl<T: Encode> Encode for VecDeque<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len() as u64);
        let (front, back) = self.as_slices();
        T::encode_slice(front, out);
        T::encode_slice(back, out);
    }
}

impl<T: Decode> Decode for VecDeque<T> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_counted(r).map(VecDeque::from)
    }
}

/// Arrays: exactly N elements, no count (N is part of the type).
impl<T: Encode, const N: usize> Encode for [T; N] {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        T::encode_slice(self, out);
    }
}

impl<T: Decode, const N: usize> Decode for [T; N] {
    const ENCODED_BYTES_MIN: usize = N * T::ENCODED_BYTES_MIN;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let items = r.nested(|r| T::decode_vec(r, N))?;
        match <[T; N]>::try_from(items) {
            Ok(array) => Ok(array),
            Err(items) => panic!(
                "decode_vec returned {} elements, asked for {N}",
                items.len()
            ),
        }
    }
}

/// Writes `count` then the items in canonical order: each item is encoded into a scratch
/// buffer, and the items are sorted by their key bytes (ties, impossible for an injective key
/// encoding, broken by the whole item's bytes), so the output never depends on hash order.
fn encode_canonical<I: Iterator>(
    items: I,
    count: usize,
    out: &mut Vec<u8>,
    mut encode_item: impl FnMut(I::Item, &mut Vec<u8>) -> usize,
) {
    write_varint(out, count as u64);
    let mut scratch = Vec::new();
    // (item start, key end, item end) into `scratch`.
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(count);
    for item in items {
        let start = scratch.len();
        let key_len = encode_item(item, &mut scratch);
        spans.push((start, start + key_len, scratch.len()));
    }
    assert_eq!(
        spans.len(),
        count,
        "collection length changed while encoding"
    );
    spans.sort_unstable_by(|a, b| {
        let key_order = scratch[a.0..a.1].cmp(&scratch[b.0..b.1]);
        key_order.then_with(|| scratch[a.0..a.2].cmp(&scratch[b.0..b.2]))
    });
    out.reserve(scratch.len());
    for (start, _, end) in spans {
        out.extend_from_slice(&scratch[start..end]);
    }
}

impl<K: Encode, V: Encode, S> Encode for HashMap<K, V, S> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_canonical(self.iter(), self.len(), out, |(key, value), scratch| {
            let start = scratch.len();
            key.encode(scratch);
            let key_len = scratch.len() - start;
            value.encode(scratch);
            key_len
        });
    }
}

impl<T: Encode, S> Encode for HashSet<T, S> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_canonical(self.iter(), self.len(), out, |item, scratch| {
            let start = scratch.len();
            item.encode(scratch);
            scratch.len() - start
        });
    }
}

impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len() as u64);
        for (key, value) in self {
            key.encode(out);
            value.encode(out);
        }
    }
}

impl<T: Encode> Encode for BTreeSet<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len() as u64);
        for item in self {
            item.encode(out);
        }
    }
}

/// A map or set being filled by the decoder, which accepts only the canonical encoding: keys
/// strictly increasing in the collection's encoding order. A set is a map to `()`.
trait Fill<K, V> {
    /// Makes room for `additional` entries (already bounded by the input size).
    fn make_room(&mut self, additional: usize);
    /// Adds an entry whose key encoded to `key_bytes`; `previous_key_bytes` is the previous
    /// entry's key encoding (`None` for the first entry).
    fn insert_in_order(
        &mut self,
        entry: (K, V),
        key_bytes: &[u8],
        previous_key_bytes: Option<&[u8]>,
    ) -> Result<(), ErrorKind>;
}

/// Canonical order of hash collections: by encoded key bytes.
fn check_byte_order(key_bytes: &[u8], previous_key_bytes: Option<&[u8]>) -> Result<(), ErrorKind> {
    match previous_key_bytes.map(|previous| key_bytes.cmp(previous)) {
        None | Some(Ordering::Greater) => Ok(()),
        Some(Ordering::Equal) => Err(ErrorKind::DuplicateKey),
        Some(Ordering::Less) => Err(ErrorKind::UnsortedKeys),
    }
}

/// Canonical order of tree collections: by `Ord`, strictly after the current last key.
fn check_ord_order<K: Ord>(key: &K, last: Option<&K>) -> Result<(), ErrorKind> {
    match last.map(|last| key.cmp(last)) {
        None | Some(Ordering::Greater) => Ok(()),
        Some(Ordering::Equal) => Err(ErrorKind::DuplicateKey),
        Some(Ordering::Less) => Err(ErrorKind::UnsortedKeys),
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> Fill<K, V> for HashMap<K, V, S> {
    fn make_room(&mut self, additional: usize) {
        self.reserve(additional);
    }
    fn insert_in_order(
        &mut self,
        (key, value): (K, V),
        key_bytes: &[u8],
        previous: Option<&[u8]>,
    ) -> Result<(), ErrorKind> {
        check_byte_order(key_bytes, previous)?;
        // Distinct bytes may still decode to equal keys under a hand-written Decode.
        match self.insert(key, value) {
            None => Ok(()),
            Some(_) => Err(ErrorKind::DuplicateKey),
        }
    }
}

impl<T: Eq + Hash, S: BuildHasher> Fill<T, ()> for HashSet<T, S> {
    fn make_room(&mut self, additional: usize) {
        self.reserve(additional);
    }
    fn insert_in_order(
        &mut self,
        (item, ()): (T, ()),
        key_bytes: &[u8],
        previous: Option<&[u8]>,
    ) -> Result<(), ErrorKind> {
        check_byte_order(key_bytes, previous)?;
        if self.insert(item) {
            Ok(())
        } else {
            Err(ErrorKind::DuplicateKey)
        }
    }
}

impl<K: Ord, V> Fill<K, V> for BTreeMap<K, V> {
    fn make_room(&mut self, _additional: usize) {}
    fn insert_in_order(
        &mut self,
        (key, value): (K, V),
        _: &[u8],
        _: Option<&[u8]>,
    ) -> Result<(), ErrorKind> {
        check_ord_order(&key, self.last_key_value().map(|(last, _)| last))?;
        self.insert(key, value);
        Ok(())
    }
}

impl<T: Ord> Fill<T, ()> for BTreeSet<T> {
    fn make_room(&mut self, _additional: usize) {}
    fn insert_in_order(
        &mut self,
        (item, ()): (T, ()),
        _: &[u8],
        _: Option<&[u8]>,
    ) -> Result<(), ErrorKind> {
        check_ord_order(&item, self.last())?;
        self.insert(item);
        Ok(())
    }
}

/// Reads a count then that many entries into `target`, one nesting level deeper. Only the
/// canonical order is accepted, so decoding then encoding gives back the input bytes (a
/// repeated or out-of-order key would otherwise give two encodings of one map).
fn decode_entries<K: Decode, V: Decode, C: Fill<K, V>>(
    r: &mut Reader<'_>,
    mut target: C,
) -> Result<C, Error> {
    r.nested(|r| {
        let count = r.read_count(K::ENCODED_BYTES_MIN + V::ENCODED_BYTES_MIN)?;
        target.make_room(capacity_for::<(K, V)>(count, r.remaining()));
        let mut previous_key_bytes: Option<&[u8]> = None;
        for index in 0..count {
            let mut key_start = r.clone();
            let key_offset = r.offset();
            let key = K::decode(r).map_err(|e| e.with_index(index))?;
            let key_len = key_start.remaining() - r.remaining();
            let key_bytes = key_start.read_bytes(key_len)?;
            let value = V::decode(r).map_err(|e| e.with_index(index))?;
            target
                .insert_in_order((key, value), key_bytes, previous_key_bytes)
                .map_err(|kind| Error::at(kind, key_offset).with_index(index))?;
            previous_key_bytes = Some(key_bytes);
        }
        Ok(target)
    })
}

impl<K, V, S> Decode for HashMap<K, V, S>
where
    K: Decode + Eq + Hash,
    V: Decode,
    S: BuildHasher + Default,
{
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_entries::<K, V, _>(r, HashMap::with_hasher(S::default()))
    }
}

impl<T, S> Decode for HashSet<T, S>
where
    T: Decode + Eq + Hash,
    S: BuildHasher + Default,
{
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_entries::<T, (), _>(r, HashSet::with_hasher(S::default()))
    }
}

impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_entries::<K, V, _>(r, BTreeMap::new())
    }
}

impl<T: Decode + Ord> Decode for BTreeSet<T> {
    const ENCODED_BYTES_MIN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        decode_entries::<T, (), _>(r, BTreeSet::new())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{from_slice, kind_of, to_vec};
    use super::*;

    #[test]
    fn sequences_are_counted() {
        assert_eq!(to_vec(&vec![1u8, 2, 3]), [3, 1, 2, 3]);
        assert_eq!(to_vec(&vec![300u16]), [1, 0xac, 0x02]);
        assert_eq!(to_vec(&[true, false][..]), [2, 1, 0]);
        let deque: VecDeque<u32> = (0..5).collect();
        assert_eq!(to_vec(&deque), [5, 0, 1, 2, 3, 4]);
        assert_eq!(from_slice::<VecDeque<u32>>(&[5, 0, 1, 2, 3, 4]), Ok(deque));
        assert_eq!(from_slice::<Vec<u8>>(&[2, 9, 8]), Ok(vec![9, 8]));
        assert_eq!(
            from_slice::<Box<[i8]>>(&[1, 1]),
            Ok(vec![-1i8].into_boxed_slice())
        );
    }

    #[test]
    fn arrays_have_no_count() {
        assert_eq!(to_vec(&[7u8; 4]), [7, 7, 7, 7]);
        assert_eq!(from_slice::<[u16; 2]>(&[1, 0xac, 0x02]), Ok([1, 300]));
        assert_eq!(from_slice::<[u8; 0]>(&[]), Ok([]));
        assert!(matches!(
            kind_of::<[u8; 3]>(&[1, 2]),
            ErrorKind::UnexpectedEnd { .. }
        ));
    }

    #[test]
    fn hostile_counts_fail_before_allocation() {
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            kind_of::<Vec<u64>>(&huge),
            ErrorKind::LengthTooLarge { .. }
        ));
        assert!(matches!(
            kind_of::<Vec<u8>>(&huge),
            ErrorKind::LengthTooLarge { .. }
        ));
        assert!(matches!(
            kind_of::<Vec<()>>(&huge),
            ErrorKind::LengthTooLarge { .. }
        ));
        assert!(matches!(
            kind_of::<HashMap<u32, f64>>(&[2, 1, 0]),
            ErrorKind::LengthTooLarge { .. }
        ));
        assert_eq!(
            from_slice::<Vec<()>>(&[0xff, 0x7f]).map(|v| v.len()),
            Ok(16_383)
        );
    }

    #[test]
    fn hash_collections_encode_in_canonical_order() {
        let mut forward = HashMap::new();
        let mut backward = HashMap::new();
        for i in 0..200u32 {
            forward.insert(format!("k{i}"), i);
            backward.insert(format!("k{}", 199 - i), 199 - i);
        }
        let bytes = to_vec(&forward);
        assert_eq!(bytes, to_vec(&backward));
        assert_eq!(from_slice::<HashMap<String, u32>>(&bytes), Ok(forward));
        let set: HashSet<u64> = [300, 1, 2].into_iter().collect();
        assert_eq!(
            to_vec(&set),
            [3, 1, 2, 0xac, 0x02],
            "sorted by encoded bytes"
        );
        let tree: BTreeMap<u8, bool> = [(2, true), (1, false)].into_iter().collect();
        assert_eq!(to_vec(&tree), [2, 1, 0, 2, 1]);
        let tree_set: BTreeSet<i32> = [-1, 1].into_iter().collect();
        assert_eq!(
            from_slice::<BTreeSet<i32>>(&to_vec(&tree_set)),
            Ok(tree_set)
        );
    }

    #[test]
    fn only_the_canonical_key_order_is_accepted() {
        let error = from_slice::<BTreeMap<u8, u8>>(&[2, 1, 5, 1, 6]).expect_err("dup");
        assert_eq!(error.kind(), &ErrorKind::DuplicateKey);
        assert_eq!(error.path(), "[1]");
        assert_eq!(error.offset(), Some(3));
        assert_eq!(kind_of::<HashSet<u8>>(&[2, 4, 4]), ErrorKind::DuplicateKey);
        assert_eq!(
            kind_of::<BTreeSet<u16>>(&[2, 4, 3]),
            ErrorKind::UnsortedKeys
        );
        assert_eq!(
            kind_of::<HashMap<u8, bool>>(&[2, 4, 1, 3, 0]),
            ErrorKind::UnsortedKeys
        );
        // 256 sorts before 255 by bytes ([0x80, 0x02] < [0xff, 0x01]) but after it by Ord.
        let hash_order = [2, 0x80, 0x02, 0xff, 0x01];
        assert_eq!(
            from_slice::<HashSet<u16>>(&hash_order).map(|s| s.len()),
            Ok(2)
        );
        assert_eq!(
            kind_of::<BTreeSet<u16>>(&hash_order),
            ErrorKind::UnsortedKeys
        );
        let tree_order = [2, 0xff, 0x01, 0x80, 0x02];
        assert_eq!(
            from_slice::<BTreeSet<u16>>(&tree_order).map(|s| s.len()),
            Ok(2)
        );
        assert_eq!(
            kind_of::<HashSet<u16>>(&tree_order),
            ErrorKind::UnsortedKeys
        );
    }

    #[test]
    fn element_errors_carry_their_index() {
        let error = from_slice::<Vec<bool>>(&[3, 1, 0, 5]).expect_err("bad bool");
        assert_eq!(error.path(), "[2]");
        assert_eq!(
            error.to_string(),
            "$[2]: invalid bool byte 5 (expected 0 or 1) at byte 3"
        );
    }

    #[test]
    fn nesting_depth_is_limited() {
        // Nested one-element vectors of vectors... built by hand: each level is a count 1,
        // one level more than the limit.
        let levels = super::super::DEPTH_MAX as usize + 1;
        let mut bytes = vec![1u8; levels];
        bytes.push(0);
        type Deep = Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<u8>>>>>>>>;
        assert!(from_slice::<Deep>(&bytes[levels - 8..]).is_ok());
        // DEPTH_MAX - 1 counts of 1 and the final 0: DEPTH_MAX levels, the most accepted.
        let mut r = Reader::new(&bytes[2..]);
        assert_eq!(
            nest_vectors(&mut r, 0).ok(),
            Some(levels as u32 - 2),
            "at the limit"
        );
        let mut r = Reader::new(&bytes);
        let result = nest_vectors(&mut r, 0);
        assert!(matches!(
            result.expect_err("too deep").kind(),
            ErrorKind::DepthLimit { .. }
        ));
    }

    /// Decodes vectors nested as deep as the bytes say, the way a recursive type would.
    fn nest_vectors(r: &mut Reader<'_>, level: u32) -> Result<u32, Error> {
        r.nested(|r| {
            let count = r.read_count(1)?;
            if count == 0 {
                return Ok(level);
            }
            nest_vectors(r, level + 1)
        })
    }
}
