//! Parses a derive input (a struct or enum declaration as `Tok`s) into a small AST.
//!
//! Owns: the item grammar (attributes, visibility, generics, where clauses, fields, variants)
//! and the `Error` type every module reports with. Attributes are kept raw here; their meaning
//! belongs to `attrs`, so `#[derive(Json)]`, `#[derive(Binary)]` and a future
//! `#[derive(Model)]` share this parser. Must not: know about any codec, or ignore leftover
//! tokens (everything not understood is an error with a span).
use crate::tokens::{Delim, Sp, Tok};

/// A compile error to report at a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    /// What is wrong, in words a user can act on.
    pub message: String,
    /// The offending token.
    pub sp: Sp,
}

impl Error {
    /// A new error at `sp`.
    pub fn new(sp: Sp, message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            sp,
        }
    }
}

/// A parsed struct or enum.
#[derive(Clone, Debug)]
pub struct Item {
    /// Outer attributes (doc comments arrive as `#[doc = ".."]`).
    pub attrs: Vec<Attr>,
    /// The type name.
    pub name: String,
    /// Span of the type name.
    pub name_sp: Sp,
    /// The visibility tokens as written (`pub`, `pub(crate)`; empty if private), so a derive
    /// can give the items it generates beside the type the same visibility.
    pub vis: Vec<Tok>,
    /// Generic parameters and where clause.
    pub generics: Generics,
    /// Struct fields or enum variants.
    pub body: Body,
}

/// Struct or enum.
#[derive(Clone, Debug)]
pub enum Body {
    /// A struct with its fields.
    Struct(Fields),
    /// An enum with its variants, in declaration order.
    Enum(Vec<Variant>),
}

/// The fields of a struct or variant.
#[derive(Clone, Debug)]
pub enum Fields {
    /// `{ a: A, b: B }`
    Named(Vec<Field>),
    /// `(A, B)`
    Tuple(Vec<Field>),
    /// No fields at all.
    Unit,
}

impl Fields {
    /// The fields, empty for `Unit`.
    pub fn list(&self) -> &[Field] {
        match self {
            Fields::Named(list) | Fields::Tuple(list) => list,
            Fields::Unit => &[],
        }
    }
}

/// One field.
#[derive(Clone, Debug)]
pub struct Field {
    /// Attributes on the field.
    pub attrs: Vec<Attr>,
    /// The name as written (raw identifiers keep `r#`); `None` for tuple fields.
    pub ident: Option<String>,
    /// Position among the fields (the tuple index for tuple fields).
    pub index: usize,
    /// Span of the name, or of the type's first token for tuple fields.
    pub sp: Sp,
    /// The type's tokens.
    pub ty: Vec<Tok>,
}

impl Field {
    /// The name without a raw prefix (`r#type` -> `type`), or the index for tuple fields.
    pub fn name(&self) -> String {
        match &self.ident {
            Some(ident) => unraw(ident).to_string(),
            None => self.index.to_string(),
        }
    }

    /// How to name the field in code: `r#type`, `title` or `0`.
    pub fn member(&self) -> String {
        match &self.ident {
            Some(ident) => ident.clone(),
            None => self.index.to_string(),
        }
    }
}

/// One enum variant.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Attributes on the variant.
    pub attrs: Vec<Attr>,
    /// The name as written.
    pub ident: String,
    /// Span of the name.
    pub sp: Sp,
    /// The variant's fields.
    pub fields: Fields,
}

impl Variant {
    /// The name without a raw prefix.
    pub fn name(&self) -> &str {
        unraw(&self.ident)
    }
}

/// An outer attribute `#[path ...]`, kept raw.
#[derive(Clone, Debug)]
pub struct Attr {
    /// The path as text: `json`, `doc`, `rustfmt::skip`.
    pub path: String,
    /// Span of the path's first token.
    pub path_sp: Sp,
    /// Everything after the path: `(..)`, `= ".."` or nothing.
    pub rest: Vec<Tok>,
}

