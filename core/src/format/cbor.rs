//! Strict CBOR: a nesting limit, no trailing bytes, and the deterministic encoding of
//! RFC 8949 §4.2.1 (shortest forms, definite lengths, map keys sorted by their encoded
//! bytes, no duplicates) both when writing and when reading.

use ciborium::Value;

use super::error::FormatError;

/// No lic structure is nested more deeply than this (arrays, maps and tags count).
pub const MAX_DEPTH: usize = 16;

/// Decode exactly one CBOR item from `bytes`, checking depth, trailing bytes and
/// deterministic encoding. `part` names the structure in errors ("payload", …).
pub fn decode_strict(bytes: &[u8], part: &'static str) -> Result<Value, FormatError> {
    // The fast path: one pass over the bytes proves them deterministic (no re-encoding,
    // no key encoded again), then they are decoded once. It accepts a subset of what
    // the full checks below accept (for instance no float and no tag other than 18); on
    // anything else the full checks decide, so every refusal and its message are theirs.
    if is_plainly_deterministic(bytes)
        && let Some(value) = decode_plain(bytes)
    {
        return Ok(value);
    }
    decode_strict_full(bytes, part)
}

/// Decode well-formed `bytes` (plainly deterministic, so nested within the limit) into
/// one value, all of them. ciborium's scratch buffer is kept small: it is zeroed on every
/// call, and longer strings are read in pieces (to the same value).
pub(crate) fn decode_plain(bytes: &[u8]) -> Option<Value> {
    let mut rest = bytes;
    let value = ciborium::de::from_reader_with_buffer(&mut rest, &mut [0; SCRATCH]).ok()?;
    rest.is_empty().then_some(value)
}

/// The scratch buffer of the fast decoding: lic's names and keys are far shorter.
pub(crate) const SCRATCH: usize = 256;

/// The full strict decoding: decode, then check the map order and re-encode to compare.
/// The reference for [`decode_strict`]'s fast path.
fn decode_strict_full(bytes: &[u8], part: &'static str) -> Result<Value, FormatError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
        .map_err(|e| match e {
            ciborium::de::Error::RecursionLimitExceeded => FormatError::CborTooDeep { part },
            ciborium::de::Error::Io(_) => FormatError::CborMalformed {
                part,
                reason: "it ends in the middle of an item (truncated)".into(),
            },
            ciborium::de::Error::Syntax(offset) => FormatError::CborMalformed {
                part,
                reason: format!("invalid item at byte {offset}"),
            },
            ciborium::de::Error::Semantic(_, msg) => {
                FormatError::CborMalformed { part, reason: msg }
            }
        })?;
    if !rest.is_empty() {
        return Err(FormatError::CborTrailingBytes {
            part,
            extra: rest.len(),
        });
    }
    check_map_order(&value, part)?;
    // Shortest integer and length forms, definite lengths: re-encoding the decoded item
    // must give back the very same bytes. (This is a format check only; signatures are
    // always verified over the bytes as received.)
    if encode_value(&value) != bytes {
        return Err(FormatError::CborNotDeterministic {
            part,
            reason: "an integer, length or float is not in its shortest form, or a length \
                     is indefinite"
                .into(),
        });
    }
    Ok(value)
}

/// Whether `bytes` are exactly one CBOR item in deterministic encoding made only of
/// what lic files use: unsigned and negative integers, byte and text strings (UTF-8),
/// arrays, maps with keys in bytewise order and no duplicates, `false`, `true`, `null`,
/// and tag 18 — every head in its shortest form, every length definite, nested less
/// deeply than [`MAX_DEPTH`] with room to spare, nothing after it. One pass, no
/// allocation. `false` means "not proven", not "refused": floats, other tags, other
/// simple values and anything malformed are left to the full checks.
pub(crate) fn is_plainly_deterministic(bytes: &[u8]) -> bool {
    let mut at = 0;
    plain_item(bytes, &mut at, 0, false).is_some() && at == bytes.len()
}

/// [`is_plainly_deterministic`], and holding no tag and no null at all, and no map key
/// but text strings: only the values the fields of lic payloads take (docs/format.md
/// §5.1, §5.10), anywhere in the item. (A structure's keys must be text: serde's derived
/// field names would also match a byte string, which the full checks refuse.)
pub(crate) fn is_plain_payload(bytes: &[u8]) -> bool {
    let mut at = 0;
    plain_item(bytes, &mut at, 0, true).is_some() && at == bytes.len()
}

