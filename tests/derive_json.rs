//! `#[derive(Json)]`: exact JSON text for every shape and attribute, round trips through text
//! and through `Value`, error messages with paths, generics, raw identifiers, foreign
//! attributes, and random input.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use lithair::json::{self, Value};
use lithair::prelude::*;
use proptest::prelude::*;

/// Writes `value`, checks the exact text, reads it back (text and `Value` paths) and compares.
fn check<T: ToJson + FromJson + PartialEq + std::fmt::Debug>(value: &T, expected: &str) {
    let text = json::to_string(value).expect("writes");
    assert_eq!(text, expected);
    let back: T = json::from_str(&text).expect("reads back");
    assert_eq!(&back, value);
    let tree = json::parse(&text).expect("valid JSON");
    let from_tree: T = json::from_value(&tree).expect("reads back from a Value");
    assert_eq!(&from_tree, value);
}

/// The message of a failed typed read.
fn error<T: FromJson + std::fmt::Debug>(text: &str) -> String {
    json::from_str::<T>(text)
        .expect_err("must not read")
        .to_string()
}

/// A post, as the docs show it.
#[derive(Json, Debug, PartialEq, Clone)]
struct Post {
    /// Doc comments are passed over.
    id: u64,
    title: String,
    tags: Vec<String>,
    score: f64,
    author: Option<String>,
}

#[test]
fn named_struct_is_an_object_in_declaration_order() {
    let post = Post {
        id: 1,
        title: "a \"b\"".into(),
        tags: vec!["x".into()],
        score: 1.5,
        author: None,
    };
    check(
        &post,
        r#"{"id":1,"title":"a \"b\"","tags":["x"],"score":1.5,"author":null}"#,
    );
}

#[test]
fn unknown_fields_are_ignored_and_key_order_is_free() {
    let text = r#"{"extra":{"deep":[1,2,{"x":null}]},"score":2,"tags":[],"title":"t","id":9}"#;
    let post: Post = json::from_str(text).expect("reads");
    assert_eq!(
        post,
        Post {
            id: 9,
            title: "t".into(),
            tags: vec![],
            score: 2.0,
            author: None
        }
    );
}

