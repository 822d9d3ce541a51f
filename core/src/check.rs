//! Checking a license for this device, now, in one call — with or without a store.
//!
//! [`license`] takes the license file as received (armored text or binary COSE), the
//! vendor keys the application trusts, the product it expects, this [`Device`] and a
//! clock, and gives the entitlements in force or a typed refusal ([`CheckError`]). It
//! verifies the file ([`format::open`]: every strictness check of `docs/format.md`),
//! checks the product, checks the times ([`rules::validity`]), and checks that the
//! license names this device's key and that its fingerprint matches under the license's
//! rule ([`fingerprint::match_fingerprint`]). The `client::Client` runs
//! the very same code over its store ([`Check`], with the installed refresh and the
//! store's clock high-water mark).
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use lic_core::check::{self, CheckError, Device};
//! use lic_core::clock::FixedClock;
//! use lic_core::fingerprint::{component, RawComponents};
//! use lic_core::format::{self, Bytes32, Feature, License, LicenseType, MatchRule, Nonce};
//! use lic_core::keys::{Keyring, SecretKey};
//!
//! // This device: its key, and the components the application collected itself.
//! let device_key = SecretKey::generate();
//! let machine: RawComponents = [(component::MACHINE_ID, "8f3c1d2e9a7b4c5d")].into_iter().collect();
//! let device = Device::from_components(&device_key, "photo-pro", &machine);
//!
//! // A license for it (made here by a stand-in vendor; normally it arrives as a file).
//! let vendor = SecretKey::generate();
//! let now = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
//! let license = License {
//!     license_id: "lic_1".into(),
//!     activation_id: "act_1".into(),
//!     product: "photo-pro".into(),
//!     device_key: Bytes32(device.key().to_bytes()),
//!     fingerprint: device.fingerprint().clone(),
//!     match_rule: MatchRule { required: vec![component::MACHINE_ID.into()], max_changed: 0 },
//!     features: [("export".to_string(), Feature::default())].into(),
//!     license_type: LicenseType::TimeLimited,
//!     issued: now,
//!     not_before: now,
//!     expires: Some(now + chrono::Duration::days(30)),
//!     offline_expiry: None,
//!     clock_tolerance: 3600,
//!     serial: 1,
//!     request_nonce: Nonce([0; 16]),
//!     counters: Default::default(),
//!     pool_seats: None,
//!     pool: None,
//! };
//! let file = format::sign(&license, &vendor).unwrap().armored();
//! let trusted = Keyring::with([vendor.public()]);
//!
//! // The one call.
//! let clock = FixedClock(now);
//! let licensed = check::license(file.as_bytes(), &trusted, "photo-pro", &device, &clock).unwrap();
//! assert!(licensed.entitlements().features.contains_key("export"));
//!
//! // Refusals are typed, with the codes of the format and of the rules.
//! let err = check::license(file.as_bytes(), &trusted, "video-pro", &device, &clock).unwrap_err();
//! assert!(matches!(err, CheckError::WrongProduct { .. }));
//! let later = FixedClock(now + chrono::Duration::days(31));
//! let err = check::license(file.as_bytes(), &trusted, "photo-pro", &device, &later).unwrap_err();
//! assert_eq!(err.code(), "expired");
//! let err = check::license(file.as_bytes(), &Keyring::new(), "photo-pro", &device, &clock).unwrap_err();
//! assert_eq!(err.code(), "unknown-key");
//! ```

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::fingerprint::{
    self, FingerprintKey, FingerprintSource, MatchReport, RawComponents, hash_components,
};
use crate::format::{
    self, Bytes32, Fingerprint, FormatError, License, MatchRule, Refresh, Verified,
};
use crate::keys::{Keyring, PublicKey, SecretKey};
use crate::pool::{self, PoolError};
use crate::rules::{self, Entitlements, Violation};

/// This device, as a license names it: its public key and its fingerprint (the keyed
/// component hashes for the product being checked).
///
/// Build it from the device key and components the application collected itself
/// ([`Device::from_components`], [`Device::collect`]), from a store
/// (`Device::from_store`, with the `device` feature), or from a key and hashes kept
/// elsewhere ([`Device::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    key: PublicKey,
    fingerprint: Fingerprint,
}

impl Device {
    /// A device from its public key and its component hashes for the product (as
    /// [`fingerprint::hash_components`] makes them).
    pub fn new(key: PublicKey, fingerprint: Fingerprint) -> Self {
        Device { key, fingerprint }
    }

    /// The device whose key is `device_key`, with `components` hashed for `product`
    /// under the fingerprint key derived from it ([`FingerprintKey::of`]) — the hashes
    /// an activation request made with the same key and components carries.
    pub fn from_components(
        device_key: &SecretKey,
        product: &str,
        components: &RawComponents,
    ) -> Self {
        Device {
            key: device_key.public(),
            fingerprint: hash_components(&FingerprintKey::of(device_key), product, components),
        }
    }

