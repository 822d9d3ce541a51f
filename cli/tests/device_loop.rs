//! The `lic` binary through the whole offline loop, against a real store in a temporary
//! directory and files signed with the fixture vendor key (a stand-in answers for the
//! portal). Also: concurrent consumption, concurrent first runs, crashes in the middle of
//! store writes, `-` for standard input and output, and the exit status of each answer.

#![allow(clippy::unwrap_used)] // helpers of this test file, not product code

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use lic_core::format::{self, Deactivation, License, MatchRule, UsageReport};
use lic_core::keys::Keyring;
use lic_fixtures::stand_in::StandIn;

mod common;
use common::{Env, error_code, stderr, stdout, temp_files, used};

#[test]
fn the_offline_loop_through_the_lic_command() {
    let env = Env::new();
    let portal = StandIn::new(Utc::now());

    let out = env.lic(&[
        "offline-activate",
        "--key",
        "PHPRO-7Q2M",
        "--product",
        "photo-pro",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = stderr(&out);
    assert!(
        said.contains("wrote the activation request for 'photo-pro' to photo-pro.req"),
        "{said}"
    );
    assert!(said.contains("send this file to your vendor"), "{said}");
    assert!(said.contains("lic install FILE"), "{said}");
    let request = std::fs::read(env.path("photo-pro.req")).unwrap();
    assert!(request.starts_with(b"-----BEGIN LIC ACTIVATION REQUEST-----\n"));

    let license_file = portal.license_for(&request).unwrap();
    std::fs::write(env.path("license.lic"), license_file.armored()).unwrap();
    let out = env.ok(&[
        "offline-activate",
        "--response",
        env.path("license.lic").to_str().unwrap(),
    ]);
    assert!(
        out.starts_with("installed the license for 'photo-pro'"),
        "{out}"
    );

    let status = env.ok(&["status"]);
    assert!(status.starts_with("photo-pro: licensed\n"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--format", "json"])).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["product"], "photo-pro");

    assert_eq!(
        env.lic(&["check", "--feature", "render-minutes"])
            .status
            .code(),
        Some(0)
    );
    assert!(
        env.ok(&["consume", "render-minutes", "25"])
            .contains("25 in total")
    );
    assert!(
        env.ok(&["consume", "render-minutes"])
            .contains("26 in total")
    );

    env.ok(&["usage-report", "--out", "usage.usage"]);
    let report = format::open::<UsageReport>(
        &std::fs::read(env.path("usage.usage")).unwrap(),
        &Keyring::new(),
    )
    .unwrap();
    assert_eq!(report.counters.get("render-minutes"), Some(&26));

    let out = env.lic(&["offline-deactivate", "--out", "photo-pro.deact"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out).contains("send it to your vendor"),
        "{}",
        stderr(&out)
    );
    let deactivation = format::open::<Deactivation>(
        &std::fs::read(env.path("photo-pro.deact")).unwrap(),
        &Keyring::new(),
    )
    .unwrap()
    .expect_signer(report.signer())
    .unwrap();
    assert_eq!(deactivation.counters.get("render-minutes"), Some(&26));
    let license: License = format::open::<License>(license_file.bytes(), &portal.keys())
        .unwrap()
        .into_payload();
    assert_eq!(deactivation.activation_id, license.activation_id);

    // Deactivated: status says so (exit 1), and the license cannot be installed again.
    let out = env.lic(&["status", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.lic(&["install", env.path("license.lic").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("was deactivated on this device"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("(error code: already-deactivated)"));
}

#[test]
fn errors_have_exit_codes_and_advice() {
    let env = Env::new();
    // Nothing activated: check says no (1), with what to do.
    let out = env.lic(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no product is activated"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("lic offline-activate"),
        "{}",
        stderr(&out)
    );
    // --quiet: only the exit status.
    let out = env.lic(&["check", "--quiet", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // Activation without a key.
    let out = env.lic(&["offline-activate", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--key KEY"), "{}", stderr(&out));

    let portal = StandIn::new(Utc::now());
    env.activate(&portal);
    let out = env.lic(&["consume", "render-minutes", "101"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("limit of 100"), "{}", stderr(&out));
    let out = env.lic(&["consume", "teleport"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("feature 'teleport' is not licensed"),
        "{}",
        stderr(&out)
    );
    // A tampered file.
    let out = env.lic(&[
        "install",
        lic_fixtures::dir()
            .join("invalid/tampered-payload.lic")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("(error code: bad-signature)"));
}

#[test]
fn a_hand_edited_store_is_reported_and_can_be_reset() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    env.ok(&["consume", "render-minutes", "90"]);
    let path = env.store().join(lic_core::store::STATE_FILE);
    let mut bytes = env.state();
    let at = bytes.windows(2).rposition(|w| w == [0x18, 90]).unwrap();
    bytes[at + 1] = 10;
    std::fs::write(&path, &bytes).unwrap();

    let out = env.lic(&["status", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("the license store was tampered with"),
        "{text}"
    );
    let out = env.lic(&["consume", "render-minutes", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("lic store reset"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "nothing was reset silently"
    );

    let out = env.lic(&["store", "reset"]);
    assert_eq!(out.status.code(), Some(2), "reset wants confirmation");
    let out = env.ok(&["store", "reset", "--yes"]);
    assert!(out.contains("state.bin.reset-"), "{out}");
    assert!(out.contains("the store is reset"), "{out}");
    let out = env.lic(&["status", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("no license is installed")
    );
}

#[test]
fn a_license_issued_ahead_of_this_clock_is_refused_at_install() {
    // The vendor's clock is two days ahead of this machine's (beyond the license's
    // one-hour tolerance): installing would make this clock count as turned back at
    // once, so the license is refused with what to do, and nothing changes.
    let env = Env::new();
    let mut portal = StandIn::new(Utc::now() + chrono::Duration::days(2));
    portal.valid_for = Some(chrono::Duration::days(30));
    env.ok(&["offline-activate", "--key", "K", "--product", "photo-pro"]);
    let license = portal
        .license_for(&std::fs::read(env.path("photo-pro.req")).unwrap())
        .unwrap();
    std::fs::write(env.path("l.lic"), license.armored()).unwrap();
    let before = env.state();
    let out = env.lic(&["install", "l.lic"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("this device's clock says "), "{err}");
    assert!(err.contains("but the license was issued at "), "{err}");
    assert!(
        err.contains("set this computer's clock to the correct date and time"),
        "{err}"
    );
    assert!(err.contains("then install the file again"), "{err}");
    assert_eq!(error_code(&out).as_deref(), Some("clock-behind"));
    assert_eq!(env.state(), before, "the store is unchanged");
    // The request still waits for its license.
    assert!(env.ok(&["store", "info"]).contains("pending:    photo-pro"));
    let out = env.lic(&["check", "--product", "photo-pro"]);
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
}

#[test]
fn a_tampered_store_is_the_same_answer_in_every_command() {
    let env = Env::new();
    let license = env.activate(&StandIn::new(Utc::now()));
    env.ok(&["consume", "render-minutes", "90"]);
    let path = env.store().join(lic_core::store::STATE_FILE);
    let mut bytes = env.state();
    let at = bytes.windows(2).rposition(|w| w == [0x18, 90]).unwrap();
    bytes[at + 1] = 10;
    std::fs::write(&path, &bytes).unwrap();
    let license = license.to_str().unwrap();

    let commands: &[&[&str]] = &[
        &["check"],
        &["check", "--product", "photo-pro"],
        &["check", "--feature", "render-minutes"],
        &["consume", "render-minutes"],
        &["consume", "render-minutes", "--product", "photo-pro"],
        &["install", license],
        &["offline-activate", "--response", license],
        &["usage-report", "--out", "u.usage"],
        &["offline-deactivate", "--out", "d.deact"],
        &["offline-activate", "--key", "K", "--product", "video-pro"],
        &["fingerprint", "--explain"],
        &["store", "info"],
    ];
    for args in commands {
        let out = env.lic(args);
        assert_eq!(out.status.code(), Some(1), "lic {args:?}: {out:?}");
        assert_eq!(
            error_code(&out).as_deref(),
            Some("store-tampered"),
            "lic {args:?}: {out:?}"
        );
        assert!(
            stderr(&out).contains("the license store was tampered with"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("lic store reset"), "{}", stderr(&out));
        // (`store info` shows which store and device key it is about first.)
        if args[0] != "store" {
            assert!(out.stdout.is_empty(), "lic {args:?}: {out:?}");
        }
    }
    // status lists it as the reason the license may not be used.
    for args in [&["status"][..], &["status", "--product", "photo-pro"][..]] {
        let out = env.lic(args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            stdout(&out).starts_with(
                "photo-pro: NOT licensed\n  problem: the license store was tampered with: "
            ),
            "{out:?}"
        );
        assert!(stdout(&out).contains("lic store reset"), "{out:?}");
    }
    let out = env.lic(&["status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["violations"][0]["code"], "store-tampered");
    assert_eq!(json["license"], serde_json::Value::Null);
    let out = env.lic(&["check", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");

    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was reset");
    assert!(!env.path("u.usage").exists() && !env.path("d.deact").exists());
    assert!(!env.path("video-pro.req").exists());
}

#[test]
fn two_processes_consuming_500_times_each_count_exactly_1000() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let run = |env_store: PathBuf| {
        std::thread::spawn(move || {
            for _ in 0..500 {
                let out = Command::new(env!("CARGO_BIN_EXE_lic"))
                    .args(["consume", "export-pdf", "--trust"])
                    .arg(lic_fixtures::dir().join("keys/vendor.pub.pem"))
                    .env("LIC_STORE", &env_store)
                    .env_remove("LIC_DEVICE_ID")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
            }
        })
    };
    let (a, b) = (run(env.store()), run(env.store()));
    a.join().unwrap();
    b.join().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--format", "json"])).unwrap();
    let used = json["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "export-pdf")
        .unwrap()["used"]
        .clone();
    assert_eq!(used, 1000);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the crash points (LIC_CRASH_AT) exist only in debug builds"
)]
fn a_crash_at_any_step_of_a_store_write_leaves_the_old_or_the_new_state() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let mut expected = used(&env, "export-pdf");
    for round in 0..3 {
        for step in [
            "before-write",
            "write",
            "sync",
            "rename",
            "sync-dir",
            "after-write",
        ] {
            let out = env
                .cmd(&["consume", "export-pdf"])
                .env(lic_core::store::CRASH_ENV, step)
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "round {round}, {step}: the process must have crashed"
            );
            let now = used(&env, "export-pdf");
            // Before the rename the old state stands; from the rename on, the new one.
            let new = matches!(step, "sync-dir" | "after-write");
            assert_eq!(
                now,
                if new { expected + 1 } else { expected },
                "round {round}, crash at {step}"
            );
            expected = now;
        }
    }
    // The store works on, and the next write clears what the crashes left behind.
    env.ok(&["consume", "export-pdf"]);
    assert_eq!(used(&env, "export-pdf"), expected + 1);
    let leftovers = temp_files(&env.store());
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the crash points (LIC_CRASH_AT) exist only in debug builds"
)]
fn a_crash_while_the_device_key_is_made_leaves_no_key_or_the_whole_key() {
    for step in ["key-write", "key-sync", "key-link", "key-sync-dir"] {
        let env = Env::new();
        std::fs::create_dir(env.store()).unwrap();
        let out = env
            .cmd(&["status", "--product", "photo-pro"])
            .env(lic_core::store::CRASH_ENV, step)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{step}: the process must have crashed"
        );
        let key_path = env.store().join(lic_core::store::KEY_FILE);
        // Before the key file gets its name there is none; from then on it is complete.
        let made = step == "key-sync-dir";
        assert_eq!(key_path.exists(), made, "{step}");
        let earlier = made.then(|| {
            lic_core::keys::SecretKey::read(&key_path)
                .expect("a complete key")
                .kid()
                .to_string()
        });
        // The next run works, with that key if it was made.
        let out = env.lic(&["status", "--product", "photo-pro", "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{step}: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let kid = json["device_kid"].as_str().unwrap().to_string();
        if let Some(earlier) = earlier {
            assert_eq!(kid, earlier, "{step}");
        }
        // The first write to the store clears what the crash left behind.
        env.ok(&["offline-activate", "--key", "K", "--product", "photo-pro"]);
        assert_eq!(temp_files(&env.store()), Vec::<String>::new(), "{step}");
        assert!(env.ok(&["store", "info"]).contains(&kid), "{step}");
    }
}

#[test]
fn concurrent_first_runs_of_lic_share_one_device_key() {
    for _ in 0..3 {
        let env = Env::new();
        // A fresh, empty store directory (as an installer may make it).
        std::fs::create_dir(env.store()).unwrap();
        let children: Vec<_> = (0..6)
            .map(|_| {
                env.cmd(&["status", "--product", "photo-pro", "--format", "json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let kids: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert_eq!(out.status.code(), Some(1), "{out:?}");
                let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                json["device_kid"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
        assert!(env.ok(&["store", "info"]).contains(&kids[0]));

        // Without even the directory: two activations at once, one key, both requests.
        let env = Env::new();
        let children: Vec<_> = ["photo-pro", "video-pro"]
            .into_iter()
            .map(|p| {
                env.cmd(&["offline-activate", "--key", "K", "--product", p])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{out:?}");
        }
        let signer = |name: &str| {
            format::open::<format::ActivationRequest>(
                &std::fs::read(env.path(name)).unwrap(),
                &Keyring::new(),
            )
            .unwrap()
            .signer()
            .kid()
            .to_string()
        };
        assert_eq!(signer("photo-pro.req"), signer("video-pro.req"));
        let info = env.ok(&["store", "info"]);
        assert!(info.contains(&signer("photo-pro.req")), "{info}");
        assert!(
            info.contains("pending:    photo-pro") && info.contains("pending:    video-pro"),
            "{info}"
        );
    }
}

#[test]
fn killing_lic_at_random_moments_never_breaks_the_store() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut last = used(&env, "export-pdf");
    for _ in 0..40 {
        let mut child = env
            .cmd(&["consume", "export-pdf"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A pseudo-random moment within the process's life (it runs a few ms): this
        // places the kill, it does not wait for anything.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(seed % 6000));
        let _ = child.kill();
        let _ = child.wait();
        let now = used(&env, "export-pdf");
        assert!(now == last || now == last + 1, "{last} → {now}");
        last = now;
    }
}

#[test]
fn qr_and_completions() {
    let env = Env::new();
    let out = env.lic(&[
        "offline-activate",
        "--key",
        "K",
        "--product",
        "photo-pro",
        "--qr",
        "--out",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8(out.stdout.clone())
            .unwrap()
            .starts_with("-----BEGIN LIC ACTIVATION REQUEST-----")
    );
    let err = stderr(&out);
    assert!(err.contains('█') || err.contains('▀'), "a QR code is drawn");
    let out = env.ok(&["completions", "bash"]);
    assert!(out.contains("offline-activate"));
}

#[test]
fn fingerprint_explains_matches() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let out = env.ok(&["fingerprint", "--explain"]);
    assert!(out.contains("machine-id"), "{out}");
    assert!(out.contains("matches the license"), "{out}");
    assert!(
        out.contains("the license's match rule is satisfied"),
        "{out}"
    );
    // With a declared id now (a cloned VM told apart by its operator) but none at
    // activation, nothing in the license is about that component: the rule still holds.
    let out = env
        .cmd(&["fingerprint", "--format", "json", "--explain"])
        .env("LIC_DEVICE_ID", "vm-0042")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["components"]["declared-id"].is_string(), "{json}");
    assert_eq!(json["match"]["ok"], true);
    assert_eq!(json["match"]["differing"], serde_json::json!([]));
}

#[test]
fn fingerprint_explains_what_differs_on_another_machine() {
    // Activated as one instance (LIC_DEVICE_ID=vm-a), with a license that requires the
    // declared id; then looked at as another instance (vm-b) with the same hardware.
    let env = Env::new();
    let mut portal = StandIn::new(Utc::now());
    portal.match_rule = MatchRule {
        required: vec!["machine-id".into(), "declared-id".into()],
        max_changed: 1,
    };
    let license = env.activate_as(&portal, Some("vm-a"));
    let as_b = |args: &[&str]| {
        let out = env.cmd(args).env("LIC_DEVICE_ID", "vm-b").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "lic {args:?}: {out:?}");
        stdout(&out)
    };
    let license_arg = license.to_str().unwrap();
    for args in [
        &["fingerprint", "--explain"][..],
        &["fingerprint", "--license", license_arg][..],
    ] {
        let text = as_b(args);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no {name} line: {text}"))
                .to_string()
        };
        assert!(
            line("declared-id").ends_with("DIFFERS from the license"),
            "{args:?}: {text}"
        );
        assert!(
            line("hostname").ends_with("matches the license"),
            "{args:?}: {text}"
        );
        assert!(
            text.contains(
                "the license's match rule is NOT satisfied (required and different: declared-id)"
            ),
            "{args:?}: {text}"
        );
        let mut json_args = args.to_vec();
        json_args.extend(["--format", "json"]);
        let json: serde_json::Value = serde_json::from_str(&as_b(&json_args)).unwrap();
        assert_eq!(json["match"]["ok"], false, "{json}");
        assert_eq!(
            json["match"]["differing"],
            serde_json::json!(["declared-id"])
        );
        assert_eq!(
            json["match"]["required_failed"],
            serde_json::json!(["declared-id"])
        );
        assert!(
            json["match"]["matched"]
                .as_array()
                .unwrap()
                .contains(&"hostname".into()),
            "{json}"
        );
    }
    // The license is not usable as vm-b, and says which component is at fault.
    let out = env
        .cmd(&["check"])
        .env("LIC_DEVICE_ID", "vm-b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("required component(s) declared-id differ"),
        "{}",
        stderr(&out)
    );
    // As vm-a it is.
    let out = env
        .cmd(&["fingerprint", "--explain"])
        .env("LIC_DEVICE_ID", "vm-a")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("the license's match rule is satisfied"),
        "{out:?}"
    );

    // A license that allows no change at all, given with --license: the declared id is
    // not required there, but it is one change too many.
    let mut strict = StandIn::new(Utc::now());
    strict.match_rule = MatchRule {
        required: vec!["machine-id".into()],
        max_changed: 0,
    };
    let strict_license = strict
        .license_for(&std::fs::read(env.path("photo-pro.req")).unwrap())
        .unwrap();
    std::fs::write(env.path("strict.lic"), strict_license.armored()).unwrap();
    let text = as_b(&["fingerprint", "--license", "strict.lic"]);
    assert!(text.contains("DIFFERS from the license"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_end() == "the license's match rule is NOT satisfied"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&as_b(&[
        "fingerprint",
        "--license",
        "strict.lic",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["match"]["ok"], false);
    assert_eq!(
        json["match"]["differing"],
        serde_json::json!(["declared-id"])
    );
    assert_eq!(json["match"]["required_failed"], serde_json::json!([]));
    assert_eq!(json["match"]["changed_allowed"], 0);
}

#[test]
fn dash_reads_standard_input_and_writes_standard_output() {
    let env = Env::new();
    let portal = StandIn::new(Utc::now());
    // The request on standard output: the file only; the messages on standard error.
    let out = env.lic(&[
        "offline-activate",
        "--key",
        "K",
        "--product",
        "photo-pro",
        "--out",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out).contains("to standard output"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("-----BEGIN"), "{}", stderr(&out));
    let license = portal.license_for(&out.stdout).unwrap();

    // `lic install -`: the license piped on standard input.
    let out = env.lic_with_input(&["install", "-"], license.armored().as_bytes());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with("installed the license for 'photo-pro'"),
        "{out:?}"
    );
    let out = env.lic_with_input(
        &["offline-activate", "--response", "-"],
        license.armored().as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("already installed"), "{out:?}");
    // Something else on standard input is refused as such.
    let out = env.lic_with_input(&["install", "-"], b"not a license\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("armor-missing"));

    env.ok(&["consume", "render-minutes", "7"]);

    let armored_alone = |out: &Output, label: &str| {
        let text = stdout(out);
        assert!(
            text.starts_with(&format!("-----BEGIN LIC {label}-----\n")),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("-----END LIC {label}-----\n")),
            "{text}"
        );
        assert_eq!(text.matches("-----BEGIN").count(), 1, "{text}");
        assert!(!stderr(out).contains("-----BEGIN"), "{}", stderr(out));
    };
    let out = env.lic(&["usage-report", "--out", "-"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    armored_alone(&out, "USAGE REPORT");
    assert!(
        stderr(&out).contains("wrote the usage report to standard output"),
        "{}",
        stderr(&out)
    );
    let report = format::open::<UsageReport>(&out.stdout, &Keyring::new()).unwrap();
    assert_eq!(report.counters.get("render-minutes"), Some(&7));

    let out = env.lic(&["offline-deactivate", "--out", "-"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    armored_alone(&out, "DEACTIVATION");
    assert!(
        stderr(&out).contains("'photo-pro' is deactivated on this machine"),
        "{}",
        stderr(&out)
    );
    let deactivation = format::open::<Deactivation>(&out.stdout, &Keyring::new())
        .unwrap()
        .expect_signer(report.signer())
        .unwrap();
    assert_eq!(deactivation.counters.get("render-minutes"), Some(&7));
    // Asked again, the same file.
    let again = env.lic(&["offline-deactivate", "--product", "photo-pro", "--out", "-"]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(again.stdout, out.stdout);

    assert!(!env.path("-").exists(), "no file named '-' was written");
}

#[test]
fn read_only_commands_do_not_create_a_missing_store() {
    let env = Env::new();
    let missing = env.path("no-such-store");
    let run = |args: &[&str]| {
        let out = env.cmd(args).env("LIC_STORE", &missing).output().unwrap();
        assert!(!missing.exists(), "lic {args:?} created the store");
        out
    };
    let named = missing.display().to_string();

    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains(&named), "{}", stderr(&out));
    assert!(stderr(&out).contains("--store DIR"), "{}", stderr(&out));
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    let out = run(&["check", "--product", "photo-pro", "--feature", "f"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    let out = run(&["check", "--quiet", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");

    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    let out = run(&["status", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).starts_with("photo-pro: NOT licensed\n"),
        "{out:?}"
    );
    assert!(stderr(&out).contains(&named), "{}", stderr(&out));
    let out = run(&["status", "--product", "photo-pro", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["violations"][0]["code"], "not-activated");
    assert_eq!(json["device_kid"], serde_json::Value::Null);

    let out = run(&["fingerprint", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("machine-id"), "{out:?}");
    let out = run(&["fingerprint", "--explain", "--product", "photo-pro"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("no license is installed to compare with"),
        "{out:?}"
    );
    let out = run(&["fingerprint"]);
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    let out = run(&["consume", "render-minutes"]);
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    // A license given to a store that does not exist cannot be this store's.
    let license = lic_fixtures::dir().join("valid/license.lic");
    let out = env
        .cmd(&["install", license.to_str().unwrap()])
        .env("LIC_STORE", &missing)
        .output()
        .unwrap();
    assert!(!missing.exists(), "install created the store");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("not-activated"));
    assert!(stderr(&out).contains(&named), "{}", stderr(&out));

    // The first activation makes the store, as before.
    let out = env
        .cmd(&["offline-activate", "--key", "K", "--product", "photo-pro"])
        .env("LIC_STORE", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(missing.join(lic_core::store::KEY_FILE).exists());
}

#[test]
fn standard_input_is_read_once_and_a_key_set_needs_a_store() {
    let env = Env::new();
    let out = env.lic(&["install", "-", "-"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("usage"));
    let key_set = lic_fixtures::dir().join("valid/key-set.keys");
    let out = env.lic(&["install", key_set.to_str().unwrap()]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("not-activated"),
        "{out:?}"
    );
    assert!(
        stderr(&out).contains("a key set is kept in the license store"),
        "{out:?}"
    );
    assert!(!env.store().exists(), "no store was made for it");
}
