//! The database: SQLite (embedded default, a file created and migrated on first start,
//! WAL, durable commits) or PostgreSQL (several portal instances behind a load
//! balancer), through one code path (`sqlx::Any`) and one set of portable migrations.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _, Transaction};

/// The migrations, in order: (version, name, SQL). The same SQL runs on both backends.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "indexes", include_str!("../migrations/0002_indexes.sql")),
    (
        3,
        "one-active",
        include_str!("../migrations/0003_one_active.sql"),
    ),
    (
        4,
        "evidence",
        include_str!("../migrations/0004_evidence.sql"),
    ),
];

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool with its backend.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The database file, for SQLite.
    sqlite_path: Option<std::path::PathBuf>,
}

/// A write transaction. On SQLite it begins IMMEDIATE (the write lock is taken at the
/// start, so concurrent writers queue instead of failing to upgrade a read lock).
pub type Tx = Transaction<'static, sqlx::Any>;

impl Db {
    /// Connect to `url` (`sqlite://FILE` or `postgres://…`), creating an SQLite file if
    /// needed, and run the migrations.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL (use sqlite://FILE or postgres://…): {}",
                    redact(url)
                )
                .into(),
            ));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 32,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Durable commits: WAL with a full sync at every commit.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA cache_size = -16384").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let sqlite_path = match backend {
            Backend::Sqlite => {
                let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
                Some(std::path::PathBuf::from(
                    rest.split('?').next().unwrap_or(rest),
                ))
            }
            Backend::Postgres => None,
        };
        let db = Db {
            pool,
            backend,
            sqlite_path,
        };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The SQLite database file (None for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// A direct SQLite connection with the portal's settings (WAL, durable commits).
    pub fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 30000; \
             PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Begin a transaction that will write.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Apply the migrations not yet applied, each in its own transaction.
    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Several instances may start at once: one migrates, the others wait.
            sqlx::query("SELECT pg_advisory_xact_lock(7476110001)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?;
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(chrono::Utc::now().timestamp())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Whether an error is a unique-constraint violation (e.g. the same file applied twice
/// at once: the loser of the race reads the winner's result).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, redact};

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
        files.sort();
        assert_eq!(
            files.len(),
            MIGRATIONS.len(),
            "a migration file is not in MIGRATIONS: {files:?}"
        );
        for (i, ((version, _, _), file)) in MIGRATIONS.iter().zip(&files).enumerate() {
            assert_eq!(*version, i as i64 + 1);
            assert!(file.starts_with(&format!("{version:04}_")), "{file}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://lic:s3cret@db:5432/lic"),
            "postgres://lic:***@db:5432/lic"
        );
        assert_eq!(redact("postgres://db/lic"), "postgres://db/lic");
        assert_eq!(redact("sqlite://portal.db"), "sqlite://portal.db");
    }
}
