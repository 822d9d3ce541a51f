//! The database: SQLite (embedded default, a file created and migrated on first start,
//! WAL, durable commits) or PostgreSQL (several portal instances behind a load
//! balancer), through one code path (`sqlx::Any`) and one set of portable migrations.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _, Transaction};

/// The migrations, in order: (version, name, SQL). The same SQL runs on both backends.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (
        2,
        "indexes",
        include_str!("../../migrations/0002_indexes.sql"),
    ),
    (
        3,
        "one-active",
        include_str!("../../migrations/0003_one_active.sql"),
    ),
    (
        4,
        "evidence",
        include_str!("../../migrations/0004_evidence.sql"),
    ),
    (
        5,
        "license-revision",
        include_str!("../../migrations/0005_license_revision.sql"),
    ),
    (
        6,
        "license-totals",
        include_str!("../../migrations/0006_license_totals.sql"),
    ),
    (7, "lists", include_str!("../../migrations/0007_lists.sql")),
    (
        8,
        "device-variables",
        include_str!("../../migrations/0008_device_variables.sql"),
    ),
    (
        9,
        "floating",
        include_str!("../../migrations/0009_floating.sql"),
    ),
    (10, "pools", include_str!("../../migrations/0010_pools.sql")),
    (
        11,
        "accounts",
        include_str!("../../migrations/0011_accounts.sql"),
    ),
    (
        12,
        "flag-limit",
        include_str!("../../migrations/0012_flag_limit.sql"),
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
    /// The URL, for PostgreSQL (the writer opens its own connection).
    postgres_url: Option<Url>,
}

/// A database URL, which may hold a password: shown redacted.
#[derive(Clone)]
struct Url(String);

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
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
        let sqlite_path = match backend {
            Backend::Sqlite => {
                if sqlite_in_memory(&url) {
                    // The pool and the group-commit writer are separate connections: each
                    // would see a database of its own, and the writer's writes would be
                    // lost to every reader.
                    return Err(sqlx::Error::Configuration(
                        format!(
                            "an in-memory SQLite database cannot hold a portal (its readers and \
                             its writer would each see a database of their own): use a file, \
                             sqlite://FILE (a temporary directory for a throwaway portal): {}",
                            redact(&url)
                        )
                        .into(),
                    ));
                }
                let (path, created_if_missing) = sqlite_file(&url);
                if created_if_missing {
                    // SQLite would create the file with the umask's permissions, and its
                    // -wal and -shm files with the database file's: make it private
                    // (0600) first.
                    lic_core::fsutil::create_empty(&path, lic_core::fsutil::SECRET_MODE)?;
                }
                Some(path)
            }
            Backend::Postgres => None,
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
        let db = Db {
            pool,
            backend,
            sqlite_path,
            postgres_url: (backend == Backend::Postgres).then(|| Url(url.clone())),
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

    /// The PostgreSQL URL (None for SQLite).
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_ref().map(|u| u.0.as_str())
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

/// Whether an SQLite URL names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:`, an empty file name, or `mode=memory`).
fn sqlite_in_memory(url: &str) -> bool {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (file, params) = rest.split_once('?').unwrap_or((rest, ""));
    file.is_empty() || file == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// The file of an SQLite URL, read as sqlx reads it (`sqlite://FILE?…` or `sqlite:FILE`,
/// percent-decoded), and whether SQLite may create it (`mode=rwc`, not in memory).
fn sqlite_file(url: &str) -> (std::path::PathBuf, bool) {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (file, params) = rest.split_once('?').unwrap_or((rest, ""));
    let params: Vec<&str> = params.split('&').collect();
    let on_disk = !file.is_empty() && file != ":memory:" && !params.contains(&"mode=memory");
    let path = String::from_utf8_lossy(&percent_decode(file)).into_owned();
    (path.into(), on_disk && params.contains(&"mode=rwc"))
}

/// A database URL without its passwords, for messages and logs: the password of the
/// userinfo (`postgres://user:PASSWORD@host/db`) and the value of every query parameter
/// whose name contains `password` in any case (`?password=…`, `&sslpassword=…`) become
/// `***`; everything else is kept as written.
///
/// The userinfo ends at the last `@` before the query (`?`) or fragment (`#`), so a
/// password may contain `@`, `:` and `/` as typed; the user name ends at the first `:`.
/// A `?` or `#` in a password must be percent-encoded (as the URL syntax requires
/// anyway), or what follows it is read as the query.
pub fn redact(url: &str) -> String {
    // The query (and fragment) start at the first `?` or `#`.
    let query_at = url.find(['?', '#']).unwrap_or(url.len());
    let (head, tail) = url.split_at(query_at);
    let mut out = String::with_capacity(url.len());
    let authority_at = head.find("://").map_or(0, |i| i + 3);
    match head[authority_at..].rfind('@') {
        Some(at) => {
            let userinfo = &head[authority_at..authority_at + at];
            out.push_str(&head[..authority_at]);
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&head[authority_at + at..]);
        }
        None => out.push_str(head),
    }
    let (query, fragment) = tail.split_at(tail.find('#').unwrap_or(tail.len()));
    if let Some(params) = query.strip_prefix('?') {
        out.push('?');
        for (i, param) in params.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match param.split_once('=') {
                Some((name, _value)) if is_password_name(name) => {
                    out.push_str(name);
                    out.push_str("=***");
                }
                _ => out.push_str(param),
            }
        }
    } else {
        out.push_str(query);
    }
    out.push_str(fragment);
    out
}

/// Whether a query parameter's name (percent-decoded, any case) names a password.
fn is_password_name(name: &str) -> bool {
    String::from_utf8_lossy(&percent_decode(name))
        .to_ascii_lowercase()
        .contains("password")
}

/// `%XX` sequences decoded (others kept as they are).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    decoded
}

