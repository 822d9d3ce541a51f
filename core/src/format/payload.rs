//! The payload of each file kind: one Rust type per kind, serialized as a deterministic
//! CBOR map with text keys (the names below) plus the format version `v`.
//!
//! Readers ignore keys they do not know, so optional fields can be added without a new
//! version; a change old readers must not ignore bumps `v`, which they refuse as
//! "unsupported version". `docs/format.md` gives the same structures in CDDL.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::kind::FileKind;

/// The payload format version this implementation writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// The largest consumption counter, limit or total lic carries: 2^53 − 1, the largest
/// integer every JSON reader holds exactly. Counters in files, limits in licenses and
/// refreshes, and the portal's totals stay within `0..=MAX_COUNTER`; a file with a larger
/// value is refused (`payload-invalid`), and `lic consume` refuses to pass it.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// The most journal hashes a device-signed file carries in `journal.trail`.
pub const MAX_TRAIL: usize = 32;

/// The longest name of a feature or a device variable, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is usable as a feature or device variable name: 1 to [`MAX_NAME_LEN`]
/// ASCII letters, digits, `-`, `_` and `.`. The portal holds feature names to it when a
/// policy, license or refresh is made; the device and every reader hold variable names to
/// it.
pub fn is_usable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The most device variables a product has on a device, and a file carries.
pub const MAX_VARIABLES: usize = 64;
/// The longest value of a device variable, in bytes of UTF-8.
pub const MAX_VARIABLE_VALUE: usize = 1024;
/// The most bytes the names and values of a file's variables take together: what keeps a
/// device-signed file with variables well within the largest file
/// ([`armor::MAX_FILE_SIZE`](super::armor::MAX_FILE_SIZE)), armored.
pub const MAX_VARIABLES_SIZE: usize = 16 * 1024;

/// Device variables: key/value pairs the application sets on the device (by name). They
/// travel in the device-signed files: the customer's claims, signed by the device key.
pub type Variables = BTreeMap<String, String>;

/// Why device variables break the limits (docs/format.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VariableRefused {
    #[error(
        "variable name {name:?} is not usable: give 1 to {MAX_NAME_LEN} letters, digits, '-', \
         '_' or '.'"
    )]
    NameInvalid { name: String },
    #[error(
        "the value of variable `{name}` has {len} bytes; at most {MAX_VARIABLE_VALUE} are allowed"
    )]
    ValueTooLong { name: String, len: usize },
    #[error("{count} variables; at most {MAX_VARIABLES} are allowed")]
    TooMany { count: usize },
    #[error(
        "the variables' names and values take {total} bytes together; at most \
         {MAX_VARIABLES_SIZE} are allowed"
    )]
    TooLarge { total: usize },
}

impl VariableRefused {
    /// A stable code for scripts and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            VariableRefused::NameInvalid { .. } => "variable-name-invalid",
            VariableRefused::ValueTooLong { .. } => "variable-value-too-long",
            VariableRefused::TooMany { .. } => "too-many-variables",
            VariableRefused::TooLarge { .. } => "variables-too-large",
        }
    }

    /// What to do next.
    pub fn hint(&self) -> &'static str {
        match self {
            VariableRefused::NameInvalid { .. } => {
                "name the variable with 1 to 64 letters, digits, '-', '_' or '.' (e.g. \
                 `site.name`)"
            }
            VariableRefused::ValueTooLong { .. } => {
                "shorten the value to at most 1024 bytes of UTF-8 text"
            }
            VariableRefused::TooMany { .. } => {
                "remove a variable that is no longer needed (`lic var unset NAME`) before \
                 setting a new one; a product has at most 64"
            }
            VariableRefused::TooLarge { .. } => {
                "shorten values, or remove variables that are no longer needed (`lic var \
                 unset NAME`): names and values take at most 16384 bytes together"
            }
        }
    }
}

/// Check one variable: its name and the length of its value.
pub fn check_variable(name: &str, value: &str) -> Result<(), VariableRefused> {
    if !is_usable_name(name) {
        return Err(VariableRefused::NameInvalid { name: name.into() });
    }
    if value.len() > MAX_VARIABLE_VALUE {
        return Err(VariableRefused::ValueTooLong {
            name: name.into(),
            len: value.len(),
        });
    }
    Ok(())
}

/// Check a set of variables against every limit: how many, each name and value (in name
/// order), and their size together.
pub fn check_variables(variables: &Variables) -> Result<(), VariableRefused> {
    if variables.len() > MAX_VARIABLES {
        return Err(VariableRefused::TooMany {
            count: variables.len(),
        });
    }
    for (name, value) in variables {
        check_variable(name, value)?;
    }
    let total: usize = variables.iter().map(|(n, v)| n.len() + v.len()).sum();
    if total > MAX_VARIABLES_SIZE {
        return Err(VariableRefused::TooLarge { total });
    }
    Ok(())
}

