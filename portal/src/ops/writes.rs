//! The write jobs: what one state change reads, decides and writes, in the writer's
//! group commit (`crate::storage::writer`). Each job names what it reads, decides from
//! the rows with a pure rule (`crate::rules`), and hands back its writes: the writer
//! runs the reads and the writes, on PostgreSQL for a whole batch at once.

use super::*;
use crate::storage::sql::{Write, stmt};
use crate::storage::writer;

#[path = "floating_jobs.rs"]
mod floating;
pub(super) use floating::{CheckoutWrite, LeaseGrant, LeaseWrite, ReleaseWrite};

/// A unit of writing: everything was verified and signed before; this only touches the
/// database, inside a group commit.
pub(super) enum Job {
    Activation(ActivationWrite),
    Reissue(ReissueWrite),
    Device(DeviceWrite),
    /// A floating lease taken or renewed (seat or feature).
    Lease(LeaseWrite),
    Release(ReleaseWrite),
    Checkout(CheckoutWrite),
}

impl writer::Job for Job {
    type Output = WriteOutcome;
    type Changes = Changes;

    fn license(&self) -> &str {
        match self {
            Job::Activation(j) => &j.lic_id,
            Job::Reissue(j) => &j.license.license_id,
            Job::Device(j) => &j.license_id,
            Job::Lease(j) => &j.lic_id,
            Job::Release(j) => &j.lic_id,
            Job::Checkout(j) => &j.lic_id,
        }
    }

    fn reads(&self, row_locks: bool) -> Vec<(String, Vec<Val>)> {
        let lock = for_update(row_locks);
        match self {
            Job::Activation(j) => activation_reads(j, lock),
            Job::Reissue(j) => reissue_reads(j, lock),
            Job::Device(j) => device_reads(j, lock),
            // (The writer locked the license row for the batch: every row these read is
            // changed only under that lock.)
            Job::Lease(j) => floating::lease_reads(j),
            Job::Release(j) => floating::release_reads(j),
            Job::Checkout(j) => floating::checkout_reads(j),
        }
    }

    /// Whether what earlier jobs of the batch wrote may change this job's reads in a way
    /// [`Changes`] cannot add up: the same file, the same activation, the same device's
    /// seat, or a seat freed (which the churn policy counts) under the same license.
    fn stale(&self, unseen: &Changes) -> bool {
        match self {
            // (A pool also counts the floating leases an earlier job changed.)
            Job::Activation(j) => {
                unseen.files.contains(&j.hash)
                    || unseen.freed.contains(&j.lic_id)
                    || (j.pool_seats.is_some()
                        && unseen.pools.contains(&(j.lic_id.clone(), String::new())))
                    || unseen
                        .devices
                        .contains(&(j.lic_id.clone(), j.device_hex.clone()))
            }
            Job::Reissue(j) => {
                unseen.files.contains(&j.hash)
                    || unseen.activations.contains(&j.license.activation_id)
            }
            Job::Device(j) => {
                unseen.files.contains(&j.hash) || unseen.activations.contains(&j.activation_id)
            }
            // A pool whose holders or queue an earlier job changed is counted again; so is
            // a device an earlier job wrote for.
            Job::Lease(j) => {
                unseen
                    .pools
                    .contains(&(j.lic_id.clone(), j.feature.clone().unwrap_or_default()))
                    || unseen
                        .devices
                        .contains(&(j.lic_id.clone(), j.device_hex.clone()))
            }
            Job::Release(j) => unseen
                .devices
                .contains(&(j.lic_id.clone(), j.device_hex.clone())),
            Job::Checkout(j) => {
                unseen.files.contains(&j.hash)
                    || unseen.pools.contains(&(j.lic_id.clone(), String::new()))
                    || unseen
                        .devices
                        .contains(&(j.lic_id.clone(), j.device_hex.clone()))
            }
        }
    }

    fn decide(
        &self,
        rows: Vec<Vec<Vec<Val>>>,
        unseen: &Changes,
        mine: &mut Changes,
        writes: &mut Vec<Write>,
    ) -> Result<WriteOutcome, PortalError> {
        let got = &mut Results(rows.into_iter());
        match self {
            Job::Activation(j) => decide_activation(j, got, unseen, mine, writes),
            Job::Reissue(j) => decide_reissue(j, got, mine, writes),
            Job::Device(j) => decide_device_file(j, got, unseen, mine, writes),
            Job::Lease(j) => floating::decide_lease(j, got, mine, writes),
            Job::Release(j) => floating::decide_release(j, got, mine, writes),
            Job::Checkout(j) => floating::decide_checkout(j, got, mine, writes),
        }
    }

    fn merge(into: &mut Changes, from: Changes) {
        into.merge(from);
    }

    /// What a job wrote stays when it was applied or refused with evidence; a job that
    /// found the file applied already, or the device's seat held, must leave nothing.
    fn keeps(out: &WriteOutcome) -> bool {
        matches!(
            out,
            WriteOutcome::Done(_)
                | WriteOutcome::Refused(_)
                | WriteOutcome::Leased(_)
                | WriteOutcome::Released { .. }
                | WriteOutcome::CheckedOut { .. }
        )
    }
}

