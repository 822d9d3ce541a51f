//! What a new user and a script trip over in the first hour, each fixed at its cause:
//! JSON from every command, a way out of a mistyped product, giving a seat back without
//! the vendor's trust file, errors that say how to configure trust, `lic check PRODUCT`.

#![allow(clippy::unwrap_used)]

mod common;

use clap::CommandFactory as _;
use common::{Env, error_code, stderr, stdout};
use lic_fixtures::stand_in::StandIn;
use serde_json::Value;

fn stand_in() -> StandIn {
    StandIn::new(chrono::Utc::now())
}

/// The JSON document a command printed: on standard output when it succeeded, on
/// standard error when it failed.
fn json_of(out: &std::process::Output) -> Value {
    let text = if out.status.success() {
        stdout(out)
    } else {
        stderr(out)
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out:?}"))
}

/// Every subcommand path of `lic` (`store info`, `status`, …).
fn all_commands() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{prefix}{}", sub.get_name());
            if sub.has_subcommands() {
                walk(sub, &format!("{path} "), out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&lic_cli::Cli::command(), "", &mut out);
    out
}

#[test]
fn every_command_answers_in_versioned_json() {
    let env = Env::new();
    let portal = stand_in();
    let license = env.path("photo-pro.lic");
    let unreachable = "http://127.0.0.1:9";
    // (command, arguments after `--format json`, keys its document must have). Order
    // matters: they walk one store through its life.
    let cases: Vec<(&str, Vec<String>, &[&str])> = vec![
        (
            "offline-activate",
            vec![
                "offline-activate".into(),
                "--product".into(),
                "photo-pro".into(),
                "--key".into(),
                "PHPRO-7Q2M".into(),
            ],
            &["product", "request", "file_hash"],
        ),
        (
            "install",
            vec!["install".into(), license.display().to_string()],
            &["installed"],
        ),
        (
            "var set",
            vec!["var".into(), "set".into(), "site".into(), "Lab 2".into()],
            &["product", "name", "value"],
        ),
        (
            "var list",
            vec!["var".into(), "list".into()],
            &["product", "variables"],
        ),
        (
            "var unset",
            vec!["var".into(), "unset".into(), "site".into()],
            &["product", "name", "removed"],
        ),
        (
            "status",
            vec!["status".into()],
            &["product", "valid", "features"],
        ),
        (
            "check",
            vec!["check".into(), "photo-pro".into()],
            &["product", "ok"],
        ),
        (
            "consume",
            vec!["consume".into(), "render-minutes".into(), "3".into()],
            &["feature", "total", "overage"],
        ),
        (
            "usage-report",
            vec!["usage-report".into(), "--out".into(), "u.usage".into()],
            &["product", "usage_report", "file_hash"],
        ),
        (
            "fingerprint",
            vec!["fingerprint".into(), "--explain".into()],
            &["product", "components", "match"],
        ),
        (
            "inspect",
            vec!["inspect".into(), license.display().to_string()],
            &["kind", "signer", "payload"],
        ),
        (
            "store info",
            vec!["store".into(), "info".into()],
            &["store", "device_kid", "installed", "pending"],
        ),
        // An intact store is not reset: the refusal is JSON too.
        (
            "store reset",
            vec!["store".into(), "reset".into()],
            &["error"],
        ),
        (
            "activate",
            vec![
                "activate".into(),
                "--server".into(),
                unreachable.into(),
                "--product".into(),
                "photo-pro".into(),
                "--key".into(),
                "PHPRO-7Q2M".into(),
            ],
            &["error"],
        ),
        (
            "store forget",
            vec!["store".into(), "forget".into(), "photo-pro".into()],
            &["error"],
        ),
        // The floating commands' documents are checked in full in floating.rs, against
        // a stand-in server; here, their refusals are JSON too.
        (
            "lease",
            vec![
                "lease".into(),
                "--server".into(),
                unreachable.into(),
                "--key".into(),
                "PHPRO-7Q2M".into(),
                "--".into(),
                "true".into(),
            ],
            &["error"],
        ),
        (
            "checkout",
            vec![
                "checkout".into(),
                "--server".into(),
                unreachable.into(),
                "--hours".into(),
                "8".into(),
            ],
            &["error"],
        ),
        (
            "checkin",
            vec!["checkin".into(), "--out".into(), "c.checkin".into()],
            &["error"],
        ),
        (
            "offline-deactivate",
            vec![
                "offline-deactivate".into(),
                "--out".into(),
                "d.deact".into(),
            ],
            &["product", "deactivation", "file_hash"],
        ),
        (
            "deactivate",
            vec!["deactivate".into(), "--server".into(), unreachable.into()],
            &["error"],
        ),
    ];
    // `completions` prints a shell script, not a result (docs/json-output.md).
    let exempt = ["completions"];
    let covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for command in all_commands() {
        assert!(
            covered.contains(&command.as_str()) || exempt.contains(&command.as_str()),
            "`lic {command}` has no JSON case here: give it one (and document its shape in \
             docs/json-output.md)"
        );
    }
    for (name, args, keys) in &cases {
        if *name == "install" {
            let request = std::fs::read(env.path("photo-pro.req")).unwrap();
            std::fs::write(&license, portal.license_for(&request).unwrap().armored()).unwrap();
        }
        let mut all = vec!["--format", "json"];
        all.extend(args.iter().map(String::as_str));
        let out = env.lic(&all);
        let doc = json_of(&out);
        assert_eq!(doc["format"], 1, "lic {name}: {doc}");
        for key in *keys {
            assert!(doc.get(key).is_some(), "lic {name}: no '{key}' in {doc}");
        }
        if let Some(error) = doc.get("error") {
            for key in ["code", "message", "hint", "exit"] {
                assert!(error.get(key).is_some(), "lic {name}: {doc}");
            }
            assert_eq!(
                error["exit"].as_u64(),
                out.status.code().map(|c| c as u64),
                "lic {name}"
            );
        }
    }
}

