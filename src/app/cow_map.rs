//! `CowMap`: a sorted map whose `clone` is O(1), for the record stores of `Collection`.
//!
//! Owns: a B+ tree of reference-counted nodes, copied on write. A clone shares every node
//! with the original; a change to either copies only the nodes on its path that are still
//! shared (`Arc::make_mut`), so two copies that each changed a few records share the rest.
//! Must not: know what it stores (records and index entries are just keys and values).
//!
//! Why: the engine keeps two copies of the state on a leader (the committed state and the
//! sequencer's speculative copy, see `engine::core`), and builds the second one when a node
//! is admitted to lead and on every sequencer rebuild. With a deep copy that took ~0.5 s for a
//! million bench items, during which the new leader wrote nothing, and doubled the memory of
//! the records. A structural copy takes a reference count, and memory grows only with the
//! records the two copies changed since.
//!
//! The tree: leaves hold up to [`NODE_MAX`] entries in key order, inner nodes up to
//! [`NODE_MAX`] children and one separator less. INVARIANTS (checked by `check` in tests):
//! every leaf is at the same depth; `children[i]` holds only keys `k` with
//! `separators[i - 1] <= k < separators[i]`; keys are strictly increasing along the leaves;
//! `len` counts the entries. A separator may be a key that has since been removed: it still
//! separates. A removal that leaves a node below [`NODE_MIN`] merges it with a sibling, or
//! evens the two out when they do not fit in one node; an append at the right edge of the
//! tree (ids assigned in order) splits off a node of one so the left one stays full. So a
//! node stays short only beside a short sibling or at the right edge; occupancy is a matter
//! of memory and depth, never of correctness, and is not an invariant.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Most entries of a leaf and most children of an inner node. A copy on write copies one node
/// per level, and a lookup scans a node's keys in order (sequential reads the prefetcher
/// follows, which beat a binary search's scattered ones at this width): wider nodes make the
/// tree shallower but those copies and scans longer. 32 measured best of 16, 32 and 48 with
/// `cargo bench --bench state` (lookups, creates in order, changes after a clone).
pub const NODE_MAX: usize = 32;

/// Fewest entries (children) a node keeps after a removal rebalanced it with a sibling.
pub const NODE_MIN: usize = NODE_MAX / 4;

/// Slots of a node: one more than [`NODE_MAX`], for the entry that makes a node split.
const SLOTS: usize = NODE_MAX + 1;

/// A sorted map with O(1) clones (see the module doc).
pub struct CowMap<K, V> {
    root: Option<Arc<Node<K, V>>>,
    len: usize,
}

/// Up to [`SLOTS`] values in order, inline in their node (a `Vec` would cost every level of a
/// lookup one more dependent memory read). INVARIANT: `items[..len]` are `Some`, the rest
/// `None`.
#[derive(Clone)]
struct Slots<T> {
    len: usize,
    items: [Option<T>; SLOTS],
}

impl<T> Slots<T> {
    fn new() -> Self {
        Slots {
            len: 0,
            items: std::array::from_fn(|_| None),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, at: usize) -> &T {
        assert!(at < self.len, "slot {at} of {}", self.len);
        self.items[at].as_ref().expect("a slot below len is full")
    }

    fn get_mut(&mut self, at: usize) -> &mut T {
        assert!(at < self.len, "slot {at} of {}", self.len);
        self.items[at].as_mut().expect("a slot below len is full")
    }

    fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.items[..self.len]
            .iter()
            .map(|item| item.as_ref().expect("a slot below len is full"))
    }

    fn insert(&mut self, at: usize, value: T) {
        assert!(
            at <= self.len && self.len < SLOTS,
            "insert at {at} of {}",
            self.len
        );
        self.items[at..=self.len].rotate_right(1);
        self.items[at] = Some(value);
        self.len += 1;
    }

    fn push(&mut self, value: T) {
        self.insert(self.len, value);
    }

    fn remove(&mut self, at: usize) -> T {
        assert!(at < self.len, "remove at {at} of {}", self.len);
        let value = self.items[at].take().expect("a slot below len is full");
        self.items[at..self.len].rotate_left(1);
        self.len -= 1;
        value
    }

    fn pop(&mut self) -> Option<T> {
        let last = self.len.checked_sub(1)?;
        Some(self.remove(last))
    }

