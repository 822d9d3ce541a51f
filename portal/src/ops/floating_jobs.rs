//! The floating write jobs: a lease taken or renewed (a seat, or one floating feature), a
//! lease released, a seat checked out. Each reads the license with its policy's terms,
//! the device's seat and the pool as they are inside the writer's transaction (on
//! PostgreSQL under the batch's lock of the license row), decides with
//! `lic_core::floating` and `crate::rules`, and adds its writes. A heartbeat of a device
//! that holds its seat writes two rows: the seat and the instance.

use lic_core::floating::{self, Grant, Holder, LeaseTimes, Pool, Refusal, Terms};
use lic_core::format::LeaseAction;

use super::*;

/// Take or renew a lease: a seat of a floating license, or one floating feature.
pub(in crate::ops) struct LeaseWrite {
    pub(in crate::ops) action: LeaseAction,
    /// Queue for a seat when none is free (`?wait=true`).
    pub(in crate::ops) wait: bool,
    /// The request's hash: a take is taken once.
    pub(in crate::ops) hash: String,
    pub(in crate::ops) lic_id: String,
    pub(in crate::ops) product: String,
    /// The id of the activation made if the device has no seat row yet.
    pub(in crate::ops) new_activation: String,
    pub(in crate::ops) device_hex: String,
    pub(in crate::ops) device_kid: String,
    pub(in crate::ops) fingerprint: String,
    pub(in crate::ops) instance: String,
    pub(in crate::ops) feature: Option<String>,
    pub(in crate::ops) variables: String,
    pub(in crate::ops) now: DateTime<Utc>,
    pub(in crate::ops) actor: Actor,
}

/// Release one instance's lease (of the seat, or of a floating feature).
pub(in crate::ops) struct ReleaseWrite {
    pub(in crate::ops) hash: String,
    pub(in crate::ops) lic_id: String,
    pub(in crate::ops) device_hex: String,
    pub(in crate::ops) instance: String,
    pub(in crate::ops) feature: Option<String>,
    pub(in crate::ops) now: DateTime<Utc>,
    pub(in crate::ops) actor: Actor,
}

/// Check a seat out until an OED: the license file was made (and signed) before, for the
/// activation the device had (`expected`) or a new one.
pub(in crate::ops) struct CheckoutWrite {
    pub(in crate::ops) hash: String,
    pub(in crate::ops) lic_id: String,
    /// The device's active activation when the license file was made (None: none, and
    /// the file names a new one).
    pub(in crate::ops) expected: Option<String>,
    pub(in crate::ops) license: License,
    pub(in crate::ops) armored: String,
    pub(in crate::ops) revision: i64,
    pub(in crate::ops) device_hex: String,
    pub(in crate::ops) device_kid: String,
    pub(in crate::ops) fingerprint: String,
    pub(in crate::ops) variables: String,
    pub(in crate::ops) oed: DateTime<Utc>,
    pub(in crate::ops) now: DateTime<Utc>,
    pub(in crate::ops) actor: Actor,
}

/// What a lease granted or renewed is, for the lease file signed after the commit.
#[derive(Debug)]
pub(in crate::ops) struct LeaseGrant {
    pub(in crate::ops) activation: String,
    pub(in crate::ops) grant: Grant,
    pub(in crate::ops) times: LeaseTimes,
    /// The seat's Offline Expiry Date after the grant.
    pub(in crate::ops) offline_expiry: Option<i64>,
    pub(in crate::ops) features: Features,
    pub(in crate::ops) license_expires: Option<DateTime<Utc>>,
}

/// The pool a lease job writes under: the license's seats (feature ''), or a feature.
fn pool_name(feature: Option<&str>) -> &str {
    feature.unwrap_or("")
}

// ----- reads -------------------------------------------------------------------------------

