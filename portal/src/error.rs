//! Portal errors: each with a stable code, an HTTP status and a message a person
//! understands, plus what to do next.

use std::borrow::Cow;

use lic_core::floating::Refusal;
use lic_core::format::FormatError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    /// The uploaded file was refused by the format checks.
    #[error(transparent)]
    File(#[from] FormatError),
    #[error(
        "no license matches this license key or user for product '{product}'{}",
        typo.as_ref().map_or(String::new(), |t| format!(" (the key looks mistyped: {t})"))
    )]
    UnknownLicense {
        product: String,
        /// What [`lic_core::license_key::check`] says of a key of the checksummed shape
        /// that fails it: which group looks wrong. `None` for other keys and user ids.
        typo: Option<String>,
    },
    #[error(
        "this license key belongs to product '{license_product}', not to '{requested}' named in the request"
    )]
    WrongProduct {
        requested: String,
        license_product: String,
    },
    #[error("license {license} is revoked")]
    LicenseRevoked { license: String },
    #[error("license {license} is suspended")]
    LicenseSuspended { license: String },
    #[error(
        "license {license} cannot have {seats} seat(s): {in_use} of its seats are held now (by \
         devices, or by an on-premise floating server's pool); free {} of them first",
        in_use - seats
    )]
    SeatsInUse {
        license: String,
        seats: i64,
        in_use: i64,
    },
    #[error(
        "the activation request lacks fingerprint component(s) {} that the license's policy \
         binds it to",
        components.join(", ")
    )]
    MissingComponents { components: Vec<String> },
    #[error(
        "the {kind} for activation {activation} cannot be counted: the total of '{feature}' \
         would pass the largest counter lic keeps (2^53 - 1)"
    )]
    UsageOutOfRange {
        kind: String,
        activation: String,
        feature: String,
    },
    #[error("activation {activation} was closed by the device's deactivation file: {reason}")]
    ActivationClosed { activation: String, reason: String },
    #[error(
        "this {kind} was written before the device's deactivation file of activation \
         {activation}, which already counted it"
    )]
    Superseded { kind: String, activation: String },
    #[error("license {license} may not be activated offline")]
    OfflineNotAllowed { license: String },
    #[error(
        "license {license} is a subscription; subscriptions cannot be activated or managed offline"
    )]
    SubscriptionOffline { license: String },
    #[error("no seat left on license {license} ({seats} of {seats} in use)")]
    NoSeatLeft { license: String, seats: i64 },
    #[error(
        "license {license} was deactivated {count} times in the last {days} days, the most its policy allows; \
         the next activation is possible from {from}"
    )]
    TooManyDeactivations {
        license: String,
        count: i64,
        days: i64,
        from: String,
    },
    #[error(
        "license {license} has used {total} of its total of {limit} '{feature}' across its \
         devices: it takes no new seat and reissues none"
    )]
    LicenseTotalReached {
        license: String,
        feature: String,
        total: u64,
        limit: u64,
    },
    /// A floating server's refusal (lic_core::floating): no seat, too many processes, a
    /// seat checked out until its OED, a stale request…
    #[error(transparent)]
    Floating(Refusal),
    #[error("license {license} is floating: its seats are leased online, not activated offline")]
    FloatingOnlineOnly { license: String },
    #[error("license {license} is not floating: it has no seats to lease or check out")]
    NotFloating { license: String },
    #[error(
        "license {license} is not floating: an on-premise floating server's pool holds seats \
         of a floating license only"
    )]
    PoolNotFloating { license: String },
    #[error(
        "license {license} has {free} of its {seats} seat(s) free, fewer than the {wanted} \
         the pool asks for (seats are held by devices, floating leases and checkouts)"
    )]
    PoolNoSeat {
        license: String,
        wanted: i64,
        free: i64,
        seats: i64,
    },
    #[error(
        "license {license} already has a pool: activation {activation}, held by another \
         on-premise floating server; a license has one pool at a time"
    )]
    PoolHeld { license: String, activation: String },
    #[error(
        "{}",
        if *pool {
            format!(
                "this device holds license {license}'s pool (activation {activation}): an \
                 on-premise floating server leases its pool's seats itself and takes no \
                 other seat of the license"
            )
        } else {
            format!(
                "this device already holds a seat of license {license} (activation \
                 {activation}): a pool is held by a device that has no other seat of the \
                 license"
            )
        }
    )]
    DeviceHasSeat {
        license: String,
        activation: String,
        /// The seat the device holds is the license's pool.
        pool: bool,
    },
    #[error(
        "activation {activation} is not an on-premise floating server's pool: it has no \
         pool seats to change"
    )]
    NotAPool { activation: String },
    #[error("{route} takes a lease request of action `{expected}`, not `{found}`")]
    WrongAction {
        route: &'static str,
        expected: &'static str,
        found: &'static str,
        /// The route that takes the request's action.
        right: &'static str,
    },
    #[error("this lease request was applied before: a request is taken once")]
    RequestReplayed,
    #[error(
        "activation {activation} is not checked out: a check-in file returns a seat checked \
         out for offline use"
    )]
    NotCheckedOut { activation: String },
    #[error("no activation {activation} is known")]
    UnknownActivation { activation: String },
    #[error("{what} '{id}' was not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} '{id}' already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("invalid cursor: {reason}")]
    InvalidCursor { reason: String },
    #[error("activation {activation} is not active (it is {state})")]
    NotActive { activation: String, state: String },
    #[error("{reason}")]
    Conflict { reason: String },
    #[error("vendor key {kid} is the active signing key and cannot be revoked")]
    KeyActive { kid: String },
    #[error("vendor key {kid} is revoked already")]
    AlreadyRevoked { kid: String },
    #[error("the vendor signing key could not be used: {0}")]
    Key(String),
    #[error("authentication required: send a bearer token (Authorization: Bearer TOKEN)")]
    Unauthenticated,
    #[error("this token may not {action}")]
    Forbidden { action: String },
    #[error("too many requests; try again in a minute")]
    RateLimited,
    #[error("the name or the password is wrong, or the account is disabled")]
    SignInFailed,
    #[error(
        "license for user '{user}' of {product}: the user must sign in on the portal's pages before a request naming them may take a seat"
    )]
    SignInRequired { product: String, user: String },
    #[error("the database failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the database failed: {0}")]
    Storage(String),
    /// The disk that holds the database is full: nothing of the request was written.
    #[error("the portal's database has no space left on its disk: {0}")]
    StorageFull(String),
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
}

