//! Code-generation helpers shared by every derive: impl headers with generics and added bounds,
//! default expressions, and the scan for type parameters used by fields.
//!
//! Owns: how an `impl` line is spelled. Must not: emit anything but absolute paths
//! (`::lithair::..`, `::core::..`), so generated code works whatever the user imported.
#[cfg(test)]
use crate::ast::Error;
use crate::ast::{Body, Field, GenericParam, Item};
use crate::attrs::DefaultSpec;
use crate::tokens::{render, Sp, Tok};

/// Spells `impl<..> TRAIT for Name<..> where ..` for `item`. Every type parameter in `bounded`
/// gets `: bound` in the where clause; `extra` predicates are appended as they are.
pub fn impl_header(
    item: &Item,
    trait_path: &str,
    bound: &str,
    bounded: &[String],
    extra: &[String],
) -> String {
    let params = &item.generics.params;
    let mut header = String::from("#[automatically_derived]\nimpl");
    if !params.is_empty() {
        let declared: Vec<String> = params.iter().map(declare_param).collect();
        header.push_str(&format!("<{}>", declared.join(", ")));
    }
    header.push_str(&format!(" {trait_path} for {}", item.name));
    if !params.is_empty() {
        let names: Vec<&str> = params.iter().map(GenericParam::name).collect();
        header.push_str(&format!("<{}>", names.join(", ")));
    }
    let mut predicates: Vec<String> = item.generics.predicates.iter().map(|p| render(p)).collect();
    predicates.extend(bounded.iter().map(|name| format!("{name}: {bound}")));
    predicates.extend(extra.iter().cloned());
    if !predicates.is_empty() {
        header.push_str(&format!(" where {}", predicates.join(", ")));
    }
    header
}

/// A parameter as declared on the impl: bounds kept, default dropped.
fn declare_param(param: &GenericParam) -> String {
    match param {
        GenericParam::Lifetime { name, bounds } | GenericParam::Type { name, bounds } => {
            if bounds.is_empty() {
                name.clone()
            } else {
                format!("{name}: {}", render(bounds))
            }
        }
        GenericParam::Const { name, ty } => format!("const {name}: {}", render(ty)),
    }
}

/// The type parameters (not lifetimes or consts) that appear in any of `fields`' types, in
/// declaration order: these get the codec bound.
pub fn used_type_params<'f>(item: &Item, fields: impl Iterator<Item = &'f Field>) -> Vec<String> {
    let fields: Vec<&Field> = fields.collect();
    item.generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type { name, .. } => Some(name),
            _ => None,
        })
        .filter(|name| fields.iter().any(|field| mentions(&field.ty, name)))
        .cloned()
        .collect()
}

/// Whether `ident` occurs anywhere in `toks`.
pub fn mentions(toks: &[Tok], ident: &str) -> bool {
    toks.iter().any(|tok| match tok {
        Tok::Ident { text, .. } => text == ident,
        Tok::Group { toks, .. } => mentions(toks, ident),
        _ => false,
    })
}

/// Whether a field's type mentions any type parameter of the item (then a `Default` bound on
/// it must be spelled out for the impl to compile).
pub fn is_generic(item: &Item, field: &Field) -> bool {
    item.generics.params.iter().any(|param| match param {
        GenericParam::Type { name, .. } => mentions(&field.ty, name),
        _ => false,
    })
}

/// `Ty: Default` predicates for the fields that take `Default::default()` and are generic.
pub fn default_bounds<'f>(
    item: &Item,
    fields: impl Iterator<Item = (&'f Field, &'f DefaultSpec)>,
) -> Vec<String> {
    fields
        .filter(|(field, spec)| **spec == DefaultSpec::Trait && is_generic(item, field))
        .map(|(field, _)| format!("{}: ::core::default::Default", ty(field)))
        .collect()
}

/// The expression producing a default value of type `ty`.
pub fn default_expr(spec: &DefaultSpec, ty: &str) -> String {
    match spec {
        DefaultSpec::Trait => format!("<{ty} as ::core::default::Default>::default()"),
        DefaultSpec::Path(path) => format!("{path}()"),
    }
}

/// Whether a field's type is a reference (`&'a str`). Decoding traits hand the decoder a reader
/// whose lifetime is not the struct's, so a type holding references can only be written: the
/// derives generate the writing impl alone for it.
pub fn is_reference(field: &Field) -> bool {
    crate::ast::unwrap_invisible(&field.ty)
        .first()
        .is_some_and(|tok| tok.is_punct('&'))
}

/// Generated text names a field's type through this placeholder followed by the field's span
/// handle; `lib.rs` swaps each for the user's own type tokens, spans included, so an error
/// about a field's type (a missing `ToJson` impl, say) points at that type, not at the derive.
pub const TYPE_PLACEHOLDER: &str = "__lithair_field_type_";

/// The placeholder standing for `field`'s type in generated text.
pub fn ty(field: &Field) -> String {
    format!("{TYPE_PLACEHOLDER}{}", field.sp.0)
}

/// The span handle a placeholder identifier stands for, if `ident` is one.
pub fn placeholder_sp(ident: &str) -> Option<Sp> {
    let digits = ident.strip_prefix(TYPE_PLACEHOLDER)?;
    digits.parse().ok().map(Sp)
}

