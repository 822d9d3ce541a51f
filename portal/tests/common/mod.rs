//! Test support: a fresh database per test on every backend — a temporary SQLite file,
//! and a fresh schema in the local PostgreSQL (127.0.0.1:5432, database `test`). When
//! PostgreSQL is unreachable its runs are skipped loudly, unless LIC_REQUIRE_POSTGRES=1.

#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod commands;

use std::path::PathBuf;

use lic_core::format::{Feature, LicenseType, MatchRule};
use lic_portal::db::Db;
use lic_portal::ops::{NewLicense, Policy};
use lic_portal::{Actor, Portal};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database to test against; dropping it removes the file or schema.
pub struct TestDb {
    pub name: &'static str,
    pub url: String,
    pub dir: tempfile::TempDir,
    schema: Option<String>,
}

impl TestDb {
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Best effort: a leftover schema in the test database harms nothing.
            let _ = std::process::Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
                .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .output();
        }
    }
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The backends to run a scenario on.
pub async fn backends() -> Vec<TestDb> {
    let mut out = vec![{
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("portal.db").display());
        TestDb {
            name: "sqlite",
            url,
            dir,
            schema: None,
        }
    }];
    match create_pg_schema().await {
        Ok(schema) => out.push(TestDb {
            name: "postgres",
            url: format!("{PG_URL}?options=-c%20search_path%3D{schema}"),
            dir: tempfile::tempdir().unwrap(),
            schema: Some(schema),
        }),
        Err(e) => {
            assert!(
                std::env::var("LIC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LIC_REQUIRE_POSTGRES=1 but PostgreSQL at {PG_URL} is unreachable: {e}"
            );
            lic_fixtures::skip::loudly(
                "the PostgreSQL runs of the portal's tests",
                &format!("{PG_URL} is unreachable ({e})"),
                "LIC_REQUIRE_POSTGRES",
            );
        }
    }
    out
}

async fn create_pg_schema() -> Result<String, sqlx::Error> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(PG_URL).await?;
    let schema = format!("lic_test_{}", random_suffix());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(schema)
}

/// A portal on `db` with a vendor key, product `photo-pro`, and a policy.
pub async fn portal(db: &TestDb) -> Portal {
    let conn = Db::connect(&db.url).await.unwrap();
    Portal::init(&conn, &db.keys_dir()).await.unwrap();
    let portal = Portal::open(conn, db.keys_dir()).await.unwrap();
    portal
        .create_product("photo-pro", "Photo Pro", &Actor::cli())
        .await
        .unwrap();
    portal
}

pub fn policy(seats: i64) -> Policy {
    Policy {
        id: String::new(),
        product: "photo-pro".into(),
        name: format!("standard-{seats}"),
        license_type: LicenseType::TimeLimited,
        allow_offline: true,
        seats,
        validity_days: Some(365),
        features: [
            ("export-pdf".to_string(), Feature::default()),
            (
                "render-minutes".to_string(),
                Feature {
                    limit: Some(1000),
                    overage: false,
                    max_overage: None,
                    floating: None,
                },
            ),
        ]
        .into(),
        match_rule: MatchRule {
            required: vec!["machine-id".into()],
            max_changed: 2,
        },
        clock_tolerance_secs: 3600,
        max_offline_days: None,
        inactivity_secs: None,
        max_deactivations: None,
        deactivation_period_days: None,
        total_limits: Default::default(),
        refuse_over_total: false,
        created: 0,
        ..Policy::default()
    }
}

