//! The examples, driven over HTTP in-process: the blog's domain rules, the shop's atomic stock
//! reservation under 50 concurrent buyers, and a restart of each on the same data directory
//! (every record back, replay digest equal to the live digest).

#[allow(dead_code)]
#[path = "../examples/blog.rs"]
mod blog;
#[allow(dead_code)]
#[path = "../examples/shop.rs"]
mod shop;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lithair::app::cli::ServeOptions;
use lithair::json::{self, Value};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithair-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(data: PathBuf) -> ServeOptions {
    ServeOptions {
        port: 0,
        bind: "127.0.0.1".parse().unwrap(),
        data,
        node_id: None,
        peer_port: None,
        cluster: Vec::new(),
        join: None,
        cluster_secret: None,
        read_mode: Default::default(),
        extra: Vec::new(),
    }
}

/// One request on a fresh connection; returns status and parsed JSON body (Null when empty).
fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let value = if body.is_empty() {
        Value::Null
    } else {
        json::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    (status, value)
}

#[test]
fn blog_rules_and_restart() {
    let data = temp_dir("blog");
    let running = blog::app().start(&options(data.clone())).unwrap();
    let addr = running.server.local_addr();
    let (status, _) = call(
        addr,
        "POST",
        "/api/authors",
        r#"{"name":"Ann","email":"ann@x.io"}"#,
    );
    assert_eq!(status, 201);
    let (status, _) = call(
        addr,
        "POST",
        "/api/authors",
        r#"{"name":"Bob","email":"ann@x.io"}"#,
    );
    assert_eq!(status, 409, "unique e-mail");
    let (status, _) = call(
        addr,
        "POST",
        "/api/posts",
        r#"{"author_id":9,"title":"x","slug":"x"}"#,
    );
    assert_eq!(status, 404, "the author must exist");
    let (status, post) = call(
        addr,
        "POST",
        "/api/posts",
        r#"{"author_id":1,"title":"Hello","slug":"hello"}"#,
    );
    assert_eq!(status, 201);
    assert_eq!(post["published"].as_bool(), Some(false));
    let comment = r#"{"post_id":1,"author":"bob","body":"first"}"#;
    assert_eq!(
        call(addr, "POST", "/api/comments", comment).0,
        409,
        "a draft takes no comments"
    );
    let (status, published) = call(addr, "POST", "/api/posts/1/publish", "");
    assert_eq!(status, 200);
    assert!(published["published_at"].as_u64().is_some());
    assert_eq!(
        call(addr, "POST", "/api/posts/1/publish", "").0,
        409,
        "only a draft"
    );
    assert_eq!(call(addr, "POST", "/api/comments", comment).0, 201);
    let orphan = r#"{"post_id":7,"author":"bob","body":"lost"}"#;
    assert_eq!(call(addr, "POST", "/api/comments", orphan).0, 422);
    assert_eq!(
        call(addr, "PATCH", "/api/posts/1", r#"{"slug":"other"}"#).0,
        422,
        "immutable slug"
    );
    let (status, page) = call(addr, "GET", "/api/comments?post_id=1", "");
    assert_eq!((status, page["total"].as_u64()), (200, Some(1)));

    let digest = running.handle.engine().digest();
    let (_, posts) = call(addr, "GET", "/api/posts", "");
    running.stop().unwrap();
    let running = blog::app().start(&options(data.clone())).unwrap();
    let addr = running.server.local_addr();
    assert_eq!(
        running.handle.engine().digest(),
        digest,
        "replay digest equals live digest"
    );
    assert_eq!(call(addr, "GET", "/api/posts", "").1, posts);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn shop_never_oversells_under_concurrency() {
    let data = temp_dir("shop");
    let running = shop::app().start(&options(data.clone())).unwrap();
    let addr = running.server.local_addr();
    let product = r#"{"sku":"W-1","name":"Widget","price":2.5,"stock":10}"#;
    assert_eq!(call(addr, "POST", "/api/products", product).0, 201);

    // 50 buyers race for the last 10 units, one unit each.
    let placed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let buyers: Vec<_> = (0..50)
        .map(|i| {
            let (placed, refused) = (Arc::clone(&placed), Arc::clone(&refused));
            std::thread::spawn(move || {
                let body =
                    format!(r#"{{"customer":"c{i}","lines":[{{"product_id":1,"quantity":1}}]}}"#);
                match call(addr, "POST", "/api/orders", &body).0 {
                    201 => placed.fetch_add(1, Ordering::SeqCst),
                    409 => refused.fetch_add(1, Ordering::SeqCst),
                    other => panic!("unexpected status {other}"),
                };
            })
        })
        .collect();
    for buyer in buyers {
        buyer.join().unwrap();
    }
    assert_eq!(
        placed.load(Ordering::SeqCst),
        10,
        "exactly the stock is sold"
    );
    assert_eq!(refused.load(Ordering::SeqCst), 40);
    let (_, product) = call(addr, "GET", "/api/products/1", "");
    assert_eq!(product["stock"].as_u64(), Some(0));
    let (_, orders) = call(addr, "GET", "/api/orders?status=placed", "");
    assert_eq!(orders["total"].as_u64(), Some(10));

    // An order's lines are reserved all or nothing.
    let second = r#"{"sku":"G-1","name":"Gadget","price":1.0,"stock":5}"#;
    assert_eq!(call(addr, "POST", "/api/products", second).0, 201);
    let mixed =
        r#"{"customer":"x","lines":[{"product_id":2,"quantity":2},{"product_id":1,"quantity":1}]}"#;
    assert_eq!(call(addr, "POST", "/api/orders", mixed).0, 409);
    assert_eq!(
        call(addr, "GET", "/api/products/2", "").1["stock"].as_u64(),
        Some(5)
    );
    assert_eq!(
        call(addr, "POST", "/api/orders", "{}").0,
        422,
        "missing fields"
    );
    assert_eq!(
        call(addr, "PUT", "/api/orders/1", "{}").0,
        405,
        "orders change through commands only"
    );

    // Cancelling returns the stock, once.
    let (status, cancelled) = call(addr, "POST", "/api/orders/1/cancel", "");
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(call(addr, "POST", "/api/orders/1/cancel", "").0, 409);
    assert_eq!(
        call(addr, "GET", "/api/products/1", "").1["stock"].as_u64(),
        Some(1)
    );

    let digest = running.handle.engine().digest();
    running.stop().unwrap();
    let running = shop::app().start(&options(data.clone())).unwrap();
    assert_eq!(running.handle.engine().digest(), digest);
    let addr = running.server.local_addr();
    assert_eq!(
        call(addr, "GET", "/api/orders", "").1["total"].as_u64(),
        Some(10)
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
