//! Floating licenses on the device: the exchanges with a floating server (the vendor's
//! portal, or an on-premise server speaking the same protocol) and the [`LeaseHolder`]
//! that holds a seat in the background.
//!
//! Every exchange posts a device-signed file (armored, `Content-Type: text/plain`) to a
//! route of the server and reads its JSON answer; the signed files are made, and the
//! server's leases and licenses verified and kept, by the [`Client`]. The network is a
//! [`Transport`] you pass in: [`HttpTransport`] (feature `online`: ureq with rustls), or
//! your own (a proxy, a test double).
//!
//! ```no_run
//! # #[cfg(feature = "online")] {
//! use std::sync::Arc;
//! use lic_core::client::Client;
//! use lic_core::format::Credential;
//! use lic_core::keys::Keyring;
//! use lic_core::lease::{HolderOptions, HttpTransport, LeaseHolder};
//!
//! let client = Arc::new(Client::open("/var/lib/app/lic", Keyring::new(), "photo-pro")?);
//! let transport = HttpTransport::new("https://licensing.example.com")?;
//! let options = HolderOptions::default()
//!     .credential(Credential::LicenseKey("PHPRO-7Q2M-K4XD-9WBT".into()))
//!     .on_event(|event| eprintln!("licence: {event:?}"));
//! let holder = LeaseHolder::start(client.clone(), transport, options)?;
//! // … the application runs; `client.check(None)` passes while the lease holds, and
//! // `holder.status().violation` says why not when the seat is lost …
//! holder.stop()?; // releases the seat
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, Installed, SignedLeaseRequest};
/// The lease a holder keeps, and new application instance ids, as the client names them.
pub use crate::client::{LeaseInfo, new_instance};
use crate::floating::{Grant, later};
use crate::format::{self, Credential, LeaseAction, License, Nonce, Receipt, SignedFile};
use crate::rules::Violation;

/// Take a seat (or a floating feature): a `lease-request` with action `take`. With
/// `?wait=true` the device queues for a seat.
pub const ROUTE_TAKE: &str = "/api/v1/leases";
/// Renew a lease (the heartbeat): action `renew`.
pub const ROUTE_RENEW: &str = "/api/v1/leases/renew";
/// Release a lease: action `release`.
pub const ROUTE_RELEASE: &str = "/api/v1/leases/release";
/// Check the seat out for offline use: action `checkout`.
pub const ROUTE_CHECKOUT: &str = "/api/v1/checkout";
/// Return a checked-out seat: a `check-in` file.
pub const ROUTE_CHECKIN: &str = "/api/v1/checkin";

/// How long the holder waits before trying again after a failed exchange, by default.
pub const DEFAULT_RETRY_SECS: u64 = 15;

/// What the server answered: the HTTP status and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// The server could not be reached (no route, refused connection, timeout, TLS failure…),
/// with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Posts a body to a route of the floating server. [`HttpTransport`] is the one lic uses;
/// tests pass their own.
pub trait Transport: Send + Sync {
    /// POST `body` (an armored device-signed file, sent as `text/plain`) to `route` (a
    /// path such as [`ROUTE_RENEW`], possibly with a query) and give the status and body
    /// of the answer, whatever the status.
    fn post(&self, route: &str, body: &str) -> Result<Reply, Unreachable>;
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn post(&self, route: &str, body: &str) -> Result<Reply, Unreachable> {
        (**self).post(route, body)
    }
}

impl<T: Transport + ?Sized> Transport for &T {
    fn post(&self, route: &str, body: &str) -> Result<Reply, Unreachable> {
        (**self).post(route, body)
    }
}