/// The payload of one kind of file.
pub trait Payload: Serialize + DeserializeOwned + sealed::Sealed {
    /// The kind of file this payload travels in.
    const KIND: FileKind;

    /// Rules beyond the CBOR types, checked when signing and after verifying.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

mod sealed {
    pub trait Sealed {
        /// The payload read straight from bytes proven plain (see `format::direct`), or
        /// `None` to leave them to serde. Outside this crate the trait cannot be named,
        /// so neither can this.
        fn decode_direct(_bytes: &[u8]) -> Option<Self>
        where
            Self: Sized,
        {
            None
        }
    }
}

/// A UTC time, encoded as whole seconds since the Unix epoch.
pub type Timestamp = DateTime<Utc>;

/// 32 bytes: a SHA-256 hash or an Ed25519 public key. A CBOR byte string in files; hex
/// in human-readable forms such as JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes32(pub [u8; 32]);

/// A 16-byte random nonce. A CBOR byte string in files; hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

macro_rules! fixed_bytes {
    ($name:ident, $len:expr) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    serde_bytes::serialize(&self.0, s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = String::deserialize(d)?;
                    let mut out = [0u8; $len];
                    hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
                    Ok($name(out))
                } else {
                    serde_bytes::deserialize::<[u8; $len], D>(d).map($name)
                }
            }
        }
    };
}

fixed_bytes!(Bytes32, 32);
fixed_bytes!(Nonce, 16);

/// Timestamps: whole seconds since the Unix epoch in files, RFC 3339 in JSON.
mod ts {
    use super::*;
    use chrono::SecondsFormat;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
        } else {
            s.serialize_i64(t.timestamp())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(D::Error::custom)
        } else {
            let secs = i64::deserialize(d)?;
            DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| D::Error::custom(format!("time {secs} is out of range")))
        }
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Timestamp);
            Option::<Wrap>::deserialize(d).map(|w| w.map(|Wrap(t)| t))
        }
    }
}

/// Keyed hashes (HMAC-SHA-256, keyed from the device key) of the device's fingerprint components, by component name
/// (`machine-id`, `hostname`, `cpu`, `memory`, `mac`, `declared-id`, …). Raw identifiers
/// never appear in a file.
pub type Fingerprint = BTreeMap<String, Bytes32>;

/// Which fingerprint components must match, and how many of the others may differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchRule {
    /// Components that must match exactly (e.g. `["machine-id"]`).
    pub required: Vec<String>,
    /// How many of the remaining components may differ (or be missing).
    pub max_changed: u32,
}

/// One licensed feature.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// Consumption limit (cumulative units); absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Whether consumption may go beyond `limit` (and is then reported as overage).
    #[serde(default, skip_serializing_if = "is_false")]
    pub overage: bool,
    /// With `overage`: how far beyond `limit` consumption may go (absent: without end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_overage: Option<u64>,
    /// A floating feature: at most this many devices of the license use it at once, each
    /// holding a feature lease (docs/floating.md). Absent: every device that holds the
    /// license may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating: Option<u64>,
}

impl Feature {
    /// The most consumption may reach: the limit, plus the overage cap when overage is
    /// allowed (None: without end).
    pub fn ceiling(&self) -> Option<u64> {
        match (self.limit, self.overage) {
            (Some(limit), false) => Some(limit),
            (Some(limit), true) => self.max_overage.map(|cap| limit.saturating_add(cap)),
            (None, _) => None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Licensed features by name.
pub type Features = BTreeMap<String, Feature>;

/// The commercial type of a license.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicenseType {
    Perpetual,
    TimeLimited,
    Subscription,
    Trial,
    Floating,
}

/// How the user identifies the license they activate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    /// A license key, e.g. `ABCD-EFGH-…`.
    LicenseKey(String),
    /// A user id, for user-based licenses.
    User(String),
}

/// The head of the device journal, carried in every device-signed file: this file's
/// sequence number and the SHA-256 of the previous device-signed file (all zero for the
/// first), so that a replayed file, a restored backup or a cloned machine shows as a fork.
///
/// `trail` holds the hashes of the files before `prev`, newest first (the file of
/// sequence `seq − 2` first), at most [`MAX_TRAIL`]: a reader that saw one of them last
/// can link this file to it across files it never received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalHead {
    pub seq: u64,
    pub prev: Bytes32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trail: Vec<Bytes32>,
}

