//! Hub scenarios: rooms, presence, direct messages, slow consumers.

use super::*;
use crate::ws::frame::{parse_frame, ParseConfig, Status};

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);
const C: ConnId = ConnId(3);

fn hub_with(ids: &[(ConnId, &str)]) -> Hub {
    let mut hub = Hub::new(HubConfig::default());
    for (id, user) in ids {
        hub.connect(*id, *user).expect("fresh id");
    }
    hub
}

/// Every queued message for `id`, decoded back to text.
fn drain_texts(hub: &mut Hub, id: ConnId) -> Vec<String> {
    std::iter::from_fn(|| hub.pop_frame(id))
        .map(|frame| {
            let Ok(Status::Complete(parsed)) = parse_frame(&frame, &ParseConfig::CLIENT) else {
                panic!("bad frame")
            };
            assert_eq!(parsed.wire_len(), frame.len(), "one frame per queue entry");
            String::from_utf8(parsed.payload.to_vec()).expect("text frames")
        })
        .collect()
}

fn text(value: &str) -> Message {
    Message::Text(value.to_string())
}

#[test]
fn join_broadcast_leave() {
    let mut hub = hub_with(&[(A, "ann"), (B, "bob"), (C, "cid")]);
    assert_eq!(
        hub.join(A, "lobby"),
        Ok(vec![Peer {
            id: A,
            user: "ann".into()
        }])
    );
    let members = hub.join(B, "lobby").expect("joined");
    assert_eq!(
        members.iter().map(|peer| peer.id).collect::<Vec<_>>(),
        [A, B]
    );
    assert_eq!(
        drain_texts(&mut hub, A),
        [presence_notice("join", "lobby", B, "bob")]
    );
    assert_eq!(
        drain_texts(&mut hub, B),
        Vec::<String>::new(),
        "no notice about oneself"
    );

    assert_eq!(
        hub.broadcast_from(A, "lobby", &text("hi all"), false),
        Ok(1)
    );
    assert_eq!(hub.broadcast_from(A, "lobby", &text("echoed"), true), Ok(2));
    assert_eq!(drain_texts(&mut hub, B), ["hi all", "echoed"]);
    assert_eq!(drain_texts(&mut hub, A), ["echoed"]);
    assert_eq!(
        hub.broadcast_from(C, "lobby", &text("outsider"), false),
        Err(HubError::NotInRoom("lobby".into()))
    );

    hub.leave(B, "lobby").expect("member");
    assert_eq!(
        drain_texts(&mut hub, A),
        [presence_notice("leave", "lobby", B, "bob")]
    );
    assert_eq!(
        hub.leave(B, "lobby"),
        Err(HubError::NotInRoom("lobby".into()))
    );
    assert_eq!(hub.broadcast("lobby", &text("system"), None), 1);
    hub.leave(A, "lobby").expect("member");
    assert_eq!(hub.members_of("lobby"), []);
    assert_eq!(
        hub.broadcast("lobby", &text("nobody"), None),
        0,
        "empty rooms disappear"
    );
}

#[test]
fn join_twice_is_idempotent_and_rooms_are_listed() {
    let mut hub = hub_with(&[(A, "ann"), (B, "bob")]);
    hub.join(A, "x").expect("ok");
    hub.join(B, "x").expect("ok");
    hub.join(B, "x").expect("ok");
    hub.join(B, "y").expect("ok");
    assert_eq!(drain_texts(&mut hub, A).len(), 1, "one join notice");
    assert_eq!(hub.rooms_of(B), Ok(vec!["x".to_string(), "y".to_string()]));
    assert_eq!(hub.members_of("x").len(), 2);
}

#[test]
fn disconnect_leaves_every_room_and_notifies() {
    let mut hub = hub_with(&[(A, "ann"), (B, "bob")]);
    for room in ["r1", "r2"] {
        hub.join(A, room).expect("ok");
        hub.join(B, room).expect("ok");
    }
    drain_texts(&mut hub, A);
    hub.direct(B, &text("pending")).expect("connected");
    assert_eq!(hub.disconnect(B), ["r1", "r2"]);
    assert_eq!(
        drain_texts(&mut hub, A),
        [
            presence_notice("leave", "r1", B, "bob"),
            presence_notice("leave", "r2", B, "bob")
        ]
    );
    assert_eq!(hub.pop_frame(B), None);
    assert_eq!(hub.disconnect(B), Vec::<String>::new());
    assert_eq!(
        hub.direct(B, &text("gone")),
        Err(HubError::UnknownConnection(B))
    );
    assert_eq!(hub.join(B, "r1"), Err(HubError::UnknownConnection(B)));
    hub.connect(B, "bob again")
        .expect("ids may be reused after disconnect");
    assert_eq!(hub.connect(B, "twice"), Err(HubError::AlreadyConnected(B)));
}

#[test]
fn direct_messages_and_ready_list() {
    let mut hub = hub_with(&[(A, "ann"), (B, "bob")]);
    assert_eq!(hub.take_ready(), []);
    assert_eq!(hub.direct(B, &text("psst")), Ok(true));
    assert_eq!(hub.direct(B, &text("again")), Ok(true));
    assert_eq!(
        hub.take_ready(),
        [B],
        "only the empty-to-non-empty transition wakes the writer"
    );
    assert_eq!(hub.queued_bytes(B), 2 + 4 + 2 + 5);
    assert_eq!((hub.queued_frames(B), hub.queued_frames(A)), (2, 0));
    assert_eq!(drain_texts(&mut hub, B), ["psst", "again"]);
    assert_eq!(hub.queued_bytes(B), 0);
    hub.direct(B, &Message::Binary(vec![1, 2, 3]))
        .expect("connected");
    assert_eq!(hub.take_ready(), [B]);
}

