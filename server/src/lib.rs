//! `lic-server`: the on-premise floating license server, for sites whose machines cannot
//! reach the vendor (docs/on-premise.md).
//!
//! The server is a lic device: its store (the one `lic --store DIR` uses) holds its
//! device key and the **pool license** the vendor issued for its offline activation
//! request (`lic offline-activate --pool-seats N`). It leases those seats on the site's
//! network with the routes and files of the vendor's portal, so `lic lease`, `lic
//! checkout`, `lic checkin` and the client API work against either unchanged. It signs
//! leases and checkout licenses with its device key and puts its pool license (and the
//! latest refresh of it) in each; clients trust them through that chain (vendor key →
//! pool license → lease, [`lic_core::pool`]).
//!
//! Every decision is a pure rule of [`lic_core::floating`] applied inside one SQLite
//! transaction ([`db`]), so no more seats are held than the pool has, whatever the
//! number of clients and restarts. Usage that clients bring back in check-ins is added to
//! the server's own counters ([`Client::add_pool_usage`]), which its usage reports and
//! deactivation carry to the vendor.

pub mod db;
pub mod http;
pub mod writer;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};

use lic_core::client::{Client, ClientError};
use lic_core::floating::{self, Grant, Holder, Refusal, Terms};
use lic_core::format::{
    self, CheckIn, FileKind, FormatError, Lease, LeaseAction, LeaseRequest, License, LicenseType,
    MatchRule, PoolChain, Receipt, Refresh, Verified,
};
use lic_core::keys::{Keyring, SecretKey};
pub use lic_core::lease::{CheckoutAnswer, LeaseAnswer, ReleaseAnswer};
use lic_core::pool::Pool;
use lic_core::rules;
use lic_core::store::STATE_FILE;

use db::{Seat, from_ts, ts};
use writer::{Step, Writer};

/// How often the server checks its own license in full (its fingerprint, its clock,
/// its expiry), in seconds. The pool itself is read again on every request, so a refresh
/// installed while it runs takes effect at once.
pub const HEALTH_SECS: i64 = 300;

/// What the site's administrator sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Lease period, renewal point, processes per seat, revival, checkouts, OED on every
    /// lease: the same terms as a hosted floating policy.
    pub terms: Terms,
    /// Reclaim seats with no heartbeat for this long (seconds; absent: never). Checked-out
    /// seats are kept until their OED.
    pub reclaim_after_secs: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            terms: Terms {
                max_checkout_hours: Some(24 * 7),
                ..Terms::default()
            },
            reclaim_after_secs: None,
        }
    }
}

/// Why the server refuses a request or cannot serve. Each has a stable code, an HTTP
/// status, and a hint.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("the file is refused: {0}")]
    BadFile(#[from] FormatError),
    #[error("this server leases `{serves}`, not `{asked}`")]
    WrongProduct { serves: String, asked: String },
    #[error("a {found} request was sent to the route for {expected}")]
    WrongAction { expected: String, found: String },
    #[error("this request was seen before (a replay)")]
    Replayed,
    #[error("floating feature `{0}` is leased by the vendor's portal; this server leases seats")]
    FeatureUnsupported(String),
    #[error("no seat is checked out as activation {0} here")]
    NotCheckedOut(String),
    #[error("activation {0} was checked out by another device")]
    OtherDevice(String),
    #[error("the server has no pool license for `{0}` installed")]
    NoPool(String),
    #[error("the server's own license cannot be used: {problem}")]
    Unusable {
        /// The violation's code (`wrong-device`, `expired`, `clock-turned-back`, …) or
        /// the pool's (`pool-expired`, …).
        code: &'static str,
        problem: String,
    },
    #[error("the server's store: {0}")]
    Store(ClientError),
    #[error("the server's database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the server's database: {0}")]
    Commit(String),
}