impl JournalHead {
    /// The head of a journal's first file (an activation request): sequence 0, no
    /// previous file.
    pub fn first() -> Self {
        JournalHead {
            seq: 0,
            prev: Bytes32([0; 32]),
            trail: Vec::new(),
        }
    }
}

/// Cumulative consumption per feature, since activation.
pub type Counters = BTreeMap<String, u64>;

/// Device → vendor: please license this device. Signed by the device key, which the
/// protected header carries (see `Verified::signer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRequest {
    pub product: String,
    pub credential: Credential,
    pub fingerprint: Fingerprint,
    pub nonce: Nonce,
    #[serde(with = "ts")]
    pub created: Timestamp,
    /// The requesting software and version, e.g. `lic 0.1.0`.
    pub client: String,
    pub journal: JournalHead,
    /// The device variables set before the request was made (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: Variables,
    /// An on-premise floating server's request: the seats of the floating license it
    /// asks to hold as its pool, to lease them on its own network (absent: an
    /// ordinary activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_seats: Option<u32>,
}

/// Vendor → device: the license for one activation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    pub license_id: String,
    pub activation_id: String,
    pub product: String,
    /// The device key this license is bound to.
    pub device_key: Bytes32,
    pub fingerprint: Fingerprint,
    pub match_rule: MatchRule,
    pub features: Features,
    pub license_type: LicenseType,
    #[serde(with = "ts")]
    pub issued: Timestamp,
    #[serde(with = "ts")]
    pub not_before: Timestamp,
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// Offline expiry date (floating checkouts): the license must be renewed by then.
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub offline_expiry: Option<Timestamp>,
    /// How far (seconds) the clock may go back before the last seen time without a violation.
    pub clock_tolerance: u64,
    /// 1 for a license; refreshes carry higher serials. A license issued again to a
    /// device that holds the seat carries the serial of the last refresh issued for it, so
    /// that older refreshes are rollbacks there too.
    pub serial: u64,
    /// The nonce of the activation request this license answers.
    pub request_nonce: Nonce,
    /// Consumption the vendor has already counted for this activation (a license issued
    /// again to a device that holds the seat): the device's counters start from these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: Counters,
    /// A pool license: the device (an on-premise floating server) holds this many seats
    /// and signs the leases of its clients with its device key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_seats: Option<u32>,
    /// A checkout license from an on-premise floating server (signed by its device key,
    /// not a vendor key): the vendor-signed pool license that names that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolChain>,
}

/// The vendor-signed files that make an on-premise floating server's device key the
/// signer of leases and checkout licenses: its pool license and the latest refresh of
/// it (vendor key → pool license → lease). Both are whole files, as the server installed
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolChain {
    #[serde(with = "serde_bytes")]
    pub license: Vec<u8>,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Vec<u8>>,
}

/// Vendor → device: new entitlements or expiry for one activation.
///
/// A refresh carries the complete new state of what it changes: its `features`,
/// `license_type`, `expires`, `offline_expiry` and `clock_tolerance` replace the installed
/// ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub license_id: String,
    pub activation_id: String,
    pub product: String,
    pub device_key: Bytes32,
    /// Greater than the installed serial; the same serial again is a no-op, a lower one
    /// a rollback.
    pub serial: u64,
    pub features: Features,
    pub license_type: LicenseType,
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub offline_expiry: Option<Timestamp>,
    pub clock_tolerance: u64,
    /// If present, the device's clock high-water mark is reset to this time.
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub clock_floor: Option<Timestamp>,
    /// Why support issued it (an id or short text; the full reason is in the audit log).
    pub reason: String,
    #[serde(with = "ts")]
    pub issued: Timestamp,
    /// A pool license's new number of seats (absent: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_seats: Option<u32>,
}

/// Device → vendor: this activation is given up; here are its final counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deactivation {
    pub activation_id: String,
    pub product: String,
    pub counters: Counters,
    pub journal: JournalHead,
    #[serde(with = "ts")]
    pub created: Timestamp,
    /// The device variables when the file was made (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: Variables,
}

/// Device → vendor: cumulative consumption so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub activation_id: String,
    pub product: String,
    pub counters: Counters,
    pub journal: JournalHead,
    #[serde(with = "ts")]
    pub created: Timestamp,
    /// The device variables when the file was made (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: Variables,
}

/// Vendor → device or user: proof that a file was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub activation_id: String,
    /// SHA-256 of the exact (binary, unarmored) bytes of the applied file.
    pub file_hash: Bytes32,
    /// The kind of the applied file (`deactivation`, `usage-report`, …).
    pub file_kind: String,
    /// The activation's state after applying it, e.g. `deactivated`, `active`.
    pub state: String,
    #[serde(with = "ts")]
    pub applied: Timestamp,
}