/// The license with its policy's terms, whether the request was applied, and whether the
/// device ever had a seat row of the license. Columns: see [`LicenseTerms::from_row`].
fn license_terms_read(lic_id: &str, hash: &str, device: &str) -> (String, Vec<Val>) {
    stmt(
        "SELECT l.status, l.seats, l.expires, l.floating, l.features, p.features, l.created, \
         p.validity_days, p.lease_secs, p.renew_percent, p.max_processes, p.revival_secs, \
         p.lease_oed_hours, p.max_checkout_hours, \
         (SELECT count(*) FROM applied_files f WHERE f.hash = $2), \
         (SELECT count(*) FROM activations h WHERE h.license = l.id AND h.device_key = $3), \
         l.revision, l.seats_used \
         FROM licenses l JOIN policies p ON p.id = l.policy WHERE l.id = $1",
        vec![lic_id.into(), hash.into(), device.into()],
    )
}

/// The device's seat (its active activation) with its instances: one row per instance
/// (none: a row of NULLs in the instance columns).
fn seat_read(lic_id: &str, device: &str) -> (String, Vec<Val>) {
    stmt(
        "SELECT a.id, a.lease_expires, a.offline_expiry, a.checked_out, i.instance, i.expires, \
         a.pool_seats \
         FROM activations a LEFT JOIN lease_instances i ON i.activation = a.id \
         WHERE a.license = $1 AND a.device_key = $2 AND a.state = 'active'",
        vec![lic_id.into(), device.into()],
    )
}

/// Seats other devices hold at `now`, and when the first of them lapses.
fn held_read(lic_id: &str, device: &str, now: i64) -> (String, Vec<Val>) {
    stmt(
        "SELECT count(*), min(CASE WHEN lease_expires IS NULL THEN offline_expiry \
         WHEN offline_expiry IS NULL THEN lease_expires \
         WHEN lease_expires > offline_expiry THEN lease_expires ELSE offline_expiry END) \
         FROM activations WHERE license = $1 AND state = 'active' AND device_key <> $2 \
         AND (lease_expires > $3 OR offline_expiry > $3)",
        vec![lic_id.into(), device.into(), now.into()],
    )
}

fn waiters_read(lic_id: &str, feature: &str) -> (String, Vec<Val>) {
    stmt(
        "SELECT device_key, ticket, seen FROM lease_waiters WHERE license = $1 AND feature = $2 \
         ORDER BY ticket",
        vec![lic_id.into(), feature.into()],
    )
}

/// This device's uses of a floating feature, one per instance.
fn feature_mine_read(lic_id: &str, feature: &str, device: &str) -> (String, Vec<Val>) {
    stmt(
        "SELECT instance, expires FROM feature_leases WHERE license = $1 AND feature = $2 \
         AND device_key = $3",
        vec![lic_id.into(), feature.into(), device.into()],
    )
}

/// Devices other than this one using a floating feature at `now`, and the first lapse.
fn feature_held_read(lic_id: &str, feature: &str, device: &str, now: i64) -> (String, Vec<Val>) {
    stmt(
        "SELECT count(DISTINCT device_key), min(expires) FROM feature_leases \
         WHERE license = $1 AND feature = $2 AND device_key <> $3 AND expires > $4",
        vec![lic_id.into(), feature.into(), device.into(), now.into()],
    )
}

pub(super) fn lease_reads(j: &LeaseWrite) -> Vec<(String, Vec<Val>)> {
    let now = j.now.timestamp();
    let pool = pool_name(j.feature.as_deref());
    let mut reads = vec![
        license_terms_read(&j.lic_id, &j.hash, &j.device_hex),
        seat_read(&j.lic_id, &j.device_hex),
        waiters_read(&j.lic_id, pool),
    ];
    match &j.feature {
        None => reads.push(held_read(&j.lic_id, &j.device_hex, now)),
        Some(f) => {
            reads.push(feature_mine_read(&j.lic_id, f, &j.device_hex));
            reads.push(feature_held_read(&j.lic_id, f, &j.device_hex, now));
        }
    }
    reads
}

pub(super) fn release_reads(j: &ReleaseWrite) -> Vec<(String, Vec<Val>)> {
    let mut reads = vec![applied_query(&j.hash), seat_read(&j.lic_id, &j.device_hex)];
    if let Some(f) = &j.feature {
        reads.push(feature_mine_read(&j.lic_id, f, &j.device_hex));
    }
    reads
}

