//! `#[derive(Model)]`: validates the model vocabulary (`#[db(..)]`, `#[http(..)]`,
//! `#[lifecycle(..)]`, `#[model(..)]`, and `#[json(rename, rename_all)]`) against a named
//! struct, then writes, as source text:
//! 1. `ToJson` / `FromJson` for the model (HTTP shape: `#[http(skip)]` fields never appear,
//!    `#[http(read_only)]` and skipped fields are ignored on input, unknown keys are errors);
//! 2. `Encode` / `Decode` through `binary::expand` (every field persisted, `#[db(default)]`
//!    fields marked so old data decodes);
//! 3. `<Name>Patch` (every non-key field as `Option<T>`) with its four codec impls;
//! 4. `<Name>Event = ::lithair::app::ModelEvent<Name>`;
//! 5. `impl ::lithair::app::Model`.
//!
//! Defaults: `#[db(default)]` is `Default::default()`; `#[db(default = LITERAL)]` takes literal
//! tokens (`0`, `1.5`, `true`, `'x'`, `"draft"`); a string literal is converted with
//! `Into::into`, so it fits `String` fields. The default path of a model is `/api/` plus the
//! snake_case name made plural by three English rules (see `plural`).
//!
//! Must not: duplicate what `lithair::app` decides at run time (validation, uniqueness,
//! immutability are checked there from `FIELDS`); this module only describes the model.
use crate::ast::{Attr, Body, Error, Field, Fields, Item};
use crate::attrs::{self, Found, Shape, Spec};
use crate::case::Case;
use crate::emit;
use crate::rules::{self, Rule};
use crate::tokens::{render, str_lit, Delim, Tok};

const TO_JSON: &str = "::lithair::json::ToJson";
const FROM_JSON: &str = "::lithair::json::FromJson";
const JSON_ERROR: &str = "::lithair::json::Error";
const READER: &str = "::lithair::json::Reader<'_>";
const WRITER: &str = "::lithair::json::Writer";
const OPTION: &str = "::core::option::Option";
/// Opens generated function bodies so user items named `Some`, `Ok`, ... change nothing.
const BODY_PRELUDE: &str = "#[allow(unused_imports)] use ::core::option::Option::{Some, None}; \
     #[allow(unused_imports)] use ::core::result::Result::{Ok, Err};\n";

const MODEL_CONTAINER: Spec = Spec {
    namespace: "model",
    place: "struct",
    keys: &[("path", Shape::Str), ("name", Shape::Str)],
};
const MODEL_FIELD: Spec = Spec {
    namespace: "model",
    place: "field",
    keys: &[],
};
const JSON_CONTAINER: Spec = Spec {
    namespace: "json",
    place: "model",
    keys: &[("rename_all", Shape::Str)],
};
const JSON_FIELD: Spec = Spec {
    namespace: "json",
    place: "model field",
    keys: &[("rename", Shape::Str)],
};
const DB_FIELD: Spec = Spec {
    namespace: "db",
    place: "field",
    keys: &[
        ("primary_key", Shape::Flag),
        ("unique", Shape::Flag),
        ("indexed", Shape::Flag),
        ("default", Shape::FlagOrLiteral),
    ],
};
const HTTP_CONTAINER: Spec = Spec {
    namespace: "http",
    place: "struct",
    keys: &[],
};
const HTTP_FIELD: Spec = Spec {
    namespace: "http",
    place: "field",
    keys: &[
        ("validate", Shape::Str),
        ("skip", Shape::Flag),
        ("read_only", Shape::Flag),
    ],
};
const LIFECYCLE_CONTAINER: Spec = Spec {
    namespace: "lifecycle",
    place: "struct",
    keys: &[],
};
const LIFECYCLE_FIELD: Spec = Spec {
    namespace: "lifecycle",
    place: "field",
    keys: &[("immutable", Shape::Flag)],
};

/// Where a field's default comes from.
#[derive(Clone, Debug)]
enum DefaultOf {
    /// `Default::default()`.
    Trait,
    /// A literal token, returned by a generated helper function.
    Literal(Tok),
}

/// A field after attribute resolution.
struct ModelField<'a> {
    field: &'a Field,
    /// The JSON key.
    key: String,
    /// The type placeholder.
    ty: String,
    kind: &'static str,
    optional: bool,
    primary_key: bool,
    unique: bool,
    indexed: bool,
    default: Option<DefaultOf>,
    immutable: bool,
    read_only: bool,
    skip: bool,
    rules: Vec<Rule>,
}

