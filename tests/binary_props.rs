//! Properties of the binary codec on nested types and hostile input, and the evolution rules
//! of struct framing, through hand-written impls in exactly the shape `#[derive(Binary)]`
//! generates.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;

use lithair::binary::{
    self, begin_struct, end_struct, write_varint, Decode, Encode, Error, ErrorKind, Reader,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Evolution: version 1 and version 2 of the same event type, written as the derive writes them.

/// Version 1 of an event.
#[derive(Debug, Clone, PartialEq)]
struct ItemV1 {
    id: u64,
    name: String,
    price_cents: i64,
}

/// Version 2: two fields appended. `tags` is `#[binary(default)]`; `owner` is not.
#[derive(Debug, Clone, PartialEq)]
struct ItemV2 {
    id: u64,
    name: String,
    price_cents: i64,
    tags: Vec<String>,
    owner: Option<String>,
}

/// Version 2 where every new field has a default (what a real migration does).
#[derive(Debug, Clone, PartialEq)]
struct ItemV2Defaulted {
    id: u64,
    name: String,
    price_cents: i64,
    tags: Vec<String>,
    owner: Option<String>,
}

impl Encode for ItemV1 {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = ::lithair::binary::begin_struct(out);
        ::lithair::binary::Encode::encode(&self.id, out);
        ::lithair::binary::Encode::encode(&self.name, out);
        ::lithair::binary::Encode::encode(&self.price_cents, out);
        ::lithair::binary::end_struct(out, mark);
    }
}

impl Decode for ItemV1 {
    fn decode(r: &mut ::lithair::binary::Reader<'_>) -> Result<Self, ::lithair::binary::Error> {
        let mut body = r.struct_body()?;
        let id = if body.is_empty() {
            return Err(::lithair::binary::Error::missing_field("id"));
        } else {
            <u64 as ::lithair::binary::Decode>::decode(&mut body).map_err(|e| e.with_field("id"))?
        };
        let name = if body.is_empty() {
            return Err(::lithair::binary::Error::missing_field("name"));
        } else {
            <String as ::lithair::binary::Decode>::decode(&mut body)
                .map_err(|e| e.with_field("name"))?
        };
        let price_cents = if body.is_empty() {
            return Err(::lithair::binary::Error::missing_field("price_cents"));
        } else {
            <i64 as ::lithair::binary::Decode>::decode(&mut body)
                .map_err(|e| e.with_field("price_cents"))?
        };
        Ok(ItemV1 {
            id,
            name,
            price_cents,
        })
    }
}

impl Encode for ItemV2 {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.id.encode(out);
        self.name.encode(out);
        self.price_cents.encode(out);
        self.tags.encode(out);
        self.owner.encode(out);
        end_struct(out, mark);
    }
}

impl Decode for ItemV2 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        let id = body.field::<u64>("id")?;
        let name = body.field::<String>("name")?;
        let price_cents = body.field::<i64>("price_cents")?;
        let tags = body.field_or_else::<Vec<String>>("tags", Default::default)?;
        let owner = body.field::<Option<String>>("owner")?;
        Ok(ItemV2 {
            id,
            name,
            price_cents,
            tags,
            owner,
        })
    }
}

impl Decode for ItemV2Defaulted {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        let id = body.field::<u64>("id")?;
        let name = body.field::<String>("name")?;
        let price_cents = body.field::<i64>("price_cents")?;
        let tags = if body.is_empty() {
            Default::default()
        } else {
            <Vec<String> as Decode>::decode(&mut body).map_err(|e| e.with_field("tags"))?
        };
        let owner = body.field_or_else::<Option<String>>("owner", || Some("nobody".into()))?;
        Ok(ItemV2Defaulted {
            id,
            name,
            price_cents,
            tags,
            owner,
        })
    }
}

fn v1() -> ItemV1 {
    ItemV1 {
        id: 7,
        name: "lamp".into(),
        price_cents: 1999,
    }
}

#[test]
fn old_bytes_decode_into_new_struct_with_defaults() {
    let bytes = binary::to_vec(&v1());
    let new: ItemV2Defaulted = binary::from_slice(&bytes).expect("v1 bytes read by v2");
    let expected = ItemV2Defaulted {
        id: 7,
        name: "lamp".into(),
        price_cents: 1999,
        tags: vec![],
        owner: Some("nobody".into()),
    };
    assert_eq!(new, expected);
}

#[test]
fn old_bytes_missing_an_undefaulted_field_fail_with_its_name() {
    let bytes = binary::to_vec(&v1());
    let error = binary::from_slice::<ItemV2>(&bytes).expect_err("owner has no default");
    assert_eq!(error.kind(), &ErrorKind::MissingField("owner".into()));
    assert!(
        error.to_string().contains("missing field `owner`"),
        "{error}"
    );
}