/// Why an exchange with the floating server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The server refused, with its code (`no-seat`, `too-many-processes`,
    /// `license-revoked`, `not-leased`, …), message and hint.
    #[error("the license server refused: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        hint: String,
    },
    /// The server could not be reached.
    #[error("cannot reach the license server: {0}")]
    Unreachable(String),
    /// The server answered with an error that is not a refusal (it is overloaded or
    /// failing, or the address is not a lic server).
    #[error("the license server could not answer (HTTP {status}): {detail}")]
    ServerError { status: u16, detail: String },
    /// The answer is not what the protocol says.
    #[error("the license server's answer cannot be used: {0}")]
    BadAnswer(String),
    /// The device refused what the server sent (a lease or license that does not verify
    /// or is not for this device, product, instance or request), or the store failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl LeaseError {
    /// A stable code: the server's for a refusal, `server-unreachable`, `server-error`,
    /// `server-answer`, or the client's.
    pub fn code(&self) -> &str {
        match self {
            LeaseError::Refused { code, .. } => code,
            LeaseError::Unreachable(_) => "server-unreachable",
            LeaseError::ServerError { .. } => "server-error",
            LeaseError::BadAnswer(_) => "server-answer",
            LeaseError::Client(e) => e.code(),
        }
    }

    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            LeaseError::Refused { hint, .. } if !hint.is_empty() => hint.clone(),
            LeaseError::Refused { .. } => {
                "contact your license administrator with this message".into()
            }
            LeaseError::Unreachable(_) => {
                "check the server address and the network connection, then try again".into()
            }
            LeaseError::ServerError { .. } => {
                "try again later; if it persists, check that the address is your license \
                 server's and tell its administrator"
                    .into()
            }
            LeaseError::BadAnswer(_) => {
                "check that the address is your license server's (not a web page or a proxy)".into()
            }
            LeaseError::Client(e) => e.hint().into(),
        }
    }

    /// A violation of this device itself (the clock turned back, the store tampered
    /// with), reported at once whatever the lease.
    fn local_violation(&self) -> Option<&Violation> {
        match self {
            LeaseError::Client(ClientError::Violation(
                v @ (Violation::ClockTurnedBack { .. } | Violation::StoreTampered { .. }),
            )) => Some(v),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    hint: String,
}

/// The answer to a take or a renewal ([`ROUTE_TAKE`], [`ROUTE_RENEW`]), from the vendor's
/// portal or an on-premise floating server: the wire shape both serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAnswer {
    /// The lease file, armored (`-----BEGIN LIC LEASE-----`).
    pub lease: String,
    /// The activation the server records the seat under (empty: not said).
    #[serde(default)]
    pub activation: String,
    /// `taken` (a free seat), `held` (renewed) or `revived` (the device's own seat back,
    /// within the revival window); empty or unknown: taken.
    #[serde(default)]
    pub grant: String,
}

/// The answer to a release ([`ROUTE_RELEASE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAnswer {
    /// Whether the instance held a live lease (false: nothing to release, which is fine).
    pub released: bool,
    /// The device's activation of the license, if the server says.
    #[serde(default)]
    pub activation: Option<String>,
}

/// The answer to a checkout ([`ROUTE_CHECKOUT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutAnswer {
    /// The checkout license, armored: installed like an offline activation's.
    pub response: String,
    pub activation: String,
    /// The Offline Expiry Date (RFC 3339).
    pub offline_expiry: String,
}

#[derive(Deserialize)]
struct FileAnswer {
    response: String,
    #[serde(default)]
    activation: Option<String>,
    #[serde(default)]
    replay: bool,
    #[serde(default)]
    flags: Vec<String>,
}

fn snippet(body: &str) -> String {
    let s: String = body.trim().chars().take(200).collect();
    if s.is_empty() {
        "no explanation".into()
    } else {
        s
    }
}

