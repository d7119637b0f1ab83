//! `#[derive(Json)]`: validates `#[json(..)]` (and `#[db(default)]`) against the item, then
//! writes `ToJson` and `FromJson` impls as source text.
//!
//! Shapes: a named struct is an object; a newtype struct is its inner value; a tuple struct is
//! an array; a unit struct is `null`. Enums are externally tagged (`"Unit"`, `{"Tuple":[..]}`,
//! `{"Newtype":v}`, `{"Struct":{..}}`) unless `#[json(tag = "t")]` asks for internal tagging
//! (`{"t":"Struct",..fields}`; unit and struct variants only). A container `rename_all` renames
//! the fields of a struct or the variants of an enum; a variant's `rename_all` renames its
//! fields. Must not: read or write JSON itself; everything goes through `::lithair::json`.
use crate::ast::{Body, Error, Field, Fields, Item, Variant};
use crate::attrs::{self, DefaultSpec};
use crate::case::Case;
use crate::emit;
use crate::tokens::str_lit;

/// The trait paths used in generated code.
const TO_JSON: &str = "::lithair::json::ToJson";
const FROM_JSON: &str = "::lithair::json::FromJson";
const ERROR: &str = "::lithair::json::Error";
const READER: &str = "::lithair::json::Reader<'_>";
/// Opens every generated function body, so user items named `Some`, `Ok`, ... cannot
/// change the meaning of generated code. The types `Option` and `Result` are not imported:
/// that would shadow a user's own type of that name in field types; they are spelled in full.
const BODY_PRELUDE: &str = "#[allow(unused_imports)] use ::core::option::Option::{Some, None}; \
     #[allow(unused_imports)] use ::core::result::Result::{Ok, Err};\n";

/// A field after attribute resolution.
struct JsonField<'a> {
    field: &'a Field,
    /// The JSON key (named fields only).
    key: String,
    /// The rendered type.
    ty: String,
    default: Option<DefaultSpec>,
    skip: bool,
    skip_if_none: bool,
}

/// A variant after attribute resolution.
struct JsonVariant<'a> {
    variant: &'a Variant,
    key: String,
    fields: Vec<JsonField<'a>>,
}

/// The validated item.
struct Model<'a> {
    item: &'a Item,
    tag: Option<String>,
    deny_unknown_fields: bool,
    shape: Shape<'a>,
}

enum Shape<'a> {
    Struct(&'a Fields, Vec<JsonField<'a>>),
    Enum(Vec<JsonVariant<'a>>),
}

/// Expands `#[derive(Json)]` for `item` into source text, or the errors to report.
pub fn expand(item: &Item) -> Result<String, Vec<Error>> {
    let model = analyze(item)?;
    let mut out = to_json_impl(&model);
    let fields: Vec<&JsonField<'_>> = match &model.shape {
        Shape::Struct(_, fields) => fields.iter().collect(),
        Shape::Enum(variants) => variants.iter().flat_map(|v| v.fields.iter()).collect(),
    };
    if !fields
        .iter()
        .any(|f| !f.skip && emit::is_reference(f.field))
    {
        out.push('\n');
        out.push_str(&from_json_impl(&model));
    }
    Ok(out)
}

fn analyze(item: &Item) -> Result<Model<'_>, Vec<Error>> {
    let mut errors = Vec::new();
    let container = attrs::collect(&item.attrs, &attrs::JSON_CONTAINER, &mut errors);
    attrs::collect(&item.attrs, &attrs::DB_CONTAINER, &mut errors);
    let rename_all =
        attrs::get(&container, "rename_all").and_then(|f| attrs::case_value(f, &mut errors));
    let deny_unknown_fields = attrs::get(&container, "deny_unknown_fields").is_some();
    let tag = attrs::get(&container, "tag").and_then(|found| {
        let literal = found.value.as_ref()?;
        if matches!(item.body, Body::Struct(_)) {
            errors.push(Error::new(found.sp, "`json(tag)` applies to enums only"));
        } else if literal.value.is_empty() {
            errors.push(Error::new(literal.sp, "`json(tag)` needs a non-empty key"));
        }
        Some(literal.value.clone())
    });
    if let Body::Struct(Fields::Tuple(_) | Fields::Unit) = &item.body {
        // A struct without named fields has no keys to rename or to reject.
        for key in ["rename_all", "deny_unknown_fields"] {
            if let Some(found) = attrs::get(&container, key) {
                let message = format!("`json({key})` applies to structs with named fields");
                errors.push(Error::new(found.sp, message));
            }
        }
    }
    let shape = match &item.body {
        Body::Struct(fields) => {
            Shape::Struct(fields, resolve_fields(fields, rename_all, &mut errors))
        }
        Body::Enum(variants) => {
            let resolved = variants
                .iter()
                .map(|v| resolve_variant(v, rename_all, &mut errors))
                .collect();
            Shape::Enum(resolved)
        }
    };
    let model = Model {
        item,
        tag,
        deny_unknown_fields,
        shape,
    };
    check_model(&model, &mut errors);
    if errors.is_empty() {
        Ok(model)
    } else {
        Err(errors)
    }
}

