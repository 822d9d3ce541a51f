//! Support's refreshes: one device's, and every outdated device of a license.

use super::*;

/// What a refresh gives: the entitlements, a clock-floor reset, a pool's seats.
struct RefreshTerms {
    features: Features,
    expires: Option<DateTime<Utc>>,
    clock_floor: Option<DateTime<Utc>>,
    /// A pool's seats after the refresh (None: not a pool).
    pool_seats: Option<i64>,
}

/// What a device was last issued, as a refresh starts from it.
struct Issued {
    /// Its license, with the last refresh's entitlements and serial over it.
    base: License,
    serial: i64,
    /// An on-premise floating server's pool: the seats it holds now.
    pool_seats: Option<i64>,
}

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
        let issued = self.issued(activation_id).await?;
        let pool_seats = match (spec.pool_seats, issued.pool_seats) {
            (Some(_), None) => {
                return Err(PortalError::NotAPool {
                    activation: activation_id.into(),
                });
            }
            (Some(0), Some(_)) => {
                return Err(PortalError::Invalid {
                    field: "pool_seats",
                    reason: "a pool holds at least one seat; to free them all, the server \
                             deactivates (or `lic-portal activation deactivate`)"
                        .into(),
                });
            }
            (Some(n), Some(_)) => Some(i64::from(n)),
            (None, current) => current,
        };
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
                    issued.base.expires.unwrap_or(now).max(now),
                    days,
                    "the extended expiry",
                )?)
            }
            (None, None) => issued.base.expires,
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
        let features = spec
            .features
            .clone()
            .unwrap_or_else(|| issued.base.features.clone());
        self.create_refresh(
            activation_id,
            &issued,
            RefreshTerms {
                features,
                expires,
                clock_floor,
                pool_seats,
            },
            &spec.reason,
            actor,
        )
        .await
    }

    /// What activation `activation_id`'s device was last issued: its license with the last
    /// refresh (if any) over it, and that file's serial. Refused when the activation is
    /// not active, or its license is revoked or suspended (no refresh then).
    async fn issued(&self, activation_id: &str) -> Result<Issued, PortalError> {
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
        let base = self.last_issued(&row, &keys).await?;
        let lic: String = row.try_get("license")?;
        let lic_row = sqlx::query("SELECT * FROM licenses WHERE id = $1")
            .bind(&lic)
            .fetch_one(self.db.pool())
            .await?;
        match license_row(&lic_row)?.status.as_str() {
            "active" => {}
            "suspended" => return Err(PortalError::LicenseSuspended { license: lic }),
            _ => return Err(PortalError::LicenseRevoked { license: lic }),
        }
        Ok(Issued {
            serial: u64_to_i64(base.serial),
            base,
            pool_seats: row.try_get("pool_seats")?,
        })
    }

    /// The entitlements activation `row`'s device was last issued: the license issued for
    /// its request, with the last refresh (if any) over it (`serial` is that file's).
    /// `license_file` holds the last refresh; the license itself is the response recorded
    /// for the activation request.
    pub(super) async fn last_issued(
        &self,
        row: &AnyRow,
        keys: &Keyring,
    ) -> Result<License, PortalError> {
        let original: String =
            sqlx::query_scalar("SELECT response FROM applied_files WHERE hash = $1")
                .bind(row.try_get::<String, _>("request_hash")?)
                .fetch_one(self.db.pool())
                .await?;
        let mut base = format::open::<License>(original.as_bytes(), keys)?.into_payload();
        let last_refresh: String = row.try_get("license_file")?;
        base.serial = 1;
        if !last_refresh.is_empty() {
            let refresh = format::open::<Refresh>(last_refresh.as_bytes(), keys)?.into_payload();
            base.features = refresh.features;
            base.expires = refresh.expires;
            base.offline_expiry = refresh.offline_expiry;
            base.clock_tolerance = refresh.clock_tolerance;
            base.license_type = refresh.license_type;
            base.serial = refresh.serial;
        }
        Ok(base)
    }

    /// Sign and record a refresh of `issued` with these entitlements (serial + 1), audited
    /// with `reason`. A pool's new number of seats takes them from the license's free
    /// seats (or gives them back) in the same transaction.
    async fn create_refresh(
        &self,
        activation_id: &str,
        issued: &Issued,
        terms: RefreshTerms,
        reason: &str,
        actor: &Actor,
    ) -> Result<String, PortalError> {
        let RefreshTerms {
            features,
            expires,
            clock_floor,
            pool_seats,
        } = terms;
        let now = self.now();
        let base = &issued.base;
        let serial = issued.serial;
        let new_serial = serial + 1;
        let refresh = Refresh {
            // Every refresh of a pool says how many seats it holds, changed or not.
            pool_seats: pool_seats.and_then(|n| u32::try_from(n).ok()),
            license_id: base.license_id.clone(),
            activation_id: activation_id.into(),
            product: base.product.clone(),
            device_key: base.device_key,
            serial: u64::try_from(new_serial).unwrap_or(2),
            features,
            license_type: base.license_type,
            expires,
            offline_expiry: base.offline_expiry,
            clock_tolerance: base.clock_tolerance,
            clock_floor,
            reason: reason.into(),
            issued: now,
        };
        let signer = self.signer().await?;
        let file = format::sign(&refresh, &signer)?;
        let armored = file.armored();
        let mut tx = self.db.begin_write().await?;
        let mut detail = format!("serial {new_serial}");
        if let (Some(current), Some(wanted)) = (issued.pool_seats, pool_seats) {
            if current != wanted {
                self.resize_pool(&mut tx, &base.license_id, current, wanted, now)
                    .await?;
            }
            detail.push_str(&format!(", pool seats {current} -> {wanted}"));
        }
        // (A pool's seats change only with a refresh: the serial guards them too.)
        let updated = sqlx::query(
            "UPDATE activations SET serial = $1, license_file = $2, pool_seats = $5 \
             WHERE id = $3 AND serial = $4 AND state = 'active'",
        )
        .bind(new_serial)
        .bind(&armored)
        .bind(activation_id)
        .bind(serial)
        .bind(pool_seats)
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
            Some(reason),
            Some(&file.hash().to_string()),
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        Ok(armored)
    }

    /// Take a pool from `current` to `wanted` seats of license `license` inside `tx`: its
    /// own seats count as free, with those no one holds (node-locked seats, another
    /// pool's, live floating leases and checkouts); refused with nothing changed when too
    /// few are free. The license row is locked first (on PostgreSQL), as the writer locks
    /// it before the activations under it.
    async fn resize_pool(
        &self,
        tx: &mut crate::db::Tx,
        license: &str,
        current: i64,
        wanted: i64,
        now: DateTime<Utc>,
    ) -> Result<(), PortalError> {
        let lock = if self.db.backend() == crate::db::Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(&format!(
            "SELECT seats, seats_used FROM licenses WHERE id = $1{lock}"
        ))
        .bind(license)
        .fetch_one(&mut **tx)
        .await?;
        let seats: i64 = row.try_get("seats")?;
        let used: i64 = row.try_get("seats_used")?;
        let leased: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM activations WHERE license = $1 AND state = 'active' \
             AND pool_seats IS NULL AND (lease_expires > $2 OR offline_expiry > $2)",
        )
        .bind(license)
        .bind(now.timestamp())
        .fetch_one(&mut **tx)
        .await?;
        decide::pool_resize(seats, used, leased, current, wanted).map_err(|free| {
            PortalError::PoolNoSeat {
                license: license.into(),
                wanted,
                free,
                seats,
            }
        })?;
        sqlx::query(
            "UPDATE licenses SET seats_used = CASE WHEN seats_used + $2 > 0 \
             THEN seats_used + $2 ELSE 0 END WHERE id = $1",
        )
        .bind(license)
        .bind(wanted - current)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The active activations of license `license_id` whose devices were issued other
    /// features or another expiry than the license grants now (after an edit): each needs
    /// a refresh ([`Portal::refresh_to_license`]). Oldest activation first. A floating
    /// seat taken by a lease was issued no license (its request's recorded answer is
    /// empty): each lease carries what the license grants at that moment, so it is never
    /// out of date, and is not listed.
    pub async fn outdated(&self, license_id: &str) -> Result<Vec<Outdated>, PortalError> {
        let license = self.license(license_id).await?;
        let policy = self.policy(&license.policy).await?;
        let rows = sqlx::query(
            "SELECT a.* FROM activations a JOIN applied_files f ON f.hash = a.request_hash \
             WHERE a.license = $1 AND a.state = 'active' AND f.response <> '' \
             ORDER BY a.created, a.id",
        )
        .bind(license_id)
        .fetch_all(self.db.pool())
        .await?;
        let keys = vendor::own_keys(&self.db).await?;
        let mut out = Vec::new();
        for row in &rows {
            let (issued, granted) = self.entitlements(row, &license, &policy, &keys).await?;
            let differs = decide::out_of_date(&issued, &granted);
            if differs.is_empty() {
                continue;
            }
            out.push(Outdated {
                activation: row.try_get("id")?,
                license: license_id.into(),
                device_kid: row.try_get("device_kid")?,
                serial: row.try_get("serial")?,
                last_accessed: row.try_get("last_accessed")?,
                differs: differs.into_iter().map(String::from).collect(),
                issued: issued.into(),
                granted: granted.into(),
            });
        }
        Ok(out)
    }

    /// What activation `row`'s device was issued, and what `license` grants it now.
    async fn entitlements(
        &self,
        row: &AnyRow,
        license: &LicenseInfo,
        policy: &Policy,
        keys: &Keyring,
    ) -> Result<(decide::Entitlements, decide::Entitlements), PortalError> {
        let issued = self.last_issued(row, keys).await?;
        let issued = decide::Entitlements {
            features: issued.features,
            expires: issued.expires.map(|t| t.timestamp()),
        };
        let granted = decide::granted(
            license.features.as_ref(),
            &policy.features,
            license.expires,
            policy.validity_days,
            row.try_get("created")?,
        );
        Ok((issued, granted))
    }

    /// Support: a refresh that gives activation `activation_id`'s device what its license
    /// grants now (features and expiry; the rest as last issued), serial + 1, audited with
    /// `reason` as any refresh. `None` when the device has that already (nothing made).
    pub async fn refresh_to_license(
        &self,
        activation_id: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<Option<String>, PortalError> {
        require_reason(reason, "a refresh")?;
        let issued = self.issued(activation_id).await?;
        let license = self.license(&issued.base.license_id).await?;
        let policy = self.policy(&license.policy).await?;
        let row = sqlx::query("SELECT * FROM activations WHERE id = $1")
            .bind(activation_id)
            .fetch_one(self.db.pool())
            .await?;
        let keys = vendor::own_keys(&self.db).await?;
        let (had, granted) = self.entitlements(&row, &license, &policy, &keys).await?;
        if decide::out_of_date(&had, &granted).is_empty() {
            return Ok(None);
        }
        let expires = granted.expires.map(time);
        let pool_seats = issued.pool_seats;
        self.create_refresh(
            activation_id,
            &issued,
            RefreshTerms {
                features: granted.features,
                expires,
                clock_floor: None,
                pool_seats,
            },
            reason,
            actor,
        )
        .await
        .map(Some)
    }
}
