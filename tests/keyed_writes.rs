//! Writes with an `Idempotency-Key` over real sockets (issue 7): they are answered through a
//! deferred response like unkeyed writes (no worker waits for the commit), with the same
//! answers as before:
//!
//! - a first execution: 201 (or 200) with the record, `Location` and `ETag`;
//! - a retry whose outcome is in the in-memory window: the record as it is now, with
//!   `Idempotent-Replayed: true`;
//! - a retry that needs the log read back (window evicted, or after a restart): the same;
//! - concurrent requests with one key: one execution, every answer names the same record;
//! - rejections are not remembered (a retry decides again), a deleted record is a 404;
//! - in a cluster, a keyed write on the leader (run on its reactor) and its retries through
//!   the followers (forwarded) name the same record.

use lithair::app::App;

mod common;
use common::{request, Answer};

#[allow(dead_code)]
#[path = "support/post_model.rs"]
mod post_model;
use post_model::Post;

#[path = "support/cluster_harness.rs"]
mod cluster_harness;

fn app() -> App {
    App::new("keyed-test").model::<Post>()
}

fn post_keyed(addr: std::net::SocketAddr, key: &str, body: &str) -> Answer {
    let extra = format!("Idempotency-Key: {key}\r\n");
    request(addr, "POST", "/api/posts", &extra, body)
}

fn replayed(answer: &Answer) -> bool {
    answer.header("idempotent-replayed") == Some("true")
}

/// The number of posts the node serves.
fn post_total(addr: std::net::SocketAddr) -> Option<u64> {
    request(addr, "GET", "/api/posts?take=1", "", "").json()["total"].as_u64()
}

