//! The bench server compared side by side with hyper and axum by `../shared/bench/http-compare.sh`.
//!
//! ```text
//! GET  /plaintext    -> `Hello, World!` (text/plain)
//! GET  /json         -> `{"message":"Hello, World!"}`, serialized per request by lithair::json
//! GET  /items/{id}   -> an `Item` from the model state, 404 otherwise
//! POST /items        -> creates an item through the engine (durable: acknowledged after
//!                       fdatasync, group-committed), 201 with the item and `Location`
//! ```
//!
//! Responses carry the headers the reference servers send (`Content-Type`, `Content-Length`,
//! `Date`) plus `Server`, and not the security headers every other app sends by default
//! (`App::security_headers`): the comparison measures the two stacks, not the size of their
//! answers. Pipelined, the load generator is the bottleneck, and it pays per byte it parses.
//!
//! Usage: `bench_server [serve] [--port 8080] [--items 10000] [--data DIR]` plus every flag of
//! `App::run` (`--help`). `--items N` preloads items 1..=N, only into an empty data directory (in a cluster, through
//! whichever node is the leader once one is elected), or into one holding nothing but what a
//! preload cut short left (a `kill -9` during it): the whole batches of items 1..=k it wrote,
//! unchanged; the preload then completes them.
use lithair::app::cli::CliError;
use lithair::app::{Id, Rejection, WriteError};
use lithair::http::problem::Problem;
use lithair::http::router::Router;
use lithair::http::{inline, Request, Response};
use lithair::json::Writer;

mod item;
use item::{preloaded, Item};

/// Items created per command while preloading (one log batch each).
const PRELOAD_BATCH_ITEMS: u64 = 10_000;

/// How long a cluster node waits before trying the preload again while it is not the leader.
const PRELOAD_RETRY_MS: u64 = 100;

/// Creates items 1..=count that are missing, a batch per command: run again (by another
/// node after a leader change, say) it only completes what is there.
fn preload(handle: &lithair::app::Handle, count: u64) -> Result<(), WriteError> {
    let mut first = 1;
    while first <= count {
        let last = (first + PRELOAD_BATCH_ITEMS - 1).min(count);
        handle.execute(Default::default(), move |tx| {
            for id in first..=last {
                if tx.get::<Item>(&Id::Int(id)).is_none() {
                    tx.create(preloaded(id))?;
                }
            }
            Ok::<(), Rejection>(())
        })?;
        first = last + 1;
    }
    debug_assert!(handle.get::<Item>(&Id::Int(count)).is_some());
    Ok(())
}

/// Whether `item` is preloaded item `item.id`, as [`preloaded`] makes it.
fn is_preloaded(item: &Item) -> bool {
    item.name.strip_prefix("item-") == Some(item.id.to_string().as_str())
        && item.price == item.id as f64 * 1.25
        && item.tags == ["a", "b"]
        && item.in_stock == (item.id % 2 == 0)
}

/// Whether the data directory needs the preload of `count` items: it is empty, or it holds
/// only what a preload of more items than it has cut short left behind (a crash, a `kill -9`
/// during it). Batches commit whole and in order, so that is items 1..=k for a multiple k of
/// [`PRELOAD_BATCH_ITEMS`] below `count`, each unchanged since it was created. Anything else
/// (a record written or changed by a client, a preload that finished) is the data's own.
fn needs_preload(items: &lithair::app::Collection<Item>, count: u64) -> bool {
    let held = items.len() as u64;
    if held == 0 {
        return count > 0;
    }
    held < count
        && held % PRELOAD_BATCH_ITEMS == 0
        && items.iter().zip(1..).all(|(record, id)| {
            record.version == 1 && record.value.id == id && is_preloaded(&record.value)
        })
}

/// In a cluster only the leader writes, and it is elected after start: every fresh node
/// tries in the background until the items are there, written by itself as leader or
/// replicated from the node that was.
fn preload_in_cluster(handle: &lithair::app::Handle, count: u64) {
    while handle.get::<Item>(&Id::Int(count)).is_none() {
        match preload(handle, count) {
            Ok(()) => return,
            Err(WriteError::Unavailable(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(PRELOAD_RETRY_MS))
            }
            Err(error) => {
                eprintln!("bench: preloading items: {error}");
                return;
            }
        }
    }
}

fn hello_json(_: &mut Request) -> Response {
    // Serialized per request, as the benchmark requires.
    let mut w = Writer::new();
    w.begin_object();
    w.field("message");
    w.str("Hello, World!");
    w.end_object();
    match w.finish() {
        Ok(text) => Response::bytes(200, "application/json", text.into_bytes()),
        Err(e) => Problem::internal()
            .with_detail(e.to_string())
            .into_response(),
    }
}

/// Items preloaded when `--items` is not given.
const PRELOAD_ITEMS_DEFAULT: u64 = 10_000;

/// The value of `--items` (or `LITHAIR_ITEMS`, or `items =` in `lithair.toml`).
fn items_flag(options: &lithair::app::cli::ServeOptions) -> Result<u64, CliError> {
    match options.extra("items") {
        Some(text) => text
            .parse()
            .map_err(|_| CliError::new(format!("`--items` expects a number, got `{text}`"))),
        None => Ok(PRELOAD_ITEMS_DEFAULT),
    }
}

fn routes(router: Router, _: &lithair::app::Handle) -> Router {
    router
        .get(
            "/plaintext",
            inline(|_: &mut Request| Response::static_bytes(200, "text/plain", b"Hello, World!")),
        )
        .get("/json", inline(hello_json))
}

fn main() -> std::process::ExitCode {
    lithair::App::new("bench")
        .model::<Item>()
        .routes(routes)
        .security_headers(None)
        .flag(
            "items",
            Some("N"),
            "preload items 1..=N into an empty data directory (default 10000)",
        )
        // A bad `--items` is a command line refused (exit 2), before the data directory opens.
        .check_options(|options| items_flag(options).map(|_| ()))
        .on_start(|handle, options| {
            let count = items_flag(options).map_err(|e| e.to_string())?;
            if !handle.read(|state| needs_preload(state.collection::<Item>(), count)) {
                return Ok(());
            }
            if options.node_id.is_none() {
                return preload(handle, count).map_err(|e| format!("preloading items: {e}"));
            }
            let handle = handle.clone();
            std::thread::Builder::new()
                .name("bench-preload".into())
                .spawn(move || preload_in_cluster(&handle, count))
                .map_err(|e| format!("cannot start the preload: {e}"))?;
            Ok(())
        })
        .run()
}