/// Generic parameters and the where clause of an item.
#[derive(Clone, Debug, Default)]
pub struct Generics {
    /// The parameters in order.
    pub params: Vec<GenericParam>,
    /// The where-clause predicates, each without its trailing comma.
    pub predicates: Vec<Vec<Tok>>,
}

/// One generic parameter, without its default.
#[derive(Clone, Debug)]
pub enum GenericParam {
    /// `'a: 'b`; `name` includes the quote.
    Lifetime {
        /// `'a`
        name: String,
        /// Bound tokens after the colon (may be empty).
        bounds: Vec<Tok>,
    },
    /// `T: Bound`
    Type {
        /// `T`
        name: String,
        /// Bound tokens after the colon (may be empty).
        bounds: Vec<Tok>,
    },
    /// `const N: usize`
    Const {
        /// `N`
        name: String,
        /// The type tokens.
        ty: Vec<Tok>,
    },
}

impl GenericParam {
    /// The parameter as it appears in the type's argument list: `'a`, `T`, `N`.
    pub fn name(&self) -> &str {
        match self {
            GenericParam::Lifetime { name, .. }
            | GenericParam::Type { name, .. }
            | GenericParam::Const { name, .. } => name,
        }
    }
}

/// Strips the `r#` of a raw identifier.
pub fn unraw(ident: &str) -> &str {
    ident.strip_prefix("r#").unwrap_or(ident)
}

/// A cursor over a token slice. `end_sp` is where "unexpected end" errors point.
struct Cursor<'t> {
    toks: &'t [Tok],
    pos: usize,
    end_sp: Sp,
}

impl<'t> Cursor<'t> {
    fn new(toks: &'t [Tok], end_sp: Sp) -> Cursor<'t> {
        Cursor {
            toks,
            pos: 0,
            end_sp,
        }
    }

    fn peek(&self) -> Option<&'t Tok> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, ahead: usize) -> Option<&'t Tok> {
        self.toks.get(self.pos + ahead)
    }

    fn bump(&mut self) -> Option<&'t Tok> {
        let tok = self.toks.get(self.pos);
        if tok.is_some() {
            self.pos += 1;
        }
        tok
    }

    fn is_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn here(&self) -> Sp {
        self.peek().map_or(self.end_sp, Tok::sp)
    }

    fn eat_punct(&mut self, ch: char) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(ch)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_ident(word)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect_ident(&mut self, what: &str) -> Result<(String, Sp), Error> {
        match self.peek() {
            Some(Tok::Ident { text, sp }) => {
                self.pos += 1;
                Ok((text.clone(), *sp))
            }
            _ => Err(Error::new(self.here(), format!("expected {what}"))),
        }
    }

    /// Takes tokens up to (not including) a `,` outside angle brackets, or to the end.
    fn take_until_comma(&mut self) -> Vec<Tok> {
        let mut depth: u32 = 0;
        let mut taken = Vec::new();
        while let Some(tok) = self.peek() {
            if depth == 0 && tok.is_punct(',') {
                break;
            }
            depth = angle_depth(depth, taken.last(), tok);
            taken.push(tok.clone());
            self.pos += 1;
        }
        taken
    }
}

/// Tracks `<`/`>` nesting in types and bounds; `->` does not close an angle bracket.
fn angle_depth(depth: u32, previous: Option<&Tok>, tok: &Tok) -> u32 {
    let after_dash = matches!(
        previous,
        Some(Tok::Punct {
            ch: '-',
            joint: true,
            ..
        })
    );
    if tok.is_punct('<') {
        depth + 1
    } else if tok.is_punct('>') && !after_dash {
        depth.saturating_sub(1)
    } else {
        depth
    }
}