impl ModelField<'_> {
    /// Whether HTTP input may set this field.
    fn writable(&self) -> bool {
        !self.skip && !self.read_only
    }

    /// The name of the helper returning a literal default.
    fn default_fn(&self) -> String {
        format!("__lithair_default_{}", self.field.name())
    }

    /// The expression giving this field's default (inside an impl for the model).
    fn default_expr(&self) -> String {
        match &self.default {
            Some(DefaultOf::Literal(_)) => format!("Self::{}()", self.default_fn()),
            Some(DefaultOf::Trait) | None => {
                format!("<{} as ::core::default::Default>::default()", self.ty)
            }
        }
    }

    fn member(&self) -> String {
        self.field.member()
    }
}

/// The validated model.
struct Model<'a> {
    item: &'a Item,
    name: String,
    path: String,
    fields: Vec<ModelField<'a>>,
    primary_key: usize,
}

impl Model<'_> {
    fn patch(&self) -> String {
        format!("{}Patch", self.item.name)
    }

    fn patch_fields(&self) -> impl Iterator<Item = (usize, &ModelField<'_>)> {
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.primary_key)
    }
}

/// Expands `#[derive(Model)]` for `item` into source text, or the errors to report.
pub fn expand(item: &Item) -> Result<String, Vec<Error>> {
    let model = analyze(item)?;
    let mut out = defaults_impl(&model);
    out.push_str(&model_to_json(&model));
    out.push_str(&model_from_json(&model));
    out.push_str(&crate::binary::expand(&binary_view(&model))?);
    out.push_str(&patch_struct(&model));
    out.push_str(&patch_to_json(&model));
    out.push_str(&patch_from_json(&model));
    out.push_str(&patch_binary(&model));
    out.push_str(&format!(
        "/// The events of `{name}`: created, updated (with a `{name}Patch`), replaced, deleted.\n\
         #[allow(dead_code)]\n{vis} type {name}Event = ::lithair::app::ModelEvent<{name}>;\n",
        name = item.name,
        vis = render(&item.vis),
    ));
    out.push_str(&model_impl(&model));
    Ok(out)
}

fn analyze(item: &Item) -> Result<Model<'_>, Vec<Error>> {
    let mut errors = Vec::new();
    let container = attrs::collect(&item.attrs, &MODEL_CONTAINER, &mut errors);
    let json = attrs::collect(&item.attrs, &JSON_CONTAINER, &mut errors);
    for spec in [&attrs::DB_CONTAINER, &HTTP_CONTAINER, &LIFECYCLE_CONTAINER] {
        attrs::collect(&item.attrs, spec, &mut errors);
    }
    let case = attrs::get(&json, "rename_all").and_then(|f| attrs::case_value(f, &mut errors));
    let list = match &item.body {
        Body::Struct(Fields::Named(list)) => list,
        _ => {
            let message = "`#[derive(Model)]` needs a struct with named fields";
            return Err(vec![Error::new(item.name_sp, message)]);
        }
    };
    if let Some(param) = item.generics.params.first() {
        let message = format!("a model cannot be generic (`{}`)", param.name());
        errors.push(Error::new(item.name_sp, message));
    }
    let fields: Vec<ModelField<'_>> = list
        .iter()
        .map(|field| resolve_field(field, case, &mut errors))
        .collect();
    check_json_keys(&fields, &mut errors);
    let primary_key = find_primary_key(item, &fields, &mut errors);
    let name = string_key(&container, "name", &mut errors).unwrap_or_else(|| item.name.clone());
    let path =
        string_key(&container, "path", &mut errors).unwrap_or_else(|| default_path(&item.name));
    match (errors.is_empty(), primary_key) {
        (true, Some(primary_key)) => Ok(Model {
            item,
            name,
            path,
            fields,
            primary_key,
        }),
        _ => Err(errors),
    }
}

/// `model(name)` / `model(path)`: non-empty; a path starts with `/` and does not end with one.
fn string_key(found: &[Found], key: &str, errors: &mut Vec<Error>) -> Option<String> {
    let literal = attrs::get(found, key)?.value.as_ref()?;
    let value = &literal.value;
    let bad = match key {
        "path" => !value.starts_with('/') || value.len() < 2 || value.ends_with('/'),
        _ => value.is_empty(),
    };
    if bad
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '{' || c == '}')
    {
        let message = match key {
            "path" => "`model(path = ..)` must look like `/api/things`: a leading `/`, no trailing `/`, no spaces or braces",
            _ => "`model(name = ..)` must be a non-empty name without spaces",
        };
        errors.push(Error::new(literal.sp, message));
        return None;
    }
    Some(value.clone())
}