    /// [`Device::from_components`] with the components read from `source` (a
    /// [`StaticSource`](crate::fingerprint::StaticSource), or with the `device` feature
    /// the real machine's `SystemSource`).
    pub fn collect(device_key: &SecretKey, product: &str, source: &dyn FingerprintSource) -> Self {
        Self::from_components(device_key, product, &source.collect())
    }

    /// The device of a store: its device key (made if the store has none yet, as every
    /// store call does), with the components read from `source`. (With the `device`
    /// feature.)
    #[cfg(feature = "device")]
    pub fn from_store(
        store: &crate::store::Store,
        product: &str,
        source: &dyn FingerprintSource,
    ) -> Result<Self, crate::store::StoreError> {
        Ok(Self::collect(&store.device_key()?, product, source))
    }

    /// The device's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The device's component hashes.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// A license that may be used now: verified, for the expected product and this device,
/// within its times.
#[derive(Clone, Debug)]
pub struct Licensed {
    license: Verified<License>,
    refresh: Option<Verified<Refresh>>,
    entitlements: Entitlements,
    fingerprint: MatchReport,
}

impl Licensed {
    /// The entitlements in force: the license, with the refresh (if any) laid over it.
    pub fn entitlements(&self) -> &Entitlements {
        &self.entitlements
    }

    /// The verified license (its signer, hash and every field).
    pub fn license(&self) -> &Verified<License> {
        &self.license
    }

    /// The verified refresh laid over it, if one was given ([`Check::refresh`]).
    pub fn refresh(&self) -> Option<&Verified<Refresh>> {
        self.refresh.as_ref()
    }

    /// The fingerprint comparison (which components matched, which differ).
    pub fn fingerprint(&self) -> &MatchReport {
        &self.fingerprint
    }

    /// The entitlements, by value.
    pub fn into_entitlements(self) -> Entitlements {
        self.entitlements
    }
}

/// The full answer of [`Check::evaluate`]: a license that verified and is for the
/// expected product, with every rule's verdict. It may be used now if `violations` is
/// empty.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The verified license, the entitlements in force and the fingerprint comparison.
    pub licensed: Licensed,
    /// Every violation, in a fixed order: the clock turned back, then the times
    /// (not yet valid, expired, offline checkout ended), then another device.
    pub violations: Vec<Violation>,
}

impl Evaluation {
    /// Ok with the license if there is no violation; otherwise every violation.
    pub fn into_result(self) -> Result<Licensed, CheckError> {
        if self.violations.is_empty() {
            Ok(self.licensed)
        } else {
            Err(CheckError::Violations(self.violations))
        }
    }
}

/// Why a license may not be used. Every variant has a stable [`code`](Self::code) and a
/// [`hint`](Self::hint) for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The file (the license or the refresh) is refused by the format checks: not a lic
    /// file, tampered with, signed by a key not trusted (`unknown-key`) or revoked, … The
    /// code is the format's ([`FormatError::code`]).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A checkout license from an on-premise floating server whose pool license does not
    /// make it trusted (see [`crate::pool`]).
    #[error("the floating server's license is not trusted: {0}")]
    Pool(PoolError),
    /// The license (or the refresh) is for another product than the application's.
    #[error("the license is for product '{found}', not for '{expected}'")]
    WrongProduct {
        /// The product the application expects.
        expected: String,
        /// The product the file names.
        found: String,
    },
    /// The refresh belongs to another activation than the license.
    #[error("the refresh is for activation {found}, but the license is activation {license}")]
    RefreshMismatch {
        /// The license's activation.
        license: String,
        /// The refresh's activation.
        found: String,
    },
    /// The license verifies but may not be used now: never empty, in the order of
    /// [`Evaluation::violations`]; the code is the first one's.
    #[error("{}", describe(.0))]
    Violations(Vec<Violation>),
}

fn describe(violations: &[Violation]) -> String {
    match violations {
        [] => "the license may not be used".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

impl CheckError {
    /// A stable code for programs and logs: the format's code, `wrong-product`,
    /// `refresh-mismatch`, or the first violation's code.
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::Format(e) => e.code(),
            CheckError::Pool(e) => e.code(),
            CheckError::WrongProduct { .. } => "wrong-product",
            CheckError::RefreshMismatch { .. } => "refresh-mismatch",
            CheckError::Violations(v) => v.first().map_or("invalid-license", Violation::code),
        }
    }

    /// What the user should do.
    pub fn hint(&self) -> &'static str {
        match self {
            CheckError::Format(e) => e.hint(),
            CheckError::Pool(e) => e.hint(),
            CheckError::WrongProduct { .. } => {
                "this license is for another product: install the license file issued for this one"
            }
            CheckError::RefreshMismatch { .. } => {
                "the refresh belongs to another license: ask your vendor for the refresh of this one"
            }
            CheckError::Violations(v) => v.first().map_or("", Violation::hint),
        }
    }

    /// The violations, if the license verified but may not be used now (else empty).
    pub fn violations(&self) -> &[Violation] {
        match self {
            CheckError::Violations(v) => v,
            _ => &[],
        }
    }
}

