//! `rename_all` styles: splitting a Rust name into words and joining them in a style.
//!
//! Owns: the list of styles and their names as written in attributes. Must not: know where a
//! name comes from (fields and variants go through the same functions).

/// A `rename_all` style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// `camelCase`
    Camel,
    /// `PascalCase`
    Pascal,
    /// `snake_case`
    Snake,
    /// `SCREAMING_SNAKE_CASE`
    ScreamingSnake,
    /// `kebab-case`
    Kebab,
    /// `SCREAMING-KEBAB-CASE`
    ScreamingKebab,
    /// `lowercase`: the whole name lowercased, separators kept.
    Lower,
    /// `UPPERCASE`: the whole name uppercased, separators kept.
    Upper,
}

/// Every style with the name used in `rename_all = "..."`.
pub const STYLES: [(&str, Case); 8] = [
    ("camelCase", Case::Camel),
    ("PascalCase", Case::Pascal),
    ("snake_case", Case::Snake),
    ("SCREAMING_SNAKE_CASE", Case::ScreamingSnake),
    ("kebab-case", Case::Kebab),
    ("SCREAMING-KEBAB-CASE", Case::ScreamingKebab),
    ("lowercase", Case::Lower),
    ("UPPERCASE", Case::Upper),
];

impl Case {
    /// Looks a style up by its attribute name.
    pub fn from_name(name: &str) -> Option<Case> {
        STYLES
            .iter()
            .find(|(style, _)| *style == name)
            .map(|(_, case)| *case)
    }

    /// Renames `name` (a field or variant name without `r#`) in this style.
    pub fn apply(self, name: &str) -> String {
        match self {
            Case::Lower => return name.to_lowercase(),
            Case::Upper => return name.to_uppercase(),
            _ => {}
        }
        let words = split_words(name);
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        match self {
            Case::Snake => lower.join("_"),
            Case::Kebab => lower.join("-"),
            Case::ScreamingSnake => lower.join("_").to_uppercase(),
            Case::ScreamingKebab => lower.join("-").to_uppercase(),
            Case::Pascal => lower.iter().map(|w| capitalize(w)).collect(),
            Case::Camel => {
                let mut out = lower.first().cloned().unwrap_or_default();
                out.extend(lower.iter().skip(1).map(|w| capitalize(w)));
                out
            }
            Case::Lower | Case::Upper => unreachable!("handled above"),
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Splits `user_id`, `UserId`, `HTTPServer2Go` into words: at `_` and `-`, before an upper-case
/// letter that follows a lower-case letter or digit, and before the last capital of an acronym
/// followed by a lower-case letter (`HTTPServer` -> `HTTP`, `Server`). Digits stay with the
/// word they follow.
pub fn split_words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '-' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let previous = if i > 0 { chars[i - 1] } else { '_' };
        let next = chars.get(i + 1).copied().unwrap_or('_');
        let starts_word = c.is_uppercase()
            && (previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next.is_lowercase()));
        if starts_word && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(case: &str, input: &str, expected: &str) {
        let style = Case::from_name(case).expect("known style");
        assert_eq!(style.apply(input), expected, "{case} of {input}");
    }

    #[test]
    fn fields_in_every_style() {
        let table = [
            ("camelCase", "user_id", "userId"),
            ("PascalCase", "user_id", "UserId"),
            ("snake_case", "user_id", "user_id"),
            ("SCREAMING_SNAKE_CASE", "user_id", "USER_ID"),
            ("kebab-case", "user_id", "user-id"),
            ("SCREAMING-KEBAB-CASE", "user_id", "USER-ID"),
            ("lowercase", "user_id", "user_id"),
            ("UPPERCASE", "user_id", "USER_ID"),
            ("camelCase", "a", "a"),
            ("camelCase", "address_line2", "addressLine2"),
        ];
        for (case, input, expected) in table {
            check(case, input, expected);
        }
    }

    #[test]
    fn variants_in_every_style() {
        let table = [
            ("camelCase", "OrderPlaced", "orderPlaced"),
            ("PascalCase", "OrderPlaced", "OrderPlaced"),
            ("snake_case", "OrderPlaced", "order_placed"),
            ("SCREAMING_SNAKE_CASE", "OrderPlaced", "ORDER_PLACED"),
            ("kebab-case", "OrderPlaced", "order-placed"),
            ("lowercase", "OrderPlaced", "orderplaced"),
            ("UPPERCASE", "OrderPlaced", "ORDERPLACED"),
            ("snake_case", "HTTPServer", "http_server"),
            ("snake_case", "Utf8Error", "utf8_error"),
            ("kebab-case", "V2", "v2"),
        ];
        for (case, input, expected) in table {
            check(case, input, expected);
        }
    }

    #[test]
    fn unknown_style_names_are_rejected() {
        assert_eq!(Case::from_name("camelcase"), None);
        assert_eq!(Case::from_name("Snake_Case"), None);
        assert_eq!(STYLES.len(), 8);
    }
}