#[test]
fn absent_option_is_none_and_missing_fields_are_named() {
    let post: Post =
        json::from_str(r#"{"id":1,"title":"t","tags":[],"score":0}"#).expect("author is optional");
    assert_eq!(post.author, None);
    assert_eq!(
        error::<Post>(r#"{"id":1,"tags":[],"score":0}"#),
        "missing field `title` at line 1, column 29"
    );
}

#[test]
fn errors_carry_the_path() {
    let message = error::<Post>(r#"{"id":1,"title":"t","tags":["a",5],"score":0}"#);
    assert!(
        message.starts_with("$.tags[1]: expected a string"),
        "{message}"
    );
    assert!(message.contains("line 1, column 33"), "{message}");
    let message = error::<Vec<Wrapper>>(
        r#"[{"post":{"id":1,"tags":[],"score":0,"title":"t"}},{"post":{"id":2}}]"#,
    );
    assert_eq!(
        message,
        "$[1].post: missing field `title` at line 1, column 68"
    );
    let message = error::<Post>(r#"{"id":1,"id":2}"#);
    assert!(message.starts_with("duplicate field `id`"), "{message}");
}

#[derive(Json, Debug, PartialEq)]
struct Wrapper {
    post: Post,
}

#[derive(Json, Debug, PartialEq)]
#[json(deny_unknown_fields)]
struct Strict {
    a: u8,
}

#[test]
fn deny_unknown_fields_rejects_extra_keys() {
    check(&Strict { a: 1 }, r#"{"a":1}"#);
    assert_eq!(
        error::<Strict>(r#"{"a":1,"b":2}"#),
        "unknown field `b` at line 1, column 12"
    );
}

macro_rules! case_struct {
    ($name:ident, $style:literal) => {
        #[derive(Json, Debug, PartialEq, Default)]
        #[json(rename_all = $style)]
        struct $name {
            user_id: u8,
            display_name_2: u8,
        }
    };
}

case_struct!(Camel, "camelCase");
case_struct!(Pascal, "PascalCase");
case_struct!(Snake, "snake_case");
case_struct!(Kebab, "kebab-case");
case_struct!(Screaming, "SCREAMING_SNAKE_CASE");
case_struct!(ScreamingKebab, "SCREAMING-KEBAB-CASE");
case_struct!(Lower, "lowercase");
case_struct!(Upper, "UPPERCASE");

#[test]
fn rename_all_styles() {
    check(&Camel::default(), r#"{"userId":0,"displayName2":0}"#);
    check(&Pascal::default(), r#"{"UserId":0,"DisplayName2":0}"#);
    check(&Snake::default(), r#"{"user_id":0,"display_name_2":0}"#);
    check(&Kebab::default(), r#"{"user-id":0,"display-name-2":0}"#);
    check(&Screaming::default(), r#"{"USER_ID":0,"DISPLAY_NAME_2":0}"#);
    check(
        &ScreamingKebab::default(),
        r#"{"USER-ID":0,"DISPLAY-NAME-2":0}"#,
    );
    check(&Lower::default(), r#"{"user_id":0,"display_name_2":0}"#);
    check(&Upper::default(), r#"{"USER_ID":0,"DISPLAY_NAME_2":0}"#);
}

fn default_level() -> u8 {
    3
}

#[derive(Json, Binary, Debug, PartialEq)]
#[json(rename_all = "camelCase")]
struct Settings {
    #[json(rename = "ID")]
    user_id: u64,
    #[json(default)]
    dark_mode: bool,
    #[json(default = "default_level")]
    level: u8,
    #[db(default)]
    retries: u32,
    #[json(skip)]
    #[binary(skip)]
    session_cache: Vec<u8>,
    #[json(skip_if_none)]
    nick_name: Option<String>,
    #[json(skip, default = "default_level")]
    derived: u8,
}

#[test]
fn field_attributes_on_write() {
    let settings = Settings {
        user_id: 7,
        dark_mode: true,
        level: 1,
        retries: 2,
        session_cache: vec![1],
        nick_name: None,
        derived: 9,
    };
    let text = json::to_string(&settings).expect("writes");
    assert_eq!(text, r#"{"ID":7,"darkMode":true,"level":1,"retries":2}"#);
    let settings = Settings {
        nick_name: Some("n".into()),
        ..settings
    };
    let text = json::to_string(&settings).expect("writes");
    assert_eq!(
        text,
        r#"{"ID":7,"darkMode":true,"level":1,"retries":2,"nickName":"n"}"#
    );
}

#[test]
fn field_attributes_on_read() {
    let settings: Settings =
        json::from_str(r#"{"ID":7,"sessionCache":[5],"derived":1}"#).expect("defaults fill in");
    let expected = Settings {
        user_id: 7,
        dark_mode: false,
        level: 3,
        retries: 0,
        session_cache: vec![],
        nick_name: None,
        derived: 3,
    };
    assert_eq!(settings, expected);
    assert_eq!(
        error::<Settings>("{}"),
        "missing field `ID` at line 1, column 3"
    );
}

#[derive(Json, Debug, PartialEq)]
struct Meters(f64);

#[derive(Json, Debug, PartialEq)]
struct Point(i32, i32, #[json(default)] i32);

#[derive(Json, Debug, PartialEq)]
struct Marker;

#[derive(Json, Debug, PartialEq)]
struct NoFields {}

#[test]
fn newtype_tuple_and_unit_structs() {
    check(&Meters(2.5), "2.5");
    check(&Point(1, -2, 3), "[1,-2,3]");
    check(&Marker, "null");
    check(&NoFields {}, "{}");
    assert_eq!(
        json::from_str::<Point>("[1,2]").expect("third defaults"),
        Point(1, 2, 0)
    );
    assert!(error::<Point>("[1]").starts_with("expected an array of 3 elements, found 1"));
    assert!(error::<Point>("[1,2,3,4]").starts_with("expected an array of 3 elements, found more"));
    assert!(error::<Point>("[1,\"x\"]").starts_with("$[1]: expected"));
    assert!(
        error::<Marker>("0").starts_with("expected null"),
        "{}",
        error::<Marker>("0")
    );
}

#[derive(Json, Binary, Debug, PartialEq, Clone)]
enum Event {
    Started,
    Renamed(String),
    Moved(i32, i32),
    Scored {
        points: u32,
        #[json(skip_if_none)]
        bonus: Option<u32>,
    },
    #[json(rename = "gone")]
    Deleted,
}

#[test]
fn enums_are_externally_tagged() {
    check(&Event::Started, r#""Started""#);
    check(&Event::Renamed("x".into()), r#"{"Renamed":"x"}"#);
    check(&Event::Moved(1, 2), r#"{"Moved":[1,2]}"#);
    check(
        &Event::Scored {
            points: 3,
            bonus: None,
        },
        r#"{"Scored":{"points":3}}"#,
    );
    check(
        &Event::Scored {
            points: 3,
            bonus: Some(1),
        },
        r#"{"Scored":{"points":3,"bonus":1}}"#,
    );
    check(&Event::Deleted, r#""gone""#);
    assert_eq!(
        json::from_str::<Event>(r#"{"Started":null}"#).expect("unit as object"),
        Event::Started
    );
}

#[test]
fn enum_errors() {
    assert_eq!(
        error::<Event>(r#""Nope""#),
        "unknown variant `Nope` at line 1, column 7"
    );
    assert_eq!(
        error::<Event>(r#"{"Nope":1}"#),
        "unknown variant `Nope` at line 1, column 9"
    );
    assert!(error::<Event>(r#""Moved""#).starts_with("variant `Moved` has content"));
    assert!(error::<Event>(r#"{"Started":null,"Moved":[1,2]}"#)
        .starts_with("expected an object with one key"));
    assert!(error::<Event>("{}").starts_with("expected an object with one key"));
    assert!(error::<Event>("7")
        .starts_with("expected a string or an object naming a variant of `Event`"));
    assert_eq!(
        error::<Event>(r#"{"Scored":{}}"#),
        "$.Scored: missing field `points` at line 1, column 13"
    );
    assert!(error::<Event>(r#"{"Moved":[1,"a"]}"#).starts_with("$.Moved[1]: expected"));
    assert!(error::<Event>(r#"{"Renamed":1}"#).starts_with("$.Renamed: expected a string"));
}

#[derive(Json, Debug, PartialEq)]
#[json(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Shape {
    Point,
    Circle {
        radius: f64,
    },
    #[json(rename_all = "camelCase")]
    Rect {
        top_left: (i32, i32),
        size_xy: [u32; 2],
    },
}

#[test]
fn enums_internally_tagged() {
    check(&Shape::Point, r#"{"type":"point"}"#);
    check(
        &Shape::Circle { radius: 1.5 },
        r#"{"type":"circle","radius":1.5}"#,
    );
    check(
        &Shape::Rect {
            top_left: (1, 2),
            size_xy: [3, 4],
        },
        r#"{"type":"rect","topLeft":[1,2],"sizeXy":[3,4]}"#,
    );
    let late_tag: Shape = json::from_str(r#"{"radius":2,"type":"circle"}"#).expect("tag anywhere");
    assert_eq!(late_tag, Shape::Circle { radius: 2.0 });
    assert_eq!(
        error::<Shape>(r#"{"radius":2}"#),
        "missing field `type` at line 1, column 1"
    );
    assert_eq!(
        error::<Shape>(r#"{"type":"hexagon"}"#),
        "unknown variant `hexagon` at line 1, column 1"
    );
    assert_eq!(
        error::<Shape>(r#"{"type":"point","x":1}"#),
        "unknown field `x` at line 1, column 21"
    );
    assert_eq!(
        error::<Shape>(r#"{"type":"circle"}"#),
        "missing field `radius` at line 1, column 18"
    );
    assert!(error::<Shape>(r#"{"type":5}"#).starts_with("$.type: expected a string"));
    assert!(error::<Shape>("[]").starts_with("expected an object"));
}

/// An internally tagged enum that passes over unknown keys.
#[derive(Json, Debug, PartialEq)]
#[json(tag = "op")]
enum Op {
    Grant { user: String },
    Revoke { user: String },
}

/// A repeated tag is an error, like a repeated field: the reader must not pick the first tag
/// where `json::parse` (and so `from_value`) keeps the last, giving two variants for one text.
#[test]
fn internally_tagged_enum_rejects_a_repeated_tag() {
    let text = r#"{"op":"Revoke","user":"u","op":"Grant"}"#;
    let tree = json::parse(text).expect("valid JSON: the last `op` wins");
    let revoke_or_grant = json::from_value::<Op>(&tree);
    assert_eq!(revoke_or_grant, Ok(Op::Grant { user: "u".into() }));
    assert_eq!(
        error::<Op>(text),
        "duplicate field `op` at line 1, column 32"
    );
    assert!(
        error::<Shape>(r#"{"type":"point","type":"point"}"#).starts_with("duplicate field `type`")
    );
}

#[derive(Json, Debug, PartialEq)]
struct Generic<'a, T: Clone, U, const N: usize>
where
    U: Copy + Default,
{
    name: Cow<'a, str>,
    items: Vec<T>,
    pair: [U; N],
    map: BTreeMap<String, T>,
    #[json(skip)]
    hidden: U,
    #[json(skip)]
    marker: PhantomData<fn() -> T>,
}

#[test]
fn generics_bounds_where_clauses_lifetimes_and_consts() {
    let mut map = BTreeMap::new();
    map.insert("k".to_string(), "v".to_string());
    let value: Generic<'_, String, u8, 2> = Generic {
        name: Cow::Borrowed("n"),
        items: vec!["i".into()],
        pair: [1, 2],
        map,
        hidden: 0,
        marker: PhantomData,
    };
    check(
        &value,
        r#"{"name":"n","items":["i"],"pair":[1,2],"map":{"k":"v"}}"#,
    );
}

#[derive(Json, Debug, PartialEq)]
enum Tree<T> {
    Leaf(T),
    Node(Box<Tree<T>>, Box<Tree<T>>),
}

#[test]
fn recursive_generic_enum() {
    let tree = Tree::Node(Box::new(Tree::Leaf(1u8)), Box::new(Tree::Leaf(2)));
    check(&tree, r#"{"Node":[{"Leaf":1},{"Leaf":2}]}"#);
}

#[derive(Json, Debug, PartialEq)]
struct Borrowing<'a> {
    text: &'a str,
}

#[test]
fn borrowed_fields_write() {
    let text = json::to_string(&Borrowing { text: "b" }).expect("writes");
    assert_eq!(text, r#"{"text":"b"}"#);
}

#[derive(Json, Debug, PartialEq)]
#[allow(non_camel_case_types)]
#[json(tag = "kind")]
enum r#enum {
    r#struct { r#type: String, r#match: bool },
}

#[test]
fn raw_identifiers_lose_their_prefix() {
    check(
        &r#enum::r#struct {
            r#type: "t".into(),
            r#match: true,
        },
        r#"{"kind":"struct","type":"t","match":true}"#,
    );
}

/// A model-like struct: `#[db(..)]` keys are passed over except `default`.
#[derive(Json, Binary, Debug, PartialEq)]
#[allow(dead_code)]
struct Product {
    #[db(primary_key)]
    id: u64,
    #[db(unique, indexed)]
    #[allow(unused)]
    sku: String,
    #[db(default = "default_level")]
    stock: u8,
}

#[test]
fn foreign_and_db_attributes() {
    let product: Product = json::from_str(r#"{"id":1,"sku":"s"}"#).expect("stock defaults");
    assert_eq!(
        product,
        Product {
            id: 1,
            sku: "s".into(),
            stock: 3
        }
    );
    check(&product, r#"{"id":1,"sku":"s","stock":3}"#);
}

#[derive(Json, Debug, PartialEq)]
enum Never {}

#[test]
fn empty_enum_reads_nothing() {
    assert!(error::<Never>("null").contains("has no variants"));
}

#[test]
fn values_read_through_from_value() {
    let value = lithair::json!({"id": 4, "title": "v", "tags": ["a", "b"], "score": 0.25});
    let post: Post = json::from_value(&value).expect("reads from a Value");
    assert_eq!(post.tags, ["a", "b"]);
    let back = json::to_value(&post).expect("to a Value");
    assert_eq!(back.get("author"), Some(&Value::Null));
}

#[test]
fn pretty_output() {
    let text = json::to_string_pretty(&Event::Scored {
        points: 1,
        bonus: None,
    })
    .expect("writes");
    assert_eq!(text, "{\n  \"Scored\": {\n    \"points\": 1\n  }\n}");
}

fn post_strategy() -> impl Strategy<Value = Post> {
    (
        any::<u64>(),
        "\\PC{0,12}",
        proptest::collection::vec("[a-z\\\\\"\u{1}]{0,4}", 0..4),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        proptest::option::of("\\PC{0,6}"),
    )
        .prop_map(|(id, title, tags, score, author)| Post {
            id,
            title,
            tags,
            score,
            author,
        })
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Started),
        "\\PC{0,6}".prop_map(Event::Renamed),
        (any::<i32>(), any::<i32>()).prop_map(|(a, b)| Event::Moved(a, b)),
        (any::<u32>(), proptest::option::of(any::<u32>()))
            .prop_map(|(points, bonus)| Event::Scored { points, bonus }),
        Just(Event::Deleted),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn derived_structs_round_trip(post in post_strategy()) {
        let text = json::to_string(&post).expect("writes");
        let back: Post = json::from_str(&text).expect("reads");
        prop_assert_eq!(back, post);
    }

    #[test]
    fn derived_enums_round_trip(events in proptest::collection::vec(event_strategy(), 0..6)) {
        let text = json::to_string(&events).expect("writes");
        let back: Vec<Event> = json::from_str(&text).expect("reads");
        prop_assert_eq!(back, events);
    }

    #[test]
    fn random_text_never_panics(text in "[{}\\[\\]\",:a-z0-9 ]{0,40}") {
        let _ = json::from_str::<Post>(&text);
        let _ = json::from_str::<Event>(&text);
        let _ = json::from_str::<Shape>(&text);
        let _ = json::from_str::<Point>(&text);
    }
}

/// Declares a struct the way `macro_rules!` users do, forwarding attributes, visibility and
/// types as fragments (they reach the derive inside invisible groups).
macro_rules! declare {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fvis:vis $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        $vis struct $name { $($fvis $field: $ty),* }
    };
}

declare! {
    /// Declared through a macro.
    #[derive(Json, Binary, Debug, PartialEq)]
    #[json(rename_all = "camelCase")]
    pub(crate) struct Declared {
        pub first_name: String,
        age: Option<u8>,
    }
}

declare! {
    #[derive(Json)]
    struct DeclaredBorrow { text: &'static str }
}

#[test]
fn types_declared_by_macro_rules() {
    check(
        &Declared {
            first_name: "a".into(),
            age: Some(3),
        },
        r#"{"firstName":"a","age":3}"#,
    );
    let bytes = lithair::binary::to_vec(&Declared {
        first_name: "a".into(),
        age: None,
    });
    assert_eq!(bytes, [3, 1, b'a', 0]);
    let text = json::to_string(&DeclaredBorrow { text: "t" }).expect("writes");
    assert_eq!(text, r#"{"text":"t"}"#);
}

/// User items named like the std prelude's must not change the generated code's meaning.
mod shadowing {
    #![allow(dead_code)]
    use lithair::prelude::*;

    #[derive(Json, Binary, Debug, PartialEq, Default)]
    pub struct Option {
        pub inner: u8,
    }
    pub struct Some;
    pub struct None;
    pub struct Ok;
    pub struct Err;
    pub struct Result;

    #[derive(Json, Binary, Debug, PartialEq)]
    pub struct Holder {
        pub own: Option,
        pub std: ::core::option::Option<u8>,
    }

    #[derive(Json, Binary, Debug, PartialEq)]
    #[json(tag = "t")]
    pub enum Tagged {
        A { own: Option },
    }
}

#[test]
fn user_items_named_like_prelude_items() {
    use shadowing::{Holder, Option as Own, Tagged};
    check(
        &Holder {
            own: Own { inner: 1 },
            std: None,
        },
        r#"{"own":{"inner":1},"std":null}"#,
    );
    check(
        &Tagged::A {
            own: Own { inner: 2 },
        },
        r#"{"t":"A","own":{"inner":2}}"#,
    );
    let bytes = lithair::binary::to_vec(&Holder {
        own: Own { inner: 1 },
        std: Some(2),
    });
    assert_eq!(
        lithair::binary::from_slice::<Holder>(&bytes)
            .expect("decodes")
            .std,
        Some(2)
    );
}

/// `T` is only in a skipped field: it needs `Default` (added by the derive), not `FromJson`.
#[derive(Json, Binary, Debug, PartialEq)]
struct SkippedParam<T> {
    shown: u8,
    #[json(skip)]
    #[binary(skip)]
    hidden: T,
}

#[derive(Debug, PartialEq, Default)]
struct NotACodec(u8);

#[test]
fn type_params_of_skipped_fields_need_only_default() {
    let value = SkippedParam {
        shown: 1,
        hidden: NotACodec(5),
    };
    assert_eq!(json::to_string(&value).expect("writes"), r#"{"shown":1}"#);
    let back: SkippedParam<NotACodec> = json::from_str(r#"{"shown":1}"#).expect("reads");
    assert_eq!(
        back,
        SkippedParam {
            shown: 1,
            hidden: NotACodec(0)
        }
    );
    let bytes = lithair::binary::to_vec(&value);
    assert_eq!(bytes, [1, 1]);
    let back: SkippedParam<NotACodec> = lithair::binary::from_slice(&bytes).expect("decodes");
    assert_eq!(back.hidden, NotACodec(0));
}

/// A newtype that holds itself through `Option<Box<_>>` reads every level from the same token:
/// each level counts toward the nesting limit, so `1` is an error instead of a stack overflow
/// that aborted the process (from text and from a `Value`).
#[test]
fn a_newtype_that_contains_itself_stops_at_the_nesting_limit() {
    #[derive(Json, Debug, PartialEq)]
    struct Chain(Option<Box<Chain>>);
    let error = lithair::json::from_str::<Chain>("1").expect_err("no Chain is a number");
    assert!(error.to_string().contains("nesting"), "{error}");
    let value = lithair::json::parse("1").expect("parse");
    assert!(lithair::json::from_value::<Chain>(&value).is_err());
    assert_eq!(
        lithair::json::from_str::<Chain>("null").expect("null ends the chain"),
        Chain(None)
    );
    #[derive(Json, Debug, PartialEq)]
    struct Meters(f64);
    assert_eq!(
        lithair::json::from_str::<Vec<Meters>>("[1.5,2]").expect("plain newtypes"),
        vec![Meters(1.5), Meters(2.0)]
    );
}