/// The encoded value under `key` (its encoded bytes) in the map that plainly
/// deterministic `bytes` ([`is_plainly_deterministic`]) are; `None` if they are not a
/// map or have no such key.
pub(crate) fn top_level_value<'a>(bytes: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut at = 0;
    let (major, entries) = plain_head(bytes, &mut at)?;
    if major != 5 {
        return None;
    }
    for _ in 0..entries {
        let start = at;
        plain_item(bytes, &mut at, 1, false)?;
        let found = bytes.get(start..at)? == key;
        let value_start = at;
        plain_item(bytes, &mut at, 1, false)?;
        if found {
            return bytes.get(value_start..at);
        }
    }
    None
}

/// The argument of the head at `bytes[*at]`, in its shortest form; `None` for an
/// indefinite or reserved length, a non-shortest head or truncated input.
pub(crate) fn plain_head(bytes: &[u8], at: &mut usize) -> Option<(u8, u64)> {
    let initial = *bytes.get(*at)?;
    *at += 1;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let width = match info {
        0..=23 => return Some((major, u64::from(info))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let end = at.checked_add(width)?;
    let arg = bytes
        .get(*at..end)?
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    *at = end;
    let shortest = match width {
        1 => arg >= 24,
        2 => arg > 0xff,
        4 => arg > 0xffff,
        _ => arg > 0xffff_ffff,
    };
    shortest.then_some((major, arg))
}

/// Step over the item at `bytes[*at]` of bytes proven [`is_plain_payload`].
pub(crate) fn skip_plain_payload_item(bytes: &[u8], at: &mut usize) -> Option<()> {
    plain_item(bytes, at, 0, true)
}

/// One item at `bytes[*at]` (see [`is_plainly_deterministic`]); `Some(())` if plain.
/// `values_only`: also no tag, no null and only text map keys ([`is_plain_payload`]).
fn plain_item(bytes: &[u8], at: &mut usize, depth: usize, values_only: bool) -> Option<()> {
    // Stricter than the decoder's limit: anything near it goes to the full checks.
    if depth + 2 >= MAX_DEPTH {
        return None;
    }
    let (major, arg) = plain_head(bytes, at)?;
    match major {
        0 | 1 => Some(()),
        2 | 3 => {
            let len = usize::try_from(arg).ok()?;
            let end = at.checked_add(len)?;
            let content = bytes.get(*at..end)?;
            if major == 3 {
                std::str::from_utf8(content).ok()?;
            }
            *at = end;
            Some(())
        }
        4 => (0..arg).try_for_each(|_| plain_item(bytes, at, depth + 1, values_only)),
        5 => {
            let mut previous: Option<&[u8]> = None;
            for _ in 0..arg {
                let start = *at;
                if values_only && bytes.get(start)? >> 5 != 3 {
                    return None;
                }
                plain_item(bytes, at, depth + 1, values_only)?;
                let key = bytes.get(start..*at)?;
                if previous.is_some_and(|p| p >= key) {
                    return None;
                }
                previous = Some(key);
                plain_item(bytes, at, depth + 1, values_only)?;
            }
            Some(())
        }
        6 if arg == 18 && !values_only => plain_item(bytes, at, depth + 1, values_only),
        // false, true, and (unless values only) null.
        7 if arg == 20 || arg == 21 || (arg == 22 && !values_only) => Some(()),
        _ => None,
    }
}

/// Decode the first CBOR item of `bytes`, well-formed and within the nesting limit but
/// otherwise as it comes: trailing bytes, key order, duplicate keys and non-shortest or
/// indefinite encodings are not checked. Only for reading the format version of a
/// payload that may be of a newer version (docs/format.md §6.3, step 10).
pub fn decode_lenient(bytes: &[u8]) -> Option<Value> {
    let mut rest = bytes;
    ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH).ok()
}

/// Sort every map in `value` into deterministic key order.
pub fn canonicalize(value: &mut Value) {
    match value {
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                canonicalize(k);
                canonicalize(v);
            }
            entries.sort_by_cached_key(|(k, _)| encode_value(k));
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalize),
        Value::Tag(_, inner) => canonicalize(inner),
        _ => {}
    }
}

/// Encode a value as it is (callers canonicalize first where order matters).
pub fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a `Value` into a `Vec` has no failure mode: the writer is infallible and
    // every `Value` is serializable.
    if ciborium::ser::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Key order and duplicates in every map, and the forms the re-encoding cannot see: long