fn resolve_field<'a>(
    field: &'a Field,
    case: Option<Case>,
    errors: &mut Vec<Error>,
) -> ModelField<'a> {
    attrs::collect(&field.attrs, &MODEL_FIELD, errors);
    let json = attrs::collect(&field.attrs, &JSON_FIELD, errors);
    let db = attrs::collect(&field.attrs, &DB_FIELD, errors);
    let http = attrs::collect(&field.attrs, &HTTP_FIELD, errors);
    let lifecycle = attrs::collect(&field.attrs, &LIFECYCLE_FIELD, errors);
    attrs::conflict(&http, "skip", "read_only", "http", errors);
    let key = match attrs::get(&json, "rename").and_then(|f| f.value.as_ref()) {
        Some(literal) => literal.value.clone(),
        None => case.map_or_else(|| field.name(), |case| case.apply(&field.name())),
    };
    let (kind, optional) = type_kind(&field.ty);
    let default = attrs::get(&db, "default").map(|found| match &found.literal {
        Some(tok) => DefaultOf::Literal(tok.clone()),
        None => DefaultOf::Trait,
    });
    let resolved = ModelField {
        field,
        key,
        ty: emit::ty(field),
        kind,
        optional,
        primary_key: attrs::get(&db, "primary_key").is_some(),
        unique: attrs::get(&db, "unique").is_some(),
        indexed: attrs::get(&db, "indexed").is_some(),
        default,
        immutable: attrs::get(&lifecycle, "immutable").is_some(),
        read_only: attrs::get(&http, "read_only").is_some(),
        skip: attrs::get(&http, "skip").is_some(),
        rules: field_rules(&http, kind, errors),
    };
    for key in ["unique", "indexed"] {
        if let Some(found) = attrs::get(&db, key).filter(|_| kind == "Other") {
            let message = format!(
                "`db({key})` needs a scalar field (an integer, float, bool or String, maybe in an Option)"
            );
            errors.push(Error::new(found.sp, message));
        }
    }
    resolved
}

/// Parses `http(validate = "..")` and checks each rule fits the field's kind.
fn field_rules(http: &[Found], kind: &str, errors: &mut Vec<Error>) -> Vec<Rule> {
    let Some(literal) = attrs::get(http, "validate").and_then(|f| f.value.as_ref()) else {
        return Vec::new();
    };
    let parsed = match rules::parse(&literal.value) {
        Ok(parsed) => parsed,
        Err(message) => {
            errors.push(Error::new(
                literal.sp,
                format!("bad validate rule: {message}"),
            ));
            return Vec::new();
        }
    };
    let numeric = matches!(kind, "Int" | "UInt" | "Float");
    for rule in &parsed {
        let fits = match rule {
            Rule::Len { .. } => kind == "Str" || kind == "Other",
            Rule::Range { .. } => numeric,
            Rule::Email | Rule::Url => kind == "Str",
        };
        if !fits {
            let message = match rule {
                Rule::Len { .. } => "`len(..)` applies to strings and lists",
                Rule::Range { .. } => "`range(..)` applies to numbers",
                Rule::Email | Rule::Url => "`email` and `url` apply to strings",
            };
            errors.push(Error::new(literal.sp, message));
        }
    }
    parsed
}

fn check_json_keys(fields: &[ModelField<'_>], errors: &mut Vec<Error>) {
    for (at, field) in fields.iter().enumerate() {
        if fields[..at].iter().any(|f| f.key == field.key) {
            let message = format!("two fields are written as the JSON key `{}`", field.key);
            errors.push(Error::new(field.field.sp, message));
        }
    }
}

/// The index of the one `#[db(primary_key)]` field, checking its type and attributes.
fn find_primary_key(
    item: &Item,
    fields: &[ModelField<'_>],
    errors: &mut Vec<Error>,
) -> Option<usize> {
    let keys: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i].primary_key)
        .collect();
    let Some(&first) = keys.first() else {
        let message = format!(
            "model `{}` has no primary key: mark a `u64` or `String` field with `#[db(primary_key)]`",
            item.name
        );
        errors.push(Error::new(item.name_sp, message));
        return None;
    };
    for &extra in &keys[1..] {
        let message = "a model has exactly one `#[db(primary_key)]`";
        errors.push(Error::new(fields[extra].field.sp, message));
    }
    let field = &fields[first];
    if primary_key_type(&field.field.ty).is_none() {
        let message = "a primary key is a `u64` (assigned by the sequencer) or a `String` (supplied by the client)";
        errors.push(Error::new(field.field.sp, message));
    }
    if field.skip || field.default.is_some() {
        let message = "a primary key cannot be `http(skip)` or have a `db(default)`";
        errors.push(Error::new(field.field.sp, message));
    }
    Some(first)
}

