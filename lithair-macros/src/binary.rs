//! `#[derive(Binary)]`: validates `#[binary(..)]` (and `#[db(default)]`) against the item, then
//! writes `Encode` and `Decode` impls as source text.
//!
//! Layout (see `lithair::binary`): every struct, of any shape, is framed as
//! `varint(body_len) body` with the fields in declaration order, so a struct can gain fields at
//! its end: a decoder that finds the body exhausted before a field uses the field's default
//! (`#[binary(default)]` or `#[db(default)]`), and bytes after the last known field are
//! ignored. An enum writes `varint(variant_index)` then the variant's fields framed like a
//! struct; the index is the variant's position in declaration order (explicit discriminants
//! are not used), so new variants go at the end. Must not: encode anything itself; everything
//! goes through `::lithair::binary`.
use crate::ast::{Body, Error, Field, Fields, Item, Variant};
use crate::attrs::{self, DefaultSpec};
use crate::emit;
use crate::tokens::str_lit;

const ENCODE: &str = "::lithair::binary::Encode";
const DECODE: &str = "::lithair::binary::Decode";
const ERROR: &str = "::lithair::binary::Error";

/// A field after attribute resolution.
struct BinField<'a> {
    field: &'a Field,
    ty: String,
    default: Option<DefaultSpec>,
    skip: bool,
}

/// Expands `#[derive(Binary)]` for `item` into source text, or the errors to report.
pub fn expand(item: &Item) -> Result<String, Vec<Error>> {
    let mut errors = Vec::new();
    attrs::collect(&item.attrs, &attrs::BINARY_CONTAINER, &mut errors);
    attrs::collect(&item.attrs, &attrs::DB_CONTAINER, &mut errors);
    let shape: Vec<(Option<&Variant>, Vec<BinField<'_>>)> = match &item.body {
        Body::Struct(fields) => vec![(None, resolve_fields(fields, &mut errors))],
        Body::Enum(variants) => variants
            .iter()
            .map(|variant| {
                attrs::collect(&variant.attrs, &attrs::BINARY_VARIANT, &mut errors);
                attrs::collect(&variant.attrs, &attrs::DB_VARIANT, &mut errors);
                (Some(variant), resolve_fields(&variant.fields, &mut errors))
            })
            .collect(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let all: Vec<&BinField<'_>> = shape.iter().flat_map(|(_, fields)| fields.iter()).collect();
    let used = emit::used_type_params(item, all.iter().filter(|f| !f.skip).map(|f| f.field));
    let trait_default = DefaultSpec::Trait;
    let defaulted = all.iter().filter_map(|f| match (&f.default, f.skip) {
        (Some(spec), _) => Some((f.field, spec)),
        (None, true) => Some((f.field, &trait_default)),
        (None, false) => None,
    });
    let default_bounds = emit::default_bounds(item, defaulted);
    let (encode_body, decode_body) = match &item.body {
        Body::Struct(_) => (
            encode_struct(&shape[0].1, &|f| format!("&self.{}", f.member())),
            decode_struct("Self", &shape[0].1),
        ),
        Body::Enum(_) => (encode_enum(&shape), decode_enum(&shape)),
    };
    // Framing makes every struct at least its length byte, and every enum value its index
    // byte plus that; sequence decoders use the bound to reject impossible counts early.
    let min = match &item.body {
        Body::Struct(_) => "const ENCODED_BYTES_MIN: usize = 1;",
        Body::Enum(_) => "const ENCODED_BYTES_MIN: usize = 2;",
    };
    let mut out = format!(
        "{} {{\n#[allow(unused_variables, clippy::all)]\nfn encode(&self, __out: &mut ::std::vec::Vec<u8>) {{\n{encode_body}}}\n}}\n",
        emit::impl_header(item, ENCODE, ENCODE, &used, &[]),
    );
    if !all.iter().any(|f| !f.skip && emit::is_reference(f.field)) {
        out.push_str(&format!(
            "{} {{\n{min}\n#[allow(unused_mut, unused_variables, clippy::all)]\n\
             fn decode(__r: &mut ::lithair::binary::Reader<'_>) -> ::core::result::Result<Self, {ERROR}> {{\n{decode_body}}}\n}}\n",
            emit::impl_header(item, DECODE, DECODE, &used, &default_bounds),
        ));
    }
    Ok(out)
}

fn resolve_fields<'a>(fields: &'a Fields, errors: &mut Vec<Error>) -> Vec<BinField<'a>> {
    fields
        .list()
        .iter()
        .map(|field| {
            let found = attrs::collect(&field.attrs, &attrs::BINARY_FIELD, errors);
            let db = attrs::collect(&field.attrs, &attrs::DB_FIELD, errors);
            let default = attrs::get(&found, "default")
                .or_else(|| attrs::get(&db, "default"))
                .and_then(|f| attrs::default_value(f, errors));
            BinField {
                field,
                ty: emit::ty(field),
                default,
                skip: attrs::get(&found, "skip").is_some(),
            }
        })
        .collect()
}