/// Post `body` to `route`; the body of a 2xx answer, else the refusal or failure.
fn exchange(transport: &dyn Transport, route: &str, body: &str) -> Result<String, LeaseError> {
    let reply = transport
        .post(route, body)
        .map_err(|e| LeaseError::Unreachable(e.0))?;
    let api_error = || serde_json::from_str::<ApiError>(&reply.body).ok();
    match reply.status {
        200..=299 => Ok(reply.body),
        429 | 500..=599 => Err(LeaseError::ServerError {
            status: reply.status,
            detail: api_error().map_or_else(|| snippet(&reply.body), |e| e.error.message),
        }),
        status => Err(match api_error() {
            Some(ApiError { error }) => LeaseError::Refused {
                status,
                code: error.code,
                message: error.message,
                hint: error.hint,
            },
            None => LeaseError::ServerError {
                status,
                detail: snippet(&reply.body),
            },
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, LeaseError> {
    serde_json::from_str(body).map_err(|e| LeaseError::BadAnswer(format!("not {what} ({e})")))
}

/// A lease the server granted, verified and kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub lease: LeaseInfo,
    /// How the server granted it (`taken` when it does not say).
    pub grant: Grant,
    /// The activation the server records the seat under.
    pub activation: Option<String>,
}

fn grant_of(name: Option<&str>) -> Grant {
    match name {
        Some("held") => Grant::Held,
        Some("revived") => Grant::Revived,
        _ => Grant::Taken,
    }
}

fn lease_exchange(
    client: &Client,
    transport: &dyn Transport,
    route: &str,
    asked: &SignedLeaseRequest,
) -> Result<Granted, LeaseError> {
    let body = exchange(transport, route, &asked.file.armored())?;
    let answer: LeaseAnswer = parse(&body, "a lease answer")?;
    let lease = client.install_lease(&asked.request, answer.lease.as_bytes())?;
    Ok(Granted {
        lease,
        grant: grant_of(Some(answer.grant.as_str())),
        activation: Some(answer.activation).filter(|a| !a.is_empty()),
    })
}

/// Take a seat (or the floating feature `feature`) for the application instance
/// `instance`: one exchange, no retry. With `wait`, the server queues this device for a
/// seat (`?wait=true`): ask again (with backoff) while it answers `no-seat`, to keep the
/// place in the queue. `credential` as for [`Client::lease_request`].
pub fn take(
    client: &Client,
    transport: &dyn Transport,
    credential: Option<Credential>,
    instance: Nonce,
    feature: Option<&str>,
    wait: bool,
) -> Result<Granted, LeaseError> {
    let asked = client.lease_request(credential, LeaseAction::Take, instance, feature)?;
    let route = if wait {
        format!("{ROUTE_TAKE}?wait=true")
    } else {
        ROUTE_TAKE.to_string()
    };
    lease_exchange(client, transport, &route, &asked)
}

/// Renew the lease of `instance` (the heartbeat): one round trip, and one signature
/// check of the lease that answers it.
pub fn renew(
    client: &Client,
    transport: &dyn Transport,
    instance: Nonce,
    feature: Option<&str>,
) -> Result<Granted, LeaseError> {
    let asked = client.lease_request(None, LeaseAction::Renew, instance, feature)?;
    lease_exchange(client, transport, ROUTE_RENEW, &asked)
}

/// Release the lease of `instance`: whether the server held one. The lease is removed
/// from the store whatever the server answers (or if it cannot be reached: the seat
/// then frees itself when the lease lapses).
pub fn release(
    client: &Client,
    transport: &dyn Transport,
    instance: Nonce,
    feature: Option<&str>,
) -> Result<bool, LeaseError> {
    let sent = client
        .lease_request(None, LeaseAction::Release, instance, feature)
        .map_err(LeaseError::from)
        .and_then(|asked| exchange(transport, ROUTE_RELEASE, &asked.file.armored()))
        .and_then(|body| parse::<ReleaseAnswer>(&body, "a release answer"));
    client.drop_lease(instance, feature)?;
    Ok(sent?.released)
}

/// A seat checked out for offline use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOut {
    pub activation_id: String,
    /// The Offline Expiry Date the license carries.
    pub offline_expiry: Option<DateTime<Utc>>,
    pub installed: Installed,
}

/// Check the seat out for `hours` of offline use (the server caps them): the license it
/// answers with, carrying the Offline Expiry Date, is installed. On any failure the
/// checkout request is dropped (a new one is made next time).
pub fn checkout(
    client: &Client,
    transport: &dyn Transport,
    credential: Option<Credential>,
    hours: u64,
) -> Result<CheckedOut, LeaseError> {
    let file = client.checkout_request(credential, hours)?;
    let done = (|| {
        let body = exchange(transport, ROUTE_CHECKOUT, &file.armored())?;
        let answer: FileAnswer = parse(&body, "a checkout answer")?;
        let installed = client.install(answer.response.as_bytes())?;
        let (license, _) =
            crate::pool::open::<License>(answer.response.as_bytes(), &client.trusted_keys()?)
                .map_err(crate::client::pool_error)?;
        Ok(CheckedOut {
            activation_id: license.activation_id.clone(),
            offline_expiry: license.offline_expiry,
            installed,
        })
    })();
    if done.is_err() {
        let _ = client.forget(false);
    }
    done
}

/// A checked-out seat returned online.
#[derive(Debug, Clone)]
pub struct CheckedIn {
    pub activation_id: String,
    /// The server had applied this check-in before: nothing changed.
    pub replay: bool,
    /// What applying it flagged on the activation at the server.
    pub flags: Vec<String>,
    /// The server's receipt (armored), verified: it names the check-in file's hash.
    pub receipt: String,
    /// The check-in file sent.
    pub check_in: SignedFile,
}

/// Check the checked-out seat in online: [`Client::check_in`] (the license is removed
/// and a tombstone kept), the file sent to the server, and its receipt verified. If the
/// server cannot be reached the check-in is kept: calling this again sends the same file.
pub fn check_in(client: &Client, transport: &dyn Transport) -> Result<CheckedIn, LeaseError> {
    // A checkout from an on-premise floating server is checked in there: its receipt is
    // signed by the server's device key, which the checkout license's pool names.
    let mut keys = client.trusted_keys()?;
    if let Some(server) = client.checkout_server()? {
        keys.add(server);
    }
    let file = client.check_in()?;
    let body = exchange(transport, ROUTE_CHECKIN, &file.armored())?;
    let answer: FileAnswer = parse(&body, "a check-in answer")?;
    let receipt =
        format::open::<Receipt>(answer.response.as_bytes(), &keys).map_err(ClientError::from)?;
    if receipt.file_hash != file.hash() {
        return Err(LeaseError::BadAnswer(
            "the receipt is for another file than this check-in".into(),
        ));
    }
    Ok(CheckedIn {
        activation_id: answer
            .activation
            .unwrap_or_else(|| receipt.activation_id.clone()),
        replay: answer.replay,
        flags: answer.flags,
        receipt: answer.response,
        check_in: file,
    })
}

/// What the [`LeaseHolder`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HolderEvent {
    /// The lease was renewed.
    Renewed(LeaseInfo),
    /// A seat was taken again — after the server refused the renewal (the seat was
    /// reclaimed, the lease lapsed), or after a violation: the application may go on.
    Retaken { lease: LeaseInfo, grant: Grant },
    /// A renewal failed and is retried quietly: the lease stays valid until `until`.
    Retrying { error: String, until: DateTime<Utc> },
    /// The seat is lost (`lease-lapsed`, `seat-lost` with the server's code,
    /// `server-unreachable`, or the clock turned back): the application should save and
    /// stop. The holder keeps trying to take a seat again.
    Violation(Violation),
}

type EventFn = Arc<dyn Fn(&HolderEvent) + Send + Sync>;

/// How a [`LeaseHolder`] holds its seat.
#[derive(Clone, Default)]
pub struct HolderOptions {
    credential: Option<Credential>,
    feature: Option<String>,
    retry_secs: Option<u64>,
    on_event: Option<EventFn>,
}

impl std::fmt::Debug for HolderOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HolderOptions")
            .field("credential", &self.credential)
            .field("feature", &self.feature)
            .field("retry_secs", &self.retry_secs)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl HolderOptions {
    /// The license key or user id (remembered for the product; needed the first time).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Hold a floating feature's lease rather than the seat's.
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.feature = Some(feature.into());
        self
    }

    /// Seconds between attempts after a failed exchange (default [`DEFAULT_RETRY_SECS`];
    /// never later than the lease lapses).
    pub fn retry_secs(mut self, secs: u64) -> Self {
        self.retry_secs = Some(secs.max(1));
        self
    }

    /// Called with each [`HolderEvent`], from the holder's thread (outside its lock):
    /// keep it short, e.g. send the event on a channel the application reads.
    pub fn on_event(mut self, f: impl Fn(&HolderEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }
}

/// What the holder knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderStatus {
    /// The lease held (or last held).
    pub lease: Option<LeaseInfo>,
    /// The violation reported, until a seat is held again.
    pub violation: Option<Violation>,
    /// Since when the server has not been reached (retrying quietly, or reported).
    pub unreachable_since: Option<DateTime<Utc>>,
    /// When the holder next talks to the server.
    pub next_attempt: DateTime<Utc>,
    /// The holder was stopped (the seat released).
    pub stopped: bool,
    /// Whether the application may go on now: a live lease and no violation.
    pub valid: bool,
}

