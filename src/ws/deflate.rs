//! permessage-deflate (RFC 7692): negotiating the extension in the opening handshake and the
//! per-connection compression state.
//!
//! Owns: parsing `Sec-WebSocket-Extensions` offers strictly (an offer with an unknown,
//! repeated or out-of-range parameter is declined and the next one is tried), the agreed
//! [`Params`] and the response header value, and [`Deflate`]: compressing one message (its
//! sync-flush tail removed, RFC 7692 §7.2.1) and inflating one (tail re-appended, §7.2.2) with
//! the LZ77 window kept across messages when context takeover is agreed.
//! Must not: read or write frames, decide RSV1, or touch sockets; `connection.rs` chooses which
//! messages are compressed and enforces the frame rules. The DEFLATE format itself lives in
//! `crypto::deflate`.

use crate::crypto::deflate::{self, DeflateError, WINDOW_BYTES};
use crate::http::parse::is_token;

use super::frame::Role;

/// The extension token (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";
/// Extension offers examined per request; later ones are declined unread.
pub const OFFERS_MAX: usize = 16;
/// Parameters one offer may carry (RFC 7692 defines four; each may appear once).
const OFFER_PARAMS_MAX: usize = 4;
/// Smallest LZ77 window a peer may ask for, as a power of two (RFC 7692 §7.1.2).
pub const WINDOW_BITS_MIN: u8 = 8;
/// Largest LZ77 window, as a power of two: DEFLATE's 32 KiB.
pub const WINDOW_BITS_MAX: u8 = 15;
/// Messages shorter than this are sent uncompressed (RSV1 clear, allowed by RFC 7692 §6):
/// a DEFLATE block header and the cost of the call outweigh what a few bytes could save.
pub const COMPRESS_BYTES_MIN: usize = 64;
/// Most of the previous messages our compressor searches for matches, in bytes. The agreed
/// window is only a maximum (RFC 7692 §7.1.2): reaching back 8 KiB instead of 32 KiB keeps the
/// per-message cost (the history is re-indexed for every message) and the memory per
/// connection small, and the recent messages hold most of the redundancy.
pub const SEND_HISTORY_BYTES_MAX: usize = 8 * 1024;
/// The empty stored block a sync flush ends with; removed by the sender, re-appended by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Whether an endpoint offers permessage-deflate to clients, and on what terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Accept a client's permessage-deflate offer (otherwise every offer is declined).
    pub enabled: bool,
}

impl DeflateConfig {
    /// Negotiate permessage-deflate when the client offers it (the default).
    pub const ENABLED: DeflateConfig = DeflateConfig { enabled: true };
    /// Decline every extension offer.
    pub const DISABLED: DeflateConfig = DeflateConfig { enabled: false };
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig::ENABLED
    }
}

/// The agreed permessage-deflate parameters (RFC 7692 §7.1), the same on both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The server starts every message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window.
    pub client_no_context_takeover: bool,
    /// Base-2 logarithm of the server's largest LZ77 window (8 to 15).
    pub server_max_window_bits: u8,
    /// Base-2 logarithm of the client's largest LZ77 window (8 to 15).
    pub client_max_window_bits: u8,
}

impl Params {
    /// No parameters: both sides keep a 32 KiB window across messages.
    pub const DEFAULT: Params = Params {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: WINDOW_BITS_MAX,
        client_max_window_bits: WINDOW_BITS_MAX,
    };

    /// The `Sec-WebSocket-Extensions` value a server answers with: every parameter the offer
    /// asked for and the server honours (`client_max_window_bits` is a hint the server does
    /// not need: it always inflates with a full window, so it is not echoed).
    pub fn response(&self) -> String {
        let mut value = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits != WINDOW_BITS_MAX {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        value
    }

    /// Reads a server's answer (client side): exactly one permessage-deflate element, with
    /// the same strict parameter rules as an offer. `None` means the client must fail the
    /// connection (RFC 7692 §5: an answer it cannot accept).
    pub fn from_response(value: &str) -> Option<Params> {
        let offers = parse_offers([value])?;
        let [(name, params)] = offers.as_slice() else {
            return None;
        };
        if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
            return None;
        }
        params_of(params)
    }
}