pub(super) fn checkout_reads(j: &CheckoutWrite) -> Vec<(String, Vec<Val>)> {
    vec![
        license_terms_read(&j.lic_id, &j.hash, &j.device_hex),
        seat_read(&j.lic_id, &j.device_hex),
        waiters_read(&j.lic_id, ""),
        held_read(&j.lic_id, &j.device_hex, j.now.timestamp()),
    ]
}

// ----- what was read -----------------------------------------------------------------------

/// The license and its policy's terms, as read in the job.
struct LicenseTerms {
    status: String,
    floating: bool,
    seats: u64,
    /// Seats an on-premise floating server's pool holds (a floating license's
    /// `seats_used`): not leased here.
    pooled: u64,
    terms: Terms,
    expires: Option<DateTime<Utc>>,
    features: Features,
    applied: bool,
    had_seat: bool,
    revision: i64,
}

impl LicenseTerms {
    fn from_row(rows: &[Vec<Val>], lic_id: &str) -> Result<LicenseTerms, PortalError> {
        let row = rows.first().ok_or_else(|| PortalError::NotFound {
            what: "license",
            id: lic_id.into(),
        })?;
        let int = |i: usize| row.get(i).and_then(Val::int);
        let text = |i: usize| row.get(i).and_then(Val::text);
        let unsigned = |i: usize| int(i).and_then(|n| u64::try_from(n).ok());
        let features: Features = text(4)
            .or(text(5))
            .map(|t| from_json(t, "features"))
            .transpose()?
            .unwrap_or_default();
        // A fixed expiry, or the policy's validity from the license's creation.
        let expires = match (int(2), int(7), int(6)) {
            (Some(e), _, _) => Some(time(e)),
            (None, Some(days), Some(created)) => {
                Some(add_days(time(created), days, "the policy's validity_days")?)
            }
            _ => None,
        };
        Ok(LicenseTerms {
            status: text(0).unwrap_or_default().to_string(),
            seats: unsigned(1).unwrap_or(0),
            floating: int(3) == Some(1),
            terms: Terms {
                lease_secs: unsigned(8).unwrap_or(600),
                renew_percent: int(9).and_then(|n| u8::try_from(n).ok()).unwrap_or(50),
                max_processes: int(10).and_then(|n| u32::try_from(n).ok()),
                revival_secs: unsigned(11).unwrap_or(0),
                lease_oed_hours: unsigned(12),
                max_checkout_hours: unsigned(13),
            },
            expires,
            features,
            applied: int(14).unwrap_or(0) > 0,
            had_seat: int(15).unwrap_or(0) > 0,
            revision: int(16).unwrap_or(0),
            pooled: unsigned(17).unwrap_or(0),
        })
    }

    /// The seats leased and checked out here: the license's less its pool's.
    fn leasable(&self) -> u64 {
        self.seats.saturating_sub(self.pooled)
    }

    /// A device that holds the license's pool leases its seats itself: it takes no seat
    /// (or floating feature) here.
    fn not_the_pool(&self, lic_id: &str, seat: Option<&Seat>) -> Result<(), PortalError> {
        match seat {
            Some(s) if s.pool => Err(PortalError::DeviceHasSeat {
                license: lic_id.into(),
                activation: s.id.clone(),
                pool: true,
            }),
            _ => Ok(()),
        }
    }

    /// A revoked or suspended license leases nothing.
    fn usable(&self, lic_id: &str) -> Result<(), PortalError> {
        match self.status.as_str() {
            "active" => Ok(()),
            "suspended" => Err(PortalError::LicenseSuspended {
                license: lic_id.into(),
            }),
            _ => Err(PortalError::LicenseRevoked {
                license: lic_id.into(),
            }),
        }
    }
}

/// The device's seat row, as read.
struct Seat {
    id: String,
    lease_expires: Option<i64>,
    offline_expiry: Option<i64>,
    checked_out: bool,
    /// (instance, lease end).
    instances: Vec<(String, i64)>,
    /// It is an on-premise floating server's pool.
    pool: bool,
}

