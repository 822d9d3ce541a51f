//! The client API for applications: open the device store with the vendor keys you
//! trust, then ask for the license status, check features and record consumption.
//!
//! ```
//! use lic_core::client::Client;
//! use lic_core::keys::Keyring;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! // In an application: the vendor's public key is compiled in or shipped beside it.
//! let trusted = Keyring::new();
//! let client = Client::builder("photo-pro").store(dir.path()).trust(trusted).open().unwrap();
//! let status = client.status().unwrap();
//! if !status.is_valid() {
//!     for violation in &status.violations {
//!         eprintln!("not licensed: {violation} ({})", violation.hint());
//!     }
//! }
//! # assert_eq!(status.violations[0].code(), "not-activated");
//! ```

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rand_core::RngCore as _;

use crate::check::{Check, Device, Evaluation, wrong_device};
use crate::clock::{Clock, SystemClock};
use crate::fingerprint::{self, FingerprintKey, FingerprintSource, MatchReport, SystemSource};
use crate::format::{
    self, ActivationRequest, Bytes32, Credential, Deactivation, Fingerprint, FormatError,
    JournalHead, License, MAX_COUNTER, MAX_VARIABLES, Nonce, Refresh, SignedFile, UsageReport,
    VariableRefused, Variables,
};
use crate::keys::{Keyring, PublicKey, SecretKey};
use crate::pool::{self, Pool, PoolError};
use crate::rules::{self, ConsumeRefused, Consumed, Entitlements, SerialDecision, Violation};
use crate::store::{Installation, Pending, State, Store, StoreError, StoreLock, Tombstone};

mod leases;
use crate::trust::{self, KeySetError};
pub use leases::{LeaseInfo, SignedLeaseRequest, new_instance};

