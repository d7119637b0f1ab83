//! Scenario tests of the connection state machine: client frames in, events and bytes out.

use super::*;
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let opcode = Opcode::from_u8(opcode).expect("test uses valid opcodes");
    frame::write_frame(&mut out, fin, opcode, payload, Some(KEY));
    out
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

fn server() -> Connection {
    Connection::new(Config::SERVER, 0)
}

fn events(connection: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| connection.poll_event()).collect()
}

/// The peer's close with 1000 and no reason, as an event.
fn normal_close() -> Event {
    Event::Close(Some(CloseFrame {
        code: 1000,
        reason: String::new(),
    }))
}

fn text(value: &str) -> Event {
    Event::Message(Message::Text(value.to_string()))
}

/// The (unmasked) frames a server wrote, as (opcode, payload) pairs.
fn written_frames(connection: &mut Connection) -> Vec<(Opcode, Vec<u8>)> {
    let output = connection.take_output();
    let mut rest = output.as_slice();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let Ok(Status::Complete(frame)) = frame::parse_frame(rest, &ParseConfig::CLIENT) else {
            panic!("bad output {rest:x?}")
        };
        frames.push((frame.header.opcode, frame.payload.to_vec()));
        rest = &rest[frame.wire_len()..];
    }
    frames
}

fn close_code_written(connection: &mut Connection) -> Option<u16> {
    let frames = written_frames(connection);
    let (opcode, payload) = frames.last()?;
    assert_eq!(*opcode, Opcode::Close);
    Some(u16::from_be_bytes([payload[0], payload[1]]))
}

#[test]
fn text_and_binary_messages() {
    let mut connection = server();
    let mut input = client_frame(true, 1, "héllo".as_bytes());
    input.extend(client_frame(true, 2, &[0, 1, 2, 255]));
    input.extend(client_frame(true, 1, b""));
    connection.receive(&input);
    assert_eq!(
        events(&mut connection),
        [
            text("héllo"),
            Event::Message(Message::Binary(vec![0, 1, 2, 255])),
            text("")
        ]
    );
    assert_eq!(connection.output_len(), 0);
    assert_eq!(connection.state(), State::Open);
}

#[test]
fn fragments_with_control_frames_interleaved() {
    let mut connection = server();
    let mut input = client_frame(false, 1, b"frag");
    input.extend(client_frame(true, 9, b"are you there"));
    input.extend(client_frame(false, 0, b"men"));
    input.extend(client_frame(true, 10, b"unsolicited"));
    input.extend(client_frame(false, 0, b""));
    input.extend(client_frame(true, 0, b"ted"));
    connection.receive(&input);
    assert_eq!(
        events(&mut connection),
        [
            Event::Ping(b"are you there".to_vec()),
            Event::Pong(b"unsolicited".to_vec()),
            text("fragmented")
        ]
    );
    assert_eq!(
        written_frames(&mut connection),
        [(Opcode::Pong, b"are you there".to_vec())]
    );
}

#[test]
fn input_split_at_every_byte_gives_the_same_events() {
    let mut input = client_frame(false, 1, "κόσμε ".as_bytes());
    input.extend(client_frame(true, 9, b"p"));
    input.extend(client_frame(true, 0, &vec![b'x'; 300]));
    input.extend(client_frame(true, 2, &vec![7; 70_000]));
    let mut whole = server();
    whole.receive(&input);
    let expected = events(&mut whole);
    assert_eq!(expected.len(), 3);
    for step in [1, 2, 3, 7, 13, 64, 1000] {
        let mut split = server();
        for piece in input.chunks(step) {
            split.receive(piece);
        }
        assert_eq!(events(&mut split), expected, "step {step}");
    }
}