/// SQLSTATE classes of a database that is going away or not there: connection
/// exceptions (08…) and an operator or a crash shutting it down (57P01–57P03).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

impl PortalError {
    /// Whether the database could not be reached (down, restarting, a lost connection):
    /// nothing was changed, and the same request can be sent again (HTTP 503).
    pub fn unavailable(&self) -> bool {
        match self {
            PortalError::Unavailable(_) => true,
            PortalError::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_sqlstate(&c)),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether the disk of the database is full (nothing of the request was written):
    /// the writer's [`PortalError::StorageFull`], or the same from a statement sent
    /// through the pool (PostgreSQL's SQLSTATE 53100, SQLite's SQLITE_FULL).
    pub fn storage_full(&self) -> bool {
        match self {
            PortalError::StorageFull(_) => true,
            PortalError::Db(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|c| c == "53100" || c == "13")
            }
            _ => false,
        }
    }

    /// [`PortalError::Unavailable`] for a SQLSTATE of a database going away, else `None`.
    pub fn from_sqlstate(code: &str, message: &str) -> Option<PortalError> {
        unavailable_sqlstate(code).then(|| PortalError::Unavailable(message.to_string()))
    }

    /// A stable code for clients and the JSON API.
    pub fn code(&self) -> &'static str {
        match self {
            PortalError::File(e) => e.code(),
            PortalError::UnknownLicense { .. } => "unknown-license",
            PortalError::WrongProduct { .. } => "wrong-product",
            PortalError::LicenseRevoked { .. } => "license-revoked",
            PortalError::LicenseSuspended { .. } => "license-suspended",
            PortalError::SeatsInUse { .. } => "seats-in-use",
            PortalError::MissingComponents { .. } => "missing-component",
            PortalError::UsageOutOfRange { .. } => "usage-out-of-range",
            PortalError::ActivationClosed { .. } => "activation-closed",
            PortalError::Superseded { .. } => "superseded",
            PortalError::OfflineNotAllowed { .. } => "offline-not-allowed",
            PortalError::SubscriptionOffline { .. } => "subscription-offline",
            PortalError::NoSeatLeft { .. } => "no-seat-left",
            PortalError::TooManyDeactivations { .. } => "too-many-deactivations",
            PortalError::LicenseTotalReached { .. } => "license-total-reached",
            PortalError::Floating(r) => r.code(),
            PortalError::FloatingOnlineOnly { .. } => "floating-online-only",
            PortalError::NotFloating { .. } => "license-not-floating",
            PortalError::PoolNotFloating { .. } => "pool-not-floating",
            PortalError::PoolNoSeat { .. } => "no-seat",
            PortalError::PoolHeld { .. } => "pool-held",
            PortalError::DeviceHasSeat { .. } => "device-has-seat",
            PortalError::NotAPool { .. } => "not-a-pool",
            PortalError::WrongAction { .. } => "wrong-action",
            PortalError::RequestReplayed => "request-replayed",
            PortalError::NotCheckedOut { .. } => "not-checked-out",
            PortalError::UnknownActivation { .. } => "unknown-activation",
            PortalError::NotFound { .. } => "not-found",
            PortalError::AlreadyExists { .. } => "already-exists",
            PortalError::Invalid { .. } => "invalid",
            PortalError::InvalidCursor { .. } => "invalid-cursor",
            PortalError::NotActive { .. } => "not-active",
            PortalError::Conflict { .. } => "conflict",
            PortalError::KeyActive { .. } => "key-active",
            PortalError::AlreadyRevoked { .. } => "already-revoked",
            PortalError::Key(_) => "vendor-key",
            PortalError::Unauthenticated => "unauthenticated",
            PortalError::Forbidden { .. } => "forbidden",
            PortalError::RateLimited => "rate-limited",
            PortalError::SignInFailed => "sign-in-failed",
            PortalError::SignInRequired { .. } => "sign-in-required",
            e if e.unavailable() => "database-unavailable",
            e if e.storage_full() => "storage-full",
            PortalError::Db(_)
            | PortalError::Storage(_)
            | PortalError::StorageFull(_)
            | PortalError::Unavailable(_) => "internal",
        }
    }

    /// The HTTP status for the error.
    pub fn status(&self) -> u16 {
        match self {
            PortalError::File(FormatError::TooLarge { .. }) => 413,
            PortalError::File(_)
            | PortalError::Invalid { .. }
            | PortalError::InvalidCursor { .. }
            | PortalError::WrongProduct { .. }
            | PortalError::MissingComponents { .. }
            | PortalError::UsageOutOfRange { .. }
            | PortalError::WrongAction { .. }
            | PortalError::Floating(Refusal::Stale { .. }) => 400,
            PortalError::Floating(Refusal::LicenseExpired { .. } | Refusal::CheckoutNotAllowed)
            | PortalError::FloatingOnlineOnly { .. } => 403,
            PortalError::Floating(_)
            | PortalError::NotFloating { .. }
            | PortalError::PoolNotFloating { .. }
            | PortalError::PoolNoSeat { .. }
            | PortalError::PoolHeld { .. }
            | PortalError::DeviceHasSeat { .. }
            | PortalError::NotAPool { .. }
            | PortalError::RequestReplayed
            | PortalError::NotCheckedOut { .. } => 409,
            PortalError::UnknownLicense { .. }
            | PortalError::UnknownActivation { .. }
            | PortalError::NotFound { .. } => 404,
            PortalError::LicenseRevoked { .. }
            | PortalError::LicenseSuspended { .. }
            | PortalError::OfflineNotAllowed { .. }
            | PortalError::SubscriptionOffline { .. }
            | PortalError::Forbidden { .. } => 403,
            PortalError::NoSeatLeft { .. }
            | PortalError::SeatsInUse { .. }
            | PortalError::TooManyDeactivations { .. }
            | PortalError::LicenseTotalReached { .. }
            | PortalError::AlreadyExists { .. }
            | PortalError::NotActive { .. }
            | PortalError::ActivationClosed { .. }
            | PortalError::Superseded { .. }
            | PortalError::KeyActive { .. }
            | PortalError::AlreadyRevoked { .. }
            | PortalError::Conflict { .. } => 409,
            PortalError::Unauthenticated | PortalError::SignInFailed => 401,
            PortalError::SignInRequired { .. } => 403,
            PortalError::RateLimited => 429,
            e if e.unavailable() => 503,
            e if e.storage_full() => 507,
            PortalError::Key(_)
            | PortalError::Db(_)
            | PortalError::Storage(_)
            | PortalError::StorageFull(_)
            | PortalError::Unavailable(_) => 500,
        }
    }

    /// What the person should do next.
    pub fn hint(&self) -> Cow<'static, str> {
        match self {
            PortalError::Floating(r) => Cow::Owned(r.hint()),
            PortalError::WrongAction { right, .. } => {
                Cow::Owned(format!("send this request to {right}"))
            }
            other => Cow::Borrowed(other.static_hint()),
        }
    }

    fn static_hint(&self) -> &'static str {
        match self {
            PortalError::Floating(_) | PortalError::WrongAction { .. } => "see the message",
            PortalError::FloatingOnlineOnly { .. } => {
                "take a seat online with `lic lease --server URL -- COMMAND`, or check one out \
                 for offline use with `lic checkout --server URL --hours H`"
            }
            PortalError::NotFloating { .. } => {
                "activate this license (`lic activate --server URL`, or `lic offline-activate`); \
                 only floating licenses lease seats"
            }
            PortalError::PoolNotFloating { .. } => {
                "pools are for floating licenses: ask the vendor for a floating license for \
                 the on-premise floating server (or activate this license on each machine)"
            }
            PortalError::PoolNoSeat { .. } => {
                "make the server's request again for no more seats than are free \
                 (`lic offline-activate --pool-seats N`), free seats (deactivate devices, \
                 release leases), or ask the vendor for more seats; nothing was changed"
            }
            PortalError::PoolHeld { .. } => {
                "the server that holds the pool must deactivate first (upload its \
                 deactivation file), or the vendor's support can give that pool more seats \
                 (`lic-portal refresh --activation ACTIVATION --seats N`); nothing was changed"
            }
            PortalError::DeviceHasSeat { pool: true, .. } => {
                "use a client machine for leases (the server leases the pool's seats to its \
                 clients), or deactivate the pool first"
            }
            PortalError::DeviceHasSeat { .. } => {
                "run the floating server on another machine, or free this device's seat first \
                 (release its lease, or `lic-portal activation deactivate ACTIVATION --reason \
                 …`) and apply the request again; nothing was changed"
            }
            PortalError::NotAPool { .. } => {
                "refresh it without --seats (pool_seats); only an on-premise floating server's \
                 pool activation has seats to change"
            }
            PortalError::RequestReplayed => {
                "make a new request (lic does for each attempt); a copy of an earlier request \
                 is not taken again"
            }
            PortalError::NotCheckedOut { .. } => {
                "nothing to return: release an online lease by closing the application (or \
                 `lic checkin --server URL`)"
            }
            PortalError::File(e) => e.hint(),
            PortalError::UnknownLicense { .. } => {
                "check the license key (or user id) and the product in the activation request"
            }
            PortalError::WrongProduct { .. } => {
                "make the request again with the product this license key is for \
                 (lic offline-activate --product PRODUCT), or use the key for this product"
            }
            PortalError::LicenseRevoked { .. } => "contact the vendor about this license",
            PortalError::LicenseSuspended { .. } => {
                "contact the vendor about this license: it is suspended for now (the vendor \
                 makes it active again with `lic-portal license edit ID --status active`)"
            }
            PortalError::SeatsInUse { .. } => {
                "list the license's devices (`lic-portal activation list --license ID`), free the \
                 seats of those that no longer need one (their deactivation files, or \
                 `lic-portal activation deactivate ACTIVATION --reason …`) or give a pool fewer \
                 seats (`lic-portal refresh --activation ACTIVATION --seats N`), then lower the \
                 seats; nothing was changed"
            }
            PortalError::MissingComponents { .. } => {
                "make the request with `lic offline-activate` on the machine the license is for: \
                 it sends every component the machine has (for `declared-id`, set LIC_DEVICE_ID \
                 to the id your administrator declared for this machine first); a machine that \
                 cannot provide a component needs a policy that does not require it — ask the \
                 vendor"
            }
            PortalError::UsageOutOfRange { .. } => {
                "the counters are beyond what the portal counts; do not upload the file again — \
                 the vendor's support must look at this activation"
            }
            PortalError::ActivationClosed { .. } => {
                "this device's license was deactivated and its final usage counted; files from \
                 a store restored from a backup are not accepted. Activate again to use the \
                 product (the attempt was recorded)"
            }
            PortalError::Superseded { .. } => {
                "nothing to do: the deactivation file holds the final counters"
            }
            PortalError::OfflineNotAllowed { .. } | PortalError::SubscriptionOffline { .. } => {
                "activate this license online, or ask the vendor for a license that allows offline use"
            }
            PortalError::NoSeatLeft { .. } => {
                "deactivate the license on a machine that no longer needs it (upload its \
                 deactivation file), or ask the vendor for more seats"
            }
            PortalError::LicenseTotalReached { .. } => {
                "ask the vendor to raise the license's total (or for a new license); the \
                 devices that hold a seat keep it"
            }
            PortalError::TooManyDeactivations { .. } => {
                "wait until the date given, or ask the vendor's support to allow it"
            }
            PortalError::UnknownActivation { .. } => {
                "the file belongs to an activation this portal does not know: upload it to the \
                 vendor portal that issued the license"
            }
            PortalError::NotFound { .. } => "check the id",
            PortalError::AlreadyExists { .. } => "choose another id, or use the existing one",
            PortalError::Invalid { .. } => "correct the value and try again",
            PortalError::InvalidCursor { .. } => {
                "pass the `next` of the page before unchanged, to the same list (after=NEXT, \
                 --after NEXT); leave it out to start again from the first page"
            }
            PortalError::NotActive { .. } => "nothing to do: the activation is already inactive",
            PortalError::Conflict { .. } => {
                "something changed it at the same moment: look at it again, then try again"
            }
            PortalError::Key(_) => "check the portal's key directory and the active vendor key",
            PortalError::KeyActive { .. } => {
                "rotate to a new signing key first (`lic-portal key rotate`), then revoke this one"
            }
            PortalError::AlreadyRevoked { .. } => {
                "nothing to do: devices learn of it from the newest key set (`lic-portal key \
                 keyset`)"
            }
            PortalError::Unauthenticated => {
                "create a token with `lic-portal token create` and send it"
            }
            PortalError::Forbidden { .. } => "use a token with the role and products this needs",
            PortalError::RateLimited => "wait a minute before uploading again",
            PortalError::SignInFailed => {
                "check the name and the password; a forgotten password is reset by the vendor's \
                 staff"
            }
            PortalError::SignInRequired { .. } => {
                "sign in on the portal's page /signin with the user's name and password, then \
                 send the request from the activation page; the vendor's support sets or resets \
                 the password"
            }
            e if e.unavailable() => {
                "send the same request again in a few seconds: the portal reconnects by itself \
                 when its database is back, and a file it had applied gets the same answer \
                 again, never a second seat"
            }
            e if e.storage_full() => {
                "nothing of this request was applied: the disk of the portal's database is \
                 full. The portal's operator must free space on it (the database is intact); \
                 then send the same file again"
            }
            PortalError::Db(_)
            | PortalError::Storage(_)
            | PortalError::StorageFull(_)
            | PortalError::Unavailable(_) => {
                "try again later; if it persists, the portal's operator must look at its log"
            }
        }
    }
}
