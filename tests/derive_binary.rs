//! `#[derive(Binary)]`: exact bytes for every shape, round trips, skipped and defaulted fields,
//! evolution (a struct gains a field, an old reader meets new data), error paths, generics,
//! raw identifiers, and hostile input.
use std::borrow::Cow;
use std::marker::PhantomData;

use lithair::binary::{self, ErrorKind};
use lithair::prelude::*;
use proptest::prelude::*;

fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(value: &T) -> Vec<u8> {
    let bytes = binary::to_vec(value);
    let back: T = binary::from_slice(&bytes).expect("round trip decodes");
    assert_eq!(&back, value);
    bytes
}

/// A post, as the docs show it.
#[derive(Binary, Debug, PartialEq, Clone)]
#[allow(dead_code)]
struct Post {
    /// Doc comments on fields are passed over.
    id: u64,
    title: String,
    #[allow(unused)]
    tags: Vec<String>,
    published: bool,
}

#[test]
fn named_struct_is_a_framed_body_of_fields_in_order() {
    let post = Post {
        id: 300,
        title: "hi".into(),
        tags: vec!["a".into()],
        published: true,
    };
    let bytes = round_trip(&post);
    // body: id varint(300)=[0xac,0x02], "hi"=[2,h,i], tags=[1,1,a], true=[1]
    assert_eq!(bytes, [9, 0xac, 0x02, 2, b'h', b'i', 1, 1, b'a', 1]);
}

#[derive(Binary, Debug, PartialEq)]
struct Pair(u8, String);

#[derive(Binary, Debug, PartialEq)]
struct Meters(u32);

#[derive(Binary, Debug, PartialEq)]
struct Marker;

#[derive(Binary, Debug, PartialEq)]
struct Empty {}

#[test]
fn tuple_newtype_and_unit_structs_are_framed_too() {
    assert_eq!(round_trip(&Pair(7, "x".into())), [3, 7, 1, b'x']);
    assert_eq!(round_trip(&Meters(5)), [1, 5]);
    assert_eq!(round_trip(&Marker), [0]);
    assert_eq!(round_trip(&Empty {}), [0]);
}

#[derive(Binary, Debug, PartialEq, Clone)]
#[repr(u8)]
enum Shape {
    Point,
    Circle(u32),
    Segment(u8, u8),
    Rect {
        width: u16,
        height: u16,
    },
    /// Explicit discriminants do not change the wire index (declaration order does).
    Explicit = 40,
}

#[test]
fn enum_variant_index_is_declaration_order_then_a_framed_body() {
    assert_eq!(round_trip(&Shape::Point), [0, 0]);
    assert_eq!(round_trip(&Shape::Circle(3)), [1, 1, 3]);
    assert_eq!(round_trip(&Shape::Segment(1, 2)), [2, 2, 1, 2]);
    assert_eq!(
        round_trip(&Shape::Rect {
            width: 2,
            height: 300
        }),
        [3, 3, 2, 0xac, 0x02]
    );
    assert_eq!(round_trip(&Shape::Explicit), [4, 0]);
}

#[test]
fn unknown_variant_index_is_a_typed_error() {
    let error = binary::from_slice::<Shape>(&[9, 0]).expect_err("index 9 does not exist");
    assert_eq!(error.kind(), &ErrorKind::UnknownVariant(9));
}

#[derive(Binary, Debug, PartialEq)]
struct WithSkip {
    a: u8,
    #[binary(skip)]
    cache: Vec<u8>,
    #[binary(skip, default = "seven")]
    seven: u8,
    b: u8,
}

fn seven() -> u8 {
    7
}

#[test]
fn skipped_fields_are_not_written_and_take_their_default() {
    let value = WithSkip {
        a: 1,
        cache: vec![9, 9],
        seven: 100,
        b: 2,
    };
    let bytes = binary::to_vec(&value);
    assert_eq!(bytes, [2, 1, 2]);
    let back: WithSkip = binary::from_slice(&bytes).expect("decodes");
    assert_eq!(
        back,
        WithSkip {
            a: 1,
            cache: Vec::new(),
            seven: 7,
            b: 2
        }
    );
}

mod v1 {
    use lithair::prelude::*;

    /// The first version of an account.
    #[derive(Binary, Debug, PartialEq)]
    pub struct Account {
        pub id: u64,
        pub name: String,
    }
}

mod v2 {
    use lithair::prelude::*;

    /// The account after it gained three fields.
    #[derive(Binary, Debug, PartialEq)]
    pub struct Account {
        pub id: u64,
        pub name: String,
        #[binary(default)]
        pub email: String,
        #[db(default)]
        pub active: bool,
        #[binary(default = "super::default_limit")]
        pub limit: u32,
    }

    /// Like `Account` but the new field has no default: old data cannot be read.
    #[derive(Binary, Debug, PartialEq)]
    pub struct Strict {
        pub id: u64,
        pub name: String,
        pub email: String,
    }
}

fn default_limit() -> u32 {
    10
}

#[test]
fn evolution_new_fields_with_defaults_read_old_data() {
    let old = binary::to_vec(&v1::Account {
        id: 1,
        name: "ann".into(),
    });
    let new: v2::Account = binary::from_slice(&old).expect("old data reads with defaults");
    let expected = v2::Account {
        id: 1,
        name: "ann".into(),
        email: String::new(),
        active: false,
        limit: 10,
    };
    assert_eq!(new, expected);
}

