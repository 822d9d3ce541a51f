//! ASCII armor: `-----BEGIN LIC <KIND>-----`, base64 lines of 64 characters,
//! `-----END LIC <KIND>-----`.
//!
//! Reading is tolerant of what mail and editors do to text — CRLF line ends, indentation
//! and trailing spaces (also Unicode ones such as the no-break spaces of HTML mail), a
//! byte-order mark, text saved as UTF-16 (with its byte-order mark), blank lines, text
//! before and after the block — and refuses
//! everything else: a malformed BEGIN or END line, a label mismatch, a label in the
//! wrong letter case, an unknown kind, bad or non-canonical base64, two blocks, a block
//! without its END line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::FormatError;
use super::kind::FileKind;

/// The largest armored (or binary) file lic reads. Checked before any decoding.
pub const MAX_FILE_SIZE: usize = 64 * 1024;

/// Characters of base64 per armor line when writing.
pub const LINE_WIDTH: usize = 64;

const BEGIN: &str = "-----BEGIN LIC ";
const END: &str = "-----END LIC ";
const DASHES: &str = "-----";

/// Armor `bytes` (a COSE_Sign1) as a file of `kind`. The text ends with a newline.
pub fn encode(kind: FileKind, bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(bytes);
    let label = kind.armor_label();
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE_WIDTH + 64);
    out.push_str(BEGIN);
    out.push_str(label);
    out.push_str(DASHES);
    out.push('\n');
    // Base64 output is ASCII, so splitting the bytes never splits a character.
    for chunk in b64.as_bytes().chunks(LINE_WIDTH) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(END);
    out.push_str(label);
    out.push_str(DASHES);
    out.push('\n');
    out
}

/// Find the one armored block in `text` and return its kind and decoded bytes.
pub fn decode(text: &[u8]) -> Result<(FileKind, Vec<u8>), FormatError> {
    if text.len() > MAX_FILE_SIZE {
        return Err(FormatError::TooLarge {
            size: text.len(),
            limit: MAX_FILE_SIZE,
        });
    }
    if let Some(decoded) = decode_plain(text) {
        return Ok(decoded);
    }
    // Text saved as UTF-16 (Windows Notepad's "Unicode") starts with its byte-order mark:
    // read it as the same text in UTF-8.
    let utf8;
    let text = match from_utf16(text) {
        Some(converted) => {
            utf8 = converted;
            utf8.as_bytes()
        }
        None => text,
    };
    // Lines as byte slices: text around the block need not be UTF-8. Lines end in LF or
    // CRLF (the CR is trimmed as white space); text with no LF at all but CRs (old Mac
    // line ends) is split at the CRs. A byte-order mark and Unicode white space (the
    // non-breaking spaces of HTML mail) around a line are trimmed like ASCII spaces.
    let separator = if text.contains(&b'\n') { b'\n' } else { b'\r' };
    let lines: Vec<&[u8]> = text.split(|&b| b == separator).map(trim_line).collect();

    let mut begins = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(BEGIN.as_bytes()));
    let (begin_index, begin_line) = begins.next().ok_or(FormatError::ArmorMissing)?;
    if begins.next().is_some() {
        return Err(FormatError::ArmorMultipleBlocks);
    }
    let begin = Marker::parse(begin_line, BEGIN);

    let end_offset = lines[begin_index + 1..]
        .iter()
        .position(|l| l.starts_with(b"-----END"))
        .ok_or_else(|| FormatError::ArmorTruncated {
            label: begin.label_text(),
        })?;
    let end_index = begin_index + 1 + end_offset;
    let end_line = lines[end_index];
    let end = end_line
        .starts_with(END.as_bytes())
        .then(|| Marker::parse(end_line, END));

    // Each marker line must be exactly `-----BEGIN LIC <LABEL>-----`: nothing after the
    // closing dashes, and the closing dashes present.
    begin.check_line(begin_index + 1, BEGIN)?;
    if let Some(end) = &end {
        end.check_line(end_index + 1, END)?;
    }
    let end_label = match &end {
        Some(end) => end.label_text(),
        None => String::from_utf8_lossy(end_line).into_owned(),
    };
    let begin_label = begin.label_text();
    if end.as_ref().map(|e| e.label) != Some(begin.label) {
        return Err(FormatError::ArmorLabelMismatch {
            begin: begin_label,
            end: end_label,
        });
    }
    let Some(kind) = FileKind::from_armor_label(&begin_label) else {
        // A known label in another letter case was changed on its way (labels are case
        // sensitive); any other label is a kind of file this version does not know.
        let in_other_case = FileKind::ALL
            .into_iter()
            .find(|k| k.armor_label().eq_ignore_ascii_case(&begin_label));
        return Err(match in_other_case {
            Some(kind) => FormatError::ArmorLabelCase {
                found: begin_label,
                expected: kind.armor_label(),
            },
            None => FormatError::ArmorUnknownKind { label: begin_label },
        });
    };

    let mut body = Vec::with_capacity(text.len());
    let mut last_line = begin_index + 1;
    for (i, line) in lines[begin_index + 1..end_index].iter().enumerate() {
        let line_no = begin_index + 2 + i; // 1-based line number in the input
        if let Some(at) = line.iter().position(|&b| !BASE64_CHARS[usize::from(b)]) {
            return Err(FormatError::ArmorBadBase64 {
                line: line_no,
                reason: format!("unexpected character {}", describe_char(&line[at..])),
            });
        }
        if !line.is_empty() {
            last_line = line_no;
        }
        body.extend_from_slice(line);
    }
    let bytes = STANDARD
        .decode(&body)
        .map_err(|e| FormatError::ArmorBadBase64 {
            line: last_line,
            reason: e.to_string(),
        })?;
    Ok((kind, bytes))
}

