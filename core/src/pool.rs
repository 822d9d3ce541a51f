//! The chain of trust of an on-premise floating server: vendor key → pool license (which
//! names the server's device key and its seats) → lease or checkout license signed by
//! that device key.
//!
//! A client needs only the vendor's keys. A file signed by a vendor key is read as
//! always; a file signed by any other key is accepted only when it carries (in its
//! `pool` field) a pool license the vendor signed for the key that signed it, for the
//! same product and license, and that pool license has not expired. Which pool serial a
//! client has already seen (a refreshed pool replaces the older one) is the caller's to
//! remember: [`Pool::serial`].

use chrono::{DateTime, Utc};

use crate::format::{self, FormatError, Lease, License, Payload, PoolChain, Refresh, Verified};
use crate::keys::{Keyring, PublicKey};

/// A verified pool: what the vendor granted an on-premise floating server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub license_id: String,
    pub activation_id: String,
    pub product: String,
    /// The server's device key: the key that signs its leases.
    pub server_key: PublicKey,
    /// The seats it may lease (the latest refresh's number, else the license's).
    pub seats: u32,
    /// When the pool ends (the latest refresh's expiry, else the license's).
    pub expires: Option<DateTime<Utc>>,
    /// The pool license's serial, or its latest refresh's.
    pub serial: u64,
}

impl Pool {
    /// The pool's state at `now`: refused once it has expired.
    pub fn check_at(&self, now: DateTime<Utc>) -> Result<(), PoolError> {
        match self.expires {
            Some(at) if now >= at => Err(PoolError::Expired { at }),
            _ => Ok(()),
        }
    }

    /// Refused when a higher serial of this pool was seen before (`seen`): the server
    /// runs on a pool license that a refresh replaced (a restored backup, say).
    pub fn check_serial(&self, seen: Option<u64>) -> Result<(), PoolError> {
        match seen {
            Some(seen) if seen > self.serial => Err(PoolError::Superseded {
                serial: self.serial,
                seen,
            }),
            _ => Ok(()),
        }
    }
}

/// Why a file from an on-premise floating server is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("it is not signed by a trusted vendor key, and carries no pool license: {0}")]
    Untrusted(FormatError),
    #[error("the floating server's pool license does not verify: {0}")]
    PoolUntrusted(FormatError),
    #[error("the floating server's license is not a pool license (it holds no seats to lease)")]
    NotAPool,
    #[error("the floating server's pool refresh is not for its pool license ({0})")]
    RefreshMismatch(&'static str),
    #[error("it is not signed by the device key that the floating server's pool license names")]
    WrongSigner,
    #[error("the floating server's pool license expired on {at}")]
    Expired { at: DateTime<Utc> },
    #[error("the floating server's pool license is for `{found}`, not `{expected}`")]
    OtherProduct { expected: String, found: String },
    #[error("the floating server's pool license is for license {found}, not {expected}")]
    OtherLicense { expected: String, found: String },
    #[error(
        "the floating server runs on pool serial {serial}, which serial {seen} (seen before) replaced"
    )]
    Superseded { serial: u64, seen: u64 },
    #[error(transparent)]
    Format(FormatError),
}

impl PoolError {
    /// A stable code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Untrusted(e) | Self::Format(e) => e.code(),
            Self::PoolUntrusted(_)
            | Self::NotAPool
            | Self::RefreshMismatch(_)
            | Self::WrongSigner
            | Self::OtherLicense { .. } => "pool-untrusted",
            Self::Expired { .. } => "pool-expired",
            Self::OtherProduct { .. } => "pool-other-product",
            Self::Superseded { .. } => "pool-superseded",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Untrusted(_) | Self::Format(_) => {
                "take leases only from the vendor's portal or a floating server activated by the vendor"
            }
            Self::Expired { .. } | Self::Superseded { .. } => {
                "ask the floating server's administrator to install the pool refresh from the vendor"
            }
            _ => {
                "this floating server is not activated for this product by the vendor; ask its administrator"
            }
        }
    }
}