/// A license on a new policy with `seats` seats; returns (license id, key).
pub async fn license(portal: &Portal, policy_spec: Policy) -> (String, String) {
    let p = portal
        .create_policy(policy_spec, &Actor::cli())
        .await
        .unwrap();
    let created = portal
        .create_license(
            NewLicense {
                policy: p.id,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    (created.license.id, created.key.unwrap())
}

/// Every table but the audit log, as text: to show a refused upload changed nothing.
pub async fn snapshot(db: &Db) -> String {
    use sqlx::Row as _;
    let mut out = String::new();
    for (table, order) in [
        ("licenses", "id"),
        ("activations", "id"),
        ("usage_reported", "activation, feature"),
        ("usage_totals", "license, feature"),
        ("applied_files", "hash"),
        ("products", "code"),
        ("policies", "id"),
        ("vendor_keys", "kid"),
    ] {
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .fetch_all(db.pool())
            .await
            .unwrap();
        for r in rows {
            out.push_str(table);
            for i in 0..r.len() {
                let text: Option<String> = r.try_get(i).ok().flatten();
                let num: Option<i64> = r.try_get(i).ok().flatten();
                out.push_str(&format!("|{text:?}{num:?}"));
            }
            out.push('\n');
        }
    }
    out
}

/// Every row of every table (the audit log included), as sorted text per table: a
/// refused upload must change none of it.
pub async fn dump_all(db: &Db, sqlite: bool) -> std::collections::BTreeMap<String, Vec<String>> {
    use sqlx::Row as _;
    let tables_sql = if sqlite {
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    } else {
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1"
    };
    let tables: Vec<String> = sqlx::query(tables_sql)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    let mut out = std::collections::BTreeMap::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(db.pool())
            .await
            .unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        let text: Option<String> = r.try_get(i).ok().flatten();
                        let num: Option<i64> = r.try_get(i).ok().flatten();
                        let real: Option<f64> = r.try_get(i).ok().flatten();
                        let blob: Option<Vec<u8>> = r.try_get(i).ok().flatten();
                        format!("{text:?}{num:?}{real:?}{blob:?}")
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        out.insert(table, lines);
    }
    out
}

/// A device with a fixed fingerprint (`machine` as its machine id) and its store in `dir`.
pub fn device(
    dir: &std::path::Path,
    machine: &str,
    keys: lic_core::keys::Keyring,
) -> lic_core::client::Client {
    use lic_core::fingerprint::{RawComponents, StaticSource, component};
    let raw: RawComponents = [
        (component::MACHINE_ID, machine),
        (component::HOSTNAME, "host"),
        (component::CPU, "cpu; 4 logical"),
        (component::MEMORY, "16 GiB"),
    ]
    .into_iter()
    .collect();
    lic_core::client::Client::builder("photo-pro")
        .store(dir)
        .trust(keys)
        .fingerprint_source(StaticSource(raw))
        .open()
        .unwrap()
}

/// An armored activation request for license `key` from a new device in `dir`.
pub fn request(dir: &std::path::Path, machine: &str, key: &str) -> Vec<u8> {
    device(dir, machine, lic_core::keys::Keyring::new())
        .request_activation(lic_core::format::Credential::LicenseKey(key.into()))
        .unwrap()
        .armored()
        .into_bytes()
}

/// What `lic store reset` leaves (or a customer who writes a fresh state with their own
/// device key): the state in `dir` set aside, an empty one in its place, the key kept.
pub fn reset_store(dir: &std::path::Path) {
    let store = lic_core::store::Store::open(dir).unwrap();
    let lock = store.lock().unwrap();
    let key = store.device_key_locked(&lock).unwrap();
    store
        .quarantine(&lock, chrono::Utc::now().timestamp())
        .unwrap();
    store.start_over(&lock, &key).unwrap();
}

/// A store in a new directory with the device key of the store in `from` and a fresh
/// state: the device's store lost, its key kept.
pub fn store_with_key_of(from: &std::path::Path) -> tempfile::TempDir {
    let lost = tempfile::tempdir().unwrap();
    std::fs::copy(
        from.join(lic_core::store::KEY_FILE),
        lost.path().join(lic_core::store::KEY_FILE),
    )
    .unwrap();
    reset_store(lost.path());
    lost
}

/// A copy of the store in `from` (a backup, or a cloned machine's disk) in `to`.
pub fn copy_store(from: &std::path::Path, to: &std::path::Path) {
    for name in [lic_core::store::KEY_FILE, lic_core::store::STATE_FILE] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// The address a `lic-portal serve` child (standard output piped) prints on its first
/// line once it listens: `listening on http://ADDR`.
pub fn listening_addr(child: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string()
}

/// POST `body` over a plain HTTP/1.1 connection with `Accept: accept`; returns (status,
/// body).
pub fn post(addr: &str, path: &str, body: &[u8], accept: &str) -> (u16, String) {
    post_as(addr, path, ("text/plain", body), accept, None)
}

/// [`post`] of a body of the given content type, with `Authorization: Bearer TOKEN` when
/// a token is given.
pub fn post_as(
    addr: &str,
    path: &str,
    (content_type, body): (&str, &[u8]),
    accept: &str,
    token: Option<&str>,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nAccept: {accept}\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A fresh schema in the local PostgreSQL and a URL that uses it, or `None` (skipped
/// loudly; a failure under LIC_REQUIRE_POSTGRES=1) when it is unreachable.
pub async fn postgres() -> Option<TestDb> {
    backends().await.into_iter().find(|b| b.name == "postgres")
}
