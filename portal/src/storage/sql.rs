//! A small seam between the write jobs and the database driver, so the same job code runs
//! through sqlx (PostgreSQL, and SQLite for everything but the hot writer) and through
//! rusqlite on the SQLite group-commit writer thread, where each statement costs a few
//! microseconds instead of a round trip to a driver thread.
//!
//! SQL is written once, with `$1`-style placeholders (rewritten to `?1` for rusqlite).

use std::future::Future;
use std::sync::LazyLock;

use sqlx::Row as _;

use crate::error::PortalError;

/// A value bound to or read from a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(String),
    Int(i64),
    /// NULL (PostgreSQL wants NULLs typed: this one is text).
    Null,
    /// NULL of an integer column.
    NullInt,
}

impl Val {
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::NullInt, Into::into)
    }
}

/// Execute statements and read rows.
pub trait Sql: Send {
    /// Whether concurrent transactions run at once and must lock the rows they will
    /// change (`SELECT … FOR UPDATE`): PostgreSQL. SQLite writes one transaction at a time.
    fn row_locks(&self) -> bool;
    /// Run a statement; returns the number of rows changed.
    fn exec(
        &mut self,
        sql: &str,
        args: Vec<Val>,
    ) -> impl Future<Output = Result<u64, PortalError>> + Send;
    /// Run a query; returns every row as values.
    fn rows(
        &mut self,
        sql: &str,
        args: Vec<Val>,
    ) -> impl Future<Output = Result<Vec<Vec<Val>>, PortalError>> + Send;

    /// Run statements in order; the number of rows each changed. A connection that can
    /// pipelines them (PostgreSQL on the writer: one round trip); the others run them one
    /// after the other. The first error is returned (on PostgreSQL the statements after a
    /// failed one fail too: the transaction is aborted until it rolls back).
    fn exec_all(
        &mut self,
        stmts: Vec<(String, Vec<Val>)>,
    ) -> impl Future<Output = Result<Vec<u64>, PortalError>> + Send {
        async move {
            let mut out = Vec::with_capacity(stmts.len());
            for (sql, args) in stmts {
                out.push(self.exec(&sql, args).await?);
            }
            Ok(out)
        }
    }

    /// Write, where the job has decided everything before and knows what each write must
    /// change: a write that changes other rows is a conflict (PortalError::Conflict with
    /// its `otherwise`). Run now here; the PostgreSQL writer sends them with the next
    /// statements (one round trip less per job) and, should one then fail, rolls the
    /// whole batch back.
    fn write_all(
        &mut self,
        writes: Vec<Write>,
    ) -> impl Future<Output = Result<(), PortalError>> + Send {
        async move {
            for w in writes {
                let n = self.exec(&w.sql, w.args).await?;
                if let Some(expect) = w.expect
                    && n != expect.rows
                {
                    return Err(PortalError::Conflict {
                        reason: expect.otherwise,
                    });
                }
            }
            Ok(())
        }
    }

    /// Run queries in order (pipelined where the connection can); the rows of each.
    fn rows_all(
        &mut self,
        queries: Vec<(String, Vec<Val>)>,
    ) -> impl Future<Output = Result<Vec<Vec<Vec<Val>>>, PortalError>> + Send {
        async move {
            let mut out = Vec::with_capacity(queries.len());
            for (sql, args) in queries {
                out.push(self.rows(&sql, args).await?);
            }
            Ok(out)
        }
    }
}

/// A write whose outcome the job knows in advance (see [`Sql::write_all`]).
#[derive(Debug)]
pub struct Write {
    pub sql: String,
    pub args: Vec<Val>,
    pub expect: Option<Expect>,
}

/// The rows a write must change, and what to say if it changes other than that.
#[derive(Debug)]
pub struct Expect {
    pub rows: u64,
    pub otherwise: String,
}

impl From<(String, Vec<Val>)> for Write {
    fn from((sql, args): (String, Vec<Val>)) -> Self {
        Write {
            sql,
            args,
            expect: None,
        }
    }
}

impl Write {
    /// This write must change `rows` rows; if not, `otherwise` is the error.
    pub fn expecting(
        (sql, args): (String, Vec<Val>),
        rows: u64,
        otherwise: impl Into<String>,
    ) -> Write {
        Write {
            sql,
            args,
            expect: Some(Expect {
                rows,
                otherwise: otherwise.into(),
            }),
        }
    }
}

/// A statement and its arguments, for [`Sql::exec_all`] and [`Sql::rows_all`].
pub fn stmt(sql: impl Into<String>, args: Vec<Val>) -> (String, Vec<Val>) {
    (sql.into(), args)
}

impl Sql for sqlx::AnyConnection {
    fn row_locks(&self) -> bool {
        self.backend_name() != "SQLite"
    }