    /// The values at `at` and `at + 1`, both to change.
    fn pair_mut(&mut self, at: usize) -> (&mut T, &mut T) {
        assert!(at + 1 < self.len, "pair at {at} of {}", self.len);
        let (left, right) = self.items.split_at_mut(at + 1);
        let full = "a slot below len is full";
        (
            left[at].as_mut().expect(full),
            right[0].as_mut().expect(full),
        )
    }

    /// Moves the values from `at` on into a new `Slots`.
    fn split_off(&mut self, at: usize) -> Slots<T> {
        assert!(at <= self.len, "split at {at} of {}", self.len);
        let mut right = Slots::new();
        for item in &mut self.items[at..self.len] {
            right.push(item.take().expect("a slot below len is full"));
        }
        self.len = at;
        right
    }

    /// Moves every value of `more` after these.
    fn append(&mut self, more: Slots<T>) {
        for item in more.items.into_iter().take(more.len) {
            self.push(item.expect("a slot below len is full"));
        }
    }
}

/// A node's children.
type Children<K, V> = Slots<Arc<Node<K, V>>>;

// Every node lives in an `Arc` of its own, so the enum's size is the allocation's; its slots
// are inline on purpose (see `Slots`), and a leaf's values are usually as wide as children.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Node<K, V> {
    Leaf {
        keys: Slots<K>,
        values: Slots<V>,
    },
    Inner {
        separators: Slots<K>,
        children: Children<K, V>,
    },
}

/// The child of an inner node whose range holds `key`: the first one whose separator on
/// the right is above it. A key past the last separator (ids assigned in order: every create)
/// is settled by one comparison instead of a scan of them all.
fn child_for<K: Borrow<Q>, Q: Ord + ?Sized>(separators: &Slots<K>, key: &Q) -> usize {
    let count = separators.len();
    if count == 0 || separators.get(count - 1).borrow() <= key {
        return count;
    }
    separators
        .iter()
        .position(|separator| separator.borrow() > key)
        .unwrap_or(count)
}

/// Where `key` is among a leaf's keys (`Ok`), or where it would go (`Err`). A key past the
/// last one (an append) is settled by one comparison, as in [`child_for`].
fn leaf_slot<K: Borrow<Q>, Q: Ord + ?Sized>(keys: &Slots<K>, key: &Q) -> Result<usize, usize> {
    let count = keys.len();
    if count == 0 || keys.get(count - 1).borrow() < key {
        return Err(count);
    }
    match keys.iter().position(|k| k.borrow() >= key) {
        Some(at) if keys.get(at).borrow() == key => Ok(at),
        Some(at) => Err(at),
        None => Err(keys.len()),
    }
}

impl<K, V> Node<K, V> {
    fn new_leaf() -> Self {
        Node::Leaf {
            keys: Slots::new(),
            values: Slots::new(),
        }
    }

    /// Entries of a leaf, children of an inner node.
    fn width(&self) -> usize {
        match self {
            Node::Leaf { keys, .. } => keys.len(),
            Node::Inner { children, .. } => children.len(),
        }
    }
}

impl<K: Clone, V: Clone> Node<K, V> {
    /// Splits off the entries (children) from `at` on: returns the separator between the two
    /// halves and the right one.
    fn split_off(&mut self, at: usize) -> (K, Node<K, V>) {
        match self {
            Node::Leaf { keys, values } => {
                let right_keys = keys.split_off(at);
                let separator = right_keys.get(0).clone();
                let right = Node::Leaf {
                    keys: right_keys,
                    values: values.split_off(at),
                };
                (separator, right)
            }
            Node::Inner {
                separators,
                children,
            } => {
                let right_children = children.split_off(at);
                let right_separators = separators.split_off(at);
                let separator = separators
                    .pop()
                    .expect("an inner node has a separator between two children");
                let right = Node::Inner {
                    separators: right_separators,
                    children: right_children,
                };
                (separator, right)
            }
        }
    }

