//! The floating side of the client: signed lease requests, the leases a floating server
//! answers with (verified, then kept in the store so that every process of the machine
//! sees them), offline checkouts and check-ins. The exchange with the server and the
//! background renewal are in [`crate::lease`].

use super::*;
use crate::format::{CheckIn, Lease, LeaseAction, LeaseRequest};
use crate::store::{Floating, HeldLease};

/// A floating lease this device holds, as its verified file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub license_id: String,
    /// The activation that records the seat at the server.
    pub activation_id: String,
    /// The application instance that holds it.
    pub instance: Nonce,
    /// The floating feature it is for (None: the seat).
    pub feature: Option<String>,
    pub issued: DateTime<Utc>,
    /// When the holder renews it.
    pub renew_after: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires: DateTime<Utc>,
    /// An Offline Expiry Date the policy sets on every lease: the server keeps the seat
    /// for this device until then, even without a heartbeat.
    pub offline_expiry: Option<DateTime<Utc>>,
    /// The license's own expiry.
    pub license_expires: Option<DateTime<Utc>>,
}

impl LeaseInfo {
    fn of(lease: &Lease) -> Self {
        LeaseInfo {
            license_id: lease.license_id.clone(),
            activation_id: lease.activation_id.clone(),
            instance: lease.instance,
            feature: lease.feature.clone(),
            issued: lease.issued,
            renew_after: lease.renew_after,
            expires: lease.expires,
            offline_expiry: lease.offline_expiry,
            license_expires: lease.license_expires,
        }
    }

    /// Until when the lease may be used without reaching the server: its expiry, or its
    /// Offline Expiry Date when the policy sets a later one (the server keeps the seat
    /// for this device until then).
    pub fn valid_until(&self) -> DateTime<Utc> {
        valid_until(self.expires, self.offline_expiry)
    }

    /// Whether it may be used at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        now < self.valid_until()
    }
}

fn valid_until(expires: DateTime<Utc>, offline_expiry: Option<DateTime<Utc>>) -> DateTime<Utc> {
    offline_expiry.map_or(expires, |oed| oed.max(expires))
}

/// A signed lease request, with what it asks (the lease that answers it must name its
/// instance, feature and nonce).
#[derive(Debug, Clone)]
pub struct SignedLeaseRequest {
    pub request: LeaseRequest,
    pub file: SignedFile,
}

/// A new application instance id (random): the instances of one device share its seat,
/// each with a lease of its own.
pub fn new_instance() -> Nonce {
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    Nonce(nonce)
}

/// What a lease says about this device at a time: the product used through a lease.
pub(super) struct LeaseEvaluation {
    pub lease: LeaseInfo,
    pub entitlements: Entitlements,
    pub violations: Vec<Violation>,
    pub fingerprint: Option<MatchReport>,
}

impl Client {
    /// The credential for a floating request: the one given (remembered in `state` for
    /// the next requests), else the one remembered.
    fn floating_credential(
        &self,
        state: &mut State,
        given: Option<Credential>,
    ) -> Result<Credential, ClientError> {
        let credential = match given {
            Some(c) => c,
            None => state
                .floating
                .get(&self.product)
                .map(|f| f.credential.clone())
                .ok_or_else(|| ClientError::CredentialNeeded {
                    product: self.product.clone(),
                })?,
        };
        state
            .floating
            .entry(self.product.clone())
            .and_modify(|f| f.credential = credential.clone())
            .or_insert_with(|| Floating {
                credential: credential.clone(),
                leases: Vec::new(),
            });
        Ok(credential)
    }

