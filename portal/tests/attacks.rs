//! The customer who wants more than they paid for: each test is an attack found by an
//! adversarial review, made with the public APIs and the customer's own device key (which
//! signs any request or report they like), run on SQLite and on PostgreSQL. Each names
//! the attack; docs/security.md lists them with their defences.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{backends, copy_store, device, license, policy, portal, request, reset_store};
use lic_core::client::{Client, ClientError, Installed};
use lic_core::format::{
    self, ActivationRequest, Bytes32, Credential, Feature, JournalHead, MAX_COUNTER, Nonce,
    UsageReport,
};
use lic_core::keys::{Keyring, SecretKey};
use lic_core::rules::Violation;
use lic_core::store::Store;
use lic_portal::db::Db;
use lic_portal::ops::Policy;
use lic_portal::{Actor, Portal};

fn who() -> Actor {
    Actor("test".into())
}

/// The device key of the store in `dir`: the customer has it.
fn device_key(dir: &std::path::Path) -> SecretKey {
    Store::open(dir).unwrap().device_key().unwrap()
}

/// What the database holds about seats, usage and applied files (not the audit log, not
/// the evidence flags).
async fn accounts(db: &Db) -> String {
    use sqlx::Row as _;
    let mut out = String::new();
    for (sql, cols) in [
        ("SELECT id, seats_used FROM licenses ORDER BY id", 2),
        (
            "SELECT license, feature, total FROM usage_totals ORDER BY license, feature",
            3,
        ),
        (
            "SELECT activation, feature, reported FROM usage_reported ORDER BY activation, feature",
            3,
        ),
        ("SELECT hash FROM applied_files ORDER BY hash", 1),
        (
            "SELECT id, state, journal_seq FROM activations ORDER BY id",
            3,
        ),
    ] {
        for r in sqlx::query(sql).fetch_all(db.pool()).await.unwrap() {
            for i in 0..cols {
                let text: Option<String> = r.try_get(i).ok().flatten();
                let num: Option<i64> = r.try_get(i).ok().flatten();
                out.push_str(&format!("{text:?}{num:?}|"));
            }
            out.push('\n');
        }
    }
    out
}

fn used(c: &Client, feature: &str) -> u64 {
    c.status()
        .unwrap()
        .features
        .iter()
        .find(|f| f.name == feature)
        .map_or(0, |f| f.used)
}

/// Activate `c` on license `key`; returns the activation id.
async fn activate(portal: &Portal, c: &Client, key: &str) -> String {
    let applied = portal
        .apply(
            c.request_activation(Credential::LicenseKey(key.into()))
                .unwrap()
                .armored()
                .as_bytes(),
            &who(),
        )
        .await
        .unwrap();
    c.install(applied.response.as_bytes()).unwrap();
    applied.activation.unwrap()
}

/// A portal with a one-seat license of [`policy`] and one device ("m1") activated on it.
/// (Keep `dir` bound: the device's store goes with it.)
struct Activated {
    portal: Portal,
    license_id: String,
    key: String,
    keys: Keyring,
    dir: tempfile::TempDir,
    c: Client,
    act: String,
}

async fn activated(db: &common::TestDb) -> Activated {
    let portal = portal(db).await;
    let (license_id, key) = license(&portal, policy(1)).await;
    let keys = portal.trusted_keys().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = device(dir.path(), "m1", keys.clone());
    let act = activate(&portal, &c, &key).await;
    Activated {
        portal,
        license_id,
        key,
        keys,
        dir,
        c,
        act,
    }
}

async fn upload(portal: &Portal, file: &format::SignedFile) -> Result<(), lic_portal::PortalError> {
    portal
        .apply(file.armored().as_bytes(), &who())
        .await
        .map(drop)
}

fn flags(a: &lic_portal::ops::Activation) -> Vec<&str> {
    a.flags.iter().map(|f| f.kind.as_str()).collect()
}