/// How far the clock must have moved past the stored high-water mark before a read-only
/// call (status, check) writes the new mark. Writes that happen anyway always record it.
pub const MARK_GRANULARITY_SECS: i64 = 60;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A lease or checkout license from an on-premise floating server that its pool
    /// license does not make trusted: not a pool for this product, expired, replaced by
    /// a higher serial (see [`crate::pool`]).
    #[error("the floating server is not trusted: {0}")]
    Pool(PoolError),
    /// The store cannot be used: unreadable, written by a newer lic, a damaged device key.
    /// (A store that fails its integrity check is `Violation(Violation::StoreTampered)`,
    /// in every call.)
    #[error(transparent)]
    Store(StoreError),
    /// The license cannot be used now.
    #[error("{0}")]
    Violation(Violation),
    #[error("feature '{feature}' is not licensed for product '{product}'")]
    FeatureNotLicensed { product: String, feature: String },
    #[error(
        "feature '{feature}' has used {used} of its limit of {limit}; {requested} more would pass it"
    )]
    LimitExceeded {
        feature: String,
        limit: u64,
        used: u64,
        requested: u64,
    },
    /// Overage is allowed, but not this far beyond the limit.
    #[error(
        "feature '{feature}' has used {used} of its limit of {limit} and may go at most \
         {max_overage} beyond it; {requested} more would pass that"
    )]
    OverageCapExceeded {
        feature: String,
        limit: u64,
        max_overage: u64,
        used: u64,
        requested: u64,
    },
    /// The counter would pass the largest counter lic carries ([`MAX_COUNTER`]).
    #[error(
        "feature '{feature}' has used {used}; {requested} more would pass the largest counter lic keeps ({max})",
        max = MAX_COUNTER
    )]
    CounterOutOfRange {
        feature: String,
        used: u64,
        requested: u64,
    },
    /// A key set was refused.
    #[error(transparent)]
    KeySet(KeySetError),
    #[error("the file is for product '{found}', not for '{expected}'")]
    WrongProduct { expected: String, found: String },
    #[error("the file was issued to another device (device key {found}; this device is {this})")]
    NotThisDevice { this: String, found: String },
    #[error(
        "activation {activation_id} was deactivated on this device; its {file} cannot be installed here again"
    )]
    AlreadyDeactivated {
        activation_id: String,
        /// The kind of file offered (license or refresh).
        file: format::FileKind,
    },
    /// The file was issued later than this device's clock says, by more than the
    /// tolerance: installing it would make the clock count as turned back at once.
    #[error(
        "this device's clock says {}, but the {file} was issued at {} (more than the {tolerance_secs} s the license allows)",
        when(now),
        when(issued)
    )]
    ClockBehind {
        file: format::FileKind,
        /// This device's clock.
        now: DateTime<Utc>,
        /// The file's issue time (for a refresh with a clock-floor reset, the floor: the
        /// time the clock mark would be set to).
        issued: DateTime<Utc>,
        /// The clock tolerance of the file.
        tolerance_secs: u64,
    },
    #[error(
        "no activation request for product '{product}' is waiting for a license on this device"
    )]
    NoPendingRequest { product: String },
    #[error(
        "the license answers another activation request than the one this device is waiting for (product '{product}')"
    )]
    RequestMismatch { product: String },
    #[error("product '{product}' is already activated on this device (activation {activation_id})")]
    AlreadyActivated {
        product: String,
        activation_id: String,
    },
    #[error(
        "the refresh has serial {offered}, older than the installed serial {installed}: rolling back is not allowed"
    )]
    Rollback { installed: u64, offered: u64 },
    #[error("a different refresh with serial {serial} is already installed")]
    SerialConflict { serial: u64 },
    #[error("the refresh is for activation {found}, but the installed activation is {installed}")]
    RefreshMismatch { installed: String, found: String },
    #[error(
        "product '{product}' has an installed license (activation {activation_id}): forgetting it does not give its seat back"
    )]
    ConfirmForget {
        product: String,
        activation_id: String,
    },
    /// A device variable breaks the limits (docs/format.md §5.2); nothing was changed.
    #[error("product '{product}': {refused}")]
    Variable {
        product: String,
        refused: VariableRefused,
    },
    /// A floating lease or checkout needs the credential (license key or user id) it is
    /// taken with, and none was given or remembered for the product.
    #[error("no license key or user id is known for floating product '{product}'")]
    CredentialNeeded { product: String },
    /// The lease does not answer the request it was asked with (another instance,
    /// feature or request): a server's mistake or a replayed lease.
    #[error("the lease does not answer this device's request: {what}")]
    LeaseMismatch { what: String },
    /// A check-in returns a checked-out seat; the product's installed license is not a
    /// checkout (it has no Offline Expiry Date).
    #[error(
        "product '{product}' is not checked out on this device: there is no checkout to check in"
    )]
    NotCheckedOut { product: String },
    /// An activation request waits for its license: a checkout would replace it.
    #[error(
        "an activation request for product '{product}' is waiting for its license on this device"
    )]
    RequestPending { product: String },
    /// A floating feature may be used only while this device holds a lease for it.
    #[error("feature '{feature}' is floating: this device holds no live lease for it")]
    FeatureNotLeased { feature: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// A stable code for scripts and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Format(e) => e.code(),
            ClientError::Pool(e) => e.code(),
            ClientError::Store(e) => e.code(),
            ClientError::Violation(v) => v.code(),
            ClientError::FeatureNotLicensed { .. } => "feature-not-licensed",
            ClientError::LimitExceeded { .. } => "limit-exceeded",
            ClientError::OverageCapExceeded { .. } => "overage-cap-exceeded",
            ClientError::CounterOutOfRange { .. } => "counter-out-of-range",
            ClientError::KeySet(e) => e.code(),
            ClientError::WrongProduct { .. } => "wrong-product",
            ClientError::NotThisDevice { .. } => "wrong-device",
            ClientError::AlreadyDeactivated { .. } => "already-deactivated",
            ClientError::ClockBehind { .. } => "clock-behind",
            ClientError::NoPendingRequest { .. } => "no-pending-request",
            ClientError::RequestMismatch { .. } => "request-mismatch",
            ClientError::AlreadyActivated { .. } => "already-activated",
            ClientError::Rollback { .. } => "rollback",
            ClientError::SerialConflict { .. } => "serial-conflict",
            ClientError::RefreshMismatch { .. } => "refresh-mismatch",
            ClientError::ConfirmForget { .. } => "confirm-forget",
            ClientError::Variable { refused, .. } => refused.code(),
            ClientError::CredentialNeeded { .. } => "credential-needed",
            ClientError::LeaseMismatch { .. } => "lease-mismatch",
            ClientError::NotCheckedOut { .. } => "not-checked-out",
            ClientError::RequestPending { .. } => "request-pending",
            ClientError::FeatureNotLeased { .. } => "feature-not-leased",
            ClientError::Io { .. } => "io",
        }
    }

    /// What the user should do next.
    pub fn hint(&self) -> &'static str {
        match self {
            ClientError::Format(e) => e.hint(),
            ClientError::Pool(e) => e.hint(),
            ClientError::Store(e) => e.hint(),
            ClientError::Violation(v) => v.hint(),
            ClientError::FeatureNotLicensed { .. } => {
                "ask your vendor for a license or refresh that includes this feature"
            }
            ClientError::LimitExceeded { .. } => {
                "ask your vendor for a refresh with a higher limit (send a usage report first: \
                 `lic usage-report --out FILE`)"
            }
            ClientError::OverageCapExceeded { .. } => {
                "ask your vendor for a refresh with a higher limit or overage cap (send a \
                 usage report first: `lic usage-report --out FILE`)"
            }
            ClientError::CounterOutOfRange { .. } => {
                "record a smaller amount; counters end at 2^53 - 1 (9007199254740991) units"
            }
            ClientError::KeySet(e) => e.hint(),
            ClientError::WrongProduct { .. } => {
                "install the file with the application it belongs to, or pass the right --product"
            }
            ClientError::NotThisDevice { .. } | ClientError::RefreshMismatch { .. } => {
                "install the file on the machine that made the activation request; each file is \
                 bound to one device"
            }
            ClientError::AlreadyDeactivated { .. } => {
                "to use the product here again, make a new activation request: \
                 `lic offline-activate --key KEY --product PRODUCT`"
            }
            ClientError::ClockBehind { .. } => {
                "set this computer's clock to the correct date and time (with its time zone), \
                 then install the file again"
            }
            ClientError::NoPendingRequest { .. } | ClientError::RequestMismatch { .. } => {
                "make an activation request on this device (`lic offline-activate`), send it to \
                 your vendor, and install the license that answers it"
            }
            ClientError::AlreadyActivated { .. } => {
                "to change the license, install a refresh file; to move it, run \
                 `lic offline-deactivate` first"
            }
            ClientError::Rollback { .. } | ClientError::SerialConflict { .. } => {
                "install the newest refresh file your vendor sent; older ones are replaced by it"
            }
            ClientError::ConfirmForget { .. } => {
                "to move the license to another machine run `lic offline-deactivate` instead \
                 (it frees the seat); to forget it anyway, confirm with --yes: the license can \
                 never be installed here again and the seat stays taken until your vendor \
                 deactivates it"
            }
            ClientError::Variable { refused, .. } => refused.hint(),
            ClientError::CredentialNeeded { .. } => {
                "give the license key (--key KEY) or user id (--user USER) once; it is \
                 remembered for the next leases"
            }
            ClientError::LeaseMismatch { .. } => {
                "take the seat again (`lic lease`); if it happens again, tell your license \
                 administrator: the server answered with a lease for another request"
            }
            ClientError::NotCheckedOut { .. } => {
                "only a seat checked out with `lic checkout` is checked in; to give up a \
                 node-locked activation use `lic deactivate` or `lic offline-deactivate`"
            }
            ClientError::RequestPending { .. } => {
                "install the license that answers the request (`lic install FILE`), or drop \
                 the request with `lic store forget PRODUCT`, then check out"
            }
            ClientError::FeatureNotLeased { .. } => {
                "take a lease for the feature (`lic lease --feature NAME`), or wait until one \
                 of the feature's concurrent uses is free"
            }
            ClientError::Io { .. } => "check the path and your permissions",
        }
    }
}

/// A store that fails its integrity check is a violation the application must react to,
/// the same in every call (`status` lists it, everything else returns it).
impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Tampered { reason } => {
                ClientError::Violation(Violation::StoreTampered { reason })
            }
            e => ClientError::Store(e),
        }
    }
}

fn when(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Installed {
    /// A license was installed.
    License { activation_id: String },
    /// A refresh was applied.
    Refresh { from_serial: u64, to_serial: u64 },
    /// This very license is already installed: nothing changed.
    LicenseAlreadyInstalled { activation_id: String },
    /// This very refresh is already applied: nothing changed.
    RefreshAlreadyApplied { serial: u64 },
    /// The installed license or refresh, signed again by another vendor key (after a key
    /// rotation or revocation): the same content, so nothing else changed.
    Resigned { file: format::FileKind },
    /// A key set was installed: the trusted vendor keys changed.
    KeySet { from_version: u64, to_version: u64 },
    /// This very key set is already installed: nothing changed.
    KeySetAlreadyInstalled { version: u64 },
}

/// What `forget` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forgotten {
    /// A pending activation request: nothing had been installed.
    Pending,
    /// An installed license; its activation id may never be installed here again.
    Installed { activation_id: String },
}