/// Parses a derive input into an `Item`. `whole_sp` is used for "unexpected end" errors.
pub fn parse_item(toks: &[Tok], whole_sp: Sp) -> Result<Item, Error> {
    let mut cursor = Cursor::new(toks, whole_sp);
    let attrs = parse_attrs(&mut cursor)?;
    let vis_start = cursor.pos;
    skip_visibility(&mut cursor);
    let vis = toks[vis_start..cursor.pos].to_vec();
    let (keyword, keyword_sp) = cursor.expect_ident("`struct` or `enum`")?;
    let (name, name_sp) = cursor.expect_ident("the type's name")?;
    let mut generics = parse_generics(&mut cursor)?;
    let body = match keyword.as_str() {
        "struct" => Body::Struct(parse_struct_body(&mut cursor, &mut generics)?),
        "enum" => {
            generics.predicates = parse_where(&mut cursor)?;
            Body::Enum(parse_enum_body(&mut cursor)?)
        }
        "union" => {
            return Err(Error::new(
                keyword_sp,
                "unions are not supported; use a struct or an enum",
            ))
        }
        _ => return Err(Error::new(keyword_sp, "expected `struct` or `enum`")),
    };
    if let Some(extra) = cursor.peek() {
        return Err(Error::new(extra.sp(), "unexpected token after the item"));
    }
    Ok(Item {
        attrs,
        name,
        name_sp,
        vis,
        generics,
        body,
    })
}

fn parse_attrs(cursor: &mut Cursor<'_>) -> Result<Vec<Attr>, Error> {
    let mut attrs = Vec::new();
    while cursor.peek().is_some_and(|t| t.is_punct('#')) {
        let hash_sp = cursor.here();
        cursor.bump();
        let Some(Tok::Group {
            delim: Delim::Bracket,
            toks,
            sp,
        }) = cursor.bump()
        else {
            return Err(Error::new(hash_sp, "expected `[` after `#`"));
        };
        attrs.push(parse_attr(toks, *sp)?);
    }
    Ok(attrs)
}

/// Sees through invisible groups: `macro_rules!` fragments (`$m:meta`, `$v:vis`, `$t:ty`)
/// reach a derive wrapped in them.
pub fn unwrap_invisible(toks: &[Tok]) -> &[Tok] {
    match toks {
        [Tok::Group {
            delim: Delim::None,
            toks,
            ..
        }] => unwrap_invisible(toks),
        _ => toks,
    }
}

fn parse_attr(toks: &[Tok], group_sp: Sp) -> Result<Attr, Error> {
    let toks = unwrap_invisible(toks);
    let mut inner = Cursor::new(toks, group_sp);
    let path_sp = inner.here();
    let mut path = String::new();
    loop {
        if inner.peek().is_some_and(|t| t.is_punct(':'))
            && inner.peek_at(1).is_some_and(|t| t.is_punct(':'))
        {
            inner.pos += 2;
            path.push_str("::");
        }
        let (segment, _) = inner.expect_ident("an attribute name")?;
        path.push_str(&segment);
        if !inner.peek().is_some_and(|t| t.is_punct(':')) {
            break;
        }
    }
    let rest = inner.toks[inner.pos..].to_vec();
    Ok(Attr {
        path,
        path_sp,
        rest,
    })
}

/// `pub`, `pub(crate)`, `pub(in path)`: visibility does not matter to a derive.
fn skip_visibility(cursor: &mut Cursor<'_>) {
    // A `$vis:vis` fragment: an invisible group holding the visibility, empty if private.
    if let Some(Tok::Group {
        delim: Delim::None,
        toks,
        ..
    }) = cursor.peek()
    {
        if toks.first().is_none_or(|t| t.is_ident("pub")) {
            cursor.bump();
            return;
        }
    }
    if cursor.eat_ident("pub") {
        if let Some(Tok::Group {
            delim: Delim::Paren,
            ..
        }) = cursor.peek()
        {
            cursor.bump();
        }
    }
}

