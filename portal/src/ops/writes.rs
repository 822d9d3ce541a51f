//! The write jobs: what one state change writes, in one transaction, on SQLite (the
//! group-commit writer, which batches jobs with savepoints) or PostgreSQL.

use super::*;

/// A unit of writing: everything was verified and signed before; this only touches the
/// database, inside a transaction (or a savepoint of a group commit).
pub(super) enum Job {
    Activation(ActivationWrite),
    Reissue(ReissueWrite),
    Device(DeviceWrite),
}

pub(super) type Reply = tokio::sync::oneshot::Sender<Result<WriteOutcome, PortalError>>;

pub(super) enum WriteOutcome {
    Done(Applied),
    /// Refused, with evidence of the attempt written (committed, unlike an error, which
    /// undoes everything the job wrote).
    Refused(PortalError),
    /// The file was claimed by another application of it: read its response.
    AlreadyApplied,
    /// The device already holds an active seat of the license.
    Reissue {
        id: String,
        license: Box<License>,
        actor: Actor,
    },
}

pub(super) struct ActivationWrite {
    pub(super) hash: String,
    pub(super) activation_id: String,
    pub(super) license: License,
    pub(super) armored: String,
    pub(super) lic_id: String,
    pub(super) seats: i64,
    pub(super) churn: Option<(i64, i64)>,
    pub(super) device_hex: String,
    pub(super) device_kid: String,
    pub(super) fingerprint: String,
    pub(super) now: DateTime<Utc>,
    pub(super) actor: Actor,
}

pub(super) struct ReissueWrite {
    pub(super) hash: String,
    pub(super) license: License,
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
    pub(super) deactivate: bool,
    pub(super) armored: String,
    pub(super) now: DateTime<Utc>,
    pub(super) actor: Actor,
}

pub(super) fn first_text(rows: &[Vec<Val>]) -> Option<String> {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.text().map(String::from))
}

/// Whether the file with `hash` was applied already (inside a write: committed before).
pub(super) async fn applied_before<C: Sql>(c: &mut C, hash: &str) -> Result<bool, PortalError> {
    let seen = c
        .rows(
            "SELECT hash FROM applied_files WHERE hash = $1",
            vec![hash.into()],
        )
        .await?;
    Ok(!seen.is_empty())
}

/// Insert the applied-file row that claims `hash`; false if another application has it.
pub(super) async fn claim<C: Sql>(
    c: &mut C,
    hash: &str,
    kind: FileKind,
    activation: &str,
    response: &str,
    now: i64,
) -> Result<bool, PortalError> {
    let claimed = c
        .exec(
            "INSERT INTO applied_files (hash, kind, activation, response, applied) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (hash) DO NOTHING",
            vec![hash.into(), kind.name().into(), activation.into(), response.into(), now.into()],
        )
        .await?;
    Ok(claimed == 1)
}

/// `FOR UPDATE` where transactions run at once and must lock the rows they will change
/// (PostgreSQL); nothing on SQLite, which writes one transaction at a time.
pub(super) fn for_update(c: &impl Sql) -> &'static str {
    if c.row_locks() { " FOR UPDATE" } else { "" }
}

pub(super) async fn run_job<C: Sql>(c: &mut C, job: Job) -> Result<WriteOutcome, PortalError> {
    match job {
        Job::Activation(j) => write_activation(c, j).await,
        Job::Reissue(j) => write_reissue(c, j).await,
        Job::Device(j) => write_device_file(c, j).await,
    }
}

