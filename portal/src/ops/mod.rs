//! The portal's operations, as library functions: the CLI and the HTTP API call these.
//! Every state change is one transaction and writes an audit entry (who, what, why,
//! when, file hash).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use lic_core::clock::{Clock, SystemClock};
use lic_core::format::{
    self, ActivationRequest, Bytes32, Credential, Deactivation, Features, FileKind, License,
    LicenseType, MatchRule, Receipt, Refresh, UsageReport, Verified,
};
use lic_core::keys::{Keyring, PublicKey, SecretKey};
use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::db::{Db, is_unique_violation};
use crate::error::PortalError;
use crate::rules as decide;
use crate::sql::{Sql, Val};
use crate::vendor;

mod activations;
mod audit;
mod catalog;
mod device_files;
mod floating;
mod keys;
mod lists;
mod refreshes;
mod writes;
pub use writes::MAX_FLAGS_PER_KIND;

pub use floating::{
    CheckoutAnswer, LeaseAnswer, RECLAIMER, ReclaimEdit, Reclaimed, ReclaimedSeat, ReleaseAnswer,
    route_of,
};
pub use lists::*;

use writes::*;

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The operator at the admin command: `cli:` and the login name — `$USER`, else
    /// `$LOGNAME`, else the name of the process's user id in `/etc/passwd` (a service or
    /// container often sets neither variable), else `uid:N`; `cli:unknown` only where no
    /// user id can be read.
    pub fn cli() -> Self {
        let env = |name: &str| std::env::var(name).ok();
        let uid = current_uid();
        let passwd = || std::fs::read_to_string("/etc/passwd").ok();
        Actor(format!("cli:{}", operator_name(env, uid, passwd)))
    }
    /// An anonymous upload from `source` (the client's address).
    pub fn anonymous(source: &str) -> Self {
        Actor(format!("upload:{source}"))
    }
    /// Whether this is an anonymous upload (no token, no operator).
    pub fn is_anonymous(&self) -> bool {
        self.0.starts_with("upload:")
    }
}

