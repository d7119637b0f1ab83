//! An owned, `proc_macro`-free token model: the only input the parser and code generators see.
//!
//! Owns: the `Tok` tree, span handles (`Sp`) and rendering tokens back to source text.
//! Must not: touch `proc_macro` (its types panic outside a macro invocation, and this model
//! exists so every other module can be unit tested). `lib.rs` converts real token streams into
//! this model and maps `Sp` handles back to real spans.

/// A span handle: an index into the span table kept by the macro entry point. Tests assign
/// handles in token order, so an error's `Sp` can be compared against a known token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sp(pub u32);

/// Group delimiters, as in `proc_macro::Delimiter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delim {
    /// `( ... )`
    Paren,
    /// `{ ... }`
    Brace,
    /// `[ ... ]`
    Bracket,
    /// An invisible group (e.g. a `$ty` captured by `macro_rules!`).
    None,
}

/// One token tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier or keyword; raw identifiers keep their `r#` prefix.
    Ident {
        /// Source text, e.g. `r#type`.
        text: String,
        /// Where it came from.
        sp: Sp,
    },
    /// One punctuation character; `joint` means the next token is a punct glued to this one.
    Punct {
        /// The character.
        ch: char,
        /// Whether it is glued to the next punctuation (`::`, `->`, `'a`).
        joint: bool,
        /// Where it came from.
        sp: Sp,
    },
    /// A literal, kept as source text (`"a\n"`, `r#"x"#`, `12u8`).
    Lit {
        /// Source text.
        text: String,
        /// Where it came from.
        sp: Sp,
    },
    /// A delimited group.
    Group {
        /// The delimiter.
        delim: Delim,
        /// The tokens inside.
        toks: Vec<Tok>,
        /// The span of the whole group.
        sp: Sp,
    },
}

impl Tok {
    /// The span handle of this token.
    pub fn sp(&self) -> Sp {
        match self {
            Tok::Ident { sp, .. } | Tok::Punct { sp, .. } | Tok::Lit { sp, .. } => *sp,
            Tok::Group { sp, .. } => *sp,
        }
    }

    /// Whether this is the identifier `word`.
    pub fn is_ident(&self, word: &str) -> bool {
        matches!(self, Tok::Ident { text, .. } if text == word)
    }

    /// Whether this is the punctuation `ch`.
    pub fn is_punct(&self, ch: char) -> bool {
        matches!(self, Tok::Punct { ch: c, .. } if *c == ch)
    }
}

/// Renders tokens back to source text that parses to the same tokens.
pub fn render(toks: &[Tok]) -> String {
    let mut out = String::new();
    render_into(toks, &mut out);
    out.truncate(out.trim_end().len());
    out
}

fn render_into(toks: &[Tok], out: &mut String) {
    for tok in toks {
        match tok {
            Tok::Ident { text, .. } | Tok::Lit { text, .. } => {
                out.push_str(text);
                out.push(' ');
            }
            Tok::Punct { ch, joint, .. } => {
                out.push(*ch);
                // A joint punct is glued to what follows (`::`, `->`, `'a`); splitting it
                // would change the meaning, so only alone puncts get a separating space.
                if !joint {
                    out.push(' ');
                }
            }
            Tok::Group { delim, toks, .. } => {
                let (open, close) = match delim {
                    Delim::Paren => ("(", ")"),
                    Delim::Brace => ("{", "}"),
                    Delim::Bracket => ("[", "]"),
                    Delim::None => ("", ""),
                };
                out.push_str(open);
                render_into(toks, out);
                out.push_str(close);
                out.push(' ');
            }
        }
    }
}

/// Renders `text` as a Rust string literal (`Debug` of `str` is valid Rust literal syntax).
pub fn str_lit(text: &str) -> String {
    format!("{text:?}")
}

/// A small lexer from source text to `Tok`, for unit tests only: it assigns span handles in
/// token order (a group gets its handle before its contents), covers the token shapes item
/// declarations use, and panics on anything else because its input is test source code.
#[cfg(test)]
pub mod lex {
    use super::{Delim, Sp, Tok};

    /// Lexes `source` into tokens.
    pub fn lex(source: &str) -> Vec<Tok> {
        let chars: Vec<char> = source.chars().collect();
        let mut position = 0;
        let mut next_sp = 0;
        let toks = lex_until(&chars, &mut position, &mut next_sp, None);
        assert_eq!(position, chars.len(), "unbalanced test source");
        toks
    }

