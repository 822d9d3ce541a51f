//! License keys with a check character per group, so that a mistyped key is refused on
//! the device at once, naming the group that looks wrong, instead of at the portal after
//! a round trip by USB stick.
//!
//! # The format
//!
//! A key is 5 groups of 5 characters, separated by dashes:
//! `7K2QX-M0D4R-…`. The characters come from the 32-letter alphabet
//! `0123456789ABCDEFGHJKMNPQRSTVWXYZ` (digits and A–Z without I, L, O and U, which look
//! like 1, 1, 0 and V). In each group the first 4 characters are random (20 random
//! characters in all: 100 bits) and the 5th is a check character.
//!
//! Each character stands for its index in the alphabet, an element of GF(32) (the field
//! of 32 elements, polynomial x⁵ + x² + 1). Group `g` (0-based) of characters
//! `c0 c1 c2 c3 k` is valid when
//!
//! ```text
//! 2·c0 + 3·c1 + 4·c2 + 5·c3 + 1·k = g + 1      (in GF(32))
//! ```
//!
//! The weights (2, 3, 4, 5 and 1) are distinct and not zero, so within a group every
//! single substitution is caught (a non-zero change times a non-zero weight is not zero)
//! and so is every swap of two different characters (the change is the difference of the
//! two weights times the difference of the characters, both non-zero). The right-hand
//! side differs from group to group, so a whole group typed in the place of another is
//! caught too; a swap across a dash changes a character in each of two groups.
//!
//! # What is checked
//!
//! [`check`] looks at keys of the checksummed shape only: after trimming and ignoring
//! letter case, 5 groups of letters and digits separated by dashes or spaces, at least 4
//! of them 5 characters long (so that a group with a character too many or too few is
//! named). Anything else — the 4-group keys portals made before, or a vendor's own key
//! format — passes unchecked: the portal, which knows every key it issued, decides.

use rand_core::RngCore as _;

/// The characters keys are made of; a character stands for its index.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Groups in a key, characters in a group (the last one the check character).
pub const GROUPS: usize = 5;
pub const GROUP_LEN: usize = 5;

/// The weights of a group's characters; the check character's is 1.
const WEIGHTS: [u8; GROUP_LEN] = [2, 3, 4, 5, 1];

/// Why a license key looks mistyped. `group` is 1-based, as a person counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseKeyError {
    #[error(
        "group {group} of the license key ({text}) has {len} characters; every group has {}",
        GROUP_LEN
    )]
    GroupLength {
        group: usize,
        text: String,
        len: usize,
    },
    #[error(
        "group {group} of the license key ({text}) holds '{found}', a character license keys \
         never use{}",
        suggestion.map_or(String::new(), |s| format!(": did you mean '{s}'?"))
    )]
    Character {
        group: usize,
        text: String,
        found: char,
        /// The key character it is likely a misreading of (O → 0, I and L → 1, U → V).
        suggestion: Option<char>,
    },
    #[error(
        "group {group} of the license key ({text}) does not match its check character: a \
         character in it is mistyped, two are swapped, or the group is in the wrong place"
    )]
    Checksum { group: usize, text: String },
}

impl LicenseKeyError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::GroupLength { .. } => "license-key-group-length",
            Self::Character { .. } => "license-key-character",
            Self::Checksum { .. } => "license-key-checksum",
        }
    }

    /// What to do next.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::GroupLength { .. } => {
                "compare that group with the key as the vendor sent it: a character was left \
                 out or typed twice (copy and paste the key if you can)"
            }
            Self::Character { .. } => {
                "license keys use digits and the letters A-Z without I, L, O and U: type 0 for \
                 O, 1 for I or L, V for U"
            }
            Self::Checksum { .. } => {
                "compare that group with the key as the vendor sent it, character by \
                 character (copy and paste the key if you can)"
            }
        }
    }

    /// The group that looks wrong, 1-based.
    pub fn group(&self) -> usize {
        match self {
            Self::GroupLength { group, .. }
            | Self::Character { group, .. }
            | Self::Checksum { group, .. } => *group,
        }
    }
}

/// A new license key: 5 groups of 4 random characters and a check character.
pub fn generate() -> String {
    let mut bytes = [0u8; GROUPS * (GROUP_LEN - 1)];
    rand_core::OsRng.fill_bytes(&mut bytes);
    from_data(&bytes)
}

