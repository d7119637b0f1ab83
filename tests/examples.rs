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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lithair::json::Value;

mod common;

/// One request on a fresh connection; returns status and parsed JSON body (Null when empty).
fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let answer = common::request(addr, method, path, "", body);
    (answer.status, answer.json_or_null())
}

#[test]
fn blog_rules_and_restart() {
    let data = common::fresh_dir("example", "blog");
    let (running, addr) = common::start(&blog::app(), &data);
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
    // Issue 5: a comment must reference an existing post; a draft is one.
    let comment = r#"{"post_id":1,"author":"bob","body":"first"}"#;
    assert_eq!(
        call(addr, "POST", "/api/comments", comment).0,
        201,
        "a draft takes comments"
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
    assert_eq!((status, page["total"].as_u64()), (200, Some(2)));

    let digest = running.handle.engine().digest();
    let (_, posts) = call(addr, "GET", "/api/posts", "");
    running.stop().unwrap();
    let (running, addr) = common::start(&blog::app(), &data);
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
    let data = common::fresh_dir("example", "shop");
    let (running, addr) = common::start(&shop::app(), &data);
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
    let (running, addr) = common::start(&shop::app(), &data);
    assert_eq!(running.handle.engine().digest(), digest);
    assert_eq!(
        call(addr, "GET", "/api/orders", "").1["total"].as_u64(),
        Some(10)
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn shop_stock_beyond_i64_and_an_unrepresentable_total() {
    let data = common::fresh_dir("example", "shop-extremes");
    let (running, addr) = common::start(&shop::app(), &data);
    let max = u64::MAX;
    let plenty = format!(r#"{{"sku":"P-1","name":"Plenty","price":1.0,"stock":{max}}}"#);
    assert_eq!(call(addr, "POST", "/api/products", &plenty).0, 201);
    // A stock past i64::MAX is still a stock: one unit of it can be sold and given back.
    let one = r#"{"customer":"x","lines":[{"product_id":1,"quantity":1}]}"#;
    let (status, order) = call(addr, "POST", "/api/orders", one);
    assert_eq!(status, 201, "{order:?}");
    let stock = |addr| call(addr, "GET", "/api/products/1", "").1["stock"].as_u64();
    assert_eq!(stock(addr), Some(max - 1));
    assert_eq!(call(addr, "POST", "/api/orders/1/cancel", "").0, 200);
    assert_eq!(stock(addr), Some(max));
    // A total past f64::MAX is refused before anything is committed, so the orders stay
    // readable.
    let dear = r#"{"sku":"D-1","name":"Dear","price":1e308,"stock":100}"#;
    assert_eq!(call(addr, "POST", "/api/products", dear).0, 201);
    let ten = r#"{"customer":"x","lines":[{"product_id":2,"quantity":10}]}"#;
    assert_eq!(call(addr, "POST", "/api/orders", ten).0, 422);
    assert_eq!(
        call(addr, "GET", "/api/products/2", "").1["stock"].as_u64(),
        Some(100)
    );
    let (status, orders) = call(addr, "GET", "/api/orders", "");
    assert_eq!((status, orders["total"].as_u64()), (200, Some(1)));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
