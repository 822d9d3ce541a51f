//! Floating licenses across both real binaries: `lic-portal serve` on its embedded SQLite
//! store, and `lic lease`, `lic checkout` and `lic checkin` on two machines' stores. One
//! seat: while one machine holds it (by lease or by checkout) the other is refused; a
//! lease released at exit, and a check-in applied (twice, the second changing nothing),
//! give it to the other.
//!
//! The `lic` binary is built as in `e2e.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use common::commands::{Serve, lic, lic_binary, portal, vendor};

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[test]
fn one_floating_seat_between_two_machines_by_lease_and_by_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let out = portal(&data).arg("init").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    vendor(
        &data,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    let policy = vendor(
        &data,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "floating-1",
            "--seats",
            "1",
            "--floating",
            "--lease-secs",
            "600",
            "--max-checkout-hours",
            "48",
        ],
    );
    let policy_id = policy["policy"]["id"].as_str().unwrap().to_string();
    let created = vendor(&data, &["license", "create", "--policy", &policy_id]);
    let key = created["key"].as_str().unwrap().to_string();
    let trust = dir.path().join("trusted-keys.pem");
    let out = portal(&data)
        .args(["key", "export", "--out", trust.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut child = portal(&data)
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
    let _serve = Serve(child);
    let url = format!("http://{addr}");

    let a = dir.path().join("machine-a");
    let b = dir.path().join("machine-b");
    let lease = |store: &Path, command: &[&str]| {
        let mut cmd = lic(store, &trust);
        cmd.args([
            "lease",
            "--server",
            &url,
            "--product",
            "photo-pro",
            "--key",
            &key,
            "--",
        ])
        .args(command);
        run(&mut cmd)
    };
    let lic_path = lic_binary().to_str().unwrap();
    let trust_path = trust.to_str().unwrap();
    let b_path = b.to_str().unwrap();

    // A holds the seat while its command runs; the command sees the lease (`lic check`
    // in the store lic lease names), and B, asking meanwhile, is refused.
    let check_inside = lease(&a, &[lic_path, "--trust", trust_path, "check"]);
    assert!(check_inside.status.success(), "{check_inside:?}");
    let nested = lease(
        &a,
        &[
            lic_path,
            "--store",
            b_path,
            "--trust",
            trust_path,
            "lease",
            "--server",
            &url,
            "--product",
            "photo-pro",
            "--key",
            &key,
            "--",
            "true",
        ],
    );
    assert!(!nested.status.success(), "{nested:?}");
    let said = String::from_utf8_lossy(&nested.stderr);
    assert!(said.contains("no-seat"), "{said}");

    // A's seat was released when its command exited: B gets it now.
    let b_alone = lease(&b, &["true"]);
    assert!(b_alone.status.success(), "{b_alone:?}");
    // The command's own exit status passes through.
    let failing = lease(&b, &["false"]);
    assert_eq!(failing.status.code(), Some(1), "{failing:?}");

    // A checks the seat out: B is refused until A checks it in.
    let out = run(lic(&a, &trust).args([
        "--format",
        "json",
        "checkout",
        "--server",
        &url,
        "--product",
        "photo-pro",
        "--hours",
        "24",
    ]));
    assert!(out.status.success(), "{out:?}");
    let refused = lease(&b, &["true"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no-seat"));

    // Offline, the checkout works: no server needed for `lic check`.
    let check = run(lic(&a, &trust).args(["check", "--product", "photo-pro"]));
    assert!(check.status.success(), "{check:?}");

    // The admin cannot deactivate the checked-out seat before its OED.
    let seats = vendor(
        &data,
        &[
            "activation",
            "list",
            "--license",
            created["license"]["id"].as_str().unwrap(),
        ],
    );
    let held: Vec<&serde_json::Value> = seats["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["checked_out"] == true)
        .collect();
    assert_eq!(held.len(), 1, "{seats}");
    let id = held[0]["id"].as_str().unwrap();
    let out = portal(&data)
        .args(["activation", "deactivate", id, "--reason", "test"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checked out"),
        "{out:?}"
    );

    // A checks in by file; the vendor applies it twice; the second changes nothing.
    let file = dir.path().join("a.checkin");
    let out = run(lic(&a, &trust).args([
        "checkin",
        "--product",
        "photo-pro",
        "--out",
        file.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{out:?}");
    let first = vendor(&data, &["apply", file.to_str().unwrap()]);
    let again = vendor(&data, &["apply", file.to_str().unwrap()]);
    assert_eq!(first["items"][0]["status"], "ok", "{first}");
    assert_eq!(first["items"][0]["kind"], "check-in", "{first}");
    assert_eq!(first["items"][0]["replay"], false, "{first}");
    assert_eq!(again["items"][0]["status"], "ok", "{again}");
    assert_eq!(again["items"][0]["replay"], true, "{again}");
    assert_eq!(
        again["items"][0]["file_hash"], first["items"][0]["file_hash"],
        "{again}"
    );
    // A's checkout license is gone from its store.
    let check = run(lic(&a, &trust).args(["check", "--product", "photo-pro"]));
    assert!(!check.status.success(), "{check:?}");

    // The seat is free again: B takes it.
    let b_after = lease(&b, &["true"]);
    assert!(b_after.status.success(), "{b_after:?}");
}
