//! The opening handshake, server side (RFC 6455 §4.2): validating an upgrade request and
//! building the `101 Switching Protocols` answer.
//!
//! Owns: the `Sec-WebSocket-Accept` computation and every rule on the request's method, version,
//! `Upgrade`, `Connection`, `Sec-WebSocket-Key` and `Sec-WebSocket-Version` headers; subprotocol
//! selection (the application picks one of those offered).
//! Must not: parse HTTP or touch sockets. It takes the method, version and header pairs of a
//! request that the HTTP layer has already parsed. It collects the `Sec-WebSocket-Extensions`
//! values; choosing an extension is `deflate::negotiate`'s, and the answer carries it only when
//! the caller passes the agreed parameters.

use std::fmt;

use super::deflate::{self, Params};
use crate::crypto::{base64, sha1};

/// The GUID appended to the client's key (RFC 6455 §1.3).
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks (RFC 6455 §4.1).
pub const VERSION: &str = "13";

/// Bytes a client key must decode to (RFC 6455 §4.1: a random 16-byte value, base64-encoded).
const KEY_BYTES: usize = 16;

/// Most subprotocols accepted from one request's `Sec-WebSocket-Protocol` headers.
pub const PROTOCOLS_MAX: usize = 16;

/// Most `Sec-WebSocket-Extensions` header lines kept from one request; later ones are ignored
/// (their offers are declined).
pub const EXTENSION_HEADERS_MAX: usize = 8;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut hasher = sha1::Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(ACCEPT_GUID.as_bytes());
    base64::encode(&hasher.finalize())
}

/// Why a request cannot be upgraded, with the HTTP status to answer it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a GET request (405).
    Method,
    /// Not HTTP/1.1 (400).
    HttpVersion,
    /// No `Upgrade: websocket` token (426: the client may retry with an upgrade).
    NotUpgrade,
    /// `Connection` lacks the `Upgrade` token (400).
    ConnectionHeader,
    /// `Sec-WebSocket-Key` is missing, repeated, or not base64 of 16 bytes (400).
    Key,
    /// `Sec-WebSocket-Version` is missing or not 13 (426 with `Sec-WebSocket-Version: 13`).
    Version,
    /// More than [`PROTOCOLS_MAX`] subprotocols offered (400).
    TooManyProtocols,
    /// A `Sec-WebSocket-Protocol` element that is not a token (400): RFC 6455 §4.1 has each
    /// be one, and the one chosen is echoed in the 101.
    BadProtocol,
}

impl HandshakeError {
    /// The HTTP status code of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::Method => 405,
            HandshakeError::NotUpgrade | HandshakeError::Version => 426,
            _ => 400,
        }
    }

    /// Headers the refusal must carry besides the usual ones.
    pub fn headers(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            HandshakeError::Method => vec![("Allow", "GET")],
            HandshakeError::NotUpgrade => vec![("Upgrade", "websocket"), ("Connection", "Upgrade")],
            // Every 426 names the protocol to upgrade to (RFC 9110 §15.5.22), and a sender of
            // `Upgrade` sends the `Upgrade` connection option too (§7.8).
            HandshakeError::Version => vec![
                ("Sec-WebSocket-Version", VERSION),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
            ],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::Method => "a WebSocket upgrade must be a GET request",
            HandshakeError::HttpVersion => "a WebSocket upgrade needs HTTP/1.1",
            HandshakeError::NotUpgrade => "this resource needs `Upgrade: websocket`",
            HandshakeError::ConnectionHeader => "the `Connection` header must contain `Upgrade`",
            HandshakeError::Key => "`Sec-WebSocket-Key` must appear once, as base64 of 16 bytes",
            HandshakeError::Version => "only WebSocket version 13 is supported",
            HandshakeError::TooManyProtocols => "too many subprotocols offered",
            HandshakeError::BadProtocol => {
                "each `Sec-WebSocket-Protocol` element must be a token (RFC 6455 §4.1)"
            }
        })
    }
}

impl std::error::Error for HandshakeError {}

