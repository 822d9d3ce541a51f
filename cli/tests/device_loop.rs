//! The `lic` binary through the whole offline loop, against a real store in a temporary
//! directory and files signed with the fixture vendor key (a stand-in answers for the
//! portal). Also: concurrent consumption and crashes in the middle of store writes.

#![allow(clippy::unwrap_used)] // helpers of this test file, not product code

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use lic_core::format::{self, Deactivation, License, UsageReport};
use lic_core::keys::Keyring;
use lic_fixtures::stand_in::StandIn;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
        cmd.args(args)
            .env("LIC_STORE", self.store())
            .env("LIC_TRUST", lic_fixtures::dir().join("keys/vendor.pub.pem"))
            .env_remove("LIC_PRODUCT")
            .env_remove("LIC_DEVICE_ID")
            .env_remove(lic_core::store::CRASH_ENV)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    fn lic(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.lic(args);
        assert_eq!(out.status.code(), Some(0), "lic {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Activate `photo-pro`: request, the stand-in's license, install.
    fn activate(&self, portal: &StandIn) -> PathBuf {
        self.ok(&[
            "offline-activate",
            "--key",
            "PHPRO-7Q2M",
            "--product",
            "photo-pro",
        ]);
        let request = std::fs::read(self.path("photo-pro.req")).unwrap();
        let license = portal.license_for(&request).unwrap();
        let path = self.path("photo-pro.lic");
        std::fs::write(&path, license.armored()).unwrap();
        let out = self.ok(&["install", path.to_str().unwrap()]);
        assert!(
            out.starts_with("installed the license for 'photo-pro'"),
            "{out}"
        );
        path
    }

    fn state(&self) -> Vec<u8> {
        std::fs::read(self.store().join(lic_core::store::STATE_FILE)).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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
    assert_eq!(out.status.code(), Some(2));
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
fn a_license_issued_ahead_of_this_clock_shows_a_clock_turned_back() {
    // The vendor's clock (or the last file seen) is two days ahead of this machine's:
    // this machine's clock counts as turned back beyond the one-hour tolerance.
    let env = Env::new();
    let mut portal = StandIn::new(Utc::now() + chrono::Duration::days(2));
    portal.valid_for = Some(chrono::Duration::days(30));
    let license = {
        env.ok(&["offline-activate", "--key", "K", "--product", "photo-pro"]);
        portal
            .license_for(&std::fs::read(env.path("photo-pro.req")).unwrap())
            .unwrap()
    };
    std::fs::write(env.path("l.lic"), license.armored()).unwrap();
    env.ok(&["install", "l.lic"]);
    let out = env.lic(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the clock was turned back"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("(error code: clock-turned-back)"));
}

#[test]
fn two_processes_consuming_500_times_each_count_exactly_1000() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let run = |env_store: PathBuf| {
        std::thread::spawn(move || {
            for _ in 0..500 {
                let out = Command::new(env!("CARGO_BIN_EXE_lic"))
                    .args(["consume", "export-pdf"])
                    .env("LIC_STORE", &env_store)
                    .env("LIC_TRUST", lic_fixtures::dir().join("keys/vendor.pub.pem"))
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

fn used(env: &Env, feature: &str) -> u64 {
    let out = env.lic(&["status", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the store must open and verify: {out:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == feature)
        .map_or(0, |f| f["used"].as_u64().unwrap())
}

#[test]
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
    let leftovers: Vec<_> = std::fs::read_dir(env.store())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(lic_core::fsutil::TEMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
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
    // With another declared id (a cloned VM told apart by its operator) nothing in the
    // license is about that component, so the rule still holds.
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["fingerprint", "--format", "json", "--explain"])).unwrap();
    assert_eq!(json["match"]["ok"], true);
}
