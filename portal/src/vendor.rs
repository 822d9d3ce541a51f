//! Vendor signing keys. Private keys live as PKCS#8 files (mode 0600) in the portal's key
//! directory, never in the database; the database records which keys exist, their public
//! halves and which one is active. Several keys may be trusted at once, so a key can be
//! rotated without stranding files signed by the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lic_core::keys::{KeyError, Keyring, PublicKey, SecretKey};
use sqlx::Row as _;

use crate::db::{Db, is_unique_violation};
use crate::error::PortalError;

/// Generate a vendor signing key at `out` (PKCS#8 PEM, mode 0600). An existing file is
/// only replaced with `force`. Returns the new key's public half.
pub fn generate(out: &Path, force: bool) -> Result<PublicKey, KeyError> {
    let key = SecretKey::generate();
    key.write(out, force)?;
    Ok(key.public())
}

/// The public key (SPKI PEM) of the vendor signing key at `key_path`.
pub fn export(key_path: &Path) -> Result<PublicKey, KeyError> {
    Ok(SecretKey::read(key_path)?.public())
}

/// The file holding the private key with id `kid` in `dir`.
pub fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.key.pem"))
}

/// A public vendor key as the database records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VendorKeyInfo {
    pub kid: String,
    pub active: bool,
    pub created: i64,
    pub retired: Option<i64>,
    /// When it was revoked (never trusted again), if it was.
    pub revoked: Option<i64>,
    pub revoked_reason: Option<String>,
    pub public_pem: String,
}

/// A published key set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySetInfo {
    pub version: i64,
    /// The key that signed it.
    pub signed_by: String,
    pub created: i64,
    /// The key set file, armored.
    pub file: String,
}

/// Create a new signing key in `dir`, record it and make it the active one; the previous
/// active key is retired (still trusted by clients that have it, no longer used to sign).
pub async fn rotate(db: &Db, dir: &Path, now: i64) -> Result<PublicKey, PortalError> {
    rotate_to(db, dir, now, SecretKey::generate()).await
}

/// Make `key` the active signing key (see [`rotate`]). The key file is written into `dir`
/// (mode 0600; the directory is created with mode 0700 if missing) unless it is there
/// already — with several instances, put the file into every instance's key directory
/// first, then rotate to it.
pub async fn rotate_to(
    db: &Db,
    dir: &Path,
    now: i64,
    key: SecretKey,
) -> Result<PublicKey, PortalError> {
    // Private (0700) whatever the umask: it holds the private keys.
    lic_core::fsutil::create_dir_all(dir, lic_core::fsutil::PRIVATE_DIR_MODE)
        .map_err(|e| PortalError::Key(format!("{}: {e}", dir.display())))?;
    let kid = key.kid().to_string();
    let known: Option<i64> = sqlx::query_scalar("SELECT active FROM vendor_keys WHERE kid = $1")
        .bind(&kid)
        .fetch_optional(db.pool())
        .await?;
    if known.is_some() {
        return Err(PortalError::AlreadyExists {
            what: "vendor key",
            id: kid,
        });
    }
    let path = key_path(dir, &kid);
    match key.write(&path, false) {
        Ok(()) => {}
        // The same key, placed there beforehand.
        Err(_) if SecretKey::read(&path).is_ok_and(|k| k.kid().to_string() == kid) => {}
        Err(e) => return Err(PortalError::Key(e.to_string())),
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE vendor_keys SET active = 0, retired = $1 WHERE active = 1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO vendor_keys (kid, public_pem, active, created) VALUES ($1, $2, 1, $3)",
    )
    .bind(&kid)
    .bind(key.public().to_pem())
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(PortalError::Conflict {
                reason: "another key rotation was made at the same moment; its key is the \
                         active one (see `lic-portal key list`)"
                    .into(),
            });
        }
        r => r?,
    };
    tx.commit().await?;
    Ok(key.public())
}

/// The columns of `vendor_keys` that [`KEY_COLUMNS`] selects, as a [`VendorKeyInfo`].
fn key_info(r: &sqlx::any::AnyRow) -> Result<VendorKeyInfo, sqlx::Error> {
    Ok(VendorKeyInfo {
        kid: r.try_get("kid")?,
        public_pem: r.try_get("public_pem")?,
        active: r.try_get::<i64, _>("active")? == 1,
        created: r.try_get("created")?,
        retired: r.try_get("retired")?,
        revoked: r.try_get("revoked")?,
        revoked_reason: r.try_get("revoked_reason")?,
    })
}

/// Every vendor key, active first, newest first.
const KEY_COLUMNS: &str = "SELECT kid, public_pem, active, created, retired, revoked, \
                           revoked_reason FROM vendor_keys ORDER BY active DESC, created DESC";