/// `Some(true)` for `u64`, `Some(false)` for `String`, `None` otherwise.
fn primary_key_type(ty: &[Tok]) -> Option<bool> {
    let (name, args) = last_segment(ty)?;
    match (name.as_str(), args.is_empty()) {
        ("u64", true) => Some(true),
        ("String", true) => Some(false),
        _ => None,
    }
}

/// The last path segment of a type and its generic arguments: `Option<u8>` -> (`Option`, `u8`).
fn last_segment(ty: &[Tok]) -> Option<(String, Vec<Tok>)> {
    let ty = crate::ast::unwrap_invisible(ty);
    let mut name = None;
    let mut at = 0;
    while let Some(tok) = ty.get(at) {
        match tok {
            Tok::Ident { text, .. } => name = Some(text.clone()),
            Tok::Punct { ch: ':', .. } => {}
            Tok::Punct { ch: '<', .. } if name.is_some() && ty.last()?.is_punct('>') => {
                return Some((name?, ty[at + 1..ty.len() - 1].to_vec()));
            }
            _ => return None,
        }
        at += 1;
    }
    Some((name?, Vec::new()))
}

/// The `FieldKind` variant name of a type, and whether it is an `Option`.
fn type_kind(ty: &[Tok]) -> (&'static str, bool) {
    match last_segment(ty) {
        Some((name, args)) if name == "Option" && !args.is_empty() => (type_kind(&args).0, true),
        Some((name, args)) if args.is_empty() => (scalar_kind(&name), false),
        _ => ("Other", false),
    }
}

fn scalar_kind(name: &str) -> &'static str {
    match name {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "UInt",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "Int",
        "f32" | "f64" => "Float",
        "bool" => "Bool",
        "String" => "Str",
        _ => "Other",
    }
}

/// `/api/` + the snake_case plural of the type name.
fn default_path(name: &str) -> String {
    format!("/api/{}", plural(&Case::Snake.apply(name)))
}