/// Verify a pool chain with the vendor's keys: the pool license (a vendor-signed
/// license with `pool_seats`) and, if present, its latest refresh.
pub fn verify_pool(chain: &PoolChain, vendor: &Keyring) -> Result<Pool, PoolError> {
    let license = format::verify::<License>(chain.license.clone(), vendor)
        .map_err(PoolError::PoolUntrusted)?;
    let l = license.payload();
    let seats = l.pool_seats.ok_or(PoolError::NotAPool)?;
    let server_key = PublicKey::from_bytes(&l.device_key.0)
        .map_err(|_| PoolError::PoolUntrusted(FormatError::WeakKey))?;
    let mut pool = Pool {
        license_id: l.license_id.clone(),
        activation_id: l.activation_id.clone(),
        product: l.product.clone(),
        server_key,
        seats,
        expires: l.expires,
        serial: l.serial,
    };
    if let Some(bytes) = &chain.refresh {
        let refresh =
            format::verify::<Refresh>(bytes.clone(), vendor).map_err(PoolError::PoolUntrusted)?;
        let r = refresh.payload();
        if r.activation_id != l.activation_id || r.license_id != l.license_id {
            return Err(PoolError::RefreshMismatch("another activation"));
        }
        if r.device_key != l.device_key || r.product != l.product {
            return Err(PoolError::RefreshMismatch("another device or product"));
        }
        if r.serial > l.serial {
            pool.serial = r.serial;
            pool.expires = r.expires;
            pool.seats = r.pool_seats.unwrap_or(seats);
        }
    }
    Ok(pool)
}

/// A file kind an on-premise floating server signs: a lease, or a checkout license.
pub trait Chained: Payload {
    /// The pool chain it carries.
    fn pool(&self) -> Option<&PoolChain>;
    /// The product and license it is for.
    fn product_license(&self) -> (&str, &str);
}

impl Chained for Lease {
    fn pool(&self) -> Option<&PoolChain> {
        self.pool.as_ref()
    }
    fn product_license(&self) -> (&str, &str) {
        (&self.product, &self.license_id)
    }
}

impl Chained for License {
    fn pool(&self) -> Option<&PoolChain> {
        self.pool.as_ref()
    }
    fn product_license(&self) -> (&str, &str) {
        (&self.product, &self.license_id)
    }
}

/// Read (armored or binary) and verify a file signed by a vendor key or by an on-premise
/// floating server's pool ([`verify`]).
pub fn open<T: Chained>(
    input: &[u8],
    vendor: &Keyring,
) -> Result<(Verified<T>, Option<Pool>), PoolError> {
    let (kind, bytes) = format::unarmor(input).map_err(PoolError::Format)?;
    if let Some(found) = kind.filter(|k| *k != T::KIND) {
        return Err(PoolError::Format(FormatError::WrongKind {
            expected: T::KIND,
            found,
        }));
    }
    verify(bytes, vendor)
}

/// Verify a file signed by a vendor key (no pool), or by the device key of an
/// on-premise floating server whose pool license (carried in the file, signed by a
/// vendor key) is for the same product and license. The pool's expiry and serial are
/// the caller's to check ([`Pool::check_at`], [`Pool::check_serial`]).
pub fn verify<T: Chained>(
    bytes: Vec<u8>,
    vendor: &Keyring,
) -> Result<(Verified<T>, Option<Pool>), PoolError> {
    let unknown = match format::verify::<T>(bytes.clone(), vendor) {
        Ok(file) => return Ok((file, None)),
        Err(e @ FormatError::UnknownKey { .. }) => e,
        Err(e) => return Err(PoolError::Format(e)),
    };
    // Signed by a key the vendor does not list: only a pool's server may be that.
    let Ok(payload) = format::payload_unverified::<T>(&bytes) else {
        return Err(PoolError::Untrusted(unknown));
    };
    let Some(chain) = payload.pool() else {
        return Err(PoolError::Untrusted(unknown));
    };
    let pool = verify_pool(chain, vendor)?;
    let file =
        format::verify::<T>(bytes, &Keyring::with([pool.server_key])).map_err(|e| match e {
            FormatError::UnknownKey { .. } | FormatError::BadSignature => PoolError::WrongSigner,
            e => PoolError::Format(e),
        })?;
    let (product, license) = file.payload().product_license();
    if product != pool.product {
        return Err(PoolError::OtherProduct {
            expected: product.to_owned(),
            found: pool.product.clone(),
        });
    }
    if license != pool.license_id {
        return Err(PoolError::OtherLicense {
            expected: license.to_owned(),
            found: pool.license_id.clone(),
        });
    }
    Ok((file, Some(pool)))
}
