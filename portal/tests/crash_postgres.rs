//! PostgreSQL stopped and started again under the hosted portal, on a private cluster
//! made for the test (initdb in a temporary directory, its own port: the shared server on
//! 5432 that other tests use is never touched):
//! - while the database is down, an upload is answered 503 `database-unavailable` with
//!   `Retry-After`, in words that say to send it again;
//! - when it is back the portal recovers by itself (no restart), and loses nothing it
//!   acknowledged;
//! - requests that failed meanwhile, sent again, get one seat each, never two.
//!
//! Needs root (initdb runs as the `postgres` user through `runuser`) and the PostgreSQL
//! server binaries; without them the test skips loudly, or fails with
//! LIC_REQUIRE_POSTGRES=1.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::commands::{Serve, portal};
use lic_portal::db::Db;

const REQUESTS: usize = 150;

/// A PostgreSQL cluster of the test's own, stopped at once when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    /// A new cluster, started; `None` (after saying why) where one cannot be made.
    fn new() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .find(|b| b.join("initdb").exists())
            });
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let why = match (&bin, is_root) {
            (None, _) => Some("no PostgreSQL server binaries in /usr/lib/postgresql"),
            (_, false) => Some("not root: initdb must run as the postgres user"),
            _ => None,
        };
        if let Some(why) = why {
            assert!(
                std::env::var("LIC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "LIC_REQUIRE_POSTGRES=1 but {why}"
            );
            lic_fixtures::skip::loudly("the PostgreSQL restart test", why, "LIC_REQUIRE_POSTGRES");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            bin: bin.unwrap(),
            dir,
            port,
        };
        let out = cluster
            .as_postgres("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(cluster.data())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        cluster.start();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .as_postgres("pg_ctl")
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-D")
            .arg(self.data())
            .arg("start")
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Stop it as an operator restarting it does (`fast`: sessions are cut off).
    fn stop(&self, mode: &str) {
        let out = self
            .as_postgres("pg_ctl")
            .args(["-w", "-t", "60", "-m", mode, "-D"])
            .arg(self.data())
            .arg("stop")
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

fn json(data: &Path, url: &str, args: &[&str]) -> serde_json::Value {
    let out = portal(data)
        .args(["--database", url, "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn request(dir: &Path, i: usize) -> Vec<u8> {
    std::fs::read(dir.join(format!("req-{i}.req"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let url = cluster.url();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("portal");
    let out = portal(&data)
        .args(["--database", &url, "init"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    json(
        &data,
        &url,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    let policy = json(
        &data,
        &url,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "restart",
            "--seats",
            &REQUESTS.to_string(),
        ],
    );
    let policy = policy["policy"]["id"].as_str().unwrap().to_string();
    let created = json(&data, &url, &["license", "create", "--policy", &policy]);
    let key = created["key"].as_str().unwrap().to_string();
    let license = created["license"]["id"].as_str().unwrap().to_string();
    let requests = work.path().join("requests");
    let out = Command::new(env!("CARGO_BIN_EXE_lic-load"))
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

    let mut child = portal(&data)
        .args(["--database", &url, "serve", "--listen", "127.0.0.1:0"])
        .args(["--uploads-per-minute", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    let _serve = Serve(child);
    let post = |i: usize| {
        common::post(
            &addr,
            "/api/v1/activate",
            &request(&requests, i),
            "application/json",
        )
    };

    let mut acknowledged: HashMap<usize, String> = HashMap::new();
    for i in 0..20 {
        let (status, answer) = post(i);
        assert_eq!(status, 200, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        acknowledged.insert(i, answer["activation"].as_str().unwrap().to_string());
    }

    // Down: 503, in words.
    cluster.stop("fast");
    let (status, answer) = post(20);
    assert_eq!(status, 503, "{answer}");
    let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(error["error"]["code"], "database-unavailable", "{answer}");
    assert!(
        error["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("send the same request again"),
        "{answer}"
    );

    // Back: the same portal process answers again, by itself (bounded wait).
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = post(20);
        if status == 200 {
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            acknowledged.insert(20, answer["activation"].as_str().unwrap().to_string());
            break;
        }
        assert_eq!(status, 503, "while reconnecting: {answer}");
        assert!(
            Instant::now() < deadline,
            "no recovery within 60 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Under load: stopped once some more are granted; the load tool keeps going.
    let record = work.path().join("record.jsonl");
    let mut load = Command::new(env!("CARGO_BIN_EXE_lic-load"))
        .args(["--addr", &addr, "--key", &key, "--connections", "4"])
        .args(["--requests", &REQUESTS.to_string(), "--patience", "30"])
        .arg("--requests-from")
        .arg(&requests)
        .arg("--record")
        .arg(&record)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = Db::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM activations WHERE license = $1 AND state = 'active'",
        )
        .bind(&license)
        .fetch_one(db.pool())
        .await
        .unwrap();
        if active >= 60 || load.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "only {active} granted in 120 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(db);
    cluster.stop("fast");
    load.wait().unwrap();
    cluster.start();

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), REQUESTS);
    for r in &records {
        match r["outcome"].as_str().unwrap() {
            "acknowledged" => {
                let i = r["i"].as_u64().unwrap() as usize;
                let id = r["activation"].as_str().unwrap().to_string();
                // A request acknowledged before is acknowledged with the same activation.
                if let Some(before) = acknowledged.insert(i, id.clone()) {
                    assert_eq!(before, id, "request {i}");
                }
            }
            // Failed while the database was down: a 503 that says so, or no answer.
            "failed" => assert!(
                r["error"] == "database-unavailable" || r["status"].is_null(),
                "{r}"
            ),
            other => panic!("request {}: {other}: {r}", r["i"]),
        }
    }

    // Wait for the portal to reach its database again, then check and retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut retried = 0;
    for i in 0..REQUESTS {
        loop {
            let (status, answer) = post(i);
            if status == 200 {
                let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
                let id = answer["activation"].as_str().unwrap().to_string();
                match acknowledged.get(&i) {
                    Some(before) => assert_eq!(before, &id, "request {i} answered anew"),
                    None => retried += 1,
                }
                break;
            }
            assert_eq!(status, 503, "request {i}: {answer}");
            assert!(Instant::now() < deadline, "no recovery within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "{} acknowledged across the restarts, {retried} granted on retry",
        acknowledged.len()
    );
    let db = Db::connect(&url).await.unwrap();
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM activations WHERE license = $1 AND state = 'active'",
    )
    .bind(&license)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let used: i64 = sqlx::query_scalar("SELECT seats_used FROM licenses WHERE id = $1")
        .bind(&license)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(active, REQUESTS as i64, "one seat per request");
    assert_eq!(used, REQUESTS as i64);
}
