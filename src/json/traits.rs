//! The `ToJson` / `FromJson` traits and their implementations for std types and `Value`.
//!
//! Shapes: integers and floats are numbers (out-of-range is an error), `char` is a one-character
//! string, `()` is `null`, `Option::None` is `null`, sequences, sets, slices, arrays and tuples
//! are arrays (arrays and tuples of exact length), maps with `String` keys are objects (a repeated key: the last value wins).
//! Must not: build a `Value` on the typed path (`read_json` reads straight from text).

use super::number::{Number, N};
use super::writer::{
    write_escaped, write_finite_f64, write_i64, write_small_number_array, write_u64,
};
use super::{Error, Kind, Map, Reader, Value, Writer};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;
use std::sync::Arc;

/// Types that can be written as JSON.
pub trait ToJson {
    /// Writes `self` as one JSON value.
    fn write_json(&self, w: &mut Writer);

    /// `self` as a `Value` (what [`super::to_value`] returns): the `Value` its text parses
    /// to. The provided version writes the text and parses it back; integers, `f64`, `bool`,
    /// strings, options, pointers and sequences of them build it directly (a model's field
    /// reads, behind every list filter and sort, go through here). Fails only for a
    /// non-finite float.
    fn to_json_value(&self) -> Result<Value, Error> {
        value_through_text(self)
    }
}

/// `ToJson::to_json_value`'s provided version: `value` written as text and parsed back, with
/// no nesting limit (the value exists already; the limit guards text from outside).
pub(crate) fn value_through_text<T: ToJson + ?Sized>(value: &T) -> Result<Value, Error> {
    let text = super::to_string(value)?;
    super::parse_with(
        &text,
        &super::ParseOptions {
            depth_max: usize::MAX,
            duplicate_keys: super::DuplicateKeys::LastWins,
        },
    )
}

/// Types that can be read from JSON.
pub trait FromJson: Sized {
    /// Reads one JSON value from `r`.
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error>;

    /// The value to use when a struct field is absent. `None` means "missing field" error;
    /// `Option<T>` overrides it to return `Some(None)`.
    fn absent() -> Option<Self> {
        None
    }

    /// Converts from a `Value`. The provided version goes through text (errors keep their path
    /// but lose the position, which would point into the synthetic text).
    fn from_json_value(v: &Value) -> Result<Self, Error> {
        read_through_text(v)
    }
}

/// `FromJson::from_json_value`'s provided version: `v` written as text and read back.
fn read_through_text<T: FromJson>(v: &Value) -> Result<T, Error> {
    let text = super::to_string(v)?;
    let mut r = Reader::new(&text);
    let result = T::read_json(&mut r).and_then(|value| r.finish().map(|()| value));
    result.map_err(Error::clear_position)
}

// ---------------------------------------------------------------------------------------------
// Value

impl ToJson for Value {
    fn write_json(&self, w: &mut Writer) {
        if w.is_pretty() {
            write_value_pretty(self, w);
        } else {
            write_value_compact(self, w.out_mut());
        }
    }
}

/// The compact fast path: no comma state, straight into the output string.
fn write_value_compact(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(n.n, out),
        Value::String(s) => write_escaped(out, s),
        Value::Array(items) => write_array_compact(items, out),
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            for (k, item) in map {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_escaped(out, k);
                out.push(b':');
                write_value_compact(item, out);
            }
            out.push(b'}');
        }
    }
}

