//! HTTP/1.1: a pure request parser, the per-connection state machine, the reactor and worker
//! pool, the router, middleware, static files and Server-Sent Events.
//!
//! Owns: every limit on what comes from the network.
//! Must not: know about the engine or models (the `app` layer wires handlers to them).

mod body_budget;
pub mod chunked;
mod conn;
pub mod date;
pub mod deferred;
mod direct;
pub mod handler;
pub mod limits;
pub mod parse;
pub mod poll_window;
pub mod pool;
mod reactor;
pub mod streams;
pub(crate) use reactor::deliver_together;
pub mod request;
pub mod response;
pub mod server;
pub mod stats;
pub mod writer;

pub use deferred::Responder;
pub use handler::{inline, Handler, HeadPlan, Inline};
pub use limits::ServerConfig;
pub use request::{Extensions, Headers, Method, RawHeaderValues, Request, Trailers, Version};
pub use response::{Body, Response};
pub use server::{Server, ServerHandle};

// Application surface (http-surface).
pub mod conditional;
pub mod cookie;
pub mod cors;
pub mod extract;
pub mod form;
pub mod httpdate;
pub mod json_body;
pub mod middleware;
pub mod mime;
pub mod multipart;
pub mod percent;
pub mod problem;
pub mod query;
pub mod respond;
pub mod route_stats;
pub mod router;
pub mod sse;
pub mod static_files;
pub mod upgrade;

pub use problem::{HttpError, HttpResult, Problem};
pub use respond::{status, IntoResponse};
pub use router::Router;
