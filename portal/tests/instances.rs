//! Several portal instances on one PostgreSQL database (the scale-out set-up): two real
//! `lic-portal serve` processes share the seats of a license exactly, and a revocation
//! made through one is in force on the other at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use lic_core::format::{self, ActivationRequest, Bytes32, Credential, JournalHead, Nonce};
use lic_core::keys::SecretKey;
use serde_json::Value;

/// A running `lic-portal serve`, stopped on drop.
struct Instance {
    child: Child,
    addr: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn portal(url: &str, data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-portal"));
    cmd.arg("--data")
        .arg(data)
        .args(["--database", url])
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS");
    cmd
}

fn run(url: &str, data: &Path, args: &[&str]) -> Value {
    let out = portal(url, data)
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serve(url: &str, data: &Path) -> Instance {
    let mut child = portal(url, data)
        // Every client here is 127.0.0.1: no per-client upload limit.
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--uploads-per-minute",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    Instance { child, addr }
}

/// A license of `seats` seats on a new policy; returns (license id, key).
fn license(url: &str, data: &Path, seats: u32) -> (String, String) {
    let policy = run(
        url,
        data,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            &format!("seats-{seats}"),
            "--seats",
            &seats.to_string(),
        ],
    );
    let created = run(
        url,
        data,
        &[
            "license",
            "create",
            "--policy",
            policy["policy"]["id"].as_str().unwrap(),
        ],
    );
    (
        created["license"]["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    )
}

/// An activation request for `key` from a new device.
fn request(key: &str) -> Vec<u8> {
    let device = SecretKey::generate();
    let r = ActivationRequest {
        pool_seats: None,
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(key.into()),
        fingerprint: [(
            "machine-id".to_string(),
            Bytes32(device.public().to_bytes()),
        )]
        .into(),
        nonce: Nonce([7; 16]),
        created: chrono::Utc::now(),
        client: "instances-test".into(),
        journal: JournalHead::first(),
        variables: Default::default(),
    };
    format::sign(&r, &device).unwrap().into_bytes()
}

fn activate(addr: &str, body: &[u8]) -> (u16, Value) {
    let (status, text) = common::post(addr, "/api/v1/activate", body, "application/json");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn seats_used(url: &str, data: &Path, license: &str) -> i64 {
    run(url, data, &["license", "show", license])["license"]["seats_used"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_share_the_seats_exactly_and_see_a_revocation_at_once() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let (url, data) = (db.url.clone(), db.dir.path().to_path_buf());
    tokio::task::spawn_blocking(move || scenario(&url, &data))
        .await
        .unwrap();
}

fn scenario(url: &str, data: &Path) {
    run(url, data, &["init"]);
    run(
        url,
        data,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    let (five, five_key) = license(url, data, 5);
    let instances = [serve(url, data), serve(url, data)];

    // 32 clients × 20 requests, each from a new device, every other one to the other
    // instance: exactly 5 seats are taken, every other request is told there is none.
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..32)
            .map(|c| {
                let (instances, key) = (&instances, &five_key);
                s.spawn(move || {
                    (0..20)
                        .map(|i| activate(&instances[(c + i) % 2].addr, &request(key)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let taken = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(taken, 5, "seats taken across both instances");
    for (status, doc) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(doc["error"]["code"], "no-seat-left", "{status}: {doc}");
    }
    assert_eq!(seats_used(url, data, &five), 5);

    // A revocation made through one instance is in force on the other at once: for a
    // new device and for a device that holds a seat already.
    let (spare, spare_key) = license(url, data, 10);
    let holder = request(&spare_key);
    let (status, doc) = activate(&instances[1].addr, &holder);
    assert_eq!(status, 200, "{doc}");
    let token = run(
        url,
        data,
        &["token", "create", "--name", "ops", "--role", "admin"],
    )["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = common::post_as(
        &instances[0].addr,
        &format!("/api/v1/licenses/{spare}/revoke"),
        ("application/json", br#"{"reason": "chargeback"}"#),
        "application/json",
        Some(&token),
    );
    assert_eq!(status, 200, "{body}");
    let (status, doc) = activate(&instances[1].addr, &request(&spare_key));
    assert_eq!(
        (status, &doc["error"]["code"]),
        (403, &Value::from("license-revoked")),
        "{doc}"
    );
    // The same request again is answered as before (a replay is not a new seat)...
    let (status, _) = activate(&instances[1].addr, &holder);
    assert_eq!(status, 200);
    assert_eq!(seats_used(url, data, &spare), 1);
}
