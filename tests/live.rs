//! Live queries over real sockets: `GET {base}/stream` (Server-Sent Events) sends the first
//! page, then every committed change of the filtered view with its log index; a reconnect with
//! `Last-Event-ID` (or `from=`) resumes with no gap and no duplicate; a lagging feed is cut off
//! and resumes. The model is hand-written in the shape `#[derive(Model)]` generates.

mod common;
mod ws_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lithair::app::live::{
    parse_live_query, Change, LiveError, LiveFeed, LiveItem, LIVE_VIEW_IDS_MAX,
};
use lithair::app::{App, Id, Rejection};
use lithair::engine::EngineOptions;
use lithair::json::{self, Value};
use ws_support::WsClient;

#[allow(dead_code)]
#[path = "support/post_model.rs"]
mod post_model;
use post_model::{Post, PostPatch};

fn post(title: &str, published: bool) -> Post {
    Post {
        id: 0,
        title: title.into(),
        slug: title.into(),
        published,
        views: 0,
    }
}

/// One dispatched SSE event.
#[derive(Debug)]
struct Event {
    name: String,
    id: Option<u64>,
    data: Value,
}

/// A raw-socket SSE client: sends the request, checks the head, then decodes the chunked
/// body into events (comments skipped).
struct SseClient {
    reader: BufReader<TcpStream>,
    text: String,
}

