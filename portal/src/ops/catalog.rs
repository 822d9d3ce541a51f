//! The catalog: products, policies and licenses.

use super::*;

impl Portal {
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

    /// Every product (see [`Portal::list_products`] for a page at a time).
    pub async fn products(&self, scope: Option<&[String]>) -> Result<Vec<Product>, PortalError> {
        every!(page => self.list_products(scope, &page).await)
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

    pub async fn create_policy(
        &self,
        mut spec: Policy,
        actor: &Actor,
    ) -> Result<Policy, PortalError> {
        self.product(&spec.product).await?;
        if spec.license_type == LicenseType::Floating {
            // The old spelling: floating is not a license model but a way of holding seats.
            spec.license_type = LicenseType::Perpetual;
            spec.floating = true;
        }
        check_floating_terms(&spec)?;
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
        check_totals(&spec.total_limits, "total_limits")?;
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
            reclaim_every_secs: spec.reclaim.then(|| {
                spec.reclaim_every_secs
                    .unwrap_or(DEFAULT_RECLAIM_EVERY_SECS)
            }),
            reclaim_since: spec.reclaim.then(|| now.timestamp()),
            ..spec
        };
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO policies (id, product, name, license_type, allow_offline, seats, validity_days, \
             features, match_required, match_max_changed, clock_tolerance_secs, max_offline_days, \
             inactivity_secs, max_deactivations, deactivation_period_days, created, total_limits, \
             refuse_over_total, floating, lease_secs, renew_percent, max_processes, revival_secs, \
             max_checkout_hours, lease_oed_hours, reclaim, reclaim_every_secs, reclaim_since) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
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
        .bind(json(&policy.total_limits))
        .bind(flag(policy.refuse_over_total))
        .bind(flag(policy.floating))
        .bind(u64_to_i64(policy.lease_secs))
        .bind(i64::from(policy.renew_percent))
        .bind(policy.max_processes.map(i64::from))
        .bind(u64_to_i64(policy.revival_secs))
        .bind(policy.max_checkout_hours.map(u64_to_i64))
        .bind(policy.lease_oed_hours.map(u64_to_i64))
        .bind(flag(policy.reclaim))
        .bind(policy.reclaim_every_secs)
        .bind(policy.reclaim_since)
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

    /// Every policy (see [`Portal::list_policies`] for a page at a time).
    pub async fn policies(&self, scope: Option<&[String]>) -> Result<Vec<Policy>, PortalError> {
        every!(page => self.list_policies(&PolicyFilter::default(), scope, &page).await)
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
        if let Some(totals) = &spec.total_limits {
            check_totals(totals, "total_limits")?;
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
        if let Some(c) = &spec.customer {
            check_customer(c)?;
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
             seats_used, features, expires, status, created, total_limits, refuse_over_total, \
             customer, floating) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, 'active', $11, $12, $13, $14, $15)",
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
        .bind(json(spec.total_limits.as_ref().unwrap_or(&policy.total_limits)))
        .bind(flag(policy.refuse_over_total))
        .bind(&spec.customer)
        .bind(flag(policy.floating))
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

    pub(super) async fn license_info(&self, r: &AnyRow) -> Result<LicenseInfo, PortalError> {
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

    pub(super) fn license_info_with(
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
            customer: r.try_get("customer")?,
            allow_offline: row.allow_offline,
            seats: row.seats,
            seats_used: r.try_get("seats_used")?,
            features: row.features,
            expires: row.expires,
            status: row.status,
            created: r.try_get("created")?,
            usage,
            revision: row.revision,
            total_limits: row.total_limits,
            refuse_over_total: row.refuse_over_total,
            floating: row.floating,
        })
    }

    /// Every license (see [`Portal::list_licenses`] for a page at a time).
    pub async fn licenses(
        &self,
        scope: Option<&[String]>,
    ) -> Result<Vec<LicenseInfo>, PortalError> {
        every!(page => self.list_licenses(&LicenseFilter::default(), scope, &page).await)
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

    /// Edit a license: seats, fixed expiry, features, offline override, status (active or
    /// suspended). The reason is required; the audit entry (`license.edit`) keeps it and
    /// every field changed, before and after. Every edit adds one to the license's
    /// revision, which every portal instance's next activation of the license sees.
    /// Devices already activated keep what they were issued until they install a refresh
    /// (see [`Portal::outdated`]). Nothing is changed when any value is refused.
    pub async fn edit_license(
        &self,
        id: &str,
        edit: LicenseEdit,
        reason: &str,
        actor: &Actor,
    ) -> Result<EditedLicense, PortalError> {
        require_reason(reason, "an edit of a license")?;
        if edit.is_empty() {
            return Err(PortalError::Invalid {
                field: "edit",
                reason: "nothing to change: give seats, expires, features, allow_offline, \
                         status, total_limits or refuse_over_total"
                    .into(),
            });
        }
        let now = self.now();
        if let Some(Some(e)) = edit.expires {
            given_time(e, now, "expires")?;
        }
        if let Some(features) = &edit.features {
            check_features(features, "features")?;
        }
        if let Some(totals) = &edit.total_limits {
            check_totals(totals, "total_limits")?;
        }
        if let Some(status) = &edit.status {
            // (An unknown status is refused before the license is even read.)
            decide::status_change("active", status).map_err(|reason| PortalError::Invalid {
                field: "status",
                reason,
            })?;
        }
        let mut tx = self.db.begin_write().await?;
        // The row as it is, locked on PostgreSQL (as the writer locks it for activations):
        // the seats in use cannot change between this read and the update.
        let lock = if self.db.backend() == crate::db::Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(&format!("SELECT * FROM licenses WHERE id = $1{lock}"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| PortalError::NotFound {
                what: "license",
                id: id.into(),
            })?;
        let before = Self::license_info_with(&row, BTreeMap::new())?;
        if let Some(status) = &edit.status {
            decide::status_change(&before.status, status).map_err(|reason| {
                PortalError::Invalid {
                    field: "status",
                    reason: format!("license {id}: {reason}"),
                }
            })?;
        } else if before.status == "revoked" {
            decide::status_change("revoked", "revoked").map_err(|reason| PortalError::Invalid {
                field: "license",
                reason: format!("license {id}: {reason}"),
            })?;
        }
        if let Some(seats) = edit.seats {
            decide::seats_change(seats, before.seats_used).map_err(|refused| match refused {
                decide::SeatsRefused::BelowOne => PortalError::Invalid {
                    field: "seats",
                    reason: "a license has at least one seat".into(),
                },
                decide::SeatsRefused::InUse { in_use } => PortalError::SeatsInUse {
                    license: id.into(),
                    seats,
                    in_use,
                },
            })?;
        }
        if edit.expires == Some(None) {
            let policy = self.policy(&before.policy).await?;
            if let Some(days) = policy.validity_days {
                return Err(PortalError::Invalid {
                    field: "expires",
                    reason: format!(
                        "license {id}'s policy {} gives each activation {days} days from its \
                         activation, which would apply without a fixed expiry: the license \
                         would not be \"never\" expiring. Give a date instead (9999-12-31 \
                         for no practical end)",
                        policy.id
                    ),
                });
            }
        }
        let after = LicenseInfo {
            seats: edit.seats.unwrap_or(before.seats),
            expires: edit.expires.unwrap_or(before.expires),
            features: edit.features.clone().or_else(|| before.features.clone()),
            allow_offline: edit.allow_offline.or(before.allow_offline),
            status: edit.status.clone().unwrap_or_else(|| before.status.clone()),
            total_limits: edit
                .total_limits
                .clone()
                .unwrap_or_else(|| before.total_limits.clone()),
            refuse_over_total: edit.refuse_over_total.unwrap_or(before.refuse_over_total),
            ..before.clone()
        };
        let mut changes = Vec::new();
        let mut note = |field: &str, b: serde_json::Value, a: serde_json::Value| {
            if b != a {
                changes.push(LicenseChange {
                    field: field.into(),
                    before: b,
                    after: a,
                });
            }
        };
        use serde_json::json as j;
        note("seats", j!(before.seats), j!(after.seats));
        note("expires", j!(before.expires), j!(after.expires));
        note("features", j!(before.features), j!(after.features));
        note(
            "allow_offline",
            j!(before.allow_offline),
            j!(after.allow_offline),
        );
        note("status", j!(before.status), j!(after.status));
        note(
            "total_limits",
            j!(before.total_limits),
            j!(after.total_limits),
        );
        note(
            "refuse_over_total",
            j!(before.refuse_over_total),
            j!(after.refuse_over_total),
        );
        if changes.is_empty() {
            // Already so: nothing written, no revision, no audit entry.
            drop(tx);
            return Ok(EditedLicense {
                license: self.license(id).await?,
                changes,
            });
        }
        let updated = sqlx::query(
            "UPDATE licenses SET seats = $1, expires = $2, features = $3, allow_offline = $4, \
             status = $5, total_limits = $8, refuse_over_total = $9, revision = revision + 1 \
             WHERE id = $6 AND revision = $7 AND seats_used <= $1",
        )
        .bind(after.seats)
        .bind(after.expires)
        .bind(after.features.as_ref().map(json))
        .bind(after.allow_offline.map(flag))
        .bind(&after.status)
        .bind(id)
        .bind(before.revision)
        .bind(json(&after.total_limits))
        .bind(flag(after.refuse_over_total))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // (SQLite writes one transaction at a time and PostgreSQL's row is locked: only
            // something outside the portal gets here.)
            return Err(PortalError::Conflict {
                reason: format!("license {id} changed while it was edited"),
            });
        }
        audit(
            &mut *tx,
            now.timestamp_millis(),
            actor,
            "license.edit",
            Some(id),
            Some(reason),
            None,
            Some(&json(&changes)),
        )
        .await?;
        tx.commit().await?;
        self.forget_license(id);
        Ok(EditedLicense {
            license: self.license(id).await?,
            changes,
        })
    }

    /// Drop this instance's cached copy of a license (other instances find theirs stale
    /// by its revision).
    pub(super) fn forget_license(&self, id: &str) {
        self.licenses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, cached| cached.0.id != id);
    }
}

/// A policy's floating terms and reclamation settings: usable (lic_core's rules), and
/// given only to a floating policy.
pub(super) fn check_floating_terms(spec: &Policy) -> Result<(), PortalError> {
    let invalid = |reason: String| PortalError::Invalid {
        field: "policy",
        reason,
    };
    let defaults = lic_core::floating::Terms::default();
    if !spec.floating {
        let given = [
            ("lease_secs", spec.lease_secs != defaults.lease_secs),
            (
                "renew_percent",
                spec.renew_percent != defaults.renew_percent,
            ),
            ("max_processes", spec.max_processes.is_some()),
            ("revival_secs", spec.revival_secs != 0),
            ("max_checkout_hours", spec.max_checkout_hours.is_some()),
            ("lease_oed_hours", spec.lease_oed_hours.is_some()),
            ("reclaim", spec.reclaim),
            ("reclaim_every_secs", spec.reclaim_every_secs.is_some()),
        ];
        if let Some((name, _)) = given.iter().find(|(_, given)| *given) {
            return Err(invalid(format!(
                "{name} is a floating term: make the policy floating (--floating), or leave \
                 it out"
            )));
        }
    }
    // (Floating features lease with these terms on any policy.)
    spec.terms().validate().map_err(invalid)?;
    if spec.reclaim && spec.inactivity_secs.is_none() {
        return Err(invalid(
            "reclamation needs an inactivity threshold (inactivity_secs, --inactivity-secs)".into(),
        ));
    }
    if let Some(every) = spec
        .reclaim_every_secs
        .filter(|s| !(1..=MAX_DAYS * 86_400).contains(s))
    {
        return Err(invalid(format!(
            "reclaim_every_secs is {every}; give 1 to {} seconds",
            MAX_DAYS * 86_400
        )));
    }
    Ok(())
}
