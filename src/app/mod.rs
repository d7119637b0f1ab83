//! The application layer: the `App` builder, routes generated for models, the command-line
//! interface (`serve`, `replay`, `log`, `cluster`) and configuration.
//!
//! Owns: mapping errors of every lower layer to HTTP problems and process exit codes.
//! Must not: contain protocol or storage logic; it wires the lower layers together.

pub mod cli;
pub mod command;
pub mod model;
pub mod schema;
pub mod state;