#[test]
fn new_bytes_decode_as_old_struct_ignoring_appended_fields() {
    let new = ItemV2 {
        id: 9,
        name: "desk".into(),
        price_cents: -5,
        tags: vec!["wood".into(); 40],
        owner: Some("ann".into()),
    };
    let bytes = binary::to_vec(&new);
    assert!(bytes.len() > 128, "long body: two-byte length prefix");
    let old: ItemV1 = binary::from_slice(&bytes).expect("v2 bytes read by v1");
    assert_eq!(
        old,
        ItemV1 {
            id: 9,
            name: "desk".into(),
            price_cents: -5
        }
    );
    assert_eq!(binary::from_slice::<ItemV2>(&bytes), Ok(new.clone()));
    // Inside a sequence, each element's body is skipped as a whole.
    let many = vec![new.clone(), new];
    let olds: Vec<ItemV1> = binary::from_slice(&binary::to_vec(&many)).expect("vec of v2 as v1");
    assert_eq!(olds.len(), 2);
    assert_eq!(olds[1].name, "desk");
}

#[test]
fn field_errors_carry_the_path() {
    let mut bytes = binary::to_vec(&vec![v1(), v1()]);
    // Corrupt the second element's name length to claim more than its body holds.
    let second = 1 + (bytes.len() - 1) / 2;
    bytes[second + 2] = 100;
    let error = binary::from_slice::<Vec<ItemV1>>(&bytes).expect_err("corrupt");
    assert_eq!(error.path(), "[1].name");
    assert!(
        matches!(error.kind(), ErrorKind::LengthTooLarge { length: 100, .. }),
        "{error}"
    );
}

/// An enum as the derive writes one: variant index, then the fields framed like a struct.
#[derive(Debug, Clone, PartialEq)]
enum ShapeV1 {
    Point,
    Circle { radius: f64 },
}

#[derive(Debug, Clone, PartialEq)]
enum ShapeV2 {
    Point,
    Circle { radius: f64 },
    Rect(u32, u32),
}

impl Encode for ShapeV2 {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ShapeV2::Point => {
                write_varint(out, 0);
                let mark = begin_struct(out);
                end_struct(out, mark);
            }
            ShapeV2::Circle { radius } => {
                write_varint(out, 1);
                let mark = begin_struct(out);
                radius.encode(out);
                end_struct(out, mark);
            }
            ShapeV2::Rect(width, height) => {
                write_varint(out, 2);
                let mark = begin_struct(out);
                width.encode(out);
                height.encode(out);
                end_struct(out, mark);
            }
        }
    }
}

impl Decode for ShapeV1 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let index = r.read_varint()?;
        let mut body = match index {
            0 | 1 => r.struct_body()?,
            _ => return Err(Error::unknown_variant(index)),
        };
        match index {
            0 => Ok(ShapeV1::Point),
            _ => Ok(ShapeV1::Circle {
                radius: body.field("radius").map_err(|e| e.with_field("Circle"))?,
            }),
        }
    }
}

#[test]
fn enums_gain_variants_at_the_end() {
    let shapes = vec![ShapeV2::Point, ShapeV2::Circle { radius: 2.5 }];
    let old: Vec<ShapeV1> = binary::from_slice(&binary::to_vec(&shapes)).expect("known variants");
    assert_eq!(old, vec![ShapeV1::Point, ShapeV1::Circle { radius: 2.5 }]);
    let error = binary::from_slice::<ShapeV1>(&binary::to_vec(&ShapeV2::Rect(1, 2)))
        .expect_err("new variant");
    assert_eq!(error.kind(), &ErrorKind::UnknownVariant(2));
}

/// A recursive type: framing makes every level count against the depth limit.
#[derive(Debug, PartialEq)]
struct Node {
    child: Option<Box<Node>>,
}

impl Decode for Node {
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut body = r.struct_body()?;
        Ok(Node {
            child: body.field("child")?,
        })
    }
}

impl Encode for Node {
    fn encode(&self, out: &mut Vec<u8>) {
        let mark = begin_struct(out);
        self.child.encode(out);
        end_struct(out, mark);
    }
}

fn chain(depth: usize) -> Node {
    (0..depth).fold(Node { child: None }, |child, _| Node {
        child: Some(Box::new(child)),
    })
}

