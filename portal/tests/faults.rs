//! Faults under the portal (issue 14): its SQLite database, or its PostgreSQL tablespace,
//! on a full disk (a small tmpfs), and a data or key directory that is not there. Each is a clear error; nothing is
//! corrupted or created by accident; a portal whose disk filled up applies the file, in
//! the same process, once space is freed.
//!
//! Mounting needs root on Linux; where it is not permitted the full-disk test skips
//! loudly, or fails with LIC_REQUIRE_FAULTS=1 (as CI sets it).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use common::{device, dump_all, license, policy, portal};
use lic_core::format::Credential;
use lic_fixtures::faults::{Tmpfs, fill};
use lic_portal::http::{self, AppState, RateLimiter};
use serde_json::Value;
use tower::ServiceExt as _;

async fn post(app: &axum::Router, path: &str, body: &[u8]) -> (u16, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn integrity(db: &lic_portal::db::Db) -> String {
    use sqlx::Row as _;
    sqlx::query("PRAGMA integrity_check")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get::<String, _>(0)
}

/// On a portal on `db` with a two-seat license: a device's activation request, sent once
/// the disk under `space` is full (507 `storage-full`, the database as it was), then again
/// once space is freed (applied by the same process: the license installs, one seat is
/// used). On SQLite, its integrity check passes after each. `before_fill` runs first.
async fn full_then_freed(db: &common::TestDb, space: &std::path::Path, before_fill: &str) {
    let sqlite = db.name == "sqlite";
    let portal = Arc::new(portal(db).await);
    let app =
        http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));
    let (license_id, key) = license(&portal, policy(2)).await;
    let store = tempfile::tempdir().unwrap();
    let c = device(
        store.path(),
        "machine-1",
        portal.trusted_keys().await.unwrap(),
    );
    let request = c
        .request_activation(Credential::LicenseKey(key))
        .unwrap()
        .armored();
    if !before_fill.is_empty() {
        sqlx::query(before_fill)
            .execute(portal.db().pool())
            .await
            .unwrap();
    }
    let filler = fill(space);
    let before = dump_all(portal.db(), sqlite).await;

    let (status, body) = post(&app, "/api/v1/activate", request.as_bytes()).await;
    assert_eq!(status, 507, "{}: {body}", db.name);
    assert_eq!(body["error"]["code"], "storage-full", "{body}");
    let hint = body["error"]["hint"].as_str().unwrap();
    assert!(
        hint.contains("free space") && hint.contains("send the same file again"),
        "{hint}"
    );
    if sqlite {
        assert_eq!(integrity(portal.db()).await, "ok");
    }
    assert!(
        dump_all(portal.db(), sqlite).await == before,
        "{}: the database changed",
        db.name
    );

    // Space freed: the same process applies the same file.
    std::fs::remove_file(filler).unwrap();
    let (status, body) = post(&app, "/api/v1/activate", request.as_bytes()).await;
    assert_eq!(status, 200, "{}: {body}", db.name);
    c.install(body["response"].as_str().unwrap().as_bytes())
        .unwrap();
    if sqlite {
        assert_eq!(integrity(portal.db()).await, "ok");
    }
    assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_portal_whose_sqlite_disk_is_full_is_507_changes_nothing_and_applies_once_space_is_freed()
 {
    let db = common::backends().await.into_iter().next().unwrap();
    assert_eq!(db.name, "sqlite");
    // The database and the keys on a small file system of their own (unmounted before
    // the database's directory is removed: dropped first).
    let Some(_mount) = Tmpfs::mount(db.dir.path(), "16M") else {
        return;
    };
    // The write-ahead log emptied first, so that the next write must grow a file.
    full_then_freed(&db, db.dir.path(), "PRAGMA wal_checkpoint(TRUNCATE)").await;
}

/// A PostgreSQL tablespace on a tmpfs of its own. Dropped with the test's schema (which
/// holds its tables), then a checkpoint, so that the server neither syncs nor replays
/// anything in it any more; only then is the tmpfs unmounted and its directory removed.
/// Should the drop fail, both are left in place (and said so): a tablespace directory
/// taken from under a running PostgreSQL stops it at its next checkpoint, and keeps it
/// from starting again.
struct Tablespace {
    name: String,
    schema: String,
    mount: Option<Tmpfs>,
    dir: Option<tempfile::TempDir>,
}

