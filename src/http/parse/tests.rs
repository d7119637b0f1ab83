//! Parser tests: a case table, every prefix of a valid head is Partial, random bytes never panic.

use super::*;
use proptest::prelude::*;

const LIMITS: HeadLimits = HeadLimits {
    request_line_bytes_max: 256,
    head_bytes_max: 1024,
};

/// (method, target, version, headers, head length) of a complete head.
type Parsed = (String, String, Version, Vec<(String, String)>, usize);

fn parse(input: &[u8]) -> Result<Status<Parsed>, ParseError> {
    let mut slots = [HeaderSlot::default(); 8];
    Ok(match parse_head(input, &LIMITS, &mut slots)? {
        Status::Partial => Status::Partial,
        Status::Complete(head) => Status::Complete((
            head.method.to_string(),
            head.target.to_string(),
            head.version,
            slots[..head.header_count]
                .iter()
                .map(|s| (s.name.to_string(), s.value_text().into_owned()))
                .collect(),
            head.head_len,
        )),
    })
}

fn check_error(input: &[u8], expected: ParseError) {
    assert_eq!(
        parse(input),
        Err(expected),
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

#[test]
fn valid_heads() {
    let input = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Pad: \t v  \t\r\n\r\nBODY";
    let Status::Complete((m, t, v, h, len)) = parse(input).expect("ok") else {
        panic!("partial")
    };
    assert_eq!(
        (m.as_str(), t.as_str(), v),
        ("GET", "/a?b=1", Version::Http11)
    );
    assert_eq!(h[0], ("Host".to_string(), "x".to_string()));
    assert_eq!(h[1], ("X-Empty".to_string(), String::new()));
    assert_eq!(h[2], ("X-Pad".to_string(), "v".to_string()));
    assert_eq!(&input[len..], b"BODY");
    let Status::Complete((m, t, v, h, _)) =
        parse(b"\r\n\r\nPURGE http://h/x HTTP/1.0\r\n\r\n").expect("ok")
    else {
        panic!("partial")
    };
    assert_eq!(
        (m.as_str(), t.as_str(), v, h.len()),
        ("PURGE", "http://h/x", Version::Http10, 0)
    );
    assert!(matches!(
        parse("GET / HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n".as_bytes()),
        Ok(Status::Complete(_))
    ));
}

#[test]
fn invalid_heads() {
    let cases: &[(&[u8], ParseError)] = &[
        (b" GET / HTTP/1.1\r\n\r\n", ParseError::BadMethod),
        (b"G(T / HTTP/1.1\r\n\r\n", ParseError::BadMethod),
        (b"GET  / HTTP/1.1\r\n\r\n", ParseError::BadRequestLine),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", ParseError::BadTarget),
        (b"GET /\r\n\r\n", ParseError::BadRequestLine),
        (b"GET / HTTP/2.0\r\n\r\n", ParseError::UnsupportedVersion),
        (b"GET / HTTP/0.9\r\n\r\n", ParseError::UnsupportedVersion),
        (b"GET / HTTQ/1.1\r\n\r\n", ParseError::BadVersion),
        (b"GET / http/1.1\r\n", ParseError::BadVersion),
        (b"GET / HTTP/1.1\n\r\n", ParseError::BadRequestLine),
        (b"GET / HTTP/1.1 \r\n\r\n", ParseError::BadRequestLine),
        (
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            ParseError::WhitespaceBeforeColon,
        ),
        (
            b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",
            ParseError::WhitespaceBeforeColon,
        ),
        (b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", ParseError::ObsFold),
        (b"GET / HTTP/1.1\r\n\tA: b\r\n\r\n", ParseError::ObsFold),
        (
            b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
            ParseError::BadHeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
            ParseError::BadHeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
            ParseError::BadHeaderValue,
        ),
        (
            b"GET / HTTP/1.1\r\nA: b\nB: c\r\n\r\n",
            ParseError::BareLineFeed,
        ),
        (b"GET / HTTP/1.1\r\n\n", ParseError::BareLineFeed),
        (b"GET / HTTP/1.1\r\n: b\r\n\r\n", ParseError::BadHeaderName),
        (
            b"GET / HTTP/1.1\r\nA\x00: b\r\n\r\n",
            ParseError::BadHeaderName,
        ),
        (
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            ParseError::BadHeaderName,
        ),
    ];
    for (input, expected) in cases {
        check_error(input, *expected);
    }
}

/// RFC 9110 §5.5: obs-text (0x80-0xFF) is allowed in a field value and is opaque data to a
/// recipient, UTF-8 or not (a Latin-1 cookie); a field with an ASCII grammar that holds it is
/// refused by that field's own rule.
/// Fields are checked as UTF-8 a batch at a time: a batch holding a non-UTF-8 value falls
/// back to one check per field, and every slot reads the same either way, in any batch.
#[test]
fn batches_with_and_without_obs_text_read_alike() {
    let mut input = b"PUT /caf%C3%A9?x=1 HTTP/1.1\r\n".to_vec();
    let values: Vec<Vec<u8>> = (0..20)
        .map(|k| match k {
            2 => "caf\u{e9} \u{1f600}".as_bytes().to_vec(),
            11 | 19 => b"n=caf\xe9".to_vec(),
            _ => format!("v{k}").into_bytes(),
        })
        .collect();
    for (k, value) in values.iter().enumerate() {
        input.extend_from_slice(format!("X-F{k}:  ").as_bytes());
        input.extend_from_slice(value);
        input.extend_from_slice(b" \r\n");
    }
    input.extend_from_slice(b"\r\n");
    for first_batch_latin1 in [false, true] {
        let mut input = input.clone();
        if first_batch_latin1 {
            // Field 5's value `v5` becomes `\xe55`: now the first batch is not UTF-8 either.
            let at = input
                .windows(5)
                .position(|w| w == b":  v5")
                .expect("field 5")
                + 3;
            input[at] = 0xe5;
        }
        let mut slots = [HeaderSlot::default(); 24];
        let Ok(Status::Complete(head)) = parse_head(&input, &LIMITS, &mut slots) else {
            panic!("refused")
        };
        assert_eq!((head.method, head.target), ("PUT", "/caf%C3%A9?x=1"));
        assert_eq!(head.header_count, 20);
        for (k, slot) in slots[..20].iter().enumerate() {
            assert_eq!(slot.name, format!("X-F{k}"));
            let mut expected = values[k].clone();
            if first_batch_latin1 && k == 5 {
                expected[0] = 0xe5;
            }
            assert_eq!(slot.value, expected.as_slice(), "field {k}");
            assert_eq!(
                slot.value_text(),
                String::from_utf8_lossy(&expected),
                "field {k}"
            );
            assert_eq!(*slot, HeaderSlot::new(slot.name, slot.value), "field {k}");
        }
    }
}

#[test]
fn obs_text_values_are_opaque_bytes() {
    let input = b"GET / HTTP/1.1\r\nA: \xff\xfe\r\nCookie: n=caf\xe9\r\nB: caf\xc3\xa9\r\n\r\n";
    let mut slots = [HeaderSlot::default(); 4];
    let Ok(Status::Complete(head)) = parse_head(input, &LIMITS, &mut slots) else {
        panic!("refused")
    };
    assert_eq!(head.header_count, 3);
    assert_eq!(slots[0].value, b"\xff\xfe");
    assert_eq!(slots[0].value_text(), "\u{fffd}\u{fffd}");
    assert_eq!(slots[1].value_text(), "n=caf\u{fffd}");
    assert_eq!(slots[2].value_text(), "caf\u{e9}");
    let field = |name: &'static str, value: &'static [u8]| HeaderSlot::new(name, value);
    let host = field("Host", b"h");
    for (fields, expected) in [
        (
            [host, field("Content-Length", b"1\xb9")],
            ParseError::BadContentLength,
        ),
        (
            [host, field("Transfer-Encoding", b"chunked\xa0")],
            ParseError::BadTransferEncoding,
        ),
        ([host, field("Host", b"h\xe9")], ParseError::BadHost),
        ([field("Host", b"h\xe9"), host], ParseError::BadHost),
        (
            [host, field("Expect", b"100-continue\xa0")],
            ParseError::UnsupportedExpectation,
        ),
    ] {
        assert_eq!(framing(Version::Http11, &fields), Err(expected));
    }
    // A Connection token with obs-text is no option we know, and hides no `close` beside it.
    let f = framing(
        Version::Http11,
        &[host, field("Connection", b"\xe9, close")],
    );
    assert!(!f.expect("ok").keep_alive);
    let f = framing(Version::Http11, &[host, field("Connection", b"close\xe9")]);
    assert!(f.expect("ok").keep_alive);
}

#[test]
fn limits_give_414_and_431() {
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
    check_error(long_target.as_bytes(), ParseError::RequestLineTooLong);
    // Detected before the line is complete, so a slow client cannot hold the buffer.
    check_error(
        &long_target.as_bytes()[..280],
        ParseError::RequestLineTooLong,
    );
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..9 {
        many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    check_error(&many, ParseError::TooManyHeaders);
    let big = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "v".repeat(1100));
    check_error(big.as_bytes(), ParseError::HeadTooLarge);
    check_error(&big.as_bytes()[..1050], ParseError::HeadTooLarge);
    assert_eq!(ParseError::HeadTooLarge.status(), 431);
    assert_eq!(ParseError::RequestLineTooLong.status(), 414);
    assert_eq!(ParseError::UnsupportedVersion.status(), 505);
}

#[test]
fn every_prefix_of_a_valid_head_is_partial() {
    let input = b"\r\nPOST /items?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nX-A:  b \r\n\r\n";
    for end in 0..input.len() {
        assert_eq!(
            parse(&input[..end]),
            Ok(Status::Partial),
            "prefix of {end} bytes"
        );
    }
    assert!(matches!(parse(input), Ok(Status::Complete(_))));
}

#[test]
fn framing_rules() {
    let slot = |name, value: &'static str| HeaderSlot::new(name, value.as_bytes());
    let host = slot("Host", "h");
    let ok = |v: Version, fields: &[HeaderSlot]| framing(v, fields);
    let f = ok(Version::Http11, &[host, slot("content-length", "12")]).expect("ok");
    assert_eq!((f.body, f.keep_alive), (BodyKind::Length(12), true));
    let f = ok(
        Version::Http11,
        &[
            host,
            slot("Content-Length", "3, 3"),
            slot("Content-Length", "3"),
        ],
    );
    assert_eq!(f.expect("ok").body, BodyKind::Length(3));
    let f = ok(
        Version::Http11,
        &[
            host,
            slot("Transfer-Encoding", "chunked"),
            slot("Connection", "Close"),
        ],
    );
    assert_eq!(
        f.expect("ok"),
        Framing {
            body: BodyKind::Chunked,
            keep_alive: false,
            expect_continue: false
        }
    );
    let f = ok(Version::Http10, &[slot("Connection", "keep-alive")]).expect("ok");
    assert!(f.keep_alive && f.body == BodyKind::None);
    assert!(!ok(Version::Http10, &[]).expect("ok").keep_alive);
    let f = ok(Version::Http11, &[host, slot("Expect", "100-Continue")]).expect("ok");
    assert!(f.expect_continue);
    let bad: &[(Version, &[HeaderSlot], ParseError)] = &[
        (Version::Http11, &[], ParseError::MissingHost),
        (Version::Http11, &[host, host], ParseError::DuplicateHost),
        (Version::Http10, &[host, host], ParseError::DuplicateHost),
        (
            Version::Http11,
            &[
                host,
                slot("Content-Length", "5"),
                slot("Transfer-Encoding", "chunked"),
            ],
            ParseError::LengthWithTransferEncoding,
        ),
        (
            Version::Http11,
            &[
                host,
                slot("Content-Length", "5"),
                slot("Content-Length", "6"),
            ],
            ParseError::BadContentLength,
        ),
        (
            Version::Http11,
            &[host, slot("Content-Length", "5, 6")],
            ParseError::BadContentLength,
        ),
        (
            Version::Http11,
            &[host, slot("Content-Length", "+5")],
            ParseError::BadContentLength,
        ),
        (
            Version::Http11,
            &[host, slot("Content-Length", "0x5")],
            ParseError::BadContentLength,
        ),
        (
            Version::Http11,
            &[host, slot("Content-Length", "")],
            ParseError::BadContentLength,
        ),
        (
            Version::Http11,
            &[host, slot("Content-Length", "99999999999999999999")],
            ParseError::BadContentLength,
        ),
        (
            Version::Http11,
            &[host, slot("Transfer-Encoding", "gzip, chunked")],
            ParseError::UnsupportedTransferCoding,
        ),
        (
            Version::Http11,
            &[host, slot("Transfer-Encoding", "chunked, chunked")],
            ParseError::BadTransferEncoding,
        ),
        (
            Version::Http11,
            &[
                host,
                slot("Transfer-Encoding", "chunked"),
                slot("Transfer-Encoding", "chunked"),
            ],
            ParseError::BadTransferEncoding,
        ),
        (
            Version::Http11,
            &[host, slot("Transfer-Encoding", "")],
            ParseError::BadTransferEncoding,
        ),
        (
            Version::Http10,
            &[slot("Transfer-Encoding", "chunked")],
            ParseError::BadTransferEncoding,
        ),
        (
            Version::Http11,
            &[host, slot("Transfer-Encoding", "xchunked")],
            ParseError::UnsupportedTransferCoding,
        ),
        (
            Version::Http11,
            &[host, slot("Expect", "200-ok")],
            ParseError::UnsupportedExpectation,
        ),
    ];
    for (version, fields, expected) in bad {
        assert_eq!(framing(*version, fields), Err(*expected), "{fields:?}");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut slots = [HeaderSlot::default(); 4];
        if let Ok(Status::Complete(head)) = parse_head(&input, &LIMITS, &mut slots) {
            prop_assert!(head.head_len <= input.len());
            prop_assert!(head.head_len <= LIMITS.head_bytes_max);
            let _ = framing(head.version, &slots[..head.header_count]);
        }
    }

    #[test]
    fn random_header_lines_never_panic(lines in proptest::collection::vec("[ -~\t\r\n\x00]{0,20}", 0..6)) {
        let input = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
        let mut slots = [HeaderSlot::default(); 8];
        let _ = parse_head(input.as_bytes(), &LIMITS, &mut slots);
    }
}

proptest! {
    #[test]
    fn word_scans_agree_with_the_byte_rules(
        input in proptest::collection::vec(prop_oneof![9 => 0x20u8..0x7f, 1 => any::<u8>()], 0..40)
    ) {
        let target = |b: u8| (0x21..=0x7e).contains(&b);
        prop_assert_eq!(
            first_rejected(&input, all_visible_ascii, target),
            input.iter().position(|&b| !target(b))
        );
        prop_assert_eq!(
            first_rejected(&input, all_plain_value_bytes, is_value_byte),
            input.iter().position(|&b| !is_value_byte(b))
        );
    }
}

#[test]
fn word_tests_on_every_byte_value() {
    for b in 0..=255u8 {
        let word = u64::from_le_bytes([b'a', b'b', b, b'c', b'd', b'e', b'f', b'g']);
        assert_eq!(
            all_visible_ascii(word),
            (0x21..=0x7e).contains(&b),
            "{b:#x}"
        );
        let plain = b != b'\t' && is_value_byte(b);
        assert_eq!(all_plain_value_bytes(word), plain, "{b:#x}");
    }
}

#[test]
fn host_values_must_be_uri_host_and_port() {
    let with_host = |value: &str| {
        framing(
            Version::Http11,
            &[HeaderSlot::new("Host", value.as_bytes())],
        )
    };
    for good in [
        "h",
        "",
        "example.com",
        "example.com:8080",
        "h:",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "[v1.fe80::a+en1]",
        "xn--bcher-kva.example",
        "a%2Db",
        "sub_domain.example~!$&'()*+,;=",
    ] {
        assert!(with_host(good).is_ok(), "{good:?} refused");
    }
    for bad in [
        "a b",
        "evil.com/path",
        "evil.com?x",
        "evil.com#x",
        "user@evil.com",
        "h:80:80",
        "h:8o",
        "[::1",
        "[]",
        "[::1]x",
        "[::1]:a",
        "a%2",
        "a%zz",
        "caf\u{e9}.example",
        "a\"b",
        "a<b>",
        "a\\b",
        "a\tb",
    ] {
        assert_eq!(with_host(bad), Err(ParseError::BadHost), "{bad:?}");
    }
    let http10 = framing(Version::Http10, &[HeaderSlot::new("host", b"a/b")]);
    assert_eq!(http10, Err(ParseError::BadHost));
}
