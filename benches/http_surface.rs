//! Benchmarks of the HTTP application surface: deflate/gzip throughput and router dispatch.
//!
//! Run: `cargo bench --bench http_surface`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lithair::crypto::deflate;
use lithair::http::{Handler, Method, Request, Response, Router};

/// About 64 KiB of HTML-like text: what the gzip middleware compresses in practice.
fn html_page() -> Vec<u8> {
    html_of_size(64 * 1024)
}

fn html_of_size(bytes: usize) -> Vec<u8> {
    let mut page =
        String::from("<!doctype html><html><head><title>Items</title></head><body><ul>\n");
    let mut i = 0u64;
    while page.len() < bytes {
        page.push_str(&format!(
            "<li class=\"item\" data-id=\"{i}\"><a href=\"/items/{i}\">item-{i}</a> <span>{}</span></li>\n",
            i * 125 / 100
        ));
        i += 1;
    }
    page.push_str("</ul></body></html>\n");
    page.into_bytes()
}

/// CPU seconds used so far by this process (`self`) or by its waited-for children, from
/// /proc/self/stat (fields 14-17, in clock ticks of 1/100 s on Linux). CPU time rather than wall
/// time, so the comparison holds on a machine shared with other work.
fn cpu_seconds(children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    // Every field parsed as i64 (tpgid is often -1); the state letter becomes 0, so positions
    // hold: after_name starts at field 3, so field n is fields[n - 3].
    let fields: Vec<i64> = after_name
        .split(' ')
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (user, system) = if children {
        (fields.get(13)?, fields.get(14)?)
    } else {
        (fields.get(11)?, fields.get(12)?)
    };
    Some((user + system) as f64 / 100.0)
}

fn gzip_tool(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    Some(out.stdout)
}

/// Prints CPU-time throughput of our gzip and gunzip next to the `gzip` tool's on 8 MiB of
/// HTML-like text (one process each way, so start-up cost is negligible).
fn cpu_comparison() {
    let input = html_of_size(8 << 20);
    let mib = input.len() as f64 / (1024.0 * 1024.0);
    let (Some(t0), Some(c0)) = (cpu_seconds(false), cpu_seconds(true)) else {
        return;
    };
    let ours = deflate::gzip(&input);
    let t1 = cpu_seconds(false).unwrap_or(t0);
    let back = deflate::gunzip(&ours, 1 << 30).expect("gunzip");
    let t2 = cpu_seconds(false).unwrap_or(t1);
    assert_eq!(back, input);
    let ratio = |n: usize| 100.0 * n as f64 / input.len() as f64;
    println!(
        "cpu: ours  gzip   {:7.1} MiB/s, output {:.1}% of input",
        mib / (t1 - t0).max(0.01),
        ratio(ours.len())
    );
    println!("cpu: ours  gunzip {:7.1} MiB/s", mib / (t2 - t1).max(0.01));
    let Some(theirs) = gzip_tool(&["-6nc"], &input) else {
        return;
    };
    let c1 = cpu_seconds(true).unwrap_or(c0);
    let _ = gzip_tool(&["-dc"], &theirs);
    let c2 = cpu_seconds(true).unwrap_or(c1);
    println!(
        "cpu: gzip -6      {:7.1} MiB/s, output {:.1}% of input",
        mib / (c1 - c0).max(0.01),
        ratio(theirs.len())
    );
    println!("cpu: gzip -d      {:7.1} MiB/s", mib / (c2 - c1).max(0.01));
}

fn deflate_benches(c: &mut Criterion) {
    cpu_comparison();
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
    // CPU time per request over a fixed count, for a figure that holds on a busy machine.
    let per_request_ns = |f: &dyn Fn() -> u16| {
        const ROUNDS: u32 = 1_000_000;
        let start = cpu_seconds(false)?;
        for _ in 0..ROUNDS {
            black_box(f());
        }
        Some((cpu_seconds(false)? - start) * 1e9 / f64::from(ROUNDS))
    };
    let base = per_request_ns(&|| direct(&mut Request::new(Method::Get, "/plaintext")).status);
    let plain = per_request_ns(&|| {
        router
            .call(&mut Request::new(Method::Get, "/plaintext"))
            .status
    });
    let param = per_request_ns(&|| {
        router
            .call(&mut Request::new(Method::Get, "/api/products/12345"))
            .status
    });
    let bare = Router::bare().get("/plaintext", direct);
    let bare_ns = per_request_ns(&|| {
        bare.call(&mut Request::new(Method::Get, "/plaintext"))
            .status
    });
    if let (Some(base), Some(plain), Some(param), Some(bare_ns)) = (base, plain, param, bare_ns) {
        println!("cpu: direct closure {base:.0} ns, bare router {bare_ns:.0} ns, router /plaintext {plain:.0} ns, router /api/products/{{id}} {param:.0} ns per request");
    }
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
