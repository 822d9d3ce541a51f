//! Floating licenses (docs/vendor-guide.md, "Floating licenses"): leases taken, renewed
//! by heartbeat and released; seats checked out for offline use until an Offline Expiry
//! Date and checked in; reclamation of inactive seats. The protocol's rules are
//! `lic_core::floating`'s, shared with an on-premise server; the seat is decided inside
//! the writer's transaction (see `floating_jobs.rs`), so that seats never exceed the pool,
//! on either backend and with several instances on one PostgreSQL database.

use lic_core::floating::{self, Grant};
use lic_core::format::{CheckIn, Lease, LeaseAction, LeaseRequest};

use super::catalog::check_floating_terms;
use super::*;

// The wire answers of the device routes: one definition, in lic-core, that the portal,
// the on-premise floating server and the client share.
pub use lic_core::lease::{CheckoutAnswer, LeaseAnswer, ReleaseAnswer};

/// One seat reclaimed (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimedSeat {
    pub activation: String,
    pub license: String,
    pub product: String,
    pub policy: String,
    pub device_kid: String,
    /// Seconds since the epoch.
    pub last_accessed: i64,
    pub reason: String,
}

/// What a reclamation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimed {
    /// Nothing was changed: these are the seats it would reclaim.
    pub dry_run: bool,
    /// When it ran (seconds since the epoch).
    pub at: i64,
    pub seats: Vec<ReclaimedSeat>,
}

/// A change of a policy's reclamation settings; what is not given stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimEdit {
    /// Enable or disable reclamation. Enabling it starts counting inactivity now: seats
    /// whose last access predates it are not reclaimed at once.
    #[serde(default)]
    pub reclaim: Option<bool>,
    /// The inactivity threshold (seconds).
    #[serde(default)]
    pub inactivity_secs: Option<i64>,
    /// How often the timer in `serve` runs it (seconds).
    #[serde(default)]
    pub reclaim_every_secs: Option<i64>,
    /// Why (audited).
    pub reason: String,
}

/// Who reclaims seats, in the audit log.
pub const RECLAIMER: &str = "reclaimer";

fn grant_name(g: Grant) -> &'static str {
    match g {
        Grant::Taken => "taken",
        Grant::Held => "held",
        Grant::Revived => "revived",
    }
}