/// One feature's entitlement and use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureStatus {
    pub name: String,
    pub limit: Option<u64>,
    pub overage_allowed: bool,
    /// With overage allowed: how far beyond the limit (None: without end).
    pub max_overage: Option<u64>,
    pub used: u64,
    /// Units beyond the limit.
    pub overage: u64,
    /// A floating feature: how many devices of the license may use it at once, each
    /// holding a lease for it (None: every device that holds the license may).
    pub floating: Option<u64>,
}

/// The license status of one product on this device.
#[derive(Debug, Clone)]
pub struct Status {
    pub product: String,
    pub now: DateTime<Utc>,
    /// The entitlements in force, if a license verifies.
    pub entitlements: Option<Entitlements>,
    pub features: Vec<FeatureStatus>,
    /// Empty when the license may be used.
    pub violations: Vec<Violation>,
    /// The clock high-water mark.
    pub last_seen: Option<DateTime<Utc>>,
    /// The fingerprint comparison, when a license is installed.
    pub fingerprint: Option<MatchReport>,
    pub device_kid: Option<String>,
    /// The floating lease the status comes from, when the product is used through a
    /// lease rather than an installed license.
    pub lease: Option<LeaseInfo>,
    /// Every lease this device keeps for the product that verifies (seat and floating
    /// features, one per application instance), live or lapsed.
    pub leases: Vec<LeaseInfo>,
}

impl Status {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }

    /// The application instances of this device that hold a live seat lease now.
    pub fn live_instances(&self) -> usize {
        self.leases
            .iter()
            .filter(|l| l.feature.is_none() && l.live(self.now))
            .count()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    product: String,
    store: Option<PathBuf>,
    keys: Keyring,
    clock: Box<dyn Clock>,
    source: Box<dyn FingerprintSource>,
}

impl ClientBuilder {
    /// The store directory (default: the per-user data directory, see [`Store::default_dir`]).
    pub fn store(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = Some(dir.into());
        self
    }

    /// The vendor keys to trust: the keys the application was built with (its trust
    /// anchors). Key sets the vendor sends later change them only through
    /// [`Client::install`], signed by a key trusted here.
    pub fn trust(mut self, keys: Keyring) -> Self {
        self.keys = keys;
        self
    }

    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn fingerprint_source(mut self, source: impl FingerprintSource + 'static) -> Self {
        self.source = Box::new(source);
        self
    }

