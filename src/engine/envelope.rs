//! The event envelope: the metadata the sequencer wraps around each event payload in the log.
//!
//! Owns: the byte layout of one log entry (docs/LOG_FORMAT.md, "Entry"). Must not: decode the
//! payload (the `State`'s event type does, after upcasting).

use super::state::{read_fingerprint, write_fingerprint};
use crate::binary::{self, Reader};
use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;

/// Metadata of one committed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Log index of the event (1-based, consecutive).
    pub index: u64,
    /// Milliseconds since the Unix epoch, set by the sequencer (never read in `apply`).
    pub timestamp_ms: u64,
    /// Event type name (see [`super::State::event_type`]).
    pub event_type: Cow<'static, str>,
    /// Schema version the payload was written with.
    pub schema_version: u32,
    /// Id the sequencer gave the command that produced the event.
    pub request_id: u64,
    /// Idempotency key of the command, if it had one.
    pub idempotency_key: Option<Arc<str>>,
    /// Who issued the command.
    pub actor: Option<Arc<str>>,
    /// Correlation id linking related requests.
    pub correlation_id: Option<Arc<str>>,
    /// Fingerprint of the request the idempotency key came with (see
    /// [`super::Meta::request_fingerprint`]).
    pub request_fingerprint: Option<NonZeroU64>,
}

/// An envelope decoded in place from an entry, borrowing its strings and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeRef<'a> {
    /// Log index.
    pub index: u64,
    /// Sequencer timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Event type name.
    pub event_type: &'a str,
    /// Schema version of the payload.
    pub schema_version: u32,
    /// Command id.
    pub request_id: u64,
    /// Idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// Actor.
    pub actor: Option<&'a str>,
    /// Correlation id.
    pub correlation_id: Option<&'a str>,
    /// Request fingerprint of the idempotency key.
    pub request_fingerprint: Option<NonZeroU64>,
    /// The event payload (binary codec), not decoded here.
    pub payload: &'a [u8],
}

impl EnvelopeRef<'_> {
    /// An owned copy of the metadata.
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            index: self.index,
            timestamp_ms: self.timestamp_ms,
            event_type: Cow::Owned(self.event_type.to_string()),
            schema_version: self.schema_version,
            request_id: self.request_id,
            idempotency_key: self.idempotency_key.map(Arc::from),
            actor: self.actor.map(Arc::from),
            correlation_id: self.correlation_id.map(Arc::from),
            request_fingerprint: self.request_fingerprint,
        }
    }
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    binary::write_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn write_option(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            write_str(out, text);
        }
    }
}

/// Appends the entry bytes: the framed metadata, then the payload written by `payload`.
pub fn encode_entry(out: &mut Vec<u8>, envelope: &Envelope, payload: impl FnOnce(&mut Vec<u8>)) {
    let mark = binary::begin_struct(out);
    binary::write_varint(out, envelope.index);
    binary::write_varint(out, envelope.timestamp_ms);
    write_str(out, &envelope.event_type);
    binary::write_varint(out, u64::from(envelope.schema_version));
    binary::write_varint(out, envelope.request_id);
    write_option(out, envelope.idempotency_key.as_deref());
    write_option(out, envelope.actor.as_deref());
    write_option(out, envelope.correlation_id.as_deref());
    // A later field: written only when present, so entries without one keep their old bytes
    // (and an older reader skips it: the metadata is length-framed).
    if envelope.request_fingerprint.is_some() {
        write_fingerprint(out, envelope.request_fingerprint);
    }
    binary::end_struct(out, mark);
    payload(out);
}

fn read_str<'a>(reader: &mut Reader<'a>) -> Result<&'a str, binary::Error> {
    let len = reader.read_len()?;
    let bytes = reader.read_bytes(len)?;
    std::str::from_utf8(bytes).map_err(|_| binary::Error::custom("envelope string is not UTF-8"))
}

fn read_option<'a>(reader: &mut Reader<'a>) -> Result<Option<&'a str>, binary::Error> {
    match reader.read_u8()? {
        0 => Ok(None),
        1 => read_str(reader).map(Some),
        _ => Err(binary::Error::custom("bad option tag in envelope")),
    }
}

/// Decodes an entry without copying; metadata fields added by newer versions are ignored.
pub fn decode_entry(entry: &[u8]) -> Result<EnvelopeRef<'_>, binary::Error> {
    let mut reader = Reader::new(entry);
    let mut body = reader.struct_body()?;
    let index = body.read_varint()?;
    let timestamp_ms = body.read_varint()?;
    let event_type = read_str(&mut body)?;
    let schema_version = u32::try_from(body.read_varint()?)
        .map_err(|_| binary::Error::custom("schema version out of range"))?;
    let request_id = body.read_varint()?;
    let idempotency_key = read_option(&mut body)?;
    let actor = read_option(&mut body)?;
    let correlation_id = read_option(&mut body)?;
    let request_fingerprint = if body.remaining() > 0 {
        read_fingerprint(&mut body)?
    } else {
        None
    };
    let payload = reader.read_bytes(reader.remaining())?;
    Ok(EnvelopeRef {
        index,
        timestamp_ms,
        event_type,
        schema_version,
        request_id,
        idempotency_key,
        actor,
        correlation_id,
        request_fingerprint,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_round_trip() {
        let envelope = Envelope {
            index: 42,
            timestamp_ms: 1_700_000_000_000,
            event_type: Cow::Borrowed("ItemCreated"),
            schema_version: 3,
            request_id: 9,
            idempotency_key: Some(Arc::from("key-1")),
            actor: None,
            correlation_id: Some(Arc::from("corr")),
            request_fingerprint: None,
        };
        let fingerprinted = Envelope {
            request_fingerprint: NonZeroU64::new(0xfeed_f00d),
            ..envelope.clone()
        };
        let mut sizes = Vec::new();
        for envelope in [envelope, fingerprinted] {
            let mut out = Vec::new();
            encode_entry(&mut out, &envelope, |out| out.extend_from_slice(b"payload"));
            let decoded = decode_entry(&out).expect("decode");
            assert_eq!(decoded.payload, b"payload");
            assert_eq!(decoded.to_envelope(), envelope);
            for cut in 0..out.len() - b"payload".len() {
                assert!(decode_entry(&out[..cut]).is_err(), "prefix {cut} decoded");
            }
            sizes.push(out.len());
        }
        // Without a fingerprint an entry keeps the bytes it had before the field existed.
        assert_eq!(sizes[1], sizes[0] + 9);
    }

    proptest! {
        #[test]
        fn random_entries_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_entry(&bytes);
        }
    }
}