/// The block exactly as [`encode`] writes it — the BEGIN line first, body lines of base64
/// characters ended by LF, the END line with the same label, at most one LF after it —
/// read in one pass. `None` for anything else (text around the block, CRs, white space,
/// a bad label or bad base64 …), which the general reading then reads or refuses with
/// its own errors: both give the same bytes for every block this accepts.
fn decode_plain(text: &[u8]) -> Option<(FileKind, Vec<u8>)> {
    let rest = text.strip_prefix(BEGIN.as_bytes())?;
    let eol = rest.iter().position(|&b| b == b'\n')?;
    let label = rest[..eol].strip_suffix(DASHES.as_bytes())?;
    let kind = FileKind::from_armor_label(std::str::from_utf8(label).ok()?)?;
    let rest = &rest[eol + 1..];
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let rest = rest.strip_suffix(DASHES.as_bytes())?;
    let rest = rest.strip_suffix(label)?;
    let body = rest.strip_suffix(END.as_bytes())?;
    if body.last().is_some_and(|&b| b != b'\n') {
        return None;
    }
    // The lines joined; any byte outside the alphabet fails the decoding (and the general
    // reading then names it), so it needs no check of its own here. A line of the width
    // lic writes is taken whole, without looking for its end byte by byte: an LF within
    // it (a shorter line) stays in the text, fails the decoding, and the general reading
    // decides.
    let mut b64 = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let len = match rest.get(LINE_WIDTH) {
            Some(b'\n') => LINE_WIDTH,
            _ => rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len()),
        };
        b64.extend_from_slice(rest.get(..len)?);
        rest = rest.get(len + 1..).unwrap_or_default();
    }
    let bytes = STANDARD.decode(&b64).ok()?;
    Some((kind, bytes))
}

/// The bytes a body line may hold: the base64 alphabet and `=` (a table: this test runs
/// on every byte of every file read).
const BASE64_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=';
        b += 1;
    }
    table
};