/// The key holding these 20 data characters (each byte's low 5 bits) with their check
/// characters.
fn from_data(data: &[u8; GROUPS * (GROUP_LEN - 1)]) -> String {
    data.chunks(GROUP_LEN - 1)
        .enumerate()
        .map(|(g, chunk)| {
            let values: Vec<u8> = chunk.iter().map(|b| b & 31).collect();
            let check = check_value(g, &values);
            values
                .iter()
                .chain(std::iter::once(&check))
                .map(|&v| ALPHABET[usize::from(v)] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Check a key as typed: `Ok` for a key of the checksummed shape whose every group checks,
/// and for a key of any other shape (see the module documentation); the first group that
/// looks wrong otherwise.
pub fn check(key: &str) -> Result<(), LicenseKeyError> {
    let groups: Vec<&str> = key
        .trim()
        .split(|c: char| c == '-' || c.is_whitespace())
        .filter(|g| !g.is_empty())
        .collect();
    let checksummed = groups.len() == GROUPS
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_alphanumeric()))
        && groups.iter().filter(|g| g.len() == GROUP_LEN).count() >= GROUPS - 1;
    if !checksummed {
        return Ok(());
    }
    for (g, text) in groups.iter().enumerate() {
        let group = g + 1;
        let text = text.to_ascii_uppercase();
        if text.len() != GROUP_LEN {
            return Err(LicenseKeyError::GroupLength {
                group,
                len: text.len(),
                text,
            });
        }
        let mut values = [0u8; GROUP_LEN];
        for (slot, c) in values.iter_mut().zip(text.chars()) {
            match value(c) {
                Some(v) => *slot = v,
                None => {
                    return Err(LicenseKeyError::Character {
                        group,
                        found: c,
                        suggestion: match c {
                            'O' => Some('0'),
                            'I' | 'L' => Some('1'),
                            'U' => Some('V'),
                            _ => None,
                        },
                        text,
                    });
                }
            }
        }
        let sum = values
            .iter()
            .zip(WEIGHTS)
            .fold(0, |acc, (&v, w)| acc ^ mul(v, w));
        if sum != salt(g) {
            return Err(LicenseKeyError::Checksum { group, text });
        }
    }
    Ok(())
}

/// The index of an (upper-case) key character.
fn value(c: char) -> Option<u8> {
    ALPHABET
        .iter()
        .position(|&a| char::from(a) == c)
        .and_then(|i| u8::try_from(i).ok())
}

/// What group `g` (0-based) sums to.
fn salt(g: usize) -> u8 {
    // g < GROUPS, so this is 1..=5.
    (g as u8 & 31) + 1
}

/// The check character's value for group `g`'s four data values.
fn check_value(g: usize, data: &[u8]) -> u8 {
    // Its weight is 1 and addition is XOR: k = salt − Σ wᵢcᵢ = salt ⊕ Σ wᵢcᵢ.
    data.iter()
        .zip(WEIGHTS)
        .fold(salt(g), |acc, (&v, w)| acc ^ mul(v, w))
}

/// Multiplication in GF(32) modulo x⁵ + x² + 1.
fn mul(a: u8, b: u8) -> u8 {
    let (mut a, mut b, mut product) = (a, b, 0u8);
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0b10_0000 != 0 {
            a ^= 0b10_0101;
        }
    }
    product
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Vec<String> {
        let mut keys: Vec<String> = (0..40).map(|_| generate()).collect();
        // Fixed ones too, with the extreme values.
        keys.push(from_data(&[0; 20]));
        keys.push(from_data(&[31; 20]));
        keys.push(from_data(&std::array::from_fn(|i| i as u8)));
        keys
    }

    #[test]
    fn generated_keys_have_the_shape_and_check() {
        for key in sample() {
            assert_eq!(key.len(), GROUPS * GROUP_LEN + GROUPS - 1, "{key}");
            assert_eq!(key.split('-').count(), GROUPS);
            assert!(key.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
            check(&key).unwrap();
            check(&key.to_lowercase()).unwrap();
            check(&format!("  {}\n", key.replace('-', " "))).unwrap();
        }
    }

    #[test]
    fn the_documented_example_key() {
        // docs/vendor-guide.md shows this key; its check characters were computed
        // independently of this code.
        let data: Vec<u8> = "N9DD42E4H11A7C69K2TW"
            .chars()
            .map(|c| value(c).unwrap())
            .collect();
        let key = from_data(&data.try_into().unwrap());
        assert_eq!(key, "N9DDR-42E45-H11A4-7C69E-K2TW4");
        check(&key).unwrap();
        let err = check("N9DDR-42E45-H11A4-7C96E-K2TW4").unwrap_err();
        assert_eq!(err.group(), 4);
        assert_eq!(
            err.to_string(),
            "group 4 of the license key (7C96E) does not match its check character: a \
             character in it is mistyped, two are swapped, or the group is in the wrong place"
        );
    }

    #[test]
    fn the_field_multiplication_is_invertible() {
        // Every non-zero weight permutes the 32 values: what the detection rests on.
        for w in 1..32 {
            let mut seen = [false; 32];
            for v in 0..32 {
                seen[usize::from(mul(v, w))] = true;
            }
            assert!(seen.iter().all(|&s| s), "weight {w}");
        }
    }

    #[test]
    fn every_single_substitution_is_caught_and_named() {
        for key in sample() {
            let chars: Vec<char> = key.chars().collect();
            for (i, &original) in chars.iter().enumerate() {
                if original == '-' {
                    continue;
                }
                for &other in ALPHABET {
                    let other = char::from(other);
                    if other == original {
                        continue;
                    }
                    let mut typo = chars.clone();
                    typo[i] = other;
                    let typo: String = typo.into_iter().collect();
                    let err = check(&typo).unwrap_err();
                    assert_eq!(err.group(), i / (GROUP_LEN + 1) + 1, "{typo}: {err}");
                    assert_eq!(err.code(), "license-key-checksum");
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_caught() {
        for key in sample() {
            let chars: Vec<char> = key.chars().collect();
            for i in 0..chars.len() - 1 {
                let (a, b) = (i, i + 1);
                // Across a dash: the characters either side of it.
                let (a, b) = match (chars[a], chars[b]) {
                    ('-', _) => continue,
                    (_, '-') => (a, b + 1),
                    _ => (a, b),
                };
                if chars[a] == chars[b] {
                    continue;
                }
                let mut typo = chars.clone();
                typo.swap(a, b);
                let typo: String = typo.into_iter().collect();
                let err = check(&typo).unwrap_err();
                assert_eq!(err.group(), a / (GROUP_LEN + 1) + 1, "{typo}: {err}");
            }
        }
    }

    #[test]
    fn swapped_groups_are_caught() {
        for key in sample() {
            let groups: Vec<&str> = key.split('-').collect();
            for i in 0..GROUPS {
                for j in i + 1..GROUPS {
                    if groups[i] == groups[j] {
                        continue;
                    }
                    let mut swapped = groups.clone();
                    swapped.swap(i, j);
                    let err = check(&swapped.join("-")).unwrap_err();
                    assert_eq!(err.group(), i + 1, "{err}");
                }
            }
        }
    }

    #[test]
    fn old_keys_and_other_shapes_pass_unchecked() {
        for key in [
            // 4 groups of 5: what portals made before.
            "7K2QX-M0D4R-ZZZZZ-00000",
            "7k2qx m0d4r zzzzz 00000",
            // A vendor's own formats.
            "ABCD-1234",
            "PHOTO-PRO-2026-SITE-LICENSE-7",
            "AAAAA-BBBBB-CCCCC-DDDDD-EEE.E",
            "",
            "   ",
            // Six groups, or two groups off in length: not this shape.
            "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE-FFFFF",
            "AAAA-BBBB-CCCCC-DDDDD-EEEEE",
        ] {
            assert_eq!(check(key), Ok(()), "{key:?}");
        }
    }

    #[test]
    fn a_group_too_short_or_too_long_is_named() {
        let key = from_data(&[0; 20]);
        let mut groups: Vec<String> = key.split('-').map(str::to_string).collect();
        groups[2].pop();
        let err = check(&groups.join("-")).unwrap_err();
        assert_eq!(err.code(), "license-key-group-length");
        assert_eq!(err.group(), 3);
        assert!(err.to_string().contains("has 4 characters"), "{err}");
        groups[2].push_str("00");
        let err = check(&groups.join("-")).unwrap_err();
        assert_eq!((err.group(), err.code()), (3, "license-key-group-length"));
    }

    #[test]
    fn a_character_keys_never_use_is_named_with_a_suggestion() {
        let key = from_data(&[0; 20]);
        for (typed, suggestion) in [('O', Some('0')), ('I', Some('1')), ('l', Some('1'))] {
            let typo: String = key
                .chars()
                .enumerate()
                .map(|(i, c)| if i == 13 { typed } else { c })
                .collect();
            let err = check(&typo).unwrap_err();
            assert_eq!(err.code(), "license-key-character");
            assert_eq!(err.group(), 3, "{err}");
            let LicenseKeyError::Character {
                found,
                suggestion: s,
                ..
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!((*found, *s), (typed.to_ascii_uppercase(), suggestion));
            assert!(
                err.to_string()
                    .contains(&format!("did you mean '{}'", suggestion.unwrap())),
                "{err}"
            );
            assert!(!err.hint().is_empty());
        }
    }
}
