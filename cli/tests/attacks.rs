//! The customer who wants more than they paid for, on their own machine, with the real
//! `lic` binary: each test is an attack from the adversarial review (docs/security.md
//! lists them with their defences). The portal's side is in portal/tests/attacks.rs.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use lic_core::format::{self, ActivationRequest, MAX_COUNTER};
use lic_core::keys::{Keyring, SecretKey};
use lic_fixtures::stand_in::StandIn;
use sha2::{Digest as _, Sha256};

mod common;
use common::{Env, error_code, stderr, stdout, used};

// ----- 4. trust anchors ----------------------------------------------------------------------

#[test]
fn a_vendor_key_dropped_into_the_store_or_named_in_the_environment_is_not_trusted() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    // The customer runs a portal of their own and has it answer a request from this store.
    let mut own_portal = StandIn::new(Utc::now());
    own_portal.vendor = std::sync::Arc::new(SecretKey::generate());
    own_portal
        .features
        .insert("everything".into(), Default::default());
    let own_key = env.path("own.pub.pem");
    std::fs::write(&own_key, own_portal.vendor.public().to_pem()).unwrap();
    std::fs::copy(&own_key, env.store().join("trusted-keys.pem")).unwrap();
    let other = Env::new();
    other.ok(&["offline-activate", "--key", "K", "--product", "photo-pro"]);
    let request = std::fs::read(other.path("photo-pro.req")).unwrap();
    let forged = other.path("forged.lic");
    std::fs::write(&forged, own_portal.license_for(&request).unwrap().armored()).unwrap();
    std::fs::copy(&own_key, other.store().join("trusted-keys.pem")).unwrap();
    // Neither the store's file nor LIC_TRUST makes `lic` trust that key: only the file
    // the vendor installed beside lic (here none) or an explicit --trust.
    for (what, out) in [
        (
            "the store's trusted-keys.pem",
            other
                .bare(&["install", forged.to_str().unwrap()])
                .output()
                .unwrap(),
        ),
        (
            "LIC_TRUST",
            other
                .bare(&["install", forged.to_str().unwrap()])
                .env("LIC_TRUST", &own_key)
                .output()
                .unwrap(),
        ),
        (
            "the vendor's anchor with the store's file beside it",
            other.lic(&["install", forged.to_str().unwrap()]),
        ),
    ] {
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        assert_eq!(error_code(&out).as_deref(), Some("unknown-key"), "{what}");
    }
    // The genuine store, with the customer's key in it, answers for the vendor's license
    // only.
    let out = env.lic(&["check", "--feature", "everything"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("feature-not-licensed"));
    let help = env.ok(&["--help"]);
    assert!(help.contains("Nothing in the"), "{help}");
}

// ----- 5. key sets ---------------------------------------------------------------------------

#[test]
fn a_key_set_installed_with_lic_install_adds_the_next_key_and_revokes_a_leaked_one() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let fixture = |name: &str| lic_fixtures::dir().join(name).display().to_string();
    // A file signed by the untrusted key is unknown before, revoked after.
    let out = env.lic(&["inspect", &fixture("invalid/key-revoked.lic")]);
    assert_eq!(error_code(&out).as_deref(), Some("unknown-key"), "{out:?}");
    // A key set signed by a key the device does not trust is refused.
    let out = env.lic(&["install", &fixture("invalid/key-set-unknown-key.keys")]);
    assert_eq!(error_code(&out).as_deref(), Some("unknown-key"), "{out:?}");
    let out = env.ok(&["install", &fixture("valid/key-set.keys")]);
    assert!(out.contains("key set version 1"), "{out}");
    assert!(env.ok(&["store", "info"]).contains("version 1 in force"));
    let out = env.lic(&["install", &fixture("valid/key-set.keys")]);
    assert!(stdout(&out).contains("already installed"), "{out:?}");
    let out = env.lic(&["inspect", &fixture("invalid/key-revoked.lic")]);
    assert_eq!(error_code(&out).as_deref(), Some("key-revoked"), "{out:?}");
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    // Files from the key the key set adds are trusted now: a second product's license.
    let mut next = StandIn::new(Utc::now());
    next.vendor = std::sync::Arc::new(lic_fixtures::next_vendor_key());
    env.ok(&[
        "offline-activate",
        "--key",
        "K2",
        "--product",
        "video-pro",
        "--out",
        "video.req",
    ]);
    let request = std::fs::read(env.path("video.req")).unwrap();
    let license = env.path("video.lic");
    std::fs::write(&license, next.license_for(&request).unwrap().armored()).unwrap();
    let out = env.ok(&["install", license.to_str().unwrap()]);
    assert!(
        out.contains("installed the license for 'video-pro'"),
        "{out}"
    );
    // The installed photo-pro license (the fixture vendor key) still counts.
    env.ok(&["check", "--product", "photo-pro"]);
}

// ----- 2. counters ---------------------------------------------------------------------------

