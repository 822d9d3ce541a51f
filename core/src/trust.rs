//! Which vendor keys a device trusts: its **anchors** — the keys the application was built
//! with, or the trust file installed beside `lic` — changed only by vendor-signed **key
//! sets** (the model is TUF's root rotation).
//!
//! - A key set is accepted only if a key trusted at that moment signed it, and only if its
//!   version is greater than the last one accepted: an older or equal version is refused.
//! - Its `keys` replace the keys an earlier key set added; the anchors stay trusted unless
//!   revoked. Its `revoked` keys are never trusted again, whatever a later key set says, and
//!   files they signed are refused (`key-revoked`) with the reason the vendor gave.
//! - The store keeps the key sets it accepted, but no trust of its own: every use verifies
//!   them again, in order, from the anchors ([`effective`]). A key set that no longer
//!   verifies (the anchors changed with an application update) is skipped.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use lic_core::format::{self, Bytes32, KeySet, RevokedKey};
//! use lic_core::keys::{Keyring, SecretKey};
//! use lic_core::trust;
//!
//! let (old, new) = (SecretKey::from_seed(&[1; 32]), SecretKey::from_seed(&[2; 32]));
//! let anchors = Keyring::with([old.public()]);
//! // The vendor rotates to `new`, then revokes `old`: two key sets.
//! let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
//! let v1 = KeySet { version: 1, keys: vec![Bytes32(new.public().to_bytes())], revoked: vec![], issued: at };
//! let v2 = KeySet {
//!     version: 2,
//!     keys: vec![Bytes32(new.public().to_bytes())],
//!     revoked: vec![RevokedKey { key: Bytes32(old.public().to_bytes()), reason: "leaked".into(), revoked: at }],
//!     issued: at,
//! };
//! let sets = [format::sign(&v1, &old).unwrap(), format::sign(&v2, &new).unwrap()];
//! let mut installed = Vec::new();
//! for set in &sets {
//!     let current = trust::effective(&anchors, &installed);
//!     trust::accept(&current, set.bytes()).unwrap();
//!     installed.push(set.bytes().to_vec());
//! }
//! let now = trust::effective(&anchors, &installed);
//! assert_eq!(now.version, 2);
//! assert!(now.keys.get(&new.kid()).is_some());
//! assert_eq!(now.keys.revocation(&old.kid()), Some("on 2026-12-01: leaked"));
//! ```

use crate::format::{self, FormatError, KeySet, Verified};
use crate::keys::{Keyring, PublicKey};
use crate::rules::{self, SerialDecision};

/// The keys in force: the anchors with the installed key sets applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Trusted keys and revocations.
    pub keys: Keyring,
    /// The version of the last key set applied (0: none).
    pub version: u64,
    /// The bytes of that key set, to tell the same file offered again from another one.
    last: Option<Vec<u8>>,
}

impl Trust {
    /// The anchors alone.
    pub fn anchors(anchors: &Keyring) -> Self {
        Trust {
            keys: anchors.clone(),
            version: 0,
            last: None,
        }
    }
}

/// The keys in force on a device whose application trusts `anchors` and whose store holds
/// the key sets `installed` (binary COSE bytes, in the order they were installed). A key
/// set that does not verify against the keys in force before it, or does not raise the
/// version, is skipped.
pub fn effective<B: AsRef<[u8]>>(anchors: &Keyring, installed: &[B]) -> Trust {
    let mut trust = Trust::anchors(anchors);
    for bytes in installed {
        let bytes = bytes.as_ref();
        if let Ok(set) = format::verify::<KeySet>(bytes.to_vec(), &trust.keys)
            && set.version > trust.version
        {
            trust = apply(anchors, &trust, &set, bytes);
        }
    }
    trust
}

fn apply(anchors: &Keyring, before: &Trust, set: &KeySet, bytes: &[u8]) -> Trust {
    let mut keys = Keyring::new();
    for (kid, reason) in before.keys.revoked() {
        keys.revoke(*kid, reason);
    }
    for r in &set.revoked {
        // Checked when the key set was verified: every key in it is a usable public key.
        if let Ok(key) = PublicKey::from_bytes(&r.key.0) {
            keys.revoke(key.kid(), revocation_reason(r));
        }
    }
    anchors.iter().for_each(|k| keys.add(*k));
    set.keys
        .iter()
        .filter_map(|k| PublicKey::from_bytes(&k.0).ok())
        .for_each(|k| keys.add(k));
    Trust {
        keys,
        version: set.version,
        last: Some(bytes.to_vec()),
    }
}

fn revocation_reason(r: &format::RevokedKey) -> String {
    format!("on {}: {}", r.revoked.format("%Y-%m-%d"), r.reason.trim())
}