impl Seat {
    fn from_rows(rows: &[Vec<Val>]) -> Option<Seat> {
        let first = rows.first()?;
        Some(Seat {
            id: first.first().and_then(Val::text)?.to_string(),
            lease_expires: first.get(1).and_then(Val::int),
            offline_expiry: first.get(2).and_then(Val::int),
            checked_out: first.get(3).and_then(Val::int) == Some(1),
            pool: first.get(6).and_then(Val::int).is_some(),
            instances: rows
                .iter()
                .filter_map(|r| {
                    Some((
                        r.get(4).and_then(Val::text)?.to_string(),
                        r.get(5).and_then(Val::int)?,
                    ))
                })
                .collect(),
        })
    }

    fn holder(&self) -> Holder {
        Holder {
            lease_expires: self.lease_expires.map(time),
            offline_expiry: self.offline_expiry.map(time),
        }
    }
}

fn waiters_from(rows: &[Vec<Val>]) -> Vec<decide::Waiter> {
    rows.iter()
        .filter_map(|r| {
            Some(decide::Waiter {
                device: r.first()?.text()?.to_string(),
                ticket: r.get(1)?.int()?,
                seen: r.get(2)?.int()?,
            })
        })
        .collect()
}

/// (count, first lapse) of a held-by-others read.
fn held_from(rows: &[Vec<Val>]) -> (u64, Option<DateTime<Utc>>) {
    let row = rows.first();
    (
        row.and_then(|r| r.first())
            .and_then(Val::int)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        row.and_then(|r| r.get(1)).and_then(Val::int).map(time),
    )
}

fn instances_from(rows: &[Vec<Val>]) -> Vec<(String, i64)> {
    rows.iter()
        .filter_map(|r| Some((r.first()?.text()?.to_string(), r.get(1)?.int()?)))
        .collect()
}

// ----- decisions ---------------------------------------------------------------------------

/// The waiter rows a grant or a refusal changes: the device leaves the queue when it gets
/// its seat, or joins (or stays in) it when it waits; waiters that stopped asking go.
#[allow(clippy::too_many_arguments)] // the pool, the device, its place, and the times
fn queue_writes(
    out: &mut Vec<Write>,
    lic_id: &str,
    pool: &str,
    device: &str,
    queue: &decide::Queue,
    now: i64,
    cutoff: i64,
    join: bool,
) {
    if queue.dead {
        out.push(
            stmt(
                "DELETE FROM lease_waiters WHERE license = $1 AND feature = $2 AND seen <= $3",
                vec![lic_id.into(), pool.into(), cutoff.into()],
            )
            .into(),
        );
    }
    if join {
        out.push(
            stmt(
                "INSERT INTO lease_waiters (license, feature, device_key, ticket, seen) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (license, feature, device_key) \
                 DO UPDATE SET ticket = excluded.ticket, seen = excluded.seen",
                vec![
                    lic_id.into(),
                    pool.into(),
                    device.into(),
                    queue.mine.unwrap_or(queue.next_ticket).into(),
                    now.into(),
                ],
            )
            .into(),
        );
    } else if queue.mine.is_some() {
        out.push(
            stmt(
                "DELETE FROM lease_waiters WHERE license = $1 AND feature = $2 AND device_key = $3",
                vec![lic_id.into(), pool.into(), device.into()],
            )
            .into(),
        );
    }
}