#[test]
fn consuming_past_the_largest_counter_is_refused() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let out = env.lic(&["consume", "export-pdf", "18446744073709551615"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("counter-out-of-range"));
    let max = MAX_COUNTER.to_string();
    env.ok(&["consume", "export-pdf", &max]);
    let out = env.lic(&["consume", "export-pdf"]);
    assert_eq!(error_code(&out).as_deref(), Some("counter-out-of-range"));
    assert_eq!(used(&env, "export-pdf"), MAX_COUNTER);
    // The report at the largest counter is a valid file.
    env.ok(&["usage-report", "--out", "usage.usage"]);
}

// ----- 6. a deleted state --------------------------------------------------------------------

#[test]
fn deleting_state_bin_is_reported_not_read_as_an_empty_store() {
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    env.ok(&["consume", "render-minutes", "90"]);
    let kid = |env: &Env| {
        let out = env.lic(&["status", "--product", "photo-pro", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), json)
    };
    let (_, before) = kid(&env);
    std::fs::remove_file(env.store().join(lic_core::store::STATE_FILE)).unwrap();
    let (code, after) = kid(&env);
    assert_eq!(code, Some(1));
    assert_eq!(after["violations"][0]["code"], "store-tampered", "{after}");
    assert!(
        after["violations"][0]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{after}"
    );
    for args in [
        &["consume", "render-minutes", "--product", "photo-pro"][..],
        &["check", "--product", "photo-pro"],
        &[
            "offline-activate",
            "--key",
            "K",
            "--product",
            "photo-pro",
            "--out",
            "again.req",
        ],
    ] {
        let out = env.lic(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(
            error_code(&out).as_deref(),
            Some("store-tampered"),
            "{args:?}"
        );
    }
    // The way out says so, keeps the device key, and the vendor carries the counters over
    // (portal/tests/attacks.rs).
    env.ok(&["store", "reset", "--yes"]);
    let (code, reset) = kid(&env);
    assert_eq!(code, Some(1));
    assert_eq!(reset["violations"][0]["code"], "not-activated", "{reset}");
    assert_eq!(reset["device_kid"], before["device_kid"]);
}

// ----- 1. device binding ---------------------------------------------------------------------

#[test]
fn a_store_copied_to_a_machine_with_another_declared_id_is_wrong_device() {
    let env = Env::new();
    let mut portal = StandIn::new(Utc::now());
    portal.match_rule.required = vec!["machine-id".into(), "declared-id".into()];
    env.activate_as(&portal, Some("plant-a-01"));
    let check = |id: Option<&str>| {
        let mut cmd = env.cmd(&["check"]);
        if let Some(id) = id {
            cmd.env("LIC_DEVICE_ID", id);
        }
        cmd.output().unwrap()
    };
    assert_eq!(check(Some("plant-a-01")).status.code(), Some(0));
    for id in [Some("plant-a-02"), None] {
        let out = check(id);
        assert_eq!(out.status.code(), Some(1), "{id:?}: {out:?}");
        assert_eq!(error_code(&out).as_deref(), Some("wrong-device"), "{id:?}");
        assert!(stderr(&out).contains("declared-id"), "{}", stderr(&out));
    }
}

// ----- 9. fingerprint privacy ----------------------------------------------------------------

#[test]
fn a_requests_low_entropy_components_cannot_be_recovered_by_guessing() {
    let env = Env::new();
    env.ok(&["offline-activate", "--key", "K", "--product", "photo-pro"]);
    let request = std::fs::read(env.path("photo-pro.req")).unwrap();
    let request = format::open::<ActivationRequest>(&request, &Keyring::new()).unwrap();
    let fingerprint = &request.payload().fingerprint;
    // The construction of the review, salted with the public product code only: every
    // memory size up to 4 TiB hashed in well under a second.
    let public = |name: &str, value: &str| {
        let mut h = Sha256::new();
        for part in [
            b"lic fingerprint v1".as_slice(),
            b"photo-pro",
            name.as_bytes(),
        ] {
            h.update(part);
            h.update([0]);
        }
        h.update(value.as_bytes());
        format::Bytes32(h.finalize().into())
    };
    if let Some(memory) = fingerprint.get("memory") {
        assert!(
            (1..=4096).all(|gib| public("memory", &format!("{gib} GiB")) != *memory),
            "the memory size is recoverable from the request"
        );
    }
    // Not even the true values give the hashes without the device's secret…
    let raw = lic_core::fingerprint::FingerprintSource::collect(
        &lic_core::fingerprint::SystemSource::new(None),
    );
    for name in raw.names() {
        assert_ne!(
            Some(&public(name, raw.get(name).unwrap())),
            fingerprint.get(name),
            "{name}"
        );
    }
    // …which the device has: it reproduces them.
    let out = env.ok(&["fingerprint", "--product", "photo-pro", "--format", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (name, hash) in fingerprint {
        assert_eq!(shown["components"][name], hash.to_string(), "{name}");
    }
}
