//! The vendor's signing keys: the active signer, key sets, rotation, revocation, and
//! files signed again with the current key.

use super::*;

impl Portal {
    /// The active signing key. Another instance (or `lic-portal key rotate`) may have
    /// rotated it: the database is asked again at most every KEY_RECHECK.
    pub(super) async fn signer(&self) -> Result<Arc<SecretKey>, PortalError> {
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

    pub(super) fn set_signer(&self, key: Arc<SecretKey>) {
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
}