fn parse_generics(cursor: &mut Cursor<'_>) -> Result<Generics, Error> {
    let mut generics = Generics::default();
    if !cursor.eat_punct('<') {
        return Ok(generics);
    }
    let open_sp = cursor.toks[cursor.pos - 1].sp();
    let mut depth: u32 = 1;
    let mut inner = Vec::new();
    loop {
        let Some(tok) = cursor.bump() else {
            return Err(Error::new(open_sp, "unclosed `<` in generic parameters"));
        };
        depth = angle_depth(depth, inner.last(), tok);
        if depth == 0 {
            break;
        }
        inner.push(tok.clone());
    }
    let mut params_cursor = Cursor::new(&inner, open_sp);
    while !params_cursor.is_end() {
        let param = params_cursor.take_until_comma();
        params_cursor.eat_punct(',');
        if !param.is_empty() {
            generics.params.push(parse_generic_param(&param, open_sp)?);
        }
    }
    Ok(generics)
}

fn parse_generic_param(toks: &[Tok], open_sp: Sp) -> Result<GenericParam, Error> {
    let mut cursor = Cursor::new(toks, open_sp);
    parse_attrs(&mut cursor)?; // `#[cfg(..)]` on a parameter: not ours to judge
    if cursor.eat_punct('\'') {
        let (name, _) = cursor.expect_ident("a lifetime name")?;
        let bounds = if cursor.eat_punct(':') {
            cursor.toks[cursor.pos..].to_vec()
        } else {
            Vec::new()
        };
        return Ok(GenericParam::Lifetime {
            name: format!("'{name}"),
            bounds,
        });
    }
    if cursor.eat_ident("const") {
        let (name, name_sp) = cursor.expect_ident("a const parameter name")?;
        if !cursor.eat_punct(':') {
            return Err(Error::new(
                name_sp,
                "expected `:` and a type after a const parameter",
            ));
        }
        let ty = take_until_default(&mut cursor);
        return Ok(GenericParam::Const { name, ty });
    }
    let (name, _) = cursor.expect_ident("a generic parameter")?;
    let bounds = if cursor.eat_punct(':') {
        take_until_default(&mut cursor)
    } else {
        Vec::new()
    };
    if !cursor.is_end() && !cursor.eat_punct('=') {
        return Err(Error::new(
            cursor.here(),
            "unexpected token in generic parameter",
        ));
    }
    Ok(GenericParam::Type { name, bounds })
}

/// Takes tokens up to a top-level `=` (which starts a default that impls must not repeat).
fn take_until_default(cursor: &mut Cursor<'_>) -> Vec<Tok> {
    let mut depth: u32 = 0;
    let mut taken: Vec<Tok> = Vec::new();
    while let Some(tok) = cursor.peek() {
        if depth == 0 && tok.is_punct('=') {
            break;
        }
        depth = angle_depth(depth, taken.last(), tok);
        taken.push(tok.clone());
        cursor.pos += 1;
    }
    taken
}

/// Parses `where A: B, C: D` up to a brace group, a `;` or the end.
fn parse_where(cursor: &mut Cursor<'_>) -> Result<Vec<Vec<Tok>>, Error> {
    let mut predicates = Vec::new();
    if !cursor.eat_ident("where") {
        return Ok(predicates);
    }
    loop {
        match cursor.peek() {
            None => break,
            Some(Tok::Group {
                delim: Delim::Brace,
                ..
            }) => break,
            Some(tok) if tok.is_punct(';') => break,
            Some(_) => {}
        }
        let predicate = take_predicate(cursor);
        cursor.eat_punct(',');
        if !predicate.is_empty() {
            predicates.push(predicate);
        }
    }
    Ok(predicates)
}