/// The operator's name from the environment (`USER`, then `LOGNAME`), else from the
/// passwd file's entry for `uid`, else `uid:N`, else `unknown`. Empty values do not count.
fn operator_name(
    env: impl Fn(&str) -> Option<String>,
    uid: Option<u32>,
    passwd: impl FnOnce() -> Option<String>,
) -> String {
    let named = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    if let Some(name) = named(env("USER")).or_else(|| named(env("LOGNAME"))) {
        return name;
    }
    let Some(uid) = uid else {
        return "unknown".into();
    };
    passwd()
        .and_then(|text| {
            // name:password:uid:gid:gecos:home:shell
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
                (entry_uid == uid && !name.is_empty()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// The process's real user id, where the system tells it without unsafe code (Linux:
/// `/proc/self/status`).
fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub created: i64,
}

/// A policy: how licenses of a product behave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub id: String,
    pub product: String,
    pub name: String,
    pub license_type: LicenseType,
    #[serde(default = "yes")]
    pub allow_offline: bool,
    #[serde(default = "one")]
    pub seats: i64,
    /// Days a license is valid from activation; `None`: no expiry.
    #[serde(default)]
    pub validity_days: Option<i64>,
    #[serde(default)]
    pub features: Features,
    #[serde(default = "default_match")]
    pub match_rule: MatchRule,
    #[serde(default = "default_tolerance")]
    pub clock_tolerance_secs: i64,
    #[serde(default)]
    pub max_offline_days: Option<i64>,
    #[serde(default)]
    pub inactivity_secs: Option<i64>,
    /// Churn control: at most this many deactivations per period.
    #[serde(default)]
    pub max_deactivations: Option<i64>,
    #[serde(default)]
    pub deactivation_period_days: Option<i64>,
    /// License-level consumption limits: per feature, the most all devices of one license
    /// may report in total (copied to each license at creation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub total_limits: BTreeMap<String, u64>,
    /// Whether a license whose reported total has reached one of its `total_limits`
    /// refuses new seats and reissues (else the reports that pass it are only flagged).
    #[serde(default)]
    pub refuse_over_total: bool,
    #[serde(default)]
    pub created: i64,
    /// Floating: the licenses' seats are a pool leased online (and checked out for
    /// offline use), whatever the license model. (`license_type: "floating"`, the old
    /// spelling, is taken as a floating perpetual policy.)
    #[serde(default)]
    pub floating: bool,
    /// Floating: how long a lease lasts unless renewed (seconds).
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Floating: when clients renew, in percent of the lease period.
    #[serde(default = "default_renew_percent")]
    pub renew_percent: u8,
    /// Floating: the most application instances sharing one device's seat (none: no cap).
    #[serde(default)]
    pub max_processes: Option<u32>,
    /// Floating: how long after its lease lapsed a device gets its own seat back ahead of
    /// the devices waiting (seconds; 0: no revival).
    #[serde(default)]
    pub revival_secs: u64,
    /// Floating: the longest offline checkout in hours (none: no checkout).
    #[serde(default)]
    pub max_checkout_hours: Option<u64>,
    /// Floating: "always set an OED" — every lease keeps its seat this many hours after it
    /// was last renewed, even offline (none: leases carry no OED).
    #[serde(default)]
    pub lease_oed_hours: Option<u64>,
    /// Reclamation: seats of floating licenses inactive for longer than `inactivity_secs`
    /// are reclaimed (by the timer in `serve`, or `lic-portal reclaim`).
    #[serde(default)]
    pub reclaim: bool,
    /// Reclamation: how often the timer in `serve` runs it (seconds; default 3600).
    #[serde(default)]
    pub reclaim_every_secs: Option<i64>,
    /// When reclamation was enabled (seconds since the epoch; set by the portal): inactivity
    /// counts from then at the earliest.
    #[serde(default)]
    pub reclaim_since: Option<i64>,
}

impl Default for Policy {
    /// A node-locked perpetual policy of one seat with the defaults of the JSON API (the
    /// product and name left empty).
    fn default() -> Self {
        let terms = lic_core::floating::Terms::default();
        Policy {
            id: String::new(),
            product: String::new(),
            name: String::new(),
            license_type: LicenseType::Perpetual,
            allow_offline: true,
            seats: 1,
            validity_days: None,
            features: Features::new(),
            match_rule: default_match(),
            clock_tolerance_secs: default_tolerance(),
            max_offline_days: None,
            inactivity_secs: None,
            max_deactivations: None,
            deactivation_period_days: None,
            total_limits: BTreeMap::new(),
            refuse_over_total: false,
            created: 0,
            floating: false,
            lease_secs: terms.lease_secs,
            renew_percent: terms.renew_percent,
            max_processes: None,
            revival_secs: 0,
            max_checkout_hours: None,
            lease_oed_hours: None,
            reclaim: false,
            reclaim_every_secs: None,
            reclaim_since: None,
        }
    }
}

impl Policy {
    /// The floating terms (lic_core::floating::Terms).
    pub fn terms(&self) -> lic_core::floating::Terms {
        lic_core::floating::Terms {
            lease_secs: self.lease_secs,
            renew_percent: self.renew_percent,
            max_processes: self.max_processes,
            revival_secs: self.revival_secs,
            max_checkout_hours: self.max_checkout_hours,
            lease_oed_hours: self.lease_oed_hours,
        }
    }

    /// Reclamation, when enabled.
    pub fn reclamation(&self) -> Option<lic_core::floating::Reclamation> {
        if !self.reclaim {
            return None;
        }
        Some(lic_core::floating::Reclamation {
            inactivity_secs: u64::try_from(self.inactivity_secs?).ok()?,
            enabled_since: time(self.reclaim_since?),
        })
    }
}

/// How often reclamation runs when a policy does not say.
pub const DEFAULT_RECLAIM_EVERY_SECS: i64 = 3600;

fn default_lease_secs() -> u64 {
    lic_core::floating::Terms::default().lease_secs
}
fn default_renew_percent() -> u8 {
    lic_core::floating::Terms::default().renew_percent
}

fn yes() -> bool {
    true
}
fn one() -> i64 {
    1
}
fn default_match() -> MatchRule {
    MatchRule {
        required: vec!["machine-id".into()],
        max_changed: 2,
    }
}
fn default_tolerance() -> i64 {
    86_400
}

/// A license as the vendor sees it (never with its key: only a hint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseInfo {
    pub id: String,
    pub product: String,
    pub policy: String,
    pub key_hint: Option<String>,
    pub user_id: Option<String>,
    /// Who the license is for, in the vendor's words (an account or order-system id).
    pub customer: Option<String>,
    pub allow_offline: Option<bool>,
    pub seats: i64,
    pub seats_used: i64,
    pub features: Option<Features>,
    pub expires: Option<i64>,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    pub created: i64,
    /// Consumption reported so far, per feature.
    pub usage: BTreeMap<String, i64>,
    /// License-level consumption limits (per feature, across every device).
    pub total_limits: BTreeMap<String, u64>,
    /// Whether reaching a total limit refuses new seats and reissues.
    pub refuse_over_total: bool,
    /// How many times the license was edited (0: never).
    #[serde(default)]
    pub revision: i64,
    /// Whether its seats are a floating pool (from its policy). `seats_used` counts the
    /// seats held by node-locked activations and by an on-premise floating server's pool
    /// (its `pool_seats`); a floating license's other seats are held by leases and
    /// checkouts (`activation list --license ID` shows which).
    #[serde(default)]
    pub floating: bool,
}

/// Changes to a license; what is not given stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseEdit {
    /// Seats (at least 1, and not fewer than the devices holding one).
    #[serde(default)]
    pub seats: Option<i64>,
    /// A new fixed expiry (`Some(Some(t))`, seconds since the epoch), or none
    /// (`Some(None)`: the license never expires; refused when its policy gives each
    /// activation a validity period, which would apply instead).
    #[serde(default, deserialize_with = "some_or_null")]
    pub expires: Option<Option<i64>>,
    /// The features, replacing the license's list (or its policy's) as a whole.
    #[serde(default)]
    pub features: Option<Features>,
    /// Allow or refuse offline activation, whatever the policy says.
    #[serde(default)]
    pub allow_offline: Option<bool>,
    /// `active` or `suspended`.
    #[serde(default)]
    pub status: Option<String>,
    /// The license-level consumption limits, replacing the license's as a whole (`{}`:
    /// none).
    #[serde(default)]
    pub total_limits: Option<BTreeMap<String, u64>>,
    /// Whether a license whose total reached a limit refuses new seats and reissues.
    #[serde(default)]
    pub refuse_over_total: Option<bool>,
}