fn resolve_variant<'a>(
    variant: &'a Variant,
    rename_all: Option<Case>,
    errors: &mut Vec<Error>,
) -> JsonVariant<'a> {
    let found = attrs::collect(&variant.attrs, &attrs::JSON_VARIANT, errors);
    attrs::collect(&variant.attrs, &attrs::DB_VARIANT, errors);
    let key = match attrs::get(&found, "rename").and_then(|f| f.value.as_ref()) {
        Some(literal) => literal.value.clone(),
        None => rename_all.map_or_else(
            || variant.name().to_string(),
            |case| case.apply(variant.name()),
        ),
    };
    let fields_case = attrs::get(&found, "rename_all").and_then(|f| attrs::case_value(f, errors));
    if let (Some(found), Fields::Tuple(_) | Fields::Unit) =
        (attrs::get(&found, "rename_all"), &variant.fields)
    {
        errors.push(Error::new(
            found.sp,
            "`json(rename_all)` on a variant applies to struct variants only",
        ));
    }
    JsonVariant {
        variant,
        key,
        fields: resolve_fields(&variant.fields, fields_case, errors),
    }
}

fn resolve_fields<'a>(
    fields: &'a Fields,
    rename_all: Option<Case>,
    errors: &mut Vec<Error>,
) -> Vec<JsonField<'a>> {
    let named = matches!(fields, Fields::Named(_));
    let newtype = matches!(fields, Fields::Tuple(list) if list.len() == 1);
    let resolved: Vec<JsonField<'a>> = fields
        .list()
        .iter()
        .map(|field| resolve_field(field, rename_all, named, newtype, errors))
        .collect();
    for (i, field) in resolved.iter().enumerate() {
        let clash = resolved[..i]
            .iter()
            .any(|earlier| !earlier.skip && earlier.key == field.key);
        if named && !field.skip && clash {
            errors.push(Error::new(
                field.field.sp,
                format!("two fields are written as the JSON key `{}`", field.key),
            ));
        }
    }
    resolved
}

fn resolve_field<'a>(
    field: &'a Field,
    rename_all: Option<Case>,
    named: bool,
    newtype: bool,
    errors: &mut Vec<Error>,
) -> JsonField<'a> {
    let found = attrs::collect(&field.attrs, &attrs::JSON_FIELD, errors);
    let db = attrs::collect(&field.attrs, &attrs::DB_FIELD, errors);
    attrs::conflict(&found, "skip", "skip_if_none", "json", errors);
    for key in ["rename", "skip_if_none"] {
        if let (false, Some(found)) = (named, attrs::get(&found, key)) {
            errors.push(Error::new(
                found.sp,
                format!("`json({key})` applies to named fields only"),
            ));
        }
    }
    for key in ["skip", "default"] {
        if let (true, Some(found)) = (newtype, attrs::get(&found, key)) {
            let message = format!(
                "`json({key})` has no meaning on a newtype, which is written as its inner value"
            );
            errors.push(Error::new(found.sp, message));
        }
    }
    let key = match attrs::get(&found, "rename").and_then(|f| f.value.as_ref()) {
        Some(literal) => literal.value.clone(),
        None => rename_all.map_or_else(|| field.name(), |case| case.apply(&field.name())),
    };
    let default = attrs::get(&found, "default")
        .or_else(|| attrs::get(&db, "default"))
        .and_then(|f| attrs::default_value(f, errors));
    JsonField {
        field,
        key,
        ty: emit::ty(field),
        default,
        skip: attrs::get(&found, "skip").is_some(),
        skip_if_none: attrs::get(&found, "skip_if_none").is_some(),
    }
}