    fn lex_until(chars: &[char], pos: &mut usize, sp: &mut u32, close: Option<char>) -> Vec<Tok> {
        let mut toks = Vec::new();
        while *pos < chars.len() {
            let c = chars[*pos];
            if c.is_whitespace() {
                *pos += 1;
            } else if Some(c) == close {
                *pos += 1;
                return toks;
            } else if let Some((delim, closing)) = opener(c) {
                let group_sp = take_sp(sp);
                *pos += 1;
                let inner = lex_until(chars, pos, sp, Some(closing));
                toks.push(Tok::Group {
                    delim,
                    toks: inner,
                    sp: group_sp,
                });
            } else if c == '"' || raw_string_starts(chars, *pos) {
                let text = string(chars, pos);
                toks.push(Tok::Lit {
                    text,
                    sp: take_sp(sp),
                });
            } else if c.is_ascii_digit() {
                let text = word(chars, pos);
                toks.push(Tok::Lit {
                    text,
                    sp: take_sp(sp),
                });
            } else if c.is_alphanumeric() || c == '_' {
                let text = word(chars, pos);
                toks.push(Tok::Ident {
                    text,
                    sp: take_sp(sp),
                });
            } else {
                *pos += 1;
                let next = chars.get(*pos).copied().unwrap_or(' ');
                let joint =
                    c == '\'' || (next.is_ascii_punctuation() && !"\"()[]{}_".contains(next));
                toks.push(Tok::Punct {
                    ch: c,
                    joint,
                    sp: take_sp(sp),
                });
            }
        }
        assert!(close.is_none(), "unclosed group in test source");
        toks
    }

    fn raw_string_starts(chars: &[char], pos: usize) -> bool {
        chars[pos] == 'r' && chars[pos + 1..].iter().find(|&&c| c != '#') == Some(&'"')
    }

    fn opener(c: char) -> Option<(Delim, char)> {
        match c {
            '(' => Some((Delim::Paren, ')')),
            '[' => Some((Delim::Bracket, ']')),
            '{' => Some((Delim::Brace, '}')),
            _ => None,
        }
    }

    fn take_sp(sp: &mut u32) -> Sp {
        *sp += 1;
        Sp(*sp - 1)
    }

    fn word(chars: &[char], pos: &mut usize) -> String {
        let start = *pos;
        if chars[*pos] == 'r' && chars.get(*pos + 1) == Some(&'#') {
            *pos += 2;
        }
        while *pos < chars.len() && (chars[*pos].is_alphanumeric() || chars[*pos] == '_') {
            *pos += 1;
        }
        chars[start..*pos].iter().collect()
    }

    fn string(chars: &[char], pos: &mut usize) -> String {
        let start = *pos;
        let mut hashes = 0;
        let raw = chars[*pos] == 'r';
        if raw {
            *pos += 1;
            while chars[*pos] == '#' {
                hashes += 1;
                *pos += 1;
            }
        }
        *pos += 1; // opening quote
        loop {
            let c = chars[*pos];
            *pos += 1;
            if !raw && c == '\\' {
                *pos += 1;
            } else if c == '"' && chars[*pos..].iter().take(hashes).all(|&h| h == '#') {
                *pos += hashes;
                break;
            }
        }
        chars[start..*pos].iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::lex::lex;
    use super::*;

    #[test]
    fn render_keeps_joint_punctuation_glued() {
        let text = render(&lex("fn(u8) -> Vec<Vec<&'a str>>"));
        assert_eq!(text, "fn (u8 ) -> Vec < Vec <&'a str >>");
        let text = render(&lex("a::b::<T>"));
        assert_eq!(text, "a :: b ::< T >");
    }

    #[test]
    fn lexer_assigns_spans_in_order() {
        let toks = lex("#[json(skip)] x");
        assert_eq!(toks[0].sp(), Sp(0));
        assert_eq!(toks[1].sp(), Sp(1));
        assert_eq!(toks[2].sp(), Sp(5));
        assert!(toks[2].is_ident("x"));
    }

    #[test]
    fn str_lit_escapes() {
        assert_eq!(str_lit("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
