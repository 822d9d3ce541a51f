//! The PostgreSQL connection of the group-commit writer: tokio-postgres, because it
//! pipelines — statements sent together cost one round trip, where sqlx waits for each
//! answer before it sends the next statement.

use std::collections::HashMap;
use std::error::Error as StdError;

use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};

use super::sql::{Expect, Sql, Val, Write};
use crate::error::PortalError;

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Text(t) => t.as_str().to_sql(ty, out),
            Val::Int(i) => i.to_sql(ty, out),
            Val::Null | Val::NullInt => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty) || <i64 as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// The parameter type a value is bound as: its statement is prepared with these types, so
/// that `$2 = 1` compares a BIGINT (as sqlx binds it) rather than whatever PostgreSQL
/// would infer.
fn pg_type(v: &Val) -> Type {
    match v {
        Val::Text(_) | Val::Null => Type::TEXT,
        Val::Int(_) | Val::NullInt => Type::INT8,
    }
}

pub(crate) fn storage(e: tokio_postgres::Error) -> PortalError {
    // The server's own message where there is one ("deadlock detected", a constraint's
    // name…), not only "db error".
    match e.as_db_error() {
        // 53100: disk_full.
        Some(db) if db.code().code() == "53100" => {
            PortalError::StorageFull(format!("PostgreSQL: {}", db.message()))
        }
        Some(db) => PortalError::from_sqlstate(db.code().code(), db.message())
            .unwrap_or_else(|| PortalError::Storage(format!("PostgreSQL: {}", db.message()))),
        // No answer from the server: the connection is gone (or never came).
        None if e.is_closed() || e.code().is_none() => {
            PortalError::Unavailable(format!("PostgreSQL: {e}"))
        }
        None => PortalError::Storage(format!("PostgreSQL: {e}")),
    }
}

/// A statement waiting to go out with the next ones.
enum Item {
    /// Statements without arguments (SAVEPOINT, RELEASE…).
    Simple(String),
    /// A write whose answer is checked when it comes.
    Write {
        statement: Statement,
        args: Vec<Val>,
        expect: Option<Expect>,
    },
}

/// What a pipelined statement answered.
enum Answer {
    Done,
    Count(u64),
    Rows(Vec<tokio_postgres::Row>),
}

type Pending<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Answer, tokio_postgres::Error>> + Send + 'a>>;

/// One connection, with the statements it has prepared and the ones waiting to be sent.
pub struct Pg {
    client: Client,
    /// By SQL text, each form prepared (one per list of argument types, NULLs aside).
    prepared: HashMap<String, Vec<(Vec<Type>, Statement)>>,
    deferred: Vec<Item>,
    /// Why the transaction cannot go on: a statement failed (without savepoints, that
    /// aborts the transaction), or a write changed other rows than its job expected; and
    /// what each job of the batch is told.
    broken: Option<(String, Breakage)>,
}

/// What broke a transaction, for the answer every job of its batch gets.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    /// The database went away: send the request again (503).
    Gone,
    /// Its disk is full: the operator frees space, then the request is sent again (507).
    Full,
    /// Anything else: a conflict, to be sent again (409).
    Conflict,
}