struct Core {
    lease: Option<LeaseInfo>,
    violation: Option<Violation>,
    unreachable_since: Option<DateTime<Utc>>,
    next_attempt: DateTime<Utc>,
    stopped: bool,
    busy: bool,
}

struct Shared {
    client: Arc<Client>,
    transport: Box<dyn Transport>,
    instance: Nonce,
    options: HolderOptions,
    core: Mutex<Core>,
    wake: Condvar,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Renew,
    Take,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retry(&self) -> Duration {
        secs(self.options.retry_secs.unwrap_or(DEFAULT_RETRY_SECS))
    }

    fn feature(&self) -> Option<&str> {
        self.options.feature.as_deref()
    }

    fn take(&self) -> Result<Granted, LeaseError> {
        take(
            &self.client,
            &*self.transport,
            None,
            self.instance,
            self.feature(),
            false,
        )
    }

    fn emit(&self, events: Vec<HolderEvent>) {
        if let Some(f) = &self.options.on_event {
            events.iter().for_each(|e| f(e));
        }
    }

    /// One step of the timer at `now`: renew when the lease is due (a failure before it
    /// lapses is retried quietly; a refusal, or a failure once it lapsed, is followed by
    /// an attempt to take a seat again before anything is reported), or, after a
    /// violation, try to take a seat again. Returns when it wants to run next.
    fn tick(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let (step, lease) = {
            let mut core = self.lock();
            if core.stopped || core.busy || now < core.next_attempt {
                return core.next_attempt;
            }
            core.busy = true;
            let step = match (&core.lease, &core.violation) {
                (Some(_), None) => Step::Renew,
                _ => Step::Take,
            };
            (step, core.lease.clone())
        };
        let first = match step {
            Step::Renew => renew(
                &self.client,
                &*self.transport,
                self.instance,
                self.feature(),
            ),
            Step::Take => self.take(),
        };
        let live = lease.as_ref().is_some_and(|l| l.live(now));
        let outcome = match first {
            Ok(granted) => Ok((granted, step == Step::Take)),
            Err(e) if e.local_violation().is_some() => Err(e),
            Err(e) if step == Step::Renew && live && !matches!(e, LeaseError::Refused { .. }) => {
                // A short outage costs nothing: the lease holds until it lapses.
                let until = lease.as_ref().map_or(now, LeaseInfo::valid_until);
                let mut core = self.lock();
                core.busy = false;
                core.unreachable_since.get_or_insert(now);
                core.next_attempt = later(now, self.retry()).min(until).max(later(now, secs(1)));
                let next = core.next_attempt;
                drop(core);
                self.wake.notify_all();
                self.emit(vec![HolderEvent::Retrying {
                    error: e.to_string(),
                    until,
                }]);
                return next;
            }
            Err(_) if step == Step::Renew => {
                // Refused, or failing past the lease: try to take a seat again first.
                match self.take() {
                    Ok(granted) => Ok((granted, true)),
                    Err(again) => Err(again),
                }
            }
            Err(e) => Err(e),
        };
        let mut events = Vec::new();
        let mut core = self.lock();
        core.busy = false;
        match outcome {
            Ok((granted, retaken)) => {
                let was_violated = core.violation.take().is_some();
                core.unreachable_since = None;
                core.next_attempt = granted.lease.renew_after.max(later(now, secs(1)));
                core.lease = Some(granted.lease.clone());
                events.push(if retaken || was_violated {
                    HolderEvent::Retaken {
                        lease: granted.lease,
                        grant: granted.grant,
                    }
                } else {
                    HolderEvent::Renewed(granted.lease)
                });
            }
            Err(e) => {
                let lapsed = lease.as_ref().map_or(now, LeaseInfo::valid_until);
                let violation = match &e {
                    e if e.local_violation().is_some() => e.local_violation().cloned(),
                    LeaseError::Refused { code, message, .. } => Some(Violation::SeatLost {
                        code: code.clone(),
                        reason: message.clone(),
                    }),
                    LeaseError::Unreachable(_) | LeaseError::ServerError { .. } => {
                        let since = *core.unreachable_since.get_or_insert(now);
                        Some(Violation::ServerUnreachable {
                            since,
                            lapsed,
                            error: e.to_string(),
                        })
                    }
                    _ => Some(Violation::LeaseLapsed { at: lapsed }),
                };
                if matches!(e, LeaseError::Refused { .. }) {
                    // The server holds no seat for this instance: other processes must not
                    // go on with the lease kept in the store.
                    core.lease = None;
                    let _ = self.client.drop_lease(self.instance, self.feature());
                }
                if let Some(v) = violation {
                    // Reported once; again only when it changes (another code).
                    if core.violation.as_ref().map(Violation::code) != Some(v.code()) {
                        events.push(HolderEvent::Violation(v.clone()));
                    }
                    core.violation = Some(v);
                }
                core.next_attempt = later(now, self.retry());
            }
        }
        let next = core.next_attempt;
        drop(core);
        self.wake.notify_all();
        self.emit(events);
        next
    }

