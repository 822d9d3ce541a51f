//! The QR text form of a lic file: `LIC1:` followed by the binary file in base45
//! (RFC 9285), the encoding QR codes are made for — every character is in the QR
//! alphanumeric set, 5.5 bits a character against 8 for armored text, so a request's code
//! is small enough for a phone to read from a terminal (docs/format.md §2.4). EU digital
//! COVID certificates carry their COSE_Sign1 the same way (`HC1:`). There is no
//! compression: a request is mostly hashes, a nonce, a key and a signature, which do not
//! compress.
//!
//! Readers accept the QR text wherever they accept armored text.

use super::FormatError;

/// What starts the QR text of a lic file (format version 1).
pub const PREFIX: &str = "LIC1:";

const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// The QR text of binary file bytes.
pub fn encode(cose: &[u8]) -> String {
    let mut out = String::with_capacity(PREFIX.len() + cose.len().div_ceil(2) * 3);
    out.push_str(PREFIX);
    for pair in cose.chunks(2) {
        let (mut n, digits) = match pair {
            [a, b] => (usize::from(*a) * 256 + usize::from(*b), 3),
            [a] => (usize::from(*a), 2),
            _ => continue,
        };
        for _ in 0..digits {
            out.push(char::from(ALPHABET[n % 45]));
            n /= 45;
        }
    }
    out
}

fn invalid(reason: String) -> FormatError {
    FormatError::ArmorMalformedLine { line: 1, reason }
}

/// The binary file bytes of QR text, or `None` when `text` is not QR text (it does not
/// start with [`PREFIX`]). Line ends, tabs and a byte-order mark around it are ignored;
/// spaces are not (a space is a base45 digit).
pub fn decode(text: &[u8]) -> Option<Result<Vec<u8>, FormatError>> {
    let text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text);
    // ASCII white space as format.md §2.2 R3 counts it (vertical tab included, which
    // `trim_ascii_start` leaves).
    let start = text
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(text.len());
    let text = &text[start..];
    let body = text.strip_prefix(PREFIX.as_bytes())?;
    let end = body
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n' | b'\t'))
        .map_or(0, |i| i + 1);
    Some(decode_base45(&body[..end]))
}

fn decode_base45(body: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut digits = Vec::with_capacity(body.len());
    for (i, &c) in body.iter().enumerate() {
        match ALPHABET.iter().position(|&a| a == c) {
            Some(d) => digits.push(d),
            None => {
                return Err(invalid(format!(
                    "character {} of the QR text ({}) is not a base45 character{}",
                    i + 1 + PREFIX.len(),
                    char::from(c).escape_default(),
                    if c.is_ascii_lowercase() {
                        " (QR text is upper case: was it changed on the way?)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    if digits.len() % 3 == 1 {
        return Err(invalid(
            "the QR text is cut short (its length is not a whole number of base45 groups): \
             scan or copy it again"
                .into(),
        ));
    }
    let mut out = Vec::with_capacity(digits.len() / 3 * 2 + 1);
    for group in digits.chunks(3) {
        match *group {
            [c, d, e] => {
                let n = c + d * 45 + e * 45 * 45;
                let (Ok(hi), Ok(lo)) = (u8::try_from(n / 256), u8::try_from(n % 256)) else {
                    return Err(invalid(format!(
                        "the QR text has a base45 group worth {n}, above 65535"
                    )));
                };
                out.extend([hi, lo]);
            }
            [c, d] => {
                let n = c + d * 45;
                let Ok(byte) = u8::try_from(n) else {
                    return Err(invalid(format!(
                        "the QR text ends in a base45 pair worth {n}, above 255"
                    )));
                };
                out.push(byte);
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round(bytes: &[u8]) -> Vec<u8> {
        decode(encode(bytes).as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn rfc_9285_examples() {
        assert_eq!(encode(b"AB"), "LIC1:BB8");
        assert_eq!(encode(b"Hello!!"), "LIC1:%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "LIC1:UJCLQE7W581");
        assert_eq!(decode(b"LIC1:QED8WEX0").unwrap().unwrap(), b"ietf!");
    }

    #[test]
    fn every_length_and_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            assert_eq!(round(&all[..len]), &all[..len]);
        }
        assert_eq!(round(&[0xff, 0xff, 0xff]), [0xff, 0xff, 0xff]);
    }

    #[test]
    fn not_qr_text_is_left_to_the_armor_reader() {
        assert!(decode(b"-----BEGIN LIC LICENSE-----").is_none());
        assert!(decode(b"").is_none());
    }

    #[test]
    fn line_ends_around_it_are_ignored() {
        let text = format!("\u{feff}\n\u{b}\u{c} {}\r\n", encode(b"ietf!"));
        assert_eq!(decode(text.as_bytes()).unwrap().unwrap(), b"ietf!");
    }

    #[test]
    fn damage_is_refused_with_what_is_wrong() {
        let refused = |t: &[u8]| decode(t).unwrap().unwrap_err().to_string();
        assert!(refused(b"LIC1:qed8wex0").contains("upper case"));
        assert!(refused(b"LIC1:QED8WEX").contains("cut short"));
        assert!(refused(b"LIC1:GGW").contains("above 65535"));
        assert!(refused(b"LIC1:::").contains("above 255"));
        assert!(refused(b"LIC1:QED8WE#0").contains("character 12"));
    }
}
