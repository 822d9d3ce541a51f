//! The group-commit writers. Every state change of the hot paths (activations, device
//! files) is a write job sent to one writer per portal instance, which takes every job
//! that is waiting (up to [`MAX_BATCH`]), runs them in one transaction and commits once:
//! one durable commit for the batch instead of one per job. A job that fails or is
//! refused leaves nothing written and does not touch the others; a failed commit fails
//! them all. Answers go out only after the commit.
//!
//! - SQLite: a thread with its own rusqlite connection (statements cost microseconds);
//!   each job runs in a savepoint, rolled back if the job fails.
//! - PostgreSQL: a task with its own tokio-postgres connection, which pipelines a job's
//!   statements (see [`Sql::exec_all`]) and sends its writes with the next job's reads
//!   (see [`Sql::write_all`]): about one round trip per job. Before a batch runs, it locks the rows of the
//!   licenses the batch writes under, in one order: activations of one license stay one
//!   at a time across every instance on the database (the seat count is exact), and two
//!   instances' batches cannot deadlock.
//!
//! The writers know nothing of licenses: a [`Job`] says which license it writes under
//! and whether what it wrote stays.

use tokio::sync::{mpsc, oneshot};

use super::Pg;
use super::db::Db;
use super::sql::{Lite, Sql, Val, Write, run_now, stmt};
use crate::error::PortalError;

/// Most jobs one commit takes.
pub const MAX_BATCH: usize = 128;

/// A unit of writing: everything was verified and signed before; this only reads what
/// it must decide on, decides, and writes, inside the writer's transaction.
///
/// A job names its reads ([`Job::reads`]); the writer runs them and hands the rows to
/// [`Job::decide`], which answers and adds its writes. On PostgreSQL the writer reads a
/// whole batch in one round trip before any of it is decided, so a job may see rows
/// that the batch's earlier jobs have since changed: it gets their [`Job::Changes`]
/// (what they took, freed and added, which it adds to what it read), and a job whose
/// reads they changed in a way it cannot add up ([`Job::stale`]) is read again after
/// their writes.
pub trait Job: Send + 'static {
    type Output: Send + 'static;
    /// What a job changed, as later jobs of the batch need to know it.
    type Changes: Default + Send;

    /// The license whose rows the job writes under (PostgreSQL locks it first).
    fn license(&self) -> &str;

    /// The queries whose rows the decision needs (`row_locks`: PostgreSQL, where the
    /// rows to change are locked with `FOR UPDATE`).
    fn reads(&self, row_locks: bool) -> Vec<(String, Vec<Val>)>;

    /// Whether `unseen` (what earlier jobs changed since the reads) makes the reads
    /// unusable, so that they must be made again.
    fn stale(&self, unseen: &Self::Changes) -> bool;

    /// Decide from the rows of [`Job::reads`] and the earlier jobs' `unseen` changes;
    /// add the job's writes to `writes` and its changes to `mine`. The writes and
    /// changes of an error, or of an answer not kept, are dropped.
    fn decide(
        &self,
        rows: Vec<Vec<Vec<Val>>>,
        unseen: &Self::Changes,
        mine: &mut Self::Changes,
        writes: &mut Vec<Write>,
    ) -> Result<Self::Output, PortalError>;

    /// Add `from` to `into`.
    fn merge(into: &mut Self::Changes, from: Self::Changes);

    /// Whether what the job wrote stays when it answered `out` (committed with the
    /// batch); if not, it is dropped, as after an error.
    fn keeps(out: &Self::Output) -> bool;
}

type Outcome<J> = Result<<J as Job>::Output, PortalError>;
type Reply<J> = oneshot::Sender<Outcome<J>>;

/// The queue to a portal instance's writer.
#[derive(Debug)]
pub struct Writer<J: Job> {
    queue: mpsc::Sender<(J, Reply<J>)>,
}

fn stopped() -> PortalError {
    PortalError::Storage("the database writer has stopped".into())
}

impl<J: Job> Writer<J> {
    /// The writer for `db`'s backend.
    pub async fn open(db: &Db) -> Result<Self, PortalError> {
        match (db.sqlite_path(), db.postgres_url()) {
            (Some(path), _) => Self::sqlite(path),
            (None, Some(url)) => Self::postgres(url).await,
            (None, None) => Err(PortalError::Storage(
                "the database has neither an SQLite file nor a PostgreSQL URL".into(),
            )),
        }
    }