impl SseClient {
    fn open(addr: SocketAddr, target: &str, extra: &str) -> Result<SseClient, String> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let head = format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            headers.push_str(&line.to_ascii_lowercase());
        }
        if !status_line.starts_with("HTTP/1.1 200") {
            return Err(status_line);
        }
        assert!(
            headers.contains("content-type: text/event-stream"),
            "{headers}"
        );
        assert!(headers.contains("transfer-encoding: chunked"), "{headers}");
        Ok(SseClient {
            reader,
            text: String::new(),
        })
    }

    fn read_chunk(&mut self) {
        let mut size_line = String::new();
        self.reader.read_line(&mut size_line).unwrap();
        let size = usize::from_str_radix(size_line.trim(), 16).expect("a chunk size");
        assert!(size > 0, "the stream ended");
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).unwrap();
        self.text
            .push_str(std::str::from_utf8(&chunk[..size]).expect("UTF-8 events"));
    }

    /// Reads chunks until the last (empty) one: the stream ended cleanly.
    fn read_to_last_chunk(&mut self) {
        loop {
            let mut size_line = String::new();
            self.reader.read_line(&mut size_line).unwrap();
            let size = usize::from_str_radix(size_line.trim(), 16)
                .unwrap_or_else(|_| panic!("a chunk size, got {size_line:?}"));
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                return;
            }
        }
    }

    /// The next event that is not a comment or a `progress` event.
    fn next(&mut self) -> Event {
        loop {
            let Some(end) = self.text.find("\n\n") else {
                self.read_chunk();
                continue;
            };
            let block: String = self.text.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = ("message".to_string(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if data.is_empty() || name == "progress" {
                continue; // a comment (heartbeat) or a progress marker
            }
            let data = json::parse(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
            return Event { name, id, data };
        }
    }
}

fn ids(page: &Value) -> Vec<u64> {
    let Value::Array(items) = &page["data"] else {
        panic!("no data array: {page:?}")
    };
    items
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

fn change(event: &Event) -> (u64, String, String, u64) {
    assert_eq!(event.name, "change", "{event:?}");
    let index = event.data["index"].as_u64().unwrap();
    assert_eq!(event.id, Some(index), "the SSE id is the log index");
    (
        index,
        event.data["op"].as_str().unwrap().to_string(),
        event.data["kind"].as_str().unwrap().to_string(),
        event.data["id"].as_u64().unwrap(),
    )
}

fn patch_published(published: bool) -> PostPatch {
    PostPatch {
        published: Some(published),
        ..PostPatch::default()
    }
}

#[test]
fn sse_feed_sends_page_then_changes_and_resumes_without_gap() {
    let data = common::fresh_dir("live", "sse");
    let app = App::new("live-test").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    let handle = running.handle.clone();
    handle.create(post("one", true)).unwrap(); // index 1, id 1
    handle.create(post("two", false)).unwrap(); // index 2, id 2
    handle.create(post("three", true)).unwrap(); // index 3, id 3

    let target = "/api/posts/stream?published=true&heartbeat_ms=100";
    let mut client = SseClient::open(addr, target, "").unwrap();
    assert_eq!(client.next().name, "ready");
    let snapshot = client.next();
    assert_eq!(snapshot.name, "snapshot");
    assert_eq!(snapshot.id, Some(3));
    assert_eq!(snapshot.data["index"].as_u64(), Some(3));
    assert_eq!(snapshot.data["total"].as_u64(), Some(2));
    assert_eq!(ids(&snapshot.data), vec![1, 3]);

    handle.create(post("four", true)).unwrap(); // 4: enters
    handle.create(post("five", false)).unwrap(); // 5: not in the view, not sent
    handle
        .update::<Post>(Id::Int(1), patch_published(false))
        .unwrap(); // 6: leaves
    handle
        .update::<Post>(Id::Int(2), patch_published(true))
        .unwrap(); // 7: enters
    handle.delete::<Post>(Id::Int(5)).unwrap(); // 8: never in the view, not sent
    handle.delete::<Post>(Id::Int(3)).unwrap(); // 9: leaves
    let expected = [
        (4, "upsert", "created", 4),
        (6, "remove", "updated", 1),
        (7, "upsert", "updated", 2),
        (9, "remove", "deleted", 3),
    ];
    for (index, op, kind, id) in expected {
        let got = change(&client.next());
        assert_eq!(got, (index, op.into(), kind.into(), id));
    }
    drop(client);

    // Changes while the client is away, then a resume after 7 (as if 9 was lost in transit).
    handle.create(post("six", true)).unwrap(); // 10
    handle
        .update::<Post>(Id::Int(6), patch_published(false))
        .unwrap(); // 11
    let mut client = SseClient::open(addr, target, "Last-Event-ID: 7\r\n").unwrap();
    assert_eq!(client.next().name, "ready");
    let resumed: Vec<_> = (0..4).map(|_| change(&client.next())).collect();
    // After a resume the server does not know the client's view, so every removal is sent
    // (8 deletes a record that never matched; the client ignores unknown ids).
    assert_eq!(
        resumed,
        vec![
            (8, "remove".into(), "deleted".into(), 5),
            (9, "remove".into(), "deleted".into(), 3),
            (10, "upsert".into(), "created".into(), 6),
            (11, "remove".into(), "updated".into(), 6),
        ]
    );
    drop(client);

    // `from=` resumes too; a `from` beyond the log's end gets a fresh page.
    let mut client = SseClient::open(addr, &format!("{target}&from=10"), "").unwrap();
    client.next();
    assert_eq!(change(&client.next()).0, 11);
    drop(client);
    let mut client = SseClient::open(addr, &format!("{target}&from=999"), "").unwrap();
    client.next();
    let fresh = client.next();
    assert_eq!((fresh.name.as_str(), fresh.id), ("snapshot", Some(11)));
    assert_eq!(ids(&fresh.data), vec![2, 4]);
    drop(client);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn an_open_feed_ends_cleanly_when_the_app_stops() {
    let data = common::fresh_dir("live", "stop");
    let app = App::new("live-test").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    // The default heartbeat (15 s) and grace (10 s): only the stop signal can end it promptly.
    let mut client = SseClient::open(addr, "/api/posts/stream", "").unwrap();
    assert_eq!(client.next().name, "ready");
    assert_eq!(client.next().name, "snapshot");
    let stopper = std::thread::spawn(move || running.stop());
    // The feed returns on the shutdown and its response ends with the last chunk, so the
    // browser reconnects elsewhere; before, it was cut off after the grace deadline.
    client.read_to_last_chunk();
    stopper.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn sse_feed_rejects_bad_parameters() {
    let data = common::fresh_dir("live", "bad");
    let app = App::new("live-bad").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    for target in [
        "/api/posts/stream?from=x",
        "/api/posts/stream?heartbeat_ms=1",
        "/api/posts/stream?nosuchfield=1",
    ] {
        let err = SseClient::open(addr, target, "").err().expect("refused");
        assert!(err.starts_with("HTTP/1.1 400"), "{target}: {err}");
    }
    let err = SseClient::open(addr, "/api/posts/stream", "Last-Event-ID: abc\r\n")
        .err()
        .expect("refused");
    assert!(err.starts_with("HTTP/1.1 400"), "{err}");
    // The list route itself is unchanged.
    assert_eq!(common::get(addr, "/api/posts").status, 200);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// An app of posts whose subscribers buffer 4 events: a feed falls behind at once.
fn lagging_app(name: &str) -> App {
    App::new(name)
        .model::<Post>()
        .engine_options(EngineOptions {
            subscriber_buffer_events: 4,
            ..EngineOptions::default()
        })
}

#[test]
fn a_lagging_feed_is_cut_off_and_resumes_without_gap() {
    let data = common::fresh_dir("live", "lag");
    let running = lagging_app("live-lag")
        .start(&common::serve_options(&data))
        .unwrap();
    let handle = running.handle.clone();
    let pairs = vec![("published".to_string(), "true".to_string())];
    let live = parse_live_query::<Post>(&pairs).unwrap();
    let mut feed = LiveFeed::<Post>::start(&handle, live.query.clone(), None).unwrap();
    let wait = Duration::from_secs(10);
    match feed.next_timeout(wait).unwrap() {
        Some(LiveItem::Snapshot(page)) => assert_eq!((page.index, page.total), (0, 0)),
        other => panic!("expected the first page, got {other:?}"),
    }
    // Ten commits while the feed reads nothing: its buffer of 4 overflows.
    for n in 0..10 {
        handle.create(post(&format!("p{n}"), true)).unwrap();
    }
    let mut seen = Vec::new();
    let last_index = loop {
        match feed.next_timeout(wait) {
            Ok(Some(LiveItem::Change(change))) => seen.push(change.index()),
            Err(LiveError::Lagged { last_index }) => break last_index,
            other => panic!("expected changes then a cut-off, got {other:?}"),
        }
    };
    assert_eq!(
        seen,
        (1..=4).collect::<Vec<u64>>(),
        "the buffered events come first"
    );
    assert_eq!(last_index, 4);
    let mut feed = LiveFeed::<Post>::start(&handle, live.query, Some(last_index)).unwrap();
    for index in 5..=10 {
        match feed.next_timeout(wait).unwrap() {
            Some(LiveItem::Change(Change::Upsert {
                index: got, record, ..
            })) => {
                assert_eq!(got, index);
                assert_eq!(record.id, index);
            }
            other => panic!("expected change {index}, got {other:?}"),
        }
    }
    assert_eq!(feed.last_index(), 10);
    assert_eq!(feed.next_timeout(Duration::from_millis(1)).unwrap(), None);
    drop(feed);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

fn ws_json(client: &mut WsClient) -> Value {
    let text = client.next_text();
    json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ws_change(value: &Value) -> (u64, String, u64) {
    assert_eq!(value["type"].as_str(), Some("change"), "{value:?}");
    (
        value["index"].as_u64().unwrap(),
        value["op"].as_str().unwrap().to_string(),
        value["id"].as_u64().unwrap(),
    )
}

#[test]
fn websocket_feed_sends_page_then_changes_and_resumes() {
    let data = common::fresh_dir("live", "ws");
    let app = App::new("live-ws").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    let handle = running.handle.clone();
    handle.create(post("a", true)).unwrap(); // 1
    handle.create(post("b", false)).unwrap(); // 2

    let mut client = WsClient::connect(addr, "/api/posts/live?published=true");
    let snapshot = ws_json(&mut client);
    assert_eq!(snapshot["type"].as_str(), Some("snapshot"));
    assert_eq!(snapshot["index"].as_u64(), Some(2));
    assert_eq!(ids(&snapshot), vec![1]);
    handle.create(post("c", true)).unwrap(); // 3
    handle
        .update::<Post>(Id::Int(2), patch_published(true))
        .unwrap(); // 4
    handle
        .update::<Post>(Id::Int(1), patch_published(false))
        .unwrap(); // 5
    let got: Vec<_> = (0..3).map(|_| ws_change(&ws_json(&mut client))).collect();
    assert_eq!(
        got,
        vec![
            (3, "upsert".into(), 3),
            (4, "upsert".into(), 2),
            (5, "remove".into(), 1)
        ]
    );
    client.close();

    // Resume after 4 (as if 5 never arrived): exactly 5, then the new ones.
    handle.create(post("d", true)).unwrap(); // 6
    let mut client = WsClient::connect(addr, "/api/posts/live?published=true&from=4");
    assert_eq!(ws_change(&ws_json(&mut client)), (5, "remove".into(), 1));
    assert_eq!(ws_change(&ws_json(&mut client)), (6, "upsert".into(), 4));
    handle.delete::<Post>(Id::Int(4)).unwrap(); // 7
    assert_eq!(ws_change(&ws_json(&mut client)), (7, "remove".into(), 4));
    client.close();

    // Bad filters are refused before the upgrade.
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = ws_support::upgrade_request("/api/posts/live?nosuch=1", "");
    stream.write_all(request.as_bytes()).unwrap();
    let (head, _) = ws_support::read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    drop(handle);
    running.stop().unwrap();
    // The pump and its feeds let go of the engine: the data directory opens again.
    let running = App::new("live-ws")
        .model::<Post>()
        .start(&common::serve_options(&data))
        .unwrap();
    assert_eq!(running.handle.engine().applied_index(), 7);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_websocket_feed_catching_up_is_paced_not_closed_as_a_slow_consumer() {
    // A client resuming far back reads as fast as it can, yet the pump used to push the whole
    // catch-up into its hub queue at log-reading speed: the queue overflowed and the client
    // was closed with 1008 "send queue overflow" before it could catch up.
    let data = common::fresh_dir("live", "ws-catch-up");
    let app = App::new("live-ws-catch-up").model::<Post>();
    let (running, addr) = common::start(&app, &data);
    let handle = running.handle.clone();
    const BATCHES: u64 = 5;
    const PER_BATCH: u64 = 1_000;
    for batch in 0..BATCHES {
        handle
            .execute(lithair::engine::Meta::default(), move |tx| {
                for n in 0..PER_BATCH {
                    tx.create(post(&format!("p{}", batch * PER_BATCH + n), true))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let mut client = WsClient::connect(addr, "/api/posts/live?published=true&from=0");
    for index in 1..=BATCHES * PER_BATCH {
        assert_eq!(
            ws_change(&ws_json(&mut client)),
            (index, "upsert".into(), index)
        );
    }
    client.close();
    drop(handle);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_lagging_websocket_feed_is_told_then_closed_and_resumes() {
    // The pump used to send the error and drop the feed but leave the socket open: a client
    // (a browser answers pings by itself) waited forever on a connection nothing fed.
    let data = common::fresh_dir("live", "ws-lag");
    let (running, addr) = common::start(&lagging_app("live-ws-lag"), &data);
    let handle = running.handle.clone();
    let mut client = WsClient::connect(addr, "/api/posts/live?published=true");
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(ws_json(&mut client)["type"].as_str(), Some("snapshot"));
    // One command of 1,000 events, delivered at once to a feed with a buffer of 4: the pump
    // cannot keep up, and its subscription is cut off.
    const EVENTS: u64 = 1_000;
    handle
        .execute(lithair::engine::Meta::default(), |tx| {
            for n in 0..EVENTS {
                tx.create(post(&format!("p{n}"), true))?;
            }
            Ok(())
        })
        .unwrap();
    let mut next = 1;
    let error = loop {
        let value = ws_json(&mut client);
        if value["type"].as_str() == Some("error") {
            break value;
        }
        assert_eq!(ws_change(&value), (next, "upsert".into(), next));
        next += 1;
    };
    assert_eq!(error["last_index"].as_u64(), Some(next - 1), "{error:?}");
    assert!(next <= EVENTS, "the feed lagged");
    match client.next_event() {
        lithair::ws::Event::Close(Some(frame)) => assert_eq!(frame.code, 1013),
        other => panic!("expected the server's close, got {other:?}"),
    }
    drop(client);
    let target = format!("/api/posts/live?published=true&from={}", next - 1);
    let mut client = WsClient::connect(addr, &target);
    for index in next..=EVENTS {
        assert_eq!(
            ws_change(&ws_json(&mut client)),
            (index, "upsert".into(), index)
        );
    }
    client.close();
    drop(handle);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// A second model, so the log holds events a `Post` feed passes over.
#[derive(lithair::prelude::Model, Clone, Debug, PartialEq)]
#[model(path = "/api/notes")]
struct Note {
    #[db(primary_key)]
    id: u64,
    text: String,
}

#[test]
fn a_feed_passing_other_models_events_still_returns_at_its_deadline() {
    // Events of other models used to skip the deadline check: a feed catching up over a long
    // run of them (or following a busy model it does not watch) did not come back to its SSE
    // loop, so no heartbeat went out and a shutdown waited for the whole run.
    let data = common::fresh_dir("live", "other-models");
    let app = App::new("live-other-models")
        .model::<Post>()
        .model::<Note>();
    let (running, _addr) = common::start(&app, &data);
    let handle = running.handle.clone();
    handle.create(post("first", true)).unwrap(); // 1
    for n in 0..100 {
        let note = Note {
            id: 0,
            text: format!("n{n}"),
        };
        handle.create(note).unwrap(); // 2..=101
    }
    let live = parse_live_query::<Post>(&[]).unwrap();
    let mut feed = LiveFeed::<Post>::start(&handle, live.query, Some(1)).unwrap();
    assert_eq!(feed.next_timeout(Duration::ZERO).unwrap(), None);
    assert!(
        feed.last_index() < 101,
        "one call with no time left read the whole run: {}",
        feed.last_index()
    );
    // Called again, it gets through the run and is up to date.
    while feed.last_index() < 101 {
        assert_eq!(feed.next_timeout(Duration::ZERO).unwrap(), None);
    }
    drop(feed);
    drop(handle);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_heartbeat_asked_for_is_bounded() {
    // A feed learns its client left only when it writes: a heartbeat of u64::MAX ms kept a
    // left feed (a stream thread, a subscription) until its model changed.
    let heartbeat = |value: &str| {
        let pairs = vec![("heartbeat_ms".to_string(), value.to_string())];
        parse_live_query::<Post>(&pairs).unwrap().heartbeat_ms
    };
    assert_eq!(heartbeat("250"), 250);
    assert_eq!(heartbeat("18446744073709551615"), 300_000);
    assert_eq!(
        heartbeat("300001"),
        lithair::app::live::LIVE_HEARTBEAT_MS_MAX
    );
}

#[test]
fn a_feed_remembers_at_most_a_bounded_number_of_ids() {
    // A feed kept the id of every record its view selected for as long as it was open: a
    // client opening feeds on a large collection made the server hold one id per record per
    // feed.
    let data = common::fresh_dir("live", "view-ids");
    let app = App::new("live-view-ids").model::<Post>();
    let (running, _addr) = common::start(&app, &data);
    let handle = running.handle.clone();
    handle
        .execute(Default::default(), |tx| {
            for n in 0..=LIVE_VIEW_IDS_MAX {
                tx.create(post(&format!("p{n}"), n == 6))?;
            }
            Ok::<(), Rejection>(())
        })
        .unwrap();
    let feed_of = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let live = parse_live_query::<Post>(&pairs).unwrap();
        LiveFeed::<Post>::start(&handle, live.query, None).unwrap()
    };
    // A narrow view is remembered id by id.
    let narrow = feed_of(&[("published", "true")]);
    assert_eq!(narrow.view_ids(), Some(1));
    // A view past the bound is not, and is followed like a resumed feed.
    let mut all = feed_of(&[("take", "5")]);
    assert_eq!(all.view_ids(), None);
    let wait = Duration::from_secs(10);
    match all.next_timeout(wait).unwrap() {
        Some(LiveItem::Snapshot(page)) => {
            assert_eq!((page.total, page.data.len()), (LIVE_VIEW_IDS_MAX + 1, 5))
        }
        other => panic!("expected the first page, got {other:?}"),
    }
    handle.delete::<Post>(Id::Int(9)).unwrap();
    match all.next_timeout(wait).unwrap() {
        Some(LiveItem::Change(Change::Remove { id, kind, .. })) => {
            assert_eq!((id, kind), (Id::Int(9), "deleted"))
        }
        other => panic!("expected the removal, got {other:?}"),
    }
    drop((narrow, all));
    drop(handle);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