    /// Appends `right`, the next sibling, whose keys start at `separator`.
    fn absorb(&mut self, separator: K, right: Node<K, V>) {
        match (self, right) {
            (
                Node::Leaf { keys, values },
                Node::Leaf {
                    keys: more_keys,
                    values: more_values,
                },
            ) => {
                keys.append(more_keys);
                values.append(more_values);
            }
            (
                Node::Inner {
                    separators,
                    children,
                },
                Node::Inner {
                    separators: more_separators,
                    children: more_children,
                },
            ) => {
                separators.push(separator);
                separators.append(more_separators);
                children.append(more_children);
            }
            _ => unreachable!("siblings are at the same depth"),
        }
    }

    /// Moves the first entry (child) of `right`, the next sibling, to the end of this node;
    /// `separator` is the one between the two and moves along.
    fn take_first_of(&mut self, right: &mut Node<K, V>, separator: &mut K) {
        match (self, right) {
            (
                Node::Leaf { keys, values },
                Node::Leaf {
                    keys: from,
                    values: from_values,
                },
            ) => {
                keys.push(from.remove(0));
                values.push(from_values.remove(0));
                *separator = from.get(0).clone();
            }
            (
                Node::Inner {
                    separators,
                    children,
                },
                Node::Inner {
                    separators: from,
                    children: from_children,
                },
            ) => {
                separators.push(std::mem::replace(separator, from.remove(0)));
                children.push(from_children.remove(0));
            }
            _ => unreachable!("siblings are at the same depth"),
        }
    }

    /// Moves the last entry (child) of `left`, the previous sibling, to the front of this
    /// node; `separator` is the one between the two and moves along.
    fn take_last_of(&mut self, left: &mut Node<K, V>, separator: &mut K) {
        match (self, left) {
            (
                Node::Leaf { keys, values },
                Node::Leaf {
                    keys: from,
                    values: from_values,
                },
            ) => {
                let key = from.pop().expect("a wider sibling has entries");
                let value = from_values.pop().expect("a wider sibling has entries");
                *separator = key.clone();
                keys.insert(0, key);
                values.insert(0, value);
            }
            (
                Node::Inner {
                    separators,
                    children,
                },
                Node::Inner {
                    separators: from,
                    children: from_children,
                },
            ) => {
                let child = from_children.pop().expect("a wider sibling has children");
                let last = from.pop().expect("a wider sibling has separators");
                children.insert(0, child);
                separators.insert(0, std::mem::replace(separator, last));
            }
            _ => unreachable!("siblings are at the same depth"),
        }
    }
}

/// What an insertion below a node did.
enum Inserted<K, V> {
    /// The key was there: its old value.
    Replaced(V),
    /// A new entry; the node split, and this is the separator and the new right sibling.
    Split(K, Arc<Node<K, V>>),
    /// A new entry, the node did not split.
    Added,
}

impl<K, V> CowMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        CowMap { root: None, len: 0 }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Leaf { keys, values } => {
                    return leaf_slot(keys, key).ok().map(|at| values.get(at));
                }
                Node::Inner {
                    separators,
                    children,
                } => node = children.get(child_for(separators, key)),
            }
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Every entry in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.iter_from(|_| false)
    }

    /// Every value in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// Every key in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// The entries in key order from the first key for which `before` is false. `before` must
    /// hold for a prefix of the keys and for no key after it (`|k| k < bound`, say).
    pub fn iter_from(&self, before: impl Fn(&K) -> bool) -> Iter<'_, K, V> {
        let mut iter = Iter {
            stack: Vec::new(),
            leaf: None,
        };
        let Some(mut node) = self.root.as_deref() else {
            return iter;
        };
        loop {
            match node {
                Node::Leaf { keys, values } => {
                    let start = keys.iter().take_while(|k| before(k)).count();
                    iter.leaf = Some((keys, values, start));
                    return iter;
                }
                Node::Inner {
                    separators,
                    children,
                } => {
                    // `children[at]` starts below the first separator past the prefix: the
                    // first key past it is there or in the first child after it.
                    let at = separators.iter().take_while(|s| before(s)).count();
                    iter.stack.push((children, at + 1));
                    node = children.get(at);
                }
            }
        }
    }
}