impl From<ClientError> for ServerError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Violation(v) => ServerError::Unusable {
                code: v.code(),
                problem: v.to_string(),
            },
            ClientError::Pool(p) => ServerError::Unusable {
                code: p.code(),
                problem: p.to_string(),
            },
            e => ServerError::Store(e),
        }
    }
}

impl ServerError {
    pub fn code(&self) -> &str {
        match self {
            ServerError::Refused(r) => r.code(),
            ServerError::BadFile(e) => e.code(),
            ServerError::WrongProduct { .. } => "wrong-product",
            ServerError::WrongAction { .. } => "wrong-action",
            ServerError::Replayed => "request-replayed",
            ServerError::FeatureUnsupported(_) => "feature-not-floating",
            ServerError::NotCheckedOut(_) => "not-checked-out",
            ServerError::OtherDevice(_) => "wrong-device",
            ServerError::NoPool(_) => "no-pool",
            ServerError::Unusable { code, .. } => code,
            ServerError::Store(_) => "server-store",
            ServerError::Db(_) | ServerError::Commit(_) => "server-database",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ServerError::Refused(
                Refusal::NoSeat { .. }
                | Refusal::TooManyProcesses { .. }
                | Refusal::CheckedOut { .. },
            )
            | ServerError::Replayed => 409,
            ServerError::Refused(Refusal::NotLeased) | ServerError::NotCheckedOut(_) => 404,
            ServerError::Refused(Refusal::Stale { .. })
            | ServerError::BadFile(_)
            | ServerError::WrongAction { .. } => 400,
            ServerError::Refused(_)
            | ServerError::WrongProduct { .. }
            | ServerError::FeatureUnsupported(_)
            | ServerError::OtherDevice(_) => 403,
            // The server's own license: a refusal the client reports with its code.
            ServerError::Unusable { code, .. } if code.starts_with("server-") => 500,
            ServerError::NoPool(_) | ServerError::Unusable { .. } => 403,
            ServerError::Store(_) | ServerError::Db(_) | ServerError::Commit(_) => 500,
        }
    }

    pub fn hint(&self) -> String {
        match self {
            ServerError::Refused(r) => r.hint(),
            ServerError::BadFile(e) => e.hint().into(),
            ServerError::WrongProduct { .. } => {
                "use the floating server of this product (ask your administrator)".into()
            }
            ServerError::WrongAction { .. } => "use lic or the lic-core client API".into(),
            ServerError::Replayed => "make a new request (lic does so on every call)".into(),
            ServerError::FeatureUnsupported(_) => {
                "lease the seat; ask your vendor to put the feature in the pool license".into()
            }
            ServerError::NotCheckedOut(_) => "check in at the server the checkout came from".into(),
            ServerError::OtherDevice(_) => {
                "check in from the machine that checked the seat out".into()
            }
            ServerError::NoPool(_) => "the administrator activates the server offline: \
                 `lic offline-activate --pool-seats N --store DIR`, then installs the pool \
                 license with `lic install FILE --store DIR`"
                .into(),
            ServerError::Unusable { .. } => "the server's administrator runs `lic-server status` \
                 and asks the vendor for a refresh of the pool license"
                .into(),
            ServerError::Store(e) => e.hint().into(),
            ServerError::Db(_) | ServerError::Commit(_) => {
                "tell the server's administrator (see its log)".into()
            }
        }
    }
}

/// The answer to a check-in (the shape of the portal's upload answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInAnswer {
    /// The receipt, armored, signed by the server's device key.
    pub response: String,
    pub activation: String,
    /// The same check-in was applied before: nothing changed.
    pub replay: bool,
    pub flags: Vec<String>,
}