/// What a batch's jobs wrote, for the jobs after them whose reads were made before
/// (the PostgreSQL writer reads a whole batch in one round trip).
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Seats taken, by license.
    seats: HashMap<String, i64>,
    /// Licenses with a seat freed.
    freed: std::collections::HashSet<String>,
    /// (license, device key) given a seat.
    devices: std::collections::HashSet<(String, String)>,
    /// Activations written.
    activations: std::collections::HashSet<String>,
    /// Files applied.
    files: std::collections::HashSet<String>,
    /// Usage added, by (license, feature).
    totals: HashMap<(String, String), u64>,
    /// Floating pools (license, feature or '') whose holders or queue changed.
    pools: std::collections::HashSet<(String, String)>,
}

impl Changes {
    fn seats_taken(&self, license: &str) -> i64 {
        self.seats.get(license).copied().unwrap_or(0)
    }

    /// A license's usage totals as read, with what this batch's earlier jobs added,
    /// which the read did not see yet.
    fn totals_of(&self, license: &str, mut read: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        for ((of, feature), added) in &self.totals {
            if of == license {
                let total = read.entry(feature.clone()).or_default();
                *total = total.saturating_add(*added);
            }
        }
        read
    }

    fn take_seat(&mut self, j: &ActivationWrite) {
        *self.seats.entry(j.lic_id.clone()).or_default() += j.pool_seats.map_or(1, i64::from);
        if j.pool_seats.is_some() {
            // The seats free for leases changed: leases of this batch count them again.
            self.pools.insert((j.lic_id.clone(), String::new()));
        }
        self.devices
            .insert((j.lic_id.clone(), j.device_hex.clone()));
        self.touch(&j.activation_id, &j.hash);
    }

    fn touch(&mut self, activation: &str, file: &str) {
        self.activations.insert(activation.to_string());
        self.files.insert(file.to_string());
    }

    fn add_total(&mut self, license: &str, feature: &str, delta: u64) {
        let t = self
            .totals
            .entry((license.to_string(), feature.to_string()))
            .or_default();
        *t = t.saturating_add(delta);
    }

    fn merge(&mut self, from: Changes) {
        for (license, n) in from.seats {
            *self.seats.entry(license).or_default() += n;
        }
        self.freed.extend(from.freed);
        self.devices.extend(from.devices);
        self.activations.extend(from.activations);
        self.files.extend(from.files);
        for ((license, feature), delta) in from.totals {
            self.add_total(&license, &feature, delta);
        }
        self.pools.extend(from.pools);
    }
}

pub(super) type Writer = writer::Writer<Job>;

pub(super) enum WriteOutcome {
    Done(Applied),
    /// Refused, with evidence of the attempt written (committed, unlike an error, which
    /// undoes everything the job wrote).
    Refused(PortalError),
    /// The file was claimed by another application of it: read its response.
    AlreadyApplied,
    /// The license was edited since the copy the license file was made from (its
    /// revision differs): nothing was written; make the file again from a fresh copy.
    StaleLicense,
    /// The device already holds an active seat of the license.
    Reissue {
        id: String,
        license: Box<License>,
        /// The request's device variables (JSON), which the reissue records.
        variables: String,
        actor: Actor,
    },
    /// A floating lease granted or renewed: the lease file is signed after the commit.
    Leased(Box<LeaseGrant>),
    /// A lease released (or not held: `released` false).
    Released {
        released: bool,
        activation: Option<String>,
    },
    /// A seat checked out until its OED (seconds).
    CheckedOut {
        activation: String,
        offline_expiry: i64,
    },
}

pub(super) struct ActivationWrite {
    pub(super) hash: String,
    pub(super) activation_id: String,
    pub(super) license: License,
    pub(super) armored: String,
    pub(super) lic_id: String,
    pub(super) churn: Option<(i64, i64)>,
    pub(super) device_hex: String,
    pub(super) device_kid: String,
    pub(super) fingerprint: String,
    /// The revision of the copy of the license the file was made from.
    pub(super) revision: i64,
    /// The license-level limits that, once reached, refuse seats (empty: none refuse).
    pub(super) refusing_totals: BTreeMap<String, u64>,
    /// The request's device variables, as JSON (`{}`: none).
    pub(super) variables: String,
    /// An on-premise floating server's pool: the seats it takes (None: one seat).
    pub(super) pool_seats: Option<u32>,
    pub(super) now: DateTime<Utc>,
    pub(super) actor: Actor,
}

pub(super) struct ReissueWrite {
    pub(super) hash: String,
    pub(super) license: License,
    /// The request's device variables, as JSON: the journal starts again at the request.
    pub(super) variables: String,
    pub(super) armored: String,
    pub(super) now: DateTime<Utc>,
    pub(super) actor: Actor,
}

