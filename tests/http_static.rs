//! Static files through a real server: MIME types, validators (304), ranges (206, 416),
//! Cache-Control, and every way out of the root refused.

#[path = "support/http_client.rs"]
mod client;

use client::TestServer;
use lithair::crypto::deflate;
use lithair::http::httpdate;
use lithair::http::middleware::Compression;
use lithair::http::Router;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A fresh directory tree: root/public with files, and a secret next to it (outside the root).
fn fixture(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("lithair-static-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let public = base.join("public");
    std::fs::create_dir_all(public.join("sub")).expect("mkdir");
    std::fs::write(public.join("index.html"), "<h1>home</h1>").expect("write");
    std::fs::write(public.join("app.wasm"), [0u8, 97, 115, 109]).expect("write");
    std::fs::write(public.join("font.woff2"), b"wOF2").expect("write");
    std::fs::write(public.join("feed.rss"), "<rss/>").expect("write");
    std::fs::write(public.join("data.json"), "{}").expect("write");
    std::fs::write(public.join("sub").join("a b.txt"), "0123456789").expect("write");
    std::fs::write(public.join(".env"), "TOKEN=1").expect("write");
    std::fs::write(
        public.join("big.txt"),
        "static text compresses well\n".repeat(200),
    )
    .expect("write");
    std::fs::write(base.join("secret.txt"), "top secret").expect("write");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(base.join("secret.txt"), public.join("leak.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(&base, public.join("up")).expect("symlink");
        std::os::unix::fs::symlink(public.join("data.json"), public.join("alias.json"))
            .expect("symlink");
    }
    base
}

fn serve(base: &std::path::Path) -> TestServer {
    let root = base.join("public");
    TestServer::start(Router::new().static_dir("/assets", root.to_str().expect("utf-8 path")))
}

#[test]
fn types_validators_and_cache_control() {
    let base = fixture("types");
    let server = serve(&base);
    for (path, content_type) in [
        ("/assets/app.wasm", "application/wasm"),
        ("/assets/font.woff2", "font/woff2"),
        ("/assets/feed.rss", "application/rss+xml"),
        ("/assets/data.json", "application/json"),
        ("/assets/sub/a%20b.txt", "text/plain; charset=utf-8"),
        ("/assets/", "text/html; charset=utf-8"),
    ] {
        let r = server.get(path, &[]);
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(content_type)),
            "{path}"
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"));
    }
    let r = server.get("/assets/sub/a%20b.txt", &[]);
    assert_eq!(r.text(), "0123456789");
    let etag = r.header("etag").expect("etag").to_string();
    let modified = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let again = server.get(
        "/assets/sub/a%20b.txt",
        &[&format!("If-None-Match: {etag}")],
    );
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let since = server.get(
        "/assets/sub/a%20b.txt",
        &[&format!("If-Modified-Since: {modified}")],
    );
    assert_eq!(since.status, 304);
    let changed = server.get("/assets/sub/a%20b.txt", &["If-None-Match: \"other\""]);
    assert_eq!(changed.status, 200);
    let head = server
        .exchange(b"HEAD /assets/sub/a%20b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("content-length: 10\r\n"),
        "{head}"
    );
    let home = server.get("/assets/index.html", &[]);
    assert!(
        home.header("content-security-policy").is_some(),
        "HTML gets a CSP"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn ranges() {
    let base = fixture("ranges");
    let server = serve(&base);
    let path = "/assets/sub/a%20b.txt";
    let r = server.get(path, &["Range: bytes=2-5"]);
    assert_eq!((r.status, r.text().as_str()), (206, "2345"));
    assert_eq!(r.header("content-range"), Some("bytes 2-5/10"));
    let r = server.get(path, &["Range: bytes=-3"]);
    assert_eq!((r.status, r.text().as_str()), (206, "789"));
    let r = server.get(path, &["Range: bytes=20-"]);
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */10"))
    );
    let etag = server
        .get(path, &[])
        .header("etag")
        .expect("etag")
        .to_string();
    let r = server.get(path, &["Range: bytes=0-0", &format!("If-Range: {etag}")]);
    assert_eq!((r.status, r.text().as_str()), (206, "0"));
    let r = server.get(path, &["Range: bytes=0-0", "If-Range: \"stale\""]);
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
    // If-Range with a date: honoured only when Last-Modified is a strong validator, a second
    // or more in the past (RFC 9110 §8.8.2.2); a file stamped in the current second (here in
    // the future, so the test cannot race the clock) may change again within it.
    let file = base.join("public").join("sub").join("a b.txt");
    for (stamp, expected) in [
        (SystemTime::now() - Duration::from_secs(3600), (206, "0")),
        (
            SystemTime::now() + Duration::from_secs(3600),
            (200, "0123456789"),
        ),
    ] {
        let f = std::fs::File::options()
            .write(true)
            .open(&file)
            .expect("open");
        f.set_modified(stamp).expect("set mtime");
        drop(f);
        let date = server
            .get(path, &[])
            .header("last-modified")
            .expect("last-modified")
            .to_string();
        let r = server.get(path, &["Range: bytes=0-0", &format!("If-Range: {date}")]);
        assert_eq!((r.status, r.text().as_str()), expected, "{date}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_file_stamped_in_the_future_is_dated_now() {
    let base = fixture("future");
    let server = serve(&base);
    let path = "/assets/sub/a%20b.txt";
    let file = base.join("public").join("sub").join("a b.txt");
    let f = std::fs::File::options()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .expect("set mtime");
    drop(f);
    let r = server.get(path, &[]);
    let modified = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let date = httpdate::parse(&modified).expect("an HTTP date");
    assert!(
        date <= SystemTime::now(),
        "Last-Modified {modified} is in the future"
    );
    // Revalidating with it: the file's true time is later, so it is sent again (with the
    // future date echoed back, every edit made within the hour would have been a 304).
    let again = server.get(path, &[&format!("If-Modified-Since: {modified}")]);
    assert_eq!(again.status, 200);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn no_way_out_of_the_root() {
    let base = fixture("escape");
    let server = serve(&base);
    for path in [
        "/assets/../secret.txt",
        "/assets/sub/../../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/%2E%2E/secret.txt",
        "/assets/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/assets/..%2fsecret.txt",
        "/assets/%2fetc%2fpasswd",
        "/assets//etc/passwd",
        "/assets/sub%5c..%5c..%5csecret.txt",
        "/assets/.env",
        "/assets/leak.txt",
        "/assets/up/secret.txt",
        "/assets/%00",
        "/assets/sub",
    ] {
        let r = server.get(path, &[]);
        assert!(
            r.status == 404 || r.status == 400,
            "{path} answered {}",
            r.status
        );
        assert!(
            !r.text().contains("top secret") && !r.text().contains("TOKEN"),
            "{path} leaked"
        );
    }
    // A raw absolute path in the target, not through the mount.
    let raw = server.exchange(b"GET /etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(
        raw.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    // A page answered from a file region (past what is read with the head, so deferred) gets
    // the CSP an HTML answer gets.
    let page = format!("<h1>long</h1>{}", "<p>text</p>\n".repeat(4_000));
    std::fs::write(base.join("public").join("long.html"), &page).expect("write");
    let long = server.get("/assets/long.html", &[]);
    assert_eq!((long.status, long.body.len()), (200, page.len()));
    assert!(
        long.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'self'")),
        "{:?}",
        long.headers
    );
    // A symlink that stays inside the root is fine, absolute (checked by its canonical path)
    // or relative (followed by the kernel beneath the root).
    assert_eq!(server.get("/assets/alias.json", &[]).status, 200);
    #[cfg(unix)]
    {
        let public = base.join("public");
        std::os::unix::fs::symlink("sub/a b.txt", public.join("near.txt")).expect("symlink");
        std::os::unix::fs::symlink("../secret.txt", public.join("far.txt")).expect("symlink");
        let near = server.get("/assets/near.txt", &[]);
        assert_eq!((near.status, near.text()), (200, "0123456789".to_string()));
        let far = server.get("/assets/far.txt", &[]);
        assert_eq!(far.status, 404);
        assert!(!far.text().contains("top secret"));
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A FIFO in the root is not a file: 404 at once, and the worker that looked is not stuck
/// waiting for a writer (opening one for reading blocks until another process writes).
#[cfg(unix)]
#[test]
fn a_fifo_under_the_root_is_refused_without_blocking() {
    let base = fixture("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(base.join("public").join("pipe"))
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo here: nothing to check");
        return;
    }
    let server = serve(&base);
    for _ in 0..3 {
        assert_eq!(server.get("/assets/pipe", &[]).status, 404);
    }
    assert_eq!(server.get("/assets/data.json", &[]).status, 200);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn compressed_files_revalidate() {
    let base = fixture("gzip");
    let root = base.join("public");
    let router = Router::new()
        .layer(Compression::default())
        .static_dir("/assets", root.to_str().expect("utf-8 path"));
    let server = TestServer::start(router);
    let r = server.get("/assets/big.txt", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (r.status, r.header("content-encoding")),
        (200, Some("gzip"))
    );
    let plain = std::fs::read(root.join("big.txt")).expect("read");
    assert_eq!(deflate::gunzip(&r.body, 1 << 20).expect("gunzip"), plain);
    let etag = r.header("etag").expect("etag").to_string();
    assert!(etag.ends_with("-gzip\""), "{etag}");
    // Past what is read with the head (a file region): compressed all the same, answered by
    // a thread that may read and deflate it.
    let large = "a larger static text, still compressible\n".repeat(2_000);
    std::fs::write(root.join("large.txt"), &large).expect("write");
    let r = server.get("/assets/large.txt", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (r.status, r.header("content-encoding")),
        (200, Some("gzip"))
    );
    assert_eq!(
        deflate::gunzip(&r.body, 1 << 20).expect("gunzip"),
        large.as_bytes()
    );
    let r = server.get("/assets/large.txt", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, large.as_bytes()));
    let again = server.get(
        "/assets/big.txt",
        &["Accept-Encoding: gzip", &format!("If-None-Match: {etag}")],
    );
    // The 304 names the variant the client holds, as the 200 did (RFC 9110 §15.4.5).
    assert_eq!(
        (again.status, again.header("etag"), again.header("vary")),
        (304, Some(etag.as_str()), Some("Accept-Encoding"))
    );
    // A client that no longer takes gzip is told the representation varies, and which tag the
    // identity variant has.
    let identity = server.get("/assets/big.txt", &[&format!("If-None-Match: {etag}")]);
    let plain_tag = etag.trim_end_matches("-gzip\"").to_string() + "\"";
    assert_eq!(
        (
            identity.status,
            identity.header("etag"),
            identity.header("vary")
        ),
        (304, Some(plain_tag.as_str()), Some("Accept-Encoding"))
    );
    // Ranges are served from the identity representation, never compressed.
    let part = server.get(
        "/assets/big.txt",
        &["Accept-Encoding: gzip", "Range: bytes=0-5"],
    );
    assert_eq!(
        (
            part.status,
            part.header("content-encoding"),
            part.text().as_str()
        ),
        (206, None, "static")
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// A fixture tree served under `/assets` behind a gzip layer (kept, to read its cache's
/// figures): the tree's base, its public root, the layer, the server.
fn gzip_fixture(name: &str) -> (PathBuf, PathBuf, Compression, TestServer) {
    let base = fixture(name);
    let root = base.join("public");
    let layer = Compression::default();
    let router = Router::new()
        .layer(layer.clone())
        .static_dir("/assets", root.to_str().expect("utf-8 path"));
    (base, root, layer, TestServer::start(router))
}

/// A compressed file sent again comes from the gzip layer's cache (small files read with the
/// head by their bytes, larger ones by the file's version), and a file changed in place is
/// never answered with its old variant: same length, same modification time set back.
#[test]
fn compressed_variants_are_kept_and_a_changed_file_is_not_served_stale() {
    let (base, root, layer, server) = gzip_fixture("gzip-cache");
    let small = |n: u32| format!("small page {n}: compressible text\n").repeat(50);
    let large = |n: u32| format!("large page {n}: compressible text\n").repeat(3_000);
    std::fs::write(root.join("small.txt"), small(1)).expect("write");
    std::fs::write(root.join("large.txt"), large(1)).expect("write");
    // A file's variant is kept only once it has been left unchanged for a while.
    std::thread::sleep(lithair::http::middleware::FILE_SETTLED_AFTER + Duration::from_millis(100));
    let fetch = |name: &str| {
        let r = server.get(&format!("/assets/{name}"), &["Accept-Encoding: gzip"]);
        assert_eq!(
            (r.status, r.header("content-encoding")),
            (200, Some("gzip")),
            "{name}"
        );
        let etag = r.header("etag").expect("etag").to_string();
        (deflate::gunzip(&r.body, 1 << 24).expect("gunzip"), etag)
    };
    for _ in 0..3 {
        assert_eq!(fetch("small.txt").0, small(1).as_bytes());
        assert_eq!(fetch("large.txt").0, large(1).as_bytes());
    }
    let stats = layer.cache_stats();
    assert_eq!(
        (stats.made, stats.hits, stats.entries),
        (2, 4, 2),
        "{stats:?}"
    );
    // Rewritten in place with other bytes of the same length, the modification time set back
    // to what it was (as an unpacked archive or a copy keeping times would).
    for (name, text) in [("small.txt", small(2)), ("large.txt", large(2))] {
        let path = root.join(name);
        let before = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&path, &text).expect("rewrite");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(before).expect("set the time back");
        assert_eq!(
            fetch(name).0,
            text.as_bytes(),
            "{name}: never the old variant"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Clients that ask at once for a large file whose variant is not kept yet get it deflated
/// once: the first deflates it, the others are answered from the cache once it is kept, or
/// uncompressed while it is being made; every answer is the file's bytes.
#[test]
fn a_burst_of_requests_deflates_a_file_once() {
    let (base, root, layer, server) = gzip_fixture("gzip-burst");
    // About 3 MiB: some 100 ms of deflate, so the burst's requests overlap its making.
    let text: String = (0..60_000)
        .map(|i| format!("line {i} of a large compressible script\n"))
        .collect();
    std::fs::write(root.join("app.js"), &text).expect("write");
    std::thread::sleep(lithair::http::middleware::FILE_SETTLED_AFTER + Duration::from_millis(100));
    const CLIENTS: usize = 8;
    let start = std::sync::Barrier::new(CLIENTS);
    let answers: Vec<(Option<String>, Vec<u8>)> = std::thread::scope(|scope| {
        let fetchers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let r = server.get("/assets/app.js", &["Accept-Encoding: gzip"]);
                    assert_eq!(r.status, 200);
                    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
                    (r.header("content-encoding").map(str::to_string), r.body)
                })
            })
            .collect();
        fetchers
            .into_iter()
            .map(|f| f.join().expect("client"))
            .collect()
    });
    for (encoding, body) in &answers {
        let plain = match encoding.as_deref() {
            Some("gzip") => deflate::gunzip(body, 1 << 24).expect("gunzip"),
            None => body.clone(),
            Some(other) => panic!("unexpected encoding {other}"),
        };
        assert!(plain == text.as_bytes(), "every answer is the file");
    }
    let stats = layer.cache_stats();
    assert_eq!(stats.made, 1, "deflated once: {stats:?}");
    let plain_answers = answers.iter().filter(|(e, _)| e.is_none()).count() as u64;
    assert_eq!(stats.sent_plain_while_making, plain_answers, "{stats:?}");
    assert_eq!(
        stats.made + stats.hits + stats.sent_plain_while_making,
        CLIENTS as u64,
        "{stats:?}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// RFC 9110 §15.4.5: a 304 carries the `Vary`, `ETag` and `Cache-Control` its 200 would
/// carry, however the client revalidates (If-Modified-Since alone, or the identity tag), and
/// no `Vary` its 200 would not (a type or a size that is never compressed).
#[test]
fn every_304_carries_what_its_200_would() {
    let base = fixture("vary304");
    let root = base.join("public");
    std::fs::write(root.join("logo.png"), vec![7u8; 4096]).expect("write");
    let router = Router::new()
        .layer(Compression::default())
        .static_dir("/assets", root.to_str().expect("utf-8 path"));
    let server = TestServer::start(router);
    for (path, accept) in [
        ("/assets/big.txt", "Accept-Encoding: gzip"),
        ("/assets/big.txt", "Accept-Encoding: identity"),
        ("/assets/data.json", "Accept-Encoding: gzip"),
        ("/assets/logo.png", "Accept-Encoding: gzip"),
    ] {
        let full = server.get(path, &[accept]);
        assert_eq!(full.status, 200, "{path}");
        let etag = full.header("etag").expect("etag").to_string();
        let modified = full.header("last-modified").expect("date").to_string();
        for condition in [
            format!("If-None-Match: {etag}"),
            format!("If-Modified-Since: {modified}"),
        ] {
            let again = server.get(path, &[accept, &condition]);
            assert_eq!(again.status, 304, "{path} {condition}");
            for name in ["vary", "etag", "cache-control"] {
                assert_eq!(
                    again.header(name),
                    full.header(name),
                    "{name} of {path} {accept} {condition}"
                );
            }
            // A length on the 304 is the 200's or none (RFC 9110 §8.6).
            if let Some(length) = again.header("content-length") {
                assert_eq!(Some(length), full.header("content-length"), "{path}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