impl Tablespace {
    /// A tablespace named after `schema`, on a tmpfs of `size`; None (skipped loudly, or a
    /// failure with LIC_REQUIRE_FAULTS=1) where this machine cannot mount one.
    fn create(schema: &str, size: &str) -> Option<Tablespace> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("space");
        let mount = Tmpfs::mount(&path, size)?;
        // The server's user owns the directory, and may reach it.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let name = format!("{schema}_space");
        psql(&[&format!(
            "CREATE TABLESPACE {name} LOCATION '{}'",
            path.display()
        )])
        .unwrap();
        Some(Tablespace {
            name,
            schema: schema.to_string(),
            mount: Some(mount),
            dir: Some(dir),
        })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.as_ref().unwrap().path().join("space")
    }
}

impl Drop for Tablespace {
    fn drop(&mut self) {
        let dropped = psql(&[
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
            &format!("DROP TABLESPACE IF EXISTS {}", self.name),
            "CHECKPOINT",
        ]);
        if let Err(why) = dropped {
            let path = self.path();
            eprintln!(
                "WARNING: tablespace {} could not be dropped ({why}); its tmpfs stays mounted \
                 on {}. Drop it by hand (DROP SCHEMA {} CASCADE; DROP TABLESPACE {}; \
                 CHECKPOINT), then umount it",
                self.name,
                path.display(),
                self.schema,
                self.name
            );
            std::mem::forget(self.mount.take());
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}

/// Run each SQL command (in its own transaction: DROP TABLESPACE cannot run in one) on
/// the test database, stopping at the first error.
fn psql(commands: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("psql");
    cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q"])
        .args(["-v", "ON_ERROR_STOP=1"]);
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The same on PostgreSQL: the portal's tables in a tablespace on a small tmpfs (the
/// write-ahead log stays on the server's own disk). A full disk there is SQLSTATE 53100:
/// the upload is answered 507, the transaction is rolled back whole, and the same
/// portal, without a restart, applies the file once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_portal_whose_postgres_tablespace_is_full_is_507_changes_nothing_and_applies_once_space_is_freed()
 {
    let Some(mut db) = common::postgres().await else {
        return;
    };
    let schema = db.url.rsplit("search_path%3D").next().unwrap().to_string();
    let Some(tablespace) = Tablespace::create(&schema, "4M") else {
        return;
    };
    db.url = format!("{}%20-c%20default_tablespace%3D{}", db.url, tablespace.name);
    full_then_freed(&db, &tablespace.path(), "").await;
}

fn lic_portal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .args(args)
        .env_remove("LIC_PORTAL_DATA")
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .output()
        .unwrap()
}

#[test]
fn a_portal_started_on_a_data_directory_that_is_not_there_says_to_run_init_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lic-portal-data");
    let data_arg = data.to_str().unwrap();
    for args in [
        &["--data", data_arg, "serve", "--listen", "127.0.0.1:0"][..],
        &["--data", data_arg, "product", "list"][..],
    ] {
        let out = lic_portal(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no portal data directory") && err.contains("init"),
            "{args:?}: {err}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

#[test]
fn a_portal_started_with_a_key_directory_that_is_not_there_says_to_run_init_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let init = lic_portal(&["--data", data_arg, "init"]);
    assert_eq!(init.status.code(), Some(0), "{init:?}");
    let keys = dir.path().join("no-keys");
    let keys_arg = keys.to_str().unwrap();
    let names = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = names();
    let out = lic_portal(&[
        "--data",
        data_arg,
        "--keys",
        keys_arg,
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lic-portal init"), "{err}");
    assert!(err.contains(keys_arg), "names the directory: {err}");
    assert!(!keys.exists(), "created {}", keys.display());
    // Nothing new in the data directory (SQLite removes its -wal and -shm files when the
    // last connection closes).
    assert!(names().is_subset(&before), "{:?} after {before:?}", names());
}