/// A vendor key that must no longer be trusted, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    /// The revoked Ed25519 public key.
    pub key: Bytes32,
    /// Why (e.g. "leaked"), shown with every file it signed.
    pub reason: String,
    /// When the vendor revoked it.
    #[serde(with = "ts")]
    pub revoked: Timestamp,
}

/// Vendor → device: the vendor keys to trust from now on, and the revoked ones.
///
/// Signed by a key the device already trusts; `version` only goes up. `keys` replaces the
/// keys an earlier key set added (the keys the application was built with stay trusted
/// unless revoked); `revoked` adds to every earlier revocation — a revoked key is never
/// trusted again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub version: u64,
    /// Trusted vendor public keys.
    pub keys: Vec<Bytes32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<RevokedKey>,
    #[serde(with = "ts")]
    pub issued: Timestamp,
}

/// What a lease request asks of the floating server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseAction {
    /// Take a seat (or a floating feature) and get a lease for it.
    Take,
    /// Renew the lease this instance holds (a heartbeat).
    Renew,
    /// Give the lease up (the application exits); the seat is free when no other
    /// instance on this device holds it.
    Release,
    /// Take the seat for offline use until an Offline Expiry Date; the answer is a
    /// license carrying it.
    Checkout,
}

impl LeaseAction {
    /// The name in files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            LeaseAction::Take => "take",
            LeaseAction::Renew => "renew",
            LeaseAction::Release => "release",
            LeaseAction::Checkout => "checkout",
        }
    }
}

/// Device → floating server, online: take, renew or release a floating seat (or one
/// floating feature), or check the seat out. Signed by the device key, which the protected
/// header carries. The server decides from its own records; the request only says who
/// asks, for which license and process, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub product: String,
    pub credential: Credential,
    pub fingerprint: Fingerprint,
    pub action: LeaseAction,
    /// The application process: instances on one device share one seat.
    pub instance: Nonce,
    /// A floating feature's lease rather than a seat's (absent: the seat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Checkout: the hours of offline use asked for (the server caps them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u64>,
    /// Checkout: the device journal head, as in an activation request (the checkout
    /// license starts a journal; its check-in continues it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalHead>,
    pub nonce: Nonce,
    #[serde(with = "ts")]
    pub created: Timestamp,
    /// The requesting software and version, e.g. `lic 0.1.0`.
    pub client: String,
    /// The device variables when the request was made (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: Variables,
}

/// Server → device, online: a floating seat (or one floating feature) held by one
/// application instance until `expires`, renewed by heartbeat from `renew_after`. The
/// client verifies it offline until it lapses, so a short loss of network costs nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub license_id: String,
    /// The activation that records the seat at the server.
    pub activation_id: String,
    pub product: String,
    /// The device key the lease is bound to.
    pub device_key: Bytes32,
    pub fingerprint: Fingerprint,
    pub match_rule: MatchRule,
    /// The application instance that holds it.
    pub instance: Nonce,
    /// A floating feature's lease (absent: the seat's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The entitlements while the lease holds.
    pub features: Features,
    pub license_type: LicenseType,
    #[serde(with = "ts")]
    pub issued: Timestamp,
    /// When the client renews (a fraction of the lease period).
    #[serde(with = "ts")]
    pub renew_after: Timestamp,
    /// When the lease lapses unless renewed; the seat is then free again.
    #[serde(with = "ts")]
    pub expires: Timestamp,
    /// The license's own expiry.
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub license_expires: Option<Timestamp>,
    /// An Offline Expiry Date the policy sets on every lease: until then the server keeps
    /// the seat (refuses to deactivate or reclaim it), even when no heartbeat comes.
    #[serde(default, with = "ts::option", skip_serializing_if = "Option::is_none")]
    pub offline_expiry: Option<Timestamp>,
    /// How far (seconds) the clock may go back before the last seen time without a violation.
    pub clock_tolerance: u64,
    /// The nonce of the lease request it answers.
    pub request_nonce: Nonce,
    /// A lease from an on-premise floating server (signed by its device key): the
    /// vendor-signed pool license that names that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolChain>,
}

/// Device → vendor: a checked-out floating seat returned before its Offline Expiry Date,
/// with the checkout's counters. Applied like a deactivation: online (`lic checkin
/// --server`) or as a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    pub activation_id: String,
    pub product: String,
    pub counters: Counters,
    pub journal: JournalHead,
    #[serde(with = "ts")]
    pub created: Timestamp,
    /// The device variables when the file was made (absent: none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: Variables,
}