pub(super) fn decide_lease(
    j: &LeaseWrite,
    got: &mut Results,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let lic = LicenseTerms::from_row(&got.next(), &j.lic_id)?;
    lic.usable(&j.lic_id)?;
    let seat = Seat::from_rows(&got.next());
    lic.not_the_pool(&j.lic_id, seat.as_ref())?;
    let waiters = waiters_from(&got.next());
    if j.action == LeaseAction::Take && lic.applied {
        return Err(PortalError::RequestReplayed);
    }
    let times =
        floating::lease_times(&lic.terms, j.now, lic.expires).map_err(PortalError::Floating)?;
    let pool = pool_name(j.feature.as_deref());
    let queue = decide::queue(&waiters, &j.device_hex, now, lic.terms.lease_secs);
    let cutoff = now.saturating_sub(u64_to_i64(lic.terms.lease_secs.saturating_mul(2)));
    mine.devices
        .insert((j.lic_id.clone(), j.device_hex.clone()));
    match &j.feature {
        None => decide_seat_lease(j, &lic, seat, got, &queue, times, cutoff, mine, out),
        Some(feature) => {
            let Some(seat) = seat else {
                return Err(PortalError::Floating(Refusal::NotLeased));
            };
            // The device must hold the license: a node-locked activation, or a floating
            // seat held now.
            if lic.floating && !seat.holder().holds(j.now) {
                return Err(PortalError::Floating(Refusal::NotLeased));
            }
            let uses = lic
                .features
                .get(feature)
                .and_then(|f| f.floating)
                .ok_or_else(|| {
                    PortalError::Floating(Refusal::NotFloating {
                        feature: feature.clone(),
                    })
                })?;
            let rows = instances_from(&got.next());
            let (held, next_free) = held_from(&got.next());
            let seen = decide::instances(&rows, &j.instance, now);
            let holder = Holder {
                lease_expires: rows.iter().map(|(_, e)| *e).max().map(time),
                offline_expiry: None,
            };
            let grant = floating::grant(
                Pool {
                    seats: uses,
                    held_by_others: held,
                    waiting_ahead: queue.ahead,
                    next_free,
                },
                (!rows.is_empty()).then_some(holder),
                lic.terms.revival_secs,
                Some(feature),
                j.now,
            );
            let grant = match grant {
                Ok(g) => g,
                Err(refusal) => {
                    return refused(j, pool, &queue, cutoff, refusal, mine, out);
                }
            };
            if !seen.mine {
                floating::instances(seen.others, lic.terms.max_processes)
                    .map_err(PortalError::Floating)?;
            }
            let expires = times.expires.timestamp();
            queue_writes(
                out,
                &j.lic_id,
                pool,
                &j.device_hex,
                &queue,
                now,
                cutoff,
                false,
            );
            out.push(
                stmt(
                    "INSERT INTO feature_leases (license, feature, device_key, instance, \
                     activation, expires, last_accessed) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (license, feature, device_key, instance) DO UPDATE SET \
                     expires = excluded.expires, last_accessed = excluded.last_accessed",
                    vec![
                        (&j.lic_id).into(),
                        feature.into(),
                        (&j.device_hex).into(),
                        (&j.instance).into(),
                        (&seat.id).into(),
                        expires.into(),
                        now.into(),
                    ],
                )
                .into(),
            );
            out.push(
                stmt(
                    "UPDATE activations SET last_accessed = $1 WHERE id = $2",
                    vec![now.into(), (&seat.id).into()],
                )
                .into(),
            );
            if grant != Grant::Held {
                out.push(
                    stmt(
                        "DELETE FROM feature_leases WHERE license = $1 AND feature = $2 \
                         AND device_key = $3 AND expires <= $4",
                        vec![
                            (&j.lic_id).into(),
                            feature.into(),
                            (&j.device_hex).into(),
                            now.into(),
                        ],
                    )
                    .into(),
                );
                mine.pools.insert((j.lic_id.clone(), pool.to_string()));
            }
            if j.action == LeaseAction::Take {
                out.push(Write::expecting(
                    claim(&j.hash, FileKind::LeaseRequest, &seat.id, "", now),
                    1,
                    applied_meanwhile(),
                ));
            }
            if grant != Grant::Held {
                out.push(
                    audit_stmt(
                        j.now.timestamp_millis(),
                        &j.actor,
                        "feature.lease",
                        Some(&seat.id),
                        None,
                        Some(&j.hash),
                        Some(&format!("feature {feature} ({grant:?}) until {expires}")),
                    )
                    .into(),
                );
            }
            mine.activations.insert(seat.id.clone());
            Ok(WriteOutcome::Leased(Box::new(LeaseGrant {
                activation: seat.id,
                grant,
                times,
                offline_expiry: None,
                features: lic.features,
                license_expires: lic.expires,
            })))
        }
    }
}

/// A refusal: `no-seat` to a device that waits puts it in (or keeps it in) the queue,
/// committed with the refusal.
fn refused(
    j: &LeaseWrite,
    pool: &str,
    queue: &decide::Queue,
    cutoff: i64,
    refusal: Refusal,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let waits = j.wait && matches!(refusal, Refusal::NoSeat { .. });
    if !waits && !queue.dead {
        return Err(PortalError::Floating(refusal));
    }
    queue_writes(
        out,
        &j.lic_id,
        pool,
        &j.device_hex,
        queue,
        j.now.timestamp(),
        cutoff,
        waits,
    );
    mine.pools.insert((j.lic_id.clone(), pool.to_string()));
    Ok(WriteOutcome::Refused(PortalError::Floating(refusal)))
}

