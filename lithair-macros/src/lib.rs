//! Derive macros for Lithair, written against `proc_macro` alone (no syn, no quote).
//!
//! `#[derive(Json)]` implements `lithair::json::{ToJson, FromJson}`; `#[derive(Binary)]`
//! implements `lithair::binary::{Encode, Decode}`; the attribute `#[command(..)]` turns a decide
//! function into a route (`command`). Use them through `lithair::prelude::*`;
//! the attribute reference and compile-fail examples live in the `lithair` crate's docs
//! (`lithair::prelude`), because examples need the traits.
//!
//! Each derive runs the same pipeline:
//! 1. `lib.rs` converts the `TokenStream` into the owned token model of `tokens` (span handles
//!    index a table of real spans kept here);
//! 2. `ast` parses the item (attributes kept raw);
//! 3. `attrs` gives `#[json(..)]`, `#[binary(..)]`, `#[db(..)]` their meaning and rejects
//!    unknown, misspelled or badly valued keys;
//! 4. `json` / `binary` write the impls as text with absolute `::lithair::` paths, which is
//!    parsed back into tokens here.
//!
//! Errors become `compile_error!` invocations whose tokens carry the offending token's span, so
//! the compiler underlines the attribute key or value that is wrong.
//!
//! Architecture invariant: only this file touches `proc_macro`; every other module works on
//! `tokens::Tok` and is unit tested without a compiler.
#![forbid(unsafe_code)]
use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

mod ast;
mod attrs;
mod binary;
mod case;
mod command;
mod emit;
mod json;
mod model;
mod rules;
mod tokens;

use tokens::{Delim, Sp, Tok};

/// Derives `lithair::json::ToJson` and `lithair::json::FromJson`.
///
/// Attributes: `#[json(rename_all = "..", tag = "..", deny_unknown_fields)]` on the type,
/// `#[json(rename = "..", rename_all = "..")]` on variants, `#[json(rename = "..", default,
/// default = "path", skip, skip_if_none)]` on fields, and `#[db(default)]` on fields. See
/// `lithair::prelude` for the full reference.
#[proc_macro_derive(Json, attributes(json, db))]
pub fn derive_json(input: TokenStream) -> TokenStream {
    derive(input, json::expand)
}

/// Derives `lithair::binary::Encode` and `lithair::binary::Decode`.
///
/// Attributes: `#[binary(default, default = "path", skip)]` and `#[db(default)]` on fields.
/// Structs are length-framed so they can gain fields; enum variants are numbered in
/// declaration order. See `lithair::prelude` for the full reference.
#[proc_macro_derive(Binary, attributes(binary, db))]
pub fn derive_binary(input: TokenStream) -> TokenStream {
    derive(input, binary::expand)
}

/// Derives `lithair::app::Model` for a struct with named fields, with its codecs, the
/// `<Name>Patch` struct and the `<Name>Event` alias.
///
/// Field attributes: `#[db(primary_key, unique, indexed, default, default = LITERAL)]`,
/// `#[http(validate = "len(1..=200), email", skip, read_only)]`, `#[lifecycle(immutable)]`,
/// `#[json(rename = "..")]`; struct attributes: `#[model(path = "/api/..", name = "..")]`,
/// `#[json(rename_all = "..")]`. See `lithair::prelude` for the reference.
#[proc_macro_derive(Model, attributes(model, db, http, lifecycle, json))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    derive(input, model::expand)
}

/// Exposes a domain command as a route: `#[command(POST "/api/orders", status = 201)]` on
/// `fn place(tx: &mut Tx<'_>, input: &PlaceOrder, params: &Params) -> Result<Order, Rejection>`
/// keeps the function unchanged and adds `fn place_route() -> lithair::app::CommandRoute`, for
/// `App::route_command` / `App::commands`.
///
/// The method is POST when omitted, or PUT, PATCH or DELETE; `status` (default 200) is the
/// success status; the OpenAPI summary is the doc comment's first paragraph unless
/// `summary = ".."` says otherwise. See `lithair::prelude` for the reference.
#[proc_macro_attribute]
pub fn command(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut trees = Vec::new();
    let attr_toks = convert(attr, &mut trees);
    let item_toks = convert(item.clone(), &mut trees);
    let whole = next_sp(&trees);
    let spans = spans_of(&trees);
    let mut out = item.clone();
    let code = match command::expand(&attr_toks, &item_toks, whole) {
        Ok(code) => code,
        Err(errors) => {
            out.extend(compile_errors(&errors, &spans));
            return out;
        }
    };
    let name = fn_name(item).expect("command::expand accepted an item with a function name");
    match code.parse::<TokenStream>() {
        Ok(companion) => out.extend(replace_ident(companion, command::DECIDE_PLACEHOLDER, &name)),
        Err(_) => out.extend(unparsable_output(whole, &spans)),
    }
    out
}

/// The identifier after the top-level `fn` of an item.
fn fn_name(item: TokenStream) -> Option<Ident> {
    let mut after_fn = false;
    for tree in item {
        match tree {
            TokenTree::Ident(ident) if after_fn => return Some(ident),
            TokenTree::Ident(ident) => after_fn = ident.to_string() == "fn",
            _ => after_fn = false,
        }
    }
    None
}

/// Replaces every identifier `placeholder` in `stream` with `with` (keeping `with`'s span, so
/// type errors point into the user's code).
fn replace_ident(stream: TokenStream, placeholder: &str, with: &Ident) -> TokenStream {
    stream
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Ident(ident) if ident.to_string() == placeholder => {
                TokenTree::Ident(with.clone())
            }
            TokenTree::Group(group) => {
                let mut inner = Group::new(
                    group.delimiter(),
                    replace_ident(group.stream(), placeholder, with),
                );
                inner.set_span(group.span());
                TokenTree::Group(inner)
            }
            other => other,
        })
        .collect()
}

