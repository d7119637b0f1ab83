//! Unit tests of permessage-deflate negotiation and message compression (RFC 7692).

use super::*;

const LIMIT: usize = 1 << 20;

/// Header values offered, and the parameters agreed with their answer (`None`: declined).
type NegotiationCase = (&'static [&'static str], Option<(Params, &'static str)>);

/// Negotiation table: header values in, agreed parameters (or a decline) and answer out.
#[test]
fn negotiation_table() {
    let pd = |server_nct, client_nct, server_bits, client_bits| Params {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    let cases: &[NegotiationCase] = &[
        (&["permessage-deflate"], Some((Params::DEFAULT, "permessage-deflate"))),
        (
            &["permessage-deflate; client_max_window_bits"],
            Some((Params::DEFAULT, "permessage-deflate")),
        ),
        (
            &["Permessage-Deflate ;  Server_No_Context_Takeover ; client_no_context_takeover"],
            Some((
                pd(true, true, 15, 15),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            )),
        ),
        (
            &["permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"],
            Some((pd(false, false, 10, 9), "permessage-deflate; server_max_window_bits=10")),
        ),
        (
            &["permessage-deflate; server_max_window_bits=\"8\""],
            Some((pd(false, false, 8, 15), "permessage-deflate; server_max_window_bits=8")),
        ),
        // Invalid offers are declined one by one; the next acceptable one wins.
        (
            &["permessage-deflate; server_max_window_bits=7, permessage-deflate; server_no_context_takeover"],
            Some((pd(true, false, 15, 15), "permessage-deflate; server_no_context_takeover")),
        ),
        (
            &["x-webkit-deflate-frame", "foo, permessage-deflate; client_max_window_bits=15"],
            Some((Params::DEFAULT, "permessage-deflate")),
        ),
        (&[], None),
        (&["x-webkit-deflate-frame"], None),
        (&["permessage-deflate; server_max_window_bits"], None),
        (&["permessage-deflate; server_max_window_bits=16"], None),
        (&["permessage-deflate; server_max_window_bits=0x0f"], None),
        (&["permessage-deflate; client_max_window_bits=7"], None),
        (&["permessage-deflate; client_max_window_bits=100"], None),
        (&["permessage-deflate; server_no_context_takeover=1"], None),
        (&["permessage-deflate; client_no_context_takeover=\"\""], None),
        (&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (
            &["permessage-deflate; server_max_window_bits=9; server_max_window_bits=10"],
            None,
        ),
        (&["permessage-deflate; unknown_parameter"], None),
        (&["permessage-deflate; client_max_window_bits; client_max_window_bits"], None),
        // Malformed lists decline everything: offers cannot be told apart.
        (&["permessage-deflate; server_max_window_bits=\"10"], None),
        (&["permessage-deflate; a b"], None),
        (&["; server_no_context_takeover"], None),
        (&["permessage-deflate;;"], None),
    ];
    for (values, expected) in cases {
        let agreed = negotiate(values.iter().copied());
        assert_eq!(
            agreed.map(|params| (params, params.response())),
            expected.map(|(params, answer)| (params, answer.to_string())),
            "{values:?}"
        );
    }
}

#[test]
fn too_many_offers_are_cut() {
    let mut offers = vec!["x-other"; OFFERS_MAX];
    offers.push("permessage-deflate");
    assert_eq!(negotiate(offers.iter().copied()), None);
    offers[OFFERS_MAX - 1] = "permessage-deflate";
    assert_eq!(negotiate(offers.iter().copied()), Some(Params::DEFAULT));
}

#[test]
fn client_reads_the_answer_strictly() {
    let answer = "permessage-deflate; server_no_context_takeover; server_max_window_bits=12";
    let Some(params) = Params::from_response(answer) else {
        panic!("valid answer refused")
    };
    assert_eq!(
        (
            params.server_no_context_takeover,
            params.server_max_window_bits
        ),
        (true, 12)
    );
    assert_eq!(Params::from_response(&params.response()), Some(params));
    for bad in [
        "permessage-deflate, permessage-deflate",
        "x-other",
        "permessage-deflate; server_max_window_bits=5",
        "",
    ] {
        assert_eq!(Params::from_response(bad), None, "{bad:?}");
    }
}

#[test]
fn rfc7692_single_message_hello() {
    // §7.2.3.1: "Hello" in a fixed block, sync tail removed.
    let mut server = Deflate::new(Params::DEFAULT, Role::Server);
    let payload = vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(server.decompress(payload, LIMIT), Ok(b"Hello".to_vec()));
}

#[test]
fn rfc7692_sliding_window_is_shared_across_messages() {
    // §7.2.3.2: the second "Hello" is a back-reference into the first message.
    let first = vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let second = vec![0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut server = Deflate::new(Params::DEFAULT, Role::Server);
    assert_eq!(
        server.decompress(first.clone(), LIMIT),
        Ok(b"Hello".to_vec())
    );
    assert_eq!(
        server.decompress(second.clone(), LIMIT),
        Ok(b"Hello".to_vec())
    );
    // Without takeover from the client the window starts empty: the reference is invalid.
    let no_takeover = Params {
        client_no_context_takeover: true,
        ..Params::DEFAULT
    };
    let mut server = Deflate::new(no_takeover, Role::Server);
    assert_eq!(server.decompress(first, LIMIT), Ok(b"Hello".to_vec()));
    assert_eq!(
        server.decompress(second, LIMIT),
        Err(DeflateError::DistanceTooFar)
    );
}

#[test]
fn rfc7692_other_block_shapes() {
    let mut server = Deflate::new(Params::DEFAULT, Role::Server);
    // §7.2.3.3: a stored ("no compression") block.
    let stored = vec![
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(server.decompress(stored, LIMIT), Ok(b"Hello".to_vec()));
    // §7.2.3.4: a final block, then the header byte of an empty stored block.
    let final_block = vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(server.decompress(final_block, LIMIT), Ok(b"Hello".to_vec()));
    // §7.2.3.5: two blocks in one message.
    let two = vec![
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(server.decompress(two, LIMIT), Ok(b"Hello".to_vec()));
    // Garbage after a final block is refused.
    let trailing = vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x01, 0x02];
    assert_eq!(
        server.decompress(trailing, LIMIT),
        Err(DeflateError::TrailingData)
    );
    // A stream cut inside a block is refused.
    assert_eq!(
        server.decompress(vec![0xf2, 0x48, 0xcd], LIMIT),
        Err(DeflateError::Truncated)
    );
}

#[test]
fn small_and_incompressible_messages_are_sent_plain() {
    let mut server = Deflate::new(Params::DEFAULT, Role::Server);
    assert_eq!(server.compress(&[b'a'; COMPRESS_BYTES_MIN - 1]), None);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..500)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    assert_eq!(server.compress(&noise), None);
    assert!(
        server.send_history.is_empty(),
        "unsent data is not in the window"
    );
    let text = "permessage-deflate ".repeat(20);
    let packed = server
        .compress(text.as_bytes())
        .expect("repetitive text shrinks");
    assert!(packed.len() < text.len() / 4, "{} bytes", packed.len());
    let mut client = Deflate::new(Params::DEFAULT, Role::Client);
    assert_eq!(client.decompress(packed, LIMIT), Ok(text.into_bytes()));
}

#[test]
fn context_takeover_across_messages() {
    let message =
        b"{\"type\":\"presence\",\"room\":\"lobby\",\"user\":\"ann\",\"online\":true}".repeat(2);
    let cases = [
        (Params::DEFAULT, true),
        (
            Params {
                server_no_context_takeover: true,
                ..Params::DEFAULT
            },
            false,
        ),
    ];
    for (params, takeover) in cases {
        let mut server = Deflate::new(params, Role::Server);
        let mut client = Deflate::new(params, Role::Client);
        let mut sizes = Vec::new();
        for round in 0..4 {
            let packed = server.compress(&message).expect("compressible");
            sizes.push(packed.len());
            let back = client.decompress(packed, LIMIT);
            assert_eq!(back.as_deref(), Ok(&message[..]), "round {round}");
        }
        if takeover {
            assert!(sizes[1] * 3 < sizes[0], "the window helps: {sizes:?}");
        } else {
            assert!(sizes.iter().all(|&size| size == sizes[0]), "{sizes:?}");
        }
    }
}

#[test]
fn client_direction_uses_client_parameters() {
    let params = Params {
        client_no_context_takeover: true,
        client_max_window_bits: 9,
        ..Params::DEFAULT
    };
    let mut client = Deflate::new(params, Role::Client);
    let mut server = Deflate::new(params, Role::Server);
    let message: Vec<u8> = (0..3000u32)
        .map(|i| b"abcdefghij"[(i % 7 + i / 700) as usize % 10])
        .collect();
    for _ in 0..3 {
        let packed = client.compress(&message).expect("compressible");
        assert_eq!(
            server.decompress(packed, LIMIT).as_deref(),
            Ok(&message[..])
        );
    }
    assert_eq!(client.send_window_bytes, 512);
    assert!(client.send_history.is_empty() && server.receive_history.is_empty());
}

#[test]
fn zip_bomb_stops_at_the_limit() {
    // 16 MiB of zeros compress to a few KiB; the receiver allows 1 MiB.
    let bomb = deflate::compress_raw_sync(&vec![0u8; 16 << 20]);
    let payload = bomb[..bomb.len() - SYNC_TAIL.len()].to_vec();
    assert!(payload.len() < 64 * 1024, "{} bytes", payload.len());
    let mut server = Deflate::new(Params::DEFAULT, Role::Server);
    assert_eq!(
        server.decompress(payload.clone(), LIMIT),
        Err(DeflateError::OutputTooLarge)
    );
    assert!(
        server.receive_history.is_empty(),
        "a refused message is not remembered"
    );
    let mut roomy = Deflate::new(Params::DEFAULT, Role::Server);
    assert_eq!(
        roomy.decompress(payload, 16 << 20).map(|data| data.len()),
        Ok(16 << 20),
        "the same message fits a limit of its size exactly"
    );
}

#[test]
fn windows_keep_their_tail() {
    let mut history = Vec::new();
    remember(&mut history, b"abc", 4);
    remember(&mut history, b"de", 4);
    assert_eq!(history, b"bcde");
    remember(&mut history, b"0123456", 4);
    assert_eq!(history, b"3456");
}

proptest::proptest! {
    #[test]
    fn prop_arbitrary_headers_never_panic(value in "\\PC{0,80}") {
        let _ = negotiate([value.as_str()]);
        let _ = Params::from_response(&value);
    }

    #[test]
    fn prop_messages_round_trip_with_takeover(
        messages in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..700), 1..6),
        server_bits in WINDOW_BITS_MIN..=WINDOW_BITS_MAX,
        server_reset in proptest::bool::ANY,
    ) {
        let params = Params {
            server_no_context_takeover: server_reset,
            server_max_window_bits: server_bits,
            ..Params::DEFAULT
        };
        let mut server = Deflate::new(params, Role::Server);
        let mut client = Deflate::new(params, Role::Client);
        for message in &messages {
            if let Some(packed) = server.compress(message) {
                let back = client.decompress(packed, LIMIT);
                proptest::prop_assert_eq!(back.as_ref(), Ok(message));
            }
        }
    }

    #[test]
    fn prop_random_payloads_never_panic(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let mut server = Deflate::new(Params::DEFAULT, Role::Server);
        let _ = server.decompress(payload, 10_000);
    }
}