impl Breakage {
    fn of(e: &PortalError) -> Breakage {
        match e {
            e if e.storage_full() => Breakage::Full,
            e if e.unavailable() => Breakage::Gone,
            _ => Breakage::Conflict,
        }
    }
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("prepared", &self.prepared.len())
            .field("deferred", &self.deferred.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Pg {
    /// Connect to `url` (`postgres://…`; no TLS, as the pool) and drive the connection on
    /// a task of its own.
    pub async fn connect(url: &str) -> Result<Pg, PortalError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(storage)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the database writer's PostgreSQL connection ended");
            }
        });
        Ok(Pg {
            client,
            prepared: HashMap::new(),
            deferred: Vec::new(),
            broken: None,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The prepared statement for `sql` with these arguments' types (prepared once; a
    /// statement already prepared is found without allocating: this runs for every
    /// statement the writer sends).
    async fn statement(&mut self, sql: &str, args: &[Val]) -> Result<Statement, PortalError> {
        let same_types = |types: &[Type]| {
            types.len() == args.len() && types.iter().zip(args).all(|(t, a)| *t == pg_type(a))
        };
        if let Some(s) = self
            .prepared
            .get(sql)
            .and_then(|forms| forms.iter().find(|(types, _)| same_types(types)))
        {
            return Ok(s.1.clone());
        }
        let types: Vec<Type> = args.iter().map(pg_type).collect();
        let s = self
            .client
            .prepare_typed(sql, &types)
            .await
            .map_err(storage)?;
        self.prepared
            .entry(sql.to_string())
            .or_default()
            .push((types, s.clone()));
        Ok(s)
    }

    /// Send the deferred statements and then `now` (the `bool`: whether its rows are
    /// wanted) in one round trip; the answers to `now`. A deferred write that failed, or
    /// changed other than the rows it expected, breaks the transaction.
    async fn pipeline(
        &mut self,
        now: Vec<(String, Vec<Val>, bool)>,
    ) -> Result<Vec<Answer>, PortalError> {
        let mut prepared = Vec::with_capacity(now.len());
        for (sql, args, rows) in now {
            prepared.push((self.statement(&sql, &args).await?, args, rows));
        }
        let deferred = std::mem::take(&mut self.deferred);
        let client = &self.client;
        // Each future sends its statement when first polled; join_all polls them in order.
        let mut runs: Vec<Pending<'_>> = Vec::with_capacity(deferred.len() + prepared.len());
        for item in &deferred {
            runs.push(match item {
                Item::Simple(sql) => {
                    Box::pin(async move { client.batch_execute(sql).await.map(|()| Answer::Done) })
                }
                Item::Write {
                    statement, args, ..
                } => Box::pin(async move {
                    client
                        .execute(statement, &params(args))
                        .await
                        .map(Answer::Count)
                }),
            });
        }
        for (statement, args, rows) in &prepared {
            runs.push(if *rows {
                Box::pin(async move {
                    client
                        .query(statement, &params(args))
                        .await
                        .map(Answer::Rows)
                })
            } else {
                Box::pin(async move {
                    client
                        .execute(statement, &params(args))
                        .await
                        .map(Answer::Count)
                })
            });
        }
        let mut answers = futures_util::future::join_all(runs).await.into_iter();
        let mut failure = None;
        for item in &deferred {
            let answer = answers.next();
            let why = match (item, answer) {
                // A database going away is not a conflict: the request can be sent again.
                // Nor is a full disk: the operator must free space first.
                (_, Some(Err(e))) => Some(match storage(e) {
                    gone @ PortalError::Unavailable(_) => gone,
                    full @ PortalError::StorageFull(_) => full,
                    other => PortalError::Conflict {
                        reason: other.to_string(),
                    },
                }),
                (
                    Item::Write {
                        expect: Some(expect),
                        ..
                    },
                    Some(Ok(Answer::Count(n))),
                ) if n != expect.rows => Some(PortalError::Conflict {
                    reason: expect.otherwise.clone(),
                }),
                _ => None,
            };
            if failure.is_none() {
                failure = why;
            }
        }
        if let Some(e) = failure {
            self.broken.get_or_insert((e.to_string(), Breakage::of(&e)));
            return Err(e);
        }
        let answers: Result<Vec<Answer>, PortalError> =
            answers.map(|a| a.map_err(storage)).collect();
        if let Err(e) = &answers {
            self.broken.get_or_insert((e.to_string(), Breakage::of(e)));
        }
        answers
    }

    /// Run statements without arguments or results (BEGIN, ROLLBACK TO, COMMIT…), after
    /// the deferred ones.
    pub async fn batch(&mut self, sql: &str) -> Result<(), PortalError> {
        self.defer(sql);
        self.pipeline(Vec::new()).await.map(drop)
    }

    /// Send what is deferred (if anything) and check it.
    pub async fn flush(&mut self) -> Result<(), PortalError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        self.pipeline(Vec::new()).await.map(drop)
    }

    /// Send `sql` (statements without arguments) in front of the next statements, in the
    /// same round trip.
    pub fn defer(&mut self, sql: &str) {
        self.queue(Item::Simple(sql.to_string()));
    }

    fn queue(&mut self, item: Item) {
        self.deferred.push(item);
    }

    /// Why the transaction cannot go on, if a write sent after its job answered failed:
    /// the error for every job of the batch (nothing of it was committed; each may be
    /// sent again).
    pub fn broken(&self) -> Option<PortalError> {
        self.broken.as_ref().map(|(why, breakage)| match breakage {
            Breakage::Gone => PortalError::Unavailable(why.clone()),
            Breakage::Full => PortalError::StorageFull(format!(
                "{why} (nothing of this batch of writes was committed)"
            )),
            Breakage::Conflict => PortalError::Conflict {
                reason: format!(
                    "{why} (nothing of this batch of writes was committed; send it again)"
                ),
            },
        })
    }

    /// Forget the deferred statements and the breakage (the transaction is rolled back).
    pub fn reset(&mut self) {
        self.deferred.clear();
        self.broken = None;
    }
}

