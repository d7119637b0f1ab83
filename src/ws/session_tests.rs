//! Session scenarios: a handler driven by client frames, and sessions talking through a hub.

use super::*;
use crate::ws::frame::{parse_frame, Opcode, ParseConfig, Status};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Echoes messages; in "room mode" joins `room` on open and broadcasts what it receives.
struct TestHandler {
    room: Option<&'static str>,
    closes: Arc<Mutex<Vec<Ended>>>,
}

impl WsHandler for TestHandler {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        if let (Some(room), Some(hub)) = (self.room, ctx.hub()) {
            let id = ctx.id();
            hub.with(|hub| hub.join(id, room)).expect("joins");
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        match (self.room, ctx.hub()) {
            (Some(room), Some(hub)) => {
                let id = ctx.id();
                hub.with(|hub| hub.broadcast_from(id, room, &message, false))
                    .expect("member");
            }
            _ => ctx.send(&message).expect("open"),
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, ended: &Ended) {
        self.closes.lock().expect("test lock").push(ended.clone());
    }
}

fn handler(room: Option<&'static str>) -> (Box<TestHandler>, Arc<Mutex<Vec<Ended>>>) {
    let closes = Arc::new(Mutex::new(Vec::new()));
    (
        Box::new(TestHandler {
            room,
            closes: Arc::clone(&closes),
        }),
        closes,
    )
}

/// Masked client frames carrying `message`.
fn from_client(message: &Message) -> Vec<u8> {
    let mut client = Connection::new(Config::CLIENT, 0);
    client.send(message).expect("open");
    client.take_output()
}

fn close_from_client(code: u16) -> Vec<u8> {
    let mut client = Connection::new(Config::CLIENT, 0);
    client.close(code, "");
    client.take_output()
}

/// The frames a session wrote, flushing its output.
fn flush(session: &mut Session) -> Vec<(Opcode, Vec<u8>)> {
    let output = session.output().to_vec();
    session.consume_output(output.len());
    let mut rest = output.as_slice();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let Ok(Status::Complete(frame)) = parse_frame(rest, &ParseConfig::CLIENT) else {
            panic!("bad output")
        };
        frames.push((frame.header.opcode, frame.payload.to_vec()));
        rest = &rest[frame.wire_len()..];
    }
    frames
}

fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let inner = Arc::clone(&count);
    (
        Arc::new(move || {
            inner.fetch_add(1, Ordering::SeqCst);
        }),
        count,
    )
}

#[test]
fn echo_session_lifecycle() {
    let (handler, closes) = handler(None);
    let mut session = Session::new(ConnId(1), Config::SERVER, handler, 0);
    session.start();
    session.on_input(&from_client(&Message::Text("hi".into())));
    assert_eq!(flush(&mut session), [(Opcode::Text, b"hi".to_vec())]);
    assert!(!session.is_finished());
    session.on_input(&close_from_client(1000));
    assert!(!session.is_finished(), "the close reply is not flushed yet");
    assert_eq!(flush(&mut session), [(Opcode::Close, vec![0x03, 0xE8])]);
    assert!(session.is_finished());
    session.on_eof();
    assert_eq!(
        *closes.lock().expect("test lock"),
        [Ended::Closed(Some(CloseFrame {
            code: 1000,
            reason: String::new()
        }))]
    );
}

#[test]
fn protocol_failure_ends_once() {
    let (handler, closes) = handler(None);
    let mut session = Session::new(ConnId(1), Config::SERVER, handler, 0);
    session.start();
    session.on_input(&[0x81, 0x02, b'n', b'o']); // Unmasked: a protocol error.
    session.on_eof();
    session.on_tick(100_000);
    assert_eq!(flush(&mut session)[0].0, Opcode::Close);
    assert!(session.is_finished());
    assert_eq!(closes.lock().expect("test lock").len(), 1);
}

#[test]
fn rooms_through_a_shared_hub() {
    let hub = SharedHub::new(HubConfig {
        presence_notices: false,
        ..HubConfig::default()
    });
    let mut sessions = Vec::new();
    let mut wake_counts = Vec::new();
    for id in 1..=3 {
        let (handler, _) = handler(Some("lobby"));
        let mut session = Session::new(ConnId(id), Config::SERVER, handler, 0);
        let (waker, count) = counting_waker();
        session
            .join_hub(Arc::clone(&hub), &format!("user{id}"), waker)
            .expect("fresh id");
        session.start();
        sessions.push(session);
        wake_counts.push(count);
    }
    sessions[0].on_input(&from_client(&Message::Text("hello room".into())));
    assert_eq!(
        wake_counts
            .iter()
            .map(|count| count.load(Ordering::SeqCst))
            .collect::<Vec<_>>(),
        [0, 1, 1]
    );
    assert_eq!(flush(&mut sessions[0]), []);
    for session in &mut sessions[1..] {
        session.on_wake();
        assert_eq!(flush(session), [(Opcode::Text, b"hello room".to_vec())]);
    }
    // A session that ends leaves the hub.
    sessions[2].on_eof();
    assert_eq!(hub.with(|hub| hub.members_of("lobby").len()), 2);
}