// ----- 1. device binding ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_re_signed_without_the_required_components_is_refused() {
    for db in backends().await {
        let portal = portal(&db).await;
        let mut clones = policy(2);
        clones.name = "clones".into();
        clones.match_rule.required = vec!["machine-id".into(), "declared-id".into()];
        let (_, key) = license(&portal, policy(2)).await;
        let (_, clone_key) = license(&portal, clones).await;
        let dir = tempfile::tempdir().unwrap();
        let honest = device(dir.path(), "m1", Keyring::new());
        let real = honest
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let real = format::open::<ActivationRequest>(real.bytes(), &Keyring::new()).unwrap();
        let own_key = device_key(dir.path());
        let before = accounts(portal.db()).await;
        // The customer signs, with their own device key, a request whose fingerprint holds
        // none of the components the policy requires — or no declared id for the policy
        // that binds clones by it (the honest client without LIC_DEVICE_ID sends none).
        let mut no_machine_id = real.payload().clone();
        no_machine_id.fingerprint.remove("machine-id");
        no_machine_id.nonce = Nonce([9; 16]);
        let mut no_declared_id = real.payload().clone();
        no_declared_id.credential = Credential::LicenseKey(clone_key.clone());
        for (request, missing) in [
            (no_machine_id, "machine-id"),
            (no_declared_id, "declared-id"),
        ] {
            let file = format::sign(&request, &own_key).unwrap();
            let err = portal
                .apply(file.armored().as_bytes(), &who())
                .await
                .unwrap_err();
            assert_eq!(err.code(), "missing-component", "{}: {err}", db.name);
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(missing), "{}: {err}", db.name);
            assert!(err.hint().contains("LIC_DEVICE_ID"), "{}", err.hint());
        }
        assert_eq!(accounts(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_copied_to_a_machine_that_differs_in_a_required_component_is_wrong_device() {
    for db in backends().await {
        let Activated {
            keys, dir, c, act, ..
        } = activated(&db).await;
        let installed = c.status().unwrap();
        assert!(installed.is_valid(), "{:?}", installed.violations);
        // The license carries the policy's rule as it is.
        let elsewhere = tempfile::tempdir().unwrap();
        copy_store(dir.path(), elsewhere.path());
        let copy = device(elsewhere.path(), "m2", keys.clone());
        let status = copy.status().unwrap();
        assert!(
            status.violations.iter().any(|v| matches!(
                v,
                Violation::WrongDevice { required_failed, .. } if required_failed == &["machine-id"]
            )),
            "{}: {act}: {:?}",
            db.name,
            status.violations
        );
        assert_eq!(status.violations[0].code(), "wrong-device");
    }
}

// ----- 2. counters ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_totals_at_the_limit_never_overflow_and_a_deactivation_still_frees_its_seat() {
    for db in backends().await {
        let portal = portal(&db).await;
        let mut unlimited = policy(2);
        unlimited
            .features
            .insert("api-calls".into(), Feature::default());
        let (license_id, key) = license(&portal, unlimited).await;
        let keys = portal.trusted_keys().await.unwrap();
        let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = device(da.path(), "m1", keys.clone());
        let b = device(dbb.path(), "m2", keys.clone());
        activate(&portal, &a, &key).await;
        let act_b = activate(&portal, &b, &key).await;
        // Stock tools cannot pass the largest counter…
        let err = a.consume("api-calls", u64::MAX).unwrap_err();
        assert_eq!(err.code(), "counter-out-of-range");
        // …but can reach it, on each of two devices.
        a.consume("api-calls", MAX_COUNTER).unwrap();
        upload(&portal, &a.usage_report().unwrap()).await.unwrap();
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage["api-calls"], i64::try_from(MAX_COUNTER).unwrap());
        b.consume("api-calls", 1).unwrap();
        let before = accounts(portal.db()).await;
        let err = upload(&portal, &b.usage_report().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "usage-out-of-range", "{}: {err}", db.name);
        assert_eq!(err.status(), 400);
        assert_eq!(
            accounts(portal.db()).await,
            before,
            "{}: unchanged",
            db.name
        );
        // A crafted report beyond the largest counter is not a lic file at all.
        let crafted = UsageReport {
            activation_id: act_b.clone(),
            product: "photo-pro".into(),
            counters: [("api-calls".to_string(), MAX_COUNTER + 1)].into(),
            journal: JournalHead {
                seq: 9,
                prev: Bytes32([1; 32]),
                trail: Vec::new(),
            },
            created: chrono::Utc::now(),
            variables: Default::default(),
        };
        let err = format::sign(&crafted, &device_key(dbb.path())).unwrap_err();
        assert_eq!(err.code(), "payload-invalid");
        // Lists and pages still answer (no float, no overflow, no 500).
        assert_eq!(portal.licenses(None).await.unwrap().len(), 1);
        portal.activations(None, None).await.unwrap();
        // The deactivation frees the seat, its counters refused and recorded.
        let applied = portal
            .apply(b.deactivate().unwrap().armored().as_bytes(), &who())
            .await
            .unwrap();
        assert_eq!(applied.response_kind, "receipt");
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.seats_used, 1, "{}: b's seat is free", db.name);
        assert_eq!(info.usage["api-calls"], i64::try_from(MAX_COUNTER).unwrap());
        let act = portal.activation(&act_b).await.unwrap();
        assert_eq!(act.state, "deactivated");
        assert_eq!(flags(&act), ["counters-refused"], "{}", db.name);
    }
}