/// Check the license file `input` (armored text or binary COSE) for `product` on
/// `device` at `clock`'s time: verified against `keys` with every check of
/// `docs/format.md`, for this product, within its times, bound to this device's key and
/// matching its fingerprint. Gives the entitlements in force, or why not.
///
/// With no store there is no clock high-water mark, so a clock turned back is not
/// detected here (a license that expired still fails, but a clock set back before its
/// expiry passes); use [`Check::last_seen`] with a mark the application keeps, or the
/// `client::Client`, which keeps one in its store.
pub fn license(
    input: &[u8],
    keys: &Keyring,
    product: &str,
    device: &Device,
    clock: &dyn Clock,
) -> Result<Licensed, CheckError> {
    Check::new(keys, product, device)
        .evaluate(input, clock.now())?
        .into_result()
}

/// The full form of [`license`]: with a refresh laid over the license and the clock's
/// high-water mark. The `client::Client` checks its store with it.
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    keys: &'a Keyring,
    product: &'a str,
    device: &'a Device,
    refresh: Option<&'a [u8]>,
    last_seen: Option<DateTime<Utc>>,
}

impl<'a> Check<'a> {
    /// A check of licenses for `product` on `device`, trusting `keys`.
    pub fn new(keys: &'a Keyring, product: &'a str, device: &'a Device) -> Self {
        Check {
            keys,
            product,
            device,
            refresh: None,
            last_seen: None,
        }
    }

    /// The refresh file (armored or binary) to lay over the license, if any.
    pub fn refresh(mut self, refresh: Option<&'a [u8]>) -> Self {
        self.refresh = refresh;
        self
    }

    /// The latest time this device has seen (the clock high-water mark), if any: a
    /// clock earlier than it by more than the license's tolerance is
    /// [`Violation::ClockTurnedBack`].
    pub fn last_seen(mut self, mark: Option<DateTime<Utc>>) -> Self {
        self.last_seen = mark;
        self
    }

    /// Verify `input` (and the refresh), check the product, and apply every rule at
    /// `now`. An error means the files cannot be used at all; a license that verifies
    /// gives an [`Evaluation`] with its violations (possibly none).
    pub fn evaluate(&self, input: &[u8], now: DateTime<Utc>) -> Result<Evaluation, CheckError> {
        // Signed by a vendor key, or (a checkout from an on-premise floating server) by a
        // device key that a vendor-signed pool license names.
        let (license, pool) = pool::open::<License>(input, self.keys).map_err(|e| match e {
            PoolError::Format(e) | PoolError::Untrusted(e) => CheckError::Format(e),
            e => CheckError::Pool(e),
        })?;
        let l = license.payload();
        if l.product != self.product {
            return Err(CheckError::WrongProduct {
                expected: self.product.to_owned(),
                found: l.product.clone(),
            });
        }
        let refresh = match self.refresh {
            Some(bytes) => {
                let refresh = format::open::<Refresh>(bytes, self.keys)?;
                let r = refresh.payload();
                if r.product != self.product {
                    return Err(CheckError::WrongProduct {
                        expected: self.product.to_owned(),
                        found: r.product.clone(),
                    });
                }
                if r.activation_id != l.activation_id {
                    return Err(CheckError::RefreshMismatch {
                        license: l.activation_id.clone(),
                        found: r.activation_id.clone(),
                    });
                }
                Some(refresh)
            }
            None => None,
        };
        let entitlements = rules::effective(l, refresh.as_ref().map(|r| r.payload()));
        let mut violations = Vec::new();
        if let Some(v) = rules::clock(now, self.last_seen, entitlements.clock_tolerance) {
            violations.push(v);
        }
        violations.extend(rules::validity(&entitlements, now));
        if let Some(Err(PoolError::Expired { at })) = pool.map(|p| p.check_at(now)) {
            violations.push(Violation::Expired { at });
        }
        let report =
            fingerprint::match_fingerprint(&l.fingerprint, &self.device.fingerprint, &l.match_rule);
        if l.device_key != Bytes32(self.device.key.to_bytes()) {
            violations.push(Violation::WrongDevice {
                required_failed: vec!["device-key".into()],
                differing: Vec::new(),
                max_changed: l.match_rule.max_changed,
            });
        } else if !report.ok {
            violations.push(wrong_device(&report, &l.match_rule));
        }
        Ok(Evaluation {
            licensed: Licensed {
                license,
                refresh,
                entitlements,
                fingerprint: report,
            },
            violations,
        })
    }
}

/// The violation for a fingerprint that does not satisfy the license's rule (names
/// only, never values).
pub(crate) fn wrong_device(report: &MatchReport, rule: &MatchRule) -> Violation {
    let mut differing = report.differing.clone();
    differing.extend(report.missing.iter().cloned());
    differing.retain(|c| !report.required_failed.contains(c));
    differing.sort();
    Violation::WrongDevice {
        required_failed: report.required_failed.clone(),
        differing,
        max_changed: rule.max_changed,
    }
}