/// A BEGIN or END line split into its parts: `<prefix><label>-----<rest>`.
struct Marker<'a> {
    line: &'a [u8],
    /// The text between the prefix and the first `-----` (or the end of the line).
    label: &'a [u8],
    /// Whether the closing `-----` is there.
    closed: bool,
    /// What follows the closing `-----`.
    rest: &'a [u8],
}

impl<'a> Marker<'a> {
    fn parse(line: &'a [u8], prefix: &str) -> Self {
        let after = line.get(prefix.len()..).unwrap_or_default();
        match after
            .windows(DASHES.len())
            .position(|w| w == DASHES.as_bytes())
        {
            Some(at) => Marker {
                line,
                label: &after[..at],
                closed: true,
                rest: &after[at + DASHES.len()..],
            },
            None => Marker {
                line,
                label: after,
                closed: false,
                rest: &[],
            },
        }
    }

    fn label_text(&self) -> String {
        String::from_utf8_lossy(self.label).into_owned()
    }

    /// The line as it should read.
    fn expected(&self, prefix: &str) -> String {
        format!("{prefix}{}{DASHES}", self.label_text())
    }

    fn check_line(&self, line_no: usize, prefix: &str) -> Result<(), FormatError> {
        if !self.closed {
            return Err(FormatError::ArmorMalformedLine {
                line: line_no,
                reason: format!(
                    "'{}' lacks its closing '{DASHES}'; it should read '{}'",
                    String::from_utf8_lossy(self.line),
                    self.expected(prefix)
                ),
            });
        }
        if !self.rest.is_empty() {
            return Err(FormatError::ArmorMalformedLine {
                line: line_no,
                reason: format!(
                    "'{}' follows the closing '{DASHES}'; the line should read '{}' and nothing \
                     else",
                    String::from_utf8_lossy(self.rest),
                    self.expected(prefix)
                ),
            });
        }
        Ok(())
    }
}

/// The characters trimmed from both ends of every line besides ASCII white space
/// (space, tab, LF, form feed, CR): the other characters with the Unicode `White_Space`
/// property, such as the no-break space of HTML mail, and U+FEFF, the byte-order mark
/// editors put at the start of a file. They are recognised in their UTF-8 encodings.
const UNICODE_SPACES: [char; 21] = [
    '\u{0b}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}',
    '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}',
    '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}', '\u{feff}',
];

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || UNICODE_SPACES.contains(&c)
}

/// The UTF-8 character `bytes` starts with, and its length; `None` if they do not start
/// with one.
fn first_char(bytes: &[u8]) -> Option<(char, usize)> {
    (1..=bytes.len().min(4))
        .find_map(|n| Some((std::str::from_utf8(&bytes[..n]).ok()?.chars().next()?, n)))
}

/// The UTF-8 character `bytes` ends with, and its length.
fn last_char(bytes: &[u8]) -> Option<(char, usize)> {
    (1..=bytes.len().min(4)).find_map(|n| {
        let tail = &bytes[bytes.len() - n..];
        Some((std::str::from_utf8(tail).ok()?.chars().next()?, n))
    })
}