    fn status(&self) -> HolderStatus {
        let now = self.client.now();
        let core = self.lock();
        HolderStatus {
            lease: core.lease.clone(),
            violation: core.violation.clone(),
            unreachable_since: core.unreachable_since,
            next_attempt: core.next_attempt,
            stopped: core.stopped,
            valid: !core.stopped
                && core.violation.is_none()
                && core.lease.as_ref().is_some_and(|l| l.live(now)),
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::seconds(
        i64::try_from(s)
            .unwrap_or(i64::MAX / 1000)
            .min(86_400 * 365),
    )
}

/// The longest the background thread sleeps at once: it wakes at least this often, so a
/// machine that slept (or a clock that jumped) is noticed soon.
const MAX_SLEEP_SECS: u64 = 30;

/// Holds a floating seat (or a floating feature) in the background: renews the lease at
/// its `renew_after`, retries quietly while the lease holds, tries to take a seat again
/// before it reports the seat lost, and releases it on [`stop`](Self::stop) (or when
/// dropped).
///
/// The timer is [`tick`](Self::tick): the thread [`spawn`](Self::spawn) starts calls it
/// with the client's clock; tests (and applications with a loop of their own) call it
/// directly with the time they choose, and nothing sleeps.
pub struct LeaseHolder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseHolder")
            .field("instance", &self.shared.instance)
            .field("status", &self.shared.status())
            .finish_non_exhaustive()
    }
}