#[test]
fn slow_consumer_is_closed_with_1008() {
    let config = HubConfig {
        queue_frames_max: 4,
        presence_notices: false,
        ..HubConfig::default()
    };
    let hub = SharedHub::new(config);
    let mut sessions = Vec::new();
    for id in 1..=2 {
        let (handler, _) = handler(Some("r"));
        let mut session = Session::new(ConnId(id), Config::SERVER, handler, 0);
        let (waker, _) = counting_waker();
        session
            .join_hub(Arc::clone(&hub), "u", waker)
            .expect("fresh id");
        session.start();
        sessions.push(session);
    }
    // Session 2's socket never drains: fill its output past the high-water mark first.
    let big = Message::Binary(vec![0; OUTPUT_HIGH_WATER_BYTES]);
    sessions[0].on_input(&from_client(&big));
    sessions[1].on_wake();
    for _ in 0..5 {
        sessions[0].on_input(&from_client(&Message::Text("more".into())));
    }
    assert!(hub.with(|hub| hub.is_overflowed(ConnId(2))));
    sessions[1].on_wake();
    let frames = flush(&mut sessions[1]);
    let (opcode, payload) = frames.last().expect("frames");
    assert_eq!(
        (*opcode, u16::from_be_bytes([payload[0], payload[1]])),
        (Opcode::Close, 1008)
    );
    assert!(
        !hub.with(|hub| hub.is_connected(ConnId(2))),
        "the slow consumer left the hub"
    );
    // The other member is unaffected.
    sessions[0].on_input(&from_client(&Message::Text("still here".into())));
    assert_eq!(flush(&mut sessions[0]), []);
}

/// Panics in every callback named in `panics`.
struct Panicky {
    panics: &'static [&'static str],
    closes: Arc<Mutex<Vec<Ended>>>,
}

impl WsHandler for Panicky {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>) {
        assert!(!self.panics.contains(&"open"), "on_open panics on purpose");
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        assert!(
            message != Message::Text("boom".into()),
            "on_message panics on purpose"
        );
        ctx.send(&message).expect("open");
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, ended: &Ended) {
        self.closes.lock().expect("test lock").push(ended.clone());
        assert!(
            !self.panics.contains(&"close"),
            "on_close panics on purpose"
        );
    }
}

#[test]
fn a_panicking_handler_closes_its_session_with_1011_and_leaves_the_hub() {
    let hub = SharedHub::new(HubConfig::default());
    let closes = Arc::new(Mutex::new(Vec::new()));
    let handler = Box::new(Panicky {
        panics: &["close"],
        closes: Arc::clone(&closes),
    });
    let mut session = Session::new(ConnId(7), Config::SERVER, handler, 0);
    let (waker, _) = counting_waker();
    session
        .join_hub(Arc::clone(&hub), "u", waker)
        .expect("fresh id");
    session.start();
    session.on_input(&from_client(&Message::Text("ok".into())));
    assert_eq!(flush(&mut session), [(Opcode::Text, b"ok".to_vec())]);
    // The panic stays inside the session: a close with 1011 goes out.
    session.on_input(&from_client(&Message::Text("boom".into())));
    assert_eq!(flush(&mut session), [internal_error_close()]);
    // The peer answers; on_close (panicking too) runs once and the session leaves the hub.
    session.on_input(&close_from_client(1011));
    assert!(session.is_finished());
    assert_eq!(closes.lock().expect("test lock").len(), 1);
    assert!(
        hub.with(|hub| hub.join(ConnId(7), "room")).is_err(),
        "still registered"
    );
    // A panic in on_open closes at once.
    let handler = Box::new(Panicky {
        panics: &["open"],
        closes: Arc::new(Mutex::new(Vec::new())),
    });
    let mut session = Session::new(ConnId(8), Config::SERVER, handler, 0);
    session.start();
    assert_eq!(flush(&mut session), [internal_error_close()]);
}

/// The close frame a session sends after its handler panicked: 1011 and a fixed reason.
fn internal_error_close() -> (Opcode, Vec<u8>) {
    let mut payload = vec![0x03, 0xF3];
    payload.extend_from_slice(b"internal error");
    (Opcode::Close, payload)
}

#[test]
fn a_hub_close_is_sent_after_the_queued_messages() {
    let hub = SharedHub::new(HubConfig::default());
    let (handler, closes) = handler(None);
    let mut session = Session::new(ConnId(1), Config::SERVER, handler, 0);
    let (waker, woken) = counting_waker();
    session
        .join_hub(Arc::clone(&hub), "u", waker)
        .expect("fresh id");
    session.start();
    hub.with(|hub| {
        hub.direct(ConnId(1), &Message::Text("bye".into()))?;
        hub.close(ConnId(1), 1013, "feed ended")
    })
    .expect("connected");
    assert_eq!(woken.load(Ordering::SeqCst), 1);
    session.on_wake();
    let frames = flush(&mut session);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (Opcode::Text, b"bye".to_vec()));
    let (opcode, payload) = &frames[1];
    assert_eq!(
        (*opcode, u16::from_be_bytes([payload[0], payload[1]])),
        (Opcode::Close, 1013)
    );
    assert_eq!(&payload[2..], b"feed ended");
    assert!(!hub.with(|hub| hub.is_connected(ConnId(1))), "left the hub");
    session.on_input(&close_from_client(1013));
    assert!(session.is_finished());
    assert_eq!(
        *closes.lock().expect("test lock"),
        [Ended::Closed(Some(CloseFrame {
            code: 1013,
            reason: String::new()
        }))]
    );
}