/// Every field of `item` (struct fields, or the fields of every variant).
pub fn all_fields(item: &Item) -> Vec<&Field> {
    match &item.body {
        Body::Struct(fields) => fields.list().iter().collect(),
        Body::Enum(variants) => variants.iter().flat_map(|v| v.fields.list()).collect(),
    }
}

/// Replaces each type placeholder in `code` with the rendered type (for reading generated code
/// in tests; the macro swaps tokens instead, keeping spans).
#[cfg(test)]
pub fn fill_types(code: &str, item: &Item) -> String {
    let fields = all_fields(item);
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(TYPE_PLACEHOLDER) {
        out.push_str(&rest[..at]);
        let after = &rest[at + TYPE_PLACEHOLDER.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let sp = Sp(after[..digits]
            .parse()
            .expect("a placeholder ends in a span handle"));
        let field = fields
            .iter()
            .find(|f| f.sp == sp)
            .expect("a placeholder names a field");
        out.push_str(&render(&field.ty));
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The local variable holding field `field` while reading: `__f_title`, `__f_0`.
pub fn local(field: &Field) -> String {
    format!("__f_{}", field.name())
}

/// Test helper of every derive: lexes and parses `source`, expands it with `expand`, and fills
/// the type placeholders in, so assertions read like the generated code.
#[cfg(test)]
pub fn expand_source(
    expand: fn(&Item) -> Result<String, Vec<Error>>,
    source: &str,
) -> Result<String, Vec<Error>> {
    let item = crate::ast::parse_item(&crate::tokens::lex::lex(source), Sp(u32::MAX))
        .expect("test source parses");
    expand(&item).map(|code| fill_types(&code, &item))
}

/// Test helper: the expansion of `source`, which must succeed.
#[cfg(test)]
pub fn expand_ok(expand: fn(&Item) -> Result<String, Vec<Error>>, source: &str) -> String {
    expand_source(expand, source).unwrap_or_else(|errors| panic!("unexpected errors: {errors:?}"))
}

/// Test helper: the error messages of `source`, which must be rejected.
#[cfg(test)]
pub fn expand_errors(expand: fn(&Item) -> Result<String, Vec<Error>>, source: &str) -> Vec<String> {
    match expand_source(expand, source) {
        Ok(_) => panic!("expected errors for {source}"),
        Err(errors) => errors.into_iter().map(|e| e.message).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{parse_item, Body};
    use crate::tokens::lex::lex;
    use crate::tokens::Sp;

    fn item(source: &str) -> Item {
        parse_item(&lex(source), Sp(u32::MAX)).expect("test source parses")
    }

    #[test]
    fn header_without_generics() {
        let item = item("struct Post { a: u8 }");
        let header = impl_header(&item, "::x::T", "::x::T", &[], &[]);
        assert_eq!(header, "#[automatically_derived]\nimpl ::x::T for Post");
    }

    #[test]
    fn header_keeps_bounds_drops_defaults_and_adds_predicates() {
        let item = item("struct G<'a: 'b, 'b, T: Clone = u8, U, const N: usize = 2> where U: Copy { a: &'a T, b: [U; N] }");
        let Body::Struct(fields) = &item.body else {
            panic!("struct")
        };
        let used = used_type_params(&item, fields.list().iter());
        assert_eq!(used, ["T", "U"]);
        let header = impl_header(&item, "Tr", "Tr", &used, &["X: Y".to_string()]);
        assert_eq!(
            header,
            "#[automatically_derived]\nimpl<'a: 'b, 'b, T: Clone, U, const N: usize> Tr for G<'a, 'b, T, U, N> \
             where U : Copy, T: Tr, U: Tr, X: Y"
        );
    }

    #[test]
    fn only_params_used_by_the_given_fields_are_bounded() {
        let item = item("struct P<T, M> { a: Vec<T>, m: PhantomData<M> }");
        let Body::Struct(fields) = &item.body else {
            panic!("struct")
        };
        let used = used_type_params(&item, fields.list().iter().take(1));
        assert_eq!(used, ["T"]);
        assert!(is_generic(&item, &fields.list()[1]));
        let defaults = [DefaultSpec::Trait, DefaultSpec::Path("f".into())];
        let bounds = default_bounds(&item, fields.list().iter().zip(defaults.iter()));
        assert_eq!(bounds.len(), 1);
        assert_eq!(
            fill_types(&bounds[0], &item),
            "Vec < T >: ::core::default::Default"
        );
    }

    #[test]
    fn type_placeholders_round_trip() {
        let item = item("enum E { A { x: Vec<u8> }, B(u16, &'static str) }");
        let fields = all_fields(&item);
        assert_eq!(fields.len(), 3);
        let code = format!("{}|{}|{}", ty(fields[0]), ty(fields[1]), ty(fields[2]));
        assert_eq!(fill_types(&code, &item), "Vec < u8 >|u16|&'static str");
        assert_eq!(placeholder_sp(&ty(fields[2])), Some(fields[2].sp));
        assert_eq!(placeholder_sp("__lithair_field_type_x"), None);
        assert_eq!(placeholder_sp("other"), None);
    }

    #[test]
    fn default_expressions() {
        assert_eq!(
            default_expr(&DefaultSpec::Trait, "u8"),
            "<u8 as ::core::default::Default>::default()"
        );
        assert_eq!(
            default_expr(&DefaultSpec::Path("a::b".into()), "u8"),
            "a::b()"
        );
    }
}
