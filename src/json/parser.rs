//! The strict RFC 8259 parser from text to `Value`.
//!
//! It walks bytes by offset, borrows nothing from the input in the result, and collects array
//! elements and object members on shared scratch stacks so each container is allocated once at
//! its exact size. Nesting is bounded by `ParseOptions::depth_max`, so hostile input cannot
//! overflow the stack. Must not: panic on any input, or accept anything RFC 8259 rejects.

use super::lex::{self, LexError, Num};
use super::number::{Number, N};
use super::{DuplicateKeys, Error, Map, ParseOptions, Value};
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Objects with more members than this check duplicates through a hash set, not a scan.
const DUPLICATE_SCAN_MAX: usize = 16;

pub(crate) struct Parser<'a, 'o> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    options: &'o ParseOptions,
    /// Elements of the arrays being parsed, innermost last.
    elements: Vec<Value>,
    /// Members of the objects being parsed, innermost last.
    members: Vec<(String, Value)>,
}

impl<'a, 'o> Parser<'a, 'o> {
    /// A parser at offset `pos` of `text`, already `depth` levels deep.
    pub(crate) fn new(text: &'a str, pos: usize, depth: usize, options: &'o ParseOptions) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos,
            depth,
            options,
            elements: Vec::new(),
            members: Vec::new(),
        }
    }

    /// The offset after what was parsed.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> Error {
        Error::at(self.text, offset, message)
    }

    fn lex_error(&self, e: LexError) -> Error {
        Error::at(self.text, e.offset, e.message)
    }

    /// Parses a whole document: one value, surrounded only by whitespace.
    pub(crate) fn parse_document(&mut self) -> Result<Value, Error> {
        let value = self.parse_value()?;
        self.pos = lex::skip_ws(self.bytes, self.pos);
        if self.pos < self.bytes.len() {
            let found = lex::describe(self.text, self.pos);
            return Err(self.error(
                self.pos,
                format!(
                    "unexpected {found} after the JSON value (a document holds exactly one value)"
                ),
            ));
        }
        Ok(value)
    }

    /// Parses one value after optional whitespace.
    pub(crate) fn parse_value(&mut self) -> Result<Value, Error> {
        self.pos = lex::skip_ws(self.bytes, self.pos);
        let start = self.pos;
        match self.bytes.get(start) {
            Some(b'"') => {
                let (s, end) = lex::string(self.text, start + 1).map_err(|e| self.lex_error(e))?;
                self.pos = end;
                Ok(Value::String(s.into_owned()))
            }
            Some(b'-' | b'0'..=b'9') => {
                let (n, end) = lex::number(self.text, start).map_err(|e| self.lex_error(e))?;
                self.pos = end;
                Ok(Value::Number(number_of(n)))
            }
            Some(b'{') => self.parse_object(),
            Some(b'[') => self.parse_array(),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            _ => {
                let found = lex::describe(self.text, start);
                Err(self.error(start, format!("expected a JSON value, found {found}")))
            }
        }
    }

    fn word(&mut self, word: &'static str, value: Value) -> Result<Value, Error> {
        self.pos = lex::expect_word(self.bytes, self.pos, word).map_err(|e| self.lex_error(e))?;
        Ok(value)
    }

    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= self.options.depth_max {
            let limit = self.options.depth_max;
            return Err(self.error(
                self.pos,
                format!("nesting is deeper than the limit of {limit} levels"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn parse_array(&mut self) -> Result<Value, Error> {
        self.enter()?;
        let open = self.pos;
        self.pos = lex::skip_ws(self.bytes, self.pos + 1);
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(Vec::new()));
        }
        let base = self.elements.len();
        loop {
            let value = self.parse_value()?;
            self.elements.push(value);
            self.pos = lex::skip_ws(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos = lex::skip_ws(self.bytes, self.pos + 1);
                    if self.bytes.get(self.pos) == Some(&b']') {
                        return Err(
                            self.error(self.pos, "trailing comma before `]` (remove the comma)")
                        );
                    }
                }
                Some(b']') => break,
                None => return Err(self.error(open, "unterminated array: missing `]`")),
                Some(_) => {
                    let found = lex::describe(self.text, self.pos);
                    return Err(self.error(
                        self.pos,
                        format!("expected `,` or `]` after an array element, found {found}"),
                    ));
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        // split_off allocates exactly the elements' count: one allocation per array.
        Ok(Value::Array(self.elements.split_off(base)))
    }

    fn parse_key(&mut self) -> Result<String, Error> {
        self.pos = lex::skip_ws(self.bytes, self.pos);
        if self.bytes.get(self.pos) != Some(&b'"') {
            let found = lex::describe(self.text, self.pos);
            return Err(self.error(
                self.pos,
                format!("expected an object key in double quotes, found {found}"),
            ));
        }
        let (key, end) = lex::string(self.text, self.pos + 1).map_err(|e| self.lex_error(e))?;
        self.pos = lex::skip_ws(self.bytes, end);
        if self.bytes.get(self.pos) != Some(&b':') {
            let found = lex::describe(self.text, self.pos);
            return Err(self.error(
                self.pos,
                format!("expected `:` after the object key, found {found}"),
            ));
        }
        self.pos += 1;
        Ok(key.into_owned())
    }

    fn parse_object(&mut self) -> Result<Value, Error> {
        self.enter()?;
        let open = self.pos;
        self.pos = lex::skip_ws(self.bytes, self.pos + 1);
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Object(Map::new()));
        }
        let base = self.members.len();
        let mut seen = KeySet::default();
        loop {
            let key_pos = lex::skip_ws(self.bytes, self.pos);
            let key = self.parse_key()?;
            let value = self.parse_value()?;
            self.add_member(base, &mut seen, key_pos, key, value)?;
            self.pos = lex::skip_ws(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos = lex::skip_ws(self.bytes, self.pos + 1);
                    if self.bytes.get(self.pos) == Some(&b'}') {
                        return Err(
                            self.error(self.pos, "trailing comma before `}` (remove the comma)")
                        );
                    }
                }
                Some(b'}') => break,
                None => return Err(self.error(open, "unterminated object: missing `}`")),
                Some(_) => {
                    let found = lex::describe(self.text, self.pos);
                    return Err(self.error(
                        self.pos,
                        format!("expected `,` or `}}` after an object member, found {found}"),
                    ));
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(Value::Object(Map::from_entries_unchecked(
            self.members.split_off(base),
        )))
    }

    /// Appends a member to the object whose members start at `base`, applying the duplicate-key
    /// policy.
    fn add_member(
        &mut self,
        base: usize,
        seen: &mut KeySet,
        key_pos: usize,
        key: String,
        value: Value,
    ) -> Result<(), Error> {
        let count = self.members.len() - base;
        let duplicate = if count < DUPLICATE_SCAN_MAX {
            self.members[base..].iter().position(|(k, _)| *k == key)
        } else {
            if count == DUPLICATE_SCAN_MAX {
                seen.fill(&self.members[base..]);
            }
            if seen.insert(&key) {
                None
            } else {
                self.members[base..].iter().position(|(k, _)| *k == key)
            }
        };
        match (duplicate, self.options.duplicate_keys) {
            (None, _) => {
                self.members.push((key, value));
                Ok(())
            }
            (Some(i), DuplicateKeys::LastWins) => {
                self.members[base + i].1 = value;
                Ok(())
            }
            (Some(_), DuplicateKeys::Reject) => Err(self.error(
                key_pos,
                format!("duplicate key {key:?} in object (each key may appear once)"),
            )),
        }
    }
}

fn number_of(n: Num) -> Number {
    Number {
        n: match n {
            Num::Pos(v) => N::PosInt(v),
            Num::Neg(v) => N::NegInt(v),
            Num::Float(v) => N::Float(v),
            Num::WidePos(v) => N::WidePos(v),
            Num::WideNeg(v) => N::WideNeg(v),
        },
    }
}

/// FNV-1a, for the set of already keyed hashes (see `KeySet`): a collision there only costs a
/// scan, never a wrong answer.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Hashes of the keys of one large object. The keys are hashed with a random key (std's
/// SipHash `RandomState`): with a fixed hash a client could send an object whose keys all share
/// one hash (multicollisions of an unkeyed hash like FNV are cheap to build offline), making
/// every insert a scan of all members before it, quadratic in the body size.
#[derive(Default)]
struct KeySet {
    keys: std::collections::hash_map::RandomState,
    /// The keyed hashes; FNV over them is fine, as no client chooses them.
    hashes: HashSet<u64, BuildHasherDefault<Fnv>>,
}

impl KeySet {
    fn hash(&self, key: &str) -> u64 {
        self.keys.hash_one(key)
    }

    fn fill(&mut self, members: &[(String, Value)]) {
        for (k, _) in members {
            let hash = self.hash(k);
            self.hashes.insert(hash);
        }
    }

    /// False when a key with the same hash was seen (the caller then compares keys).
    fn insert(&mut self, key: &str) -> bool {
        let hash = self.hash(key);
        self.hashes.insert(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::KeySet;

    /// The duplicate check's hashes depend on a key chosen per set, so no body can be built
    /// in advance whose keys all collide.
    #[test]
    fn key_hashes_are_keyed_per_set() {
        let (one, other) = (KeySet::default(), KeySet::default());
        let keys = ["a", "b", "price", "a-much-longer-key-name"];
        assert!(keys.iter().any(|key| one.hash(key) != other.hash(key)));
        assert!(keys.iter().all(|key| one.hash(key) == one.hash(key)));
    }
}