    async fn exec(&mut self, sql: &str, args: Vec<Val>) -> Result<u64, PortalError> {
        Ok(bind(sqlx::query(sql), args)
            .execute(&mut *self)
            .await?
            .rows_affected())
    }

    async fn rows(&mut self, sql: &str, args: Vec<Val>) -> Result<Vec<Vec<Val>>, PortalError> {
        let rows = bind(sqlx::query(sql), args).fetch_all(&mut *self).await?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..r.columns().len())
                    .map(|i| match r.try_get::<Option<i64>, _>(i) {
                        Ok(Some(n)) => Val::Int(n),
                        Ok(None) => Val::Null,
                        Err(_) => r
                            .try_get::<Option<String>, _>(i)
                            .ok()
                            .flatten()
                            .map_or(Val::Null, Val::Text),
                    })
                    .collect()
            })
            .collect())
    }
}

pub(crate) fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Val>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Val::Text(t) => q.bind(t),
            Val::Int(i) => q.bind(i),
            Val::Null => q.bind(None::<String>),
            Val::NullInt => q.bind(None::<i64>),
        };
    }
    q
}

/// `$N` → `?N` (SQLite's numbered parameters, which rusqlite binds by position).
fn rusqlite_sql(sql: &str) -> String {
    static CACHE: LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        LazyLock::new(Default::default);
    if let Ok(cache) = CACHE.lock()
        && let Some(hit) = cache.get(sql)
    {
        return hit.clone();
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    if let Ok(mut cache) = CACHE.lock() {
        cache.insert(sql.to_string(), out.clone());
    }
    out
}

fn storage(e: rusqlite::Error) -> PortalError {
    // A full disk is the operator's to fix, and says so (the write was rolled back).
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return PortalError::StorageFull(e.to_string());
    }
    PortalError::Storage(e.to_string())
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Null | Val::NullInt => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// A rusqlite connection used from one thread (the writer).
#[derive(Debug)]
pub struct Lite(pub rusqlite::Connection);

impl Lite {
    fn exec_now(&mut self, sql: &str, args: &[Val]) -> Result<u64, PortalError> {
        let mut stmt = self.0.prepare_cached(&rusqlite_sql(sql)).map_err(storage)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(args))
            .map_err(storage)?;
        Ok(n as u64)
    }

    fn rows_now(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Vec<Val>>, PortalError> {
        let mut stmt = self.0.prepare_cached(&rusqlite_sql(sql)).map_err(storage)?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(storage)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(storage)? {
            let mut vals = Vec::with_capacity(width);
            for i in 0..width {
                use rusqlite::types::ValueRef;
                vals.push(match row.get_ref(i).map_err(storage)? {
                    ValueRef::Integer(n) => Val::Int(n),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Null => Val::Null,
                    ValueRef::Real(f) => Val::Int(f as i64),
                    ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(vals);
        }
        Ok(out)
    }

    /// Run a batch statement without arguments (BEGIN, SAVEPOINT, COMMIT…).
    pub fn batch(&mut self, sql: &str) -> Result<(), PortalError> {
        self.0.execute_batch(sql).map_err(storage)
    }
}

impl Sql for Lite {
    fn row_locks(&self) -> bool {
        false
    }

    async fn exec(&mut self, sql: &str, args: Vec<Val>) -> Result<u64, PortalError> {
        self.exec_now(sql, &args)
    }

    async fn rows(&mut self, sql: &str, args: Vec<Val>) -> Result<Vec<Vec<Val>>, PortalError> {
        self.rows_now(sql, &args)
    }
}

/// Drive a future that never waits (a job on [`Lite`]) to completion on this thread.
pub fn run_now<F: Future>(f: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_for_rusqlite() {
        assert_eq!(
            rusqlite_sql("UPDATE t SET a = $1 WHERE b = $2 AND c = '$x' AND d = $10"),
            "UPDATE t SET a = ?1 WHERE b = ?2 AND c = '$x' AND d = ?10"
        );
    }

    #[test]
    fn lite_runs_statements_and_reads_rows() {
        let mut lite = Lite(rusqlite::Connection::open_in_memory().unwrap());
        lite.batch("CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT)")
            .unwrap();
        let n = run_now(lite.exec(
            "INSERT INTO t (k, v) VALUES ($1, $2)",
            vec!["a".into(), 7.into()],
        ))
        .unwrap()
        .unwrap();
        assert_eq!(n, 1);
        let rows = run_now(lite.rows("SELECT k, v, NULL FROM t WHERE k = $1", vec!["a".into()]))
            .unwrap()
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![Val::Text("a".into()), Val::Int(7), Val::Null]]
        );
    }
}