/// One extension element: its name and its (parameter, value) pairs, quotes removed.
type Offer = (String, Vec<(String, Option<String>)>);

/// The first acceptable permessage-deflate offer among `Sec-WebSocket-Extensions` values (in
/// header order), or `None` to decline (no offer, or every offer invalid). Header values that
/// are not well-formed lists decline everything: the offers cannot be told apart.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Params> {
    let offers = parse_offers(values)?;
    offers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(EXTENSION_NAME))
        .find_map(|(_, params)| params_of(params))
}

/// The parameters of one offer, or `None` if any is unknown, repeated or out of range.
fn params_of(params: &[(String, Option<String>)]) -> Option<Params> {
    if params.len() > OFFER_PARAMS_MAX {
        return None; // at least one parameter is unknown or repeated
    }
    let mut agreed = Params::DEFAULT;
    let mut seen = [false; OFFER_PARAMS_MAX];
    for (name, value) in params {
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match (slot, value.as_deref()) {
            (0, None) => agreed.server_no_context_takeover = true,
            (1, None) => agreed.client_no_context_takeover = true,
            (2, Some(bits)) => agreed.server_max_window_bits = window_bits(bits)?,
            // Without a value it only says the client could use a smaller window.
            (3, None) => {}
            (3, Some(bits)) => agreed.client_max_window_bits = window_bits(bits)?,
            _ => return None,
        }
    }
    Some(agreed)
}

/// A window-bits value: decimal digits, 8 to 15 (RFC 7692 §7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (WINDOW_BITS_MIN..=WINDOW_BITS_MAX)
        .contains(&bits)
        .then_some(bits)
}

/// Parses header values as `1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )`
/// (RFC 6455 §9.1); at most [`OFFERS_MAX`] elements are kept. `None` if malformed.
fn parse_offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Vec<Offer>> {
    let mut offers = Vec::new();
    for value in values {
        for element in split_unquoted(value, b',')? {
            let mut parts = split_unquoted(element, b';')?.into_iter();
            let name = parts.next().map(str::trim).unwrap_or_default();
            if name.is_empty() {
                if parts.len() == 0 {
                    continue; // an empty list element, allowed by the # rule
                }
                return None;
            }
            if !is_token(name) {
                return None;
            }
            let params = parts.map(param).collect::<Option<Vec<_>>>()?;
            if offers.len() < OFFERS_MAX {
                offers.push((name.to_string(), params));
            }
        }
    }
    Some(offers)
}

/// One `name[=value]` parameter, the value unquoted.
fn param(part: &str) -> Option<(String, Option<String>)> {
    let (name, value) = match part.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (part.trim(), None),
    };
    if !is_token(name) {
        return None;
    }
    let value = match value {
        None => None,
        Some(quoted) if quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"') => {
            Some(unquote(&quoted[1..quoted.len() - 1])?)
        }
        Some(token) if is_token(token) => Some(token.to_string()),
        Some(_) => return None,
    };
    Some((name.to_string(), value))
}

/// The content of a quoted-string without its quotes: `\x` stands for `x`.
fn unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Splits on `separator` outside quoted-strings; `None` if a quote is left open.
fn split_unquoted(value: &str, separator: u8) -> Option<Vec<&str>> {
    let bytes = value.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, &byte) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && byte == b'\\' {
            escaped = true;
        } else if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && byte == separator {
            parts.push(&value[start..index]);
            start = index + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(&value[start..]);
    Some(parts)
}

/// One connection's compression state: what each direction remembers between messages.
#[derive(Debug)]
pub struct Deflate {
    /// Farthest our compressor may reach back, in bytes (2^our max_window_bits).
    send_window_bytes: usize,
    send_takeover: bool,
    receive_takeover: bool,
    /// The last messages we compressed, at most `send_window_bytes` and
    /// [`SEND_HISTORY_BYTES_MAX`] (empty without takeover).
    send_history: Vec<u8>,
    /// The last messages we inflated, at most [`WINDOW_BYTES`] (empty without takeover).
    receive_history: Vec<u8>,
}