    /// Send `job` and wait until it is committed (or refused, or failed).
    pub async fn write(&self, job: J) -> Result<J::Output, PortalError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn sqlite(path: &std::path::Path) -> Result<Self, PortalError> {
        let conn = Db::open_sqlite(path).map_err(|e| PortalError::Storage(e.to_string()))?;
        let (queue, mut rx) = mpsc::channel::<(J, Reply<J>)>(4096);
        std::thread::Builder::new()
            .name("lic-sqlite-writer".into())
            .spawn(move || {
                let mut lite = Lite(conn);
                while let Some(first) = rx.blocking_recv() {
                    let batch = gather(first, &mut rx);
                    sqlite_batch(&mut lite, batch);
                }
            })
            .map_err(|e| PortalError::Storage(format!("cannot start the database writer: {e}")))?;
        Ok(Writer { queue })
    }

    async fn postgres(url: &str) -> Result<Self, PortalError> {
        let url = url.to_string();
        let (queue, mut rx) = mpsc::channel::<(J, Reply<J>)>(4096);
        let (started, start) = oneshot::channel::<Result<(), PortalError>>();
        // A thread of its own, with its own runtime for the writer and its connection:
        // on the server's runtime, every round trip would wait behind the requests'
        // signature checks.
        std::thread::Builder::new()
            .name("lic-pg-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started.send(Err(PortalError::Storage(format!(
                            "cannot start the database writer: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Connect now: a wrong URL is an error at start, not at the first
                    // activation.
                    let mut conn = match Pg::connect(&url).await {
                        Ok(c) => {
                            let _ = started.send(Ok(()));
                            Some(c)
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    while let Some(first) = rx.recv().await {
                        let batch = gather(first, &mut rx);
                        if conn.as_ref().is_none_or(Pg::is_closed) {
                            // The connection was lost (a restarted server): a new one per
                            // batch until it comes back; the batch fails meanwhile.
                            match Pg::connect(&url).await {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    conn = None;
                                    fail_all(batch, &e);
                                    continue;
                                }
                            }
                        }
                        if let Some(pg) = conn.as_mut() {
                            pg_batch(pg, batch).await;
                        }
                    }
                });
            })
            .map_err(|e| PortalError::Storage(format!("cannot start the database writer: {e}")))?;
        start.await.map_err(|_| stopped())??;
        Ok(Writer { queue })
    }
}

/// The first job and every job waiting behind it, up to [`MAX_BATCH`].
fn gather<T>(first: T, rx: &mut mpsc::Receiver<T>) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

fn fail_all<J: Job>(batch: impl IntoIterator<Item = (J, Reply<J>)>, error: &PortalError) {
    for (_, reply) in batch {
        let e = match error {
            PortalError::Unavailable(m) => PortalError::Unavailable(m.clone()),
            PortalError::StorageFull(m) => PortalError::StorageFull(m.clone()),
            other => PortalError::Storage(other.to_string()),
        };
        let _ = reply.send(Err(e));
    }
}

/// Whether the job's savepoint is released (kept) rather than rolled back.
fn kept<J: Job>(outcome: &Outcome<J>) -> bool {
    outcome.as_ref().is_ok_and(J::keeps)
}

