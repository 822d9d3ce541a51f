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
use crate::sql::{Lite, Sql, Val, run_now};
use crate::vendor;

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
    #[serde(default)]
    pub created: i64,
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
    pub allow_offline: Option<bool>,
    pub seats: i64,
    pub seats_used: i64,
    pub features: Option<Features>,
    pub expires: Option<i64>,
    pub status: String,
    pub created: i64,
    /// Consumption reported so far, per feature.
    pub usage: BTreeMap<String, i64>,
}

/// What to create a license with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLicense {
    pub policy: String,
    /// For a user-based license; otherwise a license key is generated.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub seats: Option<i64>,
    #[serde(default)]
    pub allow_offline: Option<bool>,
    #[serde(default)]
    pub features: Option<Features>,
    #[serde(default)]
    pub expires: Option<i64>,
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
    /// SQLite only: the group-commit writer's queue.
    writer: Option<tokio::sync::mpsc::Sender<(Job, Reply)>>,
    /// Licenses (with their policies) by credential, as activations look them up. What
    /// is kept never changes once created — a license's product, policy, seats,
    /// overrides and expiry, and its policy — so an entry is never stale; what does
    /// change (the status, the seats in use) is read by the write transaction itself.
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

/// The longest feature name.
pub const MAX_FEATURE_NAME: usize = 64;

/// Features a person gave (`field`): names of 1 to [`MAX_FEATURE_NAME`] letters, digits,
/// `-`, `_` and `.`, limits within the counters' range. Checked when a policy, a license
/// or a refresh is made, so that no license is ever signed with a name or a limit the
/// format refuses.
fn check_features(features: &Features, field: &'static str) -> Result<(), PortalError> {
    for (name, feature) in features {
        let valid = !name.is_empty()
            && name.len() <= MAX_FEATURE_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
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
    }
    Ok(())
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
    c.exec(
        "INSERT INTO audit (id, at, actor, action, subject, reason, file_hash, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
    .await?;
    Ok(())
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
    })
}

fn policy_row(r: &AnyRow) -> Result<Policy, PortalError> {
    policy_from(r, "")
}