// ----- 3. journal gaps -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_that_uploads_only_its_last_report_is_flagged_as_a_fork() {
    for db in backends().await {
        let Activated {
            portal,
            license_id,
            keys,
            dir,
            c,
            act,
            ..
        } = activated(&db).await;
        c.consume("render-minutes", 10).unwrap();
        upload(&portal, &c.usage_report().unwrap()).await.unwrap();
        let backup = tempfile::tempdir().unwrap();
        copy_store(dir.path(), backup.path());
        c.consume("render-minutes", 100).unwrap();
        upload(&portal, &c.usage_report().unwrap()).await.unwrap();
        // The backup is restored: the 100 minutes are forgotten on the device. Three
        // reports, only the last uploaded, its counters above the portal's.
        let restored = device(backup.path(), "m1", keys.clone());
        restored.consume("render-minutes", 200).unwrap();
        let mut last = None;
        for _ in 0..3 {
            last = Some(restored.usage_report().unwrap());
        }
        upload(&portal, &last.unwrap()).await.unwrap();
        let a = portal.activation(&act).await.unwrap();
        assert_eq!(flags(&a), ["fork"], "{}: {:?}", db.name, a.flags);
        let audit = portal.audit_log(50, Some(&act)).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "journal.fork"));
        // Counted once (210 − 110), never subtracted.
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage["render-minutes"], 210, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_an_honest_device_never_uploaded_are_skipped_cleanly_or_flagged_as_a_gap() {
    for db in backends().await {
        let Activated {
            portal,
            license_id,
            dir: _dir,
            c,
            act,
            ..
        } = activated(&db).await;
        // Three reports, only the newest uploaded: it links to the head through its trail.
        for n in 1..=3 {
            c.consume("render-minutes", n).unwrap();
            let report = c.usage_report().unwrap();
            if n == 3 {
                upload(&portal, &report).await.unwrap();
            }
        }
        let a = portal.activation(&act).await.unwrap();
        assert_eq!(a.flags, [], "{}", db.name);
        assert_eq!(a.journal_seq, 3);
        // Forty more: further than the trail reaches — counted, flagged as a gap.
        let mut last = None;
        for _ in 0..40 {
            last = Some(c.usage_report().unwrap());
        }
        upload(&portal, &last.unwrap()).await.unwrap();
        let a = portal.activation(&act).await.unwrap();
        assert_eq!(flags(&a), ["gap"], "{}", db.name);
        let audit = portal.audit_log(50, Some(&act)).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "journal.gap"));
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage["render-minutes"], 6, "{}", db.name);
    }
}