pub(super) async fn write_activation<C: Sql>(
    c: &mut C,
    j: ActivationWrite,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    // The license's status, read here so that a revocation takes effect at once. (On
    // PostgreSQL the row stays locked to the end: activations of one license, one at a
    // time, so the check for the device's seat below and the seat taken after it see
    // each other's effects.)
    let lock = for_update(c);
    let status = first_text(
        &c.rows(
            &format!("SELECT status FROM licenses WHERE id = $1{lock}"),
            vec![(&j.lic_id).into()],
        )
        .await?,
    );
    let revoked = || PortalError::LicenseRevoked {
        license: j.lic_id.clone(),
    };
    let existing = c
        .rows(
            "SELECT id FROM activations WHERE license = $1 AND device_key = $2 AND state = 'active'",
            vec![(&j.lic_id).into(), (&j.device_hex).into()],
        )
        .await?;
    if let Some(id) = first_text(&existing) {
        return if applied_before(c, &j.hash).await? {
            // This very request, applied before (even if the license was revoked since).
            Ok(WriteOutcome::AlreadyApplied)
        } else if status.as_deref() != Some("active") {
            Err(revoked())
        } else {
            Ok(WriteOutcome::Reissue {
                id,
                license: Box::new(j.license),
                actor: j.actor,
            })
        };
    }
    // Claim the request first: a concurrent application of the same request finds it
    // claimed and returns the winner's license.
    if !claim(
        c,
        &j.hash,
        FileKind::ActivationRequest,
        &j.activation_id,
        &j.armored,
        now,
    )
    .await?
    {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    if status.as_deref() != Some("active") {
        // (The claim is undone with the rest of this job.)
        return Err(revoked());
    }
    // Churn control: refuse the next activation after too many deactivations.
    if let Some((max, days)) = j.churn {
        let since = add_days(j.now, -days, "the churn period")?.timestamp();
        let recent = c
            .rows(
                "SELECT deactivated FROM activations WHERE license = $1 AND deactivated IS NOT NULL \
                 AND deactivated >= $2 ORDER BY deactivated",
                vec![(&j.lic_id).into(), since.into()],
            )
            .await?;
        let times: Vec<i64> = recent
            .iter()
            .filter_map(|row| row.first().and_then(Val::int))
            .collect();
        if let Err(refused) = decide::churn(max, &times) {
            let oldest = refused.oldest.unwrap_or(since);
            let from = add_days(time(oldest), days, "the churn period")?;
            return Err(PortalError::TooManyDeactivations {
                license: j.lic_id,
                count: refused.count,
                days,
                from: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
    }
    let seat = c
        .exec(
            "UPDATE licenses SET seats_used = seats_used + 1 WHERE id = $1 AND seats_used < seats",
            vec![(&j.lic_id).into()],
        )
        .await?;
    if seat == 0 {
        return Err(PortalError::NoSeatLeft {
            license: j.lic_id,
            seats: j.seats,
        });
    }
    c.exec(
        "INSERT INTO activations (id, license, product, device_key, device_kid, fingerprint, request_hash, \
         state, serial, license_file, journal_seq, journal_head, offline_expiry, last_accessed, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, '', 0, $7, NULL, $8, $8)",
        vec![
            (&j.activation_id).into(),
            (&j.lic_id).into(),
            (&j.license.product).into(),
            (&j.device_hex).into(),
            (&j.device_kid).into(),
            (&j.fingerprint).into(),
            (&j.hash).into(),
            now.into(),
        ],
    )
    .await?;
    audit(
        c,
        j.now.timestamp_millis(),
        &j.actor,
        "activation.create",
        Some(&j.activation_id),
        None,
        Some(&j.hash),
        Some(&format!("license {}", j.lic_id)),
    )
    .await?;
    Ok(WriteOutcome::Done(Applied {
        kind: FileKind::ActivationRequest.name().into(),
        response: j.armored,
        response_kind: FileKind::License.name().into(),
        activation: Some(j.activation_id),
        replay: false,
        file_hash: j.hash,
        flags: Vec::new(),
        note: String::new(),
    }))
}

pub(super) async fn write_reissue<C: Sql>(
    c: &mut C,
    j: ReissueWrite,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let id = j.license.activation_id.clone();
    if !claim(
        c,
        &j.hash,
        FileKind::ActivationRequest,
        &id,
        &j.armored,
        now,
    )
    .await?
    {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    // The license starts the device's counters from what was reported: no usage may have
    // arrived since they were read (or the device would count it again).
    let lock = for_update(c);
    let state = first_text(
        &c.rows(
            &format!("SELECT state FROM activations WHERE id = $1{lock}"),
            vec![(&id).into()],
        )
        .await?,
    );
    if state.as_deref() != Some("active") {
        // The seat was freed since it was found: the request must take a seat of its own.
        // An error, so that the claim above is undone with the rest of this job.
        return Err(PortalError::Conflict {
            reason: "the device's seat was freed while its request was applied; upload the \
                     request again to take a seat"
                .into(),
        });
    }
    let reported: format::Counters = c
        .rows(
            "SELECT feature, reported FROM usage_reported WHERE activation = $1 AND reported > 0",
            vec![(&id).into()],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let feature = r.first()?.text()?.to_string();
            let n = u64::try_from(r.get(1)?.int()?).ok()?;
            Some((feature, n))
        })
        .collect();
    if reported != j.license.counters {
        return Err(PortalError::Conflict {
            reason: "a usage report for the device's seat arrived while its request was \
                     applied; upload the request again"
                .into(),
        });
    }
    c.exec(
        "UPDATE activations SET request_hash = $1, journal_seq = 0, journal_head = $1, \
         journal_known = '[]', fingerprint = $2, last_accessed = $3, \
         reactivations = reactivations + 1 WHERE id = $4",
        vec![
            (&j.hash).into(),
            json(&j.license.fingerprint).into(),
            now.into(),
            (&id).into(),
        ],
    )
    .await?;
    let detail = format!(
        "reactivated: the device made a new request for the seat it holds (a store reset, \
         lost or restored); its counters start from the {} reported",
        if reported.is_empty() {
            "nothing".to_string()
        } else {
            json(&reported)
        }
    );
    raise_flag(c, &id, "reactivation", &j.hash, now, &detail).await?;
    audit(
        c,
        j.now.timestamp_millis(),
        &j.actor,
        "activation.reactivate",
        Some(&id),
        None,
        Some(&j.hash),
        Some(&detail),
    )
    .await?;
    Ok(WriteOutcome::Done(Applied {
        kind: FileKind::ActivationRequest.name().into(),
        response: j.armored,
        response_kind: FileKind::License.name().into(),
        activation: Some(id),
        replay: false,
        file_hash: j.hash,
        flags: vec![detail],
        note: String::new(),
    }))
}

/// Record evidence on an activation (once per kind and file) and show it as the
/// activation's latest flag.
pub(super) async fn raise_flag<C: Sql>(
    c: &mut C,
    activation: &str,
    kind: &str,
    file_hash: &str,
    at: i64,
    detail: &str,
) -> Result<(), PortalError> {
    c.exec(
        "INSERT INTO activation_flags (activation, kind, file_hash, at, detail) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (activation, kind, file_hash) DO NOTHING",
        vec![
            activation.into(),
            kind.into(),
            file_hash.into(),
            at.into(),
            detail.into(),
        ],
    )
    .await?;
    c.exec(
        "UPDATE activations SET fork = $1 WHERE id = $2",
        vec![detail.into(), activation.into()],
    )
    .await?;
    Ok(())
}

/// The activation a device file is about, as the write reads it (locked on PostgreSQL).
pub(super) struct DeviceRow {
    pub(super) state: String,
    pub(super) closed_by: Option<String>,
    pub(super) head_seq: u64,
    pub(super) head: Bytes32,
    pub(super) known: Vec<Bytes32>,
}

pub(super) async fn device_row<C: Sql>(
    c: &mut C,
    activation: &str,
) -> Result<DeviceRow, PortalError> {
    let lock = for_update(c);
    let rows = c
        .rows(
            &format!(
                "SELECT state, closed_by, journal_seq, journal_head, journal_known \
                 FROM activations WHERE id = $1{lock}"
            ),
            vec![activation.into()],
        )
        .await?;
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

pub(super) fn parse_hash(hex_text: &str) -> Option<Bytes32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(Bytes32(out))
}

/// Counters by feature from `sql` selecting (feature, value) with `$1` bound to `key`.
pub(super) async fn counters_of<C: Sql>(
    c: &mut C,
    sql: &str,
    key: &str,
) -> Result<BTreeMap<String, u64>, PortalError> {
    Ok(c.rows(sql, vec![key.into()])
        .await?
        .iter()
        .filter_map(|r| {
            let feature = r.first()?.text()?.to_string();
            let n = u64::try_from(r.get(1)?.int()?).ok()?;
            Some((feature, n))
        })
        .collect())
}

pub(super) async fn write_device_file<C: Sql>(
    c: &mut C,
    j: DeviceWrite,
) -> Result<WriteOutcome, PortalError> {
    let now = j.now.timestamp();
    let hash = j.file_hash;
    // Read the activation inside the transaction: another file may have changed it.
    // (On PostgreSQL, locked until the end: files of one activation, and a server-side
    // deactivation, are applied one at a time.)
    let row = device_row(c, &j.activation_id).await?;
    // With the activation locked, the same file applied at the same moment is seen here
    // (on PostgreSQL the other transaction has committed or not started).
    if applied_before(c, &j.hash).await? {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    if row.state != "active" && row.closed_by.as_deref() == Some("device") {
        // The device's own deactivation closed the account: its final counters are
        // counted and nothing the device signs later is applied.
        return match decide::after_close(row.head_seq, &row.known, j.journal.seq, &hash, j.kind) {
            decide::AfterClose::Superseded => Ok(WriteOutcome::Refused(PortalError::Superseded {
                kind: j.kind.to_string(),
                activation: j.activation_id,
            })),
            decide::AfterClose::RestoredStore(reason) => {
                // Evidence, committed though the file is refused.
                raise_flag(
                    c,
                    &j.activation_id,
                    "after-deactivation",
                    &j.hash,
                    now,
                    &reason,
                )
                .await?;
                audit(
                    c,
                    j.now.timestamp_millis(),
                    &j.actor,
                    "activation.closed-file-refused",
                    Some(&j.activation_id),
                    None,
                    Some(&j.hash),
                    Some(&format!("{reason}; counters {}", json(&j.counters))),
                )
                .await?;
                Ok(WriteOutcome::Refused(PortalError::ActivationClosed {
                    activation: j.activation_id,
                    reason,
                }))
            }
        };
    }
    if !claim(c, &j.hash, j.kind, &j.activation_id, &j.armored, now).await? {
        return Ok(WriteOutcome::AlreadyApplied);
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
    let reported = counters_of(
        c,
        "SELECT feature, reported FROM usage_reported WHERE activation = $1",
        &j.activation_id,
    )
    .await?;
    let totals = counters_of(
        c,
        "SELECT feature, total FROM usage_totals WHERE license = $1",
        &j.license_id,
    )
    .await?;
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
            for (feature, cumulative, delta) in &usage.grows {
                add_usage(c, &j, feature, *cumulative, *delta).await?;
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
                activation: j.activation_id,
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
    c.exec(
        "UPDATE activations SET last_accessed = $1, \
         journal_seq = CASE WHEN $2 = 1 THEN $3 ELSE journal_seq END, \
         journal_head = CASE WHEN $2 = 1 THEN $4 ELSE journal_head END, \
         journal_known = CASE WHEN $2 = 1 THEN $5 ELSE journal_known END, \
         state = CASE WHEN $6 = 1 THEN 'deactivated' ELSE state END, \
         deactivated = CASE WHEN $6 = 1 THEN $1 ELSE deactivated END, \
         closed_by = CASE WHEN $7 = 1 THEN 'device' ELSE closed_by END \
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
        ],
    )
    .await?;
    for (kind, reason) in &flags {
        raise_flag(c, &j.activation_id, kind, &j.hash, now, reason).await?;
        audit(
            c,
            j.now.timestamp_millis(),
            &j.actor,
            match *kind {
                "gap" => "journal.gap",
                "counters-went-back" => "usage.went-back",
                "counters-refused" => "usage.refused",
                _ => "journal.fork",
            },
            Some(&j.activation_id),
            None,
            Some(&j.hash),
            Some(reason),
        )
        .await?;
    }
    if deactivating {
        c.exec(
            "UPDATE licenses SET seats_used = seats_used - 1 WHERE id = $1 AND seats_used > 0",
            vec![(&j.license_id).into()],
        )
        .await?;
    }
    let action = if j.deactivate {
        "activation.deactivate"
    } else {
        "usage.report"
    };
    audit(
        c,
        j.now.timestamp_millis(),
        &j.actor,
        action,
        Some(&j.activation_id),
        None,
        Some(&j.hash),
        Some(&json(&j.counters)),
    )
    .await?;
    Ok(WriteOutcome::Done(Applied {
        kind: j.kind.name().into(),
        response: j.armored,
        response_kind: FileKind::Receipt.name().into(),
        activation: Some(j.activation_id),
        replay: false,
        file_hash: j.hash,
        flags: flags.into_iter().map(|(_, reason)| reason).collect(),
        note: String::new(),
    }))
}

/// Count `delta` more units of `feature`: the activation's reported counter becomes
/// `cumulative`, the license's total grows by `delta` — only while it stays within the
/// counters' range (checked again here, atomically, against totals that other
/// activations' files may have raised since they were read).
pub(super) async fn add_usage<C: Sql>(
    c: &mut C,
    j: &DeviceWrite,
    feature: &str,
    cumulative: u64,
    delta: u64,
) -> Result<(), PortalError> {
    c.exec(
        "INSERT INTO usage_reported (reported, activation, feature) VALUES ($1, $2, $3) \
         ON CONFLICT (activation, feature) DO UPDATE SET reported = excluded.reported",
        vec![
            u64_to_i64(cumulative).into(),
            (&j.activation_id).into(),
            feature.into(),
        ],
    )
    .await?;
    let counted = c
        .exec(
            "INSERT INTO usage_totals (license, feature, total) VALUES ($1, $2, $3) \
             ON CONFLICT (license, feature) DO UPDATE SET total = usage_totals.total + excluded.total \
             WHERE usage_totals.total <= $4 - excluded.total",
            vec![
                (&j.license_id).into(),
                feature.into(),
                u64_to_i64(delta).into(),
                u64_to_i64(format::MAX_COUNTER).into(),
            ],
        )
        .await?;
    if counted == 0 {
        return Err(PortalError::Conflict {
            reason: format!(
                "the total of '{feature}' changed while the file was applied and would now pass \
                 the largest counter; upload the file again"
            ),
        });
    }
    Ok(())
}

/// Most jobs one SQLite commit takes.
const MAX_BATCH: usize = 128;

/// The SQLite group-commit writer: a thread with its own SQLite connection takes every
/// job that is waiting (up to MAX_BATCH), runs each in a savepoint of one IMMEDIATE
/// transaction, and commits once — one durable fsync for the batch instead of one per
/// job. A job that fails is rolled back to its savepoint without touching the others; a
/// failed commit fails them all.
pub(super) fn spawn_writer(
    path: &std::path::Path,
) -> Result<tokio::sync::mpsc::Sender<(Job, Reply)>, PortalError> {
    let conn = Db::open_sqlite(path).map_err(|e| PortalError::Storage(e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Job, Reply)>(4096);
    std::thread::Builder::new()
        .name("lic-sqlite-writer".into())
        .spawn(move || {
            let mut lite = Lite(conn);
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                write_batch(&mut lite, batch);
            }
        })
        .map_err(|e| PortalError::Storage(format!("cannot start the database writer: {e}")))?;
    Ok(tx)
}

pub(super) fn write_batch(lite: &mut Lite, batch: Vec<(Job, Reply)>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut result = lite.batch("BEGIN IMMEDIATE");
    let mut jobs = batch.into_iter();
    if result.is_ok() {
        for (job, reply) in jobs.by_ref() {
            let outcome = lite
                .batch("SAVEPOINT job")
                .and_then(|()| {
                    run_now(run_job(lite, job))
                        .unwrap_or_else(|| Err(PortalError::Storage("a write job waited".into())))
                })
                .and_then(|outcome| lite.batch("RELEASE job").map(|()| outcome));
            if outcome.is_err() {
                // Undo this job only; the transaction goes on.
                if let Err(e) = lite.batch("ROLLBACK TO job; RELEASE job") {
                    result = Err(e);
                    replies.push((reply, outcome));
                    break;
                }
            }
            replies.push((reply, outcome));
        }
    }
    if result.is_ok() {
        result = lite.batch("COMMIT");
    }
    match result {
        Ok(()) => {
            for (reply, outcome) in replies {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let _ = lite.batch("ROLLBACK");
            let message = e.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(PortalError::Storage(message.clone())));
            }
            for (_, reply) in jobs {
                let _ = reply.send(Err(PortalError::Storage(message.clone())));
            }
        }
    }
}
