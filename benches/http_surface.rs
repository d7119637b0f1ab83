//! Benchmarks of the HTTP application surface: deflate/gzip throughput and router dispatch.
//!
//! Run: `cargo bench --bench http_surface`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lithair::crypto::deflate;
use lithair::http::{Handler, Method, Request, Response, Router};

/// About 64 KiB of HTML-like text: what the gzip middleware compresses in practice.
fn html_page() -> Vec<u8> {
    let mut page =
        String::from("<!doctype html><html><head><title>Items</title></head><body><ul>\n");
    let mut i = 0u64;
    while page.len() < 64 * 1024 {
        page.push_str(&format!(
            "<li class=\"item\" data-id=\"{i}\"><a href=\"/items/{i}\">item-{i}</a> <span>{}</span></li>\n",
            i * 125 / 100
        ));
        i += 1;
    }
    page.push_str("</ul></body></html>\n");
    page.into_bytes()
}

fn deflate_benches(c: &mut Criterion) {
    let page = html_page();
    let packed = deflate::gzip(&page);
    println!(
        "html page: {} bytes -> {} gzip bytes ({:.1}%)",
        page.len(),
        packed.len(),
        100.0 * packed.len() as f64 / page.len() as f64
    );
    let mut group = c.benchmark_group("deflate");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("gzip_html_64k", |b| {
        b.iter(|| deflate::gzip(black_box(&page)))
    });
    group.bench_function("gunzip_html_64k", |b| {
        b.iter(|| deflate::gunzip(black_box(&packed), 1 << 20))
    });
    group.finish();
}

fn router_benches(c: &mut Criterion) {
    let mut router = Router::new();
    for name in [
        "users", "posts", "comments", "orders", "products", "carts", "sessions", "tags",
    ] {
        router = router
            .get(&format!("/api/{name}"), |_: &mut Request| {
                Response::text(200, "list")
            })
            .post(&format!("/api/{name}"), |_: &mut Request| {
                Response::text(201, "created")
            })
            .get(&format!("/api/{name}/{{id}}"), |_: &mut Request| {
                Response::text(200, "one")
            });
    }
    let router = router.get("/plaintext", |_: &mut Request| {
        Response::static_bytes(200, "text/plain", b"Hello, World!")
    });
    let direct = |_: &mut Request| Response::static_bytes(200, "text/plain", b"Hello, World!");
    let mut group = c.benchmark_group("router");
    // The baseline: the same request and response without routing or middleware.
    group.bench_function("direct_closure_baseline", |b| {
        b.iter(|| {
            let mut req = Request::new(Method::Get, "/plaintext");
            black_box(direct(&mut req).status)
        })
    });
    group.bench_function("dispatch_param_route", |b| {
        b.iter(|| {
            let mut req = Request::new(Method::Get, "/api/products/12345");
            black_box(router.call(&mut req).status)
        })
    });
    group.bench_function("dispatch_plaintext", |b| {
        b.iter(|| {
            let mut req = Request::new(Method::Get, "/plaintext");
            black_box(router.call(&mut req).status)
        })
    });
    group.finish();
}

criterion_group!(benches, deflate_benches, router_benches);
criterion_main!(benches);