/// The fields of a payload as a reader checks them (docs/format.md §5.1, §5.10): the type
/// rules (no tag, null or float) apply to the fields this version knows; a field it does
/// not know, in the payload or in one of its extensible structures, is ignored whatever
/// it holds. Kept beside the types above; a test checks that the two agree.
#[derive(Debug)]
pub(crate) enum Shape {
    /// A value checked through entirely: a text, an integer, a byte string, or a map or
    /// array that is not extensible (`fingerprint`, `counters`, `credential`, …).
    Plain,
    /// An extensible structure: its known fields, each with its shape.
    Struct(&'static [(&'static str, Shape)]),
    /// A name-indexed map whose values have one shape (`features`).
    Names(&'static Shape),
    /// An array whose items have one shape (`revoked`).
    List(&'static Shape),
}

use Shape::Plain;

const JOURNAL: Shape = Shape::Struct(&[("seq", Plain), ("prev", Plain), ("trail", Plain)]);
const MATCH_RULE: Shape = Shape::Struct(&[("required", Plain), ("max_changed", Plain)]);
const FEATURE: Shape = Shape::Struct(&[
    ("limit", Plain),
    ("overage", Plain),
    ("max_overage", Plain),
    ("floating", Plain),
]);
const FEATURES: Shape = Shape::Names(&FEATURE);

const ACTIVATION_REQUEST: Shape = Shape::Struct(&[
    ("v", Plain),
    ("product", Plain),
    ("credential", Plain),
    ("fingerprint", Plain),
    ("nonce", Plain),
    ("created", Plain),
    ("client", Plain),
    ("journal", JOURNAL),
    ("variables", Plain),
    ("pool_seats", Plain),
]);
const POOL_CHAIN: Shape = Shape::Struct(&[("license", Plain), ("refresh", Plain)]);
const LICENSE: Shape = Shape::Struct(&[
    ("v", Plain),
    ("license_id", Plain),
    ("activation_id", Plain),
    ("product", Plain),
    ("device_key", Plain),
    ("fingerprint", Plain),
    ("match_rule", MATCH_RULE),
    ("features", FEATURES),
    ("license_type", Plain),
    ("issued", Plain),
    ("not_before", Plain),
    ("expires", Plain),
    ("offline_expiry", Plain),
    ("clock_tolerance", Plain),
    ("serial", Plain),
    ("request_nonce", Plain),
    ("counters", Plain),
    ("pool_seats", Plain),
    ("pool", POOL_CHAIN),
]);
const REFRESH: Shape = Shape::Struct(&[
    ("v", Plain),
    ("license_id", Plain),
    ("activation_id", Plain),
    ("product", Plain),
    ("device_key", Plain),
    ("serial", Plain),
    ("features", FEATURES),
    ("license_type", Plain),
    ("expires", Plain),
    ("offline_expiry", Plain),
    ("clock_tolerance", Plain),
    ("clock_floor", Plain),
    ("reason", Plain),
    ("issued", Plain),
    ("pool_seats", Plain),
]);
const COUNTERS_REPORT: Shape = Shape::Struct(&[
    ("v", Plain),
    ("activation_id", Plain),
    ("product", Plain),
    ("counters", Plain),
    ("journal", JOURNAL),
    ("created", Plain),
    ("variables", Plain),
]);
const RECEIPT: Shape = Shape::Struct(&[
    ("v", Plain),
    ("activation_id", Plain),
    ("file_hash", Plain),
    ("file_kind", Plain),
    ("state", Plain),
    ("applied", Plain),
]);

const REVOKED_KEY: Shape = Shape::Struct(&[("key", Plain), ("reason", Plain), ("revoked", Plain)]);
const KEY_SET: Shape = Shape::Struct(&[
    ("v", Plain),
    ("version", Plain),
    ("keys", Plain),
    ("revoked", Shape::List(&REVOKED_KEY)),
    ("issued", Plain),
]);

const LEASE_REQUEST: Shape = Shape::Struct(&[
    ("v", Plain),
    ("product", Plain),
    ("credential", Plain),
    ("fingerprint", Plain),
    ("action", Plain),
    ("instance", Plain),
    ("feature", Plain),
    ("hours", Plain),
    ("journal", JOURNAL),
    ("nonce", Plain),
    ("created", Plain),
    ("client", Plain),
    ("variables", Plain),
]);
const LEASE: Shape = Shape::Struct(&[
    ("v", Plain),
    ("license_id", Plain),
    ("activation_id", Plain),
    ("product", Plain),
    ("device_key", Plain),
    ("fingerprint", Plain),
    ("match_rule", MATCH_RULE),
    ("instance", Plain),
    ("feature", Plain),
    ("features", FEATURES),
    ("license_type", Plain),
    ("issued", Plain),
    ("renew_after", Plain),
    ("expires", Plain),
    ("license_expires", Plain),
    ("offline_expiry", Plain),
    ("clock_tolerance", Plain),
    ("request_nonce", Plain),
    ("pool", POOL_CHAIN),
]);

/// The shape of the payload of `kind`.
pub(crate) fn payload_shape(kind: FileKind) -> &'static Shape {
    match kind {
        FileKind::ActivationRequest => &ACTIVATION_REQUEST,
        FileKind::License => &LICENSE,
        FileKind::Refresh => &REFRESH,
        FileKind::Deactivation | FileKind::UsageReport | FileKind::CheckIn => &COUNTERS_REPORT,
        FileKind::Receipt => &RECEIPT,
        FileKind::KeySet => &KEY_SET,
        FileKind::LeaseRequest => &LEASE_REQUEST,
        FileKind::Lease => &LEASE,
    }
}