impl Deflate {
    /// The state of the `role` end of a connection that agreed on `params`.
    ///
    /// # Panics
    /// If a window size is outside 8..=15 bits ([`negotiate`] never yields one).
    pub fn new(params: Params, role: Role) -> Deflate {
        for bits in [params.server_max_window_bits, params.client_max_window_bits] {
            assert!(
                (WINDOW_BITS_MIN..=WINDOW_BITS_MAX).contains(&bits),
                "{bits} window bits"
            );
        }
        let (send_bits, send_reset, receive_reset) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
        };
        Deflate {
            send_window_bytes: 1 << send_bits,
            send_takeover: !send_reset,
            // The peer's window may be smaller than 32 KiB, but remembering the full window
            // costs little and accepts zlib peers that round 8 bits up to 9.
            receive_takeover: !receive_reset,
            send_history: Vec::new(),
            receive_history: Vec::new(),
        }
    }

    /// The payload of a compressed message (RSV1 set, sync tail removed), or `None` to send
    /// `data` uncompressed: it is shorter than [`COMPRESS_BYTES_MIN`] or does not shrink.
    /// Only a message actually returned compressed enters the window.
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < COMPRESS_BYTES_MIN {
            return None;
        }
        let mut packed =
            deflate::compress_raw_sync_window(&self.send_history, data, self.send_window_bytes);
        assert!(packed.ends_with(&SYNC_TAIL), "a sync flush ends the stream");
        packed.truncate(packed.len() - SYNC_TAIL.len());
        if packed.len() >= data.len() {
            return None;
        }
        if self.send_takeover {
            let keep = self.send_window_bytes.min(SEND_HISTORY_BYTES_MAX);
            remember(&mut self.send_history, data, keep);
        }
        Some(packed)
    }

    /// Inflates one compressed message (all its frames' payloads joined) to at most
    /// `output_bytes_max` bytes. Decoding stops as soon as the output would pass the limit
    /// ([`DeflateError::OutputTooLarge`]), so a small bomb never costs more than the limit.
    pub fn decompress(
        &mut self,
        mut payload: Vec<u8>,
        output_bytes_max: usize,
    ) -> Result<Vec<u8>, DeflateError> {
        payload.extend_from_slice(&SYNC_TAIL);
        let inflated =
            deflate::inflate_raw_partial(&payload, &self.receive_history, output_bytes_max)?;
        // A sender may end with a final block instead of a sync flush (RFC 7692 §7.2.3.4);
        // then only the tail we appended may follow it, after the header byte of an empty
        // stored block that the example in §7.2.3.4 also sends.
        let rest = &payload[inflated.consumed_bytes..];
        let after_final = rest.strip_prefix(&[0x00]).unwrap_or(rest);
        if inflated.finished && after_final != SYNC_TAIL {
            return Err(DeflateError::TrailingData);
        }
        assert!(
            inflated.finished || rest.is_empty(),
            "a partial stream is read to its end"
        );
        assert!(inflated.data.len() <= output_bytes_max);
        if self.receive_takeover {
            remember(&mut self.receive_history, &inflated.data, WINDOW_BYTES);
        }
        Ok(inflated.data)
    }
}

/// Appends `data` to a window, keeping its last `keep` bytes.
fn remember(history: &mut Vec<u8>, data: &[u8], keep: usize) {
    if data.len() >= keep {
        history.clear();
        history.extend_from_slice(&data[data.len() - keep..]);
    } else {
        let excess = (history.len() + data.len()).saturating_sub(keep);
        history.drain(..excess);
        history.extend_from_slice(data);
    }
    assert!(history.len() <= keep);
}

#[cfg(test)]
#[path = "deflate_tests.rs"]
mod tests;