#[test]
fn evolution_old_readers_ignore_new_fields() {
    let new = v2::Account {
        id: 2,
        name: "bo".into(),
        email: "b@x".into(),
        active: true,
        limit: 3,
    };
    let bytes = binary::to_vec(&new);
    let old: v1::Account = binary::from_slice(&bytes).expect("new data reads in the old version");
    assert_eq!(
        old,
        v1::Account {
            id: 2,
            name: "bo".into()
        }
    );
}

#[test]
fn evolution_without_default_is_a_missing_field_error() {
    let old = binary::to_vec(&v1::Account {
        id: 1,
        name: "ann".into(),
    });
    let error = binary::from_slice::<v2::Strict>(&old).expect_err("email has no default");
    assert_eq!(error.kind(), &ErrorKind::MissingField("email".into()));
}

#[derive(Binary, Debug, PartialEq)]
struct Outer {
    label: String,
    inner: Vec<Inner>,
}

#[derive(Binary, Debug, PartialEq)]
struct Inner {
    flag: bool,
}

#[test]
fn errors_carry_the_field_path() {
    let value = Outer {
        label: "l".into(),
        inner: vec![Inner { flag: true }, Inner { flag: false }],
    };
    let mut bytes = binary::to_vec(&value);
    // The second inner flag is the last byte: make it an invalid bool.
    let last = bytes.len() - 1;
    bytes[last] = 5;
    let error = binary::from_slice::<Outer>(&bytes).expect_err("bool 5 is invalid");
    assert_eq!(error.kind(), &ErrorKind::InvalidBool(5));
    assert_eq!(error.path(), ".inner[1].flag");
    let error = binary::from_slice::<Pair>(&[2, 1, 9]).expect_err("string length 9 too long");
    assert_eq!(error.path(), "[1]");
}

#[derive(Binary, Debug, PartialEq)]
struct Generic<'a, T: Clone, U, const N: usize>
where
    U: Copy + Default,
{
    borrowed: Cow<'a, str>,
    items: Vec<T>,
    array: [U; N],
    #[binary(skip)]
    skipped: U,
    marker: PhantomData<T>,
}

#[test]
fn generics_with_bounds_where_clauses_lifetimes_and_consts() {
    let value: Generic<'_, String, u16, 2> = Generic {
        borrowed: Cow::Borrowed("b"),
        items: vec!["t".into()],
        array: [1, 2],
        skipped: 0,
        marker: PhantomData,
    };
    assert_eq!(round_trip(&value), [7, 1, b'b', 1, 1, b't', 1, 2]);
}

#[derive(Binary, Debug, PartialEq)]
enum Tree<T> {
    Leaf(T),
    Node {
        left: Box<Tree<T>>,
        right: Box<Tree<T>>,
    },
}

#[test]
fn recursive_generic_enum() {
    let tree = Tree::Node {
        left: Box::new(Tree::Leaf(1u8)),
        right: Box::new(Tree::Leaf(2u8)),
    };
    assert_eq!(round_trip(&tree), [1, 6, 0, 1, 1, 0, 1, 2]);
}

#[derive(Binary, Debug, PartialEq)]
struct Raw {
    r#type: u8,
    r#match: String,
}

#[derive(Binary, Debug, PartialEq)]
enum Never {}

#[test]
fn raw_identifiers_and_empty_enums() {
    assert_eq!(
        round_trip(&Raw {
            r#type: 1,
            r#match: "m".into()
        }),
        [3, 1, 1, b'm']
    );
    let error = binary::from_slice::<Never>(&[0, 0]).expect_err("no variants");
    assert_eq!(error.kind(), &ErrorKind::UnknownVariant(0));
}

#[test]
fn hostile_counts_of_derived_structs_are_rejected_before_allocating() {
    // A count of 2^40 empty structs with 3 bytes of input: each needs at least one byte.
    let mut bytes = Vec::new();
    binary::write_varint(&mut bytes, 1 << 40);
    bytes.extend([0, 0, 0]);
    assert!(binary::from_slice::<Vec<Marker>>(&bytes).is_err());
}

fn post_strategy() -> impl Strategy<Value = Post> {
    (
        any::<u64>(),
        ".{0,20}",
        proptest::collection::vec(".{0,5}", 0..4),
        any::<bool>(),
    )
        .prop_map(|(id, title, tags, published)| Post {
            id,
            title,
            tags,
            published,
        })
}

fn shape_strategy() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Point),
        any::<u32>().prop_map(Shape::Circle),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Shape::Segment(a, b)),
        (any::<u16>(), any::<u16>()).prop_map(|(width, height)| Shape::Rect { width, height }),
        Just(Shape::Explicit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn derived_structs_round_trip(post in post_strategy()) {
        let bytes = binary::to_vec(&post);
        prop_assert_eq!(binary::from_slice::<Post>(&bytes).expect("decodes"), post);
    }

    #[test]
    fn derived_enums_round_trip(shapes in proptest::collection::vec(shape_strategy(), 0..8)) {
        let bytes = binary::to_vec(&shapes);
        prop_assert_eq!(binary::from_slice::<Vec<Shape>>(&bytes).expect("decodes"), shapes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = binary::from_slice::<Post>(&bytes);
        let _ = binary::from_slice::<Vec<Shape>>(&bytes);
        let _ = binary::from_slice::<Tree<u8>>(&bytes);
        let _ = binary::from_slice::<v2::Account>(&bytes);
    }
}