#[test]
fn recursion_is_bounded_by_the_depth_limit() {
    let shallow = chain(binary::DEPTH_MAX as usize - 1);
    assert_eq!(
        binary::from_slice::<Node>(&binary::to_vec(&shallow)),
        Ok(shallow)
    );
    let deep = binary::to_vec(&chain(binary::DEPTH_MAX as usize));
    let error = binary::from_slice::<Node>(&deep).expect_err("too deep");
    assert_eq!(
        error.kind(),
        &ErrorKind::DepthLimit {
            depth_max: binary::DEPTH_MAX
        }
    );
    // Far deeper input stops at the limit instead of recursing through all of it.
    let hostile = binary::to_vec(&chain(2_000));
    let error = binary::from_slice::<Node>(&hostile).expect_err("too deep");
    assert_eq!(
        error.kind(),
        &ErrorKind::DepthLimit {
            depth_max: binary::DEPTH_MAX
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Round-trips of nested types.

/// Encodes, decodes, re-encodes: the value and the bytes must both survive.
fn assert_round_trip<T: Encode + Decode + PartialEq + Debug>(value: &T) {
    let bytes = binary::to_vec(value);
    let decoded: T = binary::from_slice(&bytes).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    assert_eq!(&decoded, value);
    assert_eq!(binary::to_vec(&decoded), bytes);
}

fn item_v2() -> impl Strategy<Value = ItemV2> {
    (
        any::<u64>(),
        ".{0,20}",
        any::<i64>(),
        prop::collection::vec(".{0,8}", 0..5),
        any::<Option<String>>(),
    )
        .prop_map(|(id, name, price_cents, tags, owner)| ItemV2 {
            id,
            name,
            price_cents,
            tags,
            owner,
        })
}

impl PartialEq<ItemV2> for ItemV1 {
    fn eq(&self, other: &ItemV2) -> bool {
        self.id == other.id && self.name == other.name && self.price_cents == other.price_cents
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn unsigned_scalars_round_trip(a: u8, b: u16, c: u32, d: u64, e: u128, f: usize, m: bool, n: char) {
        assert_round_trip(&(a, b, c, d, e, f, m, n, ()));
    }

    #[test]
    fn signed_scalars_round_trip(g: i8, h: i16, i: i32, j: i64, k: i128, l: isize) {
        assert_round_trip(&(g, h, i, j, k, l));
    }

    #[test]
    fn floats_round_trip_bit_exactly(x: f64, y: f32) {
        let bytes = binary::to_vec(&(x, y));
        let (x2, y2): (f64, f32) = binary::from_slice(&bytes).expect("floats");
        prop_assert_eq!(x2.to_bits(), x.to_bits());
        prop_assert_eq!(y2.to_bits(), y.to_bits());
    }

    #[test]
    fn nested_collections_round_trip(
        nested in prop::collection::vec(prop::collection::vec((any::<u32>(), ".{0,6}", any::<Option<i64>>()), 0..4), 0..4),
        map in prop::collection::hash_map(".{0,6}", prop::collection::vec(any::<u16>(), 0..4), 0..8),
        tree in prop::collection::btree_map(any::<i32>(), (any::<bool>(), any::<Option<char>>()), 0..8),
        sets in (prop::collection::hash_set(any::<u64>(), 0..8), prop::collection::btree_set(".{0,4}", 0..8)),
        deque in prop::collection::vec_deque(any::<Option<Box<[u8; 3]>>>(), 0..5),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        assert_round_trip(&nested);
        assert_round_trip(&map);
        assert_round_trip(&tree);
        assert_round_trip(&sets);
        assert_round_trip(&deque);
        assert_round_trip(&bytes);
        let nested_maps: BTreeMap<String, HashMap<String, Vec<u16>>> = [("k".to_string(), map)].into_iter().collect();
        assert_round_trip(&nested_maps);
    }

    #[test]
    fn hand_written_structs_round_trip_and_evolve(items in prop::collection::vec(item_v2(), 0..6)) {
        assert_round_trip(&items);
        let bytes = binary::to_vec(&items);
        let old: Vec<ItemV1> = binary::from_slice(&bytes).expect("v2 read as v1");
        prop_assert_eq!(old.len(), items.len());
        for (old, new) in old.iter().zip(&items) {
            prop_assert!(old == new);
        }
    }

    #[test]
    fn hash_map_bytes_do_not_depend_on_insertion_order(entries in prop::collection::vec((any::<u32>(), ".{0,4}"), 0..20)) {
        let forward: HashMap<u32, String> = entries.into_iter().collect();
        let mut pairs: Vec<(u32, String)> = forward.clone().into_iter().collect();
        pairs.reverse();
        let mut backward: HashMap<u32, String> = HashMap::with_capacity(100);
        backward.extend(pairs);
        prop_assert_eq!(binary::to_vec(&forward), binary::to_vec(&backward));
    }

    // -----------------------------------------------------------------------------------------
    // Hostile input: random bytes never panic; whatever decodes re-encodes to the same bytes
    // (each value has exactly one encoding) and holds no more elements than the input had bytes.

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_canonical::<u64>(&bytes);
        check_canonical::<i32>(&bytes);
        check_canonical::<char>(&bytes);
        check_canonical::<String>(&bytes);
        check_canonical::<Vec<u8>>(&bytes);
        check_canonical::<Vec<String>>(&bytes);
        check_canonical::<Vec<()>>(&bytes);
        check_canonical::<(bool, Option<u16>, f32)>(&bytes);
        check_canonical::<HashMap<String, Vec<i64>>>(&bytes);
        check_canonical::<BTreeMap<u16, Option<bool>>>(&bytes);
        check_canonical::<HashSet<u32>>(&bytes);
        check_canonical::<BTreeSet<String>>(&bytes);
        check_canonical::<VecDeque<Box<str>>>(&bytes);
        check_canonical::<[u16; 4]>(&bytes);
        check_canonical::<(u128, i128)>(&bytes);
        check_canonical::<Vec<Vec<Vec<u8>>>>(&bytes);
        // Framed structs skip unknown trailing body bytes by design, so only "no panic" here.
        let _ = binary::from_slice::<Vec<ItemV2>>(&bytes);
        let _ = binary::from_slice::<Vec<ItemV1>>(&bytes);
        let _ = binary::from_slice::<ShapeV1>(&bytes);
        let _ = binary::from_slice::<Node>(&bytes);
    }

    #[test]
    fn corrupted_encodings_never_panic(
        map in prop::collection::hash_map(".{0,6}", prop::collection::vec(any::<i16>(), 0..4), 1..6),
        items in prop::collection::vec(item_v2(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut map_bytes = binary::to_vec(&map);
        let mut item_bytes = binary::to_vec(&items);
        for (position, byte) in &flips {
            let map_len = map_bytes.len();
            map_bytes[position.index(map_len)] = *byte;
            let item_len = item_bytes.len();
            item_bytes[position.index(item_len)] = *byte;
        }
        check_canonical::<HashMap<String, Vec<i16>>>(&map_bytes);
        check_canonical::<BTreeMap<String, Vec<i16>>>(&map_bytes);
        let _ = binary::from_slice::<Vec<ItemV2>>(&item_bytes);
        let _ = binary::from_slice::<Vec<ItemV2Defaulted>>(&item_bytes);
    }

    /// What a decoder reserves before decoding elements: never more memory than the remaining
    /// input (plus one element) nor than `PREALLOC_BYTES_MAX`, whatever count the input claims.
    #[test]
    fn preallocation_is_bounded_by_the_input(count in any::<usize>(), remaining in 0usize..1 << 20) {
        fn check<T>(count: usize, remaining: usize) {
            let capacity = binary::capacity_for::<T>(count, remaining);
            let element_bytes = std::mem::size_of::<T>().max(1);
            assert!(capacity <= count);
            assert!(capacity * element_bytes <= remaining + element_bytes, "{capacity} x {element_bytes} for {remaining}");
            assert!(capacity * element_bytes <= binary::PREALLOC_BYTES_MAX, "{capacity} x {element_bytes} over the cap");
        }
        check::<u8>(count, remaining);
        check::<u64>(count, remaining);
        check::<String>(count, remaining);
        check::<ItemV2>(count, remaining);
        check::<()>(count, remaining);
    }

    #[test]
    fn truncated_encodings_fail_cleanly(items in prop::collection::vec(item_v2(), 1..4), cut in any::<prop::sample::Index>()) {
        let bytes = binary::to_vec(&items);
        let cut = cut.index(bytes.len());
        prop_assert!(binary::from_slice::<Vec<ItemV2>>(&bytes[..cut]).is_err());
        let mut extended = bytes.clone();
        extended.push(0);
        let error = binary::from_slice::<Vec<ItemV2>>(&extended).expect_err("trailing byte");
        prop_assert_eq!(error.kind(), &ErrorKind::TrailingBytes { count: 1 });
    }
}

/// Decodes `bytes` as `T`; on success the input must be `T`'s only encoding of that value.
fn check_canonical<T: Encode + Decode + Debug>(bytes: &[u8]) {
    if let Ok(value) = binary::from_slice::<T>(bytes) {
        assert_eq!(
            binary::to_vec(&value),
            bytes,
            "{value:?} has a second encoding"
        );
    }
}

#[test]
fn huge_claimed_lengths_fail_before_allocating() {
    let mut claim = Vec::new();
    write_varint(&mut claim, u64::MAX / 2);
    for kind in [
        binary::from_slice::<Vec<u8>>(&claim).map(|_| ()),
        binary::from_slice::<String>(&claim).map(|_| ()),
        binary::from_slice::<Vec<String>>(&claim).map(|_| ()),
        binary::from_slice::<Vec<()>>(&claim).map(|_| ()),
        binary::from_slice::<HashMap<u8, ()>>(&claim).map(|_| ()),
        binary::from_slice::<BTreeSet<()>>(&claim).map(|_| ()),
    ] {
        let error = kind.expect_err("claim larger than the input");
        assert!(
            matches!(error.kind(), ErrorKind::LengthTooLarge { .. }),
            "{error}"
        );
    }
}