/// English plural by three rules: consonant + `y` -> `ies` (category -> categories); `s`, `x`,
/// `z`, `ch`, `sh` -> `es` (address -> addresses); anything else + `s` (post -> posts,
/// person -> persons). Irregular plurals need `#[model(path = ..)]`.
pub fn plural(word: &str) -> String {
    let consonant_y = word.ends_with('y')
        && word
            .chars()
            .rev()
            .nth(1)
            .is_some_and(|c| !"aeiou".contains(c));
    if consonant_y {
        format!("{}ies", &word[..word.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|end| word.ends_with(end))
    {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

// ----------------------------------------------------------------------------------------------
// Model codecs

/// Helpers returning `#[db(default = LITERAL)]` values, shared by JSON and binary decoding.
fn defaults_impl(model: &Model<'_>) -> String {
    let mut helpers = String::new();
    for field in &model.fields {
        let Some(DefaultOf::Literal(tok)) = &field.default else {
            continue;
        };
        let text = render(std::slice::from_ref(tok));
        let expr = if text.starts_with('"') || text.starts_with("r\"") || text.starts_with("r#") {
            format!("::core::convert::Into::into({text})")
        } else {
            text
        };
        helpers.push_str(&format!(
            "#[doc(hidden)]\n#[allow(non_snake_case, clippy::all)]\nfn {}() -> {} {{ {expr} }}\n",
            field.default_fn(),
            field.ty
        ));
    }
    if helpers.is_empty() {
        return helpers;
    }
    format!(
        "#[automatically_derived]\nimpl {} {{\n{helpers}}}\n",
        model.item.name
    )
}

/// The model with its attributes replaced by what `#[derive(Binary)]` understands: no container
/// attributes, `#[binary(default)]` on defaulted fields (the helper for literal defaults).
fn binary_view(model: &Model<'_>) -> Item {
    let mut item = model.item.clone();
    item.attrs.clear();
    let Body::Struct(Fields::Named(list)) = &mut item.body else {
        unreachable!("analyze accepts named structs only");
    };
    for (field, resolved) in list.iter_mut().zip(&model.fields) {
        field.attrs.clear();
        let sp = field.sp;
        let mut toks = vec![Tok::Ident {
            text: "default".into(),
            sp,
        }];
        match &resolved.default {
            None => continue,
            Some(DefaultOf::Trait) => {}
            Some(DefaultOf::Literal(_)) => toks.extend([
                Tok::Punct {
                    ch: '=',
                    joint: false,
                    sp,
                },
                Tok::Lit {
                    text: str_lit(&format!("Self::{}", resolved.default_fn())),
                    sp,
                },
            ]),
        }
        field.attrs.push(Attr {
            path: "binary".into(),
            path_sp: sp,
            rest: vec![Tok::Group {
                delim: Delim::Paren,
                toks,
                sp,
            }],
        });
    }
    item
}

fn model_to_json(model: &Model<'_>) -> String {
    let mut body = String::from("__w.begin_object();\n");
    for field in model.fields.iter().filter(|f| !f.skip) {
        body.push_str(&format!(
            "__w.field({}); <{} as {TO_JSON}>::write_json(&self.{}, __w);\n",
            str_lit(&field.key),
            field.ty,
            field.member()
        ));
    }
    body.push_str("__w.end_object();\n");
    format!(
        "#[automatically_derived]\nimpl {TO_JSON} for {} {{\n#[allow(clippy::all)]\n\
         fn write_json(&self, __w: &mut {WRITER}) {{\n{body}}}\n}}\n",
        model.item.name
    )
}

/// One `match` arm reading a key into `Option` local `target`, rejecting duplicates.
fn read_arm(key: &str, ty: &str, target: &str) -> String {
    let (key, duplicate) = (str_lit(key), str_lit(&format!("duplicate field `{key}`")));
    format!(
        "{key} => {{\nif {target}.is_some() {{ return Err(__r.error({duplicate})); }}\n\
         {target} = Some(<{ty} as {FROM_JSON}>::read_json(__r).map_err(|__e| __e.with_field({key}))?);\n}}\n"
    )
}

/// The arm passing over keys that are known but not accepted from input, then the arm
/// rejecting unknown keys.
fn ignored_and_unknown_arms<'f>(ignored: impl Iterator<Item = &'f ModelField<'f>>) -> String {
    let keys: Vec<String> = ignored.map(|f| str_lit(&f.key)).collect();
    let mut out = String::new();
    if !keys.is_empty() {
        out.push_str(&format!("{} => __r.skip_value()?,\n", keys.join(" | ")));
    }
    out.push_str(&format!(
        "_ => return Err({JSON_ERROR}::unknown_field(&__key)),\n"
    ));
    out
}

fn from_json_header(type_name: &str, body: &str) -> String {
    format!(
        "#[automatically_derived]\nimpl {FROM_JSON} for {type_name} {{\n\
         #[allow(unused_mut, clippy::all)]\n\
         fn read_json(__r: &mut {READER}) -> ::core::result::Result<Self, {JSON_ERROR}> {{\n\
         {BODY_PRELUDE}{body}}}\n}}\n"
    )
}

fn model_from_json(model: &Model<'_>) -> String {
    let read: Vec<&ModelField<'_>> = model.fields.iter().filter(|f| f.writable()).collect();
    let mut body = String::new();
    for field in &read {
        body.push_str(&format!(
            "let mut {}: {OPTION}<{}> = None;\n",
            emit::local(field.field),
            field.ty
        ));
    }
    body.push_str(
        "__r.begin_object()?;\nwhile let Some(__key) = __r.next_key()? {\nmatch &*__key {\n",
    );
    for field in &read {
        body.push_str(&read_arm(&field.key, &field.ty, &emit::local(field.field)));
    }
    body.push_str(&ignored_and_unknown_arms(
        model.fields.iter().filter(|f| !f.writable()),
    ));
    body.push_str("}\n}\n");
    let members: Vec<String> = model
        .fields
        .iter()
        .map(|f| format!("{}: {}", f.member(), absent_value(f)))
        .collect();
    body.push_str(&format!("Ok(Self {{\n{}\n}})\n", members.join(",\n")));
    from_json_header(&model.item.name, &body)
}

/// A field's value after the object is read: what was read, else its default (the key's
/// default is what the sequencer replaces), else `None` for an `Option`, else an error.
fn absent_value(field: &ModelField<'_>) -> String {
    if !field.writable() {
        return field.default_expr();
    }
    let absent = if field.default.is_some() || field.primary_key {
        field.default_expr()
    } else {
        format!(
            "match <{} as {FROM_JSON}>::absent() {{ Some(__v) => __v, None => return Err({JSON_ERROR}::missing_field({})) }}",
            field.ty,
            str_lit(&field.key)
        )
    };
    format!(
        "match {} {{ Some(__v) => __v, None => {absent} }}",
        emit::local(field.field)
    )
}

// ----------------------------------------------------------------------------------------------
// The patch

fn patch_struct(model: &Model<'_>) -> String {
    let name = &model.item.name;
    let mut fields = String::new();
    for (_, field) in model.patch_fields() {
        fields.push_str(&format!(
            "/// New value of `{name}::{}`, if it changes.\npub {}: {OPTION}<{}>,\n",
            field.field.name(),
            field.member(),
            field.ty
        ));
    }
    format!(
        "/// A partial update of a `{name}`: each `Some` field is set, `None` fields are kept.\n\
         /// In JSON it is a merge patch: an absent key is unchanged, `null` on an `Option` field\n\
         /// sets it to `None`.\n\
         #[derive(Clone, Debug, Default)]\n{} struct {} {{\n{fields}}}\n",
        render(&model.item.vis),
        model.patch()
    )
}

fn patch_to_json(model: &Model<'_>) -> String {
    let mut body = String::from("__w.begin_object();\n");
    for (_, field) in model.patch_fields().filter(|(_, f)| !f.skip) {
        body.push_str(&format!(
            "if let ::core::option::Option::Some(__v) = &self.{} {{ __w.field({}); <{} as {TO_JSON}>::write_json(__v, __w); }}\n",
            field.member(),
            str_lit(&field.key),
            field.ty
        ));
    }
    body.push_str("__w.end_object();\n");
    format!(
        "#[automatically_derived]\nimpl {TO_JSON} for {} {{\n#[allow(clippy::all)]\n\
         fn write_json(&self, __w: &mut {WRITER}) {{\n{body}}}\n}}\n",
        model.patch()
    )
}

fn patch_from_json(model: &Model<'_>) -> String {
    let mut body = String::from(
        "let mut __patch = <Self as ::core::default::Default>::default();\n\
         __r.begin_object()?;\nwhile let Some(__key) = __r.next_key()? {\nmatch &*__key {\n",
    );
    for (_, field) in model.patch_fields().filter(|(_, f)| f.writable()) {
        let target = format!("__patch.{}", field.member());
        body.push_str(&read_arm(&field.key, &field.ty, &target));
    }
    // The key and protected fields are known: a client may send a whole record as a patch.
    body.push_str(&ignored_and_unknown_arms(
        model
            .fields
            .iter()
            .filter(|f| f.primary_key || !f.writable()),
    ));
    body.push_str("}\n}\nOk(__patch)\n");
    from_json_header(&model.patch(), &body)
}

/// Binary codecs of the patch: a framed struct of `Option`s, each absent one `None`, so a patch
/// type that gains fields still decodes old events.
fn patch_binary(model: &Model<'_>) -> String {
    let (encode, decode) = ("::lithair::binary::Encode", "::lithair::binary::Decode");
    let mut write = String::from("let __mark = ::lithair::binary::begin_struct(__out);\n");
    let mut read = String::from("let mut __body = __r.struct_body()?;\n");
    let mut members = Vec::new();
    for (_, field) in model.patch_fields() {
        let (ty, member, local) = (
            format!("{OPTION}<{}>", field.ty),
            field.member(),
            emit::local(field.field),
        );
        write.push_str(&format!(
            "<{ty} as {encode}>::encode(&self.{member}, __out);\n"
        ));
        read.push_str(&format!(
            "let {local}: {ty} = if __body.is_empty() {{ {OPTION}::None }} else {{ \
             <{ty} as {decode}>::decode(&mut __body).map_err(|__e| __e.with_field({}))? }};\n",
            str_lit(&field.field.name())
        ));
        members.push(format!("{member}: {local}"));
    }
    write.push_str("::lithair::binary::end_struct(__out, __mark);\n");
    read.push_str(&format!(
        "::core::result::Result::Ok(Self {{ {} }})\n",
        members.join(", ")
    ));
    let patch = model.patch();
    format!(
        "#[automatically_derived]\nimpl {encode} for {patch} {{\n#[allow(clippy::all)]\n\
         fn encode(&self, __out: &mut ::std::vec::Vec<u8>) {{\n{write}}}\n}}\n\
         #[automatically_derived]\nimpl {decode} for {patch} {{\nconst ENCODED_BYTES_MIN: usize = 1;\n\
         #[allow(unused_mut, clippy::all)]\n\
         fn decode(__r: &mut ::lithair::binary::Reader<'_>) -> ::core::result::Result<Self, ::lithair::binary::Error> {{\n\
         {read}}}\n}}\n"
    )
}

// ----------------------------------------------------------------------------------------------
// impl Model

fn field_spec(field: &ModelField<'_>) -> String {
    let rules: Vec<String> = field.rules.iter().map(Rule::to_rust).collect();
    format!(
        "::lithair::app::FieldSpec {{ name: {}, json_name: {}, kind: ::lithair::app::FieldKind::{}, \
         optional: {}, primary_key: {}, unique: {}, indexed: {}, has_default: {}, immutable: {}, \
         read_only: {}, skip: {}, rules: &[{}] }}",
        str_lit(&field.field.name()),
        str_lit(&field.key),
        field.kind,
        field.optional,
        field.primary_key,
        field.unique,
        field.indexed,
        field.default.is_some(),
        field.immutable,
        field.read_only,
        field.skip,
        rules.join(", ")
    )
}

fn model_impl(model: &Model<'_>) -> String {
    let key = &model.fields[model.primary_key];
    let is_int = primary_key_type(&key.field.ty) == Some(true);
    let member = key.member();
    let (id, set_id) = if is_int {
        (
            format!("::lithair::app::Id::Int(self.{member})"),
            format!("::lithair::app::Id::Int(__v) => self.{member} = __v,\n::lithair::app::Id::Str(_) => ::core::debug_assert!(false, \"a u64 key takes Id::Int\"),"),
        )
    } else {
        (
            format!("::lithair::app::Id::Str(::core::clone::Clone::clone(&self.{member}))"),
            format!("::lithair::app::Id::Str(__v) => self.{member} = __v,\n::lithair::app::Id::Int(_) => ::core::debug_assert!(false, \"a String key takes Id::Str\"),"),
        )
    };
    let specs: Vec<String> = model.fields.iter().map(field_spec).collect();
    let mut values = String::new();
    let (mut apply, mut present, mut keep) = (String::new(), String::new(), String::new());
    for (index, field) in model.fields.iter().enumerate() {
        let m = field.member();
        values.push_str(&format!(
            "{index} => ::lithair::json::to_value(&self.{m}),\n"
        ));
        if field.skip || field.read_only {
            keep.push_str(&format!(
                "self.{m} = ::core::clone::Clone::clone(&__current.{m});\n"
            ));
        }
    }
    for (index, field) in model.patch_fields() {
        let m = field.member();
        apply.push_str(&format!("if let ::core::option::Option::Some(__v) = &__patch.{m} {{ self.{m} = ::core::clone::Clone::clone(__v); }}\n"));
        present.push_str(&format!(
            "if __patch.{m}.is_some() {{ __fields.push({index}); }}\n"
        ));
    }
    format!(
        "#[automatically_derived]\nimpl ::lithair::app::Model for {name} {{\n\
         type Patch = {patch};\n\
         const NAME: &'static str = {model_name};\n\
         const PATH: &'static str = {path};\n\
         const FIELDS: &'static [::lithair::app::FieldSpec] = &[\n{specs}\n];\n\
         const PRIMARY_KEY: usize = {pk};\n\
         fn id(&self) -> ::lithair::app::Id {{ {id} }}\n\
         fn set_id(&mut self, __id: ::lithair::app::Id) {{ match __id {{\n{set_id}\n}} }}\n\
         fn field_value(&self, __index: usize) -> ::lithair::json::Value {{\n\
         match __index {{\n{values}_ => return ::lithair::json::Value::Null,\n}}\
         .unwrap_or(::lithair::json::Value::Null)\n}}\n\
         #[allow(clippy::all)]\nfn apply_patch(&mut self, __patch: &{patch}) {{\n{apply}}}\n\
         #[allow(unused_mut, clippy::all)]\nfn patch_fields(__patch: &{patch}) -> ::std::vec::Vec<usize> {{\n\
         let mut __fields = ::std::vec::Vec::new();\n{present}__fields\n}}\n\
         #[allow(unused_variables, clippy::all)]\nfn keep_protected(&mut self, __current: &Self) {{\n{keep}}}\n}}\n",
        name = model.item.name,
        patch = model.patch(),
        model_name = str_lit(&model.name),
        path = str_lit(&model.path),
        specs = specs.join(",\n"),
        pk = model.primary_key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::parse_item;
    use crate::tokens::lex::lex;
    use crate::tokens::Sp;

    fn expand_source(source: &str) -> Result<String, Vec<Error>> {
        emit::expand_source(expand, source)
    }

    fn error_of(source: &str) -> Error {
        let errors = expand_source(source).expect_err("must be rejected");
        errors.into_iter().next().expect("at least one error")
    }

    #[test]
    fn plurals() {
        let cases = [
            ("post", "posts"),
            ("category", "categories"),
            ("address", "addresses"),
            ("box", "boxes"),
            ("match", "matches"),
            ("day", "days"),
            ("person", "persons"),
        ];
        for (word, expected) in cases {
            assert_eq!(plural(word), expected);
        }
        assert_eq!(default_path("BlogPost"), "/api/blog_posts");
    }

    #[test]
    fn kinds_of_types() {
        assert_eq!(type_kind(&lex("Option<String>")), ("Str", true));
        assert_eq!(type_kind(&lex("::std::string::String")), ("Str", false));
        assert_eq!(type_kind(&lex("Vec<u8>")), ("Other", false));
        assert_eq!(type_kind(&lex("i32")), ("Int", false));
        assert_eq!(type_kind(&lex("f64")), ("Float", false));
        assert_eq!(type_kind(&lex("(u8, u8)")), ("Other", false));
        assert_eq!(primary_key_type(&lex("u64")), Some(true));
        assert_eq!(primary_key_type(&lex("String")), Some(false));
        assert_eq!(primary_key_type(&lex("u32")), None);
        assert_eq!(primary_key_type(&lex("Option<u64>")), None);
    }

    #[test]
    fn generates_every_piece() {
        let code = expand_source(
            "#[model(path = \"/p\")] pub struct Post { #[db(primary_key)] id: u64, \
             #[http(validate = \"len(1..=5)\")] title: String, \
             #[db(default = \"draft\")] status: String, #[http(skip)] secret: String, \
             #[http(read_only)] views: u64, note: Option<String> }",
        )
        .expect("expands");
        assert!(code.contains("pub struct PostPatch"), "{code}");
        assert!(code.contains("pub type PostEvent"));
        assert!(code.contains("const PATH: &'static str = \"/p\""));
        assert!(code.contains(
            "fn __lithair_default_status() -> String { ::core::convert::Into::into(\"draft\") }"
        ));
        assert!(code.contains("Rule::Len { min: 1u64, max: ::core::option::Option::Some(5u64) }"));
        assert!(
            !code.contains("__w.field(\"secret\")"),
            "skip never written"
        );
        assert!(code.contains("\"id\" | \"secret\" | \"views\" => __r.skip_value()?"));
        assert!(code.contains("\"secret\" | \"views\" => __r.skip_value()?"));
        assert!(code.contains("self.secret = ::core::clone::Clone::clone(&__current.secret);"));
    }

    #[test]
    fn errors_point_at_the_attribute() {
        let toks = lex("struct P { #[db(primary_key)] id: u64, #[db(uniqe)] a: u8 }");
        let item = parse_item(&toks, Sp(u32::MAX)).expect("parses");
        let error = expand(&item).unwrap_err().remove(0);
        assert!(
            error.message.contains("did you mean `unique`"),
            "{}",
            error.message
        );
        let error = error_of("struct P { #[db(primary_key)] id: u32 }");
        assert!(error.message.contains("u64"));
        let error = error_of("struct P { id: u64 }");
        assert!(error.message.contains("no primary key"));
        let error = error_of("struct P { #[db(primary_key)] id: u64, #[db(unique)] t: Vec<u8> }");
        assert!(error.message.contains("scalar"));
        let error = error_of(
            "struct P { #[db(primary_key)] id: u64, #[http(validate = \"len(a..b)\")] t: String }",
        );
        assert!(
            error.message.contains("bad validate rule"),
            "{}",
            error.message
        );
        let error = error_of(
            "struct P { #[db(primary_key)] id: u64, #[http(validate = \"email\")] t: u8 }",
        );
        assert!(error.message.contains("apply to strings"));
        let error = error_of("#[model(paht = \"/x\")] struct P { #[db(primary_key)] id: u64 }");
        assert!(error.message.contains("did you mean `path`"));
        let error = error_of("#[lifecycle(immutable)] struct P { #[db(primary_key)] id: u64 }");
        assert!(error.message.contains("not accepted on a struct"));
        let error = error_of("struct P { #[db(primary_key)] id: u64, #[db(default = x)] a: u8 }");
        assert!(error.message.contains("expects a literal"));
        let error = error_of("struct P(u64);");
        assert!(error.message.contains("named fields"));
    }
}