/// Remove white space (ASCII, other Unicode white space, byte-order marks) from both
/// ends of a line. Bytes that are not UTF-8 are kept as they are.
/// `text` decoded as UTF-16, if it starts with a UTF-16 byte-order mark (either byte
/// order). Code units that are not valid UTF-16 become U+FFFD, which no armor line
/// holds, so they are refused where they matter (in the block) and ignored elsewhere.
fn from_utf16(text: &[u8]) -> Option<String> {
    let little = match text {
        [0xff, 0xfe, ..] => true,
        [0xfe, 0xff, ..] => false,
        _ => return None,
    };
    let units = text[2..].chunks(2).map(|pair| match (pair, little) {
        ([a, b], true) => u16::from_le_bytes([*a, *b]),
        ([a, b], false) => u16::from_be_bytes([*a, *b]),
        // An odd byte at the end: not a code unit.
        _ => 0xfffd,
    });
    Some(
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

fn trim_line(mut line: &[u8]) -> &[u8] {
    while let Some((_, n)) = first_char(line).filter(|(c, _)| is_space(*c)) {
        line = &line[n..];
    }
    while let Some((_, n)) = last_char(line).filter(|(c, _)| is_space(*c)) {
        line = &line[..line.len() - n];
    }
    line
}

/// The character `bytes` starts with, for an error message: the character if the text
/// is UTF-8 there (with its code point if it is not ASCII, e.g. a no-break space), else
/// the byte.
fn describe_char(bytes: &[u8]) -> String {
    match first_char(bytes) {
        Some((c, _)) if c.is_ascii() => format!("{c:?}"),
        Some((c, _)) => format!("{c:?} (U+{:04X})", u32::from(c)),
        None => format!("byte 0x{:02x}", bytes.first().copied().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..=255u8).cycle().take(300).collect()
    }

    #[test]
    fn text_saved_as_utf16_is_read_in_either_byte_order() {
        let text = format!(
            "Your license, as Notepad saved it:\r\n{}",
            encode(FileKind::License, &sample()).replace('\n', "\r\n")
        );
        let units: Vec<u16> = text.encode_utf16().collect();
        let le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(units.iter().flat_map(|u| u.to_le_bytes()))
            .collect();
        let be: Vec<u8> = [0xfe, 0xff]
            .into_iter()
            .chain(units.iter().flat_map(|u| u.to_be_bytes()))
            .collect();
        for utf16 in [le, be] {
            assert_eq!(decode(&utf16).unwrap(), (FileKind::License, sample()));
        }
        // Without its byte-order mark UTF-16 is not recognised: NUL bytes everywhere.
        let bare: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(decode(&bare).unwrap_err(), FormatError::ArmorMissing);
        // A damaged code unit inside the block is refused as bad base64.
        let mut damaged = units.clone();
        let at = text.find("\r\n").unwrap() + 2 + "-----BEGIN LIC LICENSE-----\r\n".len() + 5;
        damaged[at] = 0xd800; // a lone surrogate
        let le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(damaged.iter().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode(&le).unwrap_err().code(), "armor-bad-base64");
    }

    #[test]
    fn round_trip_with_64_character_lines() {
        let text = encode(FileKind::License, &sample());
        assert!(text.starts_with("-----BEGIN LIC LICENSE-----\n"));
        assert!(text.ends_with("-----END LIC LICENSE-----\n"));
        assert!(
            text.lines()
                .all(|l| l.len() <= LINE_WIDTH || l.starts_with("-----"))
        );
        assert_eq!(
            decode(text.as_bytes()).unwrap(),
            (FileKind::License, sample())
        );
    }

    #[test]
    fn tolerates_crlf_whitespace_and_surrounding_text() {
        let text = encode(FileKind::ActivationRequest, &sample());
        let mail = format!(
            "Hello support,\r\n\r\nhere is my request:\r\n\r\n{}\r\n\r\nRegards\r\n\u{fffd}",
            text.lines()
                .map(|l| format!("  {l}  "))
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        assert_eq!(
            decode(mail.as_bytes()).unwrap(),
            (FileKind::ActivationRequest, sample())
        );
    }

    #[test]
    fn tolerates_lone_cr_line_ends() {
        let text = encode(FileKind::License, &sample()).replace('\n', "\r");
        assert_eq!(
            decode(text.as_bytes()).unwrap(),
            (FileKind::License, sample())
        );
    }

    #[test]
    fn tolerates_a_leading_byte_order_mark() {
        let text = format!("\u{feff}{}", encode(FileKind::License, &sample()));
        assert_eq!(
            decode(text.as_bytes()).unwrap(),
            (FileKind::License, sample())
        );
        // Also with CRLF line ends and text before the block (a file saved by Notepad).
        let text = format!(
            "\u{feff}my license\r\n{}",
            encode(FileKind::License, &sample()).replace('\n', "\r\n")
        );
        assert_eq!(
            decode(text.as_bytes()).unwrap(),
            (FileKind::License, sample())
        );
    }

    #[test]
    fn tolerates_unicode_white_space_around_lines() {
        // HTML mail: no-break spaces indent the lines and trail them; other Unicode white
        // space (ideographic space, thin space, line separator) and a BOM at a line end
        // are trimmed too. Lines holding nothing but such spaces count as empty.
        let text = encode(FileKind::UsageReport, &sample());
        let html = format!(
            "<p>Here it is:</p>\n\u{a0}\u{a0}\n{}\n\u{a0}\n",
            text.lines()
                .enumerate()
                .map(|(i, l)| match i % 3 {
                    0 => format!("\u{a0}\u{a0}{l}\u{a0}"),
                    1 => format!("\u{3000}\t{l}\u{2009}\u{feff}"),
                    _ => format!("\u{2028} {l}\u{a0}\r"),
                })
                .collect::<Vec<_>>()
                .join("\n\u{a0}\n")
        );
        assert_eq!(
            decode(html.as_bytes()).unwrap(),
            (FileKind::UsageReport, sample())
        );
    }

    #[test]
    fn blocks_as_written_are_read_in_one_pass_to_the_same_bytes() {
        for len in [0, 1, 2, 3, 47, 48, 49, 700] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let text = encode(FileKind::License, &bytes);
            assert_eq!(
                decode_plain(text.as_bytes()),
                Some((FileKind::License, bytes.clone()))
            );
            let without_final_lf = text.trim_end_matches('\n');
            assert_eq!(
                decode_plain(without_final_lf.as_bytes()),
                Some((FileKind::License, bytes.clone()))
            );
        }
        // Anything else goes to the general reading, which decides.
        let text = encode(FileKind::License, &[1, 2, 3, 4]);
        for other in [
            text.replace('\n', "\r\n"),
            format!("hello\n{text}"),
            format!("{text}\n"),
            text.replace("END LIC LICENSE", "END LIC REFRESH"),
            text.replace("AQIDBA==", "AQIDBA="),
            text.replace("AQIDBA==", " AQIDBA=="),
            text.replace("LICENSE", "License"),
            String::new(),
        ] {
            assert_eq!(decode_plain(other.as_bytes()), None, "{other:?}");
        }
    }

    /// Lines of other widths than lic writes: whichever reading takes them, the bytes (or
    /// the refusal) are the general reading's.
    #[test]
    fn blocks_with_lines_of_other_widths_read_as_the_general_reading_reads_them() {
        let bytes: Vec<u8> = (0..700).map(|i| (i * 7 % 256) as u8).collect();
        let b64 = STANDARD.encode(&bytes);
        // The general reading alone: CRLF line ends keep the one-pass reading out.
        let general = |text: &[u8]| {
            let text = String::from_utf8_lossy(text).replace('\n', "\r\n");
            assert_eq!(decode_plain(text.as_bytes()), None);
            decode(text.as_bytes())
        };
        for widths in [
            &[64, 10, 64][..],
            &[10, 64, 64],
            &[63, 65, 64],
            &[76],
            &[4, 4, 60, 64],
            &[64, 64, 0, 64],
            &[1000],
        ] {
            let mut body = String::new();
            let mut rest = b64.as_str();
            for &w in widths.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (line, after) = rest.split_at(w.min(rest.len()));
                body.push_str(line);
                body.push('\n');
                rest = after;
            }
            let text = format!("-----BEGIN LIC LICENSE-----\n{body}-----END LIC LICENSE-----\n");
            let expected = general(text.as_bytes());
            assert_eq!(
                expected,
                Ok((FileKind::License, bytes.clone())),
                "{widths:?}"
            );
            assert_eq!(decode(text.as_bytes()), expected, "{widths:?}");
            if let Some(read) = decode_plain(text.as_bytes()) {
                assert_eq!(Ok(read), expected, "{widths:?}");
            }
            // A padding character inside a line: refused the same way by both.
            let bad = text.replacen('A', "=", 1);
            assert_eq!(
                decode(bad.as_bytes()),
                general(bad.as_bytes()),
                "{widths:?}"
            );
        }
    }

    #[test]
    fn trims_only_white_space_and_keeps_bytes_that_are_not_utf8() {
        assert_eq!(
            trim_line("\u{feff}\u{a0} ab\u{a0}c \u{85}".as_bytes()),
            "ab\u{a0}c".as_bytes()
        );
        // "à" ends in a0, the last byte of a no-break space: it is not white space.
        assert_eq!(
            trim_line("voil\u{e0}\u{a0}".as_bytes()),
            "voil\u{e0}".as_bytes()
        );
        // Latin-1 bytes (not UTF-8) are left alone, a0 included.
        assert_eq!(trim_line(b"\xa0x\xa0"), b"\xa0x\xa0");
        assert_eq!(trim_line(b"\xe2\x80"), b"\xe2\x80");
        assert_eq!(trim_line("\u{a0}\u{3000}\u{feff}".as_bytes()), b"");
        // Not white space: zero-width space and word joiner.
        assert_eq!(trim_line("\u{200b}x".as_bytes()), "\u{200b}x".as_bytes());
    }

    #[test]
    fn a_no_break_space_inside_a_body_line_is_named() {
        let text = encode(FileKind::License, &[1, 2, 3, 4]).replace("AQIDBA==", "AQ\u{a0}IDBA==");
        assert_eq!(
            decode(text.as_bytes()),
            Err(FormatError::ArmorBadBase64 {
                line: 2,
                reason: "unexpected character '\\u{a0}' (U+00A0)".into()
            })
        );
        let latin1 = encode(FileKind::License, &[1, 2, 3, 4])
            .replace("AQIDBA==", "AQ#IDBA==")
            .into_bytes()
            .into_iter()
            .map(|b| if b == b'#' { 0xa0 } else { b })
            .collect::<Vec<u8>>();
        assert_eq!(
            decode(&latin1),
            Err(FormatError::ArmorBadBase64 {
                line: 2,
                reason: "unexpected character byte 0xa0".into()
            })
        );
    }

    #[test]
    fn refuses_text_after_the_closing_dashes_and_says_how_the_line_should_read() {
        let text = encode(FileKind::License, &sample());
        let junk = text.replace(
            "-----BEGIN LIC LICENSE-----",
            "-----BEGIN LIC LICENSE-----x",
        );
        let err = decode(junk.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            FormatError::ArmorMalformedLine {
                line: 1,
                reason: "'x' follows the closing '-----'; the line should read \
                         '-----BEGIN LIC LICENSE-----' and nothing else"
                    .into()
            }
        );
        assert_eq!(err.code(), "armor-malformed-line");
        assert!(!err.to_string().contains("ends as"), "{err}");

        let last = text.lines().count();
        let junk_end = text.replace(
            "-----END LIC LICENSE-----",
            "-----END LIC LICENSE----- Thanks!",
        );
        assert_eq!(
            decode(junk_end.as_bytes()),
            Err(FormatError::ArmorMalformedLine {
                line: last,
                reason: "' Thanks!' follows the closing '-----'; the line should read \
                         '-----END LIC LICENSE-----' and nothing else"
                    .into()
            })
        );
        let open = text.replace("-----BEGIN LIC LICENSE-----", "-----BEGIN LIC LICENSE");
        assert_eq!(
            decode(open.as_bytes()),
            Err(FormatError::ArmorMalformedLine {
                line: 1,
                reason: "'-----BEGIN LIC LICENSE' lacks its closing '-----'; it should read \
                         '-----BEGIN LIC LICENSE-----'"
                    .into()
            })
        );
        // A truncated file whose BEGIN line has junk still names its label cleanly.
        let cut = "-----BEGIN LIC LICENSE-----x\nAAAA\n";
        assert_eq!(
            decode(cut.as_bytes()),
            Err(FormatError::ArmorTruncated {
                label: "LICENSE".into()
            })
        );
    }

    #[test]
    fn refuses_a_label_in_lower_case_as_such_not_as_a_newer_kind() {
        let text = encode(FileKind::License, &sample()).replace("LIC LICENSE", "LIC license");
        let err = decode(text.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            FormatError::ArmorLabelCase {
                found: "license".into(),
                expected: "LICENSE"
            }
        );
        assert_eq!(err.code(), "armor-label-case");
        assert!(err.to_string().contains("'LIC LICENSE'"), "{err}");
        assert!(!err.hint().contains("newer"), "{}", err.hint());
        let mixed = encode(FileKind::UsageReport, &sample())
            .replace("LIC USAGE REPORT", "LIC Usage Report");
        assert_eq!(
            decode(mixed.as_bytes()),
            Err(FormatError::ArmorLabelCase {
                found: "Usage Report".into(),
                expected: "USAGE REPORT"
            })
        );
        // Different case on the two lines is a mismatch, as before.
        let half =
            encode(FileKind::License, &sample()).replace("BEGIN LIC LICENSE", "BEGIN LIC license");
        assert!(matches!(
            decode(half.as_bytes()),
            Err(FormatError::ArmorLabelMismatch { .. })
        ));
    }

    #[test]
    fn refuses_label_mismatch() {
        let text =
            encode(FileKind::License, &sample()).replace("END LIC LICENSE", "END LIC REFRESH");
        assert_eq!(
            decode(text.as_bytes()),
            Err(FormatError::ArmorLabelMismatch {
                begin: "LICENSE".into(),
                end: "REFRESH".into()
            })
        );
    }

    #[test]
    fn refuses_two_blocks() {
        let one = encode(FileKind::License, &sample());
        let two = format!("{one}\n{one}");
        assert_eq!(
            decode(two.as_bytes()),
            Err(FormatError::ArmorMultipleBlocks)
        );
    }

    #[test]
    fn refuses_missing_block_and_missing_end() {
        assert_eq!(decode(b"just some text"), Err(FormatError::ArmorMissing));
        let text = encode(FileKind::License, &sample());
        let cut = &text[..text.len() / 2];
        assert_eq!(
            decode(cut.as_bytes()),
            Err(FormatError::ArmorTruncated {
                label: "LICENSE".into()
            })
        );
    }

    #[test]
    fn refuses_unknown_kind() {
        let text = encode(FileKind::License, &sample()).replace("LIC LICENSE", "LIC COUPON");
        assert_eq!(
            decode(text.as_bytes()),
            Err(FormatError::ArmorUnknownKind {
                label: "COUPON".into()
            })
        );
    }

    #[test]
    fn refuses_bad_and_non_canonical_base64() {
        let text = encode(FileKind::License, &[1, 2, 3, 4]);
        // "AQIDBA==" → a stray character.
        let bad = text.replace("AQIDBA==", "AQI*BA==");
        assert!(matches!(
            decode(bad.as_bytes()),
            Err(FormatError::ArmorBadBase64 { line: 2, .. })
        ));
        // Non-zero trailing bits: "AQIDBB==" decodes to the same bytes in lax decoders.
        let lax = text.replace("AQIDBA==", "AQIDBB==");
        assert!(matches!(
            decode(lax.as_bytes()),
            Err(FormatError::ArmorBadBase64 { .. })
        ));
        let unpadded = text.replace("AQIDBA==", "AQIDBA");
        assert!(matches!(
            decode(unpadded.as_bytes()),
            Err(FormatError::ArmorBadBase64 { .. })
        ));
    }

    #[test]
    fn refuses_oversized_input_before_decoding() {
        let big = vec![b'A'; MAX_FILE_SIZE + 1];
        assert_eq!(
            decode(&big),
            Err(FormatError::TooLarge {
                size: MAX_FILE_SIZE + 1,
                limit: MAX_FILE_SIZE
            })
        );
    }
}