/// A valid upgrade request, ready to be answered with 101.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// Subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Whether the client offered any extension.
    pub offered_extensions: bool,
    /// The `Sec-WebSocket-Extensions` values, in order (at most [`EXTENSION_HEADERS_MAX`]).
    pub extensions: Vec<String>,
}

/// Validates an upgrade request from its method, HTTP version and headers (name, value), in order.
pub fn validate<'a, I>(method: &str, is_http11: bool, headers: I) -> Result<Upgrade, HandshakeError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    if method != "GET" {
        return Err(HandshakeError::Method);
    }
    if !is_http11 {
        return Err(HandshakeError::HttpVersion);
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut keys = Vec::new();
    let mut versions = Vec::new();
    let mut protocols = Vec::new();
    let mut offered_extensions = false;
    let mut extensions = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys.push(value.trim());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            versions.push(value.trim());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            for token in value
                .split(',')
                .map(str::trim)
                .filter(|token| !token.is_empty())
            {
                if protocols.len() == PROTOCOLS_MAX {
                    return Err(HandshakeError::TooManyProtocols);
                }
                if !crate::http::parse::is_token(token) {
                    return Err(HandshakeError::BadProtocol);
                }
                protocols.push(token.to_string());
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            offered_extensions = true;
            if extensions.len() < EXTENSION_HEADERS_MAX {
                extensions.push(value.to_string());
            }
        }
    }
    if !upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    if !connection {
        return Err(HandshakeError::ConnectionHeader);
    }
    if versions.as_slice() != [VERSION] {
        return Err(HandshakeError::Version);
    }
    let [key] = keys.as_slice() else {
        return Err(HandshakeError::Key);
    };
    if base64::decode(key).map(|bytes| bytes.len()) != Ok(KEY_BYTES) {
        return Err(HandshakeError::Key);
    }
    Ok(Upgrade {
        accept: accept_key(key),
        protocols,
        offered_extensions,
        extensions,
    })
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// The permessage-deflate parameters to agree on: the first acceptable offer.
    pub fn negotiate_deflate(&self) -> Option<Params> {
        deflate::negotiate(self.extensions.iter().map(String::as_str))
    }

    /// The headers of the 101 answer with permessage-deflate agreed on `deflate` (from
    /// [`Upgrade::negotiate_deflate`]). `protocol` must be one the client offered.
    pub fn response_headers_with(
        &self,
        protocol: Option<&str>,
        deflate: Option<&Params>,
    ) -> Vec<(&'static str, String)> {
        let mut headers = self.response_headers(protocol);
        if let Some(params) = deflate {
            assert!(
                self.offered_extensions,
                "an extension the client did not offer"
            );
            headers.push(("Sec-WebSocket-Extensions", params.response()));
        }
        headers
    }

    /// The headers of the 101 answer, declining every extension. `protocol` must be one the
    /// client offered.
    pub fn response_headers(&self, protocol: Option<&str>) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Upgrade", "websocket".to_string()),
            ("Connection", "Upgrade".to_string()),
            ("Sec-WebSocket-Accept", self.accept.clone()),
        ];
        if let Some(chosen) = protocol {
            assert!(
                self.protocols.iter().any(|offered| offered == chosen),
                "subprotocol {chosen:?} was not offered"
            );
            headers.push(("Sec-WebSocket-Protocol", chosen.to_string()));
        }
        headers
    }

    /// The whole 101 answer as bytes, for callers that write the HTTP head themselves.
    pub fn write_response(&self, protocol: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in self.response_headers(protocol) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut headers = vec![
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", SAMPLE_KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        headers.extend_from_slice(extra);
        headers
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        request(&[])
            .into_iter()
            .filter(|(header, _)| *header != name)
            .collect()
    }

    #[test]
    fn rfc_sample_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(SAMPLE_KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_request_is_accepted() {
        let extra = [
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ];
        let Ok(upgrade) = validate("GET", true, request(&extra)) else {
            panic!("refused")
        };
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(upgrade.protocols, ["chat", "superchat"]);
        assert!(upgrade.offered_extensions);
        let mut out = Vec::new();
        upgrade.write_response(Some("chat"), &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(
            !text.contains("Extensions"),
            "extensions are declined by omission"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn tokens_are_case_insensitive_lists() {
        let headers = [
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, UPGRADE"),
            ("sec-websocket-key", SAMPLE_KEY),
            ("sec-websocket-version", " 13 "),
        ];
        assert!(validate("GET", true, headers).is_ok());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            validate("POST", true, request(&[])),
            Err(HandshakeError::Method)
        );
        assert_eq!(
            validate("GET", false, request(&[])),
            Err(HandshakeError::HttpVersion)
        );
        assert_eq!(
            validate("GET", true, without("Upgrade")),
            Err(HandshakeError::NotUpgrade)
        );
        assert_eq!(
            validate("GET", true, without("Connection")),
            Err(HandshakeError::ConnectionHeader)
        );
        assert_eq!(
            validate("GET", true, without("Sec-WebSocket-Key")),
            Err(HandshakeError::Key)
        );
        assert_eq!(
            validate("GET", true, without("Sec-WebSocket-Version")),
            Err(HandshakeError::Version)
        );
        let mut wrong_version = without("Sec-WebSocket-Version");
        wrong_version.push(("Sec-WebSocket-Version", "8"));
        assert_eq!(
            validate("GET", true, wrong_version),
            Err(HandshakeError::Version)
        );
        assert_eq!(
            validate("GET", true, request(&[("Sec-WebSocket-Key", SAMPLE_KEY)])),
            Err(HandshakeError::Key)
        );
        let mut short_key = without("Sec-WebSocket-Key");
        short_key.push(("Sec-WebSocket-Key", "c2hvcnQ="));
        assert_eq!(validate("GET", true, short_key), Err(HandshakeError::Key));
        let mut bad_key = without("Sec-WebSocket-Key");
        bad_key.push(("Sec-WebSocket-Key", "not base64 at all!!!!!!="));
        assert_eq!(validate("GET", true, bad_key), Err(HandshakeError::Key));
        let many = "a,".repeat(PROTOCOLS_MAX + 1);
        assert_eq!(
            validate("GET", true, request(&[("Sec-WebSocket-Protocol", &many)])),
            Err(HandshakeError::TooManyProtocols)
        );
        for offered in ["chat v2", "chat/2", "caf\u{e9}", "\"chat\"", "chat, x;y"] {
            assert_eq!(
                validate("GET", true, request(&[("Sec-WebSocket-Protocol", offered)])),
                Err(HandshakeError::BadProtocol),
                "{offered}"
            );
        }
        let fine = validate(
            "GET",
            true,
            request(&[("Sec-WebSocket-Protocol", " v2.chat ,, v1.chat-x ")]),
        )
        .expect("tokens");
        assert_eq!(fine.protocols, ["v2.chat", "v1.chat-x"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(
            headers in proptest::collection::vec(("[A-Za-z-]{1,24}", "\\PC{0,40}"), 0..12),
        ) {
            let pairs: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
            let _ = validate("GET", true, pairs);
        }

        #[test]
        fn any_16_byte_key_is_accepted(key in proptest::array::uniform16(proptest::prelude::any::<u8>())) {
            let encoded = base64::encode(&key);
            let mut headers = without("Sec-WebSocket-Key");
            headers.push(("Sec-WebSocket-Key", &encoded));
            let upgrade = validate("GET", true, headers);
            proptest::prop_assert_eq!(upgrade.map(|u| u.accept), Ok(accept_key(&encoded)));
        }
    }

    #[test]
    fn refusal_statuses_and_headers() {
        assert_eq!(HandshakeError::Version.status(), 426);
        assert_eq!(
            HandshakeError::Version.headers(),
            [
                ("Sec-WebSocket-Version", "13"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade")
            ]
        );
        assert_eq!(HandshakeError::Method.status(), 405);
        assert_eq!(HandshakeError::Key.status(), 400);
    }
}
