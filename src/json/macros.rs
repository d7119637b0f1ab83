//! The `json!` macro: builds a `Value` from JSON-like syntax with Rust expressions inside.
//!
//! Must not: panic. An interpolated expression goes through `ToJson`; one that cannot be
//! represented (a NaN or infinite float) becomes `null`, as in `Value::from(f64::NAN)`.

/// Builds a [`json::Value`](crate::json::Value) from JSON-like syntax.
///
/// ```
/// use lithair::json;
/// let name = "lithair";
/// let v = json!({"name": name, "tags": ["a", null, 1.5], "nested": {"ok": true}, "n": 2 + 3});
/// assert_eq!(v["n"].as_u64(), Some(5));
/// assert_eq!(json::to_string(&v).unwrap(),
///     r#"{"name":"lithair","tags":["a",null,1.5],"nested":{"ok":true},"n":5}"#);
/// ```
/// Keys are string literals or parenthesized expressions (`(key): value`); a repeated key keeps
/// its first position and its last value. Values are `null`, nested `[..]` / `{..}`, or any
/// expression whose type implements `ToJson`.
#[macro_export]
macro_rules! json {
    ($($tokens:tt)+) => {
        $crate::__json_value!($($tokens)+)
    };
}

/// Implementation detail of `json!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __json_value {
    (null) => {
        $crate::json::Value::Null
    };
    ([]) => {
        $crate::json::Value::Array(::std::vec::Vec::new())
    };
    ([ $($tokens:tt)+ ]) => {
        $crate::json::Value::Array($crate::__json_array!([] $($tokens)+))
    };
    ({}) => {
        $crate::json::Value::Object($crate::json::Map::new())
    };
    ({ $($tokens:tt)+ }) => {{
        let mut map = $crate::json::Map::new();
        $crate::__json_object!(map $($tokens)+);
        $crate::json::Value::Object(map)
    }};
    ($other:expr) => {
        $crate::json::to_value_lossy(&$other)
    };
}

/// Implementation detail of `json!`: munches array elements into a `vec!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __json_array {
    ([$($done:expr,)*]) => {
        ::std::vec![$($done,)*]
    };
    ([$($done:expr,)*] null $(, $($rest:tt)*)?) => {
        $crate::__json_array!([$($done,)* $crate::json::Value::Null,] $($($rest)*)?)
    };
    ([$($done:expr,)*] [$($inner:tt)*] $(, $($rest:tt)*)?) => {
        $crate::__json_array!([$($done,)* $crate::__json_value!([$($inner)*]),] $($($rest)*)?)
    };
    ([$($done:expr,)*] {$($inner:tt)*} $(, $($rest:tt)*)?) => {
        $crate::__json_array!([$($done,)* $crate::__json_value!({$($inner)*}),] $($($rest)*)?)
    };
    ([$($done:expr,)*] $next:expr $(, $($rest:tt)*)?) => {
        $crate::__json_array!([$($done,)* $crate::__json_value!($next),] $($($rest)*)?)
    };
}

/// Implementation detail of `json!`: munches object members into `map`.
#[doc(hidden)]
#[macro_export]
macro_rules! __json_object {
    ($map:ident) => {};
    ($map:ident $key:literal : $($rest:tt)+) => {
        $crate::__json_member!($map ($key) $($rest)+);
    };
    ($map:ident ($key:expr) : $($rest:tt)+) => {
        $crate::__json_member!($map ($key) $($rest)+);
    };
}

/// Implementation detail of `json!`: one member's value, then the rest of the object.
#[doc(hidden)]
#[macro_export]
macro_rules! __json_member {
    ($map:ident ($key:expr) null $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::ToString::to_string(&$key), $crate::json::Value::Null);
        $crate::__json_object!($map $($($rest)*)?);
    };
    ($map:ident ($key:expr) [$($inner:tt)*] $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::ToString::to_string(&$key), $crate::__json_value!([$($inner)*]));
        $crate::__json_object!($map $($($rest)*)?);
    };
    ($map:ident ($key:expr) {$($inner:tt)*} $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::ToString::to_string(&$key), $crate::__json_value!({$($inner)*}));
        $crate::__json_object!($map $($($rest)*)?);
    };
    ($map:ident ($key:expr) $value:expr $(, $($rest:tt)*)?) => {
        $map.insert(::std::string::ToString::to_string(&$key), $crate::__json_value!($value));
        $crate::__json_object!($map $($($rest)*)?);
    };
}

#[cfg(test)]
mod tests {
    use crate::json::{self, Value};

    #[test]
    fn builds_nested_values() {
        let x = 7u32;
        let key = String::from("dyn");
        let v = json!({
            "a": 1,
            "b": [true, null, {"c": "d"}, [], {}],
            "e": x * 2,
            "f": -1.5,
            (key): [1, [2, [3]]],
            "g": null
        });
        assert_eq!(
            json::to_string(&v).unwrap(),
            r#"{"a":1,"b":[true,null,{"c":"d"},[],{}],"e":14,"f":-1.5,"dyn":[1,[2,[3]]],"g":null}"#
        );
        assert_eq!(json!(null), Value::Null);
        assert_eq!(json!([]), Value::Array(vec![]));
        assert_eq!(json!("s"), Value::String("s".into()));
        assert_eq!(json!(f64::NAN), Value::Null);
        assert_eq!(json!([1, 2,]), json!([1, 2]));
    }
}