/// Why a key set was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The file itself was refused (not a key set, not signed by a trusted key, …).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Older than the installed key set.
    #[error(
        "the key set has version {offered}, older than the installed version {installed}: rolling back is not allowed"
    )]
    Rollback { installed: u64, offered: u64 },
    /// Another key set with the installed version.
    #[error("a different key set with version {version} is already installed")]
    Conflict { version: u64 },
    /// It would trust a key that was revoked.
    #[error(
        "the key set trusts key {kid}, which was revoked ({reason}); a revoked key stays revoked"
    )]
    TrustsRevoked { kid: String, reason: String },
}

impl KeySetError {
    /// A stable code for scripts and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            KeySetError::Format(e) => e.code(),
            KeySetError::Rollback { .. } => "rollback",
            KeySetError::Conflict { .. } => "serial-conflict",
            KeySetError::TrustsRevoked { .. } => "key-set-trusts-revoked",
        }
    }

    /// What to do next.
    pub fn hint(&self) -> &'static str {
        match self {
            KeySetError::Format(FormatError::UnknownKey { .. }) => {
                "the key set is signed by a key this installation does not trust yet: install \
                 the vendor's earlier key sets first, oldest first (the portal serves every \
                 version), then this one"
            }
            KeySetError::Format(e) => e.hint(),
            KeySetError::Rollback { .. } | KeySetError::Conflict { .. } => {
                "nothing to do if the newest key set is installed; otherwise ask the vendor for \
                 its newest key set"
            }
            KeySetError::TrustsRevoked { .. } => {
                "do not install this file; ask the vendor for its newest key set"
            }
        }
    }
}

/// What accepting a key set does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A newer key set: install it (append it to the store's key sets).
    Newer { from: u64, to: u64 },
    /// The very key set last installed: nothing to do.
    AlreadyInstalled { version: u64 },
}