// ----- 5. key revocation ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_vendor_key_is_revoked_by_a_key_set_and_its_files_are_refused() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(1)).await;
        // The application was built trusting the first vendor key only.
        let anchors = portal.trusted_keys().await.unwrap();
        let first = lic_portal::vendor::list(portal.db()).await.unwrap()[0].clone();
        let leaked =
            SecretKey::read(&lic_portal::vendor::key_path(&db.keys_dir(), &first.kid)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m1", anchors.clone());
        let act = activate(&portal, &c, &key).await;
        // The vendor rotates, then revokes the leaked key: two key sets.
        portal.rotate_key(&who()).await.unwrap();
        let set = portal
            .revoke_key(&first.kid, "leaked", &who())
            .await
            .unwrap();
        assert_eq!(set.version, 2);
        let err = portal
            .revoke_key(
                &portal
                    .trusted_keys()
                    .await
                    .unwrap()
                    .iter()
                    .next()
                    .unwrap()
                    .kid()
                    .to_string(),
                "x",
                &who(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            "key-active",
            "the active key is not revoked: {err}"
        );
        let err = portal
            .revoke_key(&first.kid, "again", &who())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "already-revoked");
        let sets = portal.key_sets().await.unwrap();
        assert_eq!(sets.len(), 2);
        // Out of order: the second is signed by the new key, not trusted yet.
        let err = c.install(sets[1].file.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "unknown-key", "{}: {err}", db.name);
        assert!(err.hint().contains("earlier key sets first"));
        for s in &sets {
            assert!(matches!(
                c.install(s.file.as_bytes()).unwrap(),
                Installed::KeySet { .. }
            ));
        }
        // The first key set again: signed by the key now revoked (and older).
        assert_eq!(
            c.install(sets[0].file.as_bytes()).unwrap_err().code(),
            "key-revoked"
        );
        assert!(matches!(
            c.install(sets[1].file.as_bytes()).unwrap(),
            Installed::KeySetAlreadyInstalled { version: 2 }
        ));
        // The license the leaked key signed no longer counts…
        let status = c.status().unwrap();
        assert!(
            matches!(&status.violations[..], [Violation::InvalidLicense { reason }] if reason.contains("revoked")),
            "{}: {:?}",
            db.name,
            status.violations
        );
        // …nor does anything else it signs, e.g. a refresh forged by whoever holds it.
        let refresh = format::Refresh {
            pool_seats: None,
            license_id: "x".into(),
            activation_id: act.clone(),
            product: "photo-pro".into(),
            device_key: Bytes32(device_key(dir.path()).public().to_bytes()),
            serial: 99,
            features: BTreeMap::new(),
            license_type: format::LicenseType::Perpetual,
            expires: None,
            offline_expiry: None,
            clock_tolerance: 0,
            clock_floor: None,
            reason: "free upgrade".into(),
            issued: chrono::Utc::now(),
        };
        let forged = format::sign(&refresh, &leaked).unwrap();
        let err = c.install(forged.bytes()).unwrap_err();
        assert_eq!(err.code(), "key-revoked", "{}: {err}", db.name);
        assert!(err.to_string().contains("leaked"), "{err}");
        // The vendor signs the activation's license again: the device works on.
        let resigned = portal.resign(&act, &who()).await.unwrap();
        assert!(matches!(
            c.install(resigned.license.as_bytes()).unwrap(),
            Installed::Resigned { .. }
        ));
        assert!(c.status().unwrap().is_valid(), "{}", db.name);
        // The portal's trust bundle for new installations leaves the revoked key out.
        let bundle = portal.trusted_keys().await.unwrap();
        assert!(bundle.get(&leaked.kid()).is_none());
        assert!(!bundle.to_pem().contains(&leaked.public().to_pem()));
    }
}