pub(super) struct DeviceWrite {
    pub(super) kind: FileKind,
    /// The file's hash, as the journal names it and as text (the database's form).
    pub(super) file_hash: Bytes32,
    pub(super) hash: String,
    pub(super) activation_id: String,
    pub(super) license_id: String,
    pub(super) counters: format::Counters,
    pub(super) journal: format::JournalHead,
    /// The file's device variables, as JSON (`{}`: none): recorded only when the file
    /// advances the journal head, so that a late file never overwrites newer ones.
    pub(super) variables: String,
    pub(super) deactivate: bool,
    pub(super) armored: String,
    pub(super) now: DateTime<Utc>,
    pub(super) actor: Actor,
}

fn first_text(rows: &[Vec<Val>]) -> Option<String> {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.text().map(String::from))
}

fn int_at(rows: &[Vec<Val>], column: usize) -> Option<i64> {
    rows.first().and_then(|r| r.get(column)).and_then(Val::int)
}

/// The results of a job's reads, one by one (a missing one reads as no rows).
pub(super) struct Results(std::vec::IntoIter<Vec<Vec<Val>>>);

impl Results {
    fn next(&mut self) -> Vec<Vec<Val>> {
        self.0.next().unwrap_or_default()
    }
}

/// Whether the file with `hash` was applied already.
fn applied_query(hash: &str) -> (String, Vec<Val>) {
    stmt(
        "SELECT hash FROM applied_files WHERE hash = $1",
        vec![hash.into()],
    )
}

/// The applied-file row that claims `hash` (changes nothing if another application has
/// it: the job then answers `AlreadyApplied` and its writes are undone).
fn claim(
    hash: &str,
    kind: FileKind,
    activation: &str,
    response: &str,
    now: i64,
) -> (String, Vec<Val>) {
    stmt(
        "INSERT INTO applied_files (hash, kind, activation, response, applied) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (hash) DO NOTHING",
        vec![
            hash.into(),
            kind.name().into(),
            activation.into(),
            response.into(),
            now.into(),
        ],
    )
}

fn applied_meanwhile() -> String {
    "the file was applied by another request at the same moment; upload it again to read \
     its answer"
        .into()
}

/// `FOR UPDATE` where transactions run at once and must lock the rows they will change
/// (PostgreSQL); nothing on SQLite, which writes one transaction at a time.
fn for_update(row_locks: bool) -> &'static str {
    if row_locks { " FOR UPDATE" } else { "" }
}

/// Counters by feature from rows of (feature, value).
fn counters_from(rows: &[Vec<Val>]) -> BTreeMap<String, u64> {
    rows.iter()
        .filter_map(|r| {
            let feature = r.first()?.text()?.to_string();
            let n = u64::try_from(r.get(1)?.int()?).ok()?;
            Some((feature, n))
        })
        .collect()
}

/// The integrity flags of one kind kept on an activation, as evidence, each with the file
/// that raised it. Past them, a flag of the kind is counted on the latest one kept
/// (`repeats`): a customer who signs crafted files with their own device key cannot make
/// an activation's rows, and every listing of it, grow without end.
pub const MAX_FLAGS_PER_KIND: i64 = 20;

/// Record evidence on an activation (once per kind and file; past
/// [`MAX_FLAGS_PER_KIND`], counted) and show it as the activation's latest flag.
fn raise_flag(
    out: &mut Vec<Write>,
    activation: &str,
    kind: &str,
    file_hash: &str,
    at: i64,
    detail: &str,
) {
    out.push(
        stmt(
            "INSERT INTO activation_flags (activation, kind, file_hash, at, detail) \
             SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM activation_flags \
             WHERE activation = $1 AND kind = $2) < $6 \
             ON CONFLICT (activation, kind, file_hash) DO NOTHING",
            vec![
                activation.into(),
                kind.into(),
                file_hash.into(),
                at.into(),
                detail.into(),
                MAX_FLAGS_PER_KIND.into(),
            ],
        )
        .into(),
    );
    // Not kept (the kind is at its limit, and this file raised none of the flags kept):
    // counted on the latest flag of the kind.
    out.push(
        stmt(
            "UPDATE activation_flags SET repeats = repeats + 1 \
             WHERE activation = $1 AND kind = $2 AND file_hash = \
             (SELECT file_hash FROM activation_flags WHERE activation = $1 AND kind = $2 \
             ORDER BY at DESC, file_hash DESC LIMIT 1) \
             AND NOT EXISTS (SELECT 1 FROM activation_flags WHERE activation = $1 \
             AND kind = $2 AND file_hash = $3) \
             AND (SELECT count(*) FROM activation_flags WHERE activation = $1 AND kind = $2) \
             >= $4",
            vec![
                activation.into(),
                kind.into(),
                file_hash.into(),
                MAX_FLAGS_PER_KIND.into(),
            ],
        )
        .into(),
    );
    out.push(
        stmt(
            "UPDATE activations SET fork = $1 WHERE id = $2",
            vec![detail.into(), activation.into()],
        )
        .into(),
    );
}