    fn new_lease_request(
        &self,
        state: &State,
        key: &SecretKey,
        credential: Credential,
        action: LeaseAction,
        instance: Nonce,
        feature: Option<&str>,
    ) -> LeaseRequest {
        LeaseRequest {
            product: self.product.clone(),
            credential,
            fingerprint: self.fingerprint_of(key),
            action,
            instance,
            feature: feature.map(str::to_owned),
            hours: None,
            journal: None,
            nonce: new_instance(),
            created: self.now(),
            client: format!("lic {}", env!("CARGO_PKG_VERSION")),
            variables: state
                .variables
                .get(&self.product)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Sign a lease request — take, renew or release the seat (or the floating feature
    /// `feature`) for the application instance `instance` — with this device's key,
    /// fingerprint and variables, a fresh nonce and the client's time. The credential
    /// is the one given, remembered for the product; or, when `None`, the one remembered
    /// ([`ClientError::CredentialNeeded`] if there is none). Checkouts are made with
    /// [`checkout_request`](Self::checkout_request).
    pub fn lease_request(
        &self,
        credential: Option<Credential>,
        action: LeaseAction,
        instance: Nonce,
        feature: Option<&str>,
    ) -> Result<SignedLeaseRequest, ClientError> {
        self.update(|state, key, _| {
            let credential = self.floating_credential(state, credential)?;
            let request = self.new_lease_request(state, key, credential, action, instance, feature);
            let file = format::sign(&request, key)?;
            Ok(SignedLeaseRequest { request, file })
        })
    }

    /// Verify the lease that answers `request` and keep it in the store (replacing this
    /// instance's previous lease), so that checks in every process of the machine see
    /// it. Refused, with nothing changed, when it is not signed by a trusted vendor key,
    /// is for another product, device, fingerprint, instance, feature or request, when
    /// the clock was turned back (or is far behind the lease's issue time), or when the
    /// lease or the license has already lapsed. The clock mark rises to its issue time.
    pub fn install_lease(
        &self,
        request: &LeaseRequest,
        input: &[u8],
    ) -> Result<LeaseInfo, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let keys = self.keyring(state);
            // From the vendor's portal (a vendor key), or from an on-premise floating
            // server (its device key, named by the vendor-signed pool license it carries).
            let (lease, pool) = pool::open::<Lease>(input, &keys).map_err(pool_error)?;
            if let Some(pool) = &pool {
                accept_pool(state, pool, now)?;
            }
            let l = lease.payload();
            if l.product != self.product || request.product != self.product {
                return Err(ClientError::WrongProduct {
                    expected: self.product.clone(),
                    found: l.product.clone(),
                });
            }
            if l.device_key != Bytes32(key.public().to_bytes()) {
                return Err(not_this_device(key, &l.device_key));
            }
            let mismatch = |what: &str| {
                Err(ClientError::LeaseMismatch {
                    what: what.to_string(),
                })
            };
            if l.instance != request.instance {
                return mismatch("it is for another application instance");
            }
            if l.feature != request.feature {
                return mismatch(match &l.feature {
                    Some(_) => "it is for another floating feature",
                    None => "it is for the seat, not the floating feature asked for",
                });
            }
            if l.request_nonce != request.nonce {
                return mismatch("it answers another request (its nonce differs)");
            }
            let report = fingerprint::match_fingerprint(
                &l.fingerprint,
                &self.fingerprint_of(key),
                &l.match_rule,
            );
            if !report.ok {
                return Err(ClientError::Violation(wrong_device(&report, &l.match_rule)));
            }
            if let Some(v) = rules::clock(now, state.last_seen.map(from_ts), l.clock_tolerance) {
                return Err(ClientError::Violation(v));
            }
            rules::issued_ahead(now, l.issued, l.clock_tolerance)
                .map_err(|a| clock_behind(format::FileKind::Lease, a))?;
            if let Some(at) = l.license_expires.filter(|at| now >= *at) {
                return Err(ClientError::Violation(Violation::Expired { at }));
            }
            let until = valid_until(l.expires, l.offline_expiry);
            if now >= until {
                return Err(ClientError::Violation(Violation::LeaseLapsed { at: until }));
            }
            let credential = request.credential.clone();
            let floating = state
                .floating
                .entry(self.product.clone())
                .or_insert_with(|| Floating {
                    credential,
                    leases: Vec::new(),
                });
            floating.leases.retain(|h| {
                h.until > ts(now) && !(h.instance == l.instance && h.feature == l.feature)
            });
            floating.leases.push(HeldLease {
                lease: lease.bytes().to_vec(),
                instance: l.instance,
                feature: l.feature.clone(),
                until: ts(until),
            });
            let mark = rules::raise_mark(state.last_seen.map(from_ts), now).max(l.issued);
            state.last_seen = Some(ts(mark));
            Ok(LeaseInfo::of(l))
        })
    }

    /// Forget the lease of `instance` (for the seat, or the floating feature `feature`):
    /// after it was released, or when the server took the seat away. Whether there was
    /// one. Lapsed leases of other instances are forgotten too.
    pub fn drop_lease(&self, instance: Nonce, feature: Option<&str>) -> Result<bool, ClientError> {
        let now = ts(self.now());
        self.update(|state, _, _| {
            let Some(floating) = state.floating.get_mut(&self.product) else {
                return Ok(false);
            };
            let before = floating.leases.len();
            floating
                .leases
                .retain(|h| !(h.instance == instance && h.feature.as_deref() == feature));
            let dropped = floating.leases.len() < before;
            floating.leases.retain(|h| h.until > now);
            Ok(dropped)
        })
    }