#[test]
fn invalid_utf8_fails_fast_within_a_frame() {
    let mut payload = b"valid text ".to_vec();
    payload.extend_from_slice(b"\xED\xA0\x80"); // A surrogate: invalid at its second byte.
    payload.resize(1000, b'a');
    let wire = client_frame(true, 1, &payload);
    let mut connection = server();
    // Header (8 bytes with the 16-bit length and mask) plus payload up to the bad byte.
    connection.receive(&wire[..8 + 12]);
    assert_eq!(events(&mut connection), []);
    connection.receive(&wire[8 + 12..8 + 13]);
    assert_eq!(
        events(&mut connection),
        [Event::Failed(ProtocolError::InvalidUtf8)]
    );
    assert_eq!(connection.state(), State::Closed);
    assert_eq!(close_code_written(&mut connection), Some(1007));
}

#[test]
fn invalid_utf8_fails_fast_across_fragments() {
    let mut connection = server();
    connection.receive(&client_frame(false, 1, b"ok \xF0\x90"));
    assert_eq!(events(&mut connection), []);
    connection.receive(&client_frame(false, 0, b"\x80\x80 fine"));
    assert_eq!(events(&mut connection), []);
    connection.receive(&client_frame(false, 0, b"\xC0"));
    assert_eq!(
        events(&mut connection),
        [Event::Failed(ProtocolError::InvalidUtf8)]
    );
    assert_eq!(close_code_written(&mut connection), Some(1007));
}

#[test]
fn text_ending_mid_sequence_is_invalid() {
    let mut connection = server();
    connection.receive(&client_frame(true, 1, b"cut \xE2\x82"));
    assert_eq!(
        events(&mut connection),
        [Event::Failed(ProtocolError::InvalidUtf8)]
    );
}

#[test]
fn answers_to_earlier_messages_precede_the_failure_close() {
    // Autobahn 3.2: a message, then a frame with a reserved bit, then a ping, in one read.
    let mut input = client_frame(true, 1, b"Hello, world!");
    input.extend([0xA1, 0x80, 1, 2, 3, 4]);
    input.extend(client_frame(true, 9, b""));
    let mut connection = server();
    connection.receive(&input);
    let mut seen = Vec::new();
    while let Some(event) = connection.poll_event() {
        if let Event::Message(message) = &event {
            connection
                .send(message)
                .expect("still open while the failure is not yet polled");
        }
        seen.push(event);
    }
    assert_eq!(
        seen,
        [
            text("Hello, world!"),
            Event::Failed(ProtocolError::Frame(FrameError::ReservedBits))
        ]
    );
    let frames = written_frames(&mut connection);
    assert_eq!(frames[0], (Opcode::Text, b"Hello, world!".to_vec()));
    assert_eq!(frames[1].0, Opcode::Close);
    assert_eq!(
        frames.len(),
        2,
        "the ping after the bad frame is not answered"
    );
    assert_eq!(connection.state(), State::Closed);
}

#[test]
fn pongs_follow_answers_to_earlier_messages() {
    let mut input = client_frame(true, 1, b"first");
    input.extend(client_frame(true, 9, b"then ping"));
    let mut connection = server();
    connection.receive(&input);
    while let Some(event) = connection.poll_event() {
        if let Event::Message(message) = &event {
            connection.send(message).expect("open");
        }
    }
    let frames = written_frames(&mut connection);
    assert_eq!(
        frames,
        [
            (Opcode::Text, b"first".to_vec()),
            (Opcode::Pong, b"then ping".to_vec())
        ]
    );
}

#[test]
fn fragment_sequencing_errors() {
    let cases: [(Vec<u8>, ProtocolError); 3] = [
        (
            client_frame(true, 0, b"orphan"),
            ProtocolError::UnexpectedContinuation,
        ),
        (
            [client_frame(false, 1, b"a"), client_frame(true, 1, b"b")].concat(),
            ProtocolError::ExpectedContinuation,
        ),
        (
            [client_frame(false, 2, b"a"), client_frame(true, 2, b"b")].concat(),
            ProtocolError::ExpectedContinuation,
        ),
    ];
    for (input, error) in cases {
        let mut connection = server();
        connection.receive(&input);
        assert_eq!(events(&mut connection), [Event::Failed(error)]);
        assert_eq!(close_code_written(&mut connection), Some(1002));
    }
}