/// Whether an error is a unique-constraint violation (e.g. the same file applied twice
/// at once: the loser of the race reads the winner's result).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::{Db, MIGRATIONS, redact, sqlite_in_memory};

    #[tokio::test]
    async fn an_in_memory_sqlite_database_is_refused_with_what_to_do() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
        ] {
            assert!(sqlite_in_memory(url), "{url}");
            let Err(e) = Db::connect(url).await else {
                panic!("{url} was accepted");
            };
            assert!(
                e.to_string().contains("use a file, sqlite://FILE"),
                "{url}: {e}"
            );
        }
        assert!(!sqlite_in_memory("sqlite:///srv/lic/portal.db?mode=rwc"));
    }

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

    #[test]
    fn postgresql_scheme_and_no_password() {
        assert_eq!(
            redact("postgresql://lic:s3cret@db/lic"),
            "postgresql://lic:***@db/lic"
        );
        // A user without a password, and no userinfo at all, are shown as they are.
        assert_eq!(redact("postgres://lic@db/lic"), "postgres://lic@db/lic");
        assert_eq!(
            redact("postgresql://db:5432/lic?sslmode=require"),
            "postgresql://db:5432/lic?sslmode=require"
        );
        assert_eq!(
            redact("postgres://lic:@db/lic"),
            "postgres://lic:***@db/lic"
        );
        assert_eq!(
            redact("sqlite://portal.db?mode=rwc"),
            "sqlite://portal.db?mode=rwc"
        );
    }

    #[test]
    fn a_password_with_at_colon_and_slash_is_redacted_whole() {
        // The userinfo ends at the last `@` before the host.
        assert_eq!(
            redact("postgres://user:p@ss@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(
            redact("postgres://user:a/b@c:d@host:5432/db?sslmode=require"),
            "postgres://user:***@host:5432/db?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://user:p@ss/w:rd@host/db"),
            "postgresql://user:***@host/db"
        );
    }

    #[test]
    fn password_query_parameters_are_redacted() {
        assert_eq!(
            redact("postgres://db/lic?user=lic&password=s3cret&sslmode=require"),
            "postgres://db/lic?user=lic&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgresql:///lic?host=/run/postgresql&PassWord=s3cret"),
            "postgresql:///lic?host=/run/postgresql&PassWord=***"
        );
        assert_eq!(
            redact("postgres://lic:one@db/lic?sslpassword=two&sslkey=/k.pem"),
            "postgres://lic:***@db/lic?sslpassword=***&sslkey=/k.pem"
        );
        // A percent-encoded name is a password parameter all the same.
        assert_eq!(
            redact("postgres://db/lic?pass%77ord=s3cret"),
            "postgres://db/lic?pass%77ord=***"
        );
        // A value with `@` in the query does not make the query a userinfo.
        assert_eq!(
            redact("postgres://db/lic?password=a@b&application_name=x"),
            "postgres://db/lic?password=***&application_name=x"
        );
        // A parameter without a value, and a fragment, are kept.
        assert_eq!(
            redact("postgres://db/lic?password&x=1#frag"),
            "postgres://db/lic?password&x=1#frag"
        );
    }
}