/// All vendor keys, active first.
pub async fn list(db: &Db) -> Result<Vec<VendorKeyInfo>, PortalError> {
    let rows = sqlx::query(KEY_COLUMNS).fetch_all(db.pool()).await?;
    rows.iter()
        .map(key_info)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

fn public(k: &VendorKeyInfo) -> Result<PublicKey, PortalError> {
    PublicKey::from_pem(&k.public_pem).map_err(|e| PortalError::Key(e.to_string()))
}

/// The keyring clients should trust: every key the portal has signed with and not
/// revoked. (Revoked keys are listed as revoked, so that files they signed are refused
/// with the reason.)
pub async fn keyring(db: &Db) -> Result<Keyring, PortalError> {
    let mut ring = Keyring::new();
    for k in list(db).await? {
        let key = public(&k)?;
        match &k.revoked_reason {
            Some(reason) if k.revoked.is_some() => ring.revoke(key.kid(), reason.clone()),
            _ => ring.add(key),
        }
    }
    Ok(ring)
}

/// Every key the portal ever signed with, revoked ones included: for reading the files
/// the portal itself issued and keeps.
pub async fn own_keys(db: &Db) -> Result<Keyring, PortalError> {
    let mut ring = Keyring::new();
    for k in list(db).await? {
        ring.add(public(&k)?);
    }
    Ok(ring)
}

/// Record that `kid` is revoked (the caller checked that it may be).
pub async fn revoke(db: &Db, kid: &str, reason: &str, now: i64) -> Result<(), PortalError> {
    let done = sqlx::query(
        "UPDATE vendor_keys SET revoked = $1, revoked_reason = $2 \
         WHERE kid = $3 AND active = 0 AND revoked IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(kid)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(PortalError::Conflict {
            reason: format!("vendor key {kid} changed at the same moment; look at it again"),
        });
    }
    Ok(())
}

/// Publish the next key set: every key not revoked, and every revoked key with its
/// reason, signed by `signer` (a key the devices already trust). Returns it.
pub async fn publish_key_set(
    db: &Db,
    signer: &SecretKey,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<KeySetInfo, PortalError> {
    use lic_core::format::{self, Bytes32, KeySet, RevokedKey};
    // One publication at a time (rotations or revocations on several instances at once):
    // each reads the keys and the last version and writes the next one in one transaction.
    let mut tx = db.begin_write().await?;
    if db.backend() == crate::db::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7476110002)")
            .execute(&mut *tx)
            .await?;
    }
    let rows = sqlx::query(KEY_COLUMNS).fetch_all(&mut *tx).await?;
    let keys = rows
        .iter()
        .map(key_info)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM key_sets")
        .fetch_one(&mut *tx)
        .await?;
    let version = last.unwrap_or(0) + 1;
    let mut set = KeySet {
        version: u64::try_from(version).unwrap_or(1),
        keys: Vec::new(),
        revoked: Vec::new(),
        issued: now,
    };
    for k in &keys {
        let key = Bytes32(public(k)?.to_bytes());
        match (k.revoked, &k.revoked_reason) {
            (Some(at), Some(reason)) => set.revoked.push(RevokedKey {
                key,
                reason: reason.clone(),
                revoked: chrono::DateTime::from_timestamp(at, 0).unwrap_or(now),
            }),
            _ => set.keys.push(key),
        }
    }
    let file = format::sign(&set, signer)?.armored();
    let info = KeySetInfo {
        version,
        signed_by: signer.kid().to_string(),
        created: now.timestamp(),
        file,
    };
    sqlx::query("INSERT INTO key_sets (version, signed_by, file, created) VALUES ($1, $2, $3, $4)")
        .bind(info.version)
        .bind(&info.signed_by)
        .bind(&info.file)
        .bind(info.created)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(info)
}

/// The published key sets, oldest first.
pub async fn key_sets(db: &Db) -> Result<Vec<KeySetInfo>, PortalError> {
    let rows =
        sqlx::query("SELECT version, signed_by, file, created FROM key_sets ORDER BY version")
            .fetch_all(db.pool())
            .await?;
    rows.iter()
        .map(|r| {
            Ok(KeySetInfo {
                version: r.try_get("version")?,
                signed_by: r.try_get("signed_by")?,
                file: r.try_get("file")?,
                created: r.try_get("created")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Load the active signing key from `dir`.
pub async fn active(db: &Db, dir: &Path) -> Result<Arc<SecretKey>, PortalError> {
    let kid: Option<String> = sqlx::query_scalar("SELECT kid FROM vendor_keys WHERE active = 1")
        .fetch_optional(db.pool())
        .await?;
    let kid = kid.ok_or_else(|| {
        PortalError::Key(
            "there is no active vendor key: run `lic-portal init` or `lic-portal key rotate`"
                .into(),
        )
    })?;
    let path = key_path(dir, &kid);
    if !path.exists() {
        return Err(PortalError::Key(format!(
            "the active vendor key {kid} has no key file here ({}): copy {kid}.key.pem from the \
             key directory of the instance that made it",
            path.display()
        )));
    }
    let key = SecretKey::read(&path).map_err(|e| PortalError::Key(e.to_string()))?;
    if key.kid().to_string() != kid {
        return Err(PortalError::Key(format!(
            "the key file for {kid} holds another key"
        )));
    }
    Ok(Arc::new(key))
}