#[test]
fn a_mistyped_product_is_forgotten_and_the_ambiguity_says_how() {
    let env = Env::new();
    let portal = stand_in();
    env.activate(&portal);
    env.ok(&[
        "offline-activate",
        "--product",
        "photo-pr0",
        "--key",
        "PHPRO-7Q2M",
        "--out",
        "typo.req",
    ]);
    let out = env.lic(&["status"]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("product-ambiguous"),
        "{out:?}"
    );
    let err = stderr(&out);
    assert!(err.contains("photo-pro (installed)"), "{err}");
    assert!(
        err.contains("photo-pr0 (activation request pending)"),
        "{err}"
    );
    assert!(err.contains("lic store forget photo-pr0"), "{err}");
    let before = env.state();
    let forgot = env.ok(&["store", "forget", "photo-pr0"]);
    assert!(
        forgot.contains("forgot the pending activation request"),
        "{forgot}"
    );
    assert_ne!(env.state(), before);
    // Back to one product: the bare command works again.
    assert!(env.ok(&["status"]).starts_with("photo-pro: licensed"));
    // Forgetting what is not there is an error that changes nothing.
    let state = env.state();
    let out = env.lic(&["store", "forget", "photo-pr0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    assert_eq!(env.state(), state);
}

#[test]
fn forgetting_an_installed_license_needs_confirmation_and_it_cannot_come_back() {
    let env = Env::new();
    let portal = stand_in();
    let license = env.activate(&portal);
    env.ok(&["consume", "render-minutes", "5"]);
    let state = env.state();
    let out = env.lic(&["store", "forget", "photo-pro"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("confirm"));
    assert!(stderr(&out).contains("offline-deactivate"), "{out:?}");
    assert_eq!(env.state(), state, "unconfirmed: nothing changed");
    let forgot = env.ok(&["store", "forget", "photo-pro", "--yes"]);
    assert!(forgot.contains("seat stays taken"), "{forgot}");
    // Installing the same license again would start its counters over: refused.
    let out = env.lic(&["install", license.to_str().unwrap()]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("already-deactivated"),
        "{out:?}"
    );
    // And there is no deactivation file to hand out for it.
    let out = env.lic(&["offline-deactivate", "--out", "x.deact"]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("not-activated"),
        "{out:?}"
    );
    assert!(!env.path("x.deact").exists());
}

#[test]
fn a_machine_without_the_trust_file_still_reports_and_gives_its_seat_back() {
    let env = Env::new();
    let portal = stand_in();
    env.activate(&portal);
    env.ok(&["consume", "render-minutes", "7"]);
    // `bare`: a lic installed without a trusted-keys.pem beside it.
    let out = env
        .bare(&["usage-report", "--out", "u.usage"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = env
        .bare(&["offline-deactivate", "--out", "d.deact"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The vendor can read both: they are signed by the device, with its counters.
    let inspected = env.ok(&["--format", "json", "inspect", "d.deact"]);
    let doc: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(doc["payload"]["counters"]["render-minutes"], 7, "{doc}");
}

#[test]
fn an_untrusted_file_says_where_lic_looks_for_trusted_keys() {
    let env = Env::new();
    let portal = stand_in();
    let license = env.activate(&portal);
    let out = env
        .bare(&["inspect", license.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(error_code(&out).as_deref(), Some("unknown-key"), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("no vendor key is trusted"), "{err}");
    assert!(err.contains("trusted-keys.pem"), "{err}");
    assert!(err.contains("--trust FILE"), "{err}");
    // With a trust file that lacks the key, the hint names that file.
    let other = env.path("other.pem");
    std::fs::write(
        &other,
        lic_core::keys::SecretKey::generate()
            .public()
            .to_pem()
            .as_bytes(),
    )
    .unwrap();
    let out = env
        .bare(&[
            "--trust",
            other.to_str().unwrap(),
            "inspect",
            license.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(error_code(&out).as_deref(), Some("unknown-key"), "{out:?}");
    assert!(stderr(&out).contains(other.to_str().unwrap()), "{out:?}");
}

#[test]
fn check_takes_the_product_as_an_argument_too() {
    let env = Env::new();
    let portal = stand_in();
    env.activate(&portal);
    assert_eq!(
        env.ok(&["check", "photo-pro"]),
        "ok: 'photo-pro' is licensed\n"
    );
    let out = env.lic(&["--product", "other", "check", "photo-pro"]);
    assert_eq!(error_code(&out).as_deref(), Some("usage"), "{out:?}");
    let out = env.lic(&["check", "other"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
}

#[test]
fn a_missing_file_says_to_check_its_name_and_directory() {
    let env = Env::new();
    let out = env.lic(&["install", "no-such.lic"]);
    assert_eq!(error_code(&out).as_deref(), Some("io"), "{out:?}");
    assert!(
        stderr(&out).contains("check the file name and the directory you run lic in"),
        "{out:?}"
    );
}

#[test]
fn an_unreachable_portal_keeps_the_deactivation_file_to_send_later() {
    let env = Env::new();
    let portal = stand_in();
    env.activate(&portal);
    let out = env.lic(&["deactivate", "--server", "http://127.0.0.1:9"]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("portal-unreachable"),
        "{out:?}"
    );
    assert!(
        stderr(&out).contains("lic offline-deactivate --out FILE"),
        "{out:?}"
    );
    // The license is gone here, and its deactivation file can still be written.
    env.ok(&["offline-deactivate", "--out", "later.deact"]);
    let doc: Value =
        serde_json::from_str(&env.ok(&["--format", "json", "inspect", "later.deact"])).unwrap();
    assert_eq!(doc["kind"], "deactivation", "{doc}");
}

#[test]
fn a_mistyped_license_key_is_refused_at_once_naming_the_group() {
    let env = Env::new();
    let key = lic_core::license_key::generate();
    // The fourth group's first character typed wrong.
    let mut chars: Vec<char> = key.chars().collect();
    let at = 18;
    chars[at] = if chars[at] == '7' { '8' } else { '7' };
    let typo: String = chars.into_iter().collect();
    let out = env.lic(&["offline-activate", "--product", "photo-pro", "--key", &typo]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("license-key-checksum"));
    assert!(stderr(&out).contains("group 4"), "{out:?}");
    assert!(!env.path("photo-pro.req").exists());
    assert!(!env.store().exists(), "nothing made for a mistyped key");
    // The key as issued, and keys of other forms, go through.
    env.ok(&["offline-activate", "--product", "photo-pro", "--key", &key]);
    env.ok(&[
        "offline-activate",
        "--product",
        "other",
        "--key",
        "PHPRO-7Q2M",
    ]);
}