fn take_predicate(cursor: &mut Cursor<'_>) -> Vec<Tok> {
    let mut depth: u32 = 0;
    let mut taken: Vec<Tok> = Vec::new();
    while let Some(tok) = cursor.peek() {
        let body_starts = matches!(
            tok,
            Tok::Group {
                delim: Delim::Brace,
                ..
            }
        ) && depth == 0;
        if body_starts || (depth == 0 && (tok.is_punct(',') || tok.is_punct(';'))) {
            break;
        }
        depth = angle_depth(depth, taken.last(), tok);
        taken.push(tok.clone());
        cursor.pos += 1;
    }
    taken
}

fn parse_struct_body(cursor: &mut Cursor<'_>, generics: &mut Generics) -> Result<Fields, Error> {
    if let Some(Tok::Group {
        delim: Delim::Paren,
        toks,
        sp,
    }) = cursor.peek()
    {
        cursor.bump();
        let fields = parse_tuple_fields(toks, *sp)?;
        generics.predicates = parse_where(cursor)?;
        expect_semicolon(cursor)?;
        return Ok(Fields::Tuple(fields));
    }
    generics.predicates = parse_where(cursor)?;
    match cursor.bump() {
        Some(Tok::Group {
            delim: Delim::Brace,
            toks,
            sp,
        }) => Ok(Fields::Named(parse_named_fields(toks, *sp)?)),
        Some(tok) if tok.is_punct(';') => Ok(Fields::Unit),
        Some(tok) => Err(Error::new(
            tok.sp(),
            "expected `{`, `(` or `;` after the struct name",
        )),
        None => Err(Error::new(
            cursor.end_sp,
            "expected `{`, `(` or `;` after the struct name",
        )),
    }
}

fn expect_semicolon(cursor: &mut Cursor<'_>) -> Result<(), Error> {
    if cursor.eat_punct(';') {
        return Ok(());
    }
    Err(Error::new(
        cursor.here(),
        "expected `;` after a tuple struct",
    ))
}

fn parse_named_fields(toks: &[Tok], group_sp: Sp) -> Result<Vec<Field>, Error> {
    let mut cursor = Cursor::new(toks, group_sp);
    let mut fields = Vec::new();
    while !cursor.is_end() {
        let attrs = parse_attrs(&mut cursor)?;
        skip_visibility(&mut cursor);
        let (ident, sp) = cursor.expect_ident("a field name")?;
        if !cursor.eat_punct(':') {
            return Err(Error::new(
                cursor.here(),
                "expected `:` after the field name",
            ));
        }
        let ty = cursor.take_until_comma();
        if ty.is_empty() {
            return Err(Error::new(cursor.here(), "expected the field's type"));
        }
        cursor.eat_punct(',');
        fields.push(Field {
            attrs,
            ident: Some(ident),
            index: fields.len(),
            sp,
            ty,
        });
    }
    Ok(fields)
}

fn parse_tuple_fields(toks: &[Tok], group_sp: Sp) -> Result<Vec<Field>, Error> {
    let mut cursor = Cursor::new(toks, group_sp);
    let mut fields = Vec::new();
    while !cursor.is_end() {
        let attrs = parse_attrs(&mut cursor)?;
        skip_visibility(&mut cursor);
        let sp = cursor.here();
        let ty = cursor.take_until_comma();
        if ty.is_empty() {
            return Err(Error::new(sp, "expected a field type"));
        }
        cursor.eat_punct(',');
        fields.push(Field {
            attrs,
            ident: None,
            index: fields.len(),
            sp,
            ty,
        });
    }
    Ok(fields)
}