/// bignums and NaNs.
fn check_map_order(value: &Value, part: &'static str) -> Result<(), FormatError> {
    match value {
        Value::Map(entries) => {
            let mut previous: Option<Vec<u8>> = None;
            for (k, v) in entries {
                let key = encode_value(k);
                if let Some(prev) = &previous {
                    if *prev == key {
                        return Err(FormatError::CborNotDeterministic {
                            part,
                            reason: format!("the map key {} appears twice", describe_key(k)),
                        });
                    }
                    if *prev > key {
                        return Err(FormatError::CborNotDeterministic {
                            part,
                            reason: format!("the map key {} is out of order", describe_key(k)),
                        });
                    }
                }
                check_map_order(k, part)?;
                check_map_order(v, part)?;
                previous = Some(key);
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_map_order(v, part)),
        // A bignum has one deterministic form (docs/format.md §4.1): more than 8 bytes
        // (else it fits a plain integer) and no leading zero byte. Bignums of up to 16
        // bytes are read as integers and their form is checked by the re-encoding; longer
        // ones are kept as they are, so their form is checked here.
        Value::Tag(2 | 3, inner) => match inner.as_ref() {
            Value::Bytes(b) if b.len() <= 8 || b[0] == 0 => {
                Err(FormatError::CborNotDeterministic {
                    part,
                    reason: "a bignum has leading zero bytes or fits a plain integer".into(),
                })
            }
            _ => check_map_order(inner, part),
        },
        Value::Tag(_, inner) => check_map_order(inner, part),
        // One NaN only, f9 7e00 (quiet, positive, no payload): the re-encoding keeps a
        // NaN's sign and payload, so they are checked here.
        Value::Float(f) if f.is_nan() && f.to_bits() != CANONICAL_NAN => {
            Err(FormatError::CborNotDeterministic {
                part,
                reason: "a NaN is not written f9 7e00".into(),
            })
        }
        _ => Ok(()),
    }
}

/// The bits of the one NaN lic reads, f9 7e00, as a double.
const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

fn describe_key(key: &Value) -> String {
    match key {
        Value::Text(t) => format!("{t:?}"),
        Value::Integer(i) => i128::from(*i).to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: Vec<(Value, Value)>) -> Value {
        Value::Map(entries)
    }

    #[test]
    fn canonical_order_is_bytewise_on_encoded_keys() {
        let mut v = map(vec![
            (Value::Text("bb".into()), Value::Integer(1.into())),
            (Value::Integer((-1).into()), Value::Integer(2.into())),
            (Value::Text("a".into()), Value::Integer(3.into())),
            (Value::Integer(99.into()), Value::Integer(4.into())),
            (Value::Integer(1.into()), Value::Integer(5.into())),
        ]);
        canonicalize(&mut v);
        let keys: Vec<Vec<u8>> = v
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| encode_value(k))
            .collect();
        // 1 (0x01) < 99 (0x18 0x63) < -1 (0x20) < "a" (0x61 …) < "bb" (0x62 …)
        assert_eq!(
            keys,
            vec![
                vec![0x01],
                vec![0x18, 0x63],
                vec![0x20],
                vec![0x61, b'a'],
                vec![0x62, b'b', b'b']
            ]
        );
        let bytes = encode_value(&v);
        assert_eq!(decode_strict(&bytes, "payload").unwrap(), v);
    }

    /// The fast path may only accept what the full checks accept: mutate encodings byte
    /// by byte (and cut them short) and compare the two on every variant.
    #[test]
    fn the_fast_path_accepts_nothing_the_full_checks_refuse() {
        let mut sample = map(vec![
            (Value::Text("a".into()), Value::Integer(23.into())),
            (Value::Text("bb".into()), Value::Integer((-25).into())),
            (Value::Integer(1.into()), Value::Bytes(vec![1; 30])),
            (
                Value::Text("list".into()),
                Value::Array(vec![
                    Value::Bool(true),
                    Value::Null,
                    Value::Integer(300.into()),
                ]),
            ),
            (
                Value::Text("tagged".into()),
                Value::Tag(18, Box::new(Value::Text("é".into()))),
            ),
            (Value::Text("n".into()), Value::Integer(u64::MAX.into())),
        ]);
        canonicalize(&mut sample);
        let good = encode_value(&sample);
        assert!(is_plainly_deterministic(&good));
        assert_eq!(decode_strict(&good, "payload"), Ok(sample));
        let mut seed: u32 = 1;
        let mut accepted = 0;
        for at in 0..good.len() {
            for _ in 0..24 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let mut bytes = good.clone();
                bytes[at] = (seed >> 16) as u8;
                for cut in [bytes.len(), at + 1] {
                    let bytes = &bytes[..cut];
                    if is_plainly_deterministic(bytes) {
                        accepted += 1;
                        assert_eq!(
                            decode_strict(bytes, "payload"),
                            decode_strict_full(bytes, "payload"),
                            "{bytes:02x?}"
                        );
                        assert!(decode_strict_full(bytes, "payload").is_ok(), "{bytes:02x?}");
                    }
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
        // Refused by the fast path, decided by the full checks: a float, another tag,
        // a non-shortest head, an indefinite length, keys out of order.
        for bytes in [
            &[0xf9, 0x3e, 0x00][..],
            &[0xc1, 0x01],
            &[0x18, 0x01],
            &[0x9f, 0x01, 0xff],
            &[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02],
        ] {
            assert!(!is_plainly_deterministic(bytes));
            assert_eq!(
                decode_strict(bytes, "payload"),
                decode_strict_full(bytes, "payload")
            );
        }
    }

    #[test]
    fn refuses_trailing_bytes() {
        assert_eq!(
            decode_strict(&[0x01, 0x02], "payload"),
            Err(FormatError::CborTrailingBytes {
                part: "payload",
                extra: 1
            })
        );
    }

    #[test]
    fn refuses_truncation() {
        // A text string of length 5 with 2 bytes present.
        assert!(matches!(
            decode_strict(&[0x65, b'a', b'b'], "payload"),
            Err(FormatError::CborMalformed { .. })
        ));
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing_the_stack() {
        let mut bytes = vec![0x81; 100_000]; // [[[[…
        bytes.push(0x00);
        assert_eq!(
            decode_strict(&bytes, "payload"),
            Err(FormatError::CborTooDeep { part: "payload" })
        );
    }

    #[test]
    fn refuses_non_shortest_integers_and_indefinite_lengths() {
        // 1 encoded in two bytes.
        assert!(matches!(
            decode_strict(&[0x18, 0x01], "payload"),
            Err(FormatError::CborNotDeterministic { .. })
        ));
        // Indefinite-length array [1].
        assert!(matches!(
            decode_strict(&[0x9f, 0x01, 0xff], "payload"),
            Err(FormatError::CborNotDeterministic { .. })
        ));
    }

    #[test]
    fn lenient_decoding_reads_what_strict_decoding_refuses_but_not_malformed_input() {
        // {"v": 2} with the 2 in two bytes, followed by a stray byte.
        let sloppy = [0xa1, 0x61, b'v', 0x18, 0x02, 0x00];
        assert!(decode_strict(&sloppy, "payload").is_err());
        assert_eq!(
            decode_lenient(&sloppy),
            Some(map(vec![(
                Value::Text("v".into()),
                Value::Integer(2.into())
            )]))
        );
        assert_eq!(decode_lenient(&[0x65, b'a']), None);
        let mut deep = vec![0x81; MAX_DEPTH + 1];
        deep.push(0x00);
        assert_eq!(decode_lenient(&deep), None);
    }

    #[test]
    fn floats_are_deterministic_only_in_their_shortest_form() {
        // 1.5 as a half (f9 3e00) is accepted; as a double (fb 3ff8…) it is refused.
        assert_eq!(
            decode_strict(&[0xf9, 0x3e, 0x00], "payload"),
            Ok(Value::Float(1.5))
        );
        assert!(matches!(
            decode_strict(&[0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0], "payload"),
            Err(FormatError::CborNotDeterministic { .. })
        ));
    }

    #[test]
    fn one_nan_only() {
        let nan = |hex: &[u8]| decode_strict(hex, "payload").map_err(|e| e.code());
        assert!(matches!(nan(&[0xf9, 0x7e, 0x00]), Ok(Value::Float(f)) if f.is_nan()));
        for other in [
            &[0xf9, 0x7e, 0x01][..],               // a payload
            &[0xf9, 0xfe, 0x00],                   // negative
            &[0xf9, 0x7c, 0x01],                   // signalling
            &[0xfa, 0x7f, 0xc0, 0x00, 0x00],       // single precision
            &[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], // double precision
        ] {
            assert_eq!(nan(other), Err("cbor-not-deterministic"), "{other:02x?}");
        }
        // Infinities and negative zero have one shortest form, like other floats.
        for ok in [[0xf9, 0x7c, 0x00], [0xf9, 0xfc, 0x00], [0xf9, 0x80, 0x00]] {
            assert!(nan(&ok).is_ok(), "{ok:02x?}");
        }
    }

    #[test]
    fn a_bignum_has_more_than_8_bytes_and_no_leading_zero() {
        let read = |bytes: Vec<u8>| decode_strict(&bytes, "payload").map_err(|e| e.code());
        let bignum = |tag: u8, content: &[u8]| {
            let mut b = vec![tag];
            match content.len() {
                n @ 0..=23 => b.push(0x40 + n as u8),
                n => b.extend([0x58, n as u8]),
            }
            b.extend_from_slice(content);
            b
        };
        // 2^64 and -1 - 2^64: the smallest bignums that do not fit a plain integer.
        let two_64 = [1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(read(bignum(0xc2, &two_64)).is_ok());
        assert!(read(bignum(0xc3, &two_64)).is_ok());
        let mut long = vec![0x01; 17];
        assert!(read(bignum(0xc2, &long)).is_ok());
        for content in [
            &[][..],
            &[1],
            &[0, 1],
            &[0xff; 8],
            &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            for tag in [0xc2, 0xc3] {
                assert_eq!(
                    read(bignum(tag, content)),
                    Err("cbor-not-deterministic"),
                    "{tag:02x} {content:02x?}"
                );
            }
        }
        // Longer than 16 bytes: kept as a tagged byte string, checked all the same.
        long[0] = 0;
        assert_eq!(read(bignum(0xc2, &long)), Err("cbor-not-deterministic"));
        let mut small = vec![0; 20];
        small[19] = 1;
        assert_eq!(read(bignum(0xc3, &small)), Err("cbor-not-deterministic"));
        // Tag 2 or 3 around something else than a byte string is not a bignum: tags are
        // not checked for validity.
        assert!(read(vec![0xc2, 0x01]).is_ok());
        // A negative bignum below -2^127 in at most 16 bytes is beyond lic's decoder.
        let mut low = vec![0x80];
        low.extend([0; 15]);
        assert_eq!(read(bignum(0xc3, &low)), Err("cbor-malformed"));
    }

    #[test]
    fn simple_values_and_text_are_classified_as_the_specification_says() {
        // docs/format.md §4.1: what cannot be read is malformed, even where RFC 8949
        // calls it well-formed (unassigned simple values) or well-formed but invalid
        // (text that is not UTF-8); undefined and the two-byte forms of false, true,
        // null and undefined are not deterministic.
        let code = |bytes: &[u8]| decode_strict(bytes, "payload").map_err(|e| e.code());
        for malformed in [
            &[0xe0][..],
            &[0xf3],
            &[0xf8, 0x00],
            &[0xf8, 0x13],
            &[0xf8, 0x18],
            &[0xf8, 0x1f],
            &[0xf8, 0x20],
            &[0xf8, 0xff],
            &[0x62, 0xc3, 0x28],
            &[0x61, 0xff],
            &[0x63, 0xed, 0xa0, 0x80], // a UTF-16 surrogate
        ] {
            assert_eq!(code(malformed), Err("cbor-malformed"), "{malformed:02x?}");
        }
        for not_deterministic in [&[0xf7][..], &[0xf8, 0x14], &[0xf8, 0x17]] {
            assert_eq!(
                code(not_deterministic),
                Err("cbor-not-deterministic"),
                "{not_deterministic:02x?}"
            );
        }
        for ok in [[0xf4], [0xf5], [0xf6]] {
            assert!(code(&ok).is_ok());
        }
    }

    #[test]
    fn refuses_unsorted_and_duplicate_keys() {
        // {"b": 1, "a": 2}
        assert!(matches!(
            decode_strict(&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02], "payload"),
            Err(FormatError::CborNotDeterministic { .. })
        ));
        // {"a": 1, "a": 2}
        let err = decode_strict(&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02], "payload");
        assert!(
            matches!(&err, Err(FormatError::CborNotDeterministic { reason, .. }) if reason.contains("twice")),
            "{err:?}"
        );
    }
}