#[test]
fn header_errors_fail_with_their_code() {
    let mut unmasked = Vec::new();
    frame::write_frame(&mut unmasked, true, Opcode::Text, b"hi", None);
    let cases: [(Vec<u8>, u16); 4] = [
        (unmasked, 1002),
        (vec![0x83, 0x80], 1002),
        (vec![0xC1, 0x80], 1002),
        (vec![0x09, 0x80, 1, 2, 3, 4], 1002),
    ];
    for (input, code) in cases {
        let mut connection = server();
        connection.receive(&input);
        assert!(
            matches!(
                events(&mut connection).as_slice(),
                [Event::Failed(ProtocolError::Frame(_))]
            ),
            "{input:x?}"
        );
        assert_eq!(close_code_written(&mut connection), Some(code));
    }
}

#[test]
fn size_limits_fail_with_1009_before_the_payload_arrives() {
    let config = Config {
        frame_bytes_max: 100,
        message_bytes_max: 150,
        ..Config::SERVER
    };
    let mut connection = Connection::new(config, 0);
    let wire = client_frame(true, 2, &[0; 101]);
    connection.receive(&wire[..8]); // Header only.
    assert_eq!(
        events(&mut connection),
        [Event::Failed(ProtocolError::Frame(FrameError::TooLarge))]
    );
    assert_eq!(close_code_written(&mut connection), Some(1009));

    let mut connection = Connection::new(config, 0);
    connection.receive(&client_frame(false, 2, &[0; 100]));
    connection.receive(&client_frame(true, 9, b"still fine"));
    let next = client_frame(true, 0, &[0; 51]);
    connection.receive(&next[..6]);
    assert_eq!(
        events(&mut connection),
        [
            Event::Ping(b"still fine".to_vec()),
            Event::Failed(ProtocolError::MessageTooBig)
        ]
    );
    assert_eq!(close_code_written(&mut connection), Some(1009));
}

#[test]
fn peer_initiated_close_is_echoed() {
    let mut connection = server();
    connection.receive(&client_frame(true, 8, &close_payload(1001, "bye")));
    assert_eq!(
        events(&mut connection),
        [Event::Close(Some(CloseFrame {
            code: 1001,
            reason: "bye".into()
        }))]
    );
    assert_eq!(connection.state(), State::Closed);
    assert_eq!(
        written_frames(&mut connection),
        [(Opcode::Close, vec![0x03, 0xE9])]
    );
    assert_eq!(connection.send_text("late"), Err(SendError::Closed));
    // Input after the close is ignored.
    connection.receive(&client_frame(true, 1, b"ignored"));
    assert_eq!(events(&mut connection), []);
}

#[test]
fn empty_close_is_echoed_empty() {
    let mut connection = server();
    connection.receive(&client_frame(true, 8, b""));
    assert_eq!(events(&mut connection), [Event::Close(None)]);
    assert_eq!(written_frames(&mut connection), [(Opcode::Close, vec![])]);
}

#[test]
fn invalid_close_payloads() {
    let cases: [(Vec<u8>, u16); 4] = [
        (vec![0x03], 1002),
        (close_payload(1005, ""), 1002),
        (close_payload(2999, ""), 1002),
        (b"\x03\xE8\xFF\xFE".to_vec(), 1007),
    ];
    for (payload, code) in cases {
        let mut connection = server();
        connection.receive(&client_frame(true, 8, &payload));
        assert!(matches!(
            events(&mut connection).as_slice(),
            [Event::Failed(ProtocolError::Close(_))]
        ));
        assert_eq!(
            close_code_written(&mut connection),
            Some(code),
            "payload {payload:x?}"
        );
    }
}