// ----- 6. a deleted or reset state -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_store_reactivates_with_the_counted_consumption_and_cannot_pass_the_limit() {
    for db in backends().await {
        let Activated {
            portal,
            license_id,
            key,
            dir,
            c,
            act,
            ..
        } = activated(&db).await;
        c.consume("render-minutes", 900).unwrap();
        upload(&portal, &c.usage_report().unwrap()).await.unwrap();
        // Support extended the license, then took export-pdf away.
        let refresh = |features: Option<format::Features>| lic_portal::ops::RefreshSpec {
            reason: "test".into(),
            extend_days: Some(30),
            features,
            ..Default::default()
        };
        let generous = portal.refresh(&act, &refresh(None), &who()).await.unwrap();
        c.install(generous.as_bytes()).unwrap();
        let mut fewer = c.status().unwrap().entitlements.unwrap().features;
        fewer.remove("export-pdf");
        let current = portal
            .refresh(&act, &refresh(Some(fewer)), &who())
            .await
            .unwrap();
        c.install(current.as_bytes()).unwrap();
        // Deleting state.bin is noticed on the device…
        std::fs::remove_file(dir.path().join(lic_core::store::STATE_FILE)).unwrap();
        let status = c.status().unwrap();
        assert_eq!(status.violations[0].code(), "store-tampered");
        assert!(matches!(
            c.consume("render-minutes", 1).unwrap_err(),
            ClientError::Violation(Violation::StoreTampered { .. })
        ));
        // …so the customer writes a fresh state with their own key (or resets the store)
        // and asks again for the seat the device holds.
        reset_store(dir.path());
        let again = activate(&portal, &c, &key).await;
        assert_eq!(again, act, "{}: the same seat", db.name);
        assert_eq!(used(&c, "render-minutes"), 900, "{}", db.name);
        // The license issued again goes on from the last refresh: the older one is a
        // rollback, the last one is already in force.
        let e = c.status().unwrap().entitlements.unwrap();
        assert_eq!(
            (e.serial, e.features.contains_key("export-pdf")),
            (3, false)
        );
        assert_eq!(
            c.install(generous.as_bytes()).unwrap_err().code(),
            "rollback",
            "{}",
            db.name
        );
        assert!(matches!(
            c.install(current.as_bytes()).unwrap(),
            Installed::RefreshAlreadyApplied { serial: 3 }
        ));
        let err = c.consume("render-minutes", 101).unwrap_err();
        assert_eq!(
            err.code(),
            "limit-exceeded",
            "{}: 900 + 101 > 1000",
            db.name
        );
        c.consume("render-minutes", 100).unwrap();
        upload(&portal, &c.usage_report().unwrap()).await.unwrap();
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage["render-minutes"], 1000, "{}", db.name);
        let a = portal.activation(&act).await.unwrap();
        assert_eq!(a.reactivations, 1);
        assert_eq!(flags(&a), ["reactivation"], "{}", db.name);
        let audit = portal.audit_log(50, Some(&act)).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "activation.reactivate"));
    }
}

/// A customer who resets the store again and again (or signs request after request with
/// their own device key) raises a flag each time: the activation keeps the first
/// MAX_FLAGS_PER_KIND and counts the rest, so its rows and every listing stay bounded, and
/// support still sees how many there were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_past_the_limit_per_kind_are_counted_not_kept() {
    let max = usize::try_from(lic_portal::ops::MAX_FLAGS_PER_KIND).unwrap();
    let extra = 7;
    for db in backends().await {
        let Activated {
            portal,
            key,
            dir,
            c,
            act,
            ..
        } = activated(&db).await;
        for _ in 0..max + extra {
            reset_store(dir.path());
            assert_eq!(activate(&portal, &c, &key).await, act, "{}", db.name);
        }
        let a = portal.activation(&act).await.unwrap();
        assert_eq!(a.reactivations, i64::try_from(max + extra).unwrap());
        assert_eq!(a.flags.len(), max, "{}: the first ones kept", db.name);
        assert!(a.flags.iter().all(|f| f.kind == "reactivation"));
        let repeats: Vec<u64> = a.flags.iter().map(|f| f.repeats).collect();
        let last = repeats.len() - 1;
        assert_eq!(repeats[last], extra as u64, "{}: the rest counted", db.name);
        assert!(repeats[..last].iter().all(|&r| r == 0), "{repeats:?}");
        // The listing says the same, and the latest flag is still the activation's.
        let listed = portal.activations(None, None).await.unwrap();
        let listed = listed.iter().find(|l| l.id == act).unwrap();
        assert_eq!(listed.flags, a.flags, "{}", db.name);
        assert!(a.fork.as_deref().unwrap_or("").starts_with("reactivated"));
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM activation_flags")
            .fetch_one(portal.db().pool())
            .await
            .unwrap();
        assert_eq!(rows, i64::try_from(max).unwrap(), "{}", db.name);
    }
}