#[allow(clippy::too_many_arguments)]
fn decide_seat_lease(
    j: &LeaseWrite,
    lic: &LicenseTerms,
    seat: Option<Seat>,
    got: &mut Results,
    queue: &decide::Queue,
    times: LeaseTimes,
    cutoff: i64,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    if !lic.floating {
        return Err(PortalError::NotFloating {
            license: j.lic_id.clone(),
        });
    }
    // A renewal from a device that never had a seat of the license: nothing to renew.
    // (One whose lease lapsed, or whose seat was reclaimed, takes a seat again.)
    if j.action == LeaseAction::Renew && seat.is_none() && !lic.had_seat {
        return Err(PortalError::Floating(Refusal::NotLeased));
    }
    let (held, next_free) = held_from(&got.next());
    let grant = floating::grant(
        Pool {
            seats: lic.leasable(),
            held_by_others: held,
            waiting_ahead: queue.ahead,
            next_free,
        },
        seat.as_ref().map(Seat::holder),
        lic.terms.revival_secs,
        None,
        j.now,
    );
    let grant = match grant {
        Ok(g) => g,
        Err(refusal) => return refused(j, "", queue, cutoff, refusal, mine, out),
    };
    let instances = seat
        .as_ref()
        .map(|s| decide::instances(&s.instances, &j.instance, now));
    if let Some(seen) = instances.filter(|s| !s.mine) {
        floating::instances(seen.others, lic.terms.max_processes).map_err(PortalError::Floating)?;
    }
    let expires = times.expires.timestamp();
    let lease_oed = times.offline_expiry.map(|t| t.timestamp());
    // The seat's lease ends with its latest instance's (this one's, renewed now).
    let seat_expires = instances
        .and_then(|s| s.others_until)
        .map_or(expires, |t| t.max(expires));
    queue_writes(out, &j.lic_id, "", &j.device_hex, queue, now, cutoff, false);
    let (activation, offline_expiry) = match &seat {
        Some(s) => {
            let (oed, checked_out) =
                decide::seat_oed(s.checked_out, s.offline_expiry, lease_oed, now);
            out.push(
                stmt(
                    "UPDATE activations SET lease_expires = $1, offline_expiry = $2, \
                     checked_out = $3, last_accessed = $4, fingerprint = $5 WHERE id = $6",
                    vec![
                        seat_expires.into(),
                        oed.into(),
                        i64::from(checked_out).into(),
                        now.into(),
                        (&j.fingerprint).into(),
                        (&s.id).into(),
                    ],
                )
                .into(),
            );
            if grant != Grant::Held {
                out.push(
                    stmt(
                        "DELETE FROM lease_instances WHERE activation = $1 AND expires <= $2",
                        vec![(&s.id).into(), now.into()],
                    )
                    .into(),
                );
            }
            (s.id.clone(), oed)
        }
        None => {
            out.push(
                stmt(
                    "INSERT INTO activations (id, license, product, device_key, device_kid, \
                     fingerprint, request_hash, state, serial, license_file, journal_seq, \
                     journal_head, offline_expiry, last_accessed, created, variables, \
                     lease_expires, checked_out) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, '', 0, $7, $8, $9, $9, \
                     $10, $11, 0)",
                    vec![
                        (&j.new_activation).into(),
                        (&j.lic_id).into(),
                        (&j.product).into(),
                        (&j.device_hex).into(),
                        (&j.device_kid).into(),
                        (&j.fingerprint).into(),
                        (&j.hash).into(),
                        lease_oed.into(),
                        now.into(),
                        (&j.variables).into(),
                        expires.into(),
                    ],
                )
                .into(),
            );
            (j.new_activation.clone(), lease_oed)
        }
    };
    out.push(
        stmt(
            "INSERT INTO lease_instances (activation, instance, expires) VALUES ($1, $2, $3) \
             ON CONFLICT (activation, instance) DO UPDATE SET expires = excluded.expires",
            vec![(&activation).into(), (&j.instance).into(), expires.into()],
        )
        .into(),
    );
    if j.action == LeaseAction::Take {
        out.push(Write::expecting(
            claim(&j.hash, FileKind::LeaseRequest, &activation, "", now),
            1,
            applied_meanwhile(),
        ));
    }
    if grant != Grant::Held {
        // (A renewal of a seat held is not audited: it changes no seat.)
        out.push(
            audit_stmt(
                j.now.timestamp_millis(),
                &j.actor,
                if grant == Grant::Revived {
                    "lease.revive"
                } else {
                    "lease.take"
                },
                Some(&activation),
                None,
                Some(&j.hash),
                Some(&format!(
                    "license {}: seat leased until {}",
                    j.lic_id,
                    times
                        .expires
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )),
            )
            .into(),
        );
        mine.pools.insert((j.lic_id.clone(), String::new()));
    }
    mine.activations.insert(activation.clone());
    Ok(WriteOutcome::Leased(Box::new(LeaseGrant {
        activation,
        grant,
        times,
        offline_expiry,
        features: lic.features.clone(),
        license_expires: lic.expires,
    })))
}