#[test]
fn first_write_and_in_memory_retries_answer_like_the_original() {
    let data = common::fresh_dir("keyed", "memory");
    let (running, addr) = common::start(&app(), &data);
    let body = r#"{"title":"Once","slug":"once"}"#;
    let first = post_keyed(addr, "k-create", body);
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(!replayed(&first));
    assert_eq!(first.header("location"), Some("/api/posts/1"));
    assert_eq!(first.header("etag"), Some("\"1\""));
    let retry = post_keyed(addr, "k-create", body);
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(replayed(&retry));
    assert_eq!(retry.header("location"), Some("/api/posts/1"));
    assert_eq!(retry.body, first.body);
    // A keyed PATCH and its retry: 200, the retry answers the record as it is now.
    let key = "Idempotency-Key: k-patch\r\n";
    let patched = request(addr, "PATCH", "/api/posts/1", key, r#"{"views":5}"#);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["views"].as_u64(), Some(5));
    assert!(!replayed(&patched));
    let unkeyed = request(addr, "PATCH", "/api/posts/1", "", r#"{"title":"Later"}"#);
    assert_eq!(unkeyed.status, 200, "{}", unkeyed.body);
    let again = request(addr, "PATCH", "/api/posts/1", key, r#"{"views":5}"#);
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(replayed(&again));
    assert_eq!(again.json()["title"].as_str(), Some("Later"));
    assert_eq!(again.header("etag"), Some("\"3\""), "the current version");
    // A keyed PUT and its retry.
    let key = "Idempotency-Key: k-put\r\n";
    let put_body = r#"{"title":"Whole","slug":"once","views":1}"#;
    let put = request(addr, "PUT", "/api/posts/1", key, put_body);
    assert_eq!((put.status, replayed(&put)), (200, false), "{}", put.body);
    let put_retry = request(addr, "PUT", "/api/posts/1", key, put_body);
    assert_eq!((put_retry.status, replayed(&put_retry)), (200, true));
    assert_eq!(put_retry.body, put.body);
    assert_eq!(post_total(addr), Some(1), "retries created nothing");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn retries_past_the_window_or_after_a_restart_read_the_log_back() {
    let data = common::fresh_dir("keyed", "log");
    let (running, addr) = common::start(&app().outcome_window(2), &data);
    let mut firsts = Vec::new();
    for n in 0..5 {
        let body = format!(r#"{{"title":"Post {n}","slug":"slug-{n}"}}"#);
        let first = post_keyed(addr, &format!("k-{n}"), &body);
        assert_eq!(first.status, 201, "{}", first.body);
        firsts.push((body, first));
    }
    // k-0..k-2 were evicted from the window of 2: their retries read the log back.
    for (n, (body, first)) in firsts.iter().enumerate() {
        let retry = post_keyed(addr, &format!("k-{n}"), body);
        assert_eq!(retry.status, 201, "k-{n}: {}", retry.body);
        assert!(replayed(&retry), "k-{n}");
        assert_eq!(retry.body, first.body, "k-{n}");
        assert_eq!(retry.header("location"), first.header("location"));
    }
    // A record deleted since its keyed creation: the retry names it, and it is gone.
    assert_eq!(request(addr, "DELETE", "/api/posts/2", "", "").status, 204);
    let gone = post_keyed(addr, "k-1", &firsts[1].0);
    assert_eq!(gone.status, 404, "{}", gone.body);
    running.stop().unwrap();

    let (running, addr) = common::start(&app(), &data);
    for (n, (body, first)) in firsts.iter().enumerate().filter(|(n, _)| *n != 1) {
        let retry = post_keyed(addr, &format!("k-{n}"), body);
        assert_eq!(retry.status, 201, "after restart, k-{n}: {}", retry.body);
        assert!(replayed(&retry), "after restart, k-{n}");
        assert_eq!(retry.body, first.body, "after restart, k-{n}");
    }
    assert_eq!(post_total(addr), Some(4), "retries created nothing");
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn rejected_keyed_writes_are_not_remembered() {
    let data = common::fresh_dir("keyed", "rejected");
    let (running, addr) = common::start(&app(), &data);
    let invalid = r#"{"title":"","slug":"empty-title"}"#;
    for _ in 0..2 {
        let answer = post_keyed(addr, "k-invalid", invalid);
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert!(!replayed(&answer));
    }
    // The key left nothing: the same key with a valid body executes.
    let valid = post_keyed(addr, "k-invalid", r#"{"title":"Fine","slug":"fine"}"#);
    assert_eq!(
        (valid.status, replayed(&valid)),
        (201, false),
        "{}",
        valid.body
    );
    // A version mismatch with a key: 409 each time, nothing remembered.
    let key = "Idempotency-Key: k-stale\r\nIf-Match: \"7\"\r\n";
    for _ in 0..2 {
        let stale = request(addr, "PATCH", "/api/posts/1", key, r#"{"views":1}"#);
        assert_eq!(stale.status, 409, "{}", stale.body);
        assert_eq!(stale.header("etag"), Some("\"1\""));
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn concurrent_requests_with_one_key_execute_once() {
    const REQUESTS: usize = 16;
    let data = common::fresh_dir("keyed", "concurrent");
    let (running, addr) = common::start(&app(), &data);
    let start = std::sync::Arc::new(std::sync::Barrier::new(REQUESTS));
    let senders: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                post_keyed(addr, "k-race", r#"{"title":"Race","slug":"race"}"#)
            })
        })
        .collect();
    let answers: Vec<Answer> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    for answer in &answers {
        assert_eq!(answer.status, 201, "{}", answer.body);
        assert_eq!(answer.json()["id"].as_u64(), Some(1), "{}", answer.body);
    }
    let executed = answers.iter().filter(|a| !replayed(a)).count();
    assert_eq!(
        executed, 1,
        "exactly one request executed, the rest replayed"
    );
    assert_eq!(post_total(addr), Some(1));
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn cluster_keyed_writes_on_the_leader_and_retries_through_followers() {
    use cluster_harness::{http, json_number, start_cluster, wait_leader};
    let cluster = start_cluster("keyed");
    let leader = wait_leader(&cluster);
    let addrs: Vec<_> = cluster.nodes.iter().map(|n| n.http).collect();
    let headers = "Content-Type: application/json\r\nIdempotency-Key: k-cluster\r\n";
    let body = r#"{"name":"keyed"}"#;
    // A bounded wait: the new leader may still be applying its first entry (503 meanwhile).
    let (code, first) = cluster_harness::poll(std::time::Duration::from_secs(20), || {
        http(addrs[leader], "POST", "/api/items", headers, body).filter(|(code, _)| *code != 503)
    })
    .expect("the leader answers a keyed write");
    assert_eq!(code, 201, "{first}");
    let id = json_number(&first, "id").expect("an id");
    for (k, addr) in addrs.iter().enumerate() {
        let (code, again) = http(*addr, "POST", "/api/items", headers, body).expect("answers");
        assert_eq!(code, 201, "node {k}: {again}");
        assert_eq!(json_number(&again, "id"), Some(id), "node {k}: {again}");
    }
    // Unkeyed writes on the leader commit too (run on its reactor).
    let (code, other) = http(
        addrs[leader],
        "POST",
        "/api/items",
        "Content-Type: application/json\r\n",
        body,
    )
    .expect("answers");
    assert_eq!(code, 201, "{other}");
    assert_ne!(json_number(&other, "id"), Some(id));
}
