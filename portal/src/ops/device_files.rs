//! Applying uploaded files: activation requests, deactivations and usage reports.

use super::*;

/// How one attempt at an activation went.
enum Attempt {
    Done(Applied),
    /// The copy of the license the file was made from is stale: read it again.
    Stale,
}

impl Portal {
    /// Apply any uploaded file: an activation request, a deactivation or a usage report.
    pub async fn apply(&self, input: &[u8], actor: &Actor) -> Result<Applied, PortalError> {
        let (armor_kind, bytes) = format::unarmor(input)?;
        let kind = match armor_kind {
            Some(k) => k,
            None => match format::open_any(&bytes, &Keyring::new()) {
                Ok(any) => any.kind(),
                Err(format::FormatError::UnknownKey { .. }) => FileKind::License,
                Err(e) => return Err(e.into()),
            },
        };
        match kind {
            FileKind::ActivationRequest => self.apply_activation(&bytes, actor).await,
            FileKind::Deactivation => self.apply_deactivation(&bytes, actor).await,
            FileKind::UsageReport => self.apply_usage_report(&bytes, actor).await,
            other => Err(PortalError::Invalid {
                field: "file",
                reason: format!(
                    "a {other} file is made by the portal, not uploaded to it; upload an \
                     activation request, a deactivation file or a usage report"
                ),
            }),
        }
    }

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
                      p.total_limits AS p_total_limits, p.refuse_over_total AS p_refuse_over_total \
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

    pub(super) async fn replayed(&self, hash: &str) -> Result<Option<Applied>, PortalError> {
        let r = sqlx::query("SELECT kind, activation, response FROM applied_files WHERE hash = $1")
            .bind(hash)
            .fetch_optional(self.db.pool())
            .await?;
        r.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Applied {
                response_kind: response_kind(&kind).into(),
                kind,
                activation: r.try_get("activation")?,
                response: r.try_get("response")?,
                replay: true,
                file_hash: hash.into(),
                flags: Vec::new(),
                note: String::new(),
            })
        })
        .transpose()
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
        if lic.product != r.product {
            return Err(PortalError::WrongProduct {
                requested: r.product.clone(),
                license_product: lic.product.clone(),
            });
        }
        if matches!(r.credential, Credential::User(_)) && actor.is_anonymous() {
            // A user id is no secret: whoever knows it could take the user's seats.
            return Err(PortalError::UserLicenseNeedsVendor {
                license: lic.id.clone(),
            });
        }
        // (Whether the license is revoked is decided in the write transaction: a replay
        // of a request applied before the revocation still gets its license.)
        if !lic.allow_offline.unwrap_or(policy.allow_offline) {
            return Err(PortalError::OfflineNotAllowed {
                license: lic.id.clone(),
            });
        }
        if policy.license_type == LicenseType::Subscription {
            return Err(PortalError::SubscriptionOffline {
                license: lic.id.clone(),
            });
        }

        // The license carries the policy's match rule as it is: a request that lacks a
        // component the rule requires would give a license bound to nothing.
        let missing = decide::missing_components(&policy.match_rule.required, &r.fingerprint);
        if !missing.is_empty() {
            return Err(PortalError::MissingComponents {
                components: missing,
            });
        }
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
        let row = sqlx::query("SELECT request_hash, license_file FROM activations WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await?;
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

    /// Run a write job through the group-commit writer: it answers once the job's batch
    /// is committed.
    pub(super) async fn write(&self, job: Job) -> Result<WriteOutcome, PortalError> {
        self.writer.write(job).await
    }

    /// Verify a device-signed file against the activation's recorded device key.
    pub(super) async fn device_file<T: format::Payload>(
        &self,
        bytes: &[u8],
        activation_of: impl Fn(&T) -> &str,
    ) -> Result<(Verified<T>, String), PortalError> {
        let file: Verified<T> = format::verify(bytes.to_vec(), &Keyring::new())?;
        let id = activation_of(file.payload()).to_string();
        let row = sqlx::query("SELECT device_key, license FROM activations WHERE id = $1")
            .bind(&id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or(PortalError::UnknownActivation { activation: id })?;
        let recorded: String = row.try_get("device_key")?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&recorded, &mut key)
            .map_err(|_| PortalError::Key("a recorded device key is corrupt".into()))?;
        let expected = PublicKey::from_bytes(&key).map_err(|e| PortalError::Key(e.to_string()))?;
        Ok((file.expect_signer(&expected)?, row.try_get("license")?))
    }

    /// Apply a deactivation file: add its consumption once, free the seat, record the
    /// journal head, and return a signed receipt. Applying it again changes nothing and
    /// returns the same receipt.
    pub async fn apply_deactivation(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<Deactivation>(bytes, |d| &d.activation_id)
            .await?;
        let d = file.payload();
        self.apply_device_file(
            FileKind::Deactivation,
            file.file_hash(),
            &d.activation_id,
            license,
            d.counters.clone(),
            d.journal.clone(),
            &d.variables,
            true,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&d.counters)))
    }

    /// Apply a usage report: add `new cumulative − last reported` per feature, so replays
    /// and reports out of order never double-count.
    pub async fn apply_usage_report(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<UsageReport>(bytes, |u| &u.activation_id)
            .await?;
        let u = file.payload();
        self.apply_device_file(
            FileKind::UsageReport,
            file.file_hash(),
            &u.activation_id,
            license,
            u.counters.clone(),
            u.journal.clone(),
            &u.variables,
            false,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&u.counters)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_device_file(
        &self,
        kind: FileKind,
        file_hash: Bytes32,
        activation_id: &str,
        license_id: String,
        counters: format::Counters,
        journal: format::JournalHead,
        variables: &format::Variables,
        deactivate: bool,
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let hash = file_hash.to_string();
        if let Some(done) = self.replayed(&hash).await? {
            return Ok(done);
        }
        let now = self.now();
        // The receipt says the state after applying: a deactivation always ends
        // deactivated; a usage report leaves an active activation active.
        let state: String = sqlx::query_scalar("SELECT state FROM activations WHERE id = $1")
            .bind(activation_id)
            .fetch_one(self.db.pool())
            .await?;
        let state_after = if deactivate || state != "active" {
            "deactivated"
        } else {
            "active"
        };
        let receipt = Receipt {
            activation_id: activation_id.into(),
            file_hash,
            file_kind: kind.name().into(),
            state: state_after.into(),
            applied: now,
        };
        let signer = self.signer().await?;
        let armored = format::sign(&receipt, &signer)?.armored();
        let job = DeviceWrite {
            kind,
            file_hash,
            hash: hash.clone(),
            activation_id: activation_id.into(),
            license_id,
            counters,
            journal,
            variables: json(variables),
            deactivate,
            armored,
            now,
            actor: actor.clone(),
        };
        let outcome = self.write(Job::Device(job)).await?;
        self.finish(outcome, &hash, &signer).await
    }
}