/// Checks that need the whole enum: internal tagging rules and variant key clashes.
fn check_model(model: &Model<'_>, errors: &mut Vec<Error>) {
    let Shape::Enum(variants) = &model.shape else {
        return;
    };
    for (i, variant) in variants.iter().enumerate() {
        if variants[..i]
            .iter()
            .any(|earlier| earlier.key == variant.key)
        {
            let message = format!("two variants are written as `{}`", variant.key);
            errors.push(Error::new(variant.variant.sp, message));
        }
        let Some(tag) = &model.tag else { continue };
        if let Fields::Tuple(_) = variant.variant.fields {
            let message = format!(
                "`{}` is a tuple variant; an internally tagged enum (`json(tag = ..)`) supports unit and struct variants only",
                variant.variant.name()
            );
            errors.push(Error::new(variant.variant.sp, message));
        }
        for field in variant.fields.iter().filter(|f| !f.skip && &f.key == tag) {
            let message =
                format!("field key `{tag}` is the enum's tag; rename the field or the tag");
            errors.push(Error::new(field.field.sp, message));
        }
    }
}

fn bounds(model: &Model<'_>, bound: &str, for_read: bool) -> String {
    let fields: Vec<&JsonField<'_>> = match &model.shape {
        Shape::Struct(_, fields) => fields.iter().collect(),
        Shape::Enum(variants) => variants.iter().flat_map(|v| v.fields.iter()).collect(),
    };
    let used = emit::used_type_params(
        model.item,
        fields.iter().filter(|f| !f.skip).map(|f| f.field),
    );
    let trait_default = DefaultSpec::Trait;
    // Reading fills skipped fields with their default (`Default` unless a path is given).
    let defaulted = fields.iter().filter_map(|f| match (&f.default, f.skip) {
        (Some(spec), _) => Some((f.field, spec)),
        (None, true) => Some((f.field, &trait_default)),
        (None, false) => None,
    });
    let defaults = if for_read {
        emit::default_bounds(model.item, defaulted)
    } else {
        Vec::new()
    };
    emit::impl_header(model.item, bound, bound, &used, &defaults)
}

// ----------------------------------------------------------------------------------------------
// ToJson

fn to_json_impl(model: &Model<'_>) -> String {
    let body = match &model.shape {
        Shape::Struct(fields, resolved) => {
            write_fields(fields, resolved, None, &|f| format!("&self.{}", f.member()))
        }
        Shape::Enum(variants) if variants.is_empty() => "match *self {}".to_string(),
        Shape::Enum(variants) => {
            let arms: String = variants
                .iter()
                .map(|v| write_variant_arm(model, v))
                .collect();
            format!("match self {{\n{arms}}}")
        }
    };
    format!(
        "{} {{\n#[allow(unused_variables, clippy::all)]\nfn write_json(&self, __w: &mut ::lithair::json::Writer) {{\n{}}}\n}}\n",
        bounds(model, TO_JSON, false),
        body
    )
}

