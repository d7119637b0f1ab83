//! The bench server compared side by side with hyper and axum by `../shared/bench/http-compare.sh`.
//!
//!   GET  /plaintext    -> `Hello, World!` (text/plain)
//!   GET  /json         -> `{"message":"Hello, World!"}`, serialized per request by lithair::json
//!   GET  /items/{id}   -> one of the items 1..=N preloaded at start, 404 otherwise
//!   POST /items        -> creates an item with the next id: 201, the item, and `Location`
//!
//! Usage: bench_server [--port 8080] [--items 10000] [--data DIR]
//! Items live in a `RwLock<HashMap>` until the engine replaces it; `--data` is created but not
//! used yet. GET routes are cheap and non-blocking, so they run inline on the reactor; POST goes
//! to the worker pool (it will wait for a durable commit once the engine lands).
use lithair::http::{Handler, Method, Request, Response, Server};
use lithair::json::{self, ToJson};
use lithair::prelude::Json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

const USAGE: &str = "usage: bench_server [--port P] [--items N] [--data DIR]";

#[derive(Json, Clone, Debug)]
struct Item {
    id: u64,
    name: String,
    price: f64,
    tags: Vec<String>,
    in_stock: bool,
}

/// The body of `POST /items` (the id is assigned by the server).
#[derive(Json, Debug)]
struct NewItem {
    name: String,
    price: f64,
    tags: Vec<String>,
    in_stock: bool,
}

#[derive(Json)]
struct Message {
    message: std::borrow::Cow<'static, str>,
}

struct Args {
    port: u16,
    items: u64,
    data: std::path::PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 8080,
        items: 10_000,
        data: std::path::PathBuf::from("./data/bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}\n{USAGE}");
        match flag.as_str() {
            "--port" => args.port = value.parse().map_err(|e| bad(&e))?,
            "--items" => args.items = value.parse().map_err(|e| bad(&e))?,
            "--data" => args.data = value.into(),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

struct App {
    items: RwLock<HashMap<u64, Item>>,
    next_id: AtomicU64,
}

fn make_item(id: u64) -> Item {
    Item {
        id,
        name: format!("item-{id}"),
        price: id as f64 * 1.25,
        tags: vec!["a".to_string(), "b".to_string()],
        in_stock: id % 2 == 0,
    }
}

fn json_response<T: ToJson>(status: u16, value: &T) -> Response {
    match json::to_string(value) {
        Ok(text) => Response::bytes(status, "application/json", text.into_bytes()),
        Err(e) => Response::text(500, e.to_string()),
    }
}

fn not_found() -> Response {
    Response::static_bytes(404, "text/plain", b"not found")
}

impl App {
    fn get_item(&self, id: &str) -> Response {
        let Ok(id) = id.parse::<u64>() else {
            return not_found();
        };
        // Copy out under the read lock, serialize after releasing it.
        let item = match self.items.read() {
            Ok(items) => items.get(&id).cloned(),
            Err(_) => return Response::text(500, "poisoned"),
        };
        match item {
            Some(item) => json_response(200, &item),
            None => not_found(),
        }
    }

    fn create_item(&self, body: &[u8]) -> Response {
        let parsed = std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|text| json::from_str::<NewItem>(text).map_err(|e| e.to_string()));
        let new = match parsed {
            Ok(new) => new,
            Err(message) => return Response::text(400, message),
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let item = Item {
            id,
            name: new.name,
            price: new.price,
            tags: new.tags,
            in_stock: new.in_stock,
        };
        match self.items.write() {
            Ok(mut items) => items.insert(id, item.clone()),
            Err(_) => return Response::text(500, "poisoned"),
        };
        json_response(201, &item).with_header("Location", format!("/items/{id}"))
    }
}

impl Handler for App {
    fn call(&self, req: &mut Request) -> Response {
        let get = matches!(req.method, Method::Get | Method::Head);
        match req.path.as_str() {
            "/plaintext" if get => Response::static_bytes(200, "text/plain", b"Hello, World!"),
            "/json" if get => json_response(
                200,
                &Message {
                    message: std::borrow::Cow::Borrowed("Hello, World!"),
                },
            ),
            "/items" if req.method == Method::Post => self.create_item(&req.body),
            path if get && path.starts_with("/items/") => self.get_item(&path[7..]),
            "/plaintext" | "/json" | "/items" => {
                Response::text(405, "method not allowed").with_header("Allow", "GET, HEAD")
            }
            _ => not_found(),
        }
    }

    fn is_inline(&self, req: &Request) -> bool {
        // Reads hold the lock only to clone one item: cheap and never waiting on I/O.
        matches!(req.method, Method::Get | Method::Head)
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.data) {
        eprintln!("cannot create {}: {e}", args.data.display());
        std::process::exit(1);
    }
    let items: HashMap<u64, Item> = (1..=args.items).map(|id| (id, make_item(id))).collect();
    let app = App {
        items: RwLock::new(items),
        next_id: AtomicU64::new(args.items),
    };
    let server = match Server::bind(("127.0.0.1", args.port)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot bind 127.0.0.1:{}: {e}", args.port);
            std::process::exit(1);
        }
    };
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "bench_server listening on http://{addr} with {} items",
        args.items
    );
    if let Err(e) = server.serve(app) {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
    println!("bench_server stopped");
}
