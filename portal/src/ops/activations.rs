//! Activations: activation requests (a seat taken, or reissued to a device that holds
//! one), server-side deactivations, and activations as staff see them.

use super::*;

/// How one attempt at an activation went.
enum Attempt {
    Done(Applied),
    /// The copy of the license the file was made from is stale: read it again.
    Stale,
}

impl Portal {
    /// The license an activation request names, with its policy, and whether it came from
    /// the cache: from the cache, or read once (a license that is not found is looked up
    /// again next time: it may be created meanwhile). `fresh`: read it from the database
    /// whatever the cache holds (the cached copy was found stale).
    pub(super) async fn license_for(
        &self,
        product: &str,
        credential: &Credential,
        fresh: bool,
    ) -> Result<(Arc<(LicenseRow, Policy)>, bool), PortalError> {
        let lookup = match credential {
            Credential::LicenseKey(key) => LicenseLookup::KeyHash(key_hash(key)),
            Credential::User(user) => LicenseLookup::User {
                product: product.into(),
                user: user.clone(),
            },
        };
        let cached = self
            .licenses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&lookup)
            .cloned()
            .filter(|_| !fresh);
        if let Some(found) = cached {
            return Ok((found, true));
        }
        // The license and its policy, in one read.
        let select = "SELECT l.id, l.product, l.policy, l.allow_offline, l.seats, l.features, l.expires, \
                      l.status, l.revision, l.total_limits, l.refuse_over_total, p.id AS p_id, p.product AS p_product, p.name AS p_name, p.license_type, \
                      p.allow_offline AS p_allow_offline, p.seats AS p_seats, p.validity_days, \
                      p.features AS p_features, p.match_required, p.match_max_changed, \
                      p.clock_tolerance_secs, p.max_offline_days, p.inactivity_secs, p.max_deactivations, \
                      p.deactivation_period_days, p.created AS p_created, \
                      p.total_limits AS p_total_limits, p.refuse_over_total AS p_refuse_over_total, \
                      l.floating, p.floating AS p_floating, p.lease_secs, p.renew_percent, \
                      p.max_processes, p.revival_secs, p.max_checkout_hours, p.lease_oed_hours, \
                      p.reclaim, p.reclaim_every_secs, p.reclaim_since, l.created \
                      FROM licenses l JOIN policies p ON p.id = l.policy";
        let row = match &lookup {
            LicenseLookup::KeyHash(hash) => {
                sqlx::query(&format!("{select} WHERE l.key_hash = $1"))
                    .bind(hash)
                    .fetch_optional(self.db.pool())
                    .await?
            }
            LicenseLookup::User { product, user } => {
                sqlx::query(&format!("{select} WHERE l.product = $1 AND l.user_id = $2"))
                    .bind(product)
                    .bind(user)
                    .fetch_optional(self.db.pool())
                    .await?
            }
        };
        let row = row.ok_or_else(|| PortalError::UnknownLicense {
            product: product.into(),
            // A request from a lic that does not check keys yet: say which group of the
            // key looks mistyped, for whoever reads the refusal.
            typo: match credential {
                Credential::LicenseKey(key) => lic_core::license_key::check(key)
                    .err()
                    .map(|e| e.to_string()),
                Credential::User(_) => None,
            },
        })?;
        let found = Arc::new((license_row(&row)?, joined_policy_row(&row)?));
        let mut cache = self
            .licenses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= LICENSE_CACHE {
            cache.clear();
        }
        cache.insert(lookup, Arc::clone(&found));
        Ok((found, false))
    }

    /// Apply an activation request: a license file for the requesting device, taking a
    /// seat. The same request applied again returns the same license, not a second seat.
    ///
    /// The license file is made from this instance's cached copy of the license; the
    /// write checks the copy against the license's revision, and a copy found stale (the
    /// license was edited, here or on another instance) is read again and the file made
    /// again, a few times at most. A refusal decided on a cached copy (offline not
    /// allowed) is checked on a fresh read before it is given.
    pub async fn apply_activation(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        /// Reads of the license after the first, when edits keep coming in between.
        const RETRIES: usize = 3;
        let request: Verified<ActivationRequest> = format::verify(bytes.to_vec(), &Keyring::new())?;
        let mut fresh = false;
        for _ in 0..=RETRIES {
            let r = request.payload();
            let (found, cached) = self.license_for(&r.product, &r.credential, fresh).await?;
            match self.activate_with(&request, &found, actor).await {
                Err(PortalError::OfflineNotAllowed { .. }) if cached => {}
                Ok(Attempt::Stale) => {}
                Ok(Attempt::Done(applied)) => return Ok(applied),
                Err(e) => return Err(e),
            }
            // The cached copy is (or may be) stale: read the license again.
            self.forget_license(&found.0.id);
            fresh = true;
        }
        Err(PortalError::Conflict {
            reason: "the license was edited again and again while the request was applied; \
                     upload it again"
                .into(),
        })
    }

    /// One attempt of [`Portal::apply_activation`] with a copy of the license.
    async fn activate_with(
        &self,
        request: &Verified<ActivationRequest>,
        found: &(LicenseRow, Policy),
        actor: &Actor,
    ) -> Result<Attempt, PortalError> {
        let hash = request.file_hash().to_string();
        let r = request.payload();
        let (lic, policy) = found;
        request_fits(lic, &r.product, &r.credential, actor)?;
        match r.pool_seats {
            // An on-premise floating server's pool: seats of a floating license, which it
            // leases on its own network (floating licenses are online otherwise, so the
            // offline switch is not asked).
            Some(_) if !lic.floating => {
                return Err(PortalError::PoolNotFloating {
                    license: lic.id.clone(),
                });
            }
            Some(0) => {
                return Err(PortalError::Invalid {
                    field: "pool_seats",
                    reason: "a pool holds at least one seat".into(),
                });
            }
            Some(_) => {}
            // A floating seat is leased online, or checked out online for offline use.
            None if lic.floating => {
                return Err(PortalError::FloatingOnlineOnly {
                    license: lic.id.clone(),
                });
            }
            None => {}
        }
        // (Whether the license is revoked is decided in the write transaction: a replay
        // of a request applied before the revocation still gets its license.)
        if r.pool_seats.is_none() && !lic.allow_offline.unwrap_or(policy.allow_offline) {
            return Err(PortalError::OfflineNotAllowed {
                license: lic.id.clone(),
            });
        }
        if policy.license_type == LicenseType::Subscription {
            return Err(PortalError::SubscriptionOffline {
                license: lic.id.clone(),
            });
        }

        has_required_components(policy, &r.fingerprint)?;
        let now = self.now();
        let device = *request.signer();
        let activation_id = new_id("act");
        let rule = policy.match_rule.clone();
        let expires = match (lic.expires, policy.validity_days) {
            (Some(e), _) => Some(time(e)),
            (None, Some(days)) => Some(add_days(now, days, "the policy's validity_days")?),
            (None, None) => None,
        };
        let license = License {
            pool: None,
            pool_seats: r.pool_seats,
            license_id: lic.id.clone(),
            activation_id: activation_id.clone(),
            product: r.product.clone(),
            device_key: Bytes32(device.to_bytes()),
            fingerprint: r.fingerprint.clone(),
            match_rule: rule,
            features: lic
                .features
                .clone()
                .unwrap_or_else(|| policy.features.clone()),
            license_type: policy.license_type,
            issued: now,
            not_before: now,
            expires,
            offline_expiry: None,
            clock_tolerance: u64::try_from(policy.clock_tolerance_secs).unwrap_or(0),
            serial: 1,
            request_nonce: r.nonce,
            counters: Default::default(),
        };
        let signer = self.signer().await?;
        let armored = format::sign(&license, &signer)?.armored();
        let job = ActivationWrite {
            hash: hash.clone(),
            activation_id,
            license,
            armored,
            lic_id: lic.id.clone(),
            churn: policy
                .max_deactivations
                .zip(policy.deactivation_period_days),
            device_hex: hex::encode(device.to_bytes()),
            device_kid: device.kid().to_string(),
            fingerprint: json(&r.fingerprint),
            revision: lic.revision,
            refusing_totals: if lic.refuse_over_total {
                lic.total_limits.clone()
            } else {
                BTreeMap::new()
            },
            variables: json(&r.variables),
            pool_seats: r.pool_seats,
            now,
            actor: actor.clone(),
        };
        let outcome = self.write(Job::Activation(job)).await?;
        if matches!(outcome, WriteOutcome::StaleLicense) {
            return Ok(Attempt::Stale);
        }
        self.finish(outcome, &hash, &signer)
            .await
            .map(|a| Attempt::Done(a.noted(None)))
    }

    /// Turn a write outcome into the response; a lost race reads the winner's.
    pub(super) async fn finish(
        &self,
        outcome: WriteOutcome,
        hash: &str,
        signer: &SecretKey,
    ) -> Result<Applied, PortalError> {
        match outcome {
            WriteOutcome::Done(applied) => Ok(applied),
            WriteOutcome::Reissue {
                id,
                license,
                variables,
                actor,
            } => {
                // The same device already holds a seat of this license: reissue on it,
                // with the entitlements in force (the last license or refresh issued for
                // it), not new ones — a reset store must not restart a trial — and with the
                // consumption counted so far as the device's starting counters, so that a
                // reset store cannot use a limit twice. (The write checks that no usage
                // arrived in between.)
                let mut license = *license;
                self.carry_entitlements(&id, &mut license).await?;
                license.counters = self.reported_counters(&id).await?;
                license.activation_id = id;
                let armored = format::sign(&license, signer)?.armored();
                let job = ReissueWrite {
                    hash: hash.into(),
                    license,
                    variables,
                    armored,
                    now: self.now(),
                    actor,
                };
                match self.write(Job::Reissue(job)).await? {
                    WriteOutcome::Done(applied) => Ok(applied),
                    WriteOutcome::Refused(e) => Err(e),
                    _ => self.replayed(hash).await?.ok_or_else(applied_concurrently),
                }
            }
            WriteOutcome::AlreadyApplied => {
                self.replayed(hash).await?.ok_or_else(applied_concurrently)
            }
            WriteOutcome::Refused(e) => Err(e),
            WriteOutcome::StaleLicense => Err(PortalError::Conflict {
                reason: "the license changed while the file was applied; upload it again".into(),
            }),
            WriteOutcome::Leased(_)
            | WriteOutcome::Released { .. }
            | WriteOutcome::CheckedOut { .. } => Err(PortalError::Storage(
                "a floating write answered a file's application".into(),
            )),
        }
    }

    /// The activation's last reported cumulative counters.
    pub(super) async fn reported_counters(
        &self,
        id: &str,
    ) -> Result<format::Counters, PortalError> {
        Ok(self
            .activation_usage(id)
            .await?
            .into_iter()
            .filter_map(|(feature, n)| Some((feature, u64::try_from(n).ok()?)))
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    /// Copy the entitlements in force for activation `id` into a reissued `license`.
    pub(super) async fn carry_entitlements(
        &self,
        id: &str,
        license: &mut License,
    ) -> Result<(), PortalError> {
        let row = sqlx::query(
            "SELECT request_hash, license_file, pool_seats FROM activations WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        // A pool is reissued with the seats it holds now (a refresh changes them), whatever
        // the new request asks.
        license.pool_seats = row
            .try_get::<Option<i64>, _>("pool_seats")?
            .and_then(|n| u32::try_from(n).ok());
        let keys = vendor::own_keys(&self.db).await?;
        let original: Option<String> =
            sqlx::query_scalar("SELECT response FROM applied_files WHERE hash = $1")
                .bind(row.try_get::<String, _>("request_hash")?)
                .fetch_optional(self.db.pool())
                .await?;
        let first = original
            .map(|o| format::open::<License>(o.as_bytes(), &keys).map(Verified::into_payload))
            .transpose()?;
        let last_refresh: String = row.try_get("license_file")?;
        let refresh = (!last_refresh.is_empty())
            .then(|| format::open::<Refresh>(last_refresh.as_bytes(), &keys))
            .transpose()?
            .map(Verified::into_payload);
        decide::carry_over(license, first.as_ref(), refresh.as_ref());
        Ok(())
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
        let row = sqlx::query(&format!(
            "SELECT license, state, offline_expiry, pool_seats, {NODE_LOCKED} AS node_locked \
             FROM activations WHERE id = $1"
        ))
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
        // A seat checked out (or kept by the policy's OED on every lease) stays its
        // user's until the Offline Expiry Date: an admin must not take it away while the
        // user is offline.
        lic_core::floating::may_take_away(
            row.try_get::<Option<i64>, _>("offline_expiry")?.map(time),
            now,
        )
        .map_err(PortalError::Floating)?;
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
            "UPDATE activations SET state = 'deactivated', deactivated = $1, closed_by = 'server', \
             lease_expires = NULL WHERE id = $2 AND state = 'active' \
             AND (offline_expiry IS NULL OR offline_expiry <= $1)",
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
        // The seats it held are free (a floating seat's is its lease, not counted here).
        let freed = decide::seats_held(
            row.try_get("pool_seats")?,
            row.try_get::<i64, _>("node_locked")? == 1,
        );
        if freed > 0 {
            sqlx::query(FREE_SEATS)
                .bind(&license)
                .bind(freed)
                .execute(&mut *tx)
                .await?;
        }
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

    pub(super) async fn activation_usage(
        &self,
        id: &str,
    ) -> Result<BTreeMap<String, i64>, PortalError> {
        let rows =
            sqlx::query("SELECT feature, reported FROM usage_reported WHERE activation = $1")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|u| Ok((u.try_get("feature")?, u.try_get("reported")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// An activation from its row (with `lease_expires`, `checked_out` and the license's
    /// `floating`), as seen at `now`, with `instances` live lease instances.
    pub(super) fn activation_from(
        r: &AnyRow,
        usage: BTreeMap<String, i64>,
        flags: Vec<Flag>,
        now: i64,
        instances: u64,
    ) -> Result<Activation, PortalError> {
        let state: String = r.try_get("state")?;
        let floating = r.try_get::<Option<i64>, _>("floating")?.unwrap_or(0) == 1;
        let lease_expires: Option<i64> = r.try_get("lease_expires")?;
        let offline_expiry: Option<i64> = r.try_get("offline_expiry")?;
        let holder = lic_core::floating::Holder {
            lease_expires: lease_expires.map(time),
            offline_expiry: offline_expiry.map(time),
        };
        let pool_seats: Option<i64> = r.try_get("pool_seats")?;
        let held =
            state == "active" && (!floating || pool_seats.is_some() || holder.holds(time(now)));
        Ok(Activation {
            pool_seats,
            floating,
            lease_expires,
            checked_out: r.try_get::<i64, _>("checked_out")? == 1,
            instances,
            held,
            id: r.try_get("id")?,
            license: r.try_get("license")?,
            product: r.try_get("product")?,
            device_kid: r.try_get("device_kid")?,
            state,
            closed_by: r.try_get("closed_by")?,
            serial: r.try_get("serial")?,
            journal_seq: r.try_get("journal_seq")?,
            fork: r.try_get("fork")?,
            reactivations: r.try_get("reactivations")?,
            offline_expiry,
            last_accessed: r.try_get("last_accessed")?,
            created: r.try_get("created")?,
            deactivated: r.try_get("deactivated")?,
            usage,
            flags,
            variables: {
                let text: String = r.try_get("variables")?;
                serde_json::from_str(&text).map_err(|e| {
                    PortalError::Storage(format!("the variables of an activation are corrupt: {e}"))
                })?
            },
        })
    }

    /// Flags by activation, oldest first, from `sql` selecting the flag columns (with
    /// `arg` bound to `$1`, if given).
    pub(super) async fn flags_by(
        &self,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<Flag>>, PortalError> {
        let mut q = sqlx::query(sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let mut out: BTreeMap<String, Vec<Flag>> = BTreeMap::new();
        for r in q.fetch_all(self.db.pool()).await? {
            let (activation, flag) = Flag::from_row(&r)?;
            out.entry(activation).or_default().push(flag);
        }
        Ok(out)
    }

    pub async fn activation(&self, id: &str) -> Result<Activation, PortalError> {
        let r = sqlx::query(
            "SELECT *, (SELECT l.floating FROM licenses l WHERE l.id = activations.license) \
             AS floating FROM activations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| PortalError::UnknownActivation {
            activation: id.into(),
        })?;
        let now = self.now().timestamp();
        let instances: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM lease_instances WHERE activation = $1 AND expires > $2",
        )
        .bind(id)
        .bind(now)
        .fetch_one(self.db.pool())
        .await?;
        let mut flags = self
            .flags_by(
                "SELECT * FROM activation_flags WHERE activation = $1 ORDER BY at, kind, file_hash",
                Some(id),
            )
            .await?;
        Self::activation_from(
            &r,
            self.activation_usage(id).await?,
            flags.remove(id).unwrap_or_default(),
            now,
            u64::try_from(instances).unwrap_or(0),
        )
    }

    /// Every activation, optionally of one license, newest first (see
    /// [`Portal::list_activations`] for a page at a time, and filters).
    pub async fn activations(
        &self,
        license: Option<&str>,
        scope: Option<&[String]>,
    ) -> Result<Vec<Activation>, PortalError> {
        let filter = ActivationFilter {
            license: license.map(String::from),
            ..Default::default()
        };
        every!(page => self.list_activations(&filter, scope, &page).await)
    }
}

/// Whether a device's request (an activation request, a lease request) may be answered
/// from license `lic`: it names the license's product, and a user-based license
/// ([`Credential::User`]) takes a seat only for its user signed in on the self-service
/// pages ([`Actor::end_user`]), or for staff (a token, the console, the admin command).
///
/// A user id is no secret (often a mail address): whoever knows it could otherwise take
/// the user's seats. This is the one place the rule is decided: the anonymous upload
/// (`POST /api/v1/activate`, the lease routes) and the activation page without the
/// user's session are refused with [`PortalError::SignInRequired`]. A replay (the same
/// request, answered before) is refused too: no license leaves without the sign-in.
pub(in crate::ops) fn request_fits(
    lic: &LicenseRow,
    product: &str,
    credential: &Credential,
    actor: &Actor,
) -> Result<(), PortalError> {
    if lic.product != product {
        return Err(PortalError::WrongProduct {
            requested: product.to_owned(),
            license_product: lic.product.clone(),
        });
    }
    if let Credential::User(user) = credential
        && !actor.may_use_user_license(user)
    {
        return Err(PortalError::SignInRequired {
            product: lic.product.clone(),
            user: user.clone(),
        });
    }
    Ok(())
}

impl Actor {
    /// An end user signed in on the self-service pages as `user` (the user id their
    /// licenses carry), sending from `source` (the client's address): `user:USER@SOURCE`
    /// in the audit log.
    pub fn end_user(user: &str, source: &str) -> Actor {
        Actor(format!("user:{user}@{source}"))
    }

    /// The user id of a signed-in end user ([`Actor::end_user`]); `None` for anyone else.
    pub fn signed_in_user(&self) -> Option<&str> {
        // The source (an address, or `unknown`) holds no `@`; a user id may.
        let rest = self.0.strip_prefix("user:")?;
        rest.rsplit_once('@').map(|(user, _)| user)
    }

    /// Whether this actor may take a seat of the user-based license of `user`: that user,
    /// signed in, or staff (a token, the console, the admin command). Not an anonymous
    /// upload, nor another signed-in user.
    pub fn may_use_user_license(&self, user: &str) -> bool {
        match self.signed_in_user() {
            Some(signed) => signed == user,
            None => !self.is_anonymous(),
        }
    }
}

/// The license carries the policy's match rule as it is: a request that lacks a
/// component the rule requires would give a license (or lease) bound to nothing.
pub(in crate::ops) fn has_required_components(
    policy: &Policy,
    fingerprint: &format::Fingerprint,
) -> Result<(), PortalError> {
    let missing = decide::missing_components(&policy.match_rule.required, fingerprint);
    if !missing.is_empty() {
        return Err(PortalError::MissingComponents {
            components: missing,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_signed_in_user_or_staff_may_use_a_user_license() {
        let ada = Actor::end_user("ada@example.com", "203.0.113.9");
        assert_eq!(ada.0, "user:ada@example.com@203.0.113.9");
        assert_eq!(ada.signed_in_user(), Some("ada@example.com"));
        assert!(ada.may_use_user_license("ada@example.com"));
        assert!(!ada.may_use_user_license("bob@example.com"));
        assert!(!ada.may_use_user_license("ada@example.com@203.0.113.9"));
        assert!(!ada.is_anonymous());
        let anonymous = Actor::anonymous("203.0.113.9");
        assert_eq!(anonymous.signed_in_user(), None);
        assert!(!anonymous.may_use_user_license("ada@example.com"));
        for staff in ["cli:root", "token:ci", "staff:sam"] {
            let staff = Actor(staff.into());
            assert_eq!(staff.signed_in_user(), None);
            assert!(staff.may_use_user_license("ada@example.com"), "{staff:?}");
        }
    }
}
