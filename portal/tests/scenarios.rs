//! The portal's scenarios, each run on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    backends, copy_store, device, license, policy, portal, request, reset_store, snapshot,
    store_with_key_of,
};
use lic_core::client::Installed;
use lic_core::format::{self, Credential, Receipt};
use lic_portal::ops::{NewLicense, RefreshSpec};
use lic_portal::{Actor, PortalError};

fn who() -> Actor {
    Actor("test".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_loop_frees_the_seat_adds_consumption_and_the_receipt_verifies() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (license_id, key) = license(&portal, policy(2)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let store = tempfile::tempdir().unwrap();
        let client = device(store.path(), "m-1", keys.clone());

        let req = client
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let applied = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        assert_eq!(applied.response_kind, "license", "{}", db.name);
        assert!(matches!(
            client.install(applied.response.as_bytes()).unwrap(),
            Installed::License { .. }
        ));
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 1);

        client.consume("render-minutes", 40).unwrap();
        let report = client.usage_report().unwrap();
        let r = portal
            .apply(report.armored().as_bytes(), &who())
            .await
            .unwrap();
        assert_eq!(r.response_kind, "receipt");
        assert_eq!(
            portal
                .license(&license_id)
                .await
                .unwrap()
                .usage
                .get("render-minutes"),
            Some(&40)
        );

        client.consume("render-minutes", 2).unwrap();
        let deactivation = client.deactivate().unwrap();
        let applied = portal
            .apply(deactivation.armored().as_bytes(), &who())
            .await
            .unwrap();
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.seats_used, 0, "{}: the seat is free", db.name);
        assert_eq!(
            info.usage.get("render-minutes"),
            Some(&42),
            "{}: 40 + 2, not 40 + 42",
            db.name
        );
        let receipt = format::open::<Receipt>(applied.response.as_bytes(), &keys).unwrap();
        assert_eq!(receipt.file_hash, deactivation.hash());
        assert_eq!(receipt.state, "deactivated");
        let activation = portal
            .activation(applied.activation.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(activation.state, "deactivated");
        assert_eq!(activation.fork, None);
        let audit = portal.audit_log(100, None).await.unwrap();
        for action in ["activation.create", "usage.report", "activation.deactivate"] {
            assert!(
                audit.iter().any(|a| a.action == action),
                "{}: no {action} in the audit log",
                db.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_twenty_attempts_five_seats_exactly_five_activations() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(5)).await;
        // 640 distinct devices' requests, made up front.
        let dirs: Vec<_> = (0..32 * 20).map(|_| tempfile::tempdir().unwrap()).collect();
        let requests: Vec<Vec<u8>> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| request(d.path(), &format!("machine-{i}"), &key))
            .collect();
        let requests = Arc::new(requests);
        let mut tasks = Vec::new();
        for client in 0..32 {
            let (portal, requests) = (Arc::clone(&portal), Arc::clone(&requests));
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for attempt in 0..20 {
                    let r = portal
                        .apply(&requests[client * 20 + attempt], &Actor("load".into()))
                        .await;
                    outcomes.push(r.map(|_| ()).map_err(|e| e.code()));
                }
                outcomes
            }));
        }
        let mut ok = 0;
        for t in tasks {
            for outcome in t.await.unwrap() {
                match outcome {
                    Ok(()) => ok += 1,
                    Err(code) => assert_eq!(code, "no-seat-left", "{}: unexpected error", db.name),
                }
            }
        }
        assert_eq!(ok, 5, "{}", db.name);
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 5);
        assert_eq!(
            portal
                .activations(Some(&license_id), None)
                .await
                .unwrap()
                .len(),
            5
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_deactivation_applied_32_times_at_once_frees_one_seat_and_counts_once() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(3)).await;
        let keys = portal.trusted_keys().await.unwrap();
        // Two devices hold seats; one deactivates.
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (dir, m) in [(&a, "m-a"), (&b, "m-b")] {
            let c = device(dir.path(), m, keys.clone());
            let req = c
                .request_activation(Credential::LicenseKey(key.clone()))
                .unwrap();
            let lic = portal
                .apply(req.armored().as_bytes(), &who())
                .await
                .unwrap();
            c.install(lic.response.as_bytes()).unwrap();
        }
        let c = device(a.path(), "m-a", keys.clone());
        c.consume("render-minutes", 7).unwrap();
        let file = Arc::new(c.deactivate().unwrap().armored().into_bytes());
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (portal, file) = (Arc::clone(&portal), Arc::clone(&file));
            tasks.push(tokio::spawn(async move {
                portal.apply(&file, &Actor("x".into())).await.unwrap()
            }));
        }
        let mut receipts = Vec::new();
        for t in tasks {
            receipts.push(t.await.unwrap().response);
        }
        receipts.dedup();
        assert_eq!(
            receipts.len(),
            1,
            "{}: every application returns the same receipt",
            db.name
        );
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.seats_used, 1, "{}: exactly one seat freed", db.name);
        assert_eq!(
            info.usage.get("render-minutes"),
            Some(&7),
            "{}: counted once",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_twice_returns_the_same_license_and_one_seat() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (license_id, key) = license(&portal, policy(3)).await;
        let dir = tempfile::tempdir().unwrap();
        let req = request(dir.path(), "m", &key);
        let first = portal.apply(&req, &who()).await.unwrap();
        let second = portal.apply(&req, &who()).await.unwrap();
        assert_eq!(first.response, second.response);
        assert!(second.replay && !first.replay);
        assert_eq!(
            portal.license(&license_id).await.unwrap().seats_used,
            1,
            "{}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_a_reason_and_change_nothing() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(1)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys.clone());
        let req = c
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let lic = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        c.install(lic.response.as_bytes()).unwrap();
        let report = c.usage_report().unwrap();

        let fixture = |name: &str| std::fs::read(lic_fixtures::dir().join(name)).unwrap();
        let mut tampered = report.bytes().to_vec();
        let at = tampered.len() - 70;
        tampered[at] ^= 1;
        let other_dir = tempfile::tempdir().unwrap();
        let unknown_key = request(other_dir.path(), "m2", "NOPE-NOPE-NOPE");
        // A usage report for this activation, signed by another device.
        let stranger = device(other_dir.path(), "m3", keys.clone());
        let forged = {
            let r = format::UsageReport {
                activation_id: lic.activation.clone().unwrap(),
                product: "photo-pro".into(),
                counters: [("render-minutes".to_string(), 999)].into(),
                journal: format::JournalHead {
                    seq: 9,
                    prev: format::Bytes32([0; 32]),
                    trail: Vec::new(),
                },
                created: chrono::Utc::now(),
                variables: Default::default(),
            };
            let key = lic_core::keys::SecretKey::generate();
            let _ = &stranger;
            format::sign(&r, &key).unwrap().armored().into_bytes()
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("garbage", b"hello".to_vec(), "armor-missing"),
            ("tampered report", tampered, "bad-signature"),
            (
                "truncated",
                fixture("invalid/truncated.lic"),
                "armor-truncated",
            ),
            ("oversized", fixture("invalid/oversized.lic"), "too-large"),
            (
                "a license uploaded",
                lic.response.clone().into_bytes(),
                "invalid",
            ),
            ("unknown license key", unknown_key, "unknown-license"),
            ("another device's report", forged, "wrong-signer"),
            (
                "a second seat",
                {
                    let d = tempfile::tempdir().unwrap();
                    request(d.path(), "m9", &key)
                },
                "no-seat-left",
            ),
            (
                "fixture request for an unknown key",
                fixture("valid/activation-request.req"),
                "unknown-license",
            ),
            (
                "deactivation of an unknown activation",
                fixture("valid/deactivation.deact"),
                "unknown-activation",
            ),
        ];
        for (what, bytes, code) in cases {
            let before = snapshot(portal.db()).await;
            let err = portal.apply(&bytes, &who()).await.unwrap_err();
            assert_eq!(err.code(), code, "{}: {what}: {err}", db.name);
            assert!(err.status() >= 400 && err.status() < 500, "{what}");
            assert!(!err.to_string().is_empty() && !err.hint().is_empty());
            assert_eq!(
                snapshot(portal.db()).await,
                before,
                "{}: {what} changed the database",
                db.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_replayed_or_out_of_order_never_double_count_and_forks_are_flagged() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (license_id, key) = license(&portal, policy(1)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys.clone());
        let req = c.request_activation(Credential::LicenseKey(key)).unwrap();
        let lic = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        c.install(lic.response.as_bytes()).unwrap();
        c.consume("render-minutes", 10).unwrap();
        let r1 = c.usage_report().unwrap();
        c.consume("render-minutes", 5).unwrap();
        let r2 = c.usage_report().unwrap();
        // Newer first, then the older one, then the newer again.
        portal.apply(r2.armored().as_bytes(), &who()).await.unwrap();
        portal.apply(r1.armored().as_bytes(), &who()).await.unwrap();
        let again = portal.apply(r2.armored().as_bytes(), &who()).await.unwrap();
        assert!(again.replay);
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage.get("render-minutes"), Some(&15), "{}", db.name);
        // r1 came after r2, which named it: a late upload of the device's own history,
        // not a fork — nothing is flagged.
        let act = lic.activation.as_deref().unwrap();
        let activation = portal.activation(act).await.unwrap();
        assert_eq!(activation.flags, [], "{}", db.name);
        // A report with an older sequence that the device's history does not hold (a
        // restored backup that wrote its own first report) is a fork.
        let restored = tempfile::tempdir().unwrap();
        copy_store(dir.path(), restored.path());
        c.consume("render-minutes", 1).unwrap();
        let r3 = c.usage_report().unwrap();
        portal.apply(r3.armored().as_bytes(), &who()).await.unwrap();
        let old = device(restored.path(), "m", keys.clone());
        let forked = old.usage_report().unwrap();
        portal
            .apply(forked.armored().as_bytes(), &who())
            .await
            .unwrap();
        let activation = portal.activation(act).await.unwrap();
        assert!(
            activation
                .flags
                .iter()
                .any(|f| f.kind == "fork" && f.detail.contains("journal sequence 3")),
            "{}: {:?}",
            db.name,
            activation.flags
        );
        let audit = portal.audit_log(100, Some(act)).await.unwrap();
        assert!(audit.iter().any(|a| a.action == "journal.fork"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_refreshes_are_serial_plus_one_audited_and_install_on_the_device() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(1)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys.clone());
        let req = c.request_activation(Credential::LicenseKey(key)).unwrap();
        let lic = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        c.install(lic.response.as_bytes()).unwrap();
        let act = lic.activation.unwrap();

        let no_reason = portal
            .refresh(&act, &RefreshSpec::default(), &who())
            .await
            .unwrap_err();
        assert_eq!(no_reason.code(), "invalid");
        let spec = RefreshSpec {
            reason: "renewal SO-1".into(),
            extend_days: Some(30),
            ..Default::default()
        };
        let r2 = portal.refresh(&act, &spec, &who()).await.unwrap();
        let r3 = portal.refresh(&act, &spec, &who()).await.unwrap();
        assert!(matches!(
            c.install(r2.as_bytes()).unwrap(),
            Installed::Refresh {
                from_serial: 1,
                to_serial: 2
            }
        ));
        assert!(matches!(
            c.install(r3.as_bytes()).unwrap(),
            Installed::Refresh {
                from_serial: 2,
                to_serial: 3
            }
        ));
        assert_eq!(portal.activation(&act).await.unwrap().serial, 3);
        let audit = portal.audit_log(100, Some(&act)).await.unwrap();
        let refreshes: Vec<_> = audit
            .iter()
            .filter(|a| a.action == "activation.refresh")
            .collect();
        assert_eq!(refreshes.len(), 2, "{}", db.name);
        assert!(
            refreshes
                .iter()
                .all(|a| a.reason.as_deref() == Some("renewal SO-1"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_rules_refuse_activation_with_clear_reasons() {
    for db in backends().await {
        let portal = portal(&db).await;
        let a = Actor::cli();
        let dir = || tempfile::tempdir().unwrap();

        // Offline activation off in the policy; a license may override it.
        let mut p = policy(2);
        p.name = "online-only".into();
        p.allow_offline = false;
        let online = portal.create_policy(p, &a).await.unwrap();
        let plain = portal
            .create_license(
                NewLicense {
                    policy: online.id.clone(),
                    ..Default::default()
                },
                &a,
            )
            .await
            .unwrap();
        let d = dir();
        let err = portal
            .apply(&request(d.path(), "m", plain.key.as_deref().unwrap()), &a)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "offline-not-allowed", "{}", db.name);
        let allowed = portal
            .create_license(
                NewLicense {
                    policy: online.id.clone(),
                    allow_offline: Some(true),
                    ..Default::default()
                },
                &a,
            )
            .await
            .unwrap();
        let d = dir();
        portal
            .apply(&request(d.path(), "m", allowed.key.as_deref().unwrap()), &a)
            .await
            .unwrap();
        // … and the other way: the policy allows it, the license refuses.
        let mut p = policy(2);
        p.name = "offline-ok".into();
        let offline_ok = portal.create_policy(p, &a).await.unwrap();
        let refused = portal
            .create_license(
                NewLicense {
                    policy: offline_ok.id.clone(),
                    allow_offline: Some(false),
                    ..Default::default()
                },
                &a,
            )
            .await
            .unwrap();
        let d = dir();
        let err = portal
            .apply(&request(d.path(), "m", refused.key.as_deref().unwrap()), &a)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "offline-not-allowed", "{}", db.name);

        // Subscriptions cannot be activated offline.
        let mut p = policy(2);
        p.name = "subscription".into();
        p.license_type = format::LicenseType::Subscription;
        let sub = portal.create_policy(p, &a).await.unwrap();
        let l = portal
            .create_license(
                NewLicense {
                    policy: sub.id,
                    ..Default::default()
                },
                &a,
            )
            .await
            .unwrap();
        let d = dir();
        let err = portal
            .apply(&request(d.path(), "m", l.key.as_deref().unwrap()), &a)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "subscription-offline");

        // A revoked license.
        let (rev, key) = license(&portal, {
            let mut p = policy(2);
            p.name = "rev".into();
            p
        })
        .await;
        portal.revoke_license(&rev, "chargeback", &a).await.unwrap();
        let d = dir();
        let err = portal
            .apply(&request(d.path(), "m", &key), &a)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "license-revoked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_control_refuses_the_next_activation_not_the_deactivation() {
    for db in backends().await {
        let portal = portal(&db).await;
        let mut p = policy(1);
        p.max_deactivations = Some(2);
        p.deactivation_period_days = Some(30);
        let (license_id, key) = license(&portal, p).await;
        let keys = portal.trusted_keys().await.unwrap();
        for round in 0..3 {
            let d = tempfile::tempdir().unwrap();
            let c = device(d.path(), &format!("m{round}"), keys.clone());
            let req = c
                .request_activation(Credential::LicenseKey(key.clone()))
                .unwrap();
            let lic = portal.apply(req.armored().as_bytes(), &who()).await;
            if round == 2 {
                let err = lic.unwrap_err();
                assert_eq!(err.code(), "too-many-deactivations", "{}", db.name);
                assert!(
                    err.to_string()
                        .contains("deactivated 2 times in the last 30 days"),
                    "{err}"
                );
                break;
            }
            let lic = lic.unwrap();
            c.install(lic.response.as_bytes()).unwrap();
            // The deactivation itself is always accepted.
            portal
                .apply(c.deactivate().unwrap().armored().as_bytes(), &who())
                .await
                .unwrap();
        }
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_deactivation_frees_the_seat_and_needs_a_reason() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (license_id, key) = license(&portal, policy(1)).await;
        let d = tempfile::tempdir().unwrap();
        let lic = portal
            .apply(&request(d.path(), "m", &key), &who())
            .await
            .unwrap();
        let act = lic.activation.unwrap();
        assert!(matches!(
            portal.deactivate(&act, " ", &who()).await,
            Err(PortalError::Invalid { .. })
        ));
        portal
            .deactivate(&act, "laptop stolen, ticket 881", &who())
            .await
            .unwrap();
        assert_eq!(
            portal.license(&license_id).await.unwrap().seats_used,
            0,
            "{}",
            db.name
        );
        assert_eq!(
            portal
                .deactivate(&act, "again", &who())
                .await
                .unwrap_err()
                .code(),
            "not-active"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_asks_again_for_its_seat_gets_it_reissued_and_flagged() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (license_id, key) = license(&portal, policy(1)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys.clone());
        let first = portal
            .apply(
                c.request_activation(Credential::LicenseKey(key.clone()))
                    .unwrap()
                    .armored()
                    .as_bytes(),
                &who(),
            )
            .await
            .unwrap();
        c.install(first.response.as_bytes()).unwrap();
        c.consume("render-minutes", 35).unwrap();
        portal
            .apply(c.usage_report().unwrap().armored().as_bytes(), &who())
            .await
            .unwrap();
        let act = first.activation.clone().unwrap();
        let spec = RefreshSpec {
            reason: "extension".into(),
            extend_days: Some(10),
            ..Default::default()
        };
        let r2 = portal.refresh(&act, &spec, &who()).await.unwrap();
        c.install(r2.as_bytes()).unwrap();
        let expires_before = c.status().unwrap().entitlements.unwrap().expires;
        // The store is reset; the same device key asks again for the one seat.
        reset_store(dir.path());
        let again = portal
            .apply(
                c.request_activation(Credential::LicenseKey(key))
                    .unwrap()
                    .armored()
                    .as_bytes(),
                &who(),
            )
            .await
            .unwrap();
        assert_eq!(
            again.activation, first.activation,
            "{}: the same seat",
            db.name
        );
        assert_ne!(again.response, first.response);
        assert!(matches!(
            c.install(again.response.as_bytes()).unwrap(),
            Installed::License { .. }
        ));
        // The device's counters start from what was reported before the reset.
        let used = |c: &lic_core::client::Client| {
            c.status()
                .unwrap()
                .features
                .iter()
                .find(|f| f.name == "render-minutes")
                .map(|f| f.used)
        };
        assert_eq!(used(&c), Some(35), "{}", db.name);
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 1);
        let activation = portal
            .activation(first.activation.as_deref().unwrap())
            .await
            .unwrap();
        assert!(
            activation
                .fork
                .as_deref()
                .unwrap_or_default()
                .starts_with("reactivated"),
            "{:?}",
            activation.fork
        );
        // The reissued license keeps the entitlements in force (no fresh validity period).
        assert_eq!(
            c.status().unwrap().entitlements.unwrap().expires,
            expires_before,
            "{}",
            db.name
        );
        // Usage after the reset counts on top of what was reported before it.
        c.consume("render-minutes", 50).unwrap();
        portal
            .apply(c.usage_report().unwrap().armored().as_bytes(), &who())
            .await
            .unwrap();
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.usage.get("render-minutes"), Some(&85), "{}", db.name);
        // Refresh serials go on above the ones issued before the reset.
        let r3 = portal.refresh(&act, &spec, &who()).await.unwrap();
        assert!(matches!(
            c.install(r3.as_bytes()).unwrap(),
            Installed::Refresh { to_serial: 3, .. }
        ));
    }
}

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<std::sync::Mutex<chrono::DateTime<chrono::Utc>>>);

impl lic_core::clock::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_by_another_instance_is_used_within_seconds() {
    for db in backends().await {
        let first = portal(&db).await;
        let clock = TestClock(Arc::new(std::sync::Mutex::new(chrono::Utc::now())));
        let conn = lic_portal::db::Db::connect(&db.url).await.unwrap();
        let serving = lic_portal::Portal::open(conn, db.keys_dir())
            .await
            .unwrap()
            .with_clock(clock.clone());
        let (_, key) = license(&first, policy(5)).await;
        let rotated = first.rotate_key(&who()).await.unwrap();
        let keys = first.trusted_keys().await.unwrap();
        let issued_by = |response: &str| {
            format::open::<format::License>(response.as_bytes(), &keys)
                .unwrap()
                .signer()
                .kid()
        };
        // Right after the rotation elsewhere the serving instance may still use the old key…
        let d = tempfile::tempdir().unwrap();
        let before = serving
            .apply(&request(d.path(), "m1", &key), &who())
            .await
            .unwrap();
        // …but once the recheck interval has passed, it signs with the new one.
        *clock.0.lock().unwrap() += chrono::Duration::seconds(11);
        let d = tempfile::tempdir().unwrap();
        let after = serving
            .apply(&request(d.path(), "m2", &key), &who())
            .await
            .unwrap();
        assert_eq!(issued_by(&after.response), rotated.kid(), "{}", db.name);
        let _ = issued_by(&before.response);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_another_product_than_its_key_is_refused_as_wrong_product() {
    for db in backends().await {
        let portal = portal(&db).await;
        portal
            .create_product("video-pro", "Video Pro", &who())
            .await
            .unwrap();
        let (_, key) = license(&portal, policy(2)).await;
        let dir = tempfile::tempdir().unwrap();
        let video = lic_core::client::Client::builder("video-pro")
            .store(dir.path())
            .open()
            .unwrap();
        let req = video
            .request_activation(Credential::LicenseKey(key))
            .unwrap();
        let before = snapshot(portal.db()).await;
        let err = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "wrong-product", "{}: {err}", db.name);
        assert!(err.to_string().contains("'photo-pro'"), "{err}");
        assert!(err.to_string().contains("'video-pro'"), "{err}");
        assert_eq!(err.status(), 400);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_based_license_is_activated_by_its_signed_in_user_or_the_vendor_never_anonymously() {
    for db in backends().await {
        let portal = portal(&db).await;
        let p = portal.create_policy(policy(2), &who()).await.unwrap();
        let created = portal
            .create_license(
                NewLicense {
                    policy: p.id,
                    user_id: Some("ada@example.com".into()),
                    ..Default::default()
                },
                &who(),
            )
            .await
            .unwrap();
        assert!(created.key.is_none());
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys);
        let req = c
            .request_activation(Credential::User("ada@example.com".into()))
            .unwrap();
        let before = snapshot(portal.db()).await;
        // Anyone could type a user id: an anonymous upload of it takes no seat, nor does
        // another user signed in.
        for actor in [
            Actor::anonymous("203.0.113.9"),
            Actor::end_user("bob@example.com", "203.0.113.9"),
        ] {
            let err = portal
                .apply(req.armored().as_bytes(), &actor)
                .await
                .unwrap_err();
            assert_eq!(err.code(), "sign-in-required", "{}: {actor:?}", db.name);
            assert_eq!(err.status(), 403);
            assert!(err.to_string().contains("ada@example.com"), "{err}");
            assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        }
        // The user, signed in on the pages, takes the seat.
        let lic = portal
            .apply(
                req.armored().as_bytes(),
                &Actor::end_user("ada@example.com", "203.0.113.9"),
            )
            .await
            .unwrap();
        assert!(!lic.replay);
        // The same request again without the sign-in: refused too, though answered
        // before (no license leaves without the sign-in).
        let err = portal
            .apply(req.armored().as_bytes(), &Actor::anonymous("203.0.113.9"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "sign-in-required", "{}", db.name);
        // The vendor applies it too (a replay: the same license).
        let again = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        assert!(again.replay);
        assert_eq!(again.response, lic.response);
        c.install(lic.response.as_bytes()).unwrap();
        assert_eq!(
            portal
                .license(&created.license.id)
                .await
                .unwrap()
                .seats_used,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_file_returns_its_first_response_and_changes_nothing() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(2)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys);
        let req = c
            .request_activation(Credential::LicenseKey(key))
            .unwrap()
            .armored();
        let lic = portal.apply(req.as_bytes(), &who()).await.unwrap();
        c.install(lic.response.as_bytes()).unwrap();
        c.consume("render-minutes", 4).unwrap();
        let report = c.usage_report().unwrap().armored();
        let receipt = portal.apply(report.as_bytes(), &who()).await.unwrap();
        let deactivation = c.deactivate().unwrap().armored();
        let final_receipt = portal.apply(deactivation.as_bytes(), &who()).await.unwrap();
        for (what, file, first) in [
            ("activation request", &req, &lic),
            ("usage report", &report, &receipt),
            ("deactivation", &deactivation, &final_receipt),
        ] {
            let before = snapshot(portal.db()).await;
            let again = portal.apply(file.as_bytes(), &who()).await.unwrap();
            assert!(again.replay, "{}: {what}", db.name);
            assert_eq!(again.response, first.response, "{}: {what}", db.name);
            assert_eq!(
                snapshot(portal.db()).await,
                before,
                "{}: replaying the {what} changed the database",
                db.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_periods_and_times_are_refused_before_anything_is_signed() {
    for db in backends().await {
        let portal = portal(&db).await;
        let a = who();
        for (what, change) in [
            (
                "validity",
                (|p: &mut lic_portal::ops::Policy| p.validity_days = Some(100_000_000))
                    as fn(&mut lic_portal::ops::Policy),
            ),
            ("no validity", |p| p.validity_days = Some(0)),
            ("tolerance", |p| p.clock_tolerance_secs = -1),
            ("offline days", |p| p.max_offline_days = Some(i64::MAX)),
            ("churn period", |p| {
                p.max_deactivations = Some(2);
                p.deactivation_period_days = Some(i64::MAX);
            }),
            ("half a churn rule", |p| p.max_deactivations = Some(2)),
        ] {
            let mut p = policy(1);
            p.name = what.into();
            change(&mut p);
            let before = snapshot(portal.db()).await;
            let err = portal.create_policy(p, &a).await.unwrap_err();
            assert_eq!(err.code(), "invalid", "{}: {what}: {err}", db.name);
            assert_eq!(snapshot(portal.db()).await, before, "{what}");
        }
        let p = portal.create_policy(policy(1), &a).await.unwrap();
        let far = NewLicense {
            policy: p.id.clone(),
            expires: Some(99_999_999_999_999),
            ..Default::default()
        };
        assert_eq!(
            portal.create_license(far, &a).await.unwrap_err().code(),
            "invalid"
        );
        let past = NewLicense {
            policy: p.id.clone(),
            expires: Some(1_000_000),
            ..Default::default()
        };
        assert_eq!(
            portal.create_license(past, &a).await.unwrap_err().code(),
            "invalid"
        );

        let (_, key) = license(&portal, {
            let mut p = policy(1);
            p.name = "fine".into();
            p
        })
        .await;
        let d = tempfile::tempdir().unwrap();
        let act = portal
            .apply(&request(d.path(), "m", &key), &a)
            .await
            .unwrap()
            .activation
            .unwrap();
        let now = chrono::Utc::now().timestamp();
        for (what, spec) in [
            (
                "a huge extension",
                RefreshSpec {
                    extend_days: Some(100_000_000),
                    ..Default::default()
                },
            ),
            (
                "a negative extension",
                RefreshSpec {
                    extend_days: Some(-5),
                    ..Default::default()
                },
            ),
            (
                "an expiry beyond the year 9999",
                RefreshSpec {
                    expires: Some(99_999_999_999_999),
                    ..Default::default()
                },
            ),
            (
                "an expiry in the past",
                RefreshSpec {
                    expires: Some(now - 86_400),
                    ..Default::default()
                },
            ),
            (
                "an expiry and an extension",
                RefreshSpec {
                    expires: Some(now + 86_400),
                    extend_days: Some(3),
                    ..Default::default()
                },
            ),
            (
                "a clock floor in the future",
                RefreshSpec {
                    clock_floor: Some(now + 30 * 86_400),
                    ..Default::default()
                },
            ),
            (
                "a clock floor before 1970",
                RefreshSpec {
                    clock_floor: Some(-5),
                    ..Default::default()
                },
            ),
        ] {
            let spec = RefreshSpec {
                reason: "ticket 1".into(),
                ..spec
            };
            let before = snapshot(portal.db()).await;
            let err = portal.refresh(&act, &spec, &a).await.unwrap_err();
            assert_eq!(err.code(), "invalid", "{}: {what}: {err}", db.name);
            assert_eq!(snapshot(portal.db()).await, before, "{what}");
        }
        assert_eq!(portal.activation(&act).await.unwrap().serial, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_rotate_to_one_key_placed_beforehand() {
    for db in backends().await {
        let first = portal(&db).await;
        let (_, key) = license(&first, policy(5)).await;
        // A second instance with a key directory of its own, holding the current key.
        let other_keys = db.dir.path().join("other-keys");
        std::fs::create_dir_all(&other_keys).unwrap();
        for entry in std::fs::read_dir(db.keys_dir()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), other_keys.join(entry.file_name())).unwrap();
        }
        let clock = TestClock(Arc::new(std::sync::Mutex::new(chrono::Utc::now())));
        let conn = lic_portal::db::Db::connect(&db.url).await.unwrap();
        let second = lic_portal::Portal::open(conn, &other_keys)
            .await
            .unwrap()
            .with_clock(clock.clone());

        // Rotating without the file on the second instance: it cannot sign until it has
        // it, and says which file to copy.
        first.rotate_key(&who()).await.unwrap();
        *clock.0.lock().unwrap() += chrono::Duration::seconds(11);
        let d = tempfile::tempdir().unwrap();
        let before = snapshot(second.db()).await;
        let err = second
            .apply(&request(d.path(), "m1", &key), &who())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "vendor-key", "{}: {err}", db.name);
        assert!(err.to_string().contains(".key.pem"), "{err}");
        assert_eq!(snapshot(second.db()).await, before);

        // The documented way: make the key, place it everywhere, then rotate to it.
        let made = db.dir.path().join("new.key.pem");
        let public = lic_portal::vendor::generate(&made, false).unwrap();
        let kid = public.kid().to_string();
        std::fs::copy(&made, other_keys.join(format!("{kid}.key.pem"))).unwrap();
        // (The second instance also needs the key the first rotation made; in real life
        // that rotation would not have happened.)
        for entry in std::fs::read_dir(db.keys_dir()).unwrap() {
            let entry = entry.unwrap();
            let _ = std::fs::copy(entry.path(), other_keys.join(entry.file_name()));
        }
        let secret = lic_core::keys::SecretKey::read(&made).unwrap();
        let rotated = first.rotate_key_to(secret, &who()).await.unwrap();
        assert_eq!(rotated.kid().to_string(), kid);
        *clock.0.lock().unwrap() += chrono::Duration::seconds(11);
        let d = tempfile::tempdir().unwrap();
        let lic = second
            .apply(&request(d.path(), "m2", &key), &who())
            .await
            .unwrap();
        let keys = first.trusted_keys().await.unwrap();
        let signer = format::open::<format::License>(lic.response.as_bytes(), &keys)
            .unwrap()
            .signer()
            .kid()
            .to_string();
        assert_eq!(signer, kid, "{}", db.name);
        // The same key twice is refused.
        let again = lic_core::keys::SecretKey::read(&made).unwrap();
        assert_eq!(
            first.rotate_key_to(again, &who()).await.unwrap_err().code(),
            "already-exists"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_effect_at_once_on_every_instance_and_replays_keep_their_license() {
    for db in backends().await {
        let first = portal(&db).await;
        let conn = lic_portal::db::Db::connect(&db.url).await.unwrap();
        let second = lic_portal::Portal::open(conn, db.keys_dir()).await.unwrap();
        let (license_id, key) = license(&first, policy(5)).await;
        let keys = first.trusted_keys().await.unwrap();
        // Both instances have just used the license (and looked it up).
        let d1 = tempfile::tempdir().unwrap();
        let c1 = device(d1.path(), "m1", keys.clone());
        let req1 = c1
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap()
            .armored();
        let lic1 = second.apply(req1.as_bytes(), &who()).await.unwrap();
        let d2 = tempfile::tempdir().unwrap();
        first
            .apply(&request(d2.path(), "m2", &key), &who())
            .await
            .unwrap();

        first
            .revoke_license(&license_id, "chargeback", &who())
            .await
            .unwrap();
        let before = snapshot(first.db()).await;
        for (instance, portal) in [("first", &first), ("second", &second)] {
            // A new device: refused.
            let d = tempfile::tempdir().unwrap();
            let err = portal
                .apply(&request(d.path(), "m3", &key), &who())
                .await
                .unwrap_err();
            assert_eq!(err.code(), "license-revoked", "{}: {instance}", db.name);
            // The device holding a seat, asking again with a new request (its store
            // lost, its key kept): refused too.
            let lost = store_with_key_of(d1.path());
            let again = device(lost.path(), "m1", keys.clone())
                .request_activation(Credential::LicenseKey(key.clone()))
                .unwrap();
            let err = portal
                .apply(again.armored().as_bytes(), &who())
                .await
                .unwrap_err();
            assert_eq!(err.code(), "license-revoked", "{}: {instance}", db.name);
            // The request applied before the revocation: its license, as before.
            let replay = portal.apply(req1.as_bytes(), &who()).await.unwrap();
            assert!(replay.replay);
            assert_eq!(replay.response, lic1.response, "{}: {instance}", db.name);
        }
        assert_eq!(snapshot(first.db()).await, before, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overage_cap_travels_in_the_license_and_the_device_stops_at_it() {
    use lic_core::client::ClientError;
    use lic_core::format::Feature;
    for db in backends().await {
        let portal = portal(&db).await;
        let mut spec = policy(1);
        spec.features.insert(
            "batch-jobs".into(),
            Feature {
                limit: Some(10),
                overage: true,
                max_overage: Some(5),
                floating: None,
            },
        );
        let (_, key) = license(&portal, spec).await;
        let store = tempfile::tempdir().unwrap();
        let client = device(store.path(), "m-1", portal.trusted_keys().await.unwrap());
        let req = client
            .request_activation(Credential::LicenseKey(key))
            .unwrap();
        let applied = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        client.install(applied.response.as_bytes()).unwrap();

        let shown = client.status().unwrap();
        let jobs = shown
            .features
            .iter()
            .find(|f| f.name == "batch-jobs")
            .unwrap();
        assert_eq!(
            (jobs.limit, jobs.max_overage),
            (Some(10), Some(5)),
            "{}",
            db.name
        );
        // Beyond the limit, within the cap: recorded as overage.
        assert_eq!(client.consume("batch-jobs", 12).unwrap().overage, 2);
        client.check(Some("batch-jobs")).unwrap();
        // Past limit + cap: refused, nothing recorded.
        let refused = client.consume("batch-jobs", 4).unwrap_err();
        assert!(
            matches!(
                refused,
                ClientError::OverageCapExceeded {
                    limit: 10,
                    max_overage: 5,
                    used: 12,
                    requested: 4,
                    ..
                }
            ),
            "{}: {refused}",
            db.name
        );
        assert_eq!(refused.code(), "overage-cap-exceeded");
        assert_eq!(client.consume("batch-jobs", 3).unwrap().total, 15);
        let used_up = client.check(Some("batch-jobs")).unwrap_err();
        assert_eq!(used_up.code(), "overage-cap-exceeded", "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_total_flags_the_report_that_passes_it_and_can_refuse_new_seats() {
    for db in backends().await {
        let portal = portal(&db).await;
        for refuse in [false, true] {
            let mut spec = policy(5);
            spec.name = format!("totals-{refuse}");
            spec.total_limits = [("render-minutes".to_string(), 100)].into();
            spec.refuse_over_total = refuse;
            let (license_id, key) = license(&portal, spec).await;
            let info = portal.license(&license_id).await.unwrap();
            assert_eq!(info.total_limits.get("render-minutes"), Some(&100));
            assert_eq!(info.refuse_over_total, refuse);
            let keys = portal.trusted_keys().await.unwrap();
            let mut devices = Vec::new();
            let mut activations = Vec::new();
            for m in 0..2 {
                let store = tempfile::tempdir().unwrap();
                let c = device(store.path(), &format!("m-{refuse}-{m}"), keys.clone());
                let req = c
                    .request_activation(Credential::LicenseKey(key.clone()))
                    .unwrap();
                let applied = portal
                    .apply(req.armored().as_bytes(), &who())
                    .await
                    .unwrap();
                c.install(applied.response.as_bytes()).unwrap();
                activations.push(applied.activation.unwrap());
                devices.push((store, c));
            }
            // 60 + 60 across the license: the second report passes the total of 100. Both
            // are counted (the use happened); the second is flagged.
            let mut flagged = Vec::new();
            for (_, c) in &devices {
                c.consume("render-minutes", 60).unwrap();
                let report = c.usage_report().unwrap();
                let r = portal
                    .apply(report.armored().as_bytes(), &who())
                    .await
                    .unwrap();
                flagged.push(r.flags);
            }
            assert!(flagged[0].is_empty(), "{}: {:?}", db.name, flagged[0]);
            assert!(
                flagged[1]
                    .iter()
                    .any(|f| f.contains("beyond its limit of 100")),
                "{}: {:?}",
                db.name,
                flagged[1]
            );
            let info = portal.license(&license_id).await.unwrap();
            assert_eq!(info.usage.get("render-minutes"), Some(&120), "{}", db.name);
            let second = portal.activation(&activations[1]).await.unwrap();
            assert!(
                second.flags.iter().any(|f| f.kind == "over-license-total"),
                "{}: {:?}",
                db.name,
                second.flags
            );
            let audit = portal.audit_log(1000, None).await.unwrap();
            assert!(
                audit.iter().any(|e| e.action == "usage.over-total"),
                "{}",
                db.name
            );

            // A third device, and the first one asking again for its seat.
            let store = tempfile::tempdir().unwrap();
            let third = device(store.path(), &format!("m-{refuse}-3"), keys.clone());
            let req = third
                .request_activation(Credential::LicenseKey(key.clone()))
                .unwrap();
            let new_seat = portal.apply(req.armored().as_bytes(), &who()).await;
            reset_store(devices[0].0.path());
            let req = devices[0]
                .1
                .request_activation(Credential::LicenseKey(key.clone()))
                .unwrap();
            let reissue = portal.apply(req.armored().as_bytes(), &who()).await;
            if refuse {
                for refused in [new_seat.unwrap_err(), reissue.unwrap_err()] {
                    assert_eq!(
                        refused.code(),
                        "license-total-reached",
                        "{}: {refused}",
                        db.name
                    );
                    assert!(
                        refused.to_string().contains("120 of its total of 100"),
                        "{refused}"
                    );
                }
                assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 2);
            } else {
                new_seat.unwrap();
                reissue.unwrap();
                assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 3);
                // Edited to refuse: the next new seat is refused at once (the cached
                // copy of the license is stale by its revision).
                portal
                    .edit_license(
                        &license_id,
                        lic_portal::ops::LicenseEdit {
                            refuse_over_total: Some(true),
                            ..Default::default()
                        },
                        "over the site's allowance",
                        &who(),
                    )
                    .await
                    .unwrap();
                let store = tempfile::tempdir().unwrap();
                let fourth = device(store.path(), "m-false-4", keys.clone());
                let req = fourth
                    .request_activation(Credential::LicenseKey(key.clone()))
                    .unwrap();
                let refused = portal
                    .apply(req.armored().as_bytes(), &who())
                    .await
                    .unwrap_err();
                assert_eq!(refused.code(), "license-total-reached", "{}", db.name);
            }
        }
    }
}
