//! Derive macros for Lithair, written against `proc_macro` alone (no syn, no quote).
//!
//! `#[derive(Json)]` implements `lithair::json::{ToJson, FromJson}`; `#[derive(Binary)]`
//! implements `lithair::binary::{Encode, Decode}`. Use them through `lithair::prelude::*`;
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
use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

mod ast;
mod attrs;
mod binary;
mod case;
mod emit;
mod json;
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

/// Runs parse -> expand on `input`, turning errors into spanned `compile_error!`s.
fn derive(
    input: TokenStream,
    expand: fn(&ast::Item) -> Result<String, Vec<ast::Error>>,
) -> TokenStream {
    let mut spans = Vec::new();
    let toks = convert(input, &mut spans);
    let whole = Sp(spans.len() as u32);
    spans.push(Span::call_site());
    let result = ast::parse_item(&toks, whole)
        .map_err(|error| vec![error])
        .and_then(|item| expand(&item));
    match result {
        Ok(code) => match code.parse::<TokenStream>() {
            Ok(stream) => stream,
            Err(_) => compile_errors(
                &[ast::Error::new(
                    whole,
                    "lithair-macros generated code that does not parse; please report this bug",
                )],
                &spans,
            ),
        },
        Err(errors) => compile_errors(&errors, &spans),
    }
}

/// Converts a token stream into the owned model, recording each token's span in `spans`.
fn convert(stream: TokenStream, spans: &mut Vec<Span>) -> Vec<Tok> {
    let mut out = Vec::new();
    for tree in stream {
        let sp = Sp(spans.len() as u32);
        spans.push(tree.span());
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
                    toks: convert(group.stream(), spans),
                    sp,
                }
            }
        };
        out.push(tok);
    }
    out
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