/// Whether an activation (the row of `activations` selected) holds a node-locked seat
/// counted in `seats_used` (1) or a floating seat held by its lease or OED (0): a seat of
/// a license that is not floating, or one made by an activation request (a floating
/// license's activations from before floating was a policy's switch).
pub(super) const NODE_LOCKED: &str = "(CASE WHEN (SELECT l.floating FROM licenses l \
     WHERE l.id = activations.license) = 1 AND NOT EXISTS (SELECT 1 FROM applied_files f \
     WHERE f.hash = activations.request_hash AND f.kind = 'activation-request') THEN 0 ELSE 1 END)";

/// Free `$2` seats of license `$1`'s `seats_used` (never below none).
pub(super) const FREE_SEATS: &str = "UPDATE licenses SET seats_used = CASE WHEN seats_used > $2 \
     THEN seats_used - $2 ELSE 0 END WHERE id = $1";

fn free_seats_stmt(license: &str, n: i64) -> (String, Vec<Val>) {
    stmt(FREE_SEATS, vec![license.into(), n.into()])
}

/// When the churn period of an activation began (None without a churn policy).
fn churn_since(j: &ActivationWrite) -> Result<Option<i64>, PortalError> {
    match j.churn {
        Some((_, days)) => Ok(Some(
            add_days(j.now, -days, "the churn period")?.timestamp(),
        )),
        None => Ok(None),
    }
}

fn activation_reads(j: &ActivationWrite, lock: &str) -> Vec<(String, Vec<Val>)> {
    // The license's status, seats and revision, read here so that a revocation, a
    // suspension or any edit takes effect at once, whichever instance made it. (On
    // PostgreSQL the writer locked the row for its batch: activations of one license, one
    // at a time, on every instance; an edit waits for the batch, or the batch for it.)
    let mut reads = vec![stmt(
        // One statement: the license's row, the device's seat, whether this very request
        // was applied before.
        format!(
            "SELECT l.status, l.seats, l.seats_used, \
             (SELECT a.id FROM activations a WHERE a.license = l.id AND a.device_key = $2 \
              AND a.state = 'active' LIMIT 1), \
             (SELECT count(*) FROM applied_files f WHERE f.hash = $3), \
             l.revision \
             FROM licenses l WHERE l.id = $1{lock}"
        ),
        vec![(&j.lic_id).into(), (&j.device_hex).into(), (&j.hash).into()],
    )];
    // (A churn period that cannot be computed is an error of the decision.)
    if let Ok(Some(since)) = churn_since(j) {
        // The period before now, its first instant excluded: a deactivation exactly one
        // period old is out of it, so the activation the refusal says is possible from
        // then (that deactivation's time plus the period) is.
        reads.push(stmt(
            "SELECT deactivated FROM activations WHERE license = $1 AND deactivated IS NOT NULL \
             AND deactivated > $2 ORDER BY deactivated",
            vec![(&j.lic_id).into(), since.into()],
        ));
    }
    if !j.refusing_totals.is_empty() {
        reads.push(stmt(
            "SELECT feature, total FROM usage_totals WHERE license = $1",
            vec![(&j.lic_id).into()],
        ));
    }
    if j.pool_seats.is_some() {
        // A pool: the seats floating leases and checkouts hold now, another device's
        // pool, and whether the device's own seat is a pool.
        reads.push(stmt(
            "SELECT (SELECT count(*) FROM activations WHERE license = $1 AND state = 'active' \
             AND pool_seats IS NULL AND (lease_expires > $2 OR offline_expiry > $2)), \
             (SELECT id FROM activations WHERE license = $1 AND state = 'active' \
             AND pool_seats IS NOT NULL AND device_key <> $3 LIMIT 1), \
             (SELECT pool_seats FROM activations WHERE license = $1 AND state = 'active' \
             AND device_key = $3 LIMIT 1)",
            vec![
                (&j.lic_id).into(),
                j.now.timestamp().into(),
                (&j.device_hex).into(),
            ],
        ));
    }
    reads
}

