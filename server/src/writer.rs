//! Group commit: one thread owns the database connection and runs every decision that
//! is waiting in one `BEGIN IMMEDIATE` transaction, each in a savepoint of its own, then
//! commits once (one fsync) and answers them all. Decisions stay serial — each sees the
//! seats the ones before it took — and none is answered before it is durable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::ServerError;

/// The most decisions in one transaction.
pub const MAX_BATCH: usize = 256;

/// What a decision did: its result, and whether its writes are kept (a refusal may keep
/// some: a device that waits for a seat keeps its place in the queue).
#[derive(Debug)]
pub struct Step<R> {
    pub result: Result<R, ServerError>,
    pub keep: bool,
}

impl<R> Step<R> {
    /// Kept if it succeeded, rolled back if not.
    pub fn of(result: Result<R, ServerError>) -> Self {
        let keep = result.is_ok();
        Step { result, keep }
    }
}

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Transaction<'_>) -> (bool, Reply) + Send>;

/// The handle to the writer thread.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Start the writer thread on `conn`.
    pub fn start(mut conn: Connection) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("lic-server-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, batch);
                }
            })?;
        Ok(Writer { jobs })
    }

    /// Run `decide` in the next transaction and answer once it is committed.
    pub fn run<R: Send + 'static>(
        &self,
        decide: impl FnOnce(&Transaction<'_>) -> Step<R> + Send + 'static,
    ) -> Result<R, ServerError> {
        let (job, answered) = job(decide);
        self.jobs
            .send(job)
            .map_err(|_| ServerError::Commit("the database writer has stopped".into()))?;
        answered.recv().map_err(|_| {
            ServerError::Commit("the database writer dropped the request (see the log)".into())
        })?
    }
}

type Answer<R> = mpsc::Receiver<Result<R, ServerError>>;

/// A job for the writer, and where its answer comes once its transaction has ended.
fn job<R: Send + 'static>(
    decide: impl FnOnce(&Transaction<'_>) -> Step<R> + Send + 'static,
) -> (Job, Answer<R>) {
    let (answer, answered) = mpsc::sync_channel::<Result<R, ServerError>>(1);
    let job: Job = Box::new(move |tx| {
        let step = decide(tx);
        let keep = step.keep;
        let reply: Reply = Box::new(move |committed| {
            let result = match committed {
                Err(e) if keep => Err(ServerError::Commit(e)),
                _ => step.result,
            };
            let _ = answer.send(result);
        });
        (keep, reply)
    });
    (job, answered)
}

/// One transaction for `batch`: each job in a savepoint, kept or rolled back as it says;
/// one commit; then every answer. A job that panics is rolled back and its caller told.
fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for job in batch {
            tx.execute_batch("SAVEPOINT job")?;
            match catch_unwind(AssertUnwindSafe(|| job(&tx))) {
                Ok((keep, reply)) => {
                    tx.execute_batch(if keep {
                        "RELEASE job"
                    } else {
                        "ROLLBACK TO job; RELEASE job"
                    })?;
                    replies.push(reply);
                }
                Err(_) => {
                    tracing::error!("a decision panicked; its writes are rolled back");
                    tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                }
            }
        }
        tx.commit()
    })();
    let committed = outcome.map_err(|e| {
        tracing::error!(error = %e, "the database transaction failed");
        e.to_string()
    });
    for reply in replies {
        reply(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn insert(n: i64, keep: bool) -> (Job, Answer<i64>) {
        job(move |tx| {
            tx.execute("INSERT INTO t (n) VALUES (?1)", [n]).unwrap();
            Step {
                result: if keep {
                    Ok(n)
                } else {
                    Err(ServerError::Replayed)
                },
                keep,
            }
        })
    }

    #[test]
    fn one_transaction_keeps_each_decision_or_rolls_it_back_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        let (jobs, answers): (Vec<_>, Vec<_>) = [(1, true), (2, false), (3, true)]
            .map(|(n, k)| insert(n, k))
            .into_iter()
            .unzip();
        run_batch(&mut conn, jobs);
        let answers: Vec<_> = answers
            .into_iter()
            .map(|a| a.recv().unwrap().ok())
            .collect();
        assert_eq!(answers, [Some(1), None, Some(3)]);
        let rows: Vec<i64> = conn
            .prepare("SELECT n FROM t ORDER BY n")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [1, 3]);
    }
}