/// Writes `fields` in their JSON shape; `tag` is an internal tag `(key, variant)` written
/// first; `access` yields an expression of type `&FieldType`.
fn write_fields(
    fields: &Fields,
    resolved: &[JsonField<'_>],
    tag: Option<(&str, &str)>,
    access: &dyn Fn(&Field) -> String,
) -> String {
    let written: Vec<&JsonField<'_>> = resolved.iter().filter(|f| !f.skip).collect();
    match fields {
        Fields::Named(_) => {
            let mut out = String::from("__w.begin_object();\n");
            if let Some((key, name)) = tag {
                out.push_str(&format!(
                    "__w.field({}); __w.str({});\n",
                    str_lit(key),
                    str_lit(name)
                ));
            }
            for field in written {
                let value = access(field.field);
                let write = format!(
                    "__w.field({}); <{} as {TO_JSON}>::write_json({value}, __w);",
                    str_lit(&field.key),
                    field.ty
                );
                if field.skip_if_none {
                    out.push_str(&format!(
                        "if <{}>::is_some({value}) {{ {write} }}\n",
                        field.ty
                    ));
                } else {
                    out.push_str(&write);
                    out.push('\n');
                }
            }
            out.push_str("__w.end_object();\n");
            out
        }
        Fields::Tuple(list) if list.len() == 1 => {
            assert_eq!(resolved.len(), 1, "a newtype resolves to exactly one field");
            let ty = &resolved[0].ty;
            format!(
                "<{ty} as {TO_JSON}>::write_json({}, __w);\n",
                access(&list[0])
            )
        }
        Fields::Tuple(_) => {
            let mut out = String::from("__w.begin_array();\n");
            for field in written {
                out.push_str(&format!(
                    "__w.element(); <{} as {TO_JSON}>::write_json({}, __w);\n",
                    field.ty,
                    access(field.field)
                ));
            }
            out.push_str("__w.end_array();\n");
            out
        }
        Fields::Unit => "__w.null();\n".to_string(),
    }
}

/// A `match self` arm writing one variant.
fn write_variant_arm(model: &Model<'_>, variant: &JsonVariant<'_>) -> String {
    let pattern = variant_pattern(variant.variant);
    let fields = &variant.variant.fields;
    let bound = |f: &Field| emit::local(f);
    let body = match (&model.tag, fields) {
        (Some(tag), Fields::Unit) => format!(
            "__w.begin_object(); __w.field({}); __w.str({}); __w.end_object();\n",
            str_lit(tag),
            str_lit(&variant.key)
        ),
        (Some(tag), _) => write_fields(fields, &variant.fields, Some((tag, &variant.key)), &bound),
        (None, Fields::Unit) => format!("__w.str({});\n", str_lit(&variant.key)),
        (None, _) => format!(
            "__w.begin_object(); __w.field({});\n{}__w.end_object();\n",
            str_lit(&variant.key),
            write_fields(fields, &variant.fields, None, &bound)
        ),
    };
    format!("{pattern} => {{\n{body}}}\n")
}

/// `Self::V { a: __f_a, 0: __f_0, .. }`: binds every field by reference under its local name.
fn variant_pattern(variant: &Variant) -> String {
    let binds: Vec<String> = variant
        .fields
        .list()
        .iter()
        .map(|f| format!("{}: {}", f.member(), emit::local(f)))
        .collect();
    format!(
        "Self::{} {{ {} .. }}",
        variant.ident,
        binds.iter().map(|b| format!("{b}, ")).collect::<String>()
    )
}

// ----------------------------------------------------------------------------------------------
// FromJson

fn from_json_impl(model: &Model<'_>) -> String {
    let body = match &model.shape {
        Shape::Struct(fields, resolved) => {
            read_fields("Self", fields, resolved, model.deny_unknown_fields, None)
        }
        Shape::Enum(variants) if variants.is_empty() => {
            let message = format!(
                "`{}` has no variants, so no JSON value is one",
                model.item.name
            );
            format!("Err(__r.error({}))\n", str_lit(&message))
        }
        Shape::Enum(variants) => match &model.tag {
            Some(tag) => read_internally_tagged(model, variants, tag),
            None => read_externally_tagged(model, variants),
        },
    };
    format!(
        "{} {{\n#[allow(unused_mut, unused_variables, unused_assignments, unreachable_code, clippy::all)]\n\
         fn read_json(__r: &mut {READER}) -> ::core::result::Result<Self, {ERROR}> {{\n{BODY_PRELUDE}{}}}\n}}\n",
        bounds(model, FROM_JSON, true),
        body
    )
}

/// Statements reading `fields` in their JSON shape and ending in `Ok(ctor { .. })`. `tag` is
/// an internal tag key to pass over.
fn read_fields(
    ctor: &str,
    fields: &Fields,
    resolved: &[JsonField<'_>],
    deny: bool,
    tag: Option<&str>,
) -> String {
    match fields {
        Fields::Named(_) => read_object(ctor, resolved, deny, tag),
        Fields::Tuple(list) if list.len() == 1 => {
            assert_eq!(resolved.len(), 1, "a newtype resolves to exactly one field");
            // Counted as a level: a newtype reading itself through `Option`/`Box` consumes no
            // text per level, and would otherwise recurse until the stack overflows.
            format!(
                "__r.enter_transparent()?;\n\
                 let __inner = <{} as {FROM_JSON}>::read_json(__r);\n\
                 __r.leave_transparent();\n\
                 Ok({ctor} {{ 0: __inner? }})\n",
                resolved[0].ty
            )
        }
        Fields::Tuple(_) => read_array(ctor, resolved),
        Fields::Unit => format!("<() as {FROM_JSON}>::read_json(__r)?;\nOk({ctor} {{}})\n"),
    }
}

fn read_object(ctor: &str, resolved: &[JsonField<'_>], deny: bool, tag: Option<&str>) -> String {
    let mut out = String::new();
    let read: Vec<&JsonField<'_>> = resolved.iter().filter(|f| !f.skip).collect();
    if tag.is_some() {
        out.push_str("let mut __tag_seen = false;\n");
    }
    for field in &read {
        out.push_str(&format!(
            "let mut {}: ::core::option::Option<{}> = None;\n",
            emit::local(field.field),
            field.ty
        ));
    }
    out.push_str(
        "__r.begin_object()?;\nwhile let Some(__key) = __r.next_key()? {\nmatch &*__key {\n",
    );
    for field in &read {
        let (local, key) = (emit::local(field.field), str_lit(&field.key));
        let duplicate = str_lit(&format!("duplicate field `{}`", field.key));
        out.push_str(&format!(
            "{key} => {{\nif {local}.is_some() {{ return Err(__r.error({duplicate})); }}\n\
             {local} = Some(<{} as {FROM_JSON}>::read_json(__r).map_err(|__e| __e.with_field({key}))?);\n}}\n",
            field.ty
        ));
    }
    if let Some(tag) = tag {
        // The look-ahead took the first tag; a second one is an error, like a repeated field,
        // so this reader and `json::parse` (where the last value wins) never pick different
        // variants for one document.
        let duplicate = str_lit(&format!("duplicate field `{tag}`"));
        out.push_str(&format!(
            "{} => {{\nif __tag_seen {{ return Err(__r.error({duplicate})); }}\n__tag_seen = true;\n__r.skip_value()?;\n}}\n",
            str_lit(tag)
        ));
    }
    if deny {
        out.push_str(&format!(
            "_ => return Err({ERROR}::unknown_field(&__key)),\n"
        ));
    } else {
        out.push_str("_ => __r.skip_value()?,\n");
    }
    out.push_str("}\n}\n");
    let members: Vec<String> = resolved
        .iter()
        .map(|f| format!("{}: {}", f.field.member(), resolve_absent(f)))
        .collect();
    out.push_str(&format!("Ok({ctor} {{\n{}\n}})\n", members.join(",\n")));
    out
}

/// The value of a named field after the object is read: what was read, else its default, else
/// what its type says an absent field is (`None` for `Option`), else a missing-field error.
fn resolve_absent(field: &JsonField<'_>) -> String {
    let default = field
        .default
        .as_ref()
        .map(|spec| emit::default_expr(spec, &field.ty));
    if field.skip {
        return default.unwrap_or_else(|| emit::default_expr(&DefaultSpec::Trait, &field.ty));
    }
    let absent = match default {
        Some(expr) => expr,
        None => format!(
            "match <{} as {FROM_JSON}>::absent() {{ Some(__v) => __v, None => return Err({ERROR}::missing_field({})) }}",
            field.ty,
            str_lit(&field.key)
        ),
    };
    format!(
        "match {} {{ Some(__v) => __v, None => {absent} }}",
        emit::local(field.field)
    )
}

fn read_array(ctor: &str, resolved: &[JsonField<'_>]) -> String {
    let expected = resolved.iter().filter(|f| !f.skip).count();
    let mut out = String::from("__r.begin_array()?;\nlet mut __open = true;\n");
    let mut position = 0;
    for field in resolved {
        let local = emit::local(field.field);
        if field.skip {
            let default = field.default.clone().unwrap_or(DefaultSpec::Trait);
            out.push_str(&format!(
                "let {local}: {} = {};\n",
                field.ty,
                emit::default_expr(&default, &field.ty)
            ));
            continue;
        }
        let short = match &field.default {
            Some(spec) => emit::default_expr(spec, &field.ty),
            None => {
                let message = format!("expected an array of {expected} elements, found {position}");
                format!("return Err(__r.error({}))", str_lit(&message))
            }
        };
        out.push_str(&format!(
            "let {local}: {ty} = if __open && __r.next_element()? {{\n\
             <{ty} as {FROM_JSON}>::read_json(__r).map_err(|__e| __e.with_index({position}))?\n\
             }} else {{ __open = false; {short} }};\n",
            ty = field.ty
        ));
        position += 1;
    }
    assert_eq!(
        position, expected,
        "every written element is read at its own position"
    );
    let message = format!("expected an array of {expected} elements, found more");
    out.push_str(&format!(
        "if __open && __r.next_element()? {{ return Err(__r.error({})); }}\n",
        str_lit(&message)
    ));
    let members: Vec<String> = resolved
        .iter()
        .map(|f| format!("{}: {}", f.field.member(), emit::local(f.field)))
        .collect();
    out.push_str(&format!("Ok({ctor} {{ {} }})\n", members.join(", ")));
    out
}

/// `"Unit"` or `{"Variant": content}`.
fn read_externally_tagged(model: &Model<'_>, variants: &[JsonVariant<'_>]) -> String {
    let name = &model.item.name;
    let one_key = str_lit(&format!(
        "expected an object with one key naming a variant of `{name}`"
    ));
    let wrong_kind = str_lit(&format!(
        "expected a string or an object naming a variant of `{name}`"
    ));
    let mut by_name = String::new();
    let mut by_key = String::new();
    for variant in variants {
        let key = str_lit(&variant.key);
        let ctor = format!("Self::{}", variant.variant.ident);
        if let Fields::Unit = variant.variant.fields {
            by_name.push_str(&format!("{key} => Ok({ctor} {{}}),\n"));
        } else {
            let message = format!(
                "variant `{}` has content, written as {{\"{}\": ...}}",
                variant.key, variant.key
            );
            by_name.push_str(&format!(
                "{key} => Err(__r.error({})),\n",
                str_lit(&message)
            ));
        }
        by_key.push_str(&format!(
            "{key} => {},\n",
            read_variant_content(model, variant, &ctor)
        ));
    }
    format!(
        "match __r.peek_kind()? {{\n\
         ::lithair::json::Kind::String => {{\nlet __tag = __r.read_str()?;\nmatch &*__tag {{\n{by_name}\
         _ => Err({ERROR}::unknown_variant(&__tag)),\n}}\n}}\n\
         ::lithair::json::Kind::Object => {{\n__r.begin_object()?;\n\
         let __tag = match __r.next_key()? {{ Some(__k) => __k, None => return Err(__r.error({one_key})) }};\n\
         let __value = match &*__tag {{\n{by_key}_ => return Err({ERROR}::unknown_variant(&__tag)),\n}};\n\
         if __r.next_key()?.is_some() {{ return Err(__r.error({one_key})); }}\nOk(__value)\n}}\n\
         _ => Err(__r.error({wrong_kind})),\n}}\n"
    )
}

/// An expression reading the content of `{"Variant": content}`; errors get `.Variant` in
/// their path.
fn read_variant_content(model: &Model<'_>, variant: &JsonVariant<'_>, ctor: &str) -> String {
    let key = str_lit(&variant.key);
    match &variant.variant.fields {
        Fields::Unit => format!("{{ <() as {FROM_JSON}>::read_json(__r).map_err(|__e| __e.with_field({key}))?; {ctor} {{}} }}"),
        Fields::Tuple(list) if list.len() == 1 => format!(
            "{ctor} {{ 0: <{} as {FROM_JSON}>::read_json(__r).map_err(|__e| __e.with_field({key}))? }}",
            variant.fields[0].ty
        ),
        fields => {
            // A closure gives the content its own `return` scope, so every error it returns,
            // including missing fields, gets the variant's name prepended to its path.
            let body = read_fields(ctor, fields, &variant.fields, model.deny_unknown_fields, None);
            format!(
                "(|__r: &mut {READER}| -> ::core::result::Result<Self, {ERROR}> {{\n{body}}})(__r)\
                 .map_err(|__e| __e.with_field({key}))?"
            )
        }
    }
}

/// `{"tag": "Variant", ..fields}`: finds the tag on a clone of the reader, then reads the
/// object again from the start as that variant.
fn read_internally_tagged(model: &Model<'_>, variants: &[JsonVariant<'_>], tag: &str) -> String {
    let tag_key = str_lit(tag);
    let mut arms = String::new();
    // Unit variants are objects holding only the tag: read them as empty struct variants.
    let no_fields = Fields::Named(Vec::new());
    for variant in variants {
        let ctor = format!("Self::{}", variant.variant.ident);
        let fields = match &variant.variant.fields {
            Fields::Unit => &no_fields,
            fields => fields,
        };
        let body = read_fields(
            &ctor,
            fields,
            &variant.fields,
            model.deny_unknown_fields,
            Some(tag),
        );
        arms.push_str(&format!("{} => {{\n{body}}}\n", str_lit(&variant.key)));
    }
    format!(
        "let __tag = {{\nlet mut __look = ::core::clone::Clone::clone(&*__r);\n__look.begin_object()?;\n\
         let mut __found = None;\nwhile let Some(__key) = __look.next_key()? {{\n\
         if &*__key == {tag_key} {{ __found = Some(__look.read_str().map_err(|__e| __e.with_field({tag_key}))?); break; }}\n\
         __look.skip_value()?;\n}}\n\
         match __found {{ Some(__t) => __t, None => return Err({ERROR}::missing_field({tag_key})) }}\n}};\n\
         match &*__tag {{\n{arms}_ => Err({ERROR}::unknown_variant(&__tag)),\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::parse_item;
    use crate::tokens::lex::lex;
    use crate::tokens::Sp;

    fn ok(source: &str) -> String {
        emit::expand_ok(expand, source)
    }

    fn errors(source: &str) -> Vec<String> {
        emit::expand_errors(expand, source)
    }

    #[test]
    fn named_struct_writes_keys_with_renames() {
        let code = ok("#[json(rename_all = \"camelCase\")] struct P { user_id: u64, #[json(rename = \"T\")] title: String, \
                       #[json(skip)] cache: u8, #[json(skip_if_none)] note: Option<String> }");
        assert!(code.contains(
            "__w.field(\"userId\"); <u64 as ::lithair::json::ToJson>::write_json(&self.user_id, __w);"
        ));
        assert!(code.contains("__w.field(\"T\")"));
        assert!(!code.contains("\"cache\""));
        assert!(code.contains("if <Option < String >>::is_some(&self.note) {"));
        assert!(code.contains("\"userId\" => {"));
        assert!(code.contains("cache: <u8 as ::core::default::Default>::default()"));
        assert!(code.contains("missing_field(\"userId\")"));
        assert!(code.contains("_ => __r.skip_value()?,"));
    }

    #[test]
    fn deny_unknown_fields_and_defaults() {
        let code = ok("#[json(deny_unknown_fields)] struct P { #[json(default)] a: u8, #[db(default = \"seven\")] b: u8 }");
        assert!(code.contains("_ => return Err(::lithair::json::Error::unknown_field(&__key)),"));
        assert!(code.contains("None => <u8 as ::core::default::Default>::default()"));
        assert!(code.contains("None => seven()"));
    }

    #[test]
    fn tuple_newtype_and_unit_shapes() {
        let code = ok("struct N(u64);");
        assert!(code.contains("<u64 as ::lithair::json::ToJson>::write_json(&self.0, __w);"));
        assert!(code.contains("__r.enter_transparent()?;"));
        assert!(code.contains("let __inner = <u64 as ::lithair::json::FromJson>::read_json(__r);"));
        assert!(code.contains("__r.leave_transparent();"));
        assert!(code.contains("Ok(Self { 0: __inner? })"));
        let code = ok("struct T(u8, #[json(default)] String);");
        assert!(code.contains("__w.begin_array();"));
        assert!(code.contains("with_index(1)"));
        assert!(code.contains("expected an array of 2 elements, found 0"));
        let code = ok("struct U;");
        assert!(code.contains("__w.null();"));
        assert!(code.contains("<() as ::lithair::json::FromJson>::read_json(__r)?;"));
    }

    #[test]
    fn enums_externally_tagged() {
        let code = ok("#[json(rename_all = \"snake_case\")] enum E { UnitOne, New(u8), Pair(u8, u8), \
                       #[json(rename = \"s\", rename_all = \"kebab-case\")] Named { field_a: u8 } }");
        assert!(code.contains("Self::UnitOne {  .. } => {\n__w.str(\"unit_one\");"));
        assert!(code.contains("\"unit_one\" => Ok(Self::UnitOne {}),"));
        assert!(code.contains(
            "\"new\" => Self::New { 0: <u8 as ::lithair::json::FromJson>::read_json(__r)"
        ));
        assert!(code.contains("__w.field(\"field-a\")"));
        assert!(code.contains("with_field(\"s\")"));
        assert!(code.contains("Self::Named { field_a: __f_field_a,  .. }"));
    }

    #[test]
    fn enums_internally_tagged() {
        let code = ok("#[json(tag = \"type\")] enum E { A, B { x: u8 } }");
        assert!(code.contains("__w.field(\"type\"); __w.str(\"A\");"));
        assert!(code.contains("::core::clone::Clone::clone(&*__r)"));
        assert!(code.contains(
            "\"type\" => {\nif __tag_seen { return Err(__r.error(\"duplicate field `type`\")); }"
        ));
        assert!(code.contains("missing_field(\"type\")"));
    }

    #[test]
    fn generic_impls_bound_used_params() {
        let code = ok("struct G<'a, T: Clone, U, S> where U: Copy { a: Cow<'a, T>, b: Vec<U>, #[json(skip)] s: S }");
        assert!(code.contains("impl<'a, T: Clone, U, S> ::lithair::json::ToJson for G<'a, T, U, S> where U : Copy, \
                               T: ::lithair::json::ToJson, U: ::lithair::json::ToJson {"), "{code}");
        assert!(code.contains("S: ::core::default::Default"), "{code}");
    }

    #[test]
    fn types_holding_references_are_written_only() {
        let code = ok("struct B<'a> { a: &'a str, n: u8 }");
        assert!(code.contains("ToJson for B<'a>"));
        assert!(!code.contains("FromJson for"));
        let code = ok("struct B<'a> { #[json(skip)] a: &'a str, n: u8 }");
        assert!(code.contains("FromJson for"));
    }

    #[test]
    fn raw_identifiers_are_keys_without_prefix() {
        let code = ok("struct R { r#type: u8 }");
        assert!(code.contains(
            "__w.field(\"type\"); <u8 as ::lithair::json::ToJson>::write_json(&self.r#type, __w);"
        ));
        assert!(code.contains("r#type: match __f_type"));
    }

    /// The text of the token each error points at.
    fn error_tokens(source: &str) -> Vec<String> {
        let toks = lex(source);
        let item = parse_item(&toks, Sp(u32::MAX)).expect("test source parses");
        let errors = expand(&item).expect_err("expected errors");
        errors
            .iter()
            .map(|e| token_text(&toks, e.sp).unwrap_or_default())
            .collect()
    }

    fn token_text(toks: &[crate::tokens::Tok], sp: Sp) -> Option<String> {
        use crate::tokens::Tok;
        toks.iter().find_map(|tok| match tok {
            Tok::Ident { text, sp: s } | Tok::Lit { text, sp: s } if *s == sp => Some(text.clone()),
            Tok::Group { toks, .. } => token_text(toks, sp),
            _ => None,
        })
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        assert_eq!(
            error_tokens("#[json(tag = \"t\")] struct S { a: u8 }"),
            ["tag"]
        );
        assert_eq!(
            error_tokens("#[json(tag = \"t\")] enum E { A, B(u8) }"),
            ["B"]
        );
        assert_eq!(
            error_tokens("#[json(tag = \"t\")] enum E { A { t: u8 } }"),
            ["t"]
        );
        assert_eq!(
            error_tokens("struct S { a: u8, #[json(rename = \"a\")] b: u8 }"),
            ["b"]
        );
        assert_eq!(
            error_tokens("#[json(rename_all = \"x\")] struct S { a: u8 }"),
            ["\"x\""]
        );
        assert_eq!(
            error_tokens("struct S { #[json(default = \"1\")] a: u8 }"),
            ["\"1\""]
        );
        assert_eq!(error_tokens("struct S { #[db(uniq)] a: u8 }"), ["uniq"]);
        assert_eq!(error_tokens("struct S(#[json(skip)] u8);"), ["skip"]);
        assert_eq!(
            error_tokens("#[json(rename_all = \"camelCase\")] struct S(u8, u8);"),
            ["rename_all"]
        );
        assert_eq!(
            error_tokens("#[json(deny_unknown_fields)] struct S;"),
            ["deny_unknown_fields"]
        );
        assert_eq!(
            error_tokens("struct S { #[json(skip, skip_if_none)] a: Option<u8> }"),
            ["skip_if_none"]
        );
    }

    #[test]
    fn invalid_combinations_are_errors() {
        assert!(errors("#[json(tag = \"t\")] struct S { a: u8 }")[0].contains("enums only"));
        assert!(errors("#[json(tag = \"t\")] enum E { A(u8) }")[0].contains("tuple variant"));
        assert!(
            errors("#[json(tag = \"t\")] enum E { A { t: u8 } }")[0].contains("is the enum's tag")
        );
        assert!(
            errors("struct S { a: u8, #[json(rename = \"a\")] b: u8 }")[0].contains("two fields")
        );
        assert!(errors("enum E { A, #[json(rename = \"A\")] B }")[0].contains("two variants"));
        assert!(
            errors("struct S(#[json(rename = \"a\")] u8, u8);")[0].contains("named fields only")
        );
        assert!(errors("struct S(#[json(skip)] u8);")[0].contains("newtype"));
        assert!(
            errors("struct S { #[json(skip, skip_if_none)] a: Option<u8> }")[0]
                .contains("cannot be combined")
        );
        assert!(
            errors("#[json(rename_all = \"camel\")] struct S { a: u8 }")[0]
                .contains("rename_all style")
        );
        assert!(errors("#[db(default)] struct S { a: u8 }")[0]
            .contains("not accepted on a struct or enum"));
        assert!(
            errors("enum E { #[json(rename_all = \"camelCase\")] A(u8) }")[0]
                .contains("struct variants only")
        );
        let all = errors("struct S { #[json(skp)] a: u8, #[json(renam = \"x\")] b: u8 }");
        assert_eq!(all.len(), 2, "every error is reported at once");
    }
}