pub(super) fn decide_release(
    j: &ReleaseWrite,
    got: &mut Results,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let replayed = !got.next().is_empty();
    let seat = Seat::from_rows(&got.next());
    let activation = seat.as_ref().map(|s| s.id.clone());
    if replayed {
        // A copy of a release taken before: it releases nothing (again).
        return Ok(WriteOutcome::Released {
            released: false,
            activation,
        });
    }
    let pool = pool_name(j.feature.as_deref()).to_string();
    // A device that gave up waiting leaves the queue.
    out.push(
        stmt(
            "DELETE FROM lease_waiters WHERE license = $1 AND feature = $2 AND device_key = $3",
            vec![(&j.lic_id).into(), (&pool).into(), (&j.device_hex).into()],
        )
        .into(),
    );
    mine.devices
        .insert((j.lic_id.clone(), j.device_hex.clone()));
    mine.pools.insert((j.lic_id.clone(), pool));
    let released = match (&j.feature, &seat) {
        (_, None) => false,
        (None, Some(s)) => {
            let r = decide::release(&s.instances, &j.instance, now);
            out.push(
                stmt(
                    "DELETE FROM lease_instances WHERE activation = $1 AND instance = $2",
                    vec![(&s.id).into(), (&j.instance).into()],
                )
                .into(),
            );
            if r.released {
                // The last instance gone, the seat is free — but a checkout keeps its OED.
                out.push(
                    stmt(
                        "UPDATE activations SET lease_expires = $1, last_accessed = $2, \
                         offline_expiry = CASE WHEN checked_out = 1 THEN offline_expiry \
                         WHEN $3 = 1 THEN NULL ELSE offline_expiry END WHERE id = $4",
                        vec![
                            r.lease_expires.into(),
                            now.into(),
                            i64::from(r.lease_expires.is_none()).into(),
                            (&s.id).into(),
                        ],
                    )
                    .into(),
                );
            }
            r.released
        }
        (Some(feature), Some(s)) => {
            let rows = instances_from(&got.next());
            let r = decide::release(&rows, &j.instance, now);
            out.push(
                stmt(
                    "DELETE FROM feature_leases WHERE license = $1 AND feature = $2 \
                     AND device_key = $3 AND instance = $4",
                    vec![
                        (&j.lic_id).into(),
                        feature.into(),
                        (&j.device_hex).into(),
                        (&j.instance).into(),
                    ],
                )
                .into(),
            );
            if r.released {
                out.push(
                    stmt(
                        "UPDATE activations SET last_accessed = $1 WHERE id = $2",
                        vec![now.into(), (&s.id).into()],
                    )
                    .into(),
                );
            }
            r.released
        }
    };
    if let (true, Some(id)) = (released, &activation) {
        out.push(Write::expecting(
            claim(&j.hash, FileKind::LeaseRequest, id, "", now),
            1,
            applied_meanwhile(),
        ));
        out.push(
            audit_stmt(
                j.now.timestamp_millis(),
                &j.actor,
                if j.feature.is_some() {
                    "feature.release"
                } else {
                    "lease.release"
                },
                Some(id),
                None,
                Some(&j.hash),
                j.feature
                    .as_deref()
                    .map(|f| format!("feature {f}"))
                    .as_deref(),
            )
            .into(),
        );
        mine.activations.insert(id.clone());
    }
    Ok(WriteOutcome::Released {
        released,
        activation,
    })
}

