//! `Map`: a JSON object as an insertion-ordered vector of (key, value) pairs.
//!
//! A vector keeps order for free, is compact, and is fastest for the small objects JSON is made
//! of; `get` compares lengths and first bytes before whole keys. Must not: reorder entries.

use super::Value;

/// An insertion-ordered JSON object.
#[derive(Clone, Default)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

#[inline]
fn same_key(candidate: &str, key: &str) -> bool {
    // Length and first byte reject almost every mismatch without a full comparison.
    candidate.len() == key.len()
        && candidate.as_bytes().first() == key.as_bytes().first()
        && candidate == key
}

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Map {
            entries: Vec::new(),
        }
    }

    /// An empty map with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Map {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Builds a map from entries as they are (the caller guarantees keys are unique).
    pub(crate) fn from_entries_unchecked(entries: Vec<(String, Value)>) -> Self {
        Map { entries }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Position of `key`, if present.
    #[inline]
    pub fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| same_key(k, key))
    }

    /// The value under `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`. An existing key keeps its position and the old value is returned;
    /// a new key goes last.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        match self.position(&key) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, keeping the order of the others; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.position(key)?;
        Some(self.entries.remove(i).1)
    }

    /// The entry at `index` in insertion order.
    pub fn get_index(&self, index: usize) -> Option<(&str, &Value)> {
        self.entries.get(index).map(|(k, v)| (k.as_str(), v))
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Value)> + '_ {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Entries in insertion order, values mutable.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&String, &mut Value)> + '_ {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> + '_ {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in insertion order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The entries as a slice, in insertion order.
    pub fn as_slice(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl PartialEq for Map {
    /// Objects are equal when they hold the same keys with equal values, in any order.
    fn eq(&self, other: &Map) -> bool {
        if self.len() != other.len() {
            return false;
        }
        if self.entries == other.entries {
            return true;
        }
        self.entries
            .iter()
            .all(|(k, v)| other.get(k).is_some_and(|w| v == w))
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Map {
    /// Later duplicates replace earlier values (keeping the first position).
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut map = Map::new();
        map.extend(iter);
        map
    }
}

impl<K: Into<String>> Extend<(K, Value)> for Map {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'m> IntoIterator for &'m Map {
    type Item = &'m (String, Value);
    type IntoIter = std::slice::Iter<'m, (String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_keeps_order_and_position() {
        let mut map = Map::new();
        assert_eq!(map.insert("b", Value::Bool(true)), None);
        assert_eq!(map.insert("a", Value::Null), None);
        assert_eq!(map.insert("b", Value::Null), Some(Value::Bool(true)));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(map.remove("b"), Some(Value::Null));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a"]);
        assert!(map.get("zz").is_none());
    }

    #[test]
    fn equality_ignores_order() {
        let one: Map = [("a", Value::Null), ("b", Value::Bool(false))]
            .into_iter()
            .collect();
        let two: Map = [("b", Value::Bool(false)), ("a", Value::Null)]
            .into_iter()
            .collect();
        let three: Map = [("b", Value::Bool(true)), ("a", Value::Null)]
            .into_iter()
            .collect();
        assert_eq!(one, two);
        assert_ne!(one, three);
    }
}