impl<K: Ord + Clone, V: Clone> CowMap<K, V> {
    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let root = self.root.get_or_insert_with(|| Arc::new(Node::new_leaf()));
        match insert_below(Arc::make_mut(root), key, value, true) {
            Inserted::Replaced(old) => return Some(old),
            Inserted::Added => {}
            Inserted::Split(separator, right) => {
                let left = self.root.take().expect("the root was just written");
                let (mut separators, mut children) = (Slots::new(), Slots::new());
                separators.push(separator);
                children.push(left);
                children.push(right);
                self.root = Some(Arc::new(Node::Inner {
                    separators,
                    children,
                }));
            }
        }
        self.len += 1;
        None
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // Checked first so that removing an absent key copies no shared node.
        if !self.contains_key(key) {
            return None;
        }
        let root = self.root.as_mut().expect("a map holding a key has a root");
        let removed = remove_below(Arc::make_mut(root), key);
        assert!(removed.is_some(), "a key found was not removed");
        self.len -= 1;
        // The root keeps no minimum: an empty leaf goes, an inner node of one child gives
        // way to it.
        loop {
            match self.root.as_deref() {
                Some(Node::Leaf { keys, .. }) if keys.len() == 0 => self.root = None,
                Some(Node::Inner { children, .. }) if children.len() == 1 => {
                    self.root = Some(Arc::clone(children.get(0)));
                }
                _ => break,
            }
        }
        removed
    }

    /// The value of `key`, to change in place (copying the shared nodes on its path).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        let mut node = Arc::make_mut(self.root.as_mut()?);
        loop {
            match node {
                Node::Leaf { keys, values } => {
                    let at = leaf_slot(keys, key).ok()?;
                    return Some(values.get_mut(at));
                }
                Node::Inner {
                    separators,
                    children,
                } => node = Arc::make_mut(children.get_mut(child_for(separators, key))),
            }
        }
    }
}

/// Where a node that grew past [`NODE_MAX`] splits: in the middle, or, when the entry that
/// overflowed it was appended at the right edge of the tree, just before that entry (the
/// left node stays full: ids assigned in order fill their leaves instead of halving them).
fn split_point(width: usize, appended_at_right_edge: bool) -> usize {
    if appended_at_right_edge {
        width - 1
    } else {
        width / 2
    }
}

fn insert_below<K: Ord + Clone, V: Clone>(
    node: &mut Node<K, V>,
    key: K,
    value: V,
    right_edge: bool,
) -> Inserted<K, V> {
    let appended = match node {
        Node::Leaf { keys, values } => match leaf_slot(keys, &key) {
            Ok(at) => return Inserted::Replaced(std::mem::replace(values.get_mut(at), value)),
            Err(at) => {
                keys.insert(at, key);
                values.insert(at, value);
                right_edge && at + 1 == keys.len()
            }
        },
        Node::Inner {
            separators,
            children,
        } => {
            let at = child_for(separators, &key);
            let last = at + 1 == children.len();
            let child = Arc::make_mut(children.get_mut(at));
            match insert_below(child, key, value, right_edge && last) {
                Inserted::Split(separator, right) => {
                    separators.insert(at, separator);
                    children.insert(at + 1, right);
                    right_edge && last
                }
                other => return other,
            }
        }
    };
    let width = node.width();
    if width <= NODE_MAX {
        return Inserted::Added;
    }
    let (separator, right) = node.split_off(split_point(width, appended));
    Inserted::Split(separator, Arc::new(right))
}

fn remove_below<K, V: Clone, Q>(node: &mut Node<K, V>, key: &Q) -> Option<V>
where
    K: Ord + Clone + Borrow<Q>,
    Q: Ord + ?Sized,
{
    match node {
        Node::Leaf { keys, values } => {
            let at = leaf_slot(keys, key).ok()?;
            keys.remove(at);
            Some(values.remove(at))
        }
        Node::Inner {
            separators,
            children,
        } => {
            let at = child_for(separators, key);
            let removed = remove_below(Arc::make_mut(children.get_mut(at)), key)?;
            if children.get(at).width() < NODE_MIN && children.len() > 1 {
                rebalance(separators, children, at);
            }
            Some(removed)
        }
    }
}