/// Whether the key set `bytes` (armored or binary) may be installed where `current` is in
/// force: signed by a key trusted now, a greater version, and no revoked key trusted again.
pub fn accept(current: &Trust, bytes: &[u8]) -> Result<(Accepted, Verified<KeySet>), KeySetError> {
    let set = format::open::<KeySet>(bytes, &current.keys)?;
    let same = current.last.as_deref() == Some(set.bytes());
    match rules::serial(current.version, set.version, same) {
        SerialDecision::AlreadyApplied => {
            let version = set.version;
            return Ok((Accepted::AlreadyInstalled { version }, set));
        }
        SerialDecision::Rollback => {
            return Err(KeySetError::Rollback {
                installed: current.version,
                offered: set.version,
            });
        }
        SerialDecision::Conflict => {
            return Err(KeySetError::Conflict {
                version: set.version,
            });
        }
        SerialDecision::Apply => {}
    }
    for key in &set.keys {
        let Ok(key) = PublicKey::from_bytes(&key.0) else {
            continue;
        };
        if let Some(reason) = current.keys.revocation(&key.kid()) {
            return Err(KeySetError::TrustsRevoked {
                kid: key.kid().to_string(),
                reason: reason.to_string(),
            });
        }
    }
    Ok((
        Accepted::Newer {
            from: current.version,
            to: set.version,
        },
        set,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Bytes32, License, LicenseType, MatchRule, Nonce, RevokedKey, SignedFile};
    use crate::keys::SecretKey;
    use chrono::{TimeZone, Utc};

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn b(k: &SecretKey) -> Bytes32 {
        Bytes32(k.public().to_bytes())
    }

    fn set(
        version: u64,
        keys: &[&SecretKey],
        revoked: &[&SecretKey],
        by: &SecretKey,
    ) -> SignedFile {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let payload = KeySet {
            version,
            keys: keys.iter().map(|k| b(k)).collect(),
            revoked: revoked
                .iter()
                .map(|k| RevokedKey {
                    key: b(k),
                    reason: "leaked".into(),
                    revoked: at,
                })
                .collect(),
            issued: at,
        };
        format::sign(&payload, by).unwrap()
    }

    fn install(anchors: &Keyring, files: &[&SignedFile]) -> (Vec<Vec<u8>>, Trust) {
        let mut installed = Vec::new();
        for f in files {
            let current = effective(anchors, &installed);
            accept(&current, f.bytes()).unwrap();
            installed.push(f.bytes().to_vec());
        }
        let trust = effective(anchors, &installed);
        (installed, trust)
    }

    fn license_by(k: &SecretKey) -> SignedFile {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let l = License {
            pool: None,
            pool_seats: None,
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: "p".into(),
            device_key: b(&key(9)),
            fingerprint: Default::default(),
            match_rule: MatchRule {
                required: vec![],
                max_changed: 0,
            },
            features: Default::default(),
            license_type: LicenseType::Perpetual,
            issued: at,
            not_before: at,
            expires: None,
            offline_expiry: None,
            clock_tolerance: 0,
            serial: 1,
            request_nonce: Nonce([0; 16]),
            counters: Default::default(),
        };
        format::sign(&l, k).unwrap()
    }

    #[test]
    fn a_key_set_adds_keys_and_a_later_one_revokes_the_anchor() {
        let (a, n) = (key(1), key(2));
        let anchors = Keyring::with([a.public()]);
        let v1 = set(1, &[&a, &n], &[], &a);
        let v2 = set(2, &[&n], &[&a], &n);
        let (_, trust) = install(&anchors, &[&v1, &v2]);
        assert_eq!(trust.version, 2);
        assert!(trust.keys.get(&n.kid()).is_some());
        assert!(trust.keys.get(&a.kid()).is_none(), "the anchor is revoked");
        let err = format::verify::<License>(license_by(&a).into_bytes(), &trust.keys).unwrap_err();
        assert_eq!(err.code(), "key-revoked");
        assert!(err.to_string().contains("leaked"), "{err}");
        assert!(format::verify::<License>(license_by(&n).into_bytes(), &trust.keys).is_ok());
    }

    #[test]
    fn older_or_equal_versions_are_refused_and_the_same_file_is_a_no_op() {
        let (a, n) = (key(1), key(2));
        let anchors = Keyring::with([a.public()]);
        let v2 = set(2, &[&a, &n], &[], &a);
        let (_, trust) = install(&anchors, &[&v2]);
        assert!(matches!(
            accept(&trust, v2.bytes()).unwrap().0,
            Accepted::AlreadyInstalled { version: 2 }
        ));
        assert_eq!(
            accept(&trust, set(1, &[&a], &[], &a).bytes()).unwrap_err(),
            KeySetError::Rollback {
                installed: 2,
                offered: 1
            }
        );
        assert_eq!(
            accept(&trust, set(2, &[&a], &[], &a).bytes()).unwrap_err(),
            KeySetError::Conflict { version: 2 }
        );
    }

    #[test]
    fn a_key_set_signed_by_an_untrusted_key_is_refused() {
        let (a, stranger) = (key(1), key(3));
        let anchors = Keyring::with([a.public()]);
        let forged = set(9, &[&stranger], &[], &stranger);
        let err = accept(&Trust::anchors(&anchors), forged.bytes()).unwrap_err();
        assert_eq!(err.code(), "unknown-key");
        // Put in the store by hand, it adds nothing.
        let trust = effective(&anchors, &[forged.bytes()]);
        assert_eq!(trust, Trust::anchors(&anchors));
    }

    #[test]
    fn a_revoked_key_is_never_trusted_again() {
        let (a, n, m) = (key(1), key(2), key(4));
        let anchors = Keyring::with([a.public()]);
        let v1 = set(1, &[&n], &[&a], &a);
        let (installed, trust) = install(&anchors, &[&v1]);
        // A later key set that trusts the revoked key again is refused…
        let err = accept(&trust, set(2, &[&n, &a], &[], &n).bytes()).unwrap_err();
        assert_eq!(err.code(), "key-set-trusts-revoked");
        // …and one that merely forgets the revocation keeps it.
        let v2 = set(2, &[&n, &m], &[], &n);
        accept(&trust, v2.bytes()).unwrap();
        let mut both = installed.clone();
        both.push(v2.bytes().to_vec());
        let trust = effective(&anchors, &both);
        assert!(trust.keys.revocation(&a.kid()).is_some());
        assert!(trust.keys.get(&m.kid()).is_some());
        // A key set signed by the revoked key is refused.
        let by_revoked = set(3, &[&a], &[], &a);
        assert_eq!(
            accept(&trust, by_revoked.bytes()).unwrap_err().code(),
            "key-revoked"
        );
    }

    #[test]
    fn keys_a_later_key_set_drops_are_no_longer_trusted_but_anchors_stay() {
        let (a, n, m) = (key(1), key(2), key(4));
        let anchors = Keyring::with([a.public()]);
        let (_, trust) = install(
            &anchors,
            &[&set(1, &[&n], &[], &a), &set(2, &[&m], &[], &n)],
        );
        assert!(trust.keys.get(&a.kid()).is_some(), "anchors stay");
        assert!(trust.keys.get(&n.kid()).is_none(), "dropped by version 2");
        assert!(trust.keys.get(&m.kid()).is_some());
    }

    #[test]
    fn key_sets_that_no_longer_verify_are_skipped() {
        let (a, n, other) = (key(1), key(2), key(5));
        let v1 = set(1, &[&n], &[], &a);
        // An application update trusts another anchor, not `a`: v1 no longer verifies.
        let trust = effective(&Keyring::with([other.public()]), &[v1.bytes()]);
        assert_eq!(trust.version, 0);
        assert!(trust.keys.get(&n.kid()).is_none());
    }
}