/// A policy from a row; in a join with `licenses` the policy's columns whose names clash
/// are read with `prefix` (e.g. `p_id`).
fn policy_from(r: &AnyRow, prefix: &str) -> Result<Policy, PortalError> {
    const CLASHING: [&str; 7] = [
        "id",
        "product",
        "name",
        "allow_offline",
        "seats",
        "features",
        "created",
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
        created: r.try_get(col("created").as_str())?,
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
        let writer = match db.sqlite_path() {
            Some(path) => Some(spawn_writer(path)?),
            None => None,
        };
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

    /// The active signing key. Another instance (or `lic-portal key rotate`) may have
    /// rotated it: the database is asked again at most every KEY_RECHECK.
    async fn signer(&self) -> Result<Arc<SecretKey>, PortalError> {
        let (key, checked) = match self.signer.read() {
            Ok(s) => (Arc::clone(&s.0), s.1),
            Err(poisoned) => {
                let s = poisoned.into_inner();
                (Arc::clone(&s.0), s.1)
            }
        };
        if self.now() - checked < KEY_RECHECK {
            return Ok(key);
        }
        let active: Option<String> =
            sqlx::query_scalar("SELECT kid FROM vendor_keys WHERE active = 1")
                .fetch_optional(self.db.pool())
                .await?;
        let key = if active.as_deref() == Some(key.kid().to_string().as_str()) {
            key
        } else {
            vendor::active(&self.db, &self.keys_dir).await?
        };
        self.set_signer(Arc::clone(&key));
        Ok(key)
    }

    fn set_signer(&self, key: Arc<SecretKey>) {
        let fresh = (key, self.now());
        match self.signer.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// The public keys clients must trust: every key ever active and not revoked (and
    /// the revoked ones, as revoked).
    pub async fn trusted_keys(&self) -> Result<Keyring, PortalError> {
        vendor::keyring(&self.db).await
    }

    /// The published key sets, oldest first.
    pub async fn key_sets(&self) -> Result<Vec<vendor::KeySetInfo>, PortalError> {
        vendor::key_sets(&self.db).await
    }

    /// Revoke a vendor key that leaked: it is never trusted again by a device that
    /// installs the key set this publishes (signed by the active key), and files it
    /// signed are refused there. The active key cannot be revoked: rotate first. Audited
    /// with the reason. Returns the new key set.
    pub async fn revoke_key(
        &self,
        kid: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<vendor::KeySetInfo, PortalError> {
        require_reason(reason, "a key revocation")?;
        let key = vendor::list(&self.db)
            .await?
            .into_iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| PortalError::NotFound {
                what: "vendor key",
                id: kid.into(),
            })?;
        if key.active {
            return Err(PortalError::KeyActive { kid: kid.into() });
        }
        if key.revoked.is_some() {
            return Err(PortalError::AlreadyRevoked { kid: kid.into() });
        }
        let now = self.now();
        vendor::revoke(&self.db, kid, reason.trim(), now.timestamp()).await?;
        let signer = self.signer().await?;
        let set = vendor::publish_key_set(&self.db, &signer, now).await?;
        let detail = format!(
            "key set version {} signed by {}",
            set.version, set.signed_by
        );
        audit_alone(
            &self.db,
            now,
            actor,
            "key.revoke",
            kid,
            Some(reason),
            Some(&detail),
        )
        .await?;
        Ok(set)
    }

    /// The license (and the last refresh, if any) of an activation signed again by the
    /// active key, with the very same content: for devices whose files were signed by a
    /// key that was revoked (or that do not trust an old key). The device installs them
    /// in place of its own (`lic install`); nothing else changes. The stored copies are
    /// replaced too, so that a request applied again gets the file signed anew.
    pub async fn resign(
        &self,
        activation_id: &str,
        actor: &Actor,
    ) -> Result<Resigned, PortalError> {
        let row =
            sqlx::query("SELECT request_hash, license_file, serial FROM activations WHERE id = $1")
                .bind(activation_id)
                .fetch_optional(self.db.pool())
                .await?
                .ok_or_else(|| PortalError::UnknownActivation {
                    activation: activation_id.into(),
                })?;
        let keys = vendor::own_keys(&self.db).await?;
        let request_hash: String = row.try_get("request_hash")?;
        let original: String =
            sqlx::query_scalar("SELECT response FROM applied_files WHERE hash = $1")
                .bind(&request_hash)
                .fetch_one(self.db.pool())
                .await?;
        let signer = self.signer().await?;
        let license = format::open::<License>(original.as_bytes(), &keys)?;
        let license_file = format::sign(license.payload(), &signer)?.armored();
        let last_refresh: String = row.try_get("license_file")?;
        let serial: i64 = row.try_get("serial")?;
        let refresh_file = if last_refresh.is_empty() {
            None
        } else {
            let refresh = format::open::<Refresh>(last_refresh.as_bytes(), &keys)?;
            Some(format::sign(refresh.payload(), &signer)?.armored())
        };
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE applied_files SET response = $1 WHERE hash = $2")
            .bind(&license_file)
            .bind(&request_hash)
            .execute(&mut *tx)
            .await?;
        if let Some(armored) = &refresh_file {
            // Only if no other refresh was made meanwhile.
            let done = sqlx::query(
                "UPDATE activations SET license_file = $1 WHERE id = $2 AND serial = $3",
            )
            .bind(armored)
            .bind(activation_id)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(PortalError::Conflict {
                    reason: format!(
                        "activation {activation_id} was refreshed while its files were signed \
                         again; do it again"
                    ),
                });
            }
        }
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "activation.resign",
            Some(activation_id),
            None,
            None,
            Some(&format!(
                "license and refresh signed again by {}",
                signer.kid()
            )),
        )
        .await?;
        tx.commit().await?;
        Ok(Resigned {
            activation: activation_id.into(),
            signed_by: signer.kid().to_string(),
            license: license_file,
            refresh: refresh_file,
        })
    }

    /// The activations whose license or last refresh was signed by the vendor key `kid`
    /// and that are still active: those to sign again after `kid` is revoked.
    pub async fn activations_signed_by(&self, kid: &str) -> Result<Vec<String>, PortalError> {
        let rows = sqlx::query(
            "SELECT a.id, a.license_file, f.response FROM activations a \
             JOIN applied_files f ON f.hash = a.request_hash WHERE a.state = 'active' ORDER BY a.id",
        )
        .fetch_all(self.db.pool())
        .await?;
        let keys = vendor::own_keys(&self.db).await?;
        let signed_by = |armored: &str, license: bool| -> bool {
            let signer = if license {
                format::open::<License>(armored.as_bytes(), &keys).map(|v| v.signer().kid())
            } else {
                format::open::<Refresh>(armored.as_bytes(), &keys).map(|v| v.signer().kid())
            };
            signer.is_ok_and(|k| k.to_string() == kid)
        };
        let mut out = Vec::new();
        for r in rows {
            let license: String = r.try_get("response")?;
            let refresh: String = r.try_get("license_file")?;
            if signed_by(&license, true) || (!refresh.is_empty() && signed_by(&refresh, false)) {
                out.push(r.try_get("id")?);
            }
        }
        Ok(out)
    }

    /// Make a new vendor key the active one.
    pub async fn rotate_key(&self, actor: &Actor) -> Result<PublicKey, PortalError> {
        self.rotate_key_to(SecretKey::generate(), actor).await
    }

    /// Make `key` (e.g. made by `lic-portal key generate` and placed in every instance's
    /// key directory beforehand) the active vendor key, and publish a key set that adds it,
    /// signed by the key that was active until now (which devices already trust).
    pub async fn rotate_key_to(
        &self,
        key: SecretKey,
        actor: &Actor,
    ) -> Result<PublicKey, PortalError> {
        let now = self.now();
        let previous = vendor::active(&self.db, &self.keys_dir).await.ok();
        let public = vendor::rotate_to(&self.db, &self.keys_dir, now.timestamp(), key).await?;
        let key = vendor::active(&self.db, &self.keys_dir).await?;
        self.set_signer(key);
        if let Some(previous) = previous {
            vendor::publish_key_set(&self.db, &previous, now).await?;
        }
        let kid = public.kid().to_string();
        audit_alone(&self.db, now, actor, "key.rotate", &kid, None, None).await?;
        Ok(public)
    }

    // ----- products, policies, licenses -------------------------------------------------

    pub async fn create_product(
        &self,
        code: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<Product, PortalError> {
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(PortalError::Invalid {
                field: "product code",
                reason: "use letters, digits, '-' and '_' only".into(),
            });
        }
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let inserted =
            sqlx::query("INSERT INTO products (code, name, created) VALUES ($1, $2, $3)")
                .bind(code)
                .bind(name)
                .bind(now.timestamp())
                .execute(&mut *tx)
                .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(PortalError::AlreadyExists {
                    what: "product",
                    id: code.into(),
                });
            }
            r => r?,
        };
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "product.create",
            Some(code),
            None,
            None,
            Some(name),
        )
        .await?;
        tx.commit().await?;
        Ok(Product {
            code: code.into(),
            name: name.into(),
            created: now.timestamp(),
        })
    }

    pub async fn products(&self, scope: Option<&[String]>) -> Result<Vec<Product>, PortalError> {
        let rows = sqlx::query("SELECT code, name, created FROM products ORDER BY code")
            .fetch_all(self.db.pool())
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let p = Product {
                code: r.try_get("code")?,
                name: r.try_get("name")?,
                created: r.try_get("created")?,
            };
            if scope.is_none_or(|s| s.contains(&p.code)) {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub async fn product(&self, code: &str) -> Result<Product, PortalError> {
        let r = sqlx::query("SELECT code, name, created FROM products WHERE code = $1")
            .bind(code)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| PortalError::NotFound {
                what: "product",
                id: code.into(),
            })?;
        Ok(Product {
            code: r.try_get("code")?,
            name: r.try_get("name")?,
            created: r.try_get("created")?,
        })
    }

    pub async fn create_policy(&self, spec: Policy, actor: &Actor) -> Result<Policy, PortalError> {
        self.product(&spec.product).await?;
        if spec.seats < 1 {
            return Err(PortalError::Invalid {
                field: "seats",
                reason: "a policy has at least one seat".into(),
            });
        }
        if spec.name.trim().is_empty() {
            return Err(PortalError::Invalid {
                field: "name",
                reason: "a policy needs a name".into(),
            });
        }
        check_features(&spec.features, "features")?;
        check_match_rule(&spec.match_rule)?;
        // Every period within what the files and the clock arithmetic can carry.
        const DAY: i64 = 86_400;
        for (field, value, range) in [
            ("validity_days", spec.validity_days, 1..=MAX_DAYS),
            (
                "clock_tolerance_secs",
                Some(spec.clock_tolerance_secs),
                0..=365 * DAY,
            ),
            ("max_offline_days", spec.max_offline_days, 1..=MAX_DAYS),
            ("inactivity_secs", spec.inactivity_secs, 1..=MAX_DAYS * DAY),
            ("max_deactivations", spec.max_deactivations, 0..=1_000_000),
            (
                "deactivation_period_days",
                spec.deactivation_period_days,
                1..=MAX_DAYS,
            ),
        ] {
            if let Some(v) = value
                && !range.contains(&v)
            {
                return Err(PortalError::Invalid {
                    field: "policy",
                    reason: format!("{field} is {v}; give {} to {}", range.start(), range.end()),
                });
            }
        }
        if spec.max_deactivations.is_some() != spec.deactivation_period_days.is_some() {
            return Err(PortalError::Invalid {
                field: "policy",
                reason: "churn control needs both max_deactivations and deactivation_period_days"
                    .into(),
            });
        }
        let now = self.now();
        let policy = Policy {
            id: new_id("pol"),
            created: now.timestamp(),
            ..spec
        };
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO policies (id, product, name, license_type, allow_offline, seats, validity_days, \
             features, match_required, match_max_changed, clock_tolerance_secs, max_offline_days, \
             inactivity_secs, max_deactivations, deactivation_period_days, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&policy.id)
        .bind(&policy.product)
        .bind(&policy.name)
        .bind(license_type_name(policy.license_type))
        .bind(flag(policy.allow_offline))
        .bind(policy.seats)
        .bind(policy.validity_days)
        .bind(json(&policy.features))
        .bind(json(&policy.match_rule.required))
        .bind(i64::from(policy.match_rule.max_changed))
        .bind(policy.clock_tolerance_secs)
        .bind(policy.max_offline_days)
        .bind(policy.inactivity_secs)
        .bind(policy.max_deactivations)
        .bind(policy.deactivation_period_days)
        .bind(policy.created)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(PortalError::AlreadyExists {
                    what: "policy",
                    id: format!("{}/{}", policy.product, policy.name),
                });
            }
            r => r?,
        };
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "policy.create",
            Some(&policy.id),
            None,
            None,
            Some(&json(&policy)),
        )
        .await?;
        tx.commit().await?;
        Ok(policy)
    }

    pub async fn policy(&self, id: &str) -> Result<Policy, PortalError> {
        let r = sqlx::query("SELECT * FROM policies WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| PortalError::NotFound {
                what: "policy",
                id: id.into(),
            })?;
        policy_row(&r)
    }

    pub async fn policies(&self, scope: Option<&[String]>) -> Result<Vec<Policy>, PortalError> {
        let rows = sqlx::query("SELECT * FROM policies ORDER BY product, name")
            .fetch_all(self.db.pool())
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let p = policy_row(r)?;
            if scope.is_none_or(|s| s.contains(&p.product)) {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub async fn create_license(
        &self,
        spec: NewLicense,
        actor: &Actor,
    ) -> Result<CreatedLicense, PortalError> {
        let policy = self.policy(&spec.policy).await?;
        let seats = spec.seats.unwrap_or(policy.seats);
        if seats < 1 {
            return Err(PortalError::Invalid {
                field: "seats",
                reason: "a license has at least one seat".into(),
            });
        }
        let now = self.now();
        if let Some(e) = spec.expires {
            given_time(e, now, "expires")?;
        }
        if let Some(features) = &spec.features {
            check_features(features, "features")?;
        }
        if spec
            .user_id
            .as_ref()
            .is_some_and(|u| u.trim().is_empty() || u.len() > 256)
        {
            return Err(PortalError::Invalid {
                field: "user_id",
                reason: "a user id is 1 to 256 characters".into(),
            });
        }
        let (key, key_hash_value, key_hint) = match &spec.user_id {
            Some(_) => (None, None, None),
            None => {
                let key = lic_core::license_key::generate();
                let hint = key[key.len() - 4..].to_string();
                let hash = key_hash(&key);
                (Some(key), Some(hash), Some(hint))
            }
        };
        let id = new_id("lic");
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO licenses (id, product, policy, key_hash, key_hint, user_id, allow_offline, seats, \
             seats_used, features, expires, status, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, 'active', $11)",
        )
        .bind(&id)
        .bind(&policy.product)
        .bind(&policy.id)
        .bind(&key_hash_value)
        .bind(&key_hint)
        .bind(&spec.user_id)
        .bind(spec.allow_offline.map(flag))
        .bind(seats)
        .bind(spec.features.as_ref().map(json))
        .bind(spec.expires)
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(PortalError::AlreadyExists {
                    what: "license for user",
                    id: spec.user_id.clone().unwrap_or_default(),
                });
            }
            r => r?,
        };
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "license.create",
            Some(&id),
            None,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedLicense {
            license: self.license(&id).await?,
            key,
        })
    }

    pub async fn license(&self, id: &str) -> Result<LicenseInfo, PortalError> {
        let r = sqlx::query("SELECT * FROM licenses WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| PortalError::NotFound {
                what: "license",
                id: id.into(),
            })?;
        self.license_info(&r).await
    }

    async fn license_info(&self, r: &AnyRow) -> Result<LicenseInfo, PortalError> {
        let id: String = r.try_get("id")?;
        let usage_rows = sqlx::query("SELECT feature, total FROM usage_totals WHERE license = $1")
            .bind(&id)
            .fetch_all(self.db.pool())
            .await?;
        let usage = usage_rows
            .iter()
            .map(|u| Ok((u.try_get("feature")?, u.try_get("total")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        Self::license_info_with(r, usage)
    }

    fn license_info_with(
        r: &AnyRow,
        usage: BTreeMap<String, i64>,
    ) -> Result<LicenseInfo, PortalError> {
        let row = license_row(r)?;
        Ok(LicenseInfo {
            id: row.id,
            product: row.product,
            policy: row.policy,
            key_hint: r.try_get("key_hint")?,
            user_id: r.try_get("user_id")?,
            allow_offline: row.allow_offline,
            seats: row.seats,
            seats_used: r.try_get("seats_used")?,
            features: row.features,
            expires: row.expires,
            status: row.status,
            created: r.try_get("created")?,
            usage,
        })
    }

    pub async fn licenses(
        &self,
        scope: Option<&[String]>,
    ) -> Result<Vec<LicenseInfo>, PortalError> {
        let rows = sqlx::query("SELECT * FROM licenses ORDER BY created, id")
            .fetch_all(self.db.pool())
            .await?;
        // Every license's usage in one query, not one query per license.
        let mut usage = self
            .usage_by(
                "SELECT license AS owner, feature, total AS amount FROM usage_totals",
                None,
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            let info = Self::license_info_with(r, usage.remove(&id).unwrap_or_default())?;
            if scope.is_none_or(|s| s.contains(&info.product)) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Revoke a license: no new activations (existing license files keep working offline
    /// until they expire; refreshes are no longer issued).
    pub async fn revoke_license(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<LicenseInfo, PortalError> {
        require_reason(reason, "a revocation")?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query("UPDATE licenses SET status = 'revoked' WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(PortalError::NotFound {
                what: "license",
                id: id.into(),
            });
        }
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "license.revoke",
            Some(id),
            Some(reason),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        self.license(id).await
    }

    // ----- activations -------------------------------------------------------------------

    async fn activation_usage(&self, id: &str) -> Result<BTreeMap<String, i64>, PortalError> {
        let rows =
            sqlx::query("SELECT feature, reported FROM usage_reported WHERE activation = $1")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|u| Ok((u.try_get("feature")?, u.try_get("reported")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    fn activation_from(
        r: &AnyRow,
        usage: BTreeMap<String, i64>,
        flags: Vec<Flag>,
    ) -> Result<Activation, PortalError> {
        Ok(Activation {
            id: r.try_get("id")?,
            license: r.try_get("license")?,
            product: r.try_get("product")?,
            device_kid: r.try_get("device_kid")?,
            state: r.try_get("state")?,
            closed_by: r.try_get("closed_by")?,
            serial: r.try_get("serial")?,
            journal_seq: r.try_get("journal_seq")?,
            fork: r.try_get("fork")?,
            reactivations: r.try_get("reactivations")?,
            offline_expiry: r.try_get("offline_expiry")?,
            last_accessed: r.try_get("last_accessed")?,
            created: r.try_get("created")?,
            deactivated: r.try_get("deactivated")?,
            usage,
            flags,
        })
    }

    /// Flags by activation, oldest first, from `sql` selecting the flag columns (with
    /// `arg` bound to `$1`, if given).
    async fn flags_by(
        &self,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<Flag>>, PortalError> {
        let mut q = sqlx::query(sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let mut out: BTreeMap<String, Vec<Flag>> = BTreeMap::new();
        for r in q.fetch_all(self.db.pool()).await? {
            let file_hash: String = r.try_get("file_hash")?;
            out.entry(r.try_get("activation")?).or_default().push(Flag {
                kind: r.try_get("kind")?,
                at: r.try_get("at")?,
                detail: r.try_get("detail")?,
                file_hash: (!file_hash.is_empty()).then_some(file_hash),
            });
        }
        Ok(out)
    }

    /// Usage amounts by owner (license or activation) and feature, from `sql` selecting
    /// `owner`, `feature` and `amount` (with `arg` bound to `$1`, if given).
    async fn usage_by(
        &self,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeMap<String, i64>>, PortalError> {
        let mut q = sqlx::query(sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for r in q.fetch_all(self.db.pool()).await? {
            out.entry(r.try_get("owner")?)
                .or_default()
                .insert(r.try_get("feature")?, r.try_get("amount")?);
        }
        Ok(out)
    }

    pub async fn activation(&self, id: &str) -> Result<Activation, PortalError> {
        let r = sqlx::query("SELECT * FROM activations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| PortalError::UnknownActivation {
                activation: id.into(),
            })?;
        let mut flags = self
            .flags_by(
                "SELECT * FROM activation_flags WHERE activation = $1 ORDER BY at, kind",
                Some(id),
            )
            .await?;
        Self::activation_from(
            &r,
            self.activation_usage(id).await?,
            flags.remove(id).unwrap_or_default(),
        )
    }

    /// Activations, optionally of one license, newest first.
    pub async fn activations(
        &self,
        license: Option<&str>,
        scope: Option<&[String]>,
    ) -> Result<Vec<Activation>, PortalError> {
        let rows = match license {
            Some(l) => {
                sqlx::query(
                    "SELECT * FROM activations WHERE license = $1 ORDER BY created DESC, id",
                )
                .bind(l)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM activations ORDER BY created DESC, id")
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        let mut usage = match license {
            Some(l) => {
                self.usage_by(
                    "SELECT u.activation AS owner, u.feature, u.reported AS amount \
                     FROM usage_reported u JOIN activations a ON a.id = u.activation \
                     WHERE a.license = $1",
                    Some(l),
                )
                .await?
            }
            None => {
                self.usage_by(
                    "SELECT activation AS owner, feature, reported AS amount FROM usage_reported",
                    None,
                )
                .await?
            }
        };
        let mut flags = match license {
            Some(l) => {
                self.flags_by(
                    "SELECT f.* FROM activation_flags f JOIN activations a ON a.id = f.activation \
                     WHERE a.license = $1 ORDER BY f.at, f.kind",
                    Some(l),
                )
                .await?
            }
            None => {
                self.flags_by("SELECT * FROM activation_flags ORDER BY at, kind", None)
                    .await?
            }
        };
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            let a = Self::activation_from(
                r,
                usage.remove(&id).unwrap_or_default(),
                flags.remove(&id).unwrap_or_default(),
            )?;
            if scope.is_none_or(|s| s.contains(&a.product)) {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub async fn audit_log(
        &self,
        limit: i64,
        scope_subject: Option<&str>,
    ) -> Result<Vec<AuditEntry>, PortalError> {
        let rows = match scope_subject {
            Some(s) => {
                sqlx::query("SELECT * FROM audit WHERE subject = $1 ORDER BY at DESC, id LIMIT $2")
                    .bind(s)
                    .bind(limit)
                    .fetch_all(self.db.pool())
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit ORDER BY at DESC, id LIMIT $1")
                    .bind(limit)
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    reason: r.try_get("reason")?,
                    file_hash: r.try_get("file_hash")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    // ----- applying files ----------------------------------------------------------------

    /// Apply any uploaded file: an activation request, a deactivation or a usage report.
    pub async fn apply(&self, input: &[u8], actor: &Actor) -> Result<Applied, PortalError> {
        let (armor_kind, bytes) = format::unarmor(input)?;
        let kind = match armor_kind {
            Some(k) => k,
            None => match format::open_any(&bytes, &Keyring::new()) {
                Ok(any) => any.kind(),
                Err(format::FormatError::UnknownKey { .. }) => FileKind::License,
                Err(e) => return Err(e.into()),
            },
        };
        match kind {
            FileKind::ActivationRequest => self.apply_activation(&bytes, actor).await,
            FileKind::Deactivation => self.apply_deactivation(&bytes, actor).await,
            FileKind::UsageReport => self.apply_usage_report(&bytes, actor).await,
            other => Err(PortalError::Invalid {
                field: "file",
                reason: format!(
                    "a {other} file is made by the portal, not uploaded to it; upload an \
                     activation request, a deactivation file or a usage report"
                ),
            }),
        }
    }

    /// The license an activation request names, with its policy: from the cache, or
    /// read once (a license that is not found is looked up again next time: it may be
    /// created meanwhile).
    async fn license_for(
        &self,
        product: &str,
        credential: &Credential,
    ) -> Result<Arc<(LicenseRow, Policy)>, PortalError> {
        let lookup = match credential {
            Credential::LicenseKey(key) => LicenseLookup::KeyHash(key_hash(key)),
            Credential::User(user) => LicenseLookup::User {
                product: product.into(),
                user: user.clone(),
            },
        };
        let cached = self
            .licenses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&lookup)
            .cloned();
        if let Some(found) = cached {
            return Ok(found);
        }
        // The license and its policy, in one read.
        let select = "SELECT l.id, l.product, l.policy, l.allow_offline, l.seats, l.features, l.expires, \
                      l.status, p.id AS p_id, p.product AS p_product, p.name AS p_name, p.license_type, \
                      p.allow_offline AS p_allow_offline, p.seats AS p_seats, p.validity_days, \
                      p.features AS p_features, p.match_required, p.match_max_changed, \
                      p.clock_tolerance_secs, p.max_offline_days, p.inactivity_secs, p.max_deactivations, \
                      p.deactivation_period_days, p.created AS p_created \
                      FROM licenses l JOIN policies p ON p.id = l.policy";
        let row = match &lookup {
            LicenseLookup::KeyHash(hash) => {
                sqlx::query(&format!("{select} WHERE l.key_hash = $1"))
                    .bind(hash)
                    .fetch_optional(self.db.pool())
                    .await?
            }
            LicenseLookup::User { product, user } => {
                sqlx::query(&format!("{select} WHERE l.product = $1 AND l.user_id = $2"))
                    .bind(product)
                    .bind(user)
                    .fetch_optional(self.db.pool())
                    .await?
            }
        };
        let row = row.ok_or_else(|| PortalError::UnknownLicense {
            product: product.into(),
            // A request from a lic that does not check keys yet: say which group of the
            // key looks mistyped, for whoever reads the refusal.
            typo: match credential {
                Credential::LicenseKey(key) => lic_core::license_key::check(key)
                    .err()
                    .map(|e| e.to_string()),
                Credential::User(_) => None,
            },
        })?;
        let found = Arc::new((license_row(&row)?, joined_policy_row(&row)?));
        let mut cache = self
            .licenses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= LICENSE_CACHE {
            cache.clear();
        }
        cache.insert(lookup, Arc::clone(&found));
        Ok(found)
    }

    async fn replayed(&self, hash: &str) -> Result<Option<Applied>, PortalError> {
        let r = sqlx::query("SELECT kind, activation, response FROM applied_files WHERE hash = $1")
            .bind(hash)
            .fetch_optional(self.db.pool())
            .await?;
        r.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Applied {
                response_kind: response_kind(&kind).into(),
                kind,
                activation: r.try_get("activation")?,
                response: r.try_get("response")?,
                replay: true,
                file_hash: hash.into(),
                flags: Vec::new(),
                note: String::new(),
            })
        })
        .transpose()
    }

    /// Apply an activation request: a license file for the requesting device, taking a
    /// seat. The same request applied again returns the same license, not a second seat.
    pub async fn apply_activation(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let request: Verified<ActivationRequest> = format::verify(bytes.to_vec(), &Keyring::new())?;
        let hash = request.file_hash().to_string();
        let r = request.payload();
        let found = self.license_for(&r.product, &r.credential).await?;
        let (lic, policy) = &*found;
        if lic.product != r.product {
            return Err(PortalError::WrongProduct {
                requested: r.product.clone(),
                license_product: lic.product.clone(),
            });
        }
        if matches!(r.credential, Credential::User(_)) && actor.is_anonymous() {
            // A user id is no secret: whoever knows it could take the user's seats.
            return Err(PortalError::UserLicenseNeedsVendor {
                license: lic.id.clone(),
            });
        }
        // (Whether the license is revoked is decided in the write transaction: a replay
        // of a request applied before the revocation still gets its license.)
        if !lic.allow_offline.unwrap_or(policy.allow_offline) {
            return Err(PortalError::OfflineNotAllowed {
                license: lic.id.clone(),
            });
        }
        if policy.license_type == LicenseType::Subscription {
            return Err(PortalError::SubscriptionOffline {
                license: lic.id.clone(),
            });
        }

        // The license carries the policy's match rule as it is: a request that lacks a
        // component the rule requires would give a license bound to nothing.
        let missing = decide::missing_components(&policy.match_rule.required, &r.fingerprint);
        if !missing.is_empty() {
            return Err(PortalError::MissingComponents {
                components: missing,
            });
        }
        let now = self.now();
        let device = *request.signer();
        let activation_id = new_id("act");
        let rule = policy.match_rule.clone();
        let expires = match (lic.expires, policy.validity_days) {
            (Some(e), _) => Some(time(e)),
            (None, Some(days)) => Some(add_days(now, days, "the policy's validity_days")?),
            (None, None) => None,
        };
        let license = License {
            license_id: lic.id.clone(),
            activation_id: activation_id.clone(),
            product: r.product.clone(),
            device_key: Bytes32(device.to_bytes()),
            fingerprint: r.fingerprint.clone(),
            match_rule: rule,
            features: lic
                .features
                .clone()
                .unwrap_or_else(|| policy.features.clone()),
            license_type: policy.license_type,
            issued: now,
            not_before: now,
            expires,
            offline_expiry: None,
            clock_tolerance: u64::try_from(policy.clock_tolerance_secs).unwrap_or(0),
            serial: 1,
            request_nonce: r.nonce,
            counters: Default::default(),
        };
        let signer = self.signer().await?;
        let armored = format::sign(&license, &signer)?.armored();
        let job = ActivationWrite {
            hash: hash.clone(),
            activation_id,
            license,
            armored,
            lic_id: lic.id.clone(),
            seats: lic.seats,
            churn: policy
                .max_deactivations
                .zip(policy.deactivation_period_days),
            device_hex: hex::encode(device.to_bytes()),
            device_kid: device.kid().to_string(),
            fingerprint: json(&r.fingerprint),
            now,
            actor: actor.clone(),
        };
        let outcome = self.write(Job::Activation(job)).await?;
        self.finish(outcome, &hash, &signer)
            .await
            .map(|a| a.noted(None))
    }

    /// Turn a write outcome into the response; a lost race reads the winner's.
    async fn finish(
        &self,
        outcome: WriteOutcome,
        hash: &str,
        signer: &SecretKey,
    ) -> Result<Applied, PortalError> {
        match outcome {
            WriteOutcome::Done(applied) => Ok(applied),
            WriteOutcome::Reissue { id, license, actor } => {
                // The same device already holds a seat of this license: reissue on it,
                // with the entitlements in force (the last license or refresh issued for
                // it), not new ones — a reset store must not restart a trial — and with the
                // consumption counted so far as the device's starting counters, so that a
                // reset store cannot use a limit twice. (The write checks that no usage
                // arrived in between.)
                let mut license = *license;
                self.carry_entitlements(&id, &mut license).await?;
                license.counters = self.reported_counters(&id).await?;
                license.activation_id = id;
                let armored = format::sign(&license, signer)?.armored();
                let job = ReissueWrite {
                    hash: hash.into(),
                    license,
                    armored,
                    now: self.now(),
                    actor,
                };
                match self.write(Job::Reissue(job)).await? {
                    WriteOutcome::Done(applied) => Ok(applied),
                    WriteOutcome::Refused(e) => Err(e),
                    _ => self.replayed(hash).await?.ok_or_else(applied_concurrently),
                }
            }
            WriteOutcome::AlreadyApplied => {
                self.replayed(hash).await?.ok_or_else(applied_concurrently)
            }
            WriteOutcome::Refused(e) => Err(e),
        }
    }

    /// The activation's last reported cumulative counters.
    async fn reported_counters(&self, id: &str) -> Result<format::Counters, PortalError> {
        Ok(self
            .activation_usage(id)
            .await?
            .into_iter()
            .filter_map(|(feature, n)| Some((feature, u64::try_from(n).ok()?)))
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    /// Copy the entitlements in force for activation `id` into a reissued `license`.
    async fn carry_entitlements(&self, id: &str, license: &mut License) -> Result<(), PortalError> {
        let row = sqlx::query("SELECT request_hash, license_file FROM activations WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await?;
        let keys = vendor::own_keys(&self.db).await?;
        let original: Option<String> =
            sqlx::query_scalar("SELECT response FROM applied_files WHERE hash = $1")
                .bind(row.try_get::<String, _>("request_hash")?)
                .fetch_optional(self.db.pool())
                .await?;
        if let Some(original) = original {
            let o = format::open::<License>(original.as_bytes(), &keys)?.into_payload();
            license.features = o.features;
            license.expires = o.expires;
            license.offline_expiry = o.offline_expiry;
            license.clock_tolerance = o.clock_tolerance;
            license.license_type = o.license_type;
        }
        let last_refresh: String = row.try_get("license_file")?;
        if !last_refresh.is_empty() {
            let r = format::open::<Refresh>(last_refresh.as_bytes(), &keys)?.into_payload();
            license.features = r.features;
            license.expires = r.expires;
            license.offline_expiry = r.offline_expiry;
            license.clock_tolerance = r.clock_tolerance;
            license.license_type = r.license_type;
            // The device's serial goes on from the last refresh: installing an older one
            // again (with entitlements the vendor has since changed) is a rollback.
            license.serial = r.serial;
        }
        Ok(())
    }

    /// Run a write job: on SQLite through the group-commit writer (many jobs, one durable
    /// commit), on PostgreSQL in its own transaction (the server commits concurrently).
    async fn write(&self, job: Job) -> Result<WriteOutcome, PortalError> {
        match &self.writer {
            Some(writer) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                writer
                    .send((job, reply))
                    .await
                    .map_err(|_| PortalError::Storage("the database writer has stopped".into()))?;
                answer
                    .await
                    .map_err(|_| PortalError::Storage("the database writer has stopped".into()))?
            }
            None => {
                let mut tx = self.db.begin_write().await?;
                match run_job(&mut *tx, job).await {
                    Ok(outcome) => {
                        tx.commit().await?;
                        Ok(outcome)
                    }
                    Err(e) => {
                        drop(tx);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Verify a device-signed file against the activation's recorded device key.
    async fn device_file<T: format::Payload>(
        &self,
        bytes: &[u8],
        activation_of: impl Fn(&T) -> &str,
    ) -> Result<(Verified<T>, String), PortalError> {
        let file: Verified<T> = format::verify(bytes.to_vec(), &Keyring::new())?;
        let id = activation_of(file.payload()).to_string();
        let row = sqlx::query("SELECT device_key, license FROM activations WHERE id = $1")
            .bind(&id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or(PortalError::UnknownActivation { activation: id })?;
        let recorded: String = row.try_get("device_key")?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&recorded, &mut key)
            .map_err(|_| PortalError::Key("a recorded device key is corrupt".into()))?;
        let expected = PublicKey::from_bytes(&key).map_err(|e| PortalError::Key(e.to_string()))?;
        Ok((file.expect_signer(&expected)?, row.try_get("license")?))
    }

    /// Apply a deactivation file: add its consumption once, free the seat, record the
    /// journal head, and return a signed receipt. Applying it again changes nothing and
    /// returns the same receipt.
    pub async fn apply_deactivation(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<Deactivation>(bytes, |d| &d.activation_id)
            .await?;
        let d = file.payload();
        self.apply_device_file(
            FileKind::Deactivation,
            file.file_hash(),
            &d.activation_id,
            license,
            d.counters.clone(),
            d.journal.clone(),
            true,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&d.counters)))
    }

    /// Apply a usage report: add `new cumulative − last reported` per feature, so replays
    /// and reports out of order never double-count.
    pub async fn apply_usage_report(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<UsageReport>(bytes, |u| &u.activation_id)
            .await?;
        let u = file.payload();
        self.apply_device_file(
            FileKind::UsageReport,
            file.file_hash(),
            &u.activation_id,
            license,
            u.counters.clone(),
            u.journal.clone(),
            false,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&u.counters)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_device_file(
        &self,
        kind: FileKind,
        file_hash: Bytes32,
        activation_id: &str,
        license_id: String,
        counters: format::Counters,
        journal: format::JournalHead,
        deactivate: bool,
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let hash = file_hash.to_string();
        if let Some(done) = self.replayed(&hash).await? {
            return Ok(done);
        }
        let now = self.now();
        // The receipt says the state after applying: a deactivation always ends
        // deactivated; a usage report leaves an active activation active.
        let state: String = sqlx::query_scalar("SELECT state FROM activations WHERE id = $1")
            .bind(activation_id)
            .fetch_one(self.db.pool())
            .await?;
        let state_after = if deactivate || state != "active" {
            "deactivated"
        } else {
            "active"
        };
        let receipt = Receipt {
            activation_id: activation_id.into(),
            file_hash,
            file_kind: kind.name().into(),
            state: state_after.into(),
            applied: now,
        };
        let signer = self.signer().await?;
        let armored = format::sign(&receipt, &signer)?.armored();
        let job = DeviceWrite {
            kind,
            file_hash,
            hash: hash.clone(),
            activation_id: activation_id.into(),
            license_id,
            counters,
            journal,
            deactivate,
            armored,
            now,
            actor: actor.clone(),
        };
        let outcome = self.write(Job::Device(job)).await?;
        self.finish(outcome, &hash, &signer).await
    }

    /// Support: a refresh file for one activation (new entitlements or expiry, optional
    /// clock-floor reset), serial + 1. The reason is required and audited.
    pub async fn refresh(
        &self,
        activation_id: &str,
        spec: &RefreshSpec,
        actor: &Actor,
    ) -> Result<String, PortalError> {
        require_reason(&spec.reason, "a refresh")?;
        if let Some(features) = &spec.features {
            check_features(features, "features")?;
        }
        let row = sqlx::query("SELECT * FROM activations WHERE id = $1")
            .bind(activation_id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| PortalError::UnknownActivation {
                activation: activation_id.into(),
            })?;
        let state: String = row.try_get("state")?;
        if state != "active" {
            return Err(PortalError::NotActive {
                activation: activation_id.into(),
                state,
            });
        }
        let keys = vendor::own_keys(&self.db).await?;
        // The license issued for the request, with the last refresh (if any) over it.
        // `license_file` holds the last refresh; the license itself is the response
        // recorded for the activation request.
        let original: String =
            sqlx::query_scalar("SELECT response FROM applied_files WHERE hash = $1")
                .bind(row.try_get::<String, _>("request_hash")?)
                .fetch_one(self.db.pool())
                .await?;
        let mut base = format::open::<License>(original.as_bytes(), &keys)?.into_payload();
        let last_refresh: String = row.try_get("license_file")?;
        let serial = if last_refresh.is_empty() {
            1
        } else {
            let refresh = format::open::<Refresh>(last_refresh.as_bytes(), &keys)?.into_payload();
            base.features = refresh.features;
            base.expires = refresh.expires;
            base.offline_expiry = refresh.offline_expiry;
            base.clock_tolerance = refresh.clock_tolerance;
            base.license_type = refresh.license_type;
            u64_to_i64(refresh.serial)
        };
        let lic: String = row.try_get("license")?;
        let lic_row = sqlx::query("SELECT * FROM licenses WHERE id = $1")
            .bind(&lic)
            .fetch_one(self.db.pool())
            .await?;
        if license_row(&lic_row)?.status != "active" {
            return Err(PortalError::LicenseRevoked { license: lic });
        }
        let now = self.now();
        let expires = match (spec.expires, spec.extend_days) {
            (Some(_), Some(_)) => {
                return Err(PortalError::Invalid {
                    field: "expires",
                    reason: "give a new expiry or a number of days to extend it by, not both"
                        .into(),
                });
            }
            (Some(e), None) => Some(given_time(e, now, "expires")?),
            (None, Some(days)) => {
                check_days(days, "extend_days")?;
                Some(add_days(
                    base.expires.unwrap_or(now).max(now),
                    days,
                    "the extended expiry",
                )?)
            }
            (None, None) => base.expires,
        };
        let clock_floor = spec
            .clock_floor
            .map(|f| given_time(f, DateTime::<Utc>::UNIX_EPOCH, "clock_floor"))
            .transpose()?;
        if clock_floor.is_some_and(|f| f > now) {
            return Err(PortalError::Invalid {
                field: "clock_floor",
                reason: "a clock floor in the future would stop the device at once; give a \
                         time up to now"
                    .into(),
            });
        }
        let new_serial = serial + 1;
        let refresh = Refresh {
            license_id: base.license_id.clone(),
            activation_id: activation_id.into(),
            product: base.product.clone(),
            device_key: base.device_key,
            serial: u64::try_from(new_serial).unwrap_or(2),
            features: spec.features.clone().unwrap_or(base.features),
            license_type: base.license_type,
            expires,
            offline_expiry: base.offline_expiry,
            clock_tolerance: base.clock_tolerance,
            clock_floor,
            reason: spec.reason.clone(),
            issued: now,
        };
        let signer = self.signer().await?;
        let file = format::sign(&refresh, &signer)?;
        let armored = file.armored();
        let mut tx = self.db.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE activations SET serial = $1, license_file = $2 \
             WHERE id = $3 AND serial = $4 AND state = 'active'",
        )
        .bind(new_serial)
        .bind(&armored)
        .bind(activation_id)
        .bind(serial)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(PortalError::Conflict {
                reason: format!(
                    "activation {activation_id} changed while the refresh was made (another \
                     refresh, or a deactivation)"
                ),
            });
        }
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "activation.refresh",
            Some(activation_id),
            Some(&spec.reason),
            Some(&file.hash().to_string()),
            Some(&format!("serial {new_serial}")),
        )
        .await?;
        tx.commit().await?;
        Ok(armored)
    }

    /// Admin: deactivate an activation on the server (e.g. a lost machine). The seat is
    /// freed; the device's license keeps working offline until it expires.
    pub async fn deactivate(
        &self,
        activation_id: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<Activation, PortalError> {
        require_reason(reason, "a server-side deactivation")?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query("SELECT license, state FROM activations WHERE id = $1")
            .bind(activation_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| PortalError::UnknownActivation {
                activation: activation_id.into(),
            })?;
        let state: String = row.try_get("state")?;
        if state != "active" {
            return Err(PortalError::NotActive {
                activation: activation_id.into(),
                state,
            });
        }
        let license: String = row.try_get("license")?;
        // Only the transaction that ends the activation frees its seat: on PostgreSQL a
        // deactivation file applied at the same moment waits for this row and then finds
        // it deactivated (and the other way round).
        let ended = sqlx::query(
            "UPDATE activations SET state = 'deactivated', deactivated = $1, closed_by = 'server' \
             WHERE id = $2 AND state = 'active'",
        )
        .bind(now.timestamp())
        .bind(activation_id)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() == 0 {
            return Err(PortalError::NotActive {
                activation: activation_id.into(),
                state: "deactivated".into(),
            });
        }
        sqlx::query(
            "UPDATE licenses SET seats_used = seats_used - 1 WHERE id = $1 AND seats_used > 0",
        )
        .bind(&license)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "activation.deactivate.server",
            Some(activation_id),
            Some(reason),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        self.activation(activation_id).await
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

// ----- writes ---------------------------------------------------------------------------

/// A unit of writing: everything was verified and signed before; this only touches the
/// database, inside a transaction (or a savepoint of a group commit).
enum Job {
    Activation(ActivationWrite),
    Reissue(ReissueWrite),
    Device(DeviceWrite),
}

type Reply = tokio::sync::oneshot::Sender<Result<WriteOutcome, PortalError>>;

enum WriteOutcome {
    Done(Applied),
    /// Refused, with evidence of the attempt written (committed, unlike an error, which
    /// undoes everything the job wrote).
    Refused(PortalError),
    /// The file was claimed by another application of it: read its response.
    AlreadyApplied,
    /// The device already holds an active seat of the license.
    Reissue {
        id: String,
        license: Box<License>,
        actor: Actor,
    },
}

struct ActivationWrite {
    hash: String,
    activation_id: String,
    license: License,
    armored: String,
    lic_id: String,
    seats: i64,
    churn: Option<(i64, i64)>,
    device_hex: String,
    device_kid: String,
    fingerprint: String,
    now: DateTime<Utc>,
    actor: Actor,
}

struct ReissueWrite {
    hash: String,
    license: License,
    armored: String,
    now: DateTime<Utc>,
    actor: Actor,
}

struct DeviceWrite {
    kind: FileKind,
    /// The file's hash, as the journal names it and as text (the database's form).
    file_hash: Bytes32,
    hash: String,
    activation_id: String,
    license_id: String,
    counters: format::Counters,
    journal: format::JournalHead,
    deactivate: bool,
    armored: String,
    now: DateTime<Utc>,
    actor: Actor,
}

fn first_int(rows: &[Vec<Val>]) -> Option<i64> {
    rows.first().and_then(|r| r.first()).and_then(Val::int)
}

fn first_text(rows: &[Vec<Val>]) -> Option<String> {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.text().map(String::from))
}

/// Whether the file with `hash` was applied already (inside a write: committed before).
async fn applied_before<C: Sql>(c: &mut C, hash: &str) -> Result<bool, PortalError> {
    let seen = c
        .rows(
            "SELECT hash FROM applied_files WHERE hash = $1",
            vec![hash.into()],
        )
        .await?;
    Ok(!seen.is_empty())
}

/// Insert the applied-file row that claims `hash`; false if another application has it.
async fn claim<C: Sql>(
    c: &mut C,
    hash: &str,
    kind: FileKind,
    activation: &str,
    response: &str,
    now: i64,
) -> Result<bool, PortalError> {
    let claimed = c
        .exec(
            "INSERT INTO applied_files (hash, kind, activation, response, applied) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (hash) DO NOTHING",
            vec![hash.into(), kind.name().into(), activation.into(), response.into(), now.into()],
        )
        .await?;
    Ok(claimed == 1)
}

/// `FOR UPDATE` where transactions run at once and must lock the rows they will change
/// (PostgreSQL); nothing on SQLite, which writes one transaction at a time.
fn for_update(c: &impl Sql) -> &'static str {
    if c.row_locks() { " FOR UPDATE" } else { "" }
}

async fn run_job<C: Sql>(c: &mut C, job: Job) -> Result<WriteOutcome, PortalError> {
    match job {
        Job::Activation(j) => write_activation(c, j).await,
        Job::Reissue(j) => write_reissue(c, j).await,
        Job::Device(j) => write_device_file(c, j).await,
    }
}

async fn write_activation<C: Sql>(
    c: &mut C,
    j: ActivationWrite,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    // The license's status, read here so that a revocation takes effect at once. (On
    // PostgreSQL the row stays locked to the end: activations of one license, one at a
    // time, so the check for the device's seat below and the seat taken after it see
    // each other's effects.)
    let lock = for_update(c);
    let status = first_text(
        &c.rows(
            &format!("SELECT status FROM licenses WHERE id = $1{lock}"),
            vec![(&j.lic_id).into()],
        )
        .await?,
    );
    let revoked = || PortalError::LicenseRevoked {
        license: j.lic_id.clone(),
    };
    let existing = c
        .rows(
            "SELECT id FROM activations WHERE license = $1 AND device_key = $2 AND state = 'active'",
            vec![(&j.lic_id).into(), (&j.device_hex).into()],
        )
        .await?;
    if let Some(id) = first_text(&existing) {
        return if applied_before(c, &j.hash).await? {
            // This very request, applied before (even if the license was revoked since).
            Ok(WriteOutcome::AlreadyApplied)
        } else if status.as_deref() != Some("active") {
            Err(revoked())
        } else {
            Ok(WriteOutcome::Reissue {
                id,
                license: Box::new(j.license),
                actor: j.actor,
            })
        };
    }
    // Claim the request first: a concurrent application of the same request finds it
    // claimed and returns the winner's license.
    if !claim(
        c,
        &j.hash,
        FileKind::ActivationRequest,
        &j.activation_id,
        &j.armored,
        now,
    )
    .await?
    {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    if status.as_deref() != Some("active") {
        // (The claim is undone with the rest of this job.)
        return Err(revoked());
    }
    // Churn control: refuse the next activation after too many deactivations.
    if let Some((max, days)) = j.churn {
        let since = add_days(j.now, -days, "the churn period")?.timestamp();
        let recent = c
            .rows(
                "SELECT deactivated FROM activations WHERE license = $1 AND deactivated IS NOT NULL \
                 AND deactivated >= $2 ORDER BY deactivated",
                vec![(&j.lic_id).into(), since.into()],
            )
            .await?;
        let count = i64::try_from(recent.len()).unwrap_or(i64::MAX);
        if count >= max {
            let oldest = first_int(&recent).unwrap_or(since);
            let from = add_days(time(oldest), days, "the churn period")?;
            return Err(PortalError::TooManyDeactivations {
                license: j.lic_id,
                count,
                days,
                from: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
    }
    let seat = c
        .exec(
            "UPDATE licenses SET seats_used = seats_used + 1 WHERE id = $1 AND seats_used < seats",
            vec![(&j.lic_id).into()],
        )
        .await?;
    if seat == 0 {
        return Err(PortalError::NoSeatLeft {
            license: j.lic_id,
            seats: j.seats,
        });
    }
    c.exec(
        "INSERT INTO activations (id, license, product, device_key, device_kid, fingerprint, request_hash, \
         state, serial, license_file, journal_seq, journal_head, offline_expiry, last_accessed, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, '', 0, $7, NULL, $8, $8)",
        vec![
            (&j.activation_id).into(),
            (&j.lic_id).into(),
            (&j.license.product).into(),
            (&j.device_hex).into(),
            (&j.device_kid).into(),
            (&j.fingerprint).into(),
            (&j.hash).into(),
            now.into(),
        ],
    )
    .await?;
    audit(
        c,
        j.now.timestamp_millis(),
        &j.actor,
        "activation.create",
        Some(&j.activation_id),
        None,
        Some(&j.hash),
        Some(&format!("license {}", j.lic_id)),
    )
    .await?;
    Ok(WriteOutcome::Done(Applied {
        kind: FileKind::ActivationRequest.name().into(),
        response: j.armored,
        response_kind: FileKind::License.name().into(),
        activation: Some(j.activation_id),
        replay: false,
        file_hash: j.hash,
        flags: Vec::new(),
        note: String::new(),
    }))
}

async fn write_reissue<C: Sql>(c: &mut C, j: ReissueWrite) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let id = j.license.activation_id.clone();
    if !claim(
        c,
        &j.hash,
        FileKind::ActivationRequest,
        &id,
        &j.armored,
        now,
    )
    .await?
    {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    // The license starts the device's counters from what was reported: no usage may have
    // arrived since they were read (or the device would count it again).
    let lock = for_update(c);
    let state = first_text(
        &c.rows(
            &format!("SELECT state FROM activations WHERE id = $1{lock}"),
            vec![(&id).into()],
        )
        .await?,
    );
    if state.as_deref() != Some("active") {
        // The seat was freed since it was found: the request must take a seat of its own.
        // An error, so that the claim above is undone with the rest of this job.
        return Err(PortalError::Conflict {
            reason: "the device's seat was freed while its request was applied; upload the \
                     request again to take a seat"
                .into(),
        });
    }
    let reported: format::Counters = c
        .rows(
            "SELECT feature, reported FROM usage_reported WHERE activation = $1 AND reported > 0",
            vec![(&id).into()],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let feature = r.first()?.text()?.to_string();
            let n = u64::try_from(r.get(1)?.int()?).ok()?;
            Some((feature, n))
        })
        .collect();
    if reported != j.license.counters {
        return Err(PortalError::Conflict {
            reason: "a usage report for the device's seat arrived while its request was \
                     applied; upload the request again"
                .into(),
        });
    }
    c.exec(
        "UPDATE activations SET request_hash = $1, journal_seq = 0, journal_head = $1, \
         journal_known = '[]', fingerprint = $2, last_accessed = $3, \
         reactivations = reactivations + 1 WHERE id = $4",
        vec![
            (&j.hash).into(),
            json(&j.license.fingerprint).into(),
            now.into(),
            (&id).into(),
        ],
    )
    .await?;
    let detail = format!(
        "reactivated: the device made a new request for the seat it holds (a store reset, \
         lost or restored); its counters start from the {} reported",
        if reported.is_empty() {
            "nothing".to_string()
        } else {
            json(&reported)
        }
    );
    raise_flag(c, &id, "reactivation", &j.hash, now, &detail).await?;
    audit(
        c,
        j.now.timestamp_millis(),
        &j.actor,
        "activation.reactivate",
        Some(&id),
        None,
        Some(&j.hash),
        Some(&detail),
    )
    .await?;
    Ok(WriteOutcome::Done(Applied {
        kind: FileKind::ActivationRequest.name().into(),
        response: j.armored,
        response_kind: FileKind::License.name().into(),
        activation: Some(id),
        replay: false,
        file_hash: j.hash,
        flags: vec![detail],
        note: String::new(),
    }))
}

/// Record evidence on an activation (once per kind and file) and show it as the
/// activation's latest flag.
async fn raise_flag<C: Sql>(
    c: &mut C,
    activation: &str,
    kind: &str,
    file_hash: &str,
    at: i64,
    detail: &str,
) -> Result<(), PortalError> {
    c.exec(
        "INSERT INTO activation_flags (activation, kind, file_hash, at, detail) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (activation, kind, file_hash) DO NOTHING",
        vec![
            activation.into(),
            kind.into(),
            file_hash.into(),
            at.into(),
            detail.into(),
        ],
    )
    .await?;
    c.exec(
        "UPDATE activations SET fork = $1 WHERE id = $2",
        vec![detail.into(), activation.into()],
    )
    .await?;
    Ok(())
}

/// The activation a device file is about, as the write reads it (locked on PostgreSQL).
struct DeviceRow {
    state: String,
    closed_by: Option<String>,
    head_seq: u64,
    head: Bytes32,
    known: Vec<Bytes32>,
}

async fn device_row<C: Sql>(c: &mut C, activation: &str) -> Result<DeviceRow, PortalError> {
    let lock = for_update(c);
    let rows = c
        .rows(
            &format!(
                "SELECT state, closed_by, journal_seq, journal_head, journal_known \
                 FROM activations WHERE id = $1{lock}"
            ),
            vec![activation.into()],
        )
        .await?;
    let row = rows.first().ok_or_else(|| PortalError::UnknownActivation {
        activation: activation.into(),
    })?;
    let text = |i: usize| {
        row.get(i)
            .and_then(Val::text)
            .unwrap_or_default()
            .to_string()
    };
    let known: Vec<String> = serde_json::from_str(&text(4)).unwrap_or_default();
    Ok(DeviceRow {
        state: text(0),
        closed_by: row.get(1).and_then(Val::text).map(String::from),
        head_seq: row
            .get(2)
            .and_then(Val::int)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        head: parse_hash(&text(3)).unwrap_or(Bytes32([0; 32])),
        known: known.iter().filter_map(|h| parse_hash(h)).collect(),
    })
}

fn parse_hash(hex_text: &str) -> Option<Bytes32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(Bytes32(out))
}

/// Counters by feature from `sql` selecting (feature, value) with `$1` bound to `key`.
async fn counters_of<C: Sql>(
    c: &mut C,
    sql: &str,
    key: &str,
) -> Result<BTreeMap<String, u64>, PortalError> {
    Ok(c.rows(sql, vec![key.into()])
        .await?
        .iter()
        .filter_map(|r| {
            let feature = r.first()?.text()?.to_string();
            let n = u64::try_from(r.get(1)?.int()?).ok()?;
            Some((feature, n))
        })
        .collect())
}

async fn write_device_file<C: Sql>(c: &mut C, j: DeviceWrite) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let hash = j.file_hash;
    // Read the activation inside the transaction: another file may have changed it.
    // (On PostgreSQL, locked until the end: files of one activation, and a server-side
    // deactivation, are applied one at a time.)
    let row = device_row(c, &j.activation_id).await?;
    // With the activation locked, the same file applied at the same moment is seen here
    // (on PostgreSQL the other transaction has committed or not started).
    if applied_before(c, &j.hash).await? {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    if row.state != "active" && row.closed_by.as_deref() == Some("device") {
        // The device's own deactivation closed the account: its final counters are
        // counted and nothing the device signs later is applied.
        return match decide::after_close(row.head_seq, &row.known, j.journal.seq, &hash, j.kind) {
            decide::AfterClose::Superseded => Ok(WriteOutcome::Refused(PortalError::Superseded {
                kind: j.kind.to_string(),
                activation: j.activation_id,
            })),
            decide::AfterClose::RestoredStore(reason) => {
                // Evidence, committed though the file is refused.
                raise_flag(
                    c,
                    &j.activation_id,
                    "after-deactivation",
                    &j.hash,
                    now,
                    &reason,
                )
                .await?;
                audit(
                    c,
                    j.now.timestamp_millis(),
                    &j.actor,
                    "activation.closed-file-refused",
                    Some(&j.activation_id),
                    None,
                    Some(&j.hash),
                    Some(&format!("{reason}; counters {}", json(&j.counters))),
                )
                .await?;
                Ok(WriteOutcome::Refused(PortalError::ActivationClosed {
                    activation: j.activation_id,
                    reason,
                }))
            }
        };
    }
    if !claim(c, &j.hash, j.kind, &j.activation_id, &j.armored, now).await? {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    let mut flags: Vec<(&str, String)> = Vec::new();
    let link = decide::journal_link(
        row.head_seq,
        &row.head,
        &row.known,
        &j.journal,
        &hash,
        j.kind,
    );
    let late = link == decide::Link::Late;
    match link {
        decide::Link::Continues | decide::Link::Late => {}
        decide::Link::Fork(reason) => flags.push(("fork", reason)),
        decide::Link::Gap { skipped } => flags.push((
            "gap",
            format!(
                "a {} skips {skipped} files since the last one seen, more than its trail \
                 reaches: whether it continues the device's journal cannot be told",
                j.kind
            ),
        )),
    }
    // Consumption: what is new since the last report, feature by feature, within range.
    let reported = counters_of(
        c,
        "SELECT feature, reported FROM usage_reported WHERE activation = $1",
        &j.activation_id,
    )
    .await?;
    let totals = counters_of(
        c,
        "SELECT feature, total FROM usage_totals WHERE license = $1",
        &j.license_id,
    )
    .await?;
    match decide::usage(&j.counters, &reported, &totals) {
        Ok(usage) => {
            // (A late file's counters are older than the head's: lower is expected.)
            if !usage.went_back.is_empty() && !late {
                flags.push((
                    "counters-went-back",
                    format!(
                        "cumulative counters went back ({}): a restored backup or a cloned \
                         machine",
                        usage.went_back.join(", ")
                    ),
                ));
            }
            for (feature, cumulative, delta) in &usage.grows {
                add_usage(c, &j, feature, *cumulative, *delta).await?;
            }
        }
        Err(out) if j.deactivate => {
            // The seat is freed whatever the counters say; they are not counted.
            flags.push((
                "counters-refused",
                format!(
                    "the deactivation's counters were not counted: the total of '{}' would \
                     pass the largest counter (2^53 - 1); the seat was freed",
                    out.feature
                ),
            ));
        }
        Err(out) => {
            return Err(PortalError::UsageOutOfRange {
                kind: j.kind.to_string(),
                activation: j.activation_id,
                feature: out.feature,
            });
        }
    }
    let deactivating = j.deactivate && row.state == "active";
    let advances = j.journal.seq > row.head_seq;
    let known = if advances {
        json(
            &decide::known_history(&j.journal)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
    } else {
        String::new()
    };
    c.exec(
        "UPDATE activations SET last_accessed = $1, \
         journal_seq = CASE WHEN $2 = 1 THEN $3 ELSE journal_seq END, \
         journal_head = CASE WHEN $2 = 1 THEN $4 ELSE journal_head END, \
         journal_known = CASE WHEN $2 = 1 THEN $5 ELSE journal_known END, \
         state = CASE WHEN $6 = 1 THEN 'deactivated' ELSE state END, \
         deactivated = CASE WHEN $6 = 1 THEN $1 ELSE deactivated END, \
         closed_by = CASE WHEN $7 = 1 THEN 'device' ELSE closed_by END \
         WHERE id = $8",
        vec![
            now.into(),
            i64::from(advances).into(),
            u64_to_i64(j.journal.seq).into(),
            (&j.hash).into(),
            known.into(),
            i64::from(deactivating).into(),
            // A deactivation file closes the account, also one that follows a server-side
            // deactivation (the device's final word).
            i64::from(j.deactivate).into(),
            (&j.activation_id).into(),
        ],
    )
    .await?;
    for (kind, reason) in &flags {
        raise_flag(c, &j.activation_id, kind, &j.hash, now, reason).await?;
        audit(
            c,
            j.now.timestamp_millis(),
            &j.actor,
            match *kind {
                "gap" => "journal.gap",
                "counters-went-back" => "usage.went-back",
                "counters-refused" => "usage.refused",
                _ => "journal.fork",
            },
            Some(&j.activation_id),
            None,
            Some(&j.hash),
            Some(reason),
        )
        .await?;
    }
    if deactivating {
        c.exec(
            "UPDATE licenses SET seats_used = seats_used - 1 WHERE id = $1 AND seats_used > 0",
            vec![(&j.license_id).into()],
        )
        .await?;
    }
    let action = if j.deactivate {
        "activation.deactivate"
    } else {
        "usage.report"
    };
    audit(
        c,
        j.now.timestamp_millis(),
        &j.actor,
        action,
        Some(&j.activation_id),
        None,
        Some(&j.hash),
        Some(&json(&j.counters)),
    )
    .await?;
    Ok(WriteOutcome::Done(Applied {
        kind: j.kind.name().into(),
        response: j.armored,
        response_kind: FileKind::Receipt.name().into(),
        activation: Some(j.activation_id),
        replay: false,
        file_hash: j.hash,
        flags: flags.into_iter().map(|(_, reason)| reason).collect(),
        note: String::new(),
    }))
}

/// Count `delta` more units of `feature`: the activation's reported counter becomes
/// `cumulative`, the license's total grows by `delta` — only while it stays within the
/// counters' range (checked again here, atomically, against totals that other
/// activations' files may have raised since they were read).
async fn add_usage<C: Sql>(
    c: &mut C,
    j: &DeviceWrite,
    feature: &str,
    cumulative: u64,
    delta: u64,
) -> Result<(), PortalError> {
    c.exec(
        "INSERT INTO usage_reported (reported, activation, feature) VALUES ($1, $2, $3) \
         ON CONFLICT (activation, feature) DO UPDATE SET reported = excluded.reported",
        vec![
            u64_to_i64(cumulative).into(),
            (&j.activation_id).into(),
            feature.into(),
        ],
    )
    .await?;
    let counted = c
        .exec(
            "INSERT INTO usage_totals (license, feature, total) VALUES ($1, $2, $3) \
             ON CONFLICT (license, feature) DO UPDATE SET total = usage_totals.total + excluded.total \
             WHERE usage_totals.total <= $4 - excluded.total",
            vec![
                (&j.license_id).into(),
                feature.into(),
                u64_to_i64(delta).into(),
                u64_to_i64(format::MAX_COUNTER).into(),
            ],
        )
        .await?;
    if counted == 0 {
        return Err(PortalError::Conflict {
            reason: format!(
                "the total of '{feature}' changed while the file was applied and would now pass \
                 the largest counter; upload the file again"
            ),
        });
    }
    Ok(())
}

/// Most jobs one SQLite commit takes.
const MAX_BATCH: usize = 128;

/// The SQLite group-commit writer: a thread with its own SQLite connection takes every
/// job that is waiting (up to MAX_BATCH), runs each in a savepoint of one IMMEDIATE
/// transaction, and commits once — one durable fsync for the batch instead of one per
/// job. A job that fails is rolled back to its savepoint without touching the others; a
/// failed commit fails them all.
fn spawn_writer(
    path: &std::path::Path,
) -> Result<tokio::sync::mpsc::Sender<(Job, Reply)>, PortalError> {
    let conn = Db::open_sqlite(path).map_err(|e| PortalError::Storage(e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Job, Reply)>(4096);
    std::thread::Builder::new()
        .name("lic-sqlite-writer".into())
        .spawn(move || {
            let mut lite = Lite(conn);
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                write_batch(&mut lite, batch);
            }
        })
        .map_err(|e| PortalError::Storage(format!("cannot start the database writer: {e}")))?;
    Ok(tx)
}

fn write_batch(lite: &mut Lite, batch: Vec<(Job, Reply)>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut result = lite.batch("BEGIN IMMEDIATE");
    let mut jobs = batch.into_iter();
    if result.is_ok() {
        for (job, reply) in jobs.by_ref() {
            let outcome = lite
                .batch("SAVEPOINT job")
                .and_then(|()| {
                    run_now(run_job(lite, job))
                        .unwrap_or_else(|| Err(PortalError::Storage("a write job waited".into())))
                })
                .and_then(|outcome| lite.batch("RELEASE job").map(|()| outcome));
            if outcome.is_err() {
                // Undo this job only; the transaction goes on.
                if let Err(e) = lite.batch("ROLLBACK TO job; RELEASE job") {
                    result = Err(e);
                    replies.push((reply, outcome));
                    break;
                }
            }
            replies.push((reply, outcome));
        }
    }
    if result.is_ok() {
        result = lite.batch("COMMIT");
    }
    match result {
        Ok(()) => {
            for (reply, outcome) in replies {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let _ = lite.batch("ROLLBACK");
            let message = e.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(PortalError::Storage(message.clone())));
            }
            for (_, reply) in jobs {
                let _ = reply.send(Err(PortalError::Storage(message.clone())));
            }
        }
    }
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