fn params(args: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

fn row_vals(row: &tokio_postgres::Row) -> Vec<Val> {
    (0..row.len())
        .map(|i| match *row.columns()[i].type_() {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)
                .ok()
                .flatten()
                .map_or(Val::Null, Val::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .ok()
                .flatten()
                .map_or(Val::Null, |n| Val::Int(n.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .ok()
                .flatten()
                .map_or(Val::Null, |n| Val::Int(n.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .ok()
                .flatten()
                .map_or(Val::Null, |b| Val::Int(b.into())),
            _ => row
                .try_get::<_, Option<String>>(i)
                .ok()
                .flatten()
                .map_or(Val::Null, Val::Text),
        })
        .collect()
}

impl Sql for Pg {
    fn row_locks(&self) -> bool {
        true
    }

    async fn exec(&mut self, sql: &str, args: Vec<Val>) -> Result<u64, PortalError> {
        let mut n = self.exec_all(vec![(sql.to_string(), args)]).await?;
        Ok(n.pop().unwrap_or(0))
    }

    async fn rows(&mut self, sql: &str, args: Vec<Val>) -> Result<Vec<Vec<Val>>, PortalError> {
        let mut rows = self.rows_all(vec![(sql.to_string(), args)]).await?;
        Ok(rows.pop().unwrap_or_default())
    }

    /// Every statement (after the deferred ones) sent at once and answered in order: one
    /// round trip.
    async fn exec_all(&mut self, stmts: Vec<(String, Vec<Val>)>) -> Result<Vec<u64>, PortalError> {
        let answers = self
            .pipeline(stmts.into_iter().map(|(s, a)| (s, a, false)).collect())
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Answer::Count(n) => n,
                Answer::Done | Answer::Rows(_) => 0,
            })
            .collect())
    }

    async fn rows_all(
        &mut self,
        queries: Vec<(String, Vec<Val>)>,
    ) -> Result<Vec<Vec<Vec<Val>>>, PortalError> {
        let answers = self
            .pipeline(queries.into_iter().map(|(s, a)| (s, a, true)).collect())
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Answer::Rows(rows) => rows.iter().map(row_vals).collect(),
                Answer::Done | Answer::Count(_) => Vec::new(),
            })
            .collect())
    }

    /// Deferred: the writes go out with the job's next statements or the writer's next
    /// (the next job's reads, or the commit). One that fails, or changes other than the
    /// rows it expected, breaks the batch, which the writer then rolls back whole.
    async fn write_all(&mut self, writes: Vec<Write>) -> Result<(), PortalError> {
        for w in writes {
            let statement = self.statement(&w.sql, &w.args).await?;
            self.queue(Item::Write {
                statement,
                args: w.args,
                expect: w.expect,
            });
        }
        Ok(())
    }
}
