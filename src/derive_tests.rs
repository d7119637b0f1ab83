//! Compile-time checks of the derives and of `#[command]`, as doctests (a proc-macro
//! crate's own doctests cannot use `lithair`, so they live here).
//!
//! Owns: nothing at run time; this module has no items. Must not: hold anything but
//! documentation. Each `compile_fail` example below differs from a compiling one (the first
//! example, or the reference in `lithair::prelude`) only in the attribute it names, so it fails
//! for that reason; the macros' unit tests check that the error points at the offending token.
//!
//! Everything valid together compiles:
//! ```
//! use lithair::prelude::*;
//!
//! fn seven() -> u8 { 7 }
//!
//! #[derive(Json, Binary, Debug, PartialEq)]
//! #[json(rename_all = "camelCase", deny_unknown_fields)]
//! struct Account {
//!     #[json(rename = "ID")]
//!     #[db(primary_key)]
//!     user_id: u64,
//!     #[json(default = "seven")]
//!     #[binary(default)]
//!     level: u8,
//!     #[json(skip)]
//!     #[binary(skip)]
//!     cache: Vec<u8>,
//!     #[json(skip_if_none)]
//!     nick: Option<String>,
//!     #[db(default)]
//!     active: bool,
//! }
//!
//! #[derive(Json, Binary, Debug, PartialEq)]
//! #[json(tag = "type")]
//! enum Shape {
//!     Dot,
//!     #[json(rename = "circle")]
//!     Circle { radius: f64 },
//! }
//!
//! #[derive(Json, Binary)]
//! struct Pair(u8, #[json(default)] u8);
//!
//! let text = lithair::json::to_string(&Shape::Circle { radius: 1.0 }).unwrap();
//! assert_eq!(text, r#"{"type":"circle","radius":1.0}"#);
//! ```
//!
//! A misspelled field key (the error says "did you mean `skip`?"):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Account { #[json(skp)] cache: Vec<u8> }
//! ```
//!
//! An unknown `rename_all` style (the keys are case sensitive):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! #[json(rename_all = "camelcase")]
//! struct Account { user_id: u64 }
//! ```
//!
//! A value that must be a string:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Account { #[json(rename = ID)] user_id: u64 }
//! ```
//!
//! A flag given a value:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Account { #[json(skip = "yes")] cache: Vec<u8> }
//! ```
//!
//! A default that is not a function path:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Account { #[json(default = "7")] level: u8 }
//! ```
//!
//! `tag` on a struct (internal tagging is for enums):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! #[json(tag = "type")]
//! struct Account { user_id: u64 }
//! ```
//!
//! A tuple variant in an internally tagged enum:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! #[json(tag = "type")]
//! enum Shape { Dot, Circle(f64) }
//! ```
//!
//! A field attribute on the container:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! #[json(skip)]
//! struct Account { user_id: u64 }
//! ```
//!
//! `skip_if_none` on a tuple field (it has no key to omit):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Pair(u8, #[json(skip_if_none)] Option<u8>);
//! ```
//!
//! Two fields written under the same key:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Account { id: u64, #[json(rename = "id")] user_id: u64 }
//! ```
//!
//! `#[json]` without a list:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Json)]
//! struct Account { #[json] user_id: u64 }
//! ```
//!
//! A misspelled binary key:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Binary)]
//! struct Account { #[binary(defualt)] level: u8 }
//! ```
//!
//! A JSON-only key under `binary`:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Binary)]
//! struct Account { #[binary(rename = "x")] level: u8 }
//! ```
//!
//! A misspelled `db` key (the vocabulary of `#[derive(Model)]` is checked by every derive):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Binary)]
//! struct Account { #[db(primary_kye)] user_id: u64 }
//! ```
//!
//! Unions have no codec:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Binary)]
//! union Bits { a: u32, b: f32 }
//! ```
//!
//! ## `#[derive(Model)]`
//!
//! Every model attribute together compiles:
//! ```
//! use lithair::prelude::*;
//!
//! #[derive(Model, Clone, Debug)]
//! #[model(path = "/api/articles", name = "Article")]
//! #[json(rename_all = "camelCase")]
//! struct Post {
//!     #[db(primary_key)]
//!     id: u64,
//!     #[http(validate = "len(1..=200)")]
//!     title: String,
//!     #[db(unique)]
//!     #[lifecycle(immutable)]
//!     slug: String,
//!     #[db(indexed, default)]
//!     published: bool,
//!     #[db(default = "draft")]
//!     state: String,
//!     #[http(skip)]
//!     secret: String,
//!     #[http(read_only)]
//!     views: u64,
//!     #[http(validate = "email")]
//!     #[json(rename = "email")]
//!     author_email: Option<String>,
//! }
//! let _patch = PostPatch::default();
//! assert_eq!(<Post as Model>::PATH, "/api/articles");
//! ```
//!
//! A misspelled `model` key on the struct:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! #[model(paht = "/api/posts")]
//! struct Post { #[db(primary_key)] id: u64 }
//! ```
//!
//! A misspelled `db` key on a model field:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[db(uniqe)] slug: String }
//! ```
//!
//! An unknown `http` key (`read_only` is spelled with an underscore):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[http(readonly)] views: u64 }
//! ```
//!
//! A misspelled `lifecycle` key:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[lifecycle(imutable)] slug: String }
//! ```
//!
//! A validate rule that does not parse:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[http(validate = "len(a..b)")] title: String }
//! ```
//!
//! A rule that does not fit the field's type:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[http(validate = "email")] views: u64 }
//! ```
//!
//! No primary key:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { id: u64, title: String }
//! ```
//!
//! A primary key that is neither `u64` nor `String`:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u32, title: String }
//! ```
//!
//! `unique` on a field that is not a scalar:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[db(unique)] tags: Vec<String> }
//! ```
//!
//! A default that is not a literal:
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[db(default = seven)] views: u64 }
//! ```
//!
//! A `json` key the model derive does not take (use `http(skip)`):
//! ```compile_fail
//! use lithair::prelude::*;
//! #[derive(Model, Clone)]
//! struct Post { #[db(primary_key)] id: u64, #[json(skip)] secret: String }
//! ```
//!
//! # `#[command]`
//!
//! A valid command compiles (the reference is in `lithair::prelude`):
//! ```
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! /// Archive a thing.
//! #[command(DELETE "/api/things/{id}", status = 202, summary = "Archive")]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! let _ = App::new("t").commands([archive_route()]);
//! ```
//!
//! An unknown option:
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "/api/things/{id}", statsu = 202)]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! A method a command cannot answer (commands write):
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(GET "/api/things/{id}")]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! A path that does not start with `/`:
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "api/things/{id}")]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! A path that is not a string literal:
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE api_things)]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! A status that cannot carry the output (204 has no body):
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "/api/things/{id}", status = 204)]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! A function without the `params` parameter:
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "/api/things/{id}")]
//! fn archive(_: &mut Tx<'_>, _: &()) -> Result<u64, Rejection> {
//!     Ok(1)
//! }
//! ```
//!
//! An async function:
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "/api/things/{id}")]
//! async fn archive(_: &mut Tx<'_>, _: &(), params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! A generic function:
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "/api/things/{id}")]
//! fn archive<T>(_: &mut Tx<'_>, _: &T, params: &Params) -> Result<u64, Rejection> {
//!     params.get::<u64>("id")
//! }
//! ```
//!
//! Parameter types that do not fit a command (the compiler's error points at the name):
//! ```compile_fail
//! use lithair::app::{Params, Rejection, Tx};
//! use lithair::prelude::*;
//! #[command(DELETE "/api/things/{id}")]
//! fn archive(_: &mut Tx<'_>, _: &(), params: &str) -> Result<u64, Rejection> {
//!     Ok(1)
//! }
//! ```