impl LicenseEdit {
    fn is_empty(&self) -> bool {
        *self == LicenseEdit::default()
    }
}

/// A member given as `null` is `Some(None)`; a member left out is `None` (`default`).
fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// One field an edit changed: its value before and after (as the license shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseChange {
    pub field: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// A license after an edit, and what the edit changed (empty: the license already was so,
/// and nothing was written).
#[derive(Debug, Clone, Serialize)]
pub struct EditedLicense {
    pub license: LicenseInfo,
    pub changes: Vec<LicenseChange>,
}

/// An active activation whose entitlements, as last issued to its device (its license,
/// or its last refresh), differ from what its license grants now: the device needs a
/// refresh to learn of an edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outdated {
    pub activation: String,
    pub license: String,
    pub device_kid: String,
    /// The serial of the device's license or last refresh.
    pub serial: i64,
    pub last_accessed: i64,
    /// What differs: `features` and/or `expires`.
    pub differs: Vec<String>,
    /// The features and expiry the device has.
    pub issued: Entitled,
    /// The features and expiry the license grants it now.
    pub granted: Entitled,
}

/// Features and expiry (seconds since the epoch; none: no expiry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entitled {
    pub features: Features,
    pub expires: Option<i64>,
}

impl From<decide::Entitlements> for Entitled {
    fn from(e: decide::Entitlements) -> Entitled {
        Entitled {
            features: e.features,
            expires: e.expires,
        }
    }
}

/// What to create a license with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLicense {
    pub policy: String,
    /// For a user-based license; otherwise a license key is generated.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Who the license is for, in the vendor's words (1 to 256 characters); lists filter
    /// by it.
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub seats: Option<i64>,
    #[serde(default)]
    pub allow_offline: Option<bool>,
    #[serde(default)]
    pub features: Option<Features>,
    #[serde(default)]
    pub expires: Option<i64>,
    /// License-level consumption limits instead of the policy's.
    #[serde(default)]
    pub total_limits: Option<BTreeMap<String, u64>>,
}

/// A new license, with its key shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedLicense {
    pub license: LicenseInfo,
    /// The license key to give the customer (stored only hashed).
    pub key: Option<String>,
}