fn non_empty(fields: &[(&str, &str)]) -> Result<(), String> {
    match fields.iter().find(|(_, value)| value.trim().is_empty()) {
        Some((name, _)) => Err(format!("`{name}` is empty")),
        None => Ok(()),
    }
}

fn valid_features(features: &Features) -> Result<(), String> {
    if features.keys().any(|k| k.trim().is_empty()) {
        return Err("a feature has an empty name".into());
    }
    if let Some((name, f)) = features
        .iter()
        .find(|(_, f)| f.limit.is_some_and(|l| l > MAX_COUNTER))
    {
        return Err(format!(
            "feature `{name}` has the limit {}, beyond the largest counter ({MAX_COUNTER})",
            f.limit.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Counters within `0..=MAX_COUNTER`, with non-empty names.
fn valid_counters(counters: &Counters) -> Result<(), String> {
    if counters.keys().any(|k| k.trim().is_empty()) {
        return Err("a counter has an empty feature name".into());
    }
    match counters.iter().find(|(_, n)| **n > MAX_COUNTER) {
        Some((name, n)) => Err(format!(
            "the counter of `{name}` is {n}, beyond the largest counter ({MAX_COUNTER})"
        )),
        None => Ok(()),
    }
}

fn valid_variables(variables: &Variables) -> Result<(), String> {
    check_variables(variables).map_err(|e| e.to_string())
}

fn valid_journal(journal: &JournalHead) -> Result<(), String> {
    if journal.trail.len() > MAX_TRAIL {
        return Err(format!(
            "`journal.trail` has {} hashes; at most {MAX_TRAIL} are allowed",
            journal.trail.len()
        ));
    }
    Ok(())
}

impl sealed::Sealed for ActivationRequest {}
impl Payload for ActivationRequest {
    const KIND: FileKind = FileKind::ActivationRequest;
    fn validate(&self) -> Result<(), String> {
        let credential = match &self.credential {
            Credential::LicenseKey(k) => ("credential", k.as_str()),
            Credential::User(u) => ("credential", u.as_str()),
        };
        non_empty(&[("product", &self.product), credential])?;
        if self.fingerprint.is_empty() {
            return Err("`fingerprint` has no components".into());
        }
        if self.pool_seats == Some(0) {
            return Err("`pool_seats` is 0; a pool asks for 1 seat or more".into());
        }
        valid_journal(&self.journal)?;
        valid_variables(&self.variables)
    }
}

impl sealed::Sealed for License {
    fn decode_direct(bytes: &[u8]) -> Option<Self> {
        super::direct::license(bytes)
    }
}
impl Payload for License {
    const KIND: FileKind = FileKind::License;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("license_id", &self.license_id),
            ("activation_id", &self.activation_id),
            ("product", &self.product),
        ])?;
        if self.serial == 0 {
            return Err(
                "`serial` is 0, but a license has serial 1 (or, issued again, the serial of \
                 the last refresh)"
                    .into(),
            );
        }
        if let Some(missing) = self
            .match_rule
            .required
            .iter()
            .find(|c| !self.fingerprint.contains_key(*c))
        {
            return Err(format!(
                "the match rule requires component `{missing}`, which the fingerprint lacks"
            ));
        }
        if self.expires.is_some_and(|e| e < self.not_before) {
            return Err("`expires` is before `not_before`".into());
        }
        if self.pool_seats == Some(0) {
            return Err("`pool_seats` is 0; a pool license holds 1 seat or more".into());
        }
        if self.pool_seats.is_some() && self.pool.is_some() {
            return Err("a pool license is signed by the vendor; it carries no `pool`".into());
        }
        valid_counters(&self.counters)?;
        valid_features(&self.features)
    }
}

impl sealed::Sealed for Refresh {
    fn decode_direct(bytes: &[u8]) -> Option<Self> {
        super::direct::refresh(bytes)
    }
}
impl Payload for Refresh {
    const KIND: FileKind = FileKind::Refresh;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("license_id", &self.license_id),
            ("activation_id", &self.activation_id),
            ("product", &self.product),
            ("reason", &self.reason),
        ])?;
        if self.serial < 2 {
            return Err(format!(
                "`serial` is {}, but a refresh has serial 2 or more",
                self.serial
            ));
        }
        if self.pool_seats == Some(0) {
            return Err("`pool_seats` is 0; a pool license holds 1 seat or more".into());
        }
        valid_features(&self.features)
    }
}