/// Runs parse -> expand on `input`, turning errors into spanned `compile_error!`s.
fn derive(
    input: TokenStream,
    expand: fn(&ast::Item) -> Result<String, Vec<ast::Error>>,
) -> TokenStream {
    let mut trees = Vec::new();
    let toks = convert(input, &mut trees);
    // Errors about the input as a whole (it ended early) point at the derive itself.
    let whole = next_sp(&trees);
    let spans = spans_of(&trees);
    let item = match ast::parse_item(&toks, whole) {
        Ok(item) => item,
        Err(error) => return compile_errors(&[error], &spans),
    };
    let code = match expand(&item) {
        Ok(code) => code,
        Err(errors) => return compile_errors(&errors, &spans),
    };
    match code.parse::<TokenStream>() {
        Ok(stream) => put_types_back(stream, &item, &trees),
        Err(_) => unparsable_output(whole, &spans),
    }
}

/// The span of every tree in `trees` (indexed by `Sp`), then the call site for errors about
/// the input as a whole.
fn spans_of(trees: &[TokenTree]) -> Vec<Span> {
    trees
        .iter()
        .map(TokenTree::span)
        .chain([Span::call_site()])
        .collect()
}

/// The error for generated code that does not parse: a bug of this crate, not of the input.
fn unparsable_output(whole: Sp, spans: &[Span]) -> TokenStream {
    let message = "lithair-macros generated code that does not parse; please report this bug";
    compile_errors(&[ast::Error::new(whole, message)], spans)
}

/// Converts a token stream into the owned model, keeping each original tree in `trees` (the
/// tree's index is its `Sp`), so spans and the user's own tokens can be recovered.
fn convert(stream: TokenStream, trees: &mut Vec<TokenTree>) -> Vec<Tok> {
    let mut out = Vec::new();
    for tree in stream {
        let sp = next_sp(trees);
        trees.push(tree.clone());
        let tok = match tree {
            TokenTree::Ident(ident) => Tok::Ident {
                text: ident.to_string(),
                sp,
            },
            TokenTree::Punct(punct) => Tok::Punct {
                ch: punct.as_char(),
                joint: punct.spacing() == Spacing::Joint,
                sp,
            },
            TokenTree::Literal(literal) => Tok::Lit {
                text: literal.to_string(),
                sp,
            },
            TokenTree::Group(group) => {
                let delim = match group.delimiter() {
                    Delimiter::Parenthesis => Delim::Paren,
                    Delimiter::Brace => Delim::Brace,
                    Delimiter::Bracket => Delim::Bracket,
                    Delimiter::None => Delim::None,
                };
                Tok::Group {
                    delim,
                    toks: convert(group.stream(), trees),
                    sp,
                }
            }
        };
        out.push(tok);
    }
    out
}

/// Swaps every type placeholder in generated code for the field's original type tokens (in an
/// invisible group, as a `$ty` fragment), so type errors point into the user's declaration.
fn put_types_back(stream: TokenStream, item: &ast::Item, trees: &[TokenTree]) -> TokenStream {
    let mut out = TokenStream::new();
    for tree in stream {
        let replaced = match &tree {
            TokenTree::Ident(ident) => emit::placeholder_sp(&ident.to_string()).map(|sp| {
                let field = emit::all_fields(item).into_iter().find(|f| f.sp == sp);
                let field = field.expect("every type placeholder names a field of the item");
                let original: TokenStream = field
                    .ty
                    .iter()
                    .map(|tok| trees[tok.sp().0 as usize].clone())
                    .collect();
                TokenTree::Group(Group::new(Delimiter::None, original))
            }),
            TokenTree::Group(group) => {
                let mut inner = Group::new(
                    group.delimiter(),
                    put_types_back(group.stream(), item, trees),
                );
                inner.set_span(group.span());
                Some(TokenTree::Group(inner))
            }
            _ => None,
        };
        out.extend([replaced.unwrap_or(tree)]);
    }
    out
}

/// The handle the next recorded tree will get.
fn next_sp(trees: &[TokenTree]) -> Sp {
    Sp(u32::try_from(trees.len()).expect("a derive input holds fewer than 2^32 tokens"))
}

/// `::core::compile_error!("message");` for each error, every token spanned at the error.
fn compile_errors(errors: &[ast::Error], spans: &[Span]) -> TokenStream {
    let mut out = TokenStream::new();
    for error in errors {
        let span = spans
            .get(error.sp.0 as usize)
            .copied()
            .unwrap_or_else(Span::call_site);
        let mut message = Literal::string(&error.message);
        message.set_span(span);
        let mut args = Group::new(Delimiter::Parenthesis, TokenTree::Literal(message).into());
        args.set_span(span);
        let tokens: Vec<TokenTree> = vec![
            punct(':', Spacing::Joint, span),
            punct(':', Spacing::Alone, span),
            TokenTree::Ident(Ident::new("core", span)),
            punct(':', Spacing::Joint, span),
            punct(':', Spacing::Alone, span),
            TokenTree::Ident(Ident::new("compile_error", span)),
            punct('!', Spacing::Alone, span),
            TokenTree::Group(args),
            punct(';', Spacing::Alone, span),
        ];
        out.extend(tokens);
    }
    out
}

fn punct(ch: char, spacing: Spacing, span: Span) -> TokenTree {
    let mut punct = Punct::new(ch, spacing);
    punct.set_span(span);
    TokenTree::Punct(punct)
}