#[test]
fn server_initiated_close_waits_for_the_peer() {
    let mut connection = server();
    connection.receive(&client_frame(false, 1, b"half a mess"));
    connection.close(1000, "done");
    assert_eq!(connection.state(), State::Closing);
    assert_eq!(
        written_frames(&mut connection),
        [(Opcode::Close, close_payload(1000, "done"))]
    );
    assert_eq!(connection.send_binary(b"no"), Err(SendError::Closed));
    // Data still in flight from the peer is skipped, pings are not answered.
    connection.receive(&client_frame(true, 0, b"age"));
    connection.receive(&client_frame(true, 1, b"more"));
    connection.receive(&client_frame(true, 9, b""));
    assert_eq!(events(&mut connection), []);
    assert_eq!(connection.output_len(), 0);
    connection.receive(&client_frame(true, 8, &close_payload(1000, "")));
    assert_eq!(events(&mut connection), [normal_close()]);
    assert_eq!(connection.state(), State::Closed);
    assert_eq!(
        connection.output_len(),
        0,
        "a close answering ours is not answered again"
    );
}

/// Closed by the application while a data frame is half received: the rest of that frame
/// is skipped like the frames after it, and the peer's close ends the connection. (The rest
/// of the frame reached a message kind the close had dropped: a panic, found by fuzzing.)
#[test]
fn a_close_in_the_middle_of_a_frame_skips_the_rest_of_it() {
    for fin in [true, false] {
        let mut connection = server();
        let frame = client_frame(fin, 1, b"a text frame cut by our close");
        let (head, rest) = frame.split_at(10);
        connection.receive(head);
        connection.close(1000, "bye");
        connection.receive(rest);
        connection.receive(&client_frame(true, 0, b" and its end"));
        connection.receive(&client_frame(true, 8, &close_payload(1000, "")));
        assert_eq!(events(&mut connection), [normal_close()], "fin {fin}");
        assert_eq!(connection.state(), State::Closed);
    }
}

/// The same through the connection's own close: a client silent mid-frame past the pong
/// deadline is closed (1001), and the rest of its frame arriving after that is skipped.
#[test]
fn a_ping_timeout_in_the_middle_of_a_frame_skips_the_rest_of_it() {
    let mut connection = server();
    let frame = client_frame(true, 1, b"hello");
    let (head, rest) = frame.split_at(frame.len() - 2);
    connection.receive(head);
    let ping = Config::SERVER.ping_interval_ms;
    let deadline = ping + Config::SERVER.pong_timeout_ms;
    for now in [ping, 2 * ping, 2 * ping + deadline] {
        connection.tick(now);
    }
    assert_eq!(connection.state(), State::Closing, "timed out");
    connection.receive(rest);
    assert!(
        !events(&mut connection)
            .iter()
            .any(|e| matches!(e, Event::Message(_))),
        "the cut message is not delivered"
    );
}

#[test]
fn close_timeout_abandons() {
    let mut connection = server();
    connection.tick(10);
    connection.close(1000, "");
    connection.tick(10 + CLOSE_TIMEOUT_MS - 1);
    assert_eq!(connection.state(), State::Closing);
    connection.tick(10 + CLOSE_TIMEOUT_MS);
    assert_eq!(
        events(&mut connection),
        [Event::Abandoned(Abandon::CloseTimeout)]
    );
    assert_eq!(connection.state(), State::Closed);
}