/// Frames the written fields; `access` yields an expression of type `&FieldType`.
fn encode_struct(fields: &[BinField<'_>], access: &dyn Fn(&Field) -> String) -> String {
    let mut out = String::from("let __mark = ::lithair::binary::begin_struct(__out);\n");
    for field in fields.iter().filter(|f| !f.skip) {
        out.push_str(&format!(
            "<{} as {ENCODE}>::encode({}, __out);\n",
            field.ty,
            access(field.field)
        ));
    }
    out.push_str("::lithair::binary::end_struct(__out, __mark);\n");
    out
}

/// Statements decoding a framed body and ending in `Ok(ctor { .. })`.
fn decode_struct(ctor: &str, fields: &[BinField<'_>]) -> String {
    let mut out = String::from("let mut __body = __r.struct_body()?;\n");
    for field in fields {
        let local = emit::local(field.field);
        let ty = &field.ty;
        if field.skip {
            let default = field.default.clone().unwrap_or(DefaultSpec::Trait);
            out.push_str(&format!(
                "let {local}: {ty} = {};\n",
                emit::default_expr(&default, ty)
            ));
            continue;
        }
        let name = str_lit(&field.field.name());
        // Tuple fields get `[i]` in error paths, named fields `.name`.
        let context = match field.field.ident {
            Some(_) => format!("with_field({name})"),
            None => format!("with_index({})", field.field.index),
        };
        // An exhausted body means the data predates this field. A field without a default may
        // still decode from nothing (a zero-sized type), so only a failure is "missing".
        let when_empty = match &field.default {
            Some(spec) => emit::default_expr(spec, ty),
            None => format!(
                "match <{ty} as {DECODE}>::decode(&mut __body) {{ ::core::result::Result::Ok(__v) => __v, \
                 ::core::result::Result::Err(_) => return ::core::result::Result::Err({ERROR}::missing_field({name})) }}"
            ),
        };
        out.push_str(&format!(
            "let {local}: {ty} = if __body.is_empty() {{ {when_empty} }} else {{ \
             <{ty} as {DECODE}>::decode(&mut __body).map_err(|__e| __e.{context})? }};\n"
        ));
    }
    assert_eq!(
        out.matches("let __f_").count(),
        fields.len(),
        "one local per field"
    );
    let members: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.field.member(), emit::local(f.field)))
        .collect();
    // Bytes left in the body were written by a newer version of the type: ignored on purpose.
    out.push_str(&format!(
        "::core::result::Result::Ok({ctor} {{ {} }})\n",
        members.join(", ")
    ));
    out
}