fn decide_activation(
    j: &ActivationWrite,
    got: &mut Results,
    unseen: &Changes,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let churn_since = churn_since(j)?;
    let license = got.next();
    let held = license
        .first()
        .and_then(|r| r.get(3))
        .and_then(Val::text)
        .map(String::from);
    let applied_before = int_at(&license, 4).unwrap_or(0) > 0;
    let churn = match j.churn {
        Some((max, _)) => {
            let times: Vec<i64> = got
                .next()
                .iter()
                .filter_map(|row| row.first().and_then(Val::int))
                .collect();
            decide::churn(max, &times)
        }
        None => Ok(()),
    };
    let reached = if j.refusing_totals.is_empty() {
        Vec::new()
    } else {
        let totals = unseen.totals_of(&j.lic_id, counters_from(&got.next()));
        decide::total_reached(&j.refusing_totals, &totals)
    };
    let seats = int_at(&license, 1).unwrap_or(0);
    let status = first_text(&license);
    let ask = decide::SeatAsk {
        license_active: status.as_deref() == Some("active"),
        license_current: int_at(&license, 5) == Some(j.revision),
        seats,
        // (Seats taken by this batch's earlier jobs, which the read did not see yet.)
        seats_used: int_at(&license, 2).unwrap_or(0) + unseen.seats_taken(&j.lic_id),
        held_by_device: held.as_deref(),
        applied_before,
        churn,
        total_reached: reached.first(),
    };
    let answer = match j.pool_seats {
        None => decide::seat(&ask),
        Some(wanted) => {
            let pool = got.next();
            let other = pool
                .first()
                .and_then(|r| r.get(1))
                .and_then(Val::text)
                .map(String::from);
            decide::pool_seat(
                &ask,
                &decide::PoolAsk {
                    wanted: i64::from(wanted),
                    leased: int_at(&pool, 0).unwrap_or(0),
                    device_is_pool: int_at(&pool, 2).is_some(),
                    other_pool: other.as_deref(),
                },
            )
        }
    };
    match answer {
        decide::SeatAnswer::AlreadyApplied => return Ok(WriteOutcome::AlreadyApplied),
        decide::SeatAnswer::StaleLicense => return Ok(WriteOutcome::StaleLicense),
        decide::SeatAnswer::Revoked if status.as_deref() == Some("suspended") => {
            return Err(PortalError::LicenseSuspended {
                license: j.lic_id.clone(),
            });
        }
        decide::SeatAnswer::Revoked => {
            return Err(PortalError::LicenseRevoked {
                license: j.lic_id.clone(),
            });
        }
        decide::SeatAnswer::Reissue(id) => {
            return Ok(WriteOutcome::Reissue {
                id,
                license: Box::new(j.license.clone()),
                variables: j.variables.clone(),
                actor: j.actor.clone(),
            });
        }
        decide::SeatAnswer::TotalReached(over) => {
            return Err(PortalError::LicenseTotalReached {
                license: j.lic_id.clone(),
                feature: over.feature,
                total: over.total,
                limit: over.limit,
            });
        }
        decide::SeatAnswer::TooManyDeactivations(refused) => {
            let days = j.churn.map_or(0, |(_, days)| days);
            let oldest = refused.oldest.or(churn_since).unwrap_or(now);
            let from = add_days(time(oldest), days, "the churn period")?;
            return Err(PortalError::TooManyDeactivations {
                license: j.lic_id.clone(),
                count: refused.count,
                days,
                from: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        decide::SeatAnswer::NoSeatLeft => {
            return Err(PortalError::NoSeatLeft {
                license: j.lic_id.clone(),
                seats,
            });
        }
        decide::SeatAnswer::TooFewSeats { free } => {
            return Err(PortalError::PoolNoSeat {
                license: j.lic_id.clone(),
                wanted: j.pool_seats.map_or(1, i64::from),
                free,
                seats,
            });
        }
        decide::SeatAnswer::DeviceHasSeat(activation) => {
            return Err(PortalError::DeviceHasSeat {
                license: j.lic_id.clone(),
                activation,
                pool: false,
            });
        }
        decide::SeatAnswer::PoolHeld(activation) => {
            return Err(PortalError::PoolHeld {
                license: j.lic_id.clone(),
                activation,
            });
        }
        decide::SeatAnswer::Take => {}
    }
    let taken = j.pool_seats.map_or(1, i64::from);
    // (Each write is certain: the decision above read the rows this job has locked.)
    mine.take_seat(j);
    out.extend([
        Write::expecting(
            claim(
                &j.hash,
                FileKind::ActivationRequest,
                &j.activation_id,
                &j.armored,
                now,
            ),
            1,
            applied_meanwhile(),
        ),
        Write::expecting(
            stmt(
                "UPDATE licenses SET seats_used = seats_used + $2 WHERE id = $1 \
                 AND seats_used + $2 <= seats",
                vec![(&j.lic_id).into(), taken.into()],
            ),
            1,
            format!(
                "the seats of license {} changed while the request was applied; upload it again",
                j.lic_id
            ),
        ),
        stmt(
            "INSERT INTO activations (id, license, product, device_key, device_kid, fingerprint, request_hash, \
             state, serial, license_file, journal_seq, journal_head, offline_expiry, last_accessed, created, \
             variables, pool_seats) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, '', 0, $7, NULL, $8, $8, $9, $10)",
            vec![
                (&j.activation_id).into(),
                (&j.lic_id).into(),
                (&j.license.product).into(),
                (&j.device_hex).into(),
                (&j.device_kid).into(),
                (&j.fingerprint).into(),
                (&j.hash).into(),
                now.into(),
                (&j.variables).into(),
                j.pool_seats.map(i64::from).into(),
            ],
        )
        .into(),
        audit_stmt(
            j.now.timestamp_millis(),
            &j.actor,
            "activation.create",
            Some(&j.activation_id),
            None,
            Some(&j.hash),
            Some(&match j.pool_seats {
                Some(n) => format!("license {}, a pool of {n} seat(s)", j.lic_id),
                None => format!("license {}", j.lic_id),
            }),
        )
        .into(),
    ]);
    Ok(WriteOutcome::Done(Applied {
        kind: FileKind::ActivationRequest.name().into(),
        response: j.armored.clone(),
        response_kind: FileKind::License.name().into(),
        activation: Some(j.activation_id.clone()),
        replay: false,
        file_hash: j.hash.clone(),
        flags: Vec::new(),
        note: String::new(),
    }))
}

fn reissue_reads(j: &ReissueWrite, lock: &str) -> Vec<(String, Vec<Val>)> {
    let id = &j.license.activation_id;
    vec![
        applied_query(&j.hash),
        stmt(
            format!("SELECT state FROM activations WHERE id = $1{lock}"),
            vec![id.into()],
        ),
        stmt(
            "SELECT feature, reported FROM usage_reported WHERE activation = $1 AND reported > 0",
            vec![id.into()],
        ),
    ]
}

fn decide_reissue(
    j: &ReissueWrite,
    got: &mut Results,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let id = &j.license.activation_id;
    if !got.next().is_empty() {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    let state = first_text(&got.next());
    // The license starts the device's counters from what was reported: no usage may have
    // arrived since they were read (or the device would count it again).
    let reported: format::Counters = counters_from(&got.next());
    if let Err(reason) = decide::reissue(state.as_deref(), &reported, &j.license.counters) {
        return Err(PortalError::Conflict {
            reason: reason.into(),
        });
    }
    let detail = format!(
        "reactivated: the device made a new request for the seat it holds (a store reset, \
         lost or restored); its counters start from the {} reported",
        if reported.is_empty() {
            "nothing".to_string()
        } else {
            json(&reported)
        }
    );
    let mut writes = vec![
        Write::expecting(
            claim(&j.hash, FileKind::ActivationRequest, id, &j.armored, now),
            1,
            applied_meanwhile(),
        ),
        stmt(
            "UPDATE activations SET request_hash = $1, journal_seq = 0, journal_head = $1, \
             journal_known = '[]', fingerprint = $2, last_accessed = $3, \
             reactivations = reactivations + 1, variables = $5 WHERE id = $4",
            vec![
                (&j.hash).into(),
                json(&j.license.fingerprint).into(),
                now.into(),
                id.into(),
                (&j.variables).into(),
            ],
        )
        .into(),
    ];
    raise_flag(&mut writes, id, "reactivation", &j.hash, now, &detail);
    writes.push(
        audit_stmt(
            j.now.timestamp_millis(),
            &j.actor,
            "activation.reactivate",
            Some(id),
            None,
            Some(&j.hash),
            Some(&detail),
        )
        .into(),
    );
    mine.touch(id, &j.hash);
    out.extend(writes);
    Ok(WriteOutcome::Done(Applied {
        kind: FileKind::ActivationRequest.name().into(),
        response: j.armored.clone(),
        response_kind: FileKind::License.name().into(),
        activation: Some(id.clone()),
        replay: false,
        file_hash: j.hash.clone(),
        flags: vec![detail],
        note: String::new(),
    }))
}

/// The activation a device file is about, as the write reads it (locked on PostgreSQL).
struct DeviceRow {
    state: String,
    closed_by: Option<String>,
    head_seq: u64,
    head: Bytes32,
    known: Vec<Bytes32>,
}

fn device_row(rows: &[Vec<Val>], activation: &str) -> Result<DeviceRow, PortalError> {
    let row = rows.first().ok_or_else(|| PortalError::UnknownActivation {
        activation: activation.into(),
    })?;
    let text = |i: usize| {
        row.get(i)
            .and_then(Val::text)
            .unwrap_or_default()
            .to_string()
    };
    let known: Vec<String> = serde_json::from_str(&text(4)).unwrap_or_default();
    Ok(DeviceRow {
        state: text(0),
        closed_by: row.get(1).and_then(Val::text).map(String::from),
        head_seq: row
            .get(2)
            .and_then(Val::int)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        head: parse_hash(&text(3)).unwrap_or(Bytes32([0; 32])),
        known: known.iter().filter_map(|h| parse_hash(h)).collect(),
    })
}

fn parse_hash(hex_text: &str) -> Option<Bytes32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(Bytes32(out))
}

fn device_reads(j: &DeviceWrite, lock: &str) -> Vec<(String, Vec<Val>)> {
    // The activation, inside the transaction: another file may have changed it. (On
    // PostgreSQL its license is locked for the batch: files of one activation, and a
    // server-side deactivation, are applied one at a time.)
    vec![
        stmt(
            format!(
                "SELECT state, closed_by, journal_seq, journal_head, journal_known, \
                 (SELECT count(*) FROM applied_files f WHERE f.hash = $2), \
                 (SELECT l.total_limits FROM licenses l WHERE l.id = $3), checked_out, \
                 pool_seats, {NODE_LOCKED} \
                 FROM activations WHERE id = $1{lock}"
            ),
            vec![
                (&j.activation_id).into(),
                (&j.hash).into(),
                (&j.license_id).into(),
            ],
        ),
        stmt(
            "SELECT feature, reported FROM usage_reported WHERE activation = $1",
            vec![(&j.activation_id).into()],
        ),
        stmt(
            "SELECT feature, total FROM usage_totals WHERE license = $1",
            vec![(&j.license_id).into()],
        ),
    ]
}

fn decide_device_file(
    j: &DeviceWrite,
    got: &mut Results,
    unseen: &Changes,
    mine: &mut Changes,
    out: &mut Vec<Write>,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let now_ms = j.now.timestamp_millis();
    let hash = j.file_hash;
    let rows = got.next();
    let row = device_row(&rows, &j.activation_id)?;
    // With the activation locked, the same file applied at the same moment is seen here
    // (on PostgreSQL the other transaction has committed or not started).
    if int_at(&rows, 5).unwrap_or(0) > 0 {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    let reported = counters_from(&got.next());
    let totals = unseen.totals_of(&j.license_id, counters_from(&got.next()));
    if row.state != "active" && row.closed_by.as_deref() == Some("device") {
        // The device's own deactivation closed the account: its final counters are
        // counted and nothing the device signs later is applied.
        return match decide::after_close(row.head_seq, &row.known, j.journal.seq, &hash, j.kind) {
            decide::AfterClose::Superseded => Ok(WriteOutcome::Refused(PortalError::Superseded {
                kind: j.kind.to_string(),
                activation: j.activation_id.clone(),
            })),
            decide::AfterClose::RestoredStore(reason) => {
                // Evidence, committed though the file is refused.
                let mut writes = Vec::new();
                raise_flag(
                    &mut writes,
                    &j.activation_id,
                    "after-deactivation",
                    &j.hash,
                    now,
                    &reason,
                );
                writes.push(
                    audit_stmt(
                        now_ms,
                        &j.actor,
                        "activation.closed-file-refused",
                        Some(&j.activation_id),
                        None,
                        Some(&j.hash),
                        Some(&format!("{reason}; counters {}", json(&j.counters))),
                    )
                    .into(),
                );
                mine.touch(&j.activation_id, &j.hash);
                out.extend(writes);
                Ok(WriteOutcome::Refused(PortalError::ActivationClosed {
                    activation: j.activation_id.clone(),
                    reason,
                }))
            }
        };
    }
    let check_in = j.kind == FileKind::CheckIn;
    if check_in && row.state == "active" && int_at(&rows, 7) != Some(1) {
        // Only a checkout is checked in (an online lease is released by the application).
        return Err(PortalError::NotCheckedOut {
            activation: j.activation_id.clone(),
        });
    }
    let mut flags: Vec<(&str, String)> = Vec::new();
    let link = decide::journal_link(
        row.head_seq,
        &row.head,
        &row.known,
        &j.journal,
        &hash,
        j.kind,
    );
    let late = link == decide::Link::Late;
    match link {
        decide::Link::Continues | decide::Link::Late => {}
        decide::Link::Fork(reason) => flags.push(("fork", reason)),
        decide::Link::Gap { skipped } => flags.push((
            "gap",
            format!(
                "a {} skips {skipped} files since the last one seen, more than its trail \
                 reaches: whether it continues the device's journal cannot be told",
                j.kind
            ),
        )),
    }
    // Consumption: what is new since the last report, feature by feature, within range.
    let mut grows = Vec::new();
    match decide::usage(&j.counters, &reported, &totals) {
        Ok(usage) => {
            // (A late file's counters are older than the head's: lower is expected.)
            if !usage.went_back.is_empty() && !late {
                flags.push((
                    "counters-went-back",
                    format!(
                        "cumulative counters went back ({}): a restored backup or a cloned \
                         machine",
                        usage.went_back.join(", ")
                    ),
                ));
            }
            grows = usage.grows;
            // License-level limits: the usage is counted (it happened), and a file that
            // takes the license's total past one is flagged.
            let limits: BTreeMap<String, u64> = rows
                .first()
                .and_then(|r| r.get(6))
                .and_then(Val::text)
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            let deltas: Vec<(String, u64)> = grows
                .iter()
                .map(|(f, _, delta)| (f.clone(), *delta))
                .collect();
            for over in decide::total_passed(&limits, &totals, &deltas) {
                flags.push((
                    "over-license-total",
                    format!(
                        "the license's total of '{}' is now {}, beyond its limit of {} across \
                         all its devices",
                        over.feature, over.total, over.limit
                    ),
                ));
            }
        }
        Err(out) if j.deactivate => {
            // The seat is freed whatever the counters say; they are not counted.
            flags.push((
                "counters-refused",
                format!(
                    "the deactivation's counters were not counted: the total of '{}' would \
                     pass the largest counter (2^53 - 1); the seat was freed",
                    out.feature
                ),
            ));
        }
        Err(out) => {
            return Err(PortalError::UsageOutOfRange {
                kind: j.kind.to_string(),
                activation: j.activation_id.clone(),
                feature: out.feature,
            });
        }
    }
    let deactivating = j.deactivate && row.state == "active";
    let advances = j.journal.seq > row.head_seq;
    let known = if advances {
        json(
            &decide::known_history(&j.journal)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
    } else {
        String::new()
    };
    let mut writes = vec![Write::expecting(
        claim(&j.hash, j.kind, &j.activation_id, &j.armored, now),
        1,
        applied_meanwhile(),
    )];
    for (feature, cumulative, delta) in &grows {
        writes.push(
            stmt(
                "INSERT INTO usage_reported (reported, activation, feature) VALUES ($1, $2, $3) \
             ON CONFLICT (activation, feature) DO UPDATE SET reported = excluded.reported",
                vec![
                    u64_to_i64(*cumulative).into(),
                    (&j.activation_id).into(),
                    feature.into(),
                ],
            )
            .into(),
        );
        // The license's total grows by `delta` only while it stays within the counters'
        // range (guarded again here, against the total as the statement finds it).
        writes.push(Write::expecting(stmt(
            "INSERT INTO usage_totals (license, feature, total) VALUES ($1, $2, $3) \
             ON CONFLICT (license, feature) DO UPDATE SET total = usage_totals.total + excluded.total \
             WHERE usage_totals.total <= $4 - excluded.total",
            vec![
                (&j.license_id).into(),
                feature.into(),
                u64_to_i64(*delta).into(),
                u64_to_i64(format::MAX_COUNTER).into(),
            ],
        ), 1, format!(
            "the total of '{feature}' changed while the file was applied and would now pass \
             the largest counter; upload the file again"
        )));
    }
    writes.push(
        stmt(
            "UPDATE activations SET last_accessed = $1, \
         journal_seq = CASE WHEN $2 = 1 THEN $3 ELSE journal_seq END, \
         journal_head = CASE WHEN $2 = 1 THEN $4 ELSE journal_head END, \
         journal_known = CASE WHEN $2 = 1 THEN $5 ELSE journal_known END, \
         state = CASE WHEN $6 = 1 THEN 'deactivated' ELSE state END, \
         deactivated = CASE WHEN $6 = 1 THEN $1 ELSE deactivated END, \
         closed_by = CASE WHEN $7 = 1 THEN 'device' ELSE closed_by END, \
         variables = CASE WHEN $2 = 1 THEN $9 ELSE variables END \
         WHERE id = $8",
            vec![
                now.into(),
                i64::from(advances).into(),
                u64_to_i64(j.journal.seq).into(),
                (&j.hash).into(),
                known.into(),
                i64::from(deactivating).into(),
                // A deactivation file closes the account, also one that follows a server-side
                // deactivation (the device's final word).
                i64::from(j.deactivate).into(),
                (&j.activation_id).into(),
                // The variables go with the journal head: only a file that advances it
                // (not a late one, older than the head) replaces them.
                (&j.variables).into(),
            ],
        )
        .into(),
    );
    for (kind, reason) in &flags {
        raise_flag(&mut writes, &j.activation_id, kind, &j.hash, now, reason);
        writes.push(
            audit_stmt(
                now_ms,
                &j.actor,
                match *kind {
                    "gap" => "journal.gap",
                    "counters-went-back" => "usage.went-back",
                    "counters-refused" => "usage.refused",
                    "over-license-total" => "usage.over-total",
                    _ => "journal.fork",
                },
                Some(&j.activation_id),
                None,
                Some(&j.hash),
                Some(reason),
            )
            .into(),
        );
    }
    if deactivating && check_in {
        // The checked-out floating seat is free at once (floating seats are not counted
        // in seats_used: a seat is held by its lease or OED).
        writes.push(
            stmt(
                "UPDATE activations SET offline_expiry = NULL, lease_expires = NULL, \
                 checked_out = 0 WHERE id = $1",
                vec![(&j.activation_id).into()],
            )
            .into(),
        );
        writes.push(
            stmt(
                "DELETE FROM lease_instances WHERE activation = $1",
                vec![(&j.activation_id).into()],
            )
            .into(),
        );
    } else if deactivating {
        // The seats it held are free: a pool's, a node-locked activation's one (a floating
        // seat is held by its lease, not counted in seats_used).
        let pool_seats = int_at(&rows, 8);
        let freed = decide::seats_held(pool_seats, int_at(&rows, 9) == Some(1));
        if freed > 0 {
            writes.push(free_seats_stmt(&j.license_id, freed).into());
        }
        if pool_seats.is_some() {
            mine.pools.insert((j.license_id.clone(), String::new()));
        }
    }
    writes.push(
        audit_stmt(
            now_ms,
            &j.actor,
            if check_in {
                "activation.check-in"
            } else if j.deactivate {
                "activation.deactivate"
            } else {
                "usage.report"
            },
            Some(&j.activation_id),
            None,
            Some(&j.hash),
            Some(&json(&j.counters)),
        )
        .into(),
    );
    mine.touch(&j.activation_id, &j.hash);
    for (feature, _, delta) in &grows {
        mine.add_total(&j.license_id, feature, *delta);
    }
    if deactivating {
        mine.freed.insert(j.license_id.clone());
    }
    out.extend(writes);
    Ok(WriteOutcome::Done(Applied {
        kind: j.kind.name().into(),
        response: j.armored.clone(),
        response_kind: FileKind::Receipt.name().into(),
        activation: Some(j.activation_id.clone()),
        replay: false,
        file_hash: j.hash.clone(),
        flags: flags.into_iter().map(|(_, reason)| reason).collect(),
        note: String::new(),
    }))
}
