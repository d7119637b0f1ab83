//! The chat example over HTTP and WebSocket: the page, history on join, presence, messages
//! broadcast to the room only after they are durable, and history surviving a restart.

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;
mod ws_support;

use std::net::SocketAddr;

use lithair::json::{self, Value};
use ws_support::WsClient;

fn next(client: &mut WsClient) -> Value {
    let text = client.next_text();
    json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn join(addr: SocketAddr, room: &str, user: &str) -> (WsClient, Value, Value) {
    let mut client = WsClient::connect(addr, &format!("/ws?room={room}&user={user}"));
    let history = next(&mut client);
    assert_eq!(history["type"].as_str(), Some("history"), "{history:?}");
    let members = next(&mut client);
    assert_eq!(members["type"].as_str(), Some("members"), "{members:?}");
    (client, history, members)
}

fn texts(history: &Value) -> Vec<String> {
    let Value::Array(messages) = &history["messages"] else {
        panic!("no messages: {history:?}")
    };
    messages
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m["user"].as_str().unwrap(),
                m["text"].as_str().unwrap()
            )
        })
        .collect()
}

fn users(members: &Value) -> Vec<&str> {
    let Value::Array(users) = &members["users"] else {
        panic!("no users: {members:?}")
    };
    users.iter().map(|u| u.as_str().unwrap()).collect()
}

#[test]
fn chat_rooms_presence_and_durable_history() {
    let data = common::fresh_dir("example", "chat");
    let (running, addr) = common::start(&chat::app(), &data);
    let page = common::get(addr, "/");
    assert_eq!(page.status, 200, "{}", page.head);
    assert!(page.body.contains("<title>Lithair chat</title>"));

    let (mut ann, history, members) = join(addr, "r1", "ann");
    assert!(texts(&history).is_empty());
    assert_eq!(users(&members), ["ann"]);
    let (mut bob, _, members) = join(addr, "r1", "bob");
    assert_eq!(users(&members), ["ann", "bob"]);
    let notice = next(&mut ann);
    assert_eq!(
        (
            notice["type"].as_str(),
            notice["event"].as_str(),
            notice["user"].as_str()
        ),
        (Some("presence"), Some("join"), Some("bob"))
    );
    let (mut carl, _, members) = join(addr, "r2", "carl");
    assert_eq!(users(&members), ["carl"]);

    ann.send_text(r#"{"type":"say","text":"hello"}"#);
    for client in [&mut ann, &mut bob] {
        let message = next(client);
        assert_eq!(message["type"].as_str(), Some("message"));
        assert_eq!(message["message"]["text"].as_str(), Some("hello"));
        assert_eq!(message["message"]["user"].as_str(), Some("ann"));
        assert_eq!(message["message"]["room"].as_str(), Some("r1"));
    }
    carl.send_text(r#"{"type":"say","text":"other room"}"#);
    // Carl hears himself; Ann's next message is Bob leaving, not Carl's words.
    assert_eq!(
        next(&mut carl)["message"]["text"].as_str(),
        Some("other room")
    );
    carl.send_text(r#"{"type":"shout"}"#);
    assert_eq!(next(&mut carl)["type"].as_str(), Some("error"));
    bob.close();
    let notice = next(&mut ann);
    assert_eq!(
        (notice["event"].as_str(), notice["user"].as_str()),
        (Some("leave"), Some("bob"))
    );
    ann.close();
    carl.close();

    let messages = common::get(addr, "/api/messages?room=r1");
    assert_eq!(messages.status, 200, "{}", messages.head);
    assert_eq!(messages.json()["total"].as_u64(), Some(1));
    let nameless = common::get(addr, "/ws?room=r1&user=");
    assert_eq!(
        nameless.status, 400,
        "an empty name is refused: {}",
        nameless.head
    );
    assert!(
        nameless
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{}",
        nameless.head
    );
    running.stop().unwrap();

    // A restart (or a page reload) shows the history, per room.
    let (running, addr) = common::start(&chat::app(), &data);
    let (dan, history, _) = join(addr, "r1", "dan");
    assert_eq!(texts(&history), ["ann: hello"]);
    let (eve, history, _) = join(addr, "r2", "eve");
    assert_eq!(texts(&history), ["carl: other room"]);
    // Room names are names, not list filters: `~r` (contains "r") and `!r1` see nothing.
    for room in ["%7Er", "!r1", "%3Er"] {
        let (spy, history, _) = join(addr, room, "mallory");
        assert!(texts(&history).is_empty(), "{room}: {history:?}");
        spy.close();
    }
    dan.close();
    eve.close();
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// Members joining while a room is busy miss no message: every message after the first one a
/// joiner sees (in its history or broadcast) reaches it. The history used to be read before
/// the join, so a message stored and broadcast between the two reached the joiner neither way.
#[test]
fn joiners_miss_no_message_sent_while_they_join() {
    const MESSAGES: usize = 300;
    const JOINERS: usize = 12;
    let data = common::fresh_dir("example", "chat-join-race");
    let (running, addr) = common::start(&chat::app(), &data);
    let (mut talker, _, _) = join(addr, "busy", "talker");
    for i in 0..MESSAGES {
        talker.send_text(&format!(r#"{{"type":"say","text":"m{i}"}}"#));
    }
    talker.flush();
    let mut joiners: Vec<(WsClient, Vec<usize>)> = (0..JOINERS)
        .map(|k| {
            let (client, history, _) = join(addr, "busy", &format!("j{k}"));
            let seen = texts(&history)
                .iter()
                .filter_map(|t| t.strip_prefix("talker: m")?.parse().ok())
                .collect();
            (client, seen)
        })
        .collect();
    for (k, (client, seen)) in joiners.iter_mut().enumerate() {
        while !seen.contains(&(MESSAGES - 1)) {
            let event = next(client);
            if event["type"].as_str() != Some("message") {
                continue;
            }
            let text = event["message"]["text"].as_str().unwrap_or_default();
            seen.push(text.trim_start_matches('m').parse().expect("mN"));
        }
        let first = *seen.iter().min().expect("something seen");
        let missing: Vec<usize> = (first..MESSAGES).filter(|i| !seen.contains(i)).collect();
        assert!(missing.is_empty(), "joiner {k} missed {missing:?}");
    }
    talker.close();
    for (client, _) in joiners {
        client.close();
    }
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
