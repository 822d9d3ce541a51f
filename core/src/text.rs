//! Strings from files, made safe to print on a terminal.
//!
//! Every string in a lic file is whatever its signer put there, and a device-signed file
//! is signed by the customer's own key: a product name or a feature name may carry
//! terminal escape sequences (`ESC [ 31 m`, the one-byte CSI `U+009B`) or Unicode bidi
//! overrides that make a line read differently from what it says. Before such a string
//! reaches a terminal, [`escape`] writes those characters as visible escapes; before a
//! JSON document does, [`escape_json`] writes them as JSON `\uXXXX` escapes, which any
//! JSON reader turns back into the exact original string.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: a control character (C0, DEL and C1,
/// i.e. [`char::is_control`]) or a bidi embedding, override or isolate (U+202A–U+202E,
/// U+2066–U+2069).
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every [unsafe](is_unsafe) character written as a Rust-style escape
/// (`\u{1b}`, `\u{9b}`, `\u{202e}`, and `\u{a}` for a line feed), for text output. Other
/// characters, backslashes included, are kept: the text stays readable, and a string
/// that already holds the six characters `\u{1b}` prints the same as one holding ESC
/// (the JSON output tells them apart).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text (as `serde_json` writes it) with every [unsafe](is_unsafe) character that
/// is not JSON whitespace written as a `\uXXXX` escape. `serde_json` escapes C0 control
/// characters inside strings but writes DEL, C1 controls and bidi characters as they
/// are; all of them are in the Basic Multilingual Plane and can occur only inside
/// strings, where `\uXXXX` means the same character. The document's value is unchanged.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let needs = |c: char| is_unsafe(c) && !matches!(c, '\n' | '\r' | '\t');
    if !json.chars().any(needs) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if needs(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(
            escape("photo\u{1b}[31mpro\u{9b}2J\u{202e}gpj.exe\u{7f}\n\r\t\0"),
            "photo\\u{1b}[31mpro\\u{9b}2J\\u{202e}gpj.exe\\u{7f}\\u{a}\\u{d}\\u{9}\\u{0}"
        );
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2069}',
        ] {
            assert_eq!(escape(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
        }
    }

    #[test]
    fn ordinary_text_is_kept_as_it_is() {
        for s in [
            "photo-pro",
            "Grüße, 日本語 ≤ 600",
            "C:\\Users\\me",
            "",
            "a'b\"c",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s}");
            assert!(matches!(escape_json(s), Cow::Borrowed(b) if b == s), "{s}");
        }
        // Neighbours of the bidi ranges are ordinary characters.
        assert_eq!(
            escape("\u{2029}\u{202f}\u{2065}\u{206a}\u{a0}"),
            "\u{2029}\u{202f}\u{2065}\u{206a}\u{a0}"
        );
    }

    #[test]
    fn json_keeps_its_value_and_loses_the_raw_characters() {
        let value = serde_json::json!({
            "product": "a\u{1b}[31mb\u{9b}c\u{202e}d\u{7f}",
            "features": { "x\u{2066}y": 1 },
        });
        let text = serde_json::to_string_pretty(&value).unwrap();
        let safe = escape_json(&text);
        assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
        assert!(
            safe.contains("\\u001b[31mb\\u009bc\\u202ed\\u007f"),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }
}
