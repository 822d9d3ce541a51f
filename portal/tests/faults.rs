//! Faults under the portal (issue 14): its SQLite database on a full disk (a small tmpfs),
//! and a data or key directory that is not there. Each is a clear error; nothing is
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
    let portal = Arc::new(portal(&db).await);
    let app =
        http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));
    let (_, key) = license(&portal, policy(2)).await;
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
    // The write-ahead log emptied, so the next write must grow a file.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(portal.db().pool())
        .await
        .unwrap();
    let filler = fill(db.dir.path());
    let before = dump_all(portal.db(), true).await;

    let (status, body) = post(&app, "/api/v1/activate", request.as_bytes()).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "storage-full", "{body}");
    let hint = body["error"]["hint"].as_str().unwrap();
    assert!(
        hint.contains("free space") && hint.contains("send the same file again"),
        "{hint}"
    );
    assert_eq!(integrity(portal.db()).await, "ok");
    assert!(
        dump_all(portal.db(), true).await == before,
        "the database changed"
    );

    // Space freed: the same process applies the same file.
    std::fs::remove_file(filler).unwrap();
    let (status, body) = post(&app, "/api/v1/activate", request.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    c.install(body["response"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(integrity(portal.db()).await, "ok");
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
