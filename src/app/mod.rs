//! The application layer: the `App` builder, routes generated for models, the command-line
//! interface (`serve`, `replay`, `log`, `cluster`) and configuration.
//!
//! Owns: mapping errors of every lower layer to HTTP problems and process exit codes.
//! Must not: contain protocol or storage logic; it wires the lower layers together.

pub mod builder;
pub mod cli;
pub mod cluster;
mod cluster_reads;
pub mod command;
pub mod cow_map;
pub mod docs;
mod forward;
pub mod handle;
pub mod live;
pub mod live_ws;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod schema;
pub mod state;
pub mod tools;

pub use builder::{
    App, CommandRoute, Params, Running, SNAPSHOT_EVERY_EVENTS_DEFAULT,
    SNAPSHOT_TAIL_PERCENT_DEFAULT,
};
pub use command::Tx;
pub use handle::{Executed, Handle, WriteError};
pub use model::{Collection, FieldError, Model, ModelEvent, Record, Rejection};
pub use schema::{FieldKind, FieldSpec, Id, Rule};
pub use state::{AppEvent, AppState};
