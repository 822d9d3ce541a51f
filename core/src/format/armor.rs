//! ASCII armor: `-----BEGIN LIC <KIND>-----`, base64 lines of 64 characters,
//! `-----END LIC <KIND>-----`.
//!
//! Reading is tolerant of what mail and editors do to text — CRLF line ends, indentation
//! and trailing spaces, blank lines, text before and after the block — and refuses
//! everything else: a label mismatch, an unknown kind, bad or non-canonical base64, two
//! blocks, a block without its END line.

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
    // Lines as byte slices: text around the block need not be UTF-8. Lines end in LF or
    // CRLF (the CR is trimmed as white space); text with no LF at all but CRs (old Mac
    // line ends) is split at the CRs.
    let separator = if text.contains(&b'\n') { b'\n' } else { b'\r' };
    let lines: Vec<&[u8]> = text
        .split(|&b| b == separator)
        .map(|l| l.trim_ascii())
        .collect();

    let mut begins = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(BEGIN.as_bytes()));
    let (begin_index, begin_line) = begins.next().ok_or(FormatError::ArmorMissing)?;
    if begins.next().is_some() {
        return Err(FormatError::ArmorMultipleBlocks);
    }
    let begin_label = label_of(begin_line, BEGIN);

    let end_offset = lines[begin_index + 1..]
        .iter()
        .position(|l| l.starts_with(b"-----END"))
        .ok_or_else(|| FormatError::ArmorTruncated {
            label: begin_label.clone(),
        })?;
    let end_index = begin_index + 1 + end_offset;
    let end_line = lines[end_index];
    let end_label = if end_line.starts_with(END.as_bytes()) {
        label_of(end_line, END)
    } else {
        String::from_utf8_lossy(end_line).into_owned()
    };
    if !begin_line.ends_with(DASHES.as_bytes())
        || !end_line.ends_with(DASHES.as_bytes())
        || begin_label != end_label
    {
        return Err(FormatError::ArmorLabelMismatch {
            begin: begin_label,
            end: end_label,
        });
    }
    let kind = FileKind::from_armor_label(&begin_label).ok_or(FormatError::ArmorUnknownKind {
        label: begin_label.clone(),
    })?;

    let mut body = Vec::with_capacity(text.len());
    let mut last_line = begin_index + 1;
    for (i, line) in lines[begin_index + 1..end_index].iter().enumerate() {
        let line_no = begin_index + 2 + i; // 1-based line number in the input
        if let Some(bad) = line
            .iter()
            .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='))
        {
            return Err(FormatError::ArmorBadBase64 {
                line: line_no,
                reason: format!("unexpected character {:?}", char::from(*bad)),
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

fn label_of(line: &[u8], prefix: &str) -> String {
    let rest = &line[prefix.len()..];
    let rest = rest.strip_suffix(DASHES.as_bytes()).unwrap_or(rest);
    String::from_utf8_lossy(rest).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..=255u8).cycle().take(300).collect()
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