/// `[a,b,...]`. Numbers, the usual leaves of large arrays (coordinates, series), are written
/// here without a call per element, and so are arrays of numbers one level down (points in a
/// list of points): a call per small array costs about as much as formatting one number.
fn write_array_compact(items: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::Number(n) => write_number_element(n.n, index != 0, out),
            // A point (one or two numbers) in one window; writes nothing when it is not one.
            Value::Array(inner) if write_small_number_array(inner, index != 0, out) => {}
            // An array of arrays (a ring of points) recurses once here, so that its own
            // elements, arrays of numbers, take the inline loop below.
            Value::Array(inner) if matches!(inner.first(), Some(Value::Number(_))) => {
                if index != 0 {
                    out.push(b',');
                }
                out.push(b'[');
                for (inner_index, inner_item) in inner.iter().enumerate() {
                    match inner_item {
                        Value::Number(n) => write_number_element(n.n, inner_index != 0, out),
                        _ => {
                            if inner_index != 0 {
                                out.push(b',');
                            }
                            write_value_compact(inner_item, out);
                        }
                    }
                }
                out.push(b']');
            }
            _ => {
                if index != 0 {
                    out.push(b',');
                }
                write_value_compact(item, out);
            }
        }
    }
    out.push(b']');
}

/// An array element that is a number, after a comma unless it is the first.
#[inline(always)]
fn write_number_element(n: N, comma: bool, out: &mut Vec<u8>) {
    if comma {
        out.push(b',');
    }
    write_number(n, out);
}

/// Inlined in optimized builds. Unoptimized builds give every inlined local its own stack slot,
/// so there the float formatting inlined here put its scratch into every level of the
/// recursive Value writer, and 128 nested arrays overflowed a 2 MiB thread stack: there it is a
/// call, whose frame is popped before the writer goes deeper.
#[cfg_attr(not(debug_assertions), inline(always))]
#[cfg_attr(debug_assertions, inline(never))]
fn write_number(n: N, out: &mut Vec<u8>) {
    match n {
        N::PosInt(v) => write_u64(out, v),
        N::NegInt(v) => write_i64(out, v),
        N::Float(v) => write_finite_f64(out, v),
        N::WidePos(v) => out.extend_from_slice(v.to_string().as_bytes()),
        N::WideNeg(v) => out.extend_from_slice(v.to_string().as_bytes()),
    }
}

fn write_value_pretty(v: &Value, w: &mut Writer) {
    match v {
        Value::Array(items) => {
            w.begin_array();
            for item in items {
                w.element();
                write_value_pretty(item, w);
            }
            w.end_array();
        }
        Value::Object(map) => {
            w.begin_object();
            for (k, item) in map {
                w.field(k);
                write_value_pretty(item, w);
            }
            w.end_object();
        }
        other => write_value_compact(other, w.out_mut()),
    }
}

impl FromJson for Value {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_value()
    }
    fn from_json_value(v: &Value) -> Result<Self, Error> {
        Ok(v.clone())
    }
}

impl ToJson for Map {
    fn write_json(&self, w: &mut Writer) {
        w.begin_object();
        for (k, v) in self {
            w.field(k);
            v.write_json(w);
        }
        w.end_object();
    }
}

impl FromJson for Map {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let kind = r.peek_kind()?;
        if kind != Kind::Object {
            return Err(r.error(format!("expected an object, found {kind}")));
        }
        match r.read_value()? {
            Value::Object(map) => Ok(map),
            _ => unreachable!("an object was peeked"),
        }
    }
}

impl ToJson for super::Number {
    fn write_json(&self, w: &mut Writer) {
        write_number(self.n, w.out_mut());
    }
}

impl FromJson for super::Number {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let kind = r.peek_kind()?;
        if kind != Kind::Number {
            return Err(r.error(format!("expected a number, found {kind}")));
        }
        match r.read_value()? {
            Value::Number(n) => Ok(n),
            _ => unreachable!("a number was peeked"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars

macro_rules! int_via {
    ($read:ident, $write:ident, $wide:ty: $($t:ty)*) => {$(
        impl ToJson for $t {
            #[inline]
            fn write_json(&self, w: &mut Writer) {
                w.$write(*self as $wide);
            }
            fn to_json_value(&self) -> Result<Value, Error> {
                Ok(Value::from(*self))
            }
        }
        impl FromJson for $t {
            #[inline]
            fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
                let before = r.clone();
                let v = r.$read(stringify!($t))?;
                <$t>::try_from(v).map_err(|_| {
                    before.error(format!("the number {v} is out of range for {}", stringify!($t)))
                })
            }
        }
    )*};
}
int_via!(read_i64_for, i64, i64: i8 i16 i32 i64 isize);
int_via!(read_u64_for, u64, u64: u8 u16 u32 u64 usize);

impl ToJson for i128 {
    fn write_json(&self, w: &mut Writer) {
        w.i128(*self);
    }

    /// Exact at every size: the number is built from the integer, not from its text.
    fn to_json_value(&self) -> Result<Value, Error> {
        Ok(Value::Number(Number::from(*self)))
    }
}

impl FromJson for i128 {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_i128()
    }
}

impl ToJson for u128 {
    fn write_json(&self, w: &mut Writer) {
        w.u128(*self);
    }