/// An activation: one device holding (or having held) a seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    pub id: String,
    pub license: String,
    pub product: String,
    pub device_kid: String,
    pub state: String,
    /// Who ended it: `device` (its deactivation file) or `server` (staff); none while active.
    pub closed_by: Option<String>,
    pub serial: i64,
    pub journal_seq: i64,
    /// The latest integrity flag, for a one-line view (every flag is in `flags`).
    pub fork: Option<String>,
    /// How many times the device took its seat again with a new request.
    pub reactivations: i64,
    pub offline_expiry: Option<i64>,
    pub last_accessed: i64,
    pub created: i64,
    pub deactivated: Option<i64>,
    pub usage: BTreeMap<String, i64>,
    /// Every integrity flag raised on it, oldest first.
    pub flags: Vec<Flag>,
    /// The device variables, as the newest device-signed file of its journal carried them
    /// (`{}`: none). The customer's claims: signed by the device key, not checked.
    pub variables: format::Variables,
    /// Whether its license is floating (its seat is held by a lease or an OED).
    pub floating: bool,
    /// Floating: when the seat's lease lapses unless renewed (seconds since the epoch).
    pub lease_expires: Option<i64>,
    /// Floating: `offline_expiry` is a checkout's OED (else the policy's OED on every
    /// lease, if any).
    pub checked_out: bool,
    /// Floating: the application instances holding a live lease on the seat now.
    pub instances: u64,
    /// Whether it holds a seat now: an active node-locked activation or pool, or a
    /// floating seat with a live lease or an OED ahead.
    pub held: bool,
    /// An on-premise floating server's pool: the seats of the floating license it holds
    /// (counted as held in every seat count while it is active); None: an ordinary
    /// activation.
    pub pool_seats: Option<i64>,
}

/// Evidence recorded on an activation: a journal fork or gap, counters that went back or
/// could not be counted, a reactivation, a file from a store restored after the account
/// was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// `fork`, `gap`, `counters-went-back`, `counters-refused`, `reactivation` or
    /// `after-deactivation`.
    pub kind: String,
    /// Seconds since the epoch.
    pub at: i64,
    pub detail: String,
    /// The file that raised it, if any.
    pub file_hash: Option<String>,
    /// Flags of this kind raised after this one and not kept: an activation keeps the
    /// first [`MAX_FLAGS_PER_KIND`] of each kind and counts the
    /// rest on the latest one kept.
    pub repeats: u64,
}

impl Flag {
    /// How many times it was raised: itself, and the flags of its kind counted on it.
    pub fn raised(&self) -> u64 {
        1 + self.repeats
    }

    /// The activation and its flag, from a row of `activation_flags`.
    pub(crate) fn from_row(r: &AnyRow) -> Result<(String, Flag), PortalError> {
        let file_hash: String = r.try_get("file_hash")?;
        let repeats: i64 = r.try_get("repeats")?;
        Ok((
            r.try_get("activation")?,
            Flag {
                kind: r.try_get("kind")?,
                at: r.try_get("at")?,
                detail: r.try_get("detail")?,
                file_hash: (!file_hash.is_empty()).then_some(file_hash),
                repeats: u64::try_from(repeats).unwrap_or(0),
            },
        ))
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub reason: Option<String>,
    pub file_hash: Option<String>,
    pub detail: Option<String>,
}

/// An activation's files signed again by the active key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resigned {
    pub activation: String,
    /// The key that signed them.
    pub signed_by: String,
    /// The license, armored.
    pub license: String,
    /// The last refresh, armored, if there was one.
    pub refresh: Option<String>,
}

/// What applying a file gave back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub kind: String,
    /// The response file (license or receipt), armored.
    pub response: String,
    pub response_kind: String,
    pub activation: Option<String>,
    /// The file had been applied before: this is the same response, nothing changed.
    pub replay: bool,
    /// SHA-256 of the applied file's bytes.
    pub file_hash: String,
    /// What applying it flagged on the activation (a journal fork or gap, counters that
    /// went back or were not counted, a reactivation); empty when nothing was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// What the response is and what to do with it, for the person who sent the file
    /// (e.g. that a deactivation's receipt is the vendor's signed confirmation, to keep,
    /// and that nothing needs to be installed).
    #[serde(default)]
    pub note: String,
}