impl sealed::Sealed for Deactivation {}
impl Payload for Deactivation {
    const KIND: FileKind = FileKind::Deactivation;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("activation_id", &self.activation_id),
            ("product", &self.product),
        ])?;
        valid_counters(&self.counters)?;
        valid_journal(&self.journal)?;
        valid_variables(&self.variables)
    }
}

impl sealed::Sealed for UsageReport {}
impl Payload for UsageReport {
    const KIND: FileKind = FileKind::UsageReport;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("activation_id", &self.activation_id),
            ("product", &self.product),
        ])?;
        valid_counters(&self.counters)?;
        valid_journal(&self.journal)?;
        valid_variables(&self.variables)
    }
}

/// The most hours of offline use a checkout may ask for (the server caps them lower, by
/// policy): ten years.
pub const MAX_CHECKOUT_HOURS: u64 = 10 * 366 * 24;

impl sealed::Sealed for LeaseRequest {}
impl Payload for LeaseRequest {
    const KIND: FileKind = FileKind::LeaseRequest;
    fn validate(&self) -> Result<(), String> {
        let credential = match &self.credential {
            Credential::LicenseKey(k) => ("credential", k.as_str()),
            Credential::User(u) => ("credential", u.as_str()),
        };
        non_empty(&[("product", &self.product), credential])?;
        if self.fingerprint.is_empty() {
            return Err("`fingerprint` has no components".into());
        }
        if let Some(name) = self.feature.as_deref().filter(|n| !is_usable_name(n)) {
            return Err(format!("`feature` {name:?} is not a usable feature name"));
        }
        match (self.action, self.hours, &self.journal) {
            (LeaseAction::Checkout, Some(1..=MAX_CHECKOUT_HOURS), Some(journal)) => {
                valid_journal(journal)?;
            }
            (LeaseAction::Checkout, Some(h), Some(_)) => {
                return Err(format!(
                    "`hours` is {h}; a checkout asks for 1 to {MAX_CHECKOUT_HOURS} hours"
                ));
            }
            (LeaseAction::Checkout, _, _) => {
                return Err("a checkout carries `hours` and `journal`".into());
            }
            (action, Some(_), _) | (action, _, Some(_)) => {
                return Err(format!(
                    "`hours` and `journal` belong to a checkout, not to `{}`",
                    action.name()
                ));
            }
            _ => {}
        }
        if self.action == LeaseAction::Checkout && self.feature.is_some() {
            return Err("a checkout is for the seat; it carries no `feature`".into());
        }
        valid_variables(&self.variables)
    }
}

impl sealed::Sealed for Lease {}
impl Payload for Lease {
    const KIND: FileKind = FileKind::Lease;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("license_id", &self.license_id),
            ("activation_id", &self.activation_id),
            ("product", &self.product),
        ])?;
        if let Some(name) = self.feature.as_deref().filter(|n| !is_usable_name(n)) {
            return Err(format!("`feature` {name:?} is not a usable feature name"));
        }
        if self.expires <= self.issued {
            return Err("`expires` is not after `issued`".into());
        }
        if self.renew_after < self.issued || self.renew_after > self.expires {
            return Err("`renew_after` is not between `issued` and `expires`".into());
        }
        if let Some(missing) = self
            .match_rule
            .required
            .iter()
            .find(|c| !self.fingerprint.contains_key(*c))
        {
            return Err(format!(
                "the match rule requires component `{missing}`, which the fingerprint lacks"
            ));
        }
        valid_features(&self.features)
    }
}

impl sealed::Sealed for CheckIn {}
impl Payload for CheckIn {
    const KIND: FileKind = FileKind::CheckIn;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("activation_id", &self.activation_id),
            ("product", &self.product),
        ])?;
        valid_counters(&self.counters)?;
        valid_journal(&self.journal)?;
        valid_variables(&self.variables)
    }
}