    /// Exact at every size: the number is built from the integer, not from its text.
    fn to_json_value(&self) -> Result<Value, Error> {
        Ok(Value::Number(Number::from(*self)))
    }
}

impl FromJson for u128 {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_u128()
    }
}

impl ToJson for f64 {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.f64(*self);
    }

    /// The shortest text of a finite f64 reads back as that f64, so it is the number itself;
    /// a non-finite one fails as its text does.
    fn to_json_value(&self) -> Result<Value, Error> {
        match super::Number::from_f64(*self) {
            Some(number) => Ok(Value::Number(number)),
            None => value_through_text(self),
        }
    }
}

impl FromJson for f64 {
    #[inline]
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_f64()
    }
}

impl ToJson for f32 {
    fn write_json(&self, w: &mut Writer) {
        w.f32(*self);
    }
}

impl FromJson for f32 {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_f32()
    }

    /// A float `Value` holds an f64: it is rounded to f32 once, from that f64. Through its
    /// shortest text it was rounded from a decimal that is not exactly the f64, which at an
    /// f32 halfway point went the other way (`1 + 2^-24` read as `1 + 2^-23`, not `1.0`).
    fn from_json_value(v: &Value) -> Result<Self, Error> {
        if let Value::Number(number) = v {
            if let N::Float(wide) = number.n {
                let narrow = wide as f32;
                if narrow.is_finite() {
                    return Ok(narrow);
                }
            }
        }
        // Integers (one rounding either way), out-of-range floats and other values: as the
        // text reads, with its errors.
        read_through_text(v)
    }
}

impl ToJson for bool {
    fn write_json(&self, w: &mut Writer) {
        w.bool(*self);
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        Ok(Value::Bool(*self))
    }
}

impl FromJson for bool {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        r.read_bool()
    }
}

impl ToJson for char {
    fn write_json(&self, w: &mut Writer) {
        let mut buffer = [0u8; 4];
        w.str(self.encode_utf8(&mut buffer));
    }
}

impl FromJson for char {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let before = r.clone();
        let s = r.read_str()?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(before.error(format!(
                "expected a string of exactly one character, found {:?}",
                s
            ))),
        }
    }
}

impl ToJson for str {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.str(self);
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        Ok(Value::String(self.to_owned()))
    }
}

impl ToJson for String {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.str(self);
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        Ok(Value::String(self.clone()))
    }
}

impl FromJson for String {
    #[inline]
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(r.read_str()?.into_owned())
    }
}

impl ToJson for Cow<'_, str> {
    fn write_json(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl FromJson for Cow<'_, str> {
    /// Always owned: the trait does not tie the result to the text's lifetime.
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Cow::Owned(r.read_str()?.into_owned()))
    }
}

impl ToJson for () {
    fn write_json(&self, w: &mut Writer) {
        w.null();
    }
}