#[test]
fn ping_timer_and_pong_timeout() {
    let config = Config {
        ping_interval_ms: 1000,
        pong_timeout_ms: 500,
        ..Config::SERVER
    };
    let mut connection = Connection::new(config, 0);
    connection.tick(999);
    assert_eq!(connection.output_len(), 0);
    connection.tick(1000);
    assert_eq!(written_frames(&mut connection), [(Opcode::Ping, vec![])]);
    connection.tick(1200);
    assert_eq!(connection.output_len(), 0, "one ping outstanding at a time");
    // The peer answers: the timer restarts from the tick that saw the bytes.
    connection.receive(&client_frame(true, 10, b""));
    connection.tick(1300);
    connection.tick(2299);
    assert_eq!(connection.output_len(), 0);
    connection.tick(2300);
    assert_eq!(written_frames(&mut connection), [(Opcode::Ping, vec![])]);
    // No answer this time.
    connection.tick(2800);
    assert_eq!(
        events(&mut connection),
        [Event::Pong(vec![]), Event::TimedOut(1001)]
    );
    assert_eq!(connection.state(), State::Closing);
    assert_eq!(close_code_written(&mut connection), Some(1001));
}

#[test]
fn idle_timeout_counts_messages_only() {
    let config = Config {
        ping_interval_ms: 0,
        idle_timeout_ms: 5000,
        ..Config::SERVER
    };
    let mut connection = Connection::new(config, 0);
    connection.receive(&client_frame(true, 1, b"hi"));
    connection.tick(1000);
    connection.receive(&client_frame(true, 9, b""));
    connection.tick(5999);
    assert_eq!(connection.state(), State::Open);
    connection.tick(6000);
    assert_eq!(connection.state(), State::Closing);
    assert_eq!(
        events(&mut connection),
        [text("hi"), Event::Ping(vec![]), Event::TimedOut(1001)]
    );
}

#[test]
fn eof_abandons_once() {
    let mut connection = server();
    connection.receive_eof();
    connection.receive_eof();
    assert_eq!(
        connection.state(),
        State::Open,
        "the state follows the polled events"
    );
    assert_eq!(events(&mut connection), [Event::Abandoned(Abandon::Eof)]);
    assert_eq!(connection.state(), State::Closed);
}

#[test]
fn output_is_consumed_in_pieces() {
    let mut connection = server();
    connection.send_text("abc").expect("open");
    connection.send_binary(&[1; 200_000]).expect("open");
    let total = connection.output_len();
    let mut written = Vec::new();
    while connection.output_len() > 0 {
        let step = connection.output_len().min(70_000);
        written.extend_from_slice(&connection.output()[..step]);
        connection.consume_output(step);
    }
    assert_eq!(written.len(), total);
    assert_eq!(&written[..5], b"\x81\x03abc");
    assert_eq!(connection.ping(&[0; 126]), Err(SendError::ControlTooLong));
}

#[test]
fn client_and_server_talk() {
    let mut client = Connection::new(Config::CLIENT, 0);
    let mut server = server();
    client.send_text("hello from the client").expect("open");
    client.send_binary(&[9; 1000]).expect("open");
    client.ping(b"p").expect("open");
    let masked = client.take_output();
    assert_eq!(masked[1] & 0x80, 0x80, "client frames are masked");
    server.receive(&masked);
    assert_eq!(
        events(&mut server),
        [
            text("hello from the client"),
            Event::Message(Message::Binary(vec![9; 1000])),
            Event::Ping(b"p".to_vec())
        ]
    );
    server
        .send_encoded(&encode_server_message(&Message::Text("broadcast".into())))
        .expect("open");
    server.close(1000, "bye");
    client.receive(&server.take_output());
    assert_eq!(
        events(&mut client)[..2],
        [Event::Pong(b"p".to_vec()), text("broadcast")]
    );
    assert_eq!(client.state(), State::Closed);
    server.receive(&client.take_output());
    assert_eq!(events(&mut server), [normal_close()]);
    assert_eq!(server.state(), State::Closed);
}