impl Applied {
    /// This response with its [`note`](Applied::note) for a file of `kind` that carried
    /// `counters` (a deactivation's final counters, a usage report's).
    fn noted(mut self, counters: Option<&format::Counters>) -> Applied {
        let activation = self.activation.as_deref().unwrap_or("-");
        let counters = match counters {
            Some(c) if !c.is_empty() => c
                .iter()
                .map(|(feature, n)| format!("{feature}={n}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "none".into(),
        };
        self.note = if self.kind == FileKind::Deactivation.name() {
            format!(
                "The seat is free: activation {activation} is deactivated. This receipt is the \
                 vendor's signed confirmation that the device's deactivation was applied, with \
                 its final counters ({counters}). Keep it as proof; nothing needs to be \
                 installed."
            )
        } else if self.kind == FileKind::CheckIn.name() {
            format!(
                "The seat is returned: activation {activation}'s checkout ended before its \
                 Offline Expiry Date and the seat is free for others. This receipt is the \
                 vendor's signed confirmation, with the checkout's final counters \
                 ({counters}). Keep it as proof; nothing needs to be installed."
            )
        } else if self.kind == FileKind::UsageReport.name() {
            format!(
                "This receipt is the vendor's signed confirmation that the usage report of \
                 activation {activation} was counted (counters {counters}). Keep it as proof; \
                 nothing needs to be installed."
            )
        } else {
            format!(
                "The license for activation {activation}: install it on the device with \
                 `lic install FILE`."
            )
        };
        self
    }
}

/// Changes a support refresh makes; what is not given stays as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSpec {
    pub reason: String,
    #[serde(default)]
    pub features: Option<Features>,
    /// New expiry (seconds since the epoch).
    #[serde(default)]
    pub expires: Option<i64>,
    /// Extend the current expiry (or now, if none) by this many days.
    #[serde(default)]
    pub extend_days: Option<i64>,
    /// Reset the device's clock high-water mark to this time (seconds since the epoch).
    #[serde(default)]
    pub clock_floor: Option<i64>,
    /// An on-premise floating server's pool: its new number of seats (refused for an
    /// activation that is not a pool, and when the license has too few free).
    #[serde(default)]
    pub pool_seats: Option<u32>,
}

/// How often the active vendor key is looked up again (rotations by other instances).
const KEY_RECHECK: Duration = Duration::seconds(10);

/// The portal: database, vendor key, clock.
pub struct Portal {
    db: Db,
    keys_dir: PathBuf,
    /// The active signing key, and when the database was last asked which key is active.
    signer: RwLock<(Arc<SecretKey>, DateTime<Utc>)>,
    clock: Arc<dyn Clock>,
    /// The group-commit writer's queue (SQLite or PostgreSQL).
    writer: Writer,
    /// Licenses (with their policies) by credential, as activations look them up. A
    /// license can be edited (here or by another instance on the same database): the
    /// activation's write reads the license's status, seats and revision with its row,
    /// and a license file made from an entry older than the row's revision is made again
    /// from a fresh read (see `apply_activation`). Policies never change.
    licenses: std::sync::Mutex<HashMap<LicenseLookup, Arc<(LicenseRow, Policy)>>>,
}

/// How an activation request names its license.
#[derive(Clone, PartialEq, Eq, Hash)]
enum LicenseLookup {
    KeyHash(String),
    User { product: String, user: String },
}

/// Licenses the lookup cache holds at most (it starts again when full).
const LICENSE_CACHE: usize = 4096;

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("backend", &self.db.backend())
            .field("keys_dir", &self.keys_dir)
            .finish_non_exhaustive()
    }
}

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Keys are compared without case, spaces or dashes, and stored only as this hash. New
/// keys are [`lic_core::license_key::generate`]'s (5 groups with a check character each);
/// keys issued before (4 groups of 5) hash as they always did.
pub fn key_hash(key: &str) -> String {
    let normalized: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn from_json<T: for<'de> Deserialize<'de>>(
    text: &str,
    what: &'static str,
) -> Result<T, PortalError> {
    serde_json::from_str(text).map_err(|e| PortalError::Invalid {
        field: what,
        reason: e.to_string(),
    })
}

/// Changes made by people say why: an empty reason is refused.
fn require_reason(reason: &str, what: &str) -> Result<(), PortalError> {
    if reason.trim().is_empty() {
        return Err(PortalError::Invalid {
            field: "reason",
            reason: format!("{what} needs a reason (it is audited)"),
        });
    }
    Ok(())
}

/// A time the portal itself stored (checked when it was given).
fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The latest time the portal accepts: 9999-12-31T23:59:59Z.
const MAX_TIME: i64 = 253_402_300_799;

/// Longest period, in days, a policy or a refresh may give (100 years).
pub const MAX_DAYS: i64 = 36_500;

/// A time given by a person (`field`), checked: after `not_before`, before year 10000.
fn given_time(
    secs: i64,
    not_before: DateTime<Utc>,
    field: &'static str,
) -> Result<DateTime<Utc>, PortalError> {
    let t = DateTime::from_timestamp(secs, 0)
        .filter(|_| secs <= MAX_TIME)
        .ok_or_else(|| PortalError::Invalid {
            field,
            reason: format!("{secs} is not a time the portal can use (seconds since 1970, before the year 10000)"),
        })?;
    if t < not_before {
        return Err(PortalError::Invalid {
            field,
            reason: format!(
                "{} is in the past (before {})",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                not_before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        });
    }
    Ok(t)
}

/// `t` + `days`, or a clear error naming `what` when that leaves the range of times.
fn add_days(t: DateTime<Utc>, days: i64, what: &str) -> Result<DateTime<Utc>, PortalError> {
    Duration::try_days(days)
        .and_then(|d| t.checked_add_signed(d))
        .filter(|t| t.timestamp() <= MAX_TIME)
        .ok_or_else(|| PortalError::Invalid {
            field: "days",
            reason: format!("{what} ({days} days) goes beyond the year 9999"),
        })
}

/// A number of days given by a person: 1 to [`MAX_DAYS`].
fn check_days(days: i64, field: &'static str) -> Result<(), PortalError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(PortalError::Invalid {
            field,
            reason: format!("{days} is out of range: give 1 to {MAX_DAYS} days"),
        })
    }
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// The longest feature name (the rule is lic-core's, shared with device variables).
pub const MAX_FEATURE_NAME: usize = format::MAX_NAME_LEN;