    pub fn open(self) -> Result<Client, ClientError> {
        let dir = match self.store {
            Some(dir) => dir,
            None => Store::default_dir().ok_or_else(|| ClientError::Io {
                what: "no per-user data directory is known on this system".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?,
        };
        Ok(Client {
            product: self.product,
            store: Store::open(dir)?,
            keys: self.keys,
            clock: self.clock,
            source: self.source,
        })
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("product", &self.product)
            .field("store", &self.store)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The fields every file that ends an installation carries (a deactivation, a check-in).
pub(crate) struct Closing {
    pub(crate) activation_id: String,
    pub(crate) product: String,
    pub(crate) counters: format::Counters,
    pub(crate) journal: JournalHead,
    pub(crate) created: DateTime<Utc>,
    pub(crate) variables: Variables,
}

/// The device side of one product: status, checks, consumption, and the offline files.
pub struct Client {
    product: String,
    store: Store,
    keys: Keyring,
    clock: Box<dyn Clock>,
    source: Box<dyn FingerprintSource>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("product", &self.product)
            .field("store", &self.store.dir())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// A verified installation: the license, the refresh, and what is in force.
struct Current {
    license: format::Verified<License>,
    entitlements: Entitlements,
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn from_ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Client {
    /// A builder for the client of `product`.
    pub fn builder(product: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            product: product.into(),
            store: None,
            keys: Keyring::new(),
            clock: Box::new(SystemClock),
            source: Box::new(SystemSource::from_env()),
        }
    }

    /// Open the store at `dir` for `product`, trusting `keys`, with the system clock and
    /// the real machine's fingerprint.
    pub fn open(
        dir: impl Into<PathBuf>,
        keys: Keyring,
        product: impl Into<String>,
    ) -> Result<Client, ClientError> {
        Client::builder(product).store(dir).trust(keys).open()
    }

    pub fn product(&self) -> &str {
        &self.product
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This device's public key.
    pub fn device_key(&self) -> Result<PublicKey, ClientError> {
        Ok(self.store.device_key()?.public())
    }

    /// This device's fingerprint for the product (component hashes keyed by the device
    /// key: see [`fingerprint::hash_components`]).
    pub fn fingerprint(&self) -> Result<Fingerprint, ClientError> {
        Ok(self.fingerprint_of(&self.store.device_key()?))
    }

    fn fingerprint_of(&self, key: &SecretKey) -> Fingerprint {
        fingerprint::hash_components(
            &FingerprintKey::of(key),
            &self.product,
            &self.source.collect(),
        )
    }

    /// The vendor keys in force with this store's key sets: the application's own keys
    /// (its anchors), changed only by key sets they signed (see [`trust::effective`]).
    pub fn trusted_keys(&self) -> Result<Keyring, ClientError> {
        let key = self.store.device_key()?;
        Ok(self.keyring(&self.store.load(&key)?))
    }

    fn keyring(&self, state: &State) -> Keyring {
        trust::effective(&self.keys, &state.key_sets).keys
    }

    /// The time now, by the client's clock (the one given to the builder).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Verify the installation's files and lay the refresh over the license.
    fn current(&self, inst: &Installation, keys: &Keyring) -> Result<Current, ClientError> {
        let (license, _) = verify_chained::<License>(inst.license.clone(), keys)?;
        let refresh = match &inst.refresh {
            Some(bytes) => Some(format::verify::<Refresh>(bytes.clone(), keys)?),
            None => None,
        };
        let entitlements =
            rules::effective(license.payload(), refresh.as_ref().map(|r| r.payload()));
        Ok(Current {
            license,
            entitlements,
        })
    }

    /// Every rule that applies to the installation now: [`Check`], the code
    /// [`check::license`](crate::check::license) runs, with the installed refresh and the store's clock mark.
    /// A license or refresh that no longer verifies is [`Violation::InvalidLicense`].
    fn evaluate(
        &self,
        key: &SecretKey,
        state: &State,
        inst: &Installation,
        now: DateTime<Utc>,
    ) -> Result<Evaluation, Violation> {
        let keys = self.keyring(state);
        let device = Device::collect(key, &self.product, &*self.source);
        Check::new(&keys, &self.product, &device)
            .refresh(inst.refresh.as_deref())
            .last_seen(state.last_seen.map(from_ts))
            .evaluate(&inst.license, now)
            .map_err(|e| Violation::InvalidLicense {
                reason: e.to_string(),
            })
    }

    /// The license status now. Problems with the license are reported as violations;
    /// an error means the store could not be read at all.
    pub fn status(&self) -> Result<Status, ClientError> {
        let now = self.now();
        let mut status = Status {
            product: self.product.clone(),
            now,
            entitlements: None,
            features: Vec::new(),
            violations: Vec::new(),
            last_seen: None,
            fingerprint: None,
            device_kid: None,
            lease: None,
            leases: Vec::new(),
        };
        let key = match self.store.device_key() {
            Ok(key) => key,
            Err(StoreError::Tampered { reason }) => {
                status.violations.push(Violation::StoreTampered { reason });
                return Ok(status);
            }
            Err(e) => return Err(e.into()),
        };
        status.device_kid = Some(key.kid().to_string());
        let state = match self.store.load(&key) {
            Ok(state) => state,
            Err(StoreError::Tampered { reason }) => {
                status.violations.push(Violation::StoreTampered { reason });
                return Ok(status);
            }
            Err(e) => return Err(e.into()),
        };
        status.last_seen = state.last_seen.map(from_ts);
        status.leases = self.verified_leases(&state);
        let installed = state
            .installations
            .get(&self.product)
            .map(|inst| self.evaluate(&key, &state, inst, now));
        // A product used through a lease: the installed license (a checkout) in force,
        // else the seat lease — also when the checkout ended (or no longer verifies) and
        // the device took a seat online again meanwhile.
        let leased = match &installed {
            Some(Ok(e)) if e.violations.is_empty() => None,
            _ => self.evaluate_lease(&key, &state, &status.leases, now),
        };
        let (entitlements, counters) = match (installed, leased) {
            (_, Some(leased)) if leased.violations.is_empty() => {
                status.fingerprint = leased.fingerprint;
                status.lease = Some(leased.lease);
                (leased.entitlements, None)
            }
            (
                Some(Ok(Evaluation {
                    licensed,
                    violations,
                })),
                _,
            ) => {
                status.violations = violations;
                status.fingerprint = Some(licensed.fingerprint().clone());
                (
                    licensed.into_entitlements(),
                    state.installations.get(&self.product).map(|i| &i.counters),
                )
            }
            (Some(Err(v)), _) => {
                status.violations.push(v);
                return Ok(status);
            }
            (None, Some(leased)) => {
                status.violations = leased.violations;
                status.fingerprint = leased.fingerprint;
                status.lease = Some(leased.lease);
                (leased.entitlements, None)
            }
            (None, None) => {
                status.violations.push(Violation::NotActivated {
                    product: self.product.clone(),
                });
                return Ok(status);
            }
        };
        status.features = entitlements
            .features
            .iter()
            .map(|(name, f)| {
                let used = counters.and_then(|c| c.get(name)).copied().unwrap_or(0);
                FeatureStatus {
                    name: name.clone(),
                    limit: f.limit,
                    overage_allowed: f.overage,
                    max_overage: f.max_overage.filter(|_| f.overage),
                    used,
                    overage: f.limit.map_or(0, |l| used.saturating_sub(l)),
                    floating: f.floating,
                }
            })
            .collect();
        status.entitlements = Some(entitlements);
        // Raise the clock mark when time has moved on noticeably (not on every call: a
        // read-only check should not cost a durable write each time).
        let stale = state
            .last_seen
            .is_none_or(|mark| ts(now) > mark + MARK_GRANULARITY_SECS);
        if status.violations.is_empty() && stale {
            self.update(|state, _, _| {
                state.last_seen = Some(ts(rules::raise_mark(state.last_seen.map(from_ts), now)));
                Ok(())
            })?;
        }
        Ok(status)
    }

    /// Ok if the license may be used now (and, with a feature, if that feature is
    /// licensed and not used up).
    pub fn check(&self, feature: Option<&str>) -> Result<(), ClientError> {
        let status = self.status()?;
        if let Some(v) = status.violations.into_iter().next() {
            return Err(ClientError::Violation(v));
        }
        if let Some(name) = feature {
            let f = status
                .features
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| ClientError::FeatureNotLicensed {
                    product: self.product.clone(),
                    feature: name.to_string(),
                })?;
            if f.floating.is_some()
                && !status
                    .leases
                    .iter()
                    .any(|l| l.feature.as_deref() == Some(name) && l.live(status.now))
            {
                return Err(ClientError::FeatureNotLeased {
                    feature: name.to_string(),
                });
            }
            if let Some(limit) = f.limit.filter(|l| f.used >= *l && !f.overage_allowed) {
                return Err(ClientError::LimitExceeded {
                    feature: name.to_string(),
                    limit,
                    used: f.used,
                    requested: 1,
                });
            }
            if let (Some(limit), Some(cap)) = (f.limit, f.max_overage)
                && f.used >= limit.saturating_add(cap)
            {
                return Err(ClientError::OverageCapExceeded {
                    feature: name.to_string(),
                    limit,
                    max_overage: cap,
                    used: f.used,
                    requested: 1,
                });
            }
        }
        Ok(())
    }

    /// Record `amount` units of consumption of `feature`, atomically: concurrent
    /// processes never lose an increment.
    pub fn consume(&self, feature: &str, amount: u64) -> Result<Consumed, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let inst = state.installations.get(&self.product).ok_or_else(|| {
                ClientError::Violation(Violation::NotActivated {
                    product: self.product.clone(),
                })
            })?;
            let evaluation = self
                .evaluate(key, state, inst, now)
                .map_err(ClientError::Violation)?;
            if let Some(v) = evaluation.violations.into_iter().next() {
                return Err(ClientError::Violation(v));
            }
            let f = evaluation
                .licensed
                .entitlements()
                .features
                .get(feature)
                .ok_or_else(|| ClientError::FeatureNotLicensed {
                    product: self.product.clone(),
                    feature: feature.to_string(),
                })?;
            let used = inst.counters.get(feature).copied().unwrap_or(0);
            let consumed = rules::consume(f, used, amount).map_err(|e| match e {
                ConsumeRefused::Limit {
                    limit,
                    used,
                    requested,
                } => ClientError::LimitExceeded {
                    feature: feature.to_string(),
                    limit,
                    used,
                    requested,
                },
                ConsumeRefused::OverageCap {
                    limit,
                    max_overage,
                    used,
                    requested,
                } => ClientError::OverageCapExceeded {
                    feature: feature.to_string(),
                    limit,
                    max_overage,
                    used,
                    requested,
                },
                ConsumeRefused::OutOfRange { used, requested } => ClientError::CounterOutOfRange {
                    feature: feature.to_string(),
                    used,
                    requested,
                },
            })?;
            if let Some(inst) = state.installations.get_mut(&self.product) {
                inst.counters.insert(feature.to_string(), consumed.total);
            }
            state.last_seen = Some(ts(rules::raise_mark(state.last_seen.map(from_ts), now)));
            Ok(consumed)
        })
    }

    /// An on-premise floating server adds its clients' usage to its own counters: the
    /// counters of the client file `file` (a check-in) are added to the pool's, once —
    /// the same file again adds nothing (`false`). No limit is enforced: the use already
    /// happened on the client, under the client's own checks; the server's usage report
    /// and deactivation carry the total to the vendor. Counters saturate at
    /// [`format::MAX_COUNTER`].
    pub fn add_pool_usage(
        &self,
        file: Bytes32,
        counters: &format::Counters,
    ) -> Result<bool, ClientError> {
        let now = self.now();
        self.update(|state, _, _| {
            let Some(inst) = state.installations.get_mut(&self.product) else {
                return Err(ClientError::Violation(Violation::NotActivated {
                    product: self.product.clone(),
                }));
            };
            if inst.pool_usage.contains(&file) {
                return Ok(false);
            }
            for (feature, n) in counters {
                let total = inst.counters.entry(feature.clone()).or_insert(0);
                *total = total.saturating_add(*n).min(MAX_COUNTER);
            }
            inst.pool_usage.push(file);
            state.last_seen = Some(ts(rules::raise_mark(state.last_seen.map(from_ts), now)));
            Ok(true)
        })
    }

    /// Make (or, if one is already waiting with the same credential, repeat) the
    /// activation request for the product.
    pub fn request_activation(&self, credential: Credential) -> Result<SignedFile, ClientError> {
        self.request_activation_for(credential, None)
    }

    /// Make (or repeat) an on-premise floating server's activation request: for a pool
    /// of `seats` of the floating license, which this device will lease on its own
    /// network under the pool license that answers it.
    pub fn request_pool_activation(
        &self,
        credential: Credential,
        seats: u32,
    ) -> Result<SignedFile, ClientError> {
        self.request_activation_for(credential, Some(seats))
    }

    fn request_activation_for(
        &self,
        credential: Credential,
        pool_seats: Option<u32>,
    ) -> Result<SignedFile, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            if let Some(inst) = state.installations.get(&self.product) {
                let activation_id = self.installed_activation(inst, state);
                return Err(ClientError::AlreadyActivated {
                    product: self.product.clone(),
                    activation_id,
                });
            }
            if let Some(p) = state.pending.get(&self.product).filter(|p| {
                p.credential == credential
                    && format::payload_unverified::<ActivationRequest>(&p.request)
                        .is_ok_and(|r| r.pool_seats == pool_seats)
            }) {
                return Ok(signed_again(
                    format::FileKind::ActivationRequest,
                    &p.request,
                ));
            }
            let mut nonce = [0u8; 16];
            rand_core::OsRng.fill_bytes(&mut nonce);
            let request = ActivationRequest {
                pool_seats,
                product: self.product.clone(),
                credential: credential.clone(),
                fingerprint: self.fingerprint_of(key),
                nonce: Nonce(nonce),
                created: now,
                client: format!("lic {}", env!("CARGO_PKG_VERSION")),
                journal: JournalHead::first(),
                variables: state
                    .variables
                    .get(&self.product)
                    .cloned()
                    .unwrap_or_default(),
            };
            let file = format::sign(&request, key)?;
            state.pending.insert(
                self.product.clone(),
                Pending {
                    request: file.bytes().to_vec(),
                    nonce: Nonce(nonce),
                    credential,
                    created: ts(now),
                },
            );
            state.last_seen = Some(ts(rules::raise_mark(state.last_seen.map(from_ts), now)));
            Ok(file)
        })
    }

    /// The pool this device holds as an on-premise floating server: the chain its leases
    /// carry (the installed pool license and refresh) and what it grants, verified with
    /// the trusted keys. `None` when the product's installed license is not a pool
    /// license (or none is installed).
    pub fn pool(&self) -> Result<Option<(format::PoolChain, Pool)>, ClientError> {
        let key = self.store.device_key()?;
        let state = self.store.load(&key)?;
        let Some(inst) = state.installations.get(&self.product) else {
            return Ok(None);
        };
        let chain = format::PoolChain {
            license: inst.license.clone(),
            refresh: inst.refresh.clone(),
        };
        match pool::verify_pool(&chain, &self.keyring(&state)) {
            Ok(pool) => Ok(Some((chain, pool))),
            Err(PoolError::NotAPool) => Ok(None),
            Err(e) => Err(pool_error(e)),
        }
    }

    /// The activation id of an installation, for messages ("unknown" if its license no
    /// longer verifies).
    fn installed_activation(&self, inst: &Installation, state: &State) -> String {
        verify_chained::<License>(inst.license.clone(), &self.keyring(state))
            .map(|(l, _)| l.payload().activation_id.clone())
            .unwrap_or_else(|_| "unknown".into())
    }

    /// Verify and install a license, a refresh or a key set (armored or binary).
    pub fn install(&self, input: &[u8]) -> Result<Installed, ClientError> {
        let (kind, bytes) = format::unarmor(input)?;
        let kind = match kind {
            Some(kind) => kind,
            // Binary input has no armor label: the signed content type says what it is.
            None => format::kind_of(&bytes)?,
        };
        match kind {
            format::FileKind::License => self.install_license(bytes),
            format::FileKind::Refresh => self.install_refresh(bytes),
            format::FileKind::KeySet => self.install_key_set(bytes),
            other => Err(FormatError::WrongKind {
                expected: format::FileKind::License,
                found: other,
            }
            .into()),
        }
    }

    /// Install a key set: the vendor keys trusted from now on (see [`trust`]).
    fn install_key_set(&self, bytes: Vec<u8>) -> Result<Installed, ClientError> {
        self.update(|state, _, _| {
            let current = trust::effective(&self.keys, &state.key_sets);
            let (accepted, set) = trust::accept(&current, &bytes).map_err(ClientError::KeySet)?;
            match accepted {
                trust::Accepted::AlreadyInstalled { version } => {
                    Ok(Installed::KeySetAlreadyInstalled { version })
                }
                trust::Accepted::Newer { from, to } => {
                    state
                        .key_sets
                        .push(serde_bytes::ByteBuf::from(set.bytes().to_vec()));
                    Ok(Installed::KeySet {
                        from_version: from,
                        to_version: to,
                    })
                }
            }
        })
    }

    fn install_license(&self, bytes: Vec<u8>) -> Result<Installed, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let keys = self.keyring(state);
            // A checkout license from an on-premise floating server is signed by its
            // device key, which the vendor-signed pool license it carries names.
            let (license, pool) = verify_chained::<License>(bytes, &keys)?;
            if let Some(pool) = &pool {
                accept_pool(state, pool, now)?;
            }
            let l = license.payload();
            if l.product != self.product {
                return Err(ClientError::WrongProduct {
                    expected: self.product.clone(),
                    found: l.product.clone(),
                });
            }
            rules::tombstone(&state.tombstones, &l.activation_id).map_err(|d| {
                ClientError::AlreadyDeactivated {
                    activation_id: d.activation_id,
                    file: format::FileKind::License,
                }
            })?;
            if l.device_key != Bytes32(key.public().to_bytes()) {
                return Err(not_this_device(key, &l.device_key));
            }
            if let Some(inst) = state.installations.get_mut(&self.product) {
                if inst.license == license.bytes() {
                    return Ok(Installed::LicenseAlreadyInstalled {
                        activation_id: l.activation_id.clone(),
                    });
                }
                // The same license signed again by another vendor key (after a rotation or
                // a revocation): the same payload, so nothing but the signature changes.
                if format::same_payload(&inst.license, license.bytes()) {
                    inst.license = license.bytes().to_vec();
                    return Ok(Installed::Resigned {
                        file: format::FileKind::License,
                    });
                }
                let inst = inst.clone();
                return Err(ClientError::AlreadyActivated {
                    product: self.product.clone(),
                    activation_id: self.installed_activation(&inst, state),
                });
            }
            let pending =
                state
                    .pending
                    .get(&self.product)
                    .ok_or_else(|| ClientError::NoPendingRequest {
                        product: self.product.clone(),
                    })?;
            if pending.nonce != l.request_nonce {
                return Err(ClientError::RequestMismatch {
                    product: self.product.clone(),
                });
            }
            let report = fingerprint::match_fingerprint(
                &l.fingerprint,
                &self.fingerprint_of(key),
                &l.match_rule,
            );
            if !report.ok {
                return Err(ClientError::Violation(wrong_device(&report, &l.match_rule)));
            }
            let e = rules::effective(l, None);
            if let Some(v) = rules::clock(now, state.last_seen.map(from_ts), e.clock_tolerance) {
                return Err(ClientError::Violation(v));
            }
            rules::issued_ahead(now, l.issued, l.clock_tolerance)
                .map_err(|a| clock_behind(format::FileKind::License, a))?;
            if let Some(v) = rules::validity(&e, now)
                .into_iter()
                .find(|v| matches!(v, Violation::Expired { .. }))
            {
                return Err(ClientError::Violation(v));
            }
            let request_hash = format::file_hash(&pending.request);
            state.pending.remove(&self.product);
            state.installations.insert(
                self.product.clone(),
                Installation {
                    license: license.bytes().to_vec(),
                    refresh: None,
                    // A license issued again for a seat this device held starts from what
                    // the vendor already counted.
                    counters: l.counters.clone(),
                    journal_seq: 0,
                    journal_head: request_hash,
                    journal_trail: Vec::new(),
                    installed: ts(now),
                    pool_usage: Vec::new(),
                },
            );
            let mark = rules::raise_mark(state.last_seen.map(from_ts), now).max(l.issued);
            state.last_seen = Some(ts(mark));
            Ok(Installed::License {
                activation_id: l.activation_id.clone(),
            })
        })
    }

    fn install_refresh(&self, bytes: Vec<u8>) -> Result<Installed, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let keys = self.keyring(state);
            let refresh = format::verify::<Refresh>(bytes, &keys)?;
            let r = refresh.payload().clone();
            if r.product != self.product {
                return Err(ClientError::WrongProduct {
                    expected: self.product.clone(),
                    found: r.product,
                });
            }
            rules::tombstone(&state.tombstones, &r.activation_id).map_err(|d| {
                ClientError::AlreadyDeactivated {
                    activation_id: d.activation_id,
                    file: format::FileKind::Refresh,
                }
            })?;
            let inst = state.installations.get(&self.product).ok_or_else(|| {
                ClientError::Violation(Violation::NotActivated {
                    product: self.product.clone(),
                })
            })?;
            // The installed refresh signed again by another vendor key: the same payload
            // (so the same activation, device and serial), nothing else changes.
            if let Some(installed) = &inst.refresh
                && installed.as_slice() != refresh.bytes()
                && format::same_payload(installed, refresh.bytes())
            {
                if let Some(inst) = state.installations.get_mut(&self.product) {
                    inst.refresh = Some(refresh.bytes().to_vec());
                }
                return Ok(Installed::Resigned {
                    file: format::FileKind::Refresh,
                });
            }
            let current = self.current(inst, &keys)?;
            let installed_id = &current.entitlements.activation_id;
            if *installed_id != r.activation_id {
                return Err(ClientError::RefreshMismatch {
                    installed: installed_id.clone(),
                    found: r.activation_id.clone(),
                });
            }
            if r.device_key != Bytes32(key.public().to_bytes()) {
                return Err(not_this_device(key, &r.device_key));
            }
            // The very refresh installed — or, in a license issued again, the refresh whose
            // serial (and entitlements) the license carries.
            let same = inst.refresh.as_deref() == Some(refresh.bytes())
                || (inst.refresh.is_none() && r.serial > 1 && r.serial == current.license.serial);
            let from = current.entitlements.serial;
            match rules::serial(from, r.serial, same) {
                SerialDecision::AlreadyApplied => {
                    return Ok(Installed::RefreshAlreadyApplied { serial: r.serial });
                }
                SerialDecision::Rollback => {
                    return Err(ClientError::Rollback {
                        installed: from,
                        offered: r.serial,
                    });
                }
                SerialDecision::Conflict => {
                    return Err(ClientError::SerialConflict { serial: r.serial });
                }
                SerialDecision::Apply => {}
            }
            // The mark is raised to the issue time (or set to the floor): a refresh from
            // well ahead of this clock would turn it back at once.
            let raises_to = r.clock_floor.unwrap_or(r.issued);
            // A clock-floor reset replaces the high-water mark; otherwise the clock must
            // not have been turned back.
            match r.clock_floor {
                Some(floor) => {
                    rules::issued_ahead(now, raises_to, r.clock_tolerance)
                        .map_err(|a| clock_behind(format::FileKind::Refresh, a))?;
                    state.last_seen = Some(ts(floor.max(now)));
                }
                None => {
                    if let Some(v) =
                        rules::clock(now, state.last_seen.map(from_ts), r.clock_tolerance)
                    {
                        return Err(ClientError::Violation(v));
                    }
                    rules::issued_ahead(now, raises_to, r.clock_tolerance)
                        .map_err(|a| clock_behind(format::FileKind::Refresh, a))?;
                    let mark = rules::raise_mark(state.last_seen.map(from_ts), now).max(r.issued);
                    state.last_seen = Some(ts(mark));
                }
            }
            if let Some(inst) = state.installations.get_mut(&self.product) {
                inst.refresh = Some(refresh.bytes().to_vec());
            }
            Ok(Installed::Refresh {
                from_serial: from,
                to_serial: r.serial,
            })
        })
    }

    /// Sign a usage report with the cumulative counters and the device variables
    /// (advances the device journal).
    pub fn usage_report(&self) -> Result<SignedFile, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let variables = state
                .variables
                .get(&self.product)
                .cloned()
                .unwrap_or_default();
            let inst = state.installations.get_mut(&self.product).ok_or_else(|| {
                ClientError::Violation(Violation::NotActivated {
                    product: self.product.clone(),
                })
            })?;
            // The license was verified when it was installed, and the state that keeps
            // it is authenticated by the device key: writing a device-signed file needs
            // no vendor trust (a machine that lost its trust file can still report).
            let license = format::payload_unverified::<License>(&inst.license)?;
            let report = UsageReport {
                activation_id: license.activation_id.clone(),
                product: self.product.clone(),
                counters: inst.counters.clone(),
                journal: rules::next_journal(
                    inst.journal_seq,
                    inst.journal_head,
                    &inst.journal_trail,
                ),
                created: now,
                variables,
            };
            let file = format::sign(&report, key)?;
            inst.journal_trail = rules::advance_trail(&inst.journal_trail, inst.journal_head);
            inst.journal_seq = report.journal.seq;
            inst.journal_head = file.hash();
            Ok(file)
        })
    }

    /// Deactivate: remove the license, keep a tombstone, and return the signed
    /// deactivation file with the final counters. If the product was already deactivated
    /// here, the same deactivation file is returned again.
    pub fn deactivate(&self) -> Result<SignedFile, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let Some(inst) = state.installations.get(&self.product).cloned() else {
                // Already deactivated? Hand out the same file again. (A forgotten license
                // left no deactivation file to hand out, and a check-in is handed out by
                // `check_in`.)
                if let Some(file) = self.closed_again(state, format::FileKind::Deactivation) {
                    return Ok(file);
                }
                return Err(ClientError::Violation(Violation::NotActivated {
                    product: self.product.clone(),
                }));
            };
            // As for a usage report: the installed license needs no vendor trust here, so
            // a machine that lost its trust file (or whose license's key was revoked) can
            // still give its seat back.
            let activation_id = format::payload_unverified::<License>(&inst.license)?.activation_id;
            self.close_installation(state, &inst, activation_id, now, |c| {
                Ok(format::sign(
                    &Deactivation {
                        activation_id: c.activation_id,
                        product: c.product,
                        counters: c.counters,
                        journal: c.journal,
                        created: c.created,
                        variables: c.variables,
                    },
                    key,
                )?)
            })
        })
    }

    /// The newest file of `kind` (a deactivation, a check-in) that ended an installation
    /// of the product here, signed again as it was: what `deactivate` and `check_in`
    /// hand out when asked a second time.
    pub(crate) fn closed_again(&self, state: &State, kind: format::FileKind) -> Option<SignedFile> {
        state
            .tombstones
            .values()
            .filter(|t| {
                t.product == self.product && format::kind_of(&t.deactivation).ok() == Some(kind)
            })
            .max_by_key(|t| t.deactivated)
            .map(|t| signed_again(kind, &t.deactivation))
    }

    /// The end of an installation (a deactivation, a check-in): `make` signs the closing
    /// file from the final counters, the next journal head and the variables; the license
    /// is removed, a tombstone keeps the file (so the license cannot be installed again)
    /// and the clock mark rises to now.
    pub(crate) fn close_installation(
        &self,
        state: &mut State,
        inst: &Installation,
        activation_id: String,
        now: DateTime<Utc>,
        make: impl FnOnce(Closing) -> Result<SignedFile, ClientError>,
    ) -> Result<SignedFile, ClientError> {
        let file = make(Closing {
            activation_id: activation_id.clone(),
            product: self.product.clone(),
            counters: inst.counters.clone(),
            journal: rules::next_journal(inst.journal_seq, inst.journal_head, &inst.journal_trail),
            created: now,
            variables: state
                .variables
                .get(&self.product)
                .cloned()
                .unwrap_or_default(),
        })?;
        let server_key = verify_chained::<License>(inst.license.clone(), &self.keyring(state))
            .ok()
            .and_then(|(_, pool)| pool)
            .map(|p| Bytes32(p.server_key.to_bytes()));
        state.installations.remove(&self.product);
        state.tombstones.insert(
            activation_id,
            Tombstone {
                product: self.product.clone(),
                deactivated: ts(now),
                deactivation: file.bytes().to_vec(),
                server_key,
            },
        );
        state.last_seen = Some(ts(rules::raise_mark(state.last_seen.map(from_ts), now)));
        Ok(file)
    }

    /// Set the device variable `name` of the product to `value` (replacing its value),
    /// atomically: concurrent processes never lose a change. Variables may be set before
    /// activation. They travel, signed by the device key, in the next activation request,
    /// usage report and deactivation of the product (a request already made and waiting
    /// for its license is handed out again as it was: what was set after it travels in
    /// the first usage report or the deactivation).
    ///
    /// Refused, with nothing changed, when the name is not 1 to 64 letters, digits, `-`,
    /// `_` or `.` (`variable-name-invalid`), the value is longer than 1024 bytes
    /// (`variable-value-too-long`), the product would have more than 64 variables
    /// (`too-many-variables`), or their names and values would take more than 16 KiB
    /// together (`variables-too-large`).
    pub fn set_variable(&self, name: &str, value: &str) -> Result<(), ClientError> {
        let refused = |refused| ClientError::Variable {
            product: self.product.clone(),
            refused,
        };
        format::check_variable(name, value).map_err(refused)?;
        self.update(|state, _, _| {
            let mut variables = state
                .variables
                .get(&self.product)
                .cloned()
                .unwrap_or_default();
            variables.insert(name.to_string(), value.to_string());
            if variables.len() > MAX_VARIABLES {
                return Err(refused(VariableRefused::TooMany {
                    count: variables.len(),
                }));
            }
            format::check_variables(&variables).map_err(refused)?;
            state.variables.insert(self.product.clone(), variables);
            Ok(())
        })
    }

    /// Remove the device variable `name` of the product: its previous value, or `None`
    /// if it was not set (nothing changes then). The next file the device signs no
    /// longer carries it.
    pub fn remove_variable(&self, name: &str) -> Result<Option<String>, ClientError> {
        self.update(|state, _, _| {
            let Some(variables) = state.variables.get_mut(&self.product) else {
                return Ok(None);
            };
            let removed = variables.remove(name);
            if variables.is_empty() {
                state.variables.remove(&self.product);
            }
            Ok(removed)
        })
    }

    /// The device variables of the product, by name (empty if none is set).
    pub fn variables(&self) -> Result<Variables, ClientError> {
        let key = self.store.device_key()?;
        Ok(self
            .store
            .load(&key)?
            .variables
            .remove(&self.product)
            .unwrap_or_default())
    }

    /// Whether an activation request of this product waits for its license here.
    pub fn has_pending_request(&self) -> Result<bool, ClientError> {
        let key = self.store.device_key()?;
        Ok(self.store.load(&key)?.pending.contains_key(&self.product))
    }

    /// Forget this product on this device: its pending activation request, or (only with
    /// `confirm_installed`) its installed license.
    ///
    /// An installed license is forgotten with a tombstone, as a deactivation leaves: the
    /// same license cannot be installed again (its counters would start over), and the
    /// seat stays taken at the vendor — deactivating is what gives it back. Nothing is
    /// written for the vendor.
    pub fn forget(&self, confirm_installed: bool) -> Result<Forgotten, ClientError> {
        let now = self.now();
        self.update(|state, _, _| {
            if let Some(inst) = state.installations.get(&self.product) {
                let activation_id =
                    format::payload_unverified::<License>(&inst.license)?.activation_id;
                if !confirm_installed {
                    return Err(ClientError::ConfirmForget {
                        product: self.product.clone(),
                        activation_id,
                    });
                }
                state.installations.remove(&self.product);
                state.pending.remove(&self.product);
                state.tombstones.insert(
                    activation_id.clone(),
                    Tombstone {
                        product: self.product.clone(),
                        deactivated: ts(now),
                        deactivation: Vec::new(),
                        server_key: None,
                    },
                );
                return Ok(Forgotten::Installed { activation_id });
            }
            if state.pending.remove(&self.product).is_some() {
                return Ok(Forgotten::Pending);
            }
            Err(ClientError::Violation(Violation::NotActivated {
                product: self.product.clone(),
            }))
        })
    }

    /// The fingerprint comparison against the installed license (or `license`, if given).
    pub fn explain_fingerprint(
        &self,
        license: Option<&License>,
    ) -> Result<Option<MatchReport>, ClientError> {
        let key = self.store.device_key()?;
        let installed;
        let license = match license {
            Some(l) => l,
            None => {
                let state = self.store.load(&key)?;
                let Some(inst) = state.installations.get(&self.product) else {
                    return Ok(None);
                };
                installed =
                    verify_chained::<License>(inst.license.clone(), &self.keyring(&state))?.0;
                installed.payload()
            }
        };
        Ok(Some(fingerprint::match_fingerprint(
            &license.fingerprint,
            &self.fingerprint_of(&key),
            &license.match_rule,
        )))
    }

    /// Lock, load, change, save. `f` returning an error leaves the store as it was.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut State, &SecretKey, &StoreLock) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let lock = self.store.lock()?;
        let key = self.store.device_key_locked(&lock)?;
        let mut state = self.store.load(&key)?;
        let before = state.clone();
        let result = f(&mut state, &key, &lock)?;
        if state != before {
            self.store.save(&lock, &key, &state)?;
        }
        Ok(result)
    }
}