/// Brings `children[short]`, which fell below [`NODE_MIN`], back with a sibling: the two merge
/// when they fit in one node, otherwise entries move over until they are as wide as each other.
fn rebalance<K: Ord + Clone, V: Clone>(
    separators: &mut Slots<K>,
    children: &mut Children<K, V>,
    short: usize,
) {
    let left = if short + 1 < children.len() {
        short
    } else {
        short - 1
    };
    if children.get(left).width() + children.get(left + 1).width() <= NODE_MAX {
        let right = children.remove(left + 1);
        let right = Arc::try_unwrap(right).unwrap_or_else(|shared| (*shared).clone());
        let separator = separators.remove(left);
        Arc::make_mut(children.get_mut(left)).absorb(separator, right);
        return;
    }
    let (left_node, right_node) = children.pair_mut(left);
    let (left_node, right_node) = (Arc::make_mut(left_node), Arc::make_mut(right_node));
    let separator = separators.get_mut(left);
    while left_node.width() + 1 < right_node.width() {
        left_node.take_first_of(right_node, separator);
    }
    while right_node.width() + 1 < left_node.width() {
        right_node.take_last_of(left_node, separator);
    }
}

/// The entries of a [`CowMap`] in key order.
pub struct Iter<'a, K, V> {
    /// Per inner level on the current path: its children and the next one to visit.
    stack: Vec<(&'a Children<K, V>, usize)>,
    /// The current leaf and the next entry of it.
    leaf: Option<(&'a Slots<K>, &'a Slots<V>, usize)>,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((keys, values, next)) = &mut self.leaf {
                if *next < keys.len() {
                    let at = *next;
                    *next += 1;
                    return Some((keys.get(at), values.get(at)));
                }
            }
            // The leaf is done: the next child of the deepest level that has one, then down
            // its leftmost path.
            let mut node = loop {
                let (children, next) = self.stack.last_mut()?;
                if *next < children.len() {
                    let child = children.get(*next);
                    *next += 1;
                    break &**child;
                }
                self.stack.pop();
            };
            loop {
                match node {
                    Node::Leaf { keys, values } => {
                        self.leaf = Some((keys, values, 0));
                        break;
                    }
                    Node::Inner { children, .. } => {
                        self.stack.push((children, 1));
                        node = children.get(0);
                    }
                }
            }
        }
    }
}

impl<K, V> Clone for CowMap<K, V> {
    /// O(1): the copy shares every node (see the module doc).
    fn clone(&self) -> Self {
        CowMap {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for CowMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = CowMap::new();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    impl<K: Ord + Clone + fmt::Debug, V> CowMap<K, V> {
        /// Asserts every invariant of the module doc.
        fn check(&self) {
            fn walk<K: Ord + fmt::Debug, V>(
                node: &Node<K, V>,
                low: Option<&K>,
                high: Option<&K>,
                depth: usize,
                leaf_depth: &mut Option<usize>,
            ) -> usize {
                match node {
                    Node::Leaf { keys, values } => {
                        assert!(keys.len() <= NODE_MAX, "leaf too wide");
                        assert_eq!(keys.len(), values.len());
                        assert_eq!(*leaf_depth.get_or_insert(depth), depth, "uneven depth");
                        let keys: Vec<&K> = keys.iter().collect();
                        for pair in keys.windows(2) {
                            assert!(pair[0] < pair[1], "leaf keys out of order");
                        }
                        for key in &keys {
                            assert!(low.is_none_or(|low| low <= *key), "key below its range");
                            assert!(high.is_none_or(|high| *key < high), "key above its range");
                        }
                        keys.len()
                    }
                    Node::Inner {
                        separators,
                        children,
                    } => {
                        assert!(children.len() <= NODE_MAX, "inner node too wide");
                        assert!(children.len() > 0, "inner node without children");
                        assert_eq!(separators.len() + 1, children.len());
                        let separators: Vec<&K> = separators.iter().collect();
                        for pair in separators.windows(2) {
                            assert!(pair[0] < pair[1], "separators out of order");
                        }
                        let mut count = 0;
                        for (at, child) in children.iter().enumerate() {
                            let child_low = if at == 0 {
                                low
                            } else {
                                Some(separators[at - 1])
                            };
                            let child_high = separators.get(at).copied().or(high);
                            count += walk(child, child_low, child_high, depth + 1, leaf_depth);
                        }
                        count
                    }
                }
            }
            let count = self
                .root
                .as_deref()
                .map_or(0, |root| walk(root, None, None, 0, &mut None));
            assert_eq!(count, self.len, "len does not count the entries");
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Change(u16, u32),
        /// Keep a clone aside (it must never change again).
        Fork,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 2000, v)),
            3 => any::<u16>().prop_map(|k| Op::Remove(k % 2000)),
            1 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Change(k % 2000, v)),
            1 => Just(Op::Fork),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_btreemap_and_clones_never_see_later_changes(
            ops in proptest::collection::vec(op(), 1..3000)
        ) {
            let mut map = CowMap::new();
            let mut model = BTreeMap::new();
            let mut forks: Vec<(CowMap<u16, u32>, BTreeMap<u16, u32>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::Change(k, v) => {
                        let ours = map.get_mut(&k).map(|slot| std::mem::replace(slot, v));
                        let theirs = model.get_mut(&k).map(|slot| std::mem::replace(slot, v));
                        prop_assert_eq!(ours, theirs);
                    }
                    Op::Fork => forks.push((map.clone(), model.clone())),
                }
                prop_assert_eq!(map.len(), model.len());
            }
            map.check();
            prop_assert!(map.iter().eq(model.iter()));
            for k in 0..2000u16 {
                prop_assert_eq!(map.get(&k), model.get(&k));
            }
            for (fork, expected) in &forks {
                fork.check();
                prop_assert!(fork.iter().eq(expected.iter()), "a clone changed");
            }
        }