/// The route that takes a lease request of `action`.
pub fn route_of(action: LeaseAction) -> &'static str {
    match action {
        LeaseAction::Take => "POST /api/v1/leases",
        LeaseAction::Renew => "POST /api/v1/leases/renew",
        LeaseAction::Release => "POST /api/v1/leases/release",
        LeaseAction::Checkout => "POST /api/v1/checkout",
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A verified lease request with what it names.
struct Asked {
    request: Verified<LeaseRequest>,
    found: Arc<(LicenseRow, Policy)>,
    now: DateTime<Utc>,
}

impl Portal {
    /// Read and check a lease request sent to the route of `expected`: the armor's kind,
    /// the device's signature, the action, the freshness of `created`, and the license it
    /// names (its product, and a user-based license only through staff).
    async fn lease_request(
        &self,
        input: &[u8],
        expected: LeaseAction,
        actor: &Actor,
    ) -> Result<Asked, PortalError> {
        let (armor_kind, bytes) = format::unarmor(input)?;
        if let Some(found) = armor_kind.filter(|k| *k != FileKind::LeaseRequest) {
            return Err(format::FormatError::WrongKind {
                expected: FileKind::LeaseRequest,
                found,
            }
            .into());
        }
        let request: Verified<LeaseRequest> = format::verify(bytes, &Keyring::new())?;
        let r = request.payload();
        if r.action != expected {
            return Err(PortalError::WrongAction {
                route: route_of(expected),
                expected: expected.name(),
                found: r.action.name(),
                right: route_of(r.action),
            });
        }
        let now = self.now();
        floating::fresh(r.created, now).map_err(PortalError::Floating)?;
        let (found, _) = self.license_for(&r.product, &r.credential, false).await?;
        activations::request_fits(&found.0, &r.product, &r.credential, actor)?;
        activations::has_required_components(&found.1, &r.fingerprint)?;
        Ok(Asked {
            request,
            found,
            now,
        })
    }

    /// Take (`action` take) or renew (`renew`) a lease on a seat of a floating license,
    /// or on one floating feature (the request's `feature`). With `wait`, a device
    /// refused for want of a seat keeps its place in the queue while it asks again.
    pub async fn lease(
        &self,
        input: &[u8],
        action: LeaseAction,
        wait: bool,
        actor: &Actor,
    ) -> Result<LeaseAnswer, PortalError> {
        if !floating::answers_with_lease(action) {
            return Err(PortalError::WrongAction {
                route: route_of(LeaseAction::Take),
                expected: LeaseAction::Take.name(),
                found: action.name(),
                right: route_of(action),
            });
        }
        let Asked {
            request,
            found,
            now,
        } = self.lease_request(input, action, actor).await?;
        let r = request.payload();
        let (lic, policy) = &*found;
        if r.feature.is_none() && !lic.floating {
            return Err(PortalError::NotFloating {
                license: lic.id.clone(),
            });
        }
        let device = *request.signer();
        let job = LeaseWrite {
            action,
            wait,
            hash: request.file_hash().to_string(),
            lic_id: lic.id.clone(),
            product: lic.product.clone(),
            new_activation: new_id("act"),
            device_hex: hex::encode(device.to_bytes()),
            device_kid: device.kid().to_string(),
            fingerprint: json(&r.fingerprint),
            instance: r.instance.to_string(),
            feature: r.feature.clone(),
            variables: json(&r.variables),
            now,
            actor: actor.clone(),
        };
        let granted = match self.write(Job::Lease(job)).await? {
            WriteOutcome::Leased(g) => g,
            WriteOutcome::Refused(e) => return Err(e),
            _ => {
                return Err(PortalError::Storage(
                    "the lease's write answered something else".into(),
                ));
            }
        };
        // The seat is recorded (committed): the lease says so, signed.
        let lease = Lease {
            pool: None,
            license_id: lic.id.clone(),
            activation_id: granted.activation.clone(),
            product: lic.product.clone(),
            device_key: Bytes32(device.to_bytes()),
            fingerprint: r.fingerprint.clone(),
            match_rule: policy.match_rule.clone(),
            instance: r.instance,
            feature: r.feature.clone(),
            features: granted.features.clone(),
            license_type: policy.license_type,
            issued: granted.times.issued,
            renew_after: granted.times.renew_after,
            expires: granted.times.expires,
            license_expires: granted.license_expires,
            offline_expiry: granted.offline_expiry.map(time),
            clock_tolerance: u64::try_from(policy.clock_tolerance_secs).unwrap_or(0),
            request_nonce: r.nonce,
        };
        let signer = self.signer().await?;
        Ok(LeaseAnswer {
            lease: format::sign(&lease, &signer)?.armored(),
            activation: granted.activation,
            grant: grant_name(granted.grant).into(),
        })
    }

    /// Release an instance's lease (the application exits). Releasing a lease not held,
    /// or the same release again, answers `released: false` and changes nothing.
    pub async fn release(&self, input: &[u8], actor: &Actor) -> Result<ReleaseAnswer, PortalError> {
        let Asked {
            request,
            found,
            now,
        } = self
            .lease_request(input, LeaseAction::Release, actor)
            .await?;
        let r = request.payload();
        let job = ReleaseWrite {
            hash: request.file_hash().to_string(),
            lic_id: found.0.id.clone(),
            device_hex: hex::encode(request.signer().to_bytes()),
            instance: r.instance.to_string(),
            feature: r.feature.clone(),
            now,
            actor: actor.clone(),
        };
        match self.write(Job::Release(job)).await? {
            WriteOutcome::Released {
                released,
                activation,
            } => Ok(ReleaseAnswer {
                released,
                activation,
            }),
            _ => Err(PortalError::Storage(
                "the release's write answered something else".into(),
            )),
        }
    }

    /// Check a seat out for offline use until an Offline Expiry Date: the earlier of now +
    /// the hours asked (capped by the policy's maximum) and the license's expiry. The
    /// answer is a license carrying the OED, bound to the device and echoing the request's
    /// nonce; the request starts the device's journal, as an activation request does.
    /// The same request again answers the same license.
    pub async fn checkout(
        &self,
        input: &[u8],
        actor: &Actor,
    ) -> Result<CheckoutAnswer, PortalError> {
        /// Reads of the license after the first, when edits keep coming in between.
        const RETRIES: usize = 3;
        let Asked {
            request,
            mut found,
            now,
        } = self
            .lease_request(input, LeaseAction::Checkout, actor)
            .await?;
        let hash = request.file_hash().to_string();
        if let Some(done) = self.checkout_replayed(&hash).await? {
            return Ok(done);
        }
        for _ in 0..=RETRIES {
            let (lic, policy) = &*found;
            if !lic.floating {
                return Err(PortalError::NotFloating {
                    license: lic.id.clone(),
                });
            }
            match self
                .checkout_with(&request, lic, policy, now, actor)
                .await?
            {
                Some(answer) => return Ok(answer),
                None => {
                    self.forget_license(&lic.id);
                    let r = request.payload();
                    found = self.license_for(&r.product, &r.credential, true).await?.0;
                }
            }
        }
        Err(PortalError::Conflict {
            reason: "the license or the device's seat changed again and again while the \
                     checkout was made; ask again"
                .into(),
        })
    }

    /// One attempt of [`Portal::checkout`]; None when the license or the device's seat
    /// changed since they were read.
    async fn checkout_with(
        &self,
        request: &Verified<LeaseRequest>,
        lic: &LicenseRow,
        policy: &Policy,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<Option<CheckoutAnswer>, PortalError> {
        let r = request.payload();
        let hash = request.file_hash().to_string();
        let device = *request.signer();
        let device_hex = hex::encode(device.to_bytes());
        let license_expires = match (lic.expires, policy.validity_days) {
            (Some(e), _) => Some(time(e)),
            (None, Some(days)) => Some(add_days(
                time(lic.created),
                days,
                "the policy's validity_days",
            )?),
            (None, None) => None,
        };
        // (The payload's checks hold `hours` present for a checkout.)
        let oed =
            floating::checkout_expiry(&policy.terms(), now, r.hours.unwrap_or(1), license_expires)
                .map_err(PortalError::Floating)?;
        let expected: Option<String> = sqlx::query_scalar(
            "SELECT id FROM activations WHERE license = $1 AND device_key = $2 AND state = 'active'",
        )
        .bind(&lic.id)
        .bind(&device_hex)
        .fetch_optional(self.db.pool())
        .await?;
        let counters = match &expected {
            Some(id) => self.reported_counters(id).await?,
            None => Default::default(),
        };
        let license = License {
            pool: None,
            pool_seats: None,
            license_id: lic.id.clone(),
            activation_id: expected.clone().unwrap_or_else(|| new_id("act")),
            product: lic.product.clone(),
            device_key: Bytes32(device.to_bytes()),
            fingerprint: r.fingerprint.clone(),
            match_rule: policy.match_rule.clone(),
            features: lic
                .features
                .clone()
                .unwrap_or_else(|| policy.features.clone()),
            license_type: policy.license_type,
            issued: now,
            not_before: now,
            expires: license_expires,
            offline_expiry: Some(oed),
            clock_tolerance: u64::try_from(policy.clock_tolerance_secs).unwrap_or(0),
            serial: 1,
            request_nonce: r.nonce,
            counters,
        };
        let signer = self.signer().await?;
        let armored = format::sign(&license, &signer)?.armored();
        let job = CheckoutWrite {
            hash: hash.clone(),
            lic_id: lic.id.clone(),
            expected,
            license,
            armored: armored.clone(),
            revision: lic.revision,
            device_hex,
            device_kid: device.kid().to_string(),
            fingerprint: json(&r.fingerprint),
            variables: json(&r.variables),
            oed,
            now,
            actor: actor.clone(),
        };
        match self.write(Job::Checkout(job)).await? {
            WriteOutcome::CheckedOut {
                activation,
                offline_expiry,
            } => Ok(Some(CheckoutAnswer {
                response: armored,
                activation,
                offline_expiry: rfc3339(time(offline_expiry)),
            })),
            WriteOutcome::StaleLicense => Ok(None),
            WriteOutcome::AlreadyApplied => self
                .checkout_replayed(&hash)
                .await?
                .map(Some)
                .ok_or_else(applied_concurrently),
            WriteOutcome::Refused(e) => Err(e),
            _ => Err(PortalError::Storage(
                "the checkout's write answered something else".into(),
            )),
        }
    }

    /// The answer a checkout request was given, if it was applied before.
    async fn checkout_replayed(&self, hash: &str) -> Result<Option<CheckoutAnswer>, PortalError> {
        let row = sqlx::query(
            "SELECT activation, response FROM applied_files WHERE hash = $1 AND kind = $2",
        )
        .bind(hash)
        .bind(FileKind::LeaseRequest.name())
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let response: String = row.try_get("response")?;
        let keys = vendor::own_keys(&self.db).await?;
        let license = format::open::<License>(response.as_bytes(), &keys)?.into_payload();
        Ok(Some(CheckoutAnswer {
            activation: row
                .try_get::<Option<String>, _>("activation")?
                .unwrap_or_default(),
            offline_expiry: license.offline_expiry.map(rfc3339).unwrap_or_default(),
            response,
        }))
    }

    /// Apply a check-in file: a checked-out seat returned before its OED, applied like a
    /// deactivation (its counters counted once, the journal checked, the seat freed at
    /// once, a receipt). The same file again changes nothing and returns the same receipt.
    pub async fn apply_check_in(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<Applied, PortalError> {
        let (file, license) = self
            .device_file::<CheckIn>(bytes, |c| &c.activation_id)
            .await?;
        let c = file.payload();
        self.apply_device_file(
            FileKind::CheckIn,
            file.file_hash(),
            &c.activation_id,
            license,
            c.counters.clone(),
            c.journal.clone(),
            &c.variables,
            true,
            actor,
        )
        .await
        .map(|a| a.noted(Some(&c.counters)))
    }

    /// Reclaim the seats of floating licenses whose last access (heartbeat, lease,
    /// validation) is older than their policy's inactivity threshold — counted from when
    /// reclamation was enabled at the earliest — keeping checkouts until their OED. Each
    /// is audited (`actor: reclaimer`, `seat.reclaimed`, the reason). `policies`: only
    /// these (the timer runs the policies that are due); `scope`: only these products.
    /// A reclaimed device that comes back gets a seat if one is free.
    pub async fn reclaim(
        &self,
        dry_run: bool,
        policies: Option<&[String]>,
        scope: Option<&[String]>,
        actor: &Actor,
    ) -> Result<Reclaimed, PortalError> {
        let now = self.now();
        let at = now.timestamp();
        let rows = sqlx::query(
            "SELECT a.id, a.license, a.product, a.device_kid, a.last_accessed, a.lease_expires, \
             a.offline_expiry, p.id AS policy, p.inactivity_secs, p.reclaim_since \
             FROM activations a JOIN licenses l ON l.id = a.license \
             JOIN policies p ON p.id = l.policy \
             WHERE p.reclaim = 1 AND l.floating = 1 AND a.state = 'active' \
             AND (a.lease_expires > $1 OR a.offline_expiry > $1) \
             ORDER BY a.license, a.id",
        )
        .bind(at)
        .fetch_all(self.db.pool())
        .await?;
        let mut seats = Vec::new();
        for r in &rows {
            let policy: String = r.try_get("policy")?;
            let product: String = r.try_get("product")?;
            if policies.is_some_and(|p| !p.contains(&policy))
                || scope.is_some_and(|s| !s.contains(&product))
            {
                continue;
            }
            let (Some(inactivity), Some(since)) = (
                r.try_get::<Option<i64>, _>("inactivity_secs")?,
                r.try_get::<Option<i64>, _>("reclaim_since")?,
            ) else {
                continue;
            };
            let rule = floating::Reclamation {
                inactivity_secs: u64::try_from(inactivity).unwrap_or(u64::MAX),
                enabled_since: time(since),
            };
            let last_accessed: i64 = r.try_get("last_accessed")?;
            if let Some(reason) = decide::reclaim(
                &rule,
                last_accessed,
                r.try_get("lease_expires")?,
                r.try_get("offline_expiry")?,
                at,
            ) {
                seats.push(ReclaimedSeat {
                    activation: r.try_get("id")?,
                    license: r.try_get("license")?,
                    product,
                    policy,
                    device_kid: r.try_get("device_kid")?,
                    last_accessed,
                    reason,
                });
            }
        }
        if dry_run || seats.is_empty() {
            return Ok(Reclaimed { dry_run, at, seats });
        }
        let mut tx = self.db.begin_write().await?;
        if self.db.backend() == crate::db::Backend::Postgres {
            // The licenses' rows first, in one order, as the writer locks them.
            let mut licenses: Vec<&str> = seats.iter().map(|s| s.license.as_str()).collect();
            licenses.sort_unstable();
            licenses.dedup();
            for id in licenses {
                sqlx::query("SELECT id FROM licenses WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let reclaimer = Actor(RECLAIMER.into());
        let mut done = Vec::with_capacity(seats.len());
        for seat in seats {
            // Only as it was read: a heartbeat since then keeps the seat, and a checkout
            // made since then is kept until its OED.
            let ended = sqlx::query(
                "UPDATE activations SET state = 'deactivated', deactivated = $1, \
                 closed_by = 'reclaimer', lease_expires = NULL \
                 WHERE id = $2 AND state = 'active' AND last_accessed = $3 \
                 AND (offline_expiry IS NULL OR offline_expiry <= $1)",
            )
            .bind(at)
            .bind(&seat.activation)
            .bind(seat.last_accessed)
            .execute(&mut *tx)
            .await?;
            if ended.rows_affected() == 0 {
                continue;
            }
            for sql in [
                "DELETE FROM lease_instances WHERE activation = $1",
                "DELETE FROM feature_leases WHERE activation = $1",
            ] {
                sqlx::query(sql)
                    .bind(&seat.activation)
                    .execute(&mut *tx)
                    .await?;
            }
            audit(
                &mut *tx,
                now.timestamp_millis(),
                &reclaimer,
                "seat.reclaimed",
                Some(&seat.activation),
                Some(&seat.reason),
                None,
                Some(&format!(
                    "license {}, policy {}; run by {}",
                    seat.license, seat.policy, actor.0
                )),
            )
            .await?;
            done.push(seat);
        }
        tx.commit().await?;
        Ok(Reclaimed {
            dry_run,
            at,
            seats: done,
        })
    }

    /// Change a policy's reclamation settings (the only part of a policy that changes
    /// after it was made): audited with the reason, before and after. Enabling it sets
    /// `reclaim_since` to now.
    pub async fn edit_reclamation(
        &self,
        id: &str,
        edit: &ReclaimEdit,
        actor: &Actor,
    ) -> Result<Policy, PortalError> {
        require_reason(&edit.reason, "a change of a policy's reclamation")?;
        let before = self.policy(id).await?;
        let now = self.now().timestamp();
        let enable = edit.reclaim.unwrap_or(before.reclaim);
        let after = Policy {
            reclaim: enable,
            inactivity_secs: edit.inactivity_secs.or(before.inactivity_secs),
            reclaim_every_secs: match (enable, edit.reclaim_every_secs, before.reclaim_every_secs) {
                (_, Some(e), _) => Some(e),
                (true, None, None) => Some(DEFAULT_RECLAIM_EVERY_SECS),
                (_, None, b) => b,
            },
            reclaim_since: match (enable, before.reclaim) {
                (true, false) => Some(now),
                (true, true) => before.reclaim_since,
                (false, _) => None,
            },
            ..before.clone()
        };
        if enable && !after.floating {
            return Err(PortalError::Invalid {
                field: "reclaim",
                reason: format!("policy {id} is not floating: only floating seats are reclaimed"),
            });
        }
        if let Some(v) = after
            .inactivity_secs
            .filter(|v| !(1..=MAX_DAYS * 86_400).contains(v))
        {
            return Err(PortalError::Invalid {
                field: "inactivity_secs",
                reason: format!("{v}; give 1 to {} seconds", MAX_DAYS * 86_400),
            });
        }
        check_floating_terms(&after)?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE policies SET reclaim = $1, inactivity_secs = $2, reclaim_every_secs = $3, \
             reclaim_since = $4 WHERE id = $5",
        )
        .bind(flag(after.reclaim))
        .bind(after.inactivity_secs)
        .bind(after.reclaim_every_secs)
        .bind(after.reclaim_since)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let change = serde_json::json!({
            "before": {
                "reclaim": before.reclaim,
                "inactivity_secs": before.inactivity_secs,
                "reclaim_every_secs": before.reclaim_every_secs,
            },
            "after": {
                "reclaim": after.reclaim,
                "inactivity_secs": after.inactivity_secs,
                "reclaim_every_secs": after.reclaim_every_secs,
                "reclaim_since": after.reclaim_since,
            },
        });
        audit(
            &mut *tx,
            self.now().timestamp_millis(),
            actor,
            "policy.reclamation",
            Some(id),
            Some(&edit.reason),
            None,
            Some(&change.to_string()),
        )
        .await?;
        tx.commit().await?;
        self.policy(id).await
    }

    /// The policies with reclamation enabled, and how often each runs (seconds).
    pub async fn reclaim_schedule(&self) -> Result<Vec<(String, i64)>, PortalError> {
        let rows = sqlx::query(
            "SELECT id, reclaim_every_secs FROM policies WHERE reclaim = 1 ORDER BY id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get::<Option<i64>, _>("reclaim_every_secs")?
                        .unwrap_or(DEFAULT_RECLAIM_EVERY_SECS),
                ))
            })
            .collect()
    }

    /// One tick of the reclamation timer: run reclamation for the policies that are due
    /// (their frequency passed since their last run, by the portal's clock), and note when
    /// each ran in `last`. The same operation as `lic-portal reclaim`.
    pub async fn reclaim_due(
        &self,
        last: &mut HashMap<String, i64>,
    ) -> Result<Option<Reclaimed>, PortalError> {
        let now = self.now().timestamp();
        let due: Vec<String> = self
            .reclaim_schedule()
            .await?
            .into_iter()
            .filter(|(id, every)| last.get(id).is_none_or(|t| now - t >= *every))
            .map(|(id, _)| id)
            .collect();
        if due.is_empty() {
            return Ok(None);
        }
        let done = self
            .reclaim(false, Some(&due), None, &Actor("timer".into()))
            .await?;
        for id in due {
            last.insert(id, now);
        }
        Ok(Some(done))
    }

    /// The reclamation timer of `serve`: wakes at the shortest frequency among the
    /// policies with reclamation (between 1 s and a minute, so that policies enabled later
    /// are seen within a minute) and runs the ones due. Each run that reclaimed or looked
    /// at seats is sent to `report` (if given). Ends when `report` is closed.
    pub async fn reclaim_timer(
        self: Arc<Self>,
        report: Option<tokio::sync::mpsc::Sender<Reclaimed>>,
    ) {
        let mut last = HashMap::new();
        loop {
            let wait = match self.reclaim_schedule().await {
                Ok(schedule) => schedule.iter().map(|(_, every)| *every).min().unwrap_or(60),
                Err(e) => {
                    tracing::warn!(error = %e, "reclamation: cannot read the policies");
                    60
                }
            }
            .clamp(1, 60);
            tokio::time::sleep(std::time::Duration::from_secs(
                u64::try_from(wait).unwrap_or(60),
            ))
            .await;
            match self.reclaim_due(&mut last).await {
                Ok(Some(done)) => {
                    for seat in &done.seats {
                        tracing::info!(
                            activation = %seat.activation,
                            license = %seat.license,
                            "reclaimed an inactive floating seat: {}",
                            seat.reason
                        );
                    }
                    if let Some(tx) = &report
                        && tx.send(done).await.is_err()
                    {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reclamation failed; it runs again"),
            }
        }
    }
}