fn not_this_device(key: &SecretKey, found: &Bytes32) -> ClientError {
    ClientError::NotThisDevice {
        this: key.kid().to_string(),
        found: PublicKey::from_bytes(&found.0)
            .map(|k| k.kid().to_string())
            .unwrap_or_else(|_| "invalid".into()),
    }
}

fn clock_behind(file: format::FileKind, a: rules::IssuedAhead) -> ClientError {
    ClientError::ClockBehind {
        file,
        now: a.now,
        issued: a.issued,
        tolerance_secs: a.tolerance_secs,
    }
}

/// A stored file handed out again.
fn signed_again(kind: format::FileKind, bytes: &[u8]) -> SignedFile {
    SignedFile::from_parts(kind, bytes.to_vec())
}

/// Verify a file signed by a vendor key, or by an on-premise floating server's device key
/// under the pool license it carries ([`pool::verify`]).
pub(crate) fn verify_chained<T: pool::Chained>(
    bytes: Vec<u8>,
    keys: &Keyring,
) -> Result<(format::Verified<T>, Option<Pool>), ClientError> {
    pool::verify::<T>(bytes, keys).map_err(pool_error)
}

pub(crate) fn pool_error(e: PoolError) -> ClientError {
    match e {
        PoolError::Format(e) | PoolError::Untrusted(e) => ClientError::Format(e),
        e => ClientError::Pool(e),
    }
}

/// Take a file from an on-premise floating server under `pool`: refused when the pool
/// has expired or a higher serial of it was seen before; else its serial is remembered
/// (a pool refresh replaces the older pool license for good on this device).
pub(crate) fn accept_pool(
    state: &mut State,
    pool: &Pool,
    now: DateTime<Utc>,
) -> Result<(), ClientError> {
    pool.check_at(now).map_err(ClientError::Pool)?;
    pool.check_serial(state.pool_serials.get(&pool.activation_id).copied())
        .map_err(ClientError::Pool)?;
    state
        .pool_serials
        .entry(pool.activation_id.clone())
        .and_modify(|s| *s = (*s).max(pool.serial))
        .or_insert(pool.serial);
    Ok(())
}