fn encode_enum(shape: &[(Option<&Variant>, Vec<BinField<'_>>)]) -> String {
    if shape.is_empty() {
        return "match *self {}\n".to_string();
    }
    let mut out = String::from("match self {\n");
    for (index, (variant, fields)) in shape.iter().enumerate() {
        let variant = variant.expect("enum shapes carry their variant");
        let binds: String = variant
            .fields
            .list()
            .iter()
            .map(|f| format!("{}: {}, ", f.member(), emit::local(f)))
            .collect();
        out.push_str(&format!(
            "Self::{} {{ {binds}.. }} => {{\n::lithair::binary::write_varint(__out, {index});\n{}}}\n",
            variant.ident,
            encode_struct(fields, &|f| emit::local(f))
        ));
    }
    out.push_str("}\n");
    out
}

fn decode_enum(shape: &[(Option<&Variant>, Vec<BinField<'_>>)]) -> String {
    let mut out = String::from("match __r.read_varint()? {\n");
    for (index, (variant, fields)) in shape.iter().enumerate() {
        let variant = variant.expect("enum shapes carry their variant");
        let ctor = format!("Self::{}", variant.ident);
        out.push_str(&format!(
            "{index} => {{\n{}}}\n",
            decode_struct(&ctor, fields)
        ));
    }
    out.push_str(&format!(
        "__index => ::core::result::Result::Err({ERROR}::unknown_variant(__index)),\n}}\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_source(source: &str) -> Result<String, Vec<Error>> {
        emit::expand_source(expand, source)
    }

    fn ok(source: &str) -> String {
        emit::expand_ok(expand, source)
    }

    #[test]
    fn structs_are_framed_with_defaults_for_evolution() {
        let code = ok("struct P { a: u8, #[binary(default)] b: String, #[db(default = \"f\")] c: u8, #[binary(skip)] d: u8 }");
        assert!(code.contains("let __mark = ::lithair::binary::begin_struct(__out);"));
        assert!(code.contains("<u8 as ::lithair::binary::Encode>::encode(&self.a, __out);"));
        assert!(!code.contains("encode(&self.d"));
        assert!(code.contains("missing_field(\"a\")"));
        assert!(code
            .contains("if __body.is_empty() { <String as ::core::default::Default>::default() }"));
        assert!(code.contains("if __body.is_empty() { f() }"));
        assert!(code.contains("let __f_d: u8 = <u8 as ::core::default::Default>::default();"));
        assert!(code.contains("Ok(Self { a: __f_a, b: __f_b, c: __f_c, d: __f_d })"));
    }

    #[test]
    fn tuple_and_unit_structs_are_framed_too() {
        let code = ok("struct T(u8, u16);");
        assert!(code.contains("encode(&self.1, __out)"));
        assert!(code.contains("Ok(Self { 0: __f_0, 1: __f_1 })"));
        let code = ok("struct U;");
        assert!(code.contains("begin_struct"));
        assert!(code.contains("Ok(Self {  })"));
    }

    #[test]
    fn enum_variants_are_numbered_in_declaration_order() {
        let code = ok("enum E<T> { A = 7, B(T), C { x: u8 } }");
        assert!(code.contains("Self::A { .. } => {\n::lithair::binary::write_varint(__out, 0);"));
        assert!(code
            .contains("Self::B { 0: __f_0, .. } => {\n::lithair::binary::write_varint(__out, 1);"));
        assert!(code.contains("2 => {\nlet mut __body = __r.struct_body()?;"));
        assert!(code.contains("unknown_variant(__index)"));
        assert!(code.contains("where T: ::lithair::binary::Decode"));
        let code = ok("enum Never {}");
        assert!(code.contains("match *self {}"));
    }

    #[test]
    fn types_holding_references_are_encoded_only() {
        let code = ok("struct B<'a> { a: &'a [u8] }");
        assert!(code.contains("Encode for B<'a>"));
        assert!(!code.contains("Decode for"));
    }

    #[test]
    fn unknown_binary_attributes_are_errors() {
        let errors = expand_source("struct S { #[binary(rename = \"x\")] a: u8 }").unwrap_err();
        assert!(errors[0]
            .message
            .contains("unknown attribute `binary(rename)` on a field"));
        let errors = expand_source("#[binary(default)] struct S { a: u8 }").unwrap_err();
        assert!(errors[0]
            .message
            .contains("not accepted on a struct or enum"));
        let errors = expand_source("enum E { #[binary(skip)] A }").unwrap_err();
        assert!(errors[0].message.contains("not accepted on a variant"));
        // `#[json(..)]` belongs to the Json derive: the Binary derive passes over it.
        assert!(expand_source("struct S { #[json(whatever)] a: u8 }").is_ok());
    }
}
