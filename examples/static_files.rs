//! A static file server, for measuring the static-file path (`Router::static_dir`) under a
//! load tool, as the figures in the commits and the issue note were taken:
//!
//! `cargo run --release --example static_files -- --port 18500 --dir ./public`
//!
//! then, with server and client pinned to one core each:
//! `taskset -c 1 target/release/examples/static_files --port 18500 --dir DIR &`
//! `taskset -c 0 wrk -t1 -c8 -d4s http://127.0.0.1:18500/f/NAME`
//!
//! Serves `DIR` (default: the current directory; loopback only, dotfiles refused) under `/f/`
//! with the router's defaults (security headers on, no compression unless `--gzip`;
//! `--gzip-cache-bytes N` sets the gzip layer's cache of variants, 0 for none, to measure what
//! it saves). SIGINT or SIGTERM stops it.

use lithair::app::cli::Flags;
use lithair::http::middleware::Compression;
use lithair::http::{Router, Server};

const USAGE: &str = "usage: static_files [--dir DIR] [--port P] [--gzip] [--gzip-cache-bytes N]";

fn usage(problem: &str) -> ! {
    eprintln!("static_files: {problem}\n{USAGE}");
    std::process::exit(2);
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if Flags::asks_help(&words) {
        println!("{USAGE}");
        return;
    }
    let flags = Flags::parse(
        &words,
        "static_files",
        &["gzip"],
        &["port", "dir", "gzip-cache-bytes"],
    )
    .unwrap_or_else(|error| usage(&error.message));
    let port: u16 = flags
        .get_or("port", 18500)
        .unwrap_or_else(|error| usage(&error.message));
    let dir = flags.value("dir").unwrap_or(".");
    if !std::path::Path::new(dir).is_dir() {
        usage(&format!("{dir} is not a directory"));
    }
    let mut router = Router::new();
    let cache_bytes = flags
        .get_or(
            "gzip-cache-bytes",
            lithair::http::middleware::GZIP_CACHE_BYTES_MAX,
        )
        .unwrap_or_else(|error| usage(&error.message));
    if flags.switch("gzip") {
        router = router.layer(Compression::default().cache_bytes(cache_bytes));
    }
    let router = router.static_dir("/f", dir);
    let server = Server::bind(("127.0.0.1", port)).unwrap_or_else(|e| usage(&e.to_string()));
    println!("static_files: serving {dir} on http://127.0.0.1:{port}/f/");
    if let Err(e) = server.serve(router) {
        eprintln!("static_files: {e}");
        std::process::exit(1);
    }
}