    /// The leases this device keeps for the product that verify, live or lapsed.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, ClientError> {
        let key = self.store.device_key()?;
        Ok(self.verified_leases(&self.store.load(&key)?))
    }

    /// The stored leases of the product that verify with the keys in force and name the
    /// product, instance and feature they are kept under.
    pub(super) fn verified_leases(&self, state: &State) -> Vec<LeaseInfo> {
        let Some(floating) = state.floating.get(&self.product) else {
            return Vec::new();
        };
        let keys = self.keyring(state);
        floating
            .leases
            .iter()
            .filter_map(|h| {
                let (lease, _) = pool::verify::<Lease>(h.lease.clone(), &keys).ok()?;
                let l = lease.payload();
                (l.product == self.product && l.instance == h.instance && l.feature == h.feature)
                    .then(|| LeaseInfo::of(l))
            })
            .collect()
    }

    /// Every rule that applies to the product's seat lease now (the one that stays valid
    /// longest): the clock mark, the license's expiry, the lease lapsing, the device key
    /// and fingerprint. `None` when the device keeps no seat lease for the product.
    pub(super) fn evaluate_lease(
        &self,
        key: &SecretKey,
        state: &State,
        verified: &[LeaseInfo],
        now: DateTime<Utc>,
    ) -> Option<LeaseEvaluation> {
        let floating = state.floating.get(&self.product)?;
        let keys = self.keyring(state);
        let mut best: Option<(format::Verified<Lease>, Option<Pool>)> = None;
        for held in floating.leases.iter().filter(|h| h.feature.is_none()) {
            let Ok((lease, pool)) = pool::verify::<Lease>(held.lease.clone(), &keys) else {
                continue;
            };
            let until = |l: &Lease| valid_until(l.expires, l.offline_expiry);
            if lease.product == self.product
                && lease.instance == held.instance
                && lease.feature.is_none()
                && best.as_ref().is_none_or(|(b, _)| until(&lease) > until(b))
            {
                best = Some((lease, pool));
            }
        }
        let Some((best, pool)) = best else {
            // Leases kept, none of which verifies any more (a revoked vendor key).
            return floating
                .leases
                .iter()
                .any(|h| h.feature.is_none())
                .then(|| LeaseEvaluation {
                    lease: verified
                        .first()
                        .cloned()
                        .unwrap_or_else(|| unverifiable(&floating.leases)),
                    entitlements: Entitlements {
                        product: self.product.clone(),
                        license_id: String::new(),
                        activation_id: String::new(),
                        license_type: format::LicenseType::Floating,
                        features: Default::default(),
                        not_before: now,
                        expires: None,
                        offline_expiry: None,
                        clock_tolerance: 0,
                        serial: 0,
                    },
                    violations: vec![Violation::InvalidLicense {
                        reason: "the floating lease is not signed by a trusted vendor key".into(),
                    }],
                    fingerprint: None,
                });
        };
        let l = best.payload();
        let mut violations = Vec::new();
        if let Some(v) = rules::clock(now, state.last_seen.map(from_ts), l.clock_tolerance) {
            violations.push(v);
        }
        if let Some(at) = l.license_expires.filter(|at| now >= *at) {
            violations.push(Violation::Expired { at });
        }
        let until = valid_until(l.expires, l.offline_expiry);
        if now >= until {
            violations.push(Violation::LeaseLapsed { at: until });
        }
        if let Some(pool) = &pool {
            match pool.check_at(now).and_then(|()| {
                pool.check_serial(state.pool_serials.get(&pool.activation_id).copied())
            }) {
                Err(PoolError::Expired { at }) => violations.push(Violation::Expired { at }),
                Err(e) => violations.push(Violation::InvalidLicense {
                    reason: e.to_string(),
                }),
                Ok(()) => {}
            }
        }
        let report = fingerprint::match_fingerprint(
            &l.fingerprint,
            &self.fingerprint_of(key),
            &l.match_rule,
        );
        if l.device_key != Bytes32(key.public().to_bytes()) {
            violations.push(Violation::WrongDevice {
                required_failed: vec!["device-key".into()],
                differing: Vec::new(),
                max_changed: l.match_rule.max_changed,
            });
        } else if !report.ok {
            violations.push(wrong_device(&report, &l.match_rule));
        }
        Some(LeaseEvaluation {
            lease: LeaseInfo::of(l),
            entitlements: Entitlements {
                product: l.product.clone(),
                license_id: l.license_id.clone(),
                activation_id: l.activation_id.clone(),
                license_type: l.license_type,
                features: l.features.clone(),
                not_before: l.issued,
                expires: l.license_expires,
                offline_expiry: None,
                clock_tolerance: l.clock_tolerance,
                serial: 0,
            },
            violations,
            fingerprint: Some(report),
        })
    }

    /// Sign a checkout request for `hours` of offline use (the server caps them by the
    /// policy) and keep it as the product's pending request, so that the license that
    /// answers it — carrying the Offline Expiry Date — installs with
    /// [`install`](Self::install) like an offline activation's. It starts the device
    /// journal (sequence 0) as an activation request does. The credential is the one
    /// given (remembered), else the one remembered for the product's leases.
    pub fn checkout_request(
        &self,
        credential: Option<Credential>,
        hours: u64,
    ) -> Result<SignedFile, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            if let Some(inst) = state.installations.get(&self.product) {
                let activation_id = self.installed_activation(inst, state);
                return Err(ClientError::AlreadyActivated {
                    product: self.product.clone(),
                    activation_id,
                });
            }
            // A checkout request left pending (refused, or never answered) is stale
            // within minutes and is replaced; an activation request on its way to the
            // vendor is not.
            if state.pending.get(&self.product).is_some_and(|p| {
                format::kind_of(&p.request).ok() == Some(format::FileKind::ActivationRequest)
            }) {
                return Err(ClientError::RequestPending {
                    product: self.product.clone(),
                });
            }
            let credential = self.floating_credential(state, credential)?;
            let request = LeaseRequest {
                hours: Some(hours),
                journal: Some(JournalHead::first()),
                ..self.new_lease_request(
                    state,
                    key,
                    credential.clone(),
                    LeaseAction::Checkout,
                    new_instance(),
                    None,
                )
            };
            let file = format::sign(&request, key)?;
            state.pending.insert(
                self.product.clone(),
                Pending {
                    request: file.bytes().to_vec(),
                    nonce: request.nonce,
                    credential,
                    created: ts(now),
                },
            );
            state.last_seen = Some(ts(rules::raise_mark(state.last_seen.map(from_ts), now)));
            Ok(file)
        })
    }

    /// The device key of the on-premise floating server the installed checkout came
    /// from (named by the pool license it carries); `None` for a checkout from the
    /// vendor's portal, or when nothing is checked out.
    pub fn checkout_server(&self) -> Result<Option<PublicKey>, ClientError> {
        let key = self.store.device_key()?;
        let state = self.store.load(&key)?;
        let Some(inst) = state.installations.get(&self.product) else {
            // Checked in already (the check-in file is made before it is sent): the
            // server recorded with the tombstone of the latest check-in.
            return Ok(state
                .tombstones
                .values()
                .filter(|t| {
                    t.product == self.product
                        && format::kind_of(&t.deactivation).ok() == Some(format::FileKind::CheckIn)
                })
                .max_by_key(|t| t.deactivated)
                .and_then(|t| t.server_key)
                .and_then(|k| PublicKey::from_bytes(&k.0).ok()));
        };
        Ok(
            verify_chained::<License>(inst.license.clone(), &self.keyring(&state))
                .ok()
                .and_then(|(_, pool)| pool)
                .map(|p| p.server_key),
        )
    }

    /// Check the checked-out seat in: remove the checkout license, keep a tombstone (so
    /// the same license cannot be installed again), and return the signed check-in file
    /// with the final counters, continuing the device journal — for the server (`lic
    /// checkin --server`) or to carry there (`lic checkin --out FILE`). If the product
    /// was already checked in here, the same check-in file is returned again.
    pub fn check_in(&self) -> Result<SignedFile, ClientError> {
        let now = self.now();
        self.update(|state, key, _| {
            let Some(inst) = state.installations.get(&self.product).cloned() else {
                if let Some(file) = self.closed_again(state, format::FileKind::CheckIn) {
                    return Ok(file);
                }
                return Err(ClientError::NotCheckedOut {
                    product: self.product.clone(),
                });
            };
            // As for a deactivation, no vendor trust is needed to give the seat back.
            let license = format::payload_unverified::<License>(&inst.license)?;
            let refresh = match &inst.refresh {
                Some(bytes) => Some(format::payload_unverified::<Refresh>(bytes)?),
                None => None,
            };
            if rules::effective(&license, refresh.as_ref())
                .offline_expiry
                .is_none()
            {
                return Err(ClientError::NotCheckedOut {
                    product: self.product.clone(),
                });
            }
            self.close_installation(state, &inst, license.activation_id, now, |c| {
                Ok(format::sign(
                    &CheckIn {
                        activation_id: c.activation_id,
                        product: c.product,
                        counters: c.counters,
                        journal: c.journal,
                        created: c.created,
                        variables: c.variables,
                    },
                    key,
                )?)
            })
        })
    }
}

/// What is shown of leases kept that no longer verify: their instance, nothing else.
fn unverifiable(held: &[HeldLease]) -> LeaseInfo {
    let at = held
        .iter()
        .map(|h| from_ts(h.until))
        .max()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    LeaseInfo {
        license_id: String::new(),
        activation_id: String::new(),
        instance: held.first().map_or(Nonce([0; 16]), |h| h.instance),
        feature: None,
        issued: at,
        renew_after: at,
        expires: at,
        offline_expiry: None,
        license_expires: None,
    }
}