/// The pool and the seats, for `lic-server status` and `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub product: String,
    pub license: String,
    pub activation: String,
    pub seats: u32,
    pub held: u32,
    pub serial: u64,
    pub expires: Option<String>,
    /// Empty when the server may lease; else why not.
    pub problems: Vec<String>,
    pub holders: Vec<HolderReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderReport {
    /// The device key (hex).
    pub device: String,
    pub activation: String,
    pub holds: bool,
    pub lease_expires: Option<String>,
    pub offline_expiry: Option<String>,
    /// The checkout's activation, while checked out.
    pub checkout: Option<String>,
    pub last_access: String,
    pub client: String,
}

/// What the pool grants now.
struct PoolNow {
    chain: PoolChain,
    pool: Pool,
    license: License,
    features: format::Features,
    clock_tolerance: u64,
}

/// The store's state file as written: inode, length, modification time.
type StateStamp = (u64, u64, std::time::SystemTime);

/// Why the server's own license cannot be used: a code and a message.
type Problem = (&'static str, String);

/// The on-premise floating server.
pub struct Server {
    client: Client,
    key: SecretKey,
    /// The database, behind the group-commit writer.
    writer: Writer,
    config: Config,
    /// The pool last read, and the state file it was read from.
    pool_cache: Mutex<Option<(Option<StateStamp>, Arc<PoolNow>)>>,
    /// When the server's own license was last checked in full, and the verdict.
    health: Mutex<Option<(DateTime<Utc>, Option<Problem>)>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("product", &self.client.product())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Open the database and start its writer.
fn start_writer(path: &std::path::Path) -> Result<Writer, ServerError> {
    Writer::start(db::open(path)?)
        .map_err(|e| ServerError::Commit(format!("starting the database writer: {e}")))
}

/// A short form of a device key for logs.
fn short(device: &str) -> &str {
    device.get(..12).unwrap_or(device)
}

impl Server {
    /// Open the server on `client` (the server's store and product) and its database:
    /// refused unless a pool license is installed and the server's own license may be
    /// used (on this machine, clock not turned back, not expired).
    pub fn open(client: Client, db: &std::path::Path, config: Config) -> Result<Self, ServerError> {
        config.terms.validate().map_err(|e| ServerError::Unusable {
            code: "server-config",
            problem: format!("the lease terms: {e}"),
        })?;
        let key = client.store().device_key().map_err(ClientError::Store)?;
        let server = Server {
            client,
            key,
            writer: start_writer(db)?,
            config,
            health: Mutex::new(None),
            pool_cache: Mutex::new(None),
        };
        server.check_health(true)?;
        server.pool_now()?;
        Ok(server)
    }

    /// Open the server only to report on it ([`Server::status`]): not refused when its
    /// own license cannot be used, so that the status says why.
    pub fn open_for_status(
        client: Client,
        db: &std::path::Path,
        config: Config,
    ) -> Result<Self, ServerError> {
        let key = client.store().device_key().map_err(ClientError::Store)?;
        Ok(Server {
            client,
            key,
            writer: start_writer(db)?,
            config,
            health: Mutex::new(None),
            pool_cache: Mutex::new(None),
        })
    }

    pub fn product(&self) -> &str {
        self.client.product()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.client.now()
    }

    /// The server's own license checked in full (device key and fingerprint, clock,
    /// expiry), at most every [`HEALTH_SECS`] unless `force`.
    fn check_health(&self, force: bool) -> Result<(), ServerError> {
        let now = self.now();
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = health
            .as_ref()
            .is_some_and(|(at, _)| (now - *at).num_seconds().abs() < HEALTH_SECS);
        if force || !fresh {
            let verdict = match self.client.check(None) {
                Ok(()) => None,
                Err(ClientError::Violation(v)) => Some((v.code(), v.to_string())),
                Err(ClientError::Pool(p)) => Some((p.code(), p.to_string())),
                Err(e) => return Err(ServerError::Store(e)),
            };
            if let Some((_, problem)) = &verdict {
                tracing::error!(problem = %problem, "the server's own license cannot be used");
            }
            *health = Some((now, verdict));
        }
        match health.as_ref().and_then(|(_, v)| v.clone()) {
            Some((code, problem)) => Err(ServerError::Unusable { code, problem }),
            None => Ok(()),
        }
    }

    /// The pool as installed now: read again whenever the store's state file changed (a
    /// refresh installed, a deactivation), so that it takes effect at once; its expiry is
    /// checked on every request.
    fn pool_now(&self) -> Result<Arc<PoolNow>, ServerError> {
        let stamp = self.state_stamp();
        let cached = self
            .pool_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| stamp.is_some() && *at == stamp)
            .map(|(_, p)| p.clone());
        let p = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(self.read_pool()?);
                *self
                    .pool_cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stamp, p.clone()));
                p
            }
        };
        p.pool
            .check_at(self.now())
            .map_err(|e| ServerError::Unusable {
                code: e.code(),
                problem: e.to_string(),
            })?;
        Ok(p)
    }

    /// What identifies the store's state file as written: it is replaced (a new inode)
    /// on every change.
    fn state_stamp(&self) -> Option<StateStamp> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(self.client.store().dir().join(STATE_FILE)).ok()?;
        Some((meta.ino(), meta.len(), meta.modified().ok()?))
    }

    /// The pool read from the store and verified with the trusted keys.
    fn read_pool(&self) -> Result<PoolNow, ServerError> {
        let (chain, pool) = self
            .client
            .pool()?
            .ok_or_else(|| ServerError::NoPool(self.product().to_owned()))?;
        let license = format::payload_unverified::<License>(&chain.license)?;
        let refresh = match &chain.refresh {
            Some(bytes) => Some(format::payload_unverified::<Refresh>(bytes)?),
            None => None,
        };
        let e = rules::effective(&license, refresh.as_ref());
        Ok(PoolNow {
            features: e.features,
            clock_tolerance: e.clock_tolerance,
            chain,
            pool,
            license,
        })
    }

    /// Read a lease request: device-signed, for this product, for one of `actions`,
    /// made within the freshness window. Its signer's key (hex) and its hash (hex).
    fn request(
        &self,
        body: &[u8],
        actions: &[LeaseAction],
        now: DateTime<Utc>,
    ) -> Result<(Verified<LeaseRequest>, String, String), ServerError> {
        let req = format::open::<LeaseRequest>(body, &Keyring::new())?;
        if req.product != self.product() {
            return Err(ServerError::WrongProduct {
                serves: self.product().to_owned(),
                asked: req.product.clone(),
            });
        }
        if !actions.contains(&req.action) {
            return Err(ServerError::WrongAction {
                expected: actions
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: req.action.name().to_owned(),
            });
        }
        if let Some(feature) = &req.feature {
            return Err(ServerError::FeatureUnsupported(feature.clone()));
        }
        floating::fresh(req.created, now).map_err(ServerError::Refused)?;
        let device = hex::encode(req.signer().to_bytes());
        let hash = req.file_hash().to_string();
        Ok((req, device, hash))
    }

    /// The grant for `device` now, counted inside `tx`.
    fn decide(
        tx: &rusqlite::Transaction<'_>,
        config: &Config,
        pool: &Pool,
        me: Option<&Seat>,
        device: &str,
        now: DateTime<Utc>,
    ) -> Result<Grant, ServerError> {
        let (held, next) = db::held_by_others(tx, device, ts(now))?;
        let ahead = db::waiting_ahead(tx, device, ts(now))?;
        let holder = me.map(|s| Holder {
            lease_expires: s.lease_expires.map(from_ts),
            offline_expiry: s.offline_expiry.map(from_ts),
        });
        floating::grant(
            floating::Pool {
                seats: u64::from(pool.seats),
                held_by_others: held,
                waiting_ahead: ahead,
                next_free: next.map(from_ts),
            },
            holder,
            config.terms.revival_secs,
            None,
            now,
        )
        .map_err(ServerError::Refused)
    }

    /// Take or renew a seat lease (`POST /api/v1/leases`, `/api/v1/leases/renew`).
    pub fn lease(
        &self,
        body: &[u8],
        action: LeaseAction,
        wait: bool,
    ) -> Result<LeaseAnswer, ServerError> {
        self.check_health(false)?;
        let now = self.now();
        let p = self.pool_now()?;
        let (req, device, hash) = self.request(body, &[action], now)?;
        let instance = hex::encode(req.instance.0);
        let config = self.config;
        let pool = p.pool.clone();
        let client = req.client.clone();
        let dev = device.clone();
        let decided = self.writer.run(move |tx| {
            let mut keep_refusal = false;
            let result = (|| {
                let device = dev;
                if !db::first_request(tx, &hash, ts(now))? {
                    return Err(ServerError::Replayed);
                }
                let me = db::seat(tx, &device)?;
                if action == LeaseAction::Renew
                    && !me.as_ref().is_some_and(|s| s.holds(ts(now)))
                    && db::instance_expires(tx, &device, &instance)?.is_none_or(|t| t <= ts(now))
                {
                    return Err(ServerError::Refused(Refusal::NotLeased));
                }
                let grant = match Self::decide(tx, &config, &pool, me.as_ref(), &device, now) {
                    Ok(g) => g,
                    Err(e) => {
                        if wait && matches!(e, ServerError::Refused(Refusal::NoSeat { .. })) {
                            // The refusal keeps the device's place in the queue.
                            db::wait(tx, &device, ts(now))?;
                            keep_refusal = true;
                        }
                        return Err(e);
                    }
                };
                let terms = &config.terms;
                floating::instances(
                    db::other_instances(tx, &device, &instance, ts(now))?,
                    terms.max_processes,
                )
                .map_err(ServerError::Refused)?;
                let times = floating::lease_times(terms, now, pool.expires)
                    .map_err(ServerError::Refused)?;
                let live = |t: Option<i64>| t.filter(|t| *t > ts(now));
                let seat = Seat {
                    device_key: device.clone(),
                    activation: me
                        .as_ref()
                        .map_or_else(|| new_id("onp"), |s| s.activation.clone()),
                    lease_expires: Some(
                        live(me.as_ref().and_then(|s| s.lease_expires))
                            .map_or(ts(times.expires), |t| t.max(ts(times.expires))),
                    ),
                    offline_expiry: match (
                        live(me.as_ref().and_then(|s| s.offline_expiry)),
                        times.offline_expiry.map(ts),
                    ) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    },
                    checkout: me.as_ref().and_then(|s| s.checkout.clone()),
                    last_access: ts(now),
                    first_taken: me.as_ref().map_or(ts(now), |s| s.first_taken),
                    client,
                };
                db::put_seat(tx, &seat)?;
                db::put_instance(tx, &device, &instance, ts(times.expires))?;
                db::stop_waiting(tx, &device)?;
                Ok((seat, grant, times))
            })();
            let keep = result.is_ok() || keep_refusal;
            Step { result, keep }
        });
        let (seat, grant, times) = match decided {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(
                    device = short(&device),
                    code = e.code(),
                    wait,
                    "lease refused"
                );
                return Err(e);
            }
        };
        // Signed once the seat is durable, outside the writer.
        let r = req.payload();
        let lease = Lease {
            license_id: p.pool.license_id.clone(),
            activation_id: seat.activation.clone(),
            product: r.product.clone(),
            device_key: format::Bytes32(req.signer().to_bytes()),
            fingerprint: r.fingerprint.clone(),
            match_rule: client_rule(&p.license.match_rule, &r.fingerprint),
            instance: r.instance,
            feature: None,
            features: p.features.clone(),
            license_type: LicenseType::Floating,
            issued: times.issued,
            renew_after: times.renew_after,
            expires: times.expires,
            license_expires: p.pool.expires,
            offline_expiry: seat.offline_expiry.map(from_ts),
            clock_tolerance: p.clock_tolerance,
            request_nonce: r.nonce,
            pool: Some(p.chain.clone()),
        };
        let file = format::sign(&lease, &self.key)?;
        let grant = match grant {
            Grant::Held => "held",
            Grant::Revived => "revived",
            Grant::Taken => "taken",
        };
        tracing::info!(
            device = short(&device),
            activation = %seat.activation,
            grant,
            expires = %when(times.expires),
            "lease granted"
        );
        Ok(LeaseAnswer {
            lease: file.armored(),
            activation: seat.activation,
            grant: grant.into(),
        })
    }

    /// Release an instance's lease (`POST /api/v1/leases/release`).
    pub fn release(&self, body: &[u8]) -> Result<ReleaseAnswer, ServerError> {
        let now = self.now();
        let (req, device, hash) = self.request(body, &[LeaseAction::Release], now)?;
        let instance = hex::encode(req.instance.0);
        let dev = device.clone();
        let answer = self.writer.run(move |tx| {
            Step::of((|| {
                let device = dev;
                if !db::first_request(tx, &hash, ts(now))? {
                    return Err(ServerError::Replayed);
                }
                let Some(mut seat) = db::seat(tx, &device)? else {
                    return Ok(ReleaseAnswer {
                        released: false,
                        activation: None,
                    });
                };
                let had =
                    db::instance_expires(tx, &device, &instance)?.is_some_and(|t| t > ts(now));
                seat.lease_expires = db::drop_instance(tx, &device, Some(&instance), ts(now))?;
                seat.last_access = ts(now);
                db::put_seat(tx, &seat)?;
                Ok(ReleaseAnswer {
                    released: had,
                    activation: Some(seat.activation),
                })
            })())
        })?;
        tracing::info!(
            device = short(&device),
            released = answer.released,
            "lease released"
        );
        Ok(answer)
    }

    /// Check a seat out for offline use (`POST /api/v1/checkout`): a checkout license
    /// with its Offline Expiry Date, signed by the server and carrying the pool chain.
    pub fn checkout(&self, body: &[u8]) -> Result<CheckoutAnswer, ServerError> {
        self.check_health(false)?;
        let now = self.now();
        let p = self.pool_now()?;
        let (req, device, hash) = self.request(body, &[LeaseAction::Checkout], now)?;
        let config = self.config;
        let pool = p.pool.clone();
        let hours = req.hours.unwrap_or(1);
        let client = req.client.clone();
        let dev = device.clone();
        let (checkout, oed) = self.writer.run(move |tx| {
            Step::of((|| {
                let device = dev;
                if !db::first_request(tx, &hash, ts(now))? {
                    return Err(ServerError::Replayed);
                }
                let me = db::seat(tx, &device)?;
                if let Some(until) = me
                    .as_ref()
                    .filter(|s| s.checkout.is_some())
                    .and_then(|s| s.offline_expiry)
                    .filter(|t| *t > ts(now))
                {
                    return Err(ServerError::Refused(Refusal::CheckedOut {
                        until: from_ts(until),
                    }));
                }
                Self::decide(tx, &config, &pool, me.as_ref(), &device, now)?;
                let oed = floating::checkout_expiry(&config.terms, now, hours, pool.expires)
                    .map_err(ServerError::Refused)?;
                let checkout = new_id("chk");
                let seat = Seat {
                    device_key: device.clone(),
                    activation: me
                        .as_ref()
                        .map_or_else(|| new_id("onp"), |s| s.activation.clone()),
                    lease_expires: me.as_ref().and_then(|s| s.lease_expires),
                    offline_expiry: Some(ts(oed)),
                    checkout: Some(checkout.clone()),
                    last_access: ts(now),
                    first_taken: me.as_ref().map_or(ts(now), |s| s.first_taken),
                    client,
                };
                db::put_seat(tx, &seat)?;
                db::stop_waiting(tx, &device)?;
                Ok((checkout, oed))
            })())
        })?;
        let r = req.payload();
        let license = License {
            license_id: p.pool.license_id.clone(),
            activation_id: checkout.clone(),
            product: r.product.clone(),
            device_key: format::Bytes32(req.signer().to_bytes()),
            fingerprint: r.fingerprint.clone(),
            match_rule: client_rule(&p.license.match_rule, &r.fingerprint),
            features: p.features.clone(),
            license_type: LicenseType::Floating,
            issued: now,
            not_before: now,
            expires: p.pool.expires,
            offline_expiry: Some(oed),
            clock_tolerance: p.clock_tolerance,
            serial: 1,
            request_nonce: r.nonce,
            counters: Default::default(),
            pool_seats: None,
            pool: Some(p.chain.clone()),
        };
        let file = format::sign(&license, &self.key)?;
        tracing::info!(
            device = short(&device),
            activation = %checkout,
            offline_expiry = %when(oed),
            "seat checked out"
        );
        Ok(CheckoutAnswer {
            response: file.armored(),
            activation: checkout,
            offline_expiry: when(oed),
        })
    }

    /// Apply a check-in (`POST /api/v1/checkin`): the seat returns to the pool and the
    /// checkout's counters are added to the server's, once.
    pub fn check_in(&self, body: &[u8]) -> Result<CheckInAnswer, ServerError> {
        let now = self.now();
        let file = format::open::<CheckIn>(body, &Keyring::new())?;
        if file.product != self.product() {
            return Err(ServerError::WrongProduct {
                serves: self.product().to_owned(),
                asked: file.product.clone(),
            });
        }
        let hash = file.file_hash().to_string();
        let device = hex::encode(file.signer().to_bytes());
        let activation = file.activation_id.clone();
        let replayed = |receipt| CheckInAnswer {
            response: receipt,
            activation: file.activation_id.clone(),
            replay: true,
            flags: Vec::new(),
        };
        // First, whether it may be applied (read only).
        let (h, a, d) = (hash.clone(), activation.clone(), device.clone());
        let seen = self.writer.run(move |tx| {
            Step::of((|| {
                if let Some(receipt) = db::checkin_receipt(tx, &h)? {
                    return Ok(Some(receipt));
                }
                check_in_seat(tx, &a, &d).map(|_| None)
            })())
        })?;
        if let Some(receipt) = seen {
            return Ok(replayed(receipt));
        }
        // The store records the file's hash with the counters it adds: counted once even
        // if the seat's return below does not commit and the client sends it again.
        self.client
            .add_pool_usage(file.file_hash(), &file.counters)?;
        let receipt = format::sign(
            &Receipt {
                activation_id: activation.clone(),
                file_hash: file.file_hash(),
                file_kind: FileKind::CheckIn.name().to_owned(),
                state: "checked-in".into(),
                applied: now,
            },
            &self.key,
        )?
        .armored();
        let (h, a, d, r) = (hash, activation.clone(), device.clone(), receipt.clone());
        let earlier = self.writer.run(move |tx| {
            Step::of((|| {
                // A concurrent copy of this check-in may have returned the seat.
                if let Some(receipt) = db::checkin_receipt(tx, &h)? {
                    return Ok(Some(receipt));
                }
                let mut seat = check_in_seat(tx, &a, &d)?;
                seat.checkout = None;
                seat.offline_expiry = None;
                seat.last_access = ts(now);
                db::put_seat(tx, &seat)?;
                db::put_checkin(tx, &h, &a, &r, ts(now))?;
                Ok(None)
            })())
        })?;
        if let Some(receipt) = earlier {
            return Ok(replayed(receipt));
        }
        tracing::info!(
            device = short(&device),
            activation = %activation,
            counters = ?file.counters,
            "seat checked in"
        );
        Ok(CheckInAnswer {
            response: receipt,
            activation,
            replay: false,
            flags: Vec::new(),
        })
    }

    /// Reclaim the seats with no heartbeat for longer than the configured time (never
    /// one checked out until an OED ahead): the activations reclaimed (or, with
    /// `dry_run`, that would be).
    pub fn reclaim(&self, dry_run: bool) -> Result<Vec<String>, ServerError> {
        let Some(after) = self.config.reclaim_after_secs else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let rule = floating::Reclamation {
            inactivity_secs: after,
            enabled_since: DateTime::<Utc>::MIN_UTC,
        };
        self.writer.run(move |tx| {
            let result = (|| {
                let mut reclaimed = Vec::new();
                for seat in db::seats(tx)? {
                    if floating::reclaimable(
                        &rule,
                        from_ts(seat.last_access),
                        seat.offline_expiry.map(from_ts),
                        now,
                    ) {
                        if !dry_run {
                            db::delete_seat(tx, &seat.device_key)?;
                            tracing::info!(
                                device = short(&seat.device_key),
                                activation = %seat.activation,
                                "seat reclaimed"
                            );
                        }
                        reclaimed.push(seat.activation);
                    }
                }
                Ok(reclaimed)
            })();
            Step {
                keep: result.is_ok() && !dry_run,
                result,
            }
        })
    }

    /// The pool, the seats held and their OEDs, and whether the server may lease.
    pub fn status(&self) -> Result<StatusReport, ServerError> {
        let now = self.now();
        let mut problems = Vec::new();
        if let Err(e) = self.check_health(true) {
            problems.push(e.to_string());
        }
        let p = self.pool_now();
        if let Err(e) = &p {
            problems.push(e.to_string());
        }
        let seats = self.writer.run(|tx| Step {
            result: db::seats(tx).map_err(ServerError::from),
            keep: false,
        })?;
        let held = seats.iter().filter(|s| s.holds(ts(now))).count();
        let (license, activation, pool_seats, serial, expires) = match &p {
            Ok(p) => (
                p.pool.license_id.clone(),
                p.pool.activation_id.clone(),
                p.pool.seats,
                p.pool.serial,
                p.pool.expires.map(when),
            ),
            Err(_) => Default::default(),
        };
        Ok(StatusReport {
            product: self.product().to_owned(),
            license,
            activation,
            seats: pool_seats,
            held: u32::try_from(held).unwrap_or(u32::MAX),
            serial,
            expires,
            problems,
            holders: seats
                .into_iter()
                .map(|s| HolderReport {
                    holds: s.holds(ts(now)),
                    lease_expires: s.lease_expires.map(|t| when(from_ts(t))),
                    offline_expiry: s.offline_expiry.map(|t| when(from_ts(t))),
                    last_access: when(from_ts(s.last_access)),
                    device: s.device_key,
                    activation: s.activation,
                    checkout: s.checkout,
                    client: s.client,
                })
                .collect(),
        })
    }
}

/// The checked-out seat a check-in returns: it must be checked out as that activation
/// here, by the device that signed the check-in.
fn check_in_seat(
    tx: &rusqlite::Transaction<'_>,
    activation: &str,
    device: &str,
) -> Result<Seat, ServerError> {
    let Some(seat) = db::seat_by_checkout(tx, activation)? else {
        return Err(ServerError::NotCheckedOut(activation.to_owned()));
    };
    if seat.device_key != device {
        return Err(ServerError::OtherDevice(activation.to_owned()));
    }
    Ok(seat)
}

/// The match rule of a client's lease or checkout: the pool license's required
/// components that the client's fingerprint has, and its tolerance.
fn client_rule(pool: &MatchRule, fingerprint: &format::Fingerprint) -> MatchRule {
    MatchRule {
        required: pool
            .required
            .iter()
            .filter(|c| fingerprint.contains_key(*c))
            .cloned()
            .collect(),
        max_changed: pool.max_changed,
    }
}