/// A valid client stream: a mix of whole and fragmented messages with pings in between.
fn message_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Event>)> {
    let piece = prop_oneof![
        "\\PC{0,40}".prop_map(|s| (true, s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
    ];
    proptest::collection::vec((piece, 1usize..4, any::<bool>()), 0..8).prop_map(|messages| {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for ((is_text, payload), fragments, ping) in messages {
            // Text is split only at char boundaries here; byte splits are tested elsewhere.
            let cut = if is_text {
                0
            } else {
                payload.len() / fragments
            };
            let chunks: Vec<&[u8]> = if cut == 0 {
                vec![&payload[..]]
            } else {
                payload.chunks(cut).collect()
            };
            for (index, chunk) in chunks.iter().enumerate() {
                let opcode = if index > 0 {
                    0
                } else if is_text {
                    1
                } else {
                    2
                };
                wire.extend(client_frame(index + 1 == chunks.len(), opcode, chunk));
                // The ping goes after the first frame: inside the message when it has several.
                if ping && index == 0 {
                    wire.extend(client_frame(true, 9, b"x"));
                    if chunks.len() > 1 {
                        expected.push(Event::Ping(b"x".to_vec()));
                    }
                }
            }
            let fragmented = chunks.len() > 1;
            let message = if is_text {
                Message::Text(String::from_utf8(payload).expect("generated from a string"))
            } else {
                Message::Binary(payload)
            };
            expected.push(Event::Message(message));
            if ping && !fragmented {
                expected.push(Event::Ping(b"x".to_vec()));
            }
        }
        (wire, expected)
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut connection = server();
        for chunk in &chunks {
            connection.receive(chunk);
        }
        let _ = events(&mut connection);
        connection.tick(1);
    }

    #[test]
    fn valid_streams_reassemble_at_any_split((wire, expected) in message_stream(), step in 1usize..50) {
        let mut connection = server();
        for piece in wire.chunks(step) {
            connection.receive(piece);
        }
        prop_assert_eq!(events(&mut connection), expected);
        prop_assert_eq!(connection.state(), State::Open);
    }
}

// permessage-deflate (RFC 7692) on the connection.

fn deflate_config(role: Role, params: Params) -> Config {
    let base = match role {
        Role::Server => Config::SERVER,
        Role::Client => Config::CLIENT,
    };
    Config {
        deflate: Some(params),
        ..base
    }
}

/// A masked client frame with RSV1 set.
fn compressed_client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let opcode = Opcode::from_u8(opcode).expect("test uses valid opcodes");
    frame::write_frame_rsv(&mut out, fin, RSV1, opcode, payload, Some(KEY));
    out
}

#[test]
fn rfc7692_hello_in_one_and_in_two_frames() {
    let mut connection = Connection::new(deflate_config(Role::Server, Params::DEFAULT), 0);
    // §7.2.3.1, then §7.2.3.2 (the window is shared), then the first example fragmented.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut input = compressed_client_frame(true, 1, &hello);
    input.extend(compressed_client_frame(
        true,
        1,
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ));
    input.extend(compressed_client_frame(false, 1, &hello[..3]));
    input.extend(client_frame(true, 9, b"ping between fragments"));
    input.extend(client_frame(true, 0, &hello[3..]));
    connection.receive(&input);
    let got = events(&mut connection);
    assert_eq!(
        got,
        [
            text("Hello"),
            text("Hello"),
            Event::Ping(b"ping between fragments".to_vec()),
            text("Hello")
        ]
    );
}

#[test]
fn rsv1_without_the_extension_or_on_the_wrong_frame_is_1002() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut plain = server();
    plain.receive(&compressed_client_frame(true, 1, &hello));
    assert!(matches!(
        events(&mut plain)[..],
        [Event::Failed(ProtocolError::Frame(
            FrameError::ReservedBits
        ))]
    ));
    assert_eq!(close_code_written(&mut plain), Some(1002));

    let mut continuation = Connection::new(deflate_config(Role::Server, Params::DEFAULT), 0);
    let mut input = client_frame(false, 1, b"He");
    let mut rsv1_continuation = client_frame(true, 0, b"llo");
    rsv1_continuation[0] |= RSV1 << 4;
    input.extend(rsv1_continuation);
    continuation.receive(&input);
    assert_eq!(
        close_code_written_after_events(&mut continuation),
        Some(1002)
    );

    let mut control = Connection::new(deflate_config(Role::Server, Params::DEFAULT), 0);
    let mut ping = client_frame(true, 9, b"");
    ping[0] |= RSV1 << 4;
    control.receive(&ping);
    assert_eq!(close_code_written_after_events(&mut control), Some(1002));
}

fn close_code_written_after_events(connection: &mut Connection) -> Option<u16> {
    let _ = events(connection);
    close_code_written(connection)
}

#[test]
fn compressed_zip_bomb_fails_with_1009() {
    let config = Config {
        message_bytes_max: 64 * 1024,
        ..deflate_config(Role::Server, Params::DEFAULT)
    };
    let mut connection = Connection::new(config, 0);
    let packed = crate::crypto::deflate::compress_raw_sync(&vec![b'a'; 8 << 20]);
    let payload = &packed[..packed.len() - 4];
    assert!(
        payload.len() < config.message_bytes_max,
        "the bomb itself is small"
    );
    connection.receive(&compressed_client_frame(true, 2, payload));
    assert_eq!(
        events(&mut connection),
        [Event::Failed(ProtocolError::MessageTooBig)]
    );
    assert_eq!(close_code_written(&mut connection), Some(1009));
}

#[test]
fn bad_compressed_data_and_bad_inflated_text_fail_with_1007() {
    let mut broken = Connection::new(deflate_config(Role::Server, Params::DEFAULT), 0);
    broken.receive(&compressed_client_frame(true, 2, &[0xff, 0xff, 0xff]));
    assert!(matches!(
        events(&mut broken)[..],
        [Event::Failed(ProtocolError::Compression(_))]
    ));
    assert_eq!(close_code_written(&mut broken), Some(1007));

    let mut invalid = Connection::new(deflate_config(Role::Server, Params::DEFAULT), 0);
    let packed = crate::crypto::deflate::compress_raw_sync(&[b'a', 0xff, b'b']);
    invalid.receive(&compressed_client_frame(
        true,
        1,
        &packed[..packed.len() - 4],
    ));
    assert_eq!(
        events(&mut invalid),
        [Event::Failed(ProtocolError::InvalidUtf8)]
    );
    assert_eq!(close_code_written(&mut invalid), Some(1007));
}

#[test]
fn deflate_client_and_server_talk_with_context_takeover() {
    let params = Params {
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        ..Params::DEFAULT
    };
    let mut client = Connection::new(deflate_config(Role::Client, params), 0);
    let mut server = Connection::new(deflate_config(Role::Server, params), 0);
    let long = "{\"event\":\"update\",\"id\":1234,\"fields\":[\"a\",\"b\",\"c\"]} ".repeat(8);
    let mut wire_sizes = Vec::new();
    for round in 0..3 {
        client.send_text(&long).expect("open");
        client.send_binary(b"short").expect("open");
        server.receive(&client.take_output());
        let got = events(&mut server);
        assert_eq!(
            got,
            [
                text(&long),
                Event::Message(Message::Binary(b"short".to_vec()))
            ],
            "round {round}"
        );
        server.send_text(&long).expect("open");
        server.send_text("tiny").expect("open");
        let wire = server.take_output();
        // A compressed frame (RSV1) first, then a plain one below the threshold.
        assert_eq!(wire[0], 0xC1, "round {round}");
        wire_sizes.push(wire.len());
        client.receive(&wire);
        assert_eq!(events(&mut client), [text(&long), text("tiny")]);
    }
    assert!(
        wire_sizes[1] < wire_sizes[0],
        "server keeps its window: {wire_sizes:?}"
    );
    assert!(long.len() > 4 * (wire_sizes[0] - 8), "{wire_sizes:?}");
}