/// Features a person gave (`field`): names of 1 to [`MAX_FEATURE_NAME`] letters, digits,
/// `-`, `_` and `.`, limits within the counters' range. Checked when a policy, a license
/// or a refresh is made, so that no license is ever signed with a name or a limit the
/// format refuses.
fn check_features(features: &Features, field: &'static str) -> Result<(), PortalError> {
    for (name, feature) in features {
        if !format::is_usable_name(name) {
            return Err(PortalError::Invalid {
                field,
                reason: format!(
                    "feature name {name:?} is not usable: give 1 to {MAX_FEATURE_NAME} \
                     letters, digits, '-', '_' or '.'"
                ),
            });
        }
        if let Some(limit) = feature.limit.filter(|l| *l > format::MAX_COUNTER) {
            return Err(PortalError::Invalid {
                field,
                reason: format!(
                    "feature {name}: the limit {limit} is beyond the largest counter ({})",
                    format::MAX_COUNTER
                ),
            });
        }
        if feature.floating == Some(0) {
            return Err(PortalError::Invalid {
                field,
                reason: format!("feature {name}: a floating feature has at least 1 concurrent use"),
            });
        }
        if let Some(cap) = feature.max_overage.filter(|c| *c > format::MAX_COUNTER) {
            return Err(PortalError::Invalid {
                field,
                reason: format!(
                    "feature {name}: the overage cap {cap} is beyond the largest counter ({})",
                    format::MAX_COUNTER
                ),
            });
        }
    }
    Ok(())
}

/// License-level limits: feature names and limits as for features.
fn check_totals(totals: &BTreeMap<String, u64>, field: &'static str) -> Result<(), PortalError> {
    let as_features: Features = totals
        .iter()
        .map(|(name, limit)| {
            (
                name.clone(),
                format::Feature {
                    limit: Some(*limit),
                    ..Default::default()
                },
            )
        })
        .collect();
    check_features(&as_features, field)
}

/// A policy's match rule: components lic collects, each named once.
fn check_match_rule(rule: &MatchRule) -> Result<(), PortalError> {
    use lic_core::fingerprint::component;
    let mut seen = std::collections::BTreeSet::new();
    for name in &rule.required {
        if !component::ALL.contains(&name.as_str()) {
            return Err(PortalError::Invalid {
                field: "match_required",
                reason: format!(
                    "{name:?} is not a fingerprint component; use {}",
                    component::ALL.join(", ")
                ),
            });
        }
        if !seen.insert(name) {
            return Err(PortalError::Invalid {
                field: "match_required",
                reason: format!("{name} is named twice"),
            });
        }
    }
    let others = component::ALL.len() - rule.required.len();
    if usize::try_from(rule.max_changed).unwrap_or(usize::MAX) > others {
        return Err(PortalError::Invalid {
            field: "match_max_changed",
            reason: format!(
                "{} is more than the {others} components that are not required",
                rule.max_changed
            ),
        });
    }
    Ok(())
}