// ----- 7. a closed account -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_after_its_deactivation_cannot_report_or_deactivate_again() {
    for db in backends().await {
        let Activated {
            portal,
            license_id,
            keys,
            dir,
            c,
            act,
            ..
        } = activated(&db).await;
        c.consume("render-minutes", 10).unwrap();
        upload(&portal, &c.usage_report().unwrap()).await.unwrap();
        let backup = tempfile::tempdir().unwrap();
        copy_store(dir.path(), backup.path());
        // A report written before the deactivation but uploaded after it.
        c.consume("render-minutes", 5).unwrap();
        let late = c.usage_report().unwrap();
        upload(&portal, &c.deactivate().unwrap()).await.unwrap();
        let before = accounts(portal.db()).await;
        let err = upload(&portal, &late).await.unwrap_err();
        assert_eq!(err.code(), "superseded", "{}: {err}", db.name);
        assert_eq!(portal.activation(&act).await.unwrap().flags, []);
        // The backup from before the deactivation brings the license back on the device
        // (an offline scheme cannot stop that) — but nothing it sends is accepted.
        let restored = device(backup.path(), "m1", keys.clone());
        assert!(restored.status().unwrap().is_valid());
        restored.consume("render-minutes", 50).unwrap();
        for file in [
            restored.usage_report().unwrap(),
            restored.deactivate().unwrap(),
        ] {
            let err = upload(&portal, &file).await.unwrap_err();
            assert_eq!(err.code(), "activation-closed", "{}: {err}", db.name);
            assert_eq!(err.status(), 409);
        }
        assert_eq!(
            accounts(portal.db()).await,
            before,
            "{}: no receipt, nothing counted",
            db.name
        );
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage["render-minutes"], 15);
        // Recorded as evidence, for staff.
        let a = portal.activation(&act).await.unwrap();
        assert_eq!(
            flags(&a),
            ["after-deactivation", "after-deactivation"],
            "{}",
            db.name
        );
        assert_eq!(a.closed_by.as_deref(), Some("device"));
        let audit = portal.audit_log(50, Some(&act)).await.unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.action == "activation.closed-file-refused")
                .count(),
            2
        );
    }
}

// ----- 8. policies ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_an_unknown_component_or_an_unusable_feature_name_is_refused_when_made() {
    for db in backends().await {
        let portal = portal(&db).await;
        type Change = Box<dyn Fn(&mut Policy)>;
        let variants: Vec<(&str, Change)> = vec![
            (
                "an unknown component",
                Box::new(|p| p.match_rule.required = vec!["machine_id".into()]),
            ),
            (
                "a blank component",
                Box::new(|p| p.match_rule.required = vec![" ".into()]),
            ),
            (
                "a component twice",
                Box::new(|p| {
                    p.match_rule.required = vec!["machine-id".into(), "machine-id".into()]
                }),
            ),
            (
                "a blank feature",
                Box::new(|p| {
                    p.features.insert(" ".into(), Feature::default());
                }),
            ),
            (
                "a feature with a control character",
                Box::new(|p| {
                    p.features.insert("pdf\u{1b}[2J".into(), Feature::default());
                }),
            ),
            (
                "a limit beyond the largest counter",
                Box::new(|p| {
                    p.features.insert(
                        "f".into(),
                        Feature {
                            limit: Some(MAX_COUNTER + 1),
                            overage: false,
                            max_overage: None,
                            floating: None,
                        },
                    );
                }),
            ),
            (
                "an overage cap beyond the largest counter",
                Box::new(|p| {
                    p.features.insert(
                        "f".into(),
                        Feature {
                            limit: Some(10),
                            overage: true,
                            max_overage: Some(MAX_COUNTER + 1),
                            floating: None,
                        },
                    );
                }),
            ),
            (
                "a license-level limit beyond the largest counter",
                Box::new(|p| {
                    p.total_limits.insert("f".into(), MAX_COUNTER + 1);
                }),
            ),
            (
                "a license-level limit of a feature without a usable name",
                Box::new(|p| {
                    p.total_limits.insert("render minutes".into(), 10);
                }),
            ),
        ];
        for (what, change) in variants {
            let mut p = policy(1);
            change(&mut p);
            let err = portal.create_policy(p, &who()).await.unwrap_err();
            assert_eq!(err.code(), "invalid", "{}: {what}: {err}", db.name);
        }
        assert_eq!(portal.policies(None).await.unwrap(), []);
        // An activation against a good policy still works (the rule was never narrowed).
        let (_, key) = license(&portal, policy(1)).await;
        let dir = tempfile::tempdir().unwrap();
        portal
            .apply(&request(dir.path(), "m1", &key), &who())
            .await
            .unwrap();
    }
}