#[test]
fn slow_consumer_is_closed_without_slowing_the_others() {
    let config = HubConfig {
        queue_frames_max: 3,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    for (id, user) in [(A, "fast"), (B, "slow"), (C, "fast too")] {
        hub.connect(id, user).expect("fresh");
        hub.join(id, "room").expect("ok");
    }
    drain_texts(&mut hub, A);
    drain_texts(&mut hub, B);
    for round in 0..10 {
        assert_eq!(
            hub.broadcast("room", &text(&format!("m{round}")), None),
            if round < 3 { 3 } else { 2 }
        );
        // The fast consumers keep up; the slow one never reads.
        assert_eq!(drain_texts(&mut hub, A), [format!("m{round}")]);
        assert_eq!(drain_texts(&mut hub, C).last(), Some(&format!("m{round}")));
    }
    assert_eq!(hub.take_overflowed(), [B]);
    assert_eq!(hub.take_overflowed(), [], "reported once");
    assert!(hub.is_overflowed(B) && !hub.is_overflowed(A) && hub.is_connected(B));
    assert_eq!(hub.queued_bytes(B), 0, "its memory is released at once");
    assert_eq!(hub.direct(B, &text("more")), Ok(false));
    hub.disconnect(B);
    assert_eq!(
        drain_texts(&mut hub, A),
        [presence_notice("leave", "room", B, "slow")]
    );
    assert_eq!(OVERFLOW_CLOSE_CODE, 1008);
}

#[test]
fn byte_limit_also_bounds_the_queue() {
    let config = HubConfig {
        queue_bytes_max: 100,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    hub.connect(A, "a").expect("fresh");
    assert_eq!(hub.direct(A, &Message::Binary(vec![0; 90])), Ok(true));
    assert_eq!(hub.direct(A, &Message::Binary(vec![0; 10])), Ok(false));
    assert_eq!(hub.take_overflowed(), [A]);
}

#[test]
fn broadcast_shares_one_encoding() {
    let mut hub = hub_with(&[(A, "a"), (B, "b")]);
    hub.join(A, "r").expect("ok");
    hub.join(B, "r").expect("ok");
    drain_texts(&mut hub, A);
    hub.broadcast("r", &text("shared"), None);
    let first = hub.pop_frame(A).expect("queued");
    let second = hub.pop_frame(B).expect("queued");
    assert!(Arc::ptr_eq(&first, &second));
}

#[test]
fn limits_on_rooms() {
    let config = HubConfig {
        rooms_per_connection_max: 2,
        presence_notices: false,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    hub.connect(A, "a").expect("fresh");
    hub.join(A, "one").expect("ok");
    hub.join(A, "two").expect("ok");
    assert_eq!(hub.join(A, "three"), Err(HubError::TooManyRooms));
    assert_eq!(hub.join(A, ""), Err(HubError::BadRoomName));
    assert_eq!(hub.join(A, "bad\nname"), Err(HubError::BadRoomName));
    assert_eq!(
        hub.join(A, &"x".repeat(ROOM_NAME_BYTES_MAX + 1)),
        Err(HubError::BadRoomName)
    );
}

#[test]
fn presence_notices_escape_names() {
    let notice = presence_notice("join", "r\"1", ConnId(9), "a\\b\u{1}");
    assert_eq!(
        notice,
        r#"{"type":"presence","event":"join","room":"r\"1","id":9,"user":"a\\b\u0001"}"#
    );
}

#[test]
fn a_close_asked_for_comes_after_the_queued_frames() {
    let mut hub = hub_with(&[(A, "ann"), (B, "bob")]);
    assert_eq!(hub.direct(A, &text("last words")), Ok(true));
    assert_eq!(hub.take_ready(), [A]);
    assert_eq!(hub.close(A, 1013, "go away"), Ok(()));
    assert_eq!(
        hub.take_ready(),
        [],
        "its writer is awake for the queued frame"
    );
    assert_eq!(hub.take_close(A), None, "a frame is still queued");
    assert_eq!(
        hub.direct(A, &text("too late")),
        Ok(false),
        "nothing after it"
    );
    assert_eq!(hub.close(A, 1000, "again"), Ok(()), "the first close wins");
    assert_eq!(drain_texts(&mut hub, A), ["last words"]);
    assert_eq!(hub.take_close(A), Some((1013, "go away".to_string())));
    assert_eq!(hub.take_close(A), None, "taken once");
    // An idle connection's writer is woken for the close itself.
    assert_eq!(hub.close(B, 1001, ""), Ok(()));
    assert_eq!(hub.take_ready(), [B]);
    assert_eq!(hub.take_close(B), Some((1001, String::new())));
    assert_eq!(hub.close(C, 1000, ""), Err(HubError::UnknownConnection(C)));
}

#[test]
fn a_message_larger_than_the_byte_limit_reaches_members_that_keep_up() {
    let config = HubConfig {
        queue_bytes_max: 100,
        presence_notices: false,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    for id in [A, B] {
        hub.connect(id, "u").expect("fresh");
        hub.join(id, "room").expect("ok");
    }
    assert_eq!(hub.direct(B, &text("unread")), Ok(true));
    let big = "x".repeat(150);
    // A's queue is empty: it takes the big frame; B already has one waiting: over the limit.
    assert_eq!(hub.broadcast("room", &text(&big), None), 1);
    assert_eq!(hub.take_overflowed(), [B]);
    assert_eq!(drain_texts(&mut hub, A), std::slice::from_ref(&big));
    assert!(!hub.is_overflowed(A));
    // A queue holding a big frame is full for the next one.
    assert_eq!(hub.direct(A, &text(&big)), Ok(true));
    assert_eq!(hub.direct(A, &text("small")), Ok(false));
    assert!(hub.is_overflowed(A));
}