/// Send the answers after the commit, or the commit's error to every job.
fn answer<J: Job>(
    committed: Result<(), PortalError>,
    replies: Vec<(Reply<J>, Outcome<J>)>,
    rest: impl IntoIterator<Item = (J, Reply<J>)>,
) {
    match committed {
        Ok(()) => {
            for (reply, outcome) in replies {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            // Each job gets the batch's error: a conflict (send again) stays one.
            let again = || match &e {
                PortalError::Conflict { reason } => PortalError::Conflict {
                    reason: reason.clone(),
                },
                PortalError::Unavailable(why) => PortalError::Unavailable(why.clone()),
                PortalError::StorageFull(why) => PortalError::StorageFull(why.clone()),
                other if other.unavailable() => PortalError::Unavailable(other.to_string()),
                other => PortalError::Storage(other.to_string()),
            };
            for (reply, _) in replies {
                let _ = reply.send(Err(again()));
            }
            for (_, reply) in rest {
                let _ = reply.send(Err(again()));
            }
        }
    }
}

/// One job on SQLite: read, decide, write (each job sees the ones before it).
fn sqlite_job<J: Job>(lite: &mut Lite, job: &J) -> Outcome<J> {
    let waited = || PortalError::Storage("a write job waited".into());
    let rows = run_now(lite.rows_all(job.reads(false))).unwrap_or_else(|| Err(waited()))?;
    let mut writes = Vec::new();
    let out = job.decide(
        rows,
        &J::Changes::default(),
        &mut J::Changes::default(),
        &mut writes,
    )?;
    if J::keeps(&out) {
        run_now(lite.write_all(writes)).unwrap_or_else(|| Err(waited()))?;
    }
    Ok(out)
}

fn sqlite_batch<J: Job>(lite: &mut Lite, batch: Vec<(J, Reply<J>)>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut result = lite.batch("BEGIN IMMEDIATE");
    let mut jobs = batch.into_iter();
    if result.is_ok() {
        for (job, reply) in jobs.by_ref() {
            let outcome = lite
                .batch("SAVEPOINT job")
                .and_then(|()| sqlite_job(lite, &job));
            let end = if kept::<J>(&outcome) {
                lite.batch("RELEASE job")
            } else {
                // Undo this job only; the transaction goes on.
                lite.batch("ROLLBACK TO job; RELEASE job")
            };
            replies.push((reply, outcome));
            if let Err(e) = end {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        result = lite.batch("COMMIT");
    }
    if result.is_err() {
        let _ = lite.batch("ROLLBACK");
    }
    answer::<J>(result, replies, jobs);
}

async fn pg_batch<J: Job>(pg: &mut Pg, batch: Vec<(J, Reply<J>)>) {
    let mut licenses: Vec<String> = batch.iter().map(|(j, _)| j.license().to_string()).collect();
    licenses.sort();
    licenses.dedup();
    // BEGIN and the locks go out with the first job's reads.
    pg.defer("BEGIN");
    let locks = licenses.into_iter().map(|id| {
        stmt(
            "SELECT id FROM licenses WHERE id = $1 FOR UPDATE",
            vec![id.into()],
        )
        .into()
    });
    let mut result = pg.write_all(locks.collect()).await;
    // Every job's reads, in the same round trip: (first row set, count) per job.
    let mut reads = Vec::new();
    let mut spans = Vec::with_capacity(batch.len());
    for (job, _) in &batch {
        let r = job.reads(true);
        spans.push(r.len());
        reads.extend(r);
    }
    let mut ahead = match result {
        Ok(()) => match pg.rows_all(reads).await {
            Ok(rows) => rows.into_iter(),
            Err(e) => {
                result = Err(e);
                Vec::new().into_iter()
            }
        },
        Err(_) => Vec::new().into_iter(),
    };
    let mut replies = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter().zip(spans);
    let mut unseen = J::Changes::default();
    if result.is_ok() {
        // No savepoints: a job decides before it writes, and its writes are queued only
        // for an answer it keeps; they go out with the next round trip (a job read
        // again, or the commit). Anything that fails there (a failed statement aborts
        // the transaction) rolls the whole batch back.
        for ((job, reply), span) in jobs.by_ref() {
            let read: Vec<_> = ahead.by_ref().take(span).collect();
            let mut mine = J::Changes::default();
            let mut writes = Vec::new();
            let outcome = if job.stale(&unseen) {
                match pg.rows_all(job.reads(true)).await {
                    Ok(rows) => job.decide(rows, &J::Changes::default(), &mut mine, &mut writes),
                    Err(e) => Err(e),
                }
            } else {
                job.decide(read, &unseen, &mut mine, &mut writes)
            };
            let outcome = match outcome {
                Ok(out) if J::keeps(&out) => match pg.write_all(writes).await {
                    Ok(()) => {
                        J::merge(&mut unseen, mine);
                        Ok(out)
                    }
                    Err(e) => Err(e),
                },
                other => other,
            };
            replies.push((reply, outcome));
            if let Some(e) = pg.broken() {
                result = Err(e);
                break;
            }
        }
    }
    let jobs = jobs.map(|(job, _)| job);
    if result.is_ok() {
        // The writes first, checked, and only then the commit: sent together, the commit
        // would be done before a write's count could be found wrong.
        result = pg.flush().await;
        if let Some(e) = pg.broken() {
            result = Err(e);
        }
    }
    if result.is_ok() {
        result = pg.batch("COMMIT").await;
    }
    if result.is_err() {
        pg.reset();
        let _ = pg.batch("ROLLBACK").await;
        pg.reset();
    }
    answer::<J>(result, replies, jobs);
}
