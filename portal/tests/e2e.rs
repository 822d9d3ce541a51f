//! The full offline loop across both commands: `lic offline-activate` → `lic-portal
//! apply` → `lic install` → `lic consume` → `lic offline-deactivate` → `lic-portal
//! apply` → the seat is free, the consumption added, the receipt verifies.
//!
//! `lic-portal` runs as its real binary; `lic` runs through `lic_cli::run`, the very
//! function its binary's `main` calls (cargo builds another package's binaries only for
//! that package's own tests).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use clap::Parser as _;
use lic_core::format::{self, Receipt};
use lic_core::keys::Keyring;

struct Vendor {
    data: PathBuf,
}

impl Vendor {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lic-portal"))
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .env_remove("LIC_PORTAL_DATABASE")
            .env_remove("LIC_PORTAL_KEYS")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

fn lic(store: &Path, trust: &Path, args: &[&str]) -> ExitCode {
    let mut all = vec![
        "lic",
        "--store",
        store.to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    lic_cli::run(lic_cli::Cli::try_parse_from(all).unwrap())
}

#[test]
fn the_offline_loop_across_lic_and_lic_portal() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
    };
    let out = vendor.ok(&["init"]);
    assert!(out.contains("vendor key: "), "{out}");
    vendor.ok(&["product", "create", "photo-pro", "--name", "Photo Pro"]);
    let out = vendor.ok(&[
        "policy",
        "create",
        "--product",
        "photo-pro",
        "--name",
        "standard",
        "--type",
        "time-limited",
        "--seats",
        "2",
        "--validity-days",
        "365",
        "--feature",
        "export-pdf",
        "--feature",
        "render-minutes=500",
    ]);
    let policy = out.split_whitespace().nth(2).unwrap().to_string();
    let created = vendor.json(&["license", "create", "--policy", &policy]);
    let license_id = created["license"]["id"].as_str().unwrap().to_string();
    let key = created["key"].as_str().unwrap().to_string();
    let trust = dir.path().join("trusted-keys.pem");
    vendor.ok(&["key", "export", "--out", trust.to_str().unwrap()]);

    let store = dir.path().join("store");
    let request = dir.path().join("photo-pro.req");
    assert_eq!(
        lic(
            &store,
            &trust,
            &[
                "offline-activate",
                "--product",
                "photo-pro",
                "--key",
                &key,
                "--out",
                request.to_str().unwrap()
            ]
        ),
        ExitCode::SUCCESS
    );
    let out = vendor.ok(&["apply", request.to_str().unwrap()]);
    assert!(out.starts_with("ok "), "{out}");
    let license_file = dir.path().join("photo-pro.lic");
    assert!(
        license_file.exists(),
        "apply writes the license beside the request"
    );
    assert_eq!(
        lic(&store, &trust, &["install", license_file.to_str().unwrap()]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        vendor.json(&["license", "show", &license_id])["seats_used"],
        1
    );

    assert_eq!(
        lic(&store, &trust, &["consume", "render-minutes", "120"]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        lic(&store, &trust, &["check", "--feature", "render-minutes"]),
        ExitCode::SUCCESS
    );
    let deactivation = dir.path().join("photo-pro.deact");
    assert_eq!(
        lic(
            &store,
            &trust,
            &[
                "offline-deactivate",
                "--out",
                deactivation.to_str().unwrap()
            ]
        ),
        ExitCode::SUCCESS
    );
    let out = vendor.ok(&["apply", deactivation.to_str().unwrap()]);
    assert!(out.contains("receipt"), "{out}");
    // Applying it again changes nothing and gives the same receipt.
    let receipt_path = dir.path().join("photo-pro.receipt");
    let receipt_text = std::fs::read(&receipt_path).unwrap();
    let again = vendor.ok(&["apply", deactivation.to_str().unwrap()]);
    assert!(again.contains("applied before"), "{again}");
    assert_eq!(std::fs::read(&receipt_path).unwrap(), receipt_text);

    let info = vendor.json(&["license", "show", &license_id]);
    assert_eq!(info["seats_used"], 0, "the seat is free");
    assert_eq!(
        info["usage"]["render-minutes"], 120,
        "the consumption is added once"
    );
    let keys = Keyring::read(&trust).unwrap();
    let receipt = format::open::<Receipt>(&receipt_text, &keys).unwrap();
    assert_eq!(receipt.state, "deactivated");
    let deactivation_bytes = std::fs::read(&deactivation).unwrap();
    assert_eq!(
        receipt.file_hash,
        format::unarmor(&deactivation_bytes)
            .map(|(_, b)| format::file_hash(&b))
            .unwrap()
    );
    let audit = vendor.ok(&["audit"]);
    assert!(audit.contains("activation.deactivate"), "{audit}");
}

#[test]
fn apply_reports_each_file_and_a_summary_and_fails_if_any_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
    };
    vendor.ok(&["init"]);
    let good = lic_fixtures::dir().join("valid/usage-report.usage");
    let bad = lic_fixtures::dir().join("invalid/tampered-request.req");
    let out = vendor.run(&[
        "apply",
        "--out-dir",
        dir.path().to_str().unwrap(),
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("REFUSED") && stdout.contains("unknown-activation"),
        "{stdout}"
    );
    assert!(stdout.contains("bad-signature"), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("2 file(s): 0 applied, 2 refused"),
        "{stderr}"
    );
}