fn parse_enum_body(cursor: &mut Cursor<'_>) -> Result<Vec<Variant>, Error> {
    let (toks, group_sp) = match cursor.bump() {
        Some(Tok::Group {
            delim: Delim::Brace,
            toks,
            sp,
        }) => (toks, *sp),
        other => {
            let sp = other.map_or(cursor.end_sp, Tok::sp);
            return Err(Error::new(sp, "expected `{` after the enum name"));
        }
    };
    let mut inner = Cursor::new(toks, group_sp);
    let mut variants = Vec::new();
    while !inner.is_end() {
        let attrs = parse_attrs(&mut inner)?;
        let (ident, sp) = inner.expect_ident("a variant name")?;
        let fields = match inner.peek() {
            Some(Tok::Group {
                delim: Delim::Paren,
                toks,
                sp,
            }) => {
                inner.bump();
                Fields::Tuple(parse_tuple_fields(toks, *sp)?)
            }
            Some(Tok::Group {
                delim: Delim::Brace,
                toks,
                sp,
            }) => {
                inner.bump();
                Fields::Named(parse_named_fields(toks, *sp)?)
            }
            _ => Fields::Unit,
        };
        // An explicit discriminant (`= 4`) does not change the codecs: skip the expression.
        if inner.eat_punct('=') {
            while inner.peek().is_some_and(|t| !t.is_punct(',')) {
                inner.bump();
            }
        }
        if !inner.is_end() && !inner.eat_punct(',') {
            return Err(Error::new(inner.here(), "expected `,` between variants"));
        }
        variants.push(Variant {
            attrs,
            ident,
            sp,
            fields,
        });
    }
    Ok(variants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::lex::lex;
    use crate::tokens::render;

    fn parse(source: &str) -> Item {
        parse_item(&lex(source), Sp(u32::MAX)).expect("test source parses")
    }

    fn parse_err(source: &str) -> Error {
        parse_item(&lex(source), Sp(u32::MAX)).expect_err("test source must not parse")
    }

    #[test]
    fn named_struct_with_attrs_visibility_and_raw_ident() {
        let item = parse(
            "#[doc = \"A post.\"] #[json(rename_all = \"camelCase\")] pub(crate) struct Post { \
             #[json(rename = \"t\")] pub title: String, pub(in crate::a) r#type: Vec<(u8, u16)>, }",
        );
        assert_eq!(item.name, "Post");
        assert_eq!(item.attrs.len(), 2);
        assert_eq!(item.attrs[0].path, "doc");
        assert_eq!(item.attrs[1].path, "json");
        let Body::Struct(Fields::Named(fields)) = &item.body else {
            panic!("expected named fields")
        };
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].ident.as_deref(), Some("title"));
        assert_eq!(fields[0].attrs[0].path, "json");
        assert_eq!(fields[1].name(), "type");
        assert_eq!(fields[1].member(), "r#type");
        assert_eq!(render(&fields[1].ty), "Vec < (u8 , u16 ) >");
    }

    #[test]
    fn tuple_unit_and_empty_structs() {
        let item = parse("struct Pair<T>(pub T, #[json(skip)] u8) where T: Clone;");
        let Body::Struct(Fields::Tuple(fields)) = &item.body else {
            panic!("expected tuple")
        };
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].index, 1);
        assert_eq!(fields[1].attrs.len(), 1);
        assert_eq!(item.generics.predicates.len(), 1);
        assert!(matches!(
            parse("struct U;").body,
            Body::Struct(Fields::Unit)
        ));
        assert!(
            matches!(parse("struct E {}").body, Body::Struct(Fields::Named(ref f)) if f.is_empty())
        );
    }

    #[test]
    fn generics_bounds_defaults_and_where_clauses() {
        let item = parse(
            "struct G<'a, 'b: 'a, T: Into<Vec<u8>> + Clone = u8, F: Fn(u8) -> u8, const N: usize = 3> \
             where T: Default, Vec<T>: Clone, { a: &'a T, f: F }",
        );
        let names: Vec<&str> = item
            .generics
            .params
            .iter()
            .map(GenericParam::name)
            .collect();
        assert_eq!(names, ["'a", "'b", "T", "F", "N"]);
        let GenericParam::Type { bounds, .. } = &item.generics.params[2] else {
            panic!()
        };
        assert_eq!(render(bounds), "Into < Vec < u8 >> + Clone");
        let GenericParam::Type { bounds, .. } = &item.generics.params[3] else {
            panic!()
        };
        assert_eq!(render(bounds), "Fn (u8 ) -> u8");
        let GenericParam::Const { ty, .. } = &item.generics.params[4] else {
            panic!()
        };
        assert_eq!(render(ty), "usize");
        assert_eq!(item.generics.predicates.len(), 2);
        assert_eq!(render(&item.generics.predicates[1]), "Vec < T >: Clone");
    }

    #[test]
    fn enums_with_every_variant_shape_and_discriminants() {
        let item = parse(
            "enum E<T> where T: Copy { /// doc\n A, B(T, u8), C { x: u8, #[json(skip)] y: T }, D = 4, }"
                .replace("/// doc\n", "#[doc = \"doc\"]")
                .as_str(),
        );
        let Body::Enum(variants) = &item.body else {
            panic!("expected enum")
        };
        let names: Vec<&str> = variants.iter().map(Variant::name).collect();
        assert_eq!(names, ["A", "B", "C", "D"]);
        assert!(matches!(variants[0].fields, Fields::Unit));
        assert_eq!(variants[1].fields.list().len(), 2);
        assert!(matches!(variants[2].fields, Fields::Named(_)));
        assert_eq!(variants[0].attrs[0].path, "doc");
    }

    #[test]
    fn type_with_comma_inside_angle_brackets_is_one_field() {
        let item = parse("struct M { m: HashMap<String, Vec<u8>>, f: fn(u8, u8) -> u8, n: u8 }");
        assert_eq!(item.body_fields().len(), 3);
    }

    /// Wraps the tokens of `source` in one invisible group, as `macro_rules!` forwards a fragment.
    fn invisible(source: &str) -> Tok {
        Tok::Group {
            delim: Delim::None,
            toks: lex(source),
            sp: Sp(1000),
        }
    }

    #[test]
    fn macro_rules_fragments_in_invisible_groups() {
        // $(#[$m:meta])* $vis:vis struct S { $fvis:vis a: $t:ty }
        let mut toks = lex("#[x]");
        let Tok::Group { toks: attr, .. } = &mut toks[1] else {
            panic!("attr group")
        };
        *attr = vec![invisible("json(rename_all = \"camelCase\")")];
        toks.push(invisible("pub(crate)"));
        toks.extend(lex("struct S"));
        let mut body = vec![
            invisible(""),
            Tok::Ident {
                text: "a".into(),
                sp: Sp(1001),
            },
        ];
        body.extend(lex(":"));
        body.push(invisible("&'a str"));
        toks.push(Tok::Group {
            delim: Delim::Brace,
            toks: body,
            sp: Sp(1002),
        });
        let item = parse_item(&toks, Sp(u32::MAX)).expect("parses");
        assert_eq!(item.attrs[0].path, "json");
        let fields = item.body_fields();
        assert_eq!(fields[0].name(), "a");
        assert!(crate::emit::is_reference(&fields[0]));
        assert_eq!(render(&fields[0].ty), "&'a str");
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let toks = lex("union U { a: u8 }");
        let err = parse_item(&toks, Sp(99)).unwrap_err();
        assert_eq!(err.sp, toks[0].sp());
        assert!(err.message.contains("unions"));
        let err = parse_err("struct S { a u8 }");
        assert!(err.message.contains("expected `:`"), "{}", err.message);
        let err = parse_err("struct S(u8)");
        assert_eq!(err.sp, Sp(u32::MAX));
        let err = parse_err("enum E { A B }");
        assert!(err.message.contains("between variants"));
        let err = parse_err("struct S;;");
        assert!(err.message.contains("after the item"));
    }

    impl Item {
        fn body_fields(&self) -> &[Field] {
            match &self.body {
                Body::Struct(fields) => fields.list(),
                Body::Enum(_) => &[],
            }
        }
    }
}
