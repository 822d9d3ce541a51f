//! Support's refreshes and server-side deactivations.

use super::*;

impl Portal {
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
        if self.db.backend() == crate::db::Backend::Postgres {
            // The license's row first, as the writer locks it before the activations
            // under it: taken the other way round, the two could deadlock.
            sqlx::query("SELECT id FROM licenses WHERE id = $1 FOR UPDATE")
                .bind(&license)
                .execute(&mut *tx)
                .await?;
        }
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