pub(super) fn decide_checkout(
    j: &CheckoutWrite,
    got: &mut Results,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let lic = LicenseTerms::from_row(&got.next(), &j.lic_id)?;
    if lic.applied {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    let seat = Seat::from_rows(&got.next());
    // The file names the activation the device had when it was made, and the license as
    // it was then: anything else, and it is made again.
    if lic.revision != j.revision || seat.as_ref().map(|s| &s.id) != j.expected.as_ref() {
        return Ok(WriteOutcome::StaleLicense);
    }
    lic.usable(&j.lic_id)?;
    lic.not_the_pool(&j.lic_id, seat.as_ref())?;
    let waiters = waiters_from(&got.next());
    let (held, next_free) = held_from(&got.next());
    let queue = decide::queue(&waiters, &j.device_hex, now, lic.terms.lease_secs);
    floating::grant(
        Pool {
            seats: lic.leasable(),
            held_by_others: held,
            waiting_ahead: queue.ahead,
            next_free,
        },
        seat.as_ref().map(Seat::holder),
        lic.terms.revival_secs,
        None,
        j.now,
    )
    .map_err(PortalError::Floating)?;
    let mut oed = j.oed.timestamp();
    let id = j.license.activation_id.clone();
    match &seat {
        Some(s) => {
            // A checkout again before the OED never shortens it.
            if let Some(current) = s.offline_expiry.filter(|_| s.checked_out) {
                oed = oed.max(current);
            }
            out.push(
                stmt(
                    "UPDATE activations SET offline_expiry = $1, checked_out = 1, \
                     journal_seq = 0, journal_head = $2, journal_known = '[]', request_hash = $2, \
                     fingerprint = $3, last_accessed = $4, variables = $5 WHERE id = $6",
                    vec![
                        oed.into(),
                        (&j.hash).into(),
                        (&j.fingerprint).into(),
                        now.into(),
                        (&j.variables).into(),
                        (&id).into(),
                    ],
                )
                .into(),
            );
        }
        None => out.push(
            stmt(
                "INSERT INTO activations (id, license, product, device_key, device_kid, \
                 fingerprint, request_hash, state, serial, license_file, journal_seq, \
                 journal_head, offline_expiry, last_accessed, created, variables, \
                 lease_expires, checked_out) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, '', 0, $7, $8, $9, $9, $10, \
                 NULL, 1)",
                vec![
                    (&id).into(),
                    (&j.lic_id).into(),
                    (&j.license.product).into(),
                    (&j.device_hex).into(),
                    (&j.device_kid).into(),
                    (&j.fingerprint).into(),
                    (&j.hash).into(),
                    oed.into(),
                    now.into(),
                    (&j.variables).into(),
                ],
            )
            .into(),
        ),
    }
    if queue.mine.is_some() || queue.dead {
        queue_writes(
            out,
            &j.lic_id,
            "",
            &j.device_hex,
            &queue,
            now,
            now.saturating_sub(u64_to_i64(lic.terms.lease_secs.saturating_mul(2))),
            false,
        );
    }
    out.push(Write::expecting(
        claim(&j.hash, FileKind::LeaseRequest, &id, &j.armored, now),
        1,
        applied_meanwhile(),
    ));
    out.push(
        audit_stmt(
            j.now.timestamp_millis(),
            &j.actor,
            "lease.checkout",
            Some(&id),
            None,
            Some(&j.hash),
            Some(&format!(
                "license {}: checked out until {}",
                j.lic_id,
                time(oed).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
        )
        .into(),
    );
    mine.devices
        .insert((j.lic_id.clone(), j.device_hex.clone()));
    mine.pools.insert((j.lic_id.clone(), String::new()));
    mine.touch(&id, &j.hash);
    Ok(WriteOutcome::CheckedOut {
        activation: id,
        offline_expiry: oed,
    })
}