impl FromJson for () {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        if r.try_null()? {
            Ok(())
        } else {
            Err(r.error(format!("expected null, found {}", r.clone().peek_kind()?)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wrappers

impl<T: ToJson> ToJson for Option<T> {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        match self {
            Some(v) => v.write_json(w),
            None => w.null(),
        }
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        match self {
            Some(v) => v.to_json_value(),
            None => Ok(Value::Null),
        }
    }
}

impl<T: FromJson> FromJson for Option<T> {
    #[inline]
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        if r.try_null()? {
            Ok(None)
        } else {
            T::read_json(r).map(Some)
        }
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

macro_rules! pointer {
    ($($p:ident)*) => {$(
        impl<T: ToJson + ?Sized> ToJson for $p<T> {
            #[inline]
            fn write_json(&self, w: &mut Writer) {
                (**self).write_json(w);
            }
            fn to_json_value(&self) -> Result<Value, Error> {
                (**self).to_json_value()
            }
        }
        impl<T: FromJson> FromJson for $p<T> {
            #[inline]
            fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
                T::read_json(r).map($p::new)
            }
        }
    )*};
}
pointer!(Box Rc Arc);

impl<T: ToJson + ?Sized> ToJson for &T {
    fn write_json(&self, w: &mut Writer) {
        (**self).write_json(w);
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        (**self).to_json_value()
    }
}

impl<T: ToJson + ?Sized> ToJson for &mut T {
    fn write_json(&self, w: &mut Writer) {
        (**self).write_json(w);
    }
}

impl FromJson for Box<str> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(r.read_str()?.into())
    }
}

// ---------------------------------------------------------------------------------------------
// Sequences

/// Writes any iterator of items as a JSON array.
pub(crate) fn write_seq<'i, T: ToJson + 'i>(
    w: &mut Writer,
    items: impl IntoIterator<Item = &'i T>,
) {
    w.begin_array();
    for item in items {
        w.element();
        item.write_json(w);
    }
    w.end_array();
}

/// Reads a JSON array, handing each element (with its index) to `push`.
pub(crate) fn read_seq<T: FromJson>(
    r: &mut Reader<'_>,
    mut push: impl FnMut(T, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    r.begin_array()?;
    let mut index = 0;
    while r.next_element()? {
        let item = T::read_json(r).map_err(|e| e.with_index(index))?;
        push(item, index)?;
        index += 1;
    }
    Ok(())
}

impl<T: ToJson> ToJson for [T] {
    fn write_json(&self, w: &mut Writer) {
        write_seq(w, self);
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        self.iter()
            .map(ToJson::to_json_value)
            .collect::<Result<_, _>>()
            .map(Value::Array)
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        write_seq(w, self);
    }
    fn to_json_value(&self) -> Result<Value, Error> {
        self.as_slice().to_json_value()
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut items = Vec::new();
        read_seq(r, |item, _| {
            items.push(item);
            Ok(())
        })?;
        Ok(items)
    }
}

impl<T: FromJson> FromJson for Box<[T]> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        Vec::<T>::read_json(r).map(Vec::into_boxed_slice)
    }
}

impl<T: ToJson> ToJson for VecDeque<T> {
    fn write_json(&self, w: &mut Writer) {
        write_seq(w, self);
    }
}

impl<T: FromJson> FromJson for VecDeque<T> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        Vec::<T>::read_json(r).map(VecDeque::from)
    }
}

impl<T: ToJson, const LEN: usize> ToJson for [T; LEN] {
    fn write_json(&self, w: &mut Writer) {
        write_seq(w, self);
    }
}

impl<T: FromJson, const LEN: usize> FromJson for [T; LEN] {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let before = r.clone();
        let mut items = Vec::with_capacity(LEN);
        read_seq(r, |item, index| {
            if index >= LEN {
                return Err(
                    before.error(format!("expected an array of {LEN} elements, found more"))
                );
            }
            items.push(item);
            Ok(())
        })?;
        let found = items.len();
        items.try_into().map_err(|_| {
            before.error(format!(
                "expected an array of {LEN} elements, found {found}"
            ))
        })
    }
}

impl<T: ToJson, S> ToJson for HashSet<T, S> {
    fn write_json(&self, w: &mut Writer) {
        write_seq(w, self);
    }
}

impl<T: FromJson + Eq + Hash, S: BuildHasher + Default> FromJson for HashSet<T, S> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut set = HashSet::default();
        read_seq(r, |item, _| {
            set.insert(item);
            Ok(())
        })?;
        Ok(set)
    }
}