/// The most keys a key set trusts or revokes.
pub const MAX_KEY_SET_KEYS: usize = 256;

impl sealed::Sealed for KeySet {}
impl Payload for KeySet {
    const KIND: FileKind = FileKind::KeySet;
    fn validate(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("`version` is 0; key sets start at version 1".into());
        }
        if self.keys.is_empty() {
            return Err("`keys` is empty; a key set trusts at least one key".into());
        }
        if self.keys.len() + self.revoked.len() > MAX_KEY_SET_KEYS {
            return Err(format!(
                "it names {} keys; at most {MAX_KEY_SET_KEYS} are allowed",
                self.keys.len() + self.revoked.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for key in self.keys.iter().chain(self.revoked.iter().map(|r| &r.key)) {
            crate::keys::PublicKey::from_bytes(&key.0).map_err(|e| match e {
                crate::keys::KeyError::Weak => format!("key {key} is a weak (small-order) key"),
                _ => format!("key {key} is not a valid Ed25519 public key"),
            })?;
            if !seen.insert(*key) {
                return Err(format!(
                    "key {key} is named twice (a key is either trusted or revoked, once)"
                ));
            }
        }
        if let Some(r) = self.revoked.iter().find(|r| r.reason.trim().is_empty()) {
            return Err(format!("the revocation of key {} has no reason", r.key));
        }
        Ok(())
    }
}

impl sealed::Sealed for Receipt {}
impl Payload for Receipt {
    const KIND: FileKind = FileKind::Receipt;
    fn validate(&self) -> Result<(), String> {
        non_empty(&[
            ("activation_id", &self.activation_id),
            ("file_kind", &self.file_kind),
            ("state", &self.state),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_are_letters_digits_dash_underscore_dot_up_to_64() {
        for good in ["a", "site.name", "A-1_b.c", &"x".repeat(MAX_NAME_LEN)] {
            assert!(is_usable_name(good), "{good:?}");
        }
        for bad in [
            "",
            " ",
            "a b",
            "ä",
            "a/b",
            "a\n",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(!is_usable_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_limits_of_variables_each_with_its_code() {
        assert_eq!(check_variables(&Variables::new()), Ok(()));
        let long = "é".repeat(MAX_VARIABLE_VALUE / 2);
        assert_eq!(check_variables(&vars(&[("v", &long), ("e", "")])), Ok(()));
        let cases = [
            (vars(&[("bad name", "x")]), "variable-name-invalid"),
            (
                vars(&[("v", &"x".repeat(MAX_VARIABLE_VALUE + 1))]),
                "variable-value-too-long",
            ),
            (
                (0..=MAX_VARIABLES)
                    .map(|i| (format!("k{i}"), String::new()))
                    .collect(),
                "too-many-variables",
            ),
            (
                (0..17)
                    .map(|i| (format!("k{i}"), "x".repeat(1000)))
                    .collect(),
                "variables-too-large",
            ),
        ];
        for (variables, code) in cases {
            let err = check_variables(&variables).unwrap_err();
            assert_eq!(err.code(), code, "{err}");
            assert!(!err.hint().is_empty());
        }
    }

    #[test]
    fn the_device_signed_payloads_refuse_variables_beyond_the_limits() {
        let too_many: Variables = (0..=MAX_VARIABLES)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let report = UsageReport {
            activation_id: "act_1".into(),
            product: "p".into(),
            counters: Counters::new(),
            journal: JournalHead::first(),
            created: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            variables: too_many.clone(),
        };
        assert_eq!(
            report.validate().unwrap_err(),
            "65 variables; at most 64 are allowed"
        );
        let deactivation = Deactivation {
            activation_id: "act_1".into(),
            product: "p".into(),
            counters: Counters::new(),
            journal: JournalHead::first(),
            created: report.created,
            variables: vars(&[("k", &"x".repeat(MAX_VARIABLE_VALUE + 1))]),
        };
        assert_eq!(
            deactivation.validate().unwrap_err(),
            "the value of variable `k` has 1025 bytes; at most 1024 are allowed"
        );
        let request = ActivationRequest {
            pool_seats: None,
            product: "p".into(),
            credential: Credential::LicenseKey("K".into()),
            fingerprint: [("machine-id".to_string(), Bytes32([1; 32]))].into(),
            nonce: Nonce([0; 16]),
            created: report.created,
            client: "lic".into(),
            journal: JournalHead::first(),
            variables: vars(&[("", "x")]),
        };
        assert_eq!(
            request.validate().unwrap_err(),
            "variable name \"\" is not usable: give 1 to 64 letters, digits, '-', '_' or '.'"
        );
    }
}