impl LeaseHolder {
    /// Take a seat and hold it from a background thread: [`take`](Self::take), then
    /// [`spawn`](Self::spawn). A seat refused now is an error (nothing is held).
    pub fn start(
        client: Arc<Client>,
        transport: impl Transport + 'static,
        options: HolderOptions,
    ) -> Result<LeaseHolder, LeaseError> {
        Ok(Self::take(client, transport, options)?.spawn())
    }

    /// Take a seat (for a new application instance), without a thread: call
    /// [`tick`](Self::tick), or [`spawn`](Self::spawn) one.
    pub fn take(
        client: Arc<Client>,
        transport: impl Transport + 'static,
        options: HolderOptions,
    ) -> Result<LeaseHolder, LeaseError> {
        let instance = new_instance();
        let granted = take(
            &client,
            &transport,
            options.credential.clone(),
            instance,
            options.feature.as_deref(),
            false,
        )?;
        Ok(Self::with_lease(
            client, transport, options, instance, granted,
        ))
    }

    /// Hold a seat already granted to `instance` (e.g. after waiting for one with
    /// [`take`](fn@take) and `wait`), without a thread.
    pub fn with_lease(
        client: Arc<Client>,
        transport: impl Transport + 'static,
        options: HolderOptions,
        instance: Nonce,
        granted: Granted,
    ) -> LeaseHolder {
        let next_attempt = granted.lease.renew_after;
        LeaseHolder {
            shared: Arc::new(Shared {
                client,
                transport: Box::new(transport),
                instance,
                options,
                core: Mutex::new(Core {
                    lease: Some(granted.lease),
                    violation: None,
                    unreachable_since: None,
                    next_attempt,
                    stopped: false,
                    busy: false,
                }),
                wake: Condvar::new(),
            }),
            thread: None,
        }
    }

