//! WebSocket echo server for conformance runs (Autobahn|Testsuite's fuzzingclient) and the
//! load client (`examples/ws_load.rs`).
//!
//! `cargo run --release --example ws_echo -- --port 9001 [--bind 127.0.0.1] [--room]
//! [--no-deflate]`
//!
//! Serves `GET /` on `lithair::http::Server`: the route upgrades to a `lithair::ws::Session`
//! that lives in the HTTP reactor (no thread per socket) and echoes every text and binary
//! message back unchanged; pings and the close handshake are the session's. permessage-deflate
//! is agreed with clients that offer it (Autobahn groups 12 and 13) unless `--no-deflate`. With `--room`,
//! every connection also joins the hub room `all`, and a text message starting with
//! `broadcast:` goes to every member instead of being echoed (the broadcast benchmark).
//! SIGINT or SIGTERM closes every socket with 1001 and exits.

use std::sync::Arc;

use lithair::app::cli::Flags;
use lithair::http::{Request, Server, ServerConfig};
use lithair::ws::{self, Config, Ctx, Endpoint, Message, SharedHub, WsHandler};

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if Flags::asks_help(&words) {
        println!("{USAGE}");
        return;
    }
    let flags = Flags::parse(
        &words,
        "ws_echo",
        &["room", "no-deflate"],
        &["port", "bind"],
    )
    .unwrap_or_else(|error| usage(&error.message));
    let port: u16 = flags
        .get_or("port", 9001)
        .unwrap_or_else(|error| usage(&error.message));
    let bind = flags.value("bind").unwrap_or("127.0.0.1").to_string();
    let room = flags.switch("room");
    let deflate = if flags.switch("no-deflate") {
        ws::DeflateConfig::DISABLED
    } else {
        ws::DeflateConfig::ENABLED
    };
    let server = Server::bind((bind.as_str(), port)).unwrap_or_else(|error| {
        eprintln!("ws_echo: cannot listen on {bind}:{port}: {error}");
        std::process::exit(1);
    });
    let address = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let config = ServerConfig {
        connections_max: 100_000,
        ..ServerConfig::default()
    };
    let session_config = Config {
        ping_interval_ms: 0,
        ..Config::SERVER
    };
    let mut endpoint = Endpoint::new(move |_: &Request, _: &str| -> Box<dyn WsHandler> {
        Box::new(Echo { room })
    })
    .config(session_config)
    .deflate(deflate);
    if room {
        endpoint = endpoint.hub(SharedHub::new(ws::HubConfig {
            presence_notices: false,
            ..ws::HubConfig::default()
        }));
    }
    let endpoint = Arc::new(endpoint);
    let router =
        lithair::http::Router::new().get("/", move |req: &mut Request| endpoint.respond(req));
    println!("ws_echo: listening on ws://{address}/");
    if let Err(error) = server.config(config).serve(router) {
        eprintln!("ws_echo: {error}");
        std::process::exit(1);
    }
}

const USAGE: &str = "usage: ws_echo [--port P] [--bind ADDR] [--room] [--no-deflate]";

fn usage(problem: &str) -> ! {
    eprintln!("ws_echo: {problem}\n{USAGE}");
    std::process::exit(2);
}

/// Sends every message straight back (or to the room, see the module documentation).
struct Echo {
    room: bool,
}

impl WsHandler for Echo {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if !self.room {
            return;
        }
        let id = ctx.id();
        if let Some(hub) = ctx.hub() {
            let _ = hub.with(|hub| hub.join(id, "all"));
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        if let (true, Message::Text(text)) = (self.room, &message) {
            if text.starts_with("broadcast:") {
                if let Some(hub) = ctx.hub() {
                    hub.with(|hub| hub.broadcast("all", &message, None));
                }
                return;
            }
        }
        // Only fails once the connection is closing, when the echo is moot.
        let _ = ctx.send(&message);
    }
}