fn u64_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Write an audit entry about `subject` in a transaction of its own (for changes made
/// outside the database, such as a key file, or in a transaction of their own).
async fn audit_alone(
    db: &Db,
    now: DateTime<Utc>,
    actor: &Actor,
    action: &str,
    subject: &str,
    reason: Option<&str>,
    detail: Option<&str>,
) -> Result<(), PortalError> {
    let mut tx = db.begin_write().await?;
    audit(
        &mut *tx,
        now.timestamp_millis(),
        actor,
        action,
        Some(subject),
        reason,
        None,
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Write an audit entry inside `tx`.
#[allow(clippy::too_many_arguments)] // one argument per audit column
async fn audit<C: Sql>(
    c: &mut C,
    now_ms: i64,
    actor: &Actor,
    action: &str,
    subject: Option<&str>,
    reason: Option<&str>,
    file_hash: Option<&str>,
    detail: Option<&str>,
) -> Result<(), PortalError> {
    let (sql, args) = audit_stmt(now_ms, actor, action, subject, reason, file_hash, detail);
    c.exec(&sql, args).await?;
    Ok(())
}

/// The statement that writes an audit entry (to send with others).
fn audit_stmt(
    now_ms: i64,
    actor: &Actor,
    action: &str,
    subject: Option<&str>,
    reason: Option<&str>,
    file_hash: Option<&str>,
    detail: Option<&str>,
) -> (String, Vec<Val>) {
    (
        "INSERT INTO audit (id, at, actor, action, subject, reason, file_hash, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            .to_string(),
        vec![
            new_id("aud").into(),
            now_ms.into(),
            (&actor.0).into(),
            action.into(),
            subject.into(),
            reason.into(),
            file_hash.into(),
            detail.into(),
        ],
    )
}

#[derive(Clone)]
struct LicenseRow {
    id: String,
    product: String,
    policy: String,
    allow_offline: Option<bool>,
    seats: i64,
    features: Option<Features>,
    expires: Option<i64>,
    status: String,
    /// Edits so far: a cached copy with another revision is stale.
    revision: i64,
    total_limits: BTreeMap<String, u64>,
    refuse_over_total: bool,
    floating: bool,
    created: i64,
}

fn license_row(r: &AnyRow) -> Result<LicenseRow, PortalError> {
    let features: Option<String> = r.try_get("features")?;
    Ok(LicenseRow {
        id: r.try_get("id")?,
        product: r.try_get("product")?,
        policy: r.try_get("policy")?,
        allow_offline: r
            .try_get::<Option<i64>, _>("allow_offline")?
            .map(|v| v == 1),
        seats: r.try_get("seats")?,
        features: features.map(|f| from_json(&f, "features")).transpose()?,
        expires: r.try_get("expires")?,
        status: r.try_get("status")?,
        revision: r.try_get("revision")?,
        total_limits: from_json(&r.try_get::<String, _>("total_limits")?, "total_limits")?,
        refuse_over_total: r.try_get::<i64, _>("refuse_over_total")? == 1,
        floating: r.try_get::<i64, _>("floating")? == 1,
        created: r.try_get("created")?,
    })
}

fn policy_row(r: &AnyRow) -> Result<Policy, PortalError> {
    policy_from(r, "")
}

/// A policy from a row; in a join with `licenses` the policy's columns whose names clash
/// are read with `prefix` (e.g. `p_id`).
fn policy_from(r: &AnyRow, prefix: &str) -> Result<Policy, PortalError> {
    const CLASHING: [&str; 10] = [
        "id",
        "product",
        "name",
        "allow_offline",
        "seats",
        "features",
        "created",
        "total_limits",
        "refuse_over_total",
        "floating",
    ];
    let col = |name: &str| {
        if CLASHING.contains(&name) {
            format!("{prefix}{name}")
        } else {
            name.to_string()
        }
    };
    let license_type: String = r.try_get(col("license_type").as_str())?;
    Ok(Policy {
        id: r.try_get(col("id").as_str())?,
        product: r.try_get(col("product").as_str())?,
        name: r.try_get(col("name").as_str())?,
        license_type: from_json(&format!("\"{license_type}\""), "license_type")?,
        allow_offline: r.try_get::<i64, _>(col("allow_offline").as_str())? == 1,
        seats: r.try_get(col("seats").as_str())?,
        validity_days: r.try_get("validity_days")?,
        features: from_json(
            &r.try_get::<String, _>(col("features").as_str())?,
            "features",
        )?,
        match_rule: MatchRule {
            required: from_json(&r.try_get::<String, _>("match_required")?, "match_required")?,
            max_changed: u32::try_from(r.try_get::<i64, _>("match_max_changed")?).unwrap_or(0),
        },
        clock_tolerance_secs: r.try_get("clock_tolerance_secs")?,
        max_offline_days: r.try_get("max_offline_days")?,
        inactivity_secs: r.try_get("inactivity_secs")?,
        max_deactivations: r.try_get("max_deactivations")?,
        deactivation_period_days: r.try_get("deactivation_period_days")?,
        total_limits: from_json(
            &r.try_get::<String, _>(col("total_limits").as_str())?,
            "total_limits",
        )?,
        refuse_over_total: r.try_get::<i64, _>(col("refuse_over_total").as_str())? == 1,
        created: r.try_get(col("created").as_str())?,
        floating: r.try_get::<i64, _>(col("floating").as_str())? == 1,
        lease_secs: u64::try_from(r.try_get::<i64, _>("lease_secs")?).unwrap_or(0),
        renew_percent: u8::try_from(r.try_get::<i64, _>("renew_percent")?).unwrap_or(0),
        max_processes: r
            .try_get::<Option<i64>, _>("max_processes")?
            .and_then(|n| u32::try_from(n).ok()),
        revival_secs: u64::try_from(r.try_get::<i64, _>("revival_secs")?).unwrap_or(0),
        max_checkout_hours: r
            .try_get::<Option<i64>, _>("max_checkout_hours")?
            .and_then(|n| u64::try_from(n).ok()),
        lease_oed_hours: r
            .try_get::<Option<i64>, _>("lease_oed_hours")?
            .and_then(|n| u64::try_from(n).ok()),
        reclaim: r.try_get::<i64, _>("reclaim")? == 1,
        reclaim_every_secs: r.try_get("reclaim_every_secs")?,
        reclaim_since: r.try_get("reclaim_since")?,
    })
}

fn license_type_name(t: LicenseType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

impl Portal {
    /// Open the portal on `db`, signing with the active key from `keys_dir`.
    pub async fn open(db: Db, keys_dir: impl Into<PathBuf>) -> Result<Portal, PortalError> {
        let keys_dir = keys_dir.into();
        let signer = vendor::active(&db, &keys_dir).await?;
        let writer = Writer::open(&db).await?;
        Ok(Portal {
            db,
            keys_dir,
            signer: RwLock::new((signer, Utc::now())),
            clock: Arc::new(SystemClock),
            writer,
            licenses: Default::default(),
        })
    }

    /// Prepare a new portal: migrate the database (done on connect) and create the first
    /// vendor signing key in `keys_dir` if there is none. Returns the active key's id.
    pub async fn init(db: &Db, keys_dir: &std::path::Path) -> Result<String, PortalError> {
        let active: Option<String> =
            sqlx::query_scalar("SELECT kid FROM vendor_keys WHERE active = 1")
                .fetch_optional(db.pool())
                .await?;
        match active {
            Some(kid) => Ok(kid),
            None => {
                let now = Utc::now();
                let public = vendor::rotate(db, keys_dir, now.timestamp()).await?;
                let kid = public.kid().to_string();
                audit_alone(db, now, &Actor::cli(), "key.create", &kid, None, None).await?;
                Ok(kid)
            }
        }
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// The same file was being applied at the same moment and its result is not there yet.
fn applied_concurrently() -> PortalError {
    PortalError::Conflict {
        reason:
            "the same file was being applied at the same moment; upload it again for its response"
                .into(),
    }
}

fn response_kind(applied_kind: &str) -> &'static str {
    if applied_kind == FileKind::ActivationRequest.name() {
        FileKind::License.name()
    } else {
        FileKind::Receipt.name()
    }
}

fn joined_policy_row(r: &AnyRow) -> Result<Policy, PortalError> {
    policy_from(r, "p_")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          broken line\n\
                          :x:7:7::/:/bin/false\n\
                          vendor:x:1000:1000:Vendor Ops:/home/vendor:/bin/sh\n";

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_operator_is_user_then_logname_then_the_passwd_entry_then_the_uid() {
        let passwd = || Some(PASSWD.to_string());
        let name = |vars: &[(&str, &str)], uid| operator_name(env(vars), uid, passwd);
        assert_eq!(name(&[("USER", "ann"), ("LOGNAME", "bob")], Some(0)), "ann");
        assert_eq!(name(&[("USER", ""), ("LOGNAME", "bob")], Some(0)), "bob");
        assert_eq!(name(&[("LOGNAME", "bob")], Some(0)), "bob");
        assert_eq!(name(&[], Some(1000)), "vendor");
        assert_eq!(name(&[("USER", " ")], Some(0)), "root");
        // No entry for the uid (a container's arbitrary uid), or a nameless one.
        assert_eq!(name(&[], Some(4242)), "uid:4242");
        assert_eq!(name(&[], Some(7)), "uid:7");
        assert_eq!(operator_name(env(&[]), Some(1000), || None), "uid:1000");
        assert_eq!(operator_name(env(&[]), None, || None), "unknown");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_current_uid_is_read_on_linux() {
        assert!(current_uid().is_some());
    }
}