impl<T: ToJson> ToJson for BTreeSet<T> {
    fn write_json(&self, w: &mut Writer) {
        write_seq(w, self);
    }
}

impl<T: FromJson + Ord> FromJson for BTreeSet<T> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut set = BTreeSet::new();
        read_seq(r, |item, _| {
            set.insert(item);
            Ok(())
        })?;
        Ok(set)
    }
}

// ---------------------------------------------------------------------------------------------
// Maps

/// Reads a JSON object, handing each key and value to `insert` (a repeated key replaces the
/// earlier value, as in `json::parse`).
fn read_map<T: FromJson>(
    r: &mut Reader<'_>,
    mut insert: impl FnMut(String, T),
) -> Result<(), Error> {
    r.begin_object()?;
    while let Some(key) = r.next_key()? {
        let value = T::read_json(r).map_err(|e| e.with_field(&key))?;
        insert(key.into_owned(), value);
    }
    Ok(())
}

impl<T: ToJson, S> ToJson for HashMap<String, T, S> {
    fn write_json(&self, w: &mut Writer) {
        w.begin_object();
        for (k, v) in self {
            w.field(k);
            v.write_json(w);
        }
        w.end_object();
    }
}

impl<T: FromJson, S: BuildHasher + Default> FromJson for HashMap<String, T, S> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut map = HashMap::default();
        read_map(r, |k, v| {
            map.insert(k, v);
        })?;
        Ok(map)
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn write_json(&self, w: &mut Writer) {
        w.begin_object();
        for (k, v) in self {
            w.field(k);
            v.write_json(w);
        }
        w.end_object();
    }
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        read_map(r, |k, v| {
            map.insert(k, v);
        })?;
        Ok(map)
    }
}

// ---------------------------------------------------------------------------------------------
// Tuples: fixed-length arrays.

fn tuple_length_error(before: &Reader<'_>, expected: usize) -> Error {
    before.error(format!("expected an array of exactly {expected} elements"))
}

macro_rules! tuple {
    ($len:literal: $($name:ident $index:tt)+) => {
        impl<$($name: ToJson),+> ToJson for ($($name,)+) {
            fn write_json(&self, w: &mut Writer) {
                w.begin_array();
                $( w.element(); self.$index.write_json(w); )+
                w.end_array();
            }
        }
        impl<$($name: FromJson),+> FromJson for ($($name,)+) {
            fn read_json(r: &mut Reader<'_>) -> Result<Self, Error> {
                let before = r.clone();
                r.begin_array()?;
                let value = ($(
                    {
                        if !r.next_element()? {
                            return Err(tuple_length_error(&before, $len));
                        }
                        $name::read_json(r).map_err(|e| e.with_index($index))?
                    },
                )+);
                if r.next_element()? {
                    return Err(tuple_length_error(&before, $len));
                }
                Ok(value)
            }
        }
    };
}
tuple!(1: A 0);
tuple!(2: A 0 B 1);
tuple!(3: A 0 B 1 C 2);
tuple!(4: A 0 B 1 C 2 D 3);
tuple!(5: A 0 B 1 C 2 D 3 E 4);
tuple!(6: A 0 B 1 C 2 D 3 E 4 F 5);
tuple!(7: A 0 B 1 C 2 D 3 E 4 F 5 G 6);
tuple!(8: A 0 B 1 C 2 D 3 E 4 F 5 G 6 H 7);
tuple!(9: A 0 B 1 C 2 D 3 E 4 F 5 G 6 H 7 I 8);
tuple!(10: A 0 B 1 C 2 D 3 E 4 F 5 G 6 H 7 I 8 J 9);
tuple!(11: A 0 B 1 C 2 D 3 E 4 F 5 G 6 H 7 I 8 J 9 K 10);
tuple!(12: A 0 B 1 C 2 D 3 E 4 F 5 G 6 H 7 I 8 J 9 K 10 L 11);