        #[test]
        fn iter_from_starts_at_the_first_key_past_the_prefix(
            keys in proptest::collection::btree_set(any::<u16>(), 0..2000),
            bound in any::<u16>(),
        ) {
            let map: CowMap<u16, ()> = keys.iter().map(|k| (*k, ())).collect();
            map.check();
            let ours: Vec<u16> = map.iter_from(|k| *k < bound).map(|(k, _)| *k).collect();
            let theirs: Vec<u16> = keys.range(bound..).copied().collect();
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn ids_assigned_in_order_fill_their_leaves() {
        fn count_leaves<K, V>(node: &Node<K, V>, full: &mut usize, all: &mut usize) {
            match node {
                Node::Leaf { keys, .. } => {
                    *all += 1;
                    *full += usize::from(keys.len() == NODE_MAX);
                }
                Node::Inner { children, .. } => {
                    for child in children.iter() {
                        count_leaves(child, full, all);
                    }
                }
            }
        }
        // One past a multiple of NODE_MAX: the last leaf holds one entry.
        let map: CowMap<u64, u64> = (0..100_001).map(|k| (k, k)).collect();
        map.check();
        let (mut full, mut leaves) = (0, 0);
        count_leaves(map.root.as_deref().expect("root"), &mut full, &mut leaves);
        // Every leaf but the last is full: halving splits would leave them half empty.
        assert_eq!(leaves, 100_001usize.div_ceil(NODE_MAX));
        assert_eq!(full + 1, leaves, "{full} full leaves of {leaves}");
    }

    #[test]
    fn a_change_to_a_clone_copies_only_its_path() {
        let map: CowMap<u64, u64> = (0..100_000).map(|k| (k, k)).collect();
        let mut copy = map.clone();
        copy.insert(50_000, 7);
        let (Some(Node::Inner { children: a, .. }), Some(Node::Inner { children: b, .. })) =
            (map.root.as_deref(), copy.root.as_deref())
        else {
            panic!("100,000 entries need inner nodes");
        };
        let shared = a
            .iter()
            .zip(b.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert_eq!(shared, a.len() - 1, "only the changed child was copied");
        assert_eq!(map.get(&50_000), Some(&50_000));
        assert_eq!(copy.get(&50_000), Some(&7));
    }

    #[test]
    fn removing_everything_leaves_an_empty_map_and_an_absent_key_copies_nothing() {
        let mut map: CowMap<u32, u32> = (0..5_000).map(|k| (k, k)).collect();
        let copy = map.clone();
        assert_eq!(map.remove(&9_999), None);
        assert!(Arc::ptr_eq(
            map.root.as_ref().expect("root"),
            copy.root.as_ref().expect("root")
        ));
        for k in (0..5_000).rev().step_by(2).chain((0..5_000).step_by(2)) {
            assert_eq!(map.remove(&k), Some(k));
            map.check();
        }
        assert!(map.is_empty() && map.root.is_none());
        assert_eq!(copy.len(), 5_000);
        copy.check();
    }
}