    /// Run the timer on a background thread, with the client's clock.
    pub fn spawn(mut self) -> LeaseHolder {
        if self.thread.is_some() {
            return self;
        }
        let shared = self.shared.clone();
        self.thread = Some(std::thread::spawn(move || {
            loop {
                let next = shared.tick(shared.client.now());
                let core = shared.lock();
                if core.stopped {
                    return;
                }
                let wait = (next.min(core.next_attempt) - shared.client.now())
                    .to_std()
                    .unwrap_or_default()
                    .clamp(
                        std::time::Duration::from_millis(200),
                        std::time::Duration::from_secs(MAX_SLEEP_SECS),
                    );
                let (core, _) = shared
                    .wake
                    .wait_timeout(core, wait)
                    .unwrap_or_else(|e| e.into_inner());
                if core.stopped {
                    return;
                }
            }
        }));
        self
    }

    /// One step of the timer at `now` (see [`LeaseHolder`]): what it does depends on the
    /// lease and on the last answers; returns when it wants to run next.
    pub fn tick(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.shared.tick(now)
    }

    /// What the holder knows now.
    pub fn status(&self) -> HolderStatus {
        self.shared.status()
    }

    /// The application instance this holder holds the seat for.
    pub fn instance(&self) -> Nonce {
        self.shared.instance
    }

    /// Stop renewing and release the seat: whether the server held one. The lease is
    /// removed from the store even if the server cannot be reached (the seat then frees
    /// itself when the lease lapses).
    pub fn stop(mut self) -> Result<bool, LeaseError> {
        self.halt()
    }

    fn halt(&mut self) -> Result<bool, LeaseError> {
        {
            let mut core = self.shared.lock();
            if core.stopped {
                return Ok(false);
            }
            core.stopped = true;
            while core.busy {
                core = self
                    .shared
                    .wake
                    .wait(core)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        release(
            &self.shared.client,
            &*self.shared.transport,
            self.shared.instance,
            self.shared.feature(),
        )
    }
}

impl Drop for LeaseHolder {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// [`Transport`] over HTTP(S): ureq with rustls and the Mozilla root certificates, so
/// `https://` works without OpenSSL. With the `online` feature.
#[cfg(feature = "online")]
#[derive(Clone)]
pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
}

#[cfg(feature = "online")]
impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A server address that is not `http://` or `https://`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a license server address: give one starting with https:// (for example \
     https://licensing.example.com)"
)]
pub struct BadAddress(pub String);

/// How long one exchange may take, connection included.
#[cfg(feature = "online")]
const HTTP_TIMEOUT_SECS: u64 = 30;
/// The largest answer read: a lease or license answer is far smaller.
#[cfg(feature = "online")]
const MAX_ANSWER: u64 = 1 << 20;

#[cfg(feature = "online")]
impl HttpTransport {
    /// The server at `server` (`https://licensing.example.com`, possibly with a path
    /// prefix; a trailing `/` is fine).
    pub fn new(server: &str) -> Result<Self, BadAddress> {
        let base = server.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) || base.len() < 9 {
            return Err(BadAddress(server.to_string()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(HTTP_TIMEOUT_SECS)))
            .http_status_as_error(false)
            .user_agent(concat!("lic/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpTransport {
            base: base.to_string(),
            agent,
        })
    }

    /// The server's address, as given (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }
}

#[cfg(feature = "online")]
impl Transport for HttpTransport {
    fn post(&self, route: &str, body: &str) -> Result<Reply, Unreachable> {
        let url = format!("{}{route}", self.base);
        let failed = |e: ureq::Error| Unreachable(format!("{url}: {e}"));
        let mut response = self
            .agent
            .post(&url)
            .header("Content-Type", "text/plain")
            .header("Accept", "application/json")
            .send(body)
            .map_err(failed)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(failed)?;
        Ok(Reply { status, body })
    }
}

#[cfg(test)]
mod tests;
