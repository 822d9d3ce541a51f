//! Crash safety of the hosted portal: `lic-portal serve` is killed (SIGKILL) while
//! `lic-load` posts activation requests, and started again on the same address; the load
//! tool keeps going. Then, on SQLite and on PostgreSQL:
//! - every activation the client saw acknowledged is in the database, active;
//! - the license's seats used equals its active activations;
//! - retrying the requests that were not acknowledged gives each request one seat at
//!   most: in the end there are exactly as many active activations as requests, one per
//!   device, and seats used says so.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::commands::{cmd, init_with_product, json, serve};
use lic_portal::db::Db;

const REQUESTS: usize = 240;

fn lic_load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lic-load"))
}

/// Active activations of `license` and its seats used, read from the database.
async fn seats(db: &Db, license: &str) -> (i64, i64) {
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM activations WHERE license = $1 AND state = 'active'",
    )
    .bind(license)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let used: i64 = sqlx::query_scalar("SELECT seats_used FROM licenses WHERE id = $1")
        .bind(license)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (active, used)
}

/// Wait (bounded) until the portal has granted at least `n` activations of `license`.
async fn until_granted(db: &Db, license: &str, n: i64, load: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (active, _) = seats(db, license).await;
        if active >= n {
            return;
        }
        assert!(
            load.try_wait().unwrap().is_none(),
            "lic-load ended before the portal granted {n} activations"
        );
        assert!(
            Instant::now() < deadline,
            "the portal granted {active} activations in 120 s, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_portal_loses_no_acknowledged_activation_and_gives_no_seat_twice() {
    for test in common::backends().await {
        let data = test.dir.path().join("portal");
        let database = test.url.as_str();
        init_with_product(|| cmd(&data, database));
        let policy = json(
            cmd(&data, database),
            &[
                "policy",
                "create",
                "--product",
                "photo-pro",
                "--name",
                "crash",
                "--seats",
                &REQUESTS.to_string(),
            ],
        );
        let policy = policy["policy"]["id"].as_str().unwrap().to_string();
        let created = json(
            cmd(&data, database),
            &["license", "create", "--policy", &policy],
        );
        let key = created["key"].as_str().unwrap().to_string();
        let license = created["license"]["id"].as_str().unwrap().to_string();

        // The requests, written once, so that the same ones can be posted again.
        let requests = test.dir.path().join("requests");
        let out = lic_load()
            .args([
                "--key",
                &key,
                "--requests",
                &REQUESTS.to_string(),
                "--write-to",
            ])
            .arg(&requests)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");

        let (first, addr) = serve(&data, database, "127.0.0.1:0");
        let record = test.dir.path().join("record.jsonl");
        let mut load = lic_load()
            .args(["--addr", &addr, "--key", &key, "--connections", "4"])
            .args(["--requests", &REQUESTS.to_string(), "--patience", "60"])
            .args(["--format", "json", "--requests-from"])
            .arg(&requests)
            .arg("--record")
            .arg(&record)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let db = Db::connect(&test.url).await.unwrap();

        // Kill it once some are granted, start it again on the same address; twice.
        let mut server = first;
        for granted in [REQUESTS as i64 / 4, REQUESTS as i64 / 2] {
            until_granted(&db, &license, granted, &mut load).await;
            drop(server); // SIGKILL, and wait for it
            server = serve(&data, database, &addr).0;
        }
        let out = load.wait_with_output().unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["requests"], REQUESTS, "{}: {summary}", test.name);

        let records: Vec<serde_json::Value> = std::fs::read_to_string(&record)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), REQUESTS);
        let acknowledged: HashMap<usize, String> = records
            .iter()
            .filter(|r| r["outcome"] == "acknowledged")
            .map(|r| {
                (
                    r["i"].as_u64().unwrap() as usize,
                    r["activation"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // Nothing is refused: there is a seat for every request.
        assert!(
            records.iter().all(|r| r["outcome"] != "refused"),
            "{}: {records:?}",
            test.name
        );
        eprintln!(
            "{}: {} acknowledged, {} without an answer across two kills",
            test.name,
            acknowledged.len(),
            REQUESTS - acknowledged.len()
        );

        // Every acknowledged activation is there, active; the seat count is exact.
        for id in acknowledged.values() {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM activations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(db.pool())
                    .await
                    .unwrap();
            assert_eq!(state.as_deref(), Some("active"), "{}: {id}", test.name);
        }
        let (active, used) = seats(&db, &license).await;
        assert_eq!(
            active, used,
            "{}: seats used = active activations",
            test.name
        );
        assert!(active >= acknowledged.len() as i64);

        // Retry the rest: each gets its seat (a replay or a new grant), none a second one.
        let addr_now = addr.clone();
        for i in (0..REQUESTS).filter(|i| !acknowledged.contains_key(i)) {
            let body = std::fs::read(requests.join(format!("req-{i}.req"))).unwrap();
            let (status, answer) =
                common::post(&addr_now, "/api/v1/activate", &body, "application/json");
            assert_eq!(status, 200, "{}: retry of request {i}: {answer}", test.name);
        }
        // And the acknowledged ones once more: the same activation, nothing new.
        for (i, id) in acknowledged.iter().take(20) {
            let body = std::fs::read(requests.join(format!("req-{i}.req"))).unwrap();
            let (status, answer) =
                common::post(&addr_now, "/api/v1/activate", &body, "application/json");
            assert_eq!(status, 200, "{answer}");
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["activation"], id.as_str(), "{}", test.name);
        }
        let (active, used) = seats(&db, &license).await;
        assert_eq!(
            active, REQUESTS as i64,
            "{}: one seat per request",
            test.name
        );
        assert_eq!(used, REQUESTS as i64, "{}", test.name);
        let devices: BTreeSet<String> = sqlx::query_scalar(
            "SELECT device_kid FROM activations WHERE license = $1 AND state = 'active'",
        )
        .bind(&license)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
        assert_eq!(
            devices.len(),
            REQUESTS,
            "{}: one activation per device",
            test.name
        );
        drop(server);
    }
}
