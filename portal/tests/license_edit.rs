//! Editing a license after creation (seats, expiry, features, offline use, status), on
//! SQLite and PostgreSQL: each field, the audit entry, what is refused (and changes
//! nothing), suspension, an edit made through one portal instance seen by another's next
//! activation, and the devices out of date refreshed in bulk, by the library and by the
//! admin command, installing on the devices.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{TestDb, backends, device, license, policy, portal, reset_store, snapshot};
use lic_core::client::{Client, Installed, new_instance};
use lic_core::format::{self, Credential, Feature, Features, LeaseAction, License};
use lic_portal::ops::{LicenseEdit, RefreshSpec};
use lic_portal::{Actor, Portal, PortalError};
use serde_json::{Value, json};

fn who() -> Actor {
    Actor("test".into())
}

fn features(specs: &[(&str, Option<u64>, bool)]) -> Features {
    specs
        .iter()
        .map(|(name, limit, overage)| {
            (
                name.to_string(),
                Feature {
                    limit: *limit,
                    overage: *overage,
                    max_overage: None,
                    floating: None,
                },
            )
        })
        .collect()
}

/// 2030-01-01T00:00:00Z.
const JAN_2030: i64 = 1_893_456_000;

/// A device in `dir` activated on `key`: the client and its activation id.
async fn activate(portal: &Portal, dir: &Path, machine: &str, key: &str) -> (Client, String) {
    let keys = portal.trusted_keys().await.unwrap();
    let c = device(dir, machine, keys);
    let req = c
        .request_activation(Credential::LicenseKey(key.into()))
        .unwrap();
    let applied = portal
        .apply(req.armored().as_bytes(), &who())
        .await
        .unwrap();
    c.install(applied.response.as_bytes()).unwrap();
    (c, applied.activation.unwrap())
}

/// The license file an activation request got, opened.
async fn license_file(portal: &Portal, armored: &str) -> License {
    let keys = portal.trusted_keys().await.unwrap();
    format::open::<License>(armored.as_bytes(), &keys)
        .unwrap()
        .into_payload()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_can_be_edited_and_each_edit_is_audited_with_its_reason_and_changes() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (id, _) = license(&portal, policy(2)).await;
        let before = portal.license(&id).await.unwrap();
        assert_eq!(before.revision, 0);

        let gold = features(&[
            ("export-pdf", None, false),
            ("render-minutes", Some(50), true),
        ]);
        let edited = portal
            .edit_license(
                &id,
                LicenseEdit {
                    seats: Some(5),
                    expires: Some(Some(JAN_2030)),
                    features: Some(gold.clone()),
                    allow_offline: Some(false),
                    status: Some("suspended".into()),
                    total_limits: Some([("render-minutes".to_string(), 500)].into()),
                    refuse_over_total: Some(true),
                },
                "order 7781: upgrade",
                &who(),
            )
            .await
            .unwrap();
        let l = &edited.license;
        assert_eq!(l.seats, 5, "{}", db.name);
        assert_eq!(l.expires, Some(JAN_2030));
        assert_eq!(l.features.as_ref(), Some(&gold));
        assert_eq!(l.allow_offline, Some(false));
        assert_eq!(l.status, "suspended");
        assert_eq!(l.total_limits.get("render-minutes"), Some(&500));
        assert!(l.refuse_over_total);
        assert_eq!(l.revision, 1);
        let fields: Vec<_> = edited.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "seats",
                "expires",
                "features",
                "allow_offline",
                "status",
                "total_limits",
                "refuse_over_total"
            ]
        );
        assert_eq!(edited.changes[0].before, json!(2));
        assert_eq!(edited.changes[0].after, json!(5));
        assert_eq!(edited.changes[1].before, Value::Null);
        assert_eq!(edited.changes[1].after, json!(JAN_2030));
        assert_eq!(portal.license(&id).await.unwrap(), edited.license);

        // The audit entry: the reason, and every field before → after.
        let audit = portal.audit_log(10, Some(&id)).await.unwrap();
        let entry = audit.iter().find(|e| e.action == "license.edit").unwrap();
        assert_eq!(entry.reason.as_deref(), Some("order 7781: upgrade"));
        assert_eq!(entry.actor, "test");
        let detail: Value = serde_json::from_str(entry.detail.as_deref().unwrap()).unwrap();
        assert_eq!(
            detail[0],
            json!({"field": "seats", "before": 2, "after": 5})
        );
        assert_eq!(detail[4]["after"], "suspended");

        // One field at a time; the others stay.
        for (edit, field) in [
            (
                LicenseEdit {
                    status: Some("active".into()),
                    ..Default::default()
                },
                "status",
            ),
            (
                LicenseEdit {
                    allow_offline: Some(true),
                    ..Default::default()
                },
                "allow_offline",
            ),
            (
                LicenseEdit {
                    seats: Some(1),
                    ..Default::default()
                },
                "seats",
            ),
        ] {
            let e = portal
                .edit_license(&id, edit, "ticket 2", &who())
                .await
                .unwrap();
            assert_eq!(e.changes.len(), 1, "{}: {:?}", db.name, e.changes);
            assert_eq!(e.changes[0].field, field);
        }
        let l = portal.license(&id).await.unwrap();
        assert_eq!(
            (l.seats, l.status.as_str(), l.allow_offline, l.revision),
            (1, "active", Some(true), 4)
        );
        assert_eq!(l.expires, Some(JAN_2030));

        // An edit to what the license already is: nothing written, nothing audited.
        let snap = snapshot(portal.db()).await;
        let same = portal
            .edit_license(
                &id,
                LicenseEdit {
                    seats: Some(1),
                    ..Default::default()
                },
                "again",
                &who(),
            )
            .await
            .unwrap();
        assert!(same.changes.is_empty());
        assert_eq!(snapshot(portal.db()).await, snap, "{}", db.name);
        let edits = portal.audit_log(50, Some(&id)).await.unwrap();
        assert_eq!(
            edits.iter().filter(|e| e.action == "license.edit").count(),
            4
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_without_a_validity_period_can_be_made_to_never_expire() {
    for db in backends().await {
        let portal = portal(&db).await;
        let mut spec = policy(1);
        spec.validity_days = None;
        let (id, key) = license(&portal, spec).await;
        let set = LicenseEdit {
            expires: Some(Some(JAN_2030)),
            ..Default::default()
        };
        portal
            .edit_license(&id, set, "trial", &who())
            .await
            .unwrap();
        let never = LicenseEdit {
            expires: Some(None),
            ..Default::default()
        };
        let e = portal
            .edit_license(&id, never, "bought it", &who())
            .await
            .unwrap();
        assert_eq!(e.license.expires, None, "{}", db.name);
        assert_eq!(e.changes[0].before, json!(JAN_2030));
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = activate(&portal, dir.path(), "m", &key).await;
        let status = c.status().unwrap();
        assert_eq!(status.entitlements.unwrap().expires, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_edits_say_why_and_change_nothing() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (id, _) = license(&portal, policy(2)).await;
        let (revoked, _) = license(
            &portal,
            lic_portal::ops::Policy {
                name: "other".into(),
                ..policy(2)
            },
        )
        .await;
        portal
            .revoke_license(&revoked, "chargeback", &who())
            .await
            .unwrap();
        let snap = snapshot(portal.db()).await;
        let audit_before = portal.audit_log(1000, None).await.unwrap().len();
        let seats = |n| LicenseEdit {
            seats: Some(n),
            ..Default::default()
        };
        let cases: Vec<(&str, LicenseEdit, &str, &str, &str)> = vec![
            ("lic_nope", seats(3), "r", "not-found", "lic_nope"),
            (&id, seats(3), "  ", "invalid", "reason"),
            (
                &id,
                LicenseEdit::default(),
                "r",
                "invalid",
                "nothing to change",
            ),
            (&id, seats(0), "r", "invalid", "at least one seat"),
            (
                &id,
                LicenseEdit {
                    status: Some("paused".into()),
                    ..Default::default()
                },
                "r",
                "invalid",
                "\"paused\" is not a status",
            ),
            (
                &id,
                LicenseEdit {
                    status: Some("revoked".into()),
                    ..Default::default()
                },
                "r",
                "invalid",
                "license revoke",
            ),
            (
                &id,
                LicenseEdit {
                    expires: Some(Some(1_000_000)),
                    ..Default::default()
                },
                "r",
                "invalid",
                "in the past",
            ),
            (
                &id,
                LicenseEdit {
                    expires: Some(Some(i64::MAX)),
                    ..Default::default()
                },
                "r",
                "invalid",
                "before the year 10000",
            ),
            (
                // The policy gives each activation 365 days: "never" would not be never.
                &id,
                LicenseEdit {
                    expires: Some(None),
                    ..Default::default()
                },
                "r",
                "invalid",
                "365 days",
            ),
            (
                &id,
                LicenseEdit {
                    features: Some(features(&[("render minutes", Some(5), false)])),
                    ..Default::default()
                },
                "r",
                "invalid",
                "render minutes",
            ),
            (
                &revoked,
                LicenseEdit {
                    status: Some("active".into()),
                    ..Default::default()
                },
                "r",
                "invalid",
                "final",
            ),
            (&revoked, seats(5), "r", "invalid", "final"),
        ];
        for (license, edit, reason, code, says) in cases {
            let what = format!("{}: {license} {edit:?} {reason:?}", db.name);
            let e = portal
                .edit_license(license, edit, reason, &who())
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{what}: {e}");
            assert!(e.to_string().contains(says), "{what}: {e}");
        }
        assert_eq!(snapshot(portal.db()).await, snap, "{}", db.name);
        assert_eq!(
            portal.audit_log(1000, None).await.unwrap().len(),
            audit_before
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_below_those_in_use_are_refused_with_what_to_do() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (id, key) = license(&portal, policy(3)).await;
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        activate(&portal, a.path(), "m-a", &key).await;
        let (_, act_b) = activate(&portal, b.path(), "m-b", &key).await;
        let snap = snapshot(portal.db()).await;
        let one = LicenseEdit {
            seats: Some(1),
            ..Default::default()
        };
        let e = portal
            .edit_license(&id, one.clone(), "downgrade", &who())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                PortalError::SeatsInUse {
                    seats: 1,
                    in_use: 2,
                    ..
                }
            ),
            "{}: {e:?}",
            db.name
        );
        assert_eq!(e.code(), "seats-in-use");
        assert_eq!(e.status(), 409);
        let message = e.to_string();
        assert!(
            message.contains("2 of its seats are held") && message.contains("free 1"),
            "{message}"
        );
        assert!(e.hint().contains("activation deactivate"), "{}", e.hint());
        assert_eq!(snapshot(portal.db()).await, snap);

        // Down to the seats in use is fine: the license is then full.
        let two = LicenseEdit {
            seats: Some(2),
            ..Default::default()
        };
        portal
            .edit_license(&id, two, "downgrade", &who())
            .await
            .unwrap();
        let keys = portal.trusted_keys().await.unwrap();
        let req = device(c.path(), "m-c", keys)
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let full = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap_err();
        assert_eq!(full.code(), "no-seat-left", "{}", db.name);
        // After a deactivation, one seat is possible.
        portal.deactivate(&act_b, "moved", &who()).await.unwrap();
        portal
            .edit_license(&id, one, "downgrade", &who())
            .await
            .unwrap();
        assert_eq!(portal.license(&id).await.unwrap().seats, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_license_gives_no_seat_reissue_or_refresh_until_it_is_active_again() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (id, key) = license(&portal, policy(3)).await;
        let a = tempfile::tempdir().unwrap();
        let keys = portal.trusted_keys().await.unwrap();
        let ca = device(a.path(), "m-a", keys.clone());
        let first = ca
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap()
            .armored();
        let applied = portal.apply(first.as_bytes(), &who()).await.unwrap();
        ca.install(applied.response.as_bytes()).unwrap();
        let act_a = applied.activation.unwrap();
        let suspend = LicenseEdit {
            status: Some("suspended".into()),
            ..Default::default()
        };
        portal
            .edit_license(&id, suspend, "unpaid invoice 12", &who())
            .await
            .unwrap();

        // A new device: no seat.
        let b = tempfile::tempdir().unwrap();
        let req_b = device(b.path(), "m-b", keys.clone())
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap()
            .armored();
        let e = portal.apply(req_b.as_bytes(), &who()).await.unwrap_err();
        assert!(
            matches!(e, PortalError::LicenseSuspended { .. }),
            "{}: {e:?}",
            db.name
        );
        assert_eq!((e.code(), e.status()), ("license-suspended", 403));
        // The device that holds a seat asks again from a reset store: no reissue.
        reset_store(a.path());
        let again = device(a.path(), "m-a", keys.clone())
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap()
            .armored();
        let e = portal.apply(again.as_bytes(), &who()).await.unwrap_err();
        assert_eq!(e.code(), "license-suspended", "{}", db.name);
        // No refresh.
        let spec = RefreshSpec {
            reason: "renewal".into(),
            extend_days: Some(30),
            ..Default::default()
        };
        let e = portal.refresh(&act_a, &spec, &who()).await.unwrap_err();
        assert_eq!(e.code(), "license-suspended", "{}", db.name);
        // A request applied before gets its license again (as after a revocation).
        let replay = portal.apply(first.as_bytes(), &who()).await.unwrap();
        assert!(replay.replay);
        assert_eq!(portal.license(&id).await.unwrap().seats_used, 1);

        // Active again: everything works.
        let resume = LicenseEdit {
            status: Some("active".into()),
            ..Default::default()
        };
        portal
            .edit_license(&id, resume, "paid", &who())
            .await
            .unwrap();
        let got = portal.apply(req_b.as_bytes(), &who()).await.unwrap();
        assert_eq!(got.response_kind, "license", "{}", db.name);
        let reissued = portal.apply(again.as_bytes(), &who()).await.unwrap();
        assert_eq!(reissued.activation.as_deref(), Some(act_a.as_str()));
        portal.refresh(&act_a, &spec, &who()).await.unwrap();
        assert_eq!(portal.license(&id).await.unwrap().seats_used, 2);
    }
}

/// A second portal instance on the same database (its own cache, its own writer).
async fn second_instance(db: &TestDb) -> Portal {
    let conn = lic_portal::db::Db::connect(&db.url).await.unwrap();
    Portal::open(conn, db.keys_dir()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_through_one_instance_is_in_force_for_the_next_activation_on_another() {
    for db in backends().await {
        let one = portal(&db).await;
        let two = second_instance(&db).await;
        let (id, key) = license(&one, policy(5)).await;
        let keys = one.trusted_keys().await.unwrap();
        let request = |machine: &str| {
            let dir = tempfile::tempdir().unwrap();
            let req = device(dir.path(), machine, keys.clone())
                .request_activation(Credential::LicenseKey(key.clone()))
                .unwrap()
                .armored();
            (dir, req)
        };
        // Instance two activates once: it has the license in its cache now.
        let (_d1, r1) = request("m-1");
        let first = two.apply(r1.as_bytes(), &who()).await.unwrap();
        let file = license_file(&two, &first.response).await;
        assert!(file.features.contains_key("export-pdf"), "{}", db.name);

        // Instance one edits the features and the expiry.
        let gold = features(&[("batch-jobs", Some(100), true)]);
        let edit = LicenseEdit {
            features: Some(gold.clone()),
            expires: Some(Some(JAN_2030)),
            ..Default::default()
        };
        one.edit_license(&id, edit, "upgrade", &who())
            .await
            .unwrap();
        let (_d2, r2) = request("m-2");
        let second = two.apply(r2.as_bytes(), &who()).await.unwrap();
        let file = license_file(&two, &second.response).await;
        assert_eq!(file.features, gold, "{}: a stale cached license", db.name);
        assert_eq!(file.expires.map(|t| t.timestamp()), Some(JAN_2030));
        // The response recorded is the one sent (a replay gets the same file).
        let replay = two.apply(r2.as_bytes(), &who()).await.unwrap();
        assert_eq!(replay.response, second.response);

        // Offline use refused through one: two refuses; allowed again: two activates,
        // though its cache held the refusal's copy.
        let no = LicenseEdit {
            allow_offline: Some(false),
            ..Default::default()
        };
        one.edit_license(&id, no, "policy change", &who())
            .await
            .unwrap();
        let (_d3, r3) = request("m-3");
        let e = two.apply(r3.as_bytes(), &who()).await.unwrap_err();
        assert_eq!(e.code(), "offline-not-allowed", "{}", db.name);
        let yes = LicenseEdit {
            allow_offline: Some(true),
            ..Default::default()
        };
        one.edit_license(&id, yes, "policy change undone", &who())
            .await
            .unwrap();
        let third = two.apply(r3.as_bytes(), &who()).await.unwrap();
        assert_eq!(third.response_kind, "license", "{}", db.name);

        // A suspension through one is in force on two at once; and seats too.
        let suspend = LicenseEdit {
            status: Some("suspended".into()),
            ..Default::default()
        };
        one.edit_license(&id, suspend, "unpaid", &who())
            .await
            .unwrap();
        let (_d4, r4) = request("m-4");
        let e = two.apply(r4.as_bytes(), &who()).await.unwrap_err();
        assert_eq!(e.code(), "license-suspended", "{}", db.name);
        let resume = LicenseEdit {
            status: Some("active".into()),
            seats: Some(3),
            ..Default::default()
        };
        one.edit_license(&id, resume, "paid", &who()).await.unwrap();
        let e = two.apply(r4.as_bytes(), &who()).await.unwrap_err();
        assert_eq!(e.code(), "no-seat-left", "{}", db.name);
        assert_eq!(two.license(&id).await.unwrap().seats_used, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_out_of_date_are_listed_and_their_refreshes_install() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (id, key) = license(&portal, policy(3)).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut devices = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            devices.push(activate(&portal, dir.path(), &format!("m-{i}"), &key).await);
        }
        assert!(
            portal.outdated(&id).await.unwrap().is_empty(),
            "{}",
            db.name
        );
        // One device is deactivated: it is not listed.
        portal
            .deactivate(&devices[2].1, "lost", &who())
            .await
            .unwrap();
        // Support gave device 1 a longer expiry by a refresh: it differs from the license
        // already, before any edit.
        let spec = RefreshSpec {
            reason: "goodwill".into(),
            extend_days: Some(10),
            ..Default::default()
        };
        let r = portal.refresh(&devices[1].1, &spec, &who()).await.unwrap();
        devices[1].0.install(r.as_bytes()).unwrap();
        let listed = portal.outdated(&id).await.unwrap();
        assert_eq!(listed.len(), 1, "{}: {listed:?}", db.name);
        assert_eq!(listed[0].activation, devices[1].1);
        assert_eq!(listed[0].differs, ["expires"]);

        let gold = features(&[
            ("export-pdf", None, false),
            ("render-minutes", Some(5000), false),
        ]);
        let edit = LicenseEdit {
            features: Some(gold.clone()),
            expires: Some(Some(JAN_2030)),
            ..Default::default()
        };
        portal
            .edit_license(&id, edit, "upgrade", &who())
            .await
            .unwrap();
        let listed = portal.outdated(&id).await.unwrap();
        let mut ids: Vec<_> = listed.iter().map(|o| o.activation.as_str()).collect();
        ids.sort_unstable();
        let mut expected = [devices[0].1.as_str(), devices[1].1.as_str()];
        expected.sort_unstable();
        assert_eq!(ids, expected, "{}", db.name);
        for o in &listed {
            assert_eq!(o.differs, ["features", "expires"]);
            assert_eq!(o.granted.features, gold);
            assert_eq!(o.granted.expires, Some(JAN_2030));
            // Device 1 had a refresh: serial 2.
            let serial = if o.activation == devices[1].1 { 2 } else { 1 };
            assert_eq!(o.serial, serial);
        }

        for o in &listed {
            let (client, _) = devices.iter().find(|(_, a)| *a == o.activation).unwrap();
            let refresh = portal
                .refresh_to_license(&o.activation, "upgrade SO-9", &who())
                .await
                .unwrap()
                .unwrap();
            let installed = client.install(refresh.as_bytes()).unwrap();
            let next = u64::try_from(o.serial).unwrap() + 1;
            assert!(
                matches!(installed, Installed::Refresh { to_serial, .. } if to_serial == next),
                "{}: {installed:?}",
                db.name
            );
            let e = client.status().unwrap().entitlements.unwrap();
            assert_eq!(e.features, gold);
            assert_eq!(e.expires.map(|t| t.timestamp()), Some(JAN_2030));
            let audit = portal.audit_log(10, Some(&o.activation)).await.unwrap();
            assert!(
                audit.iter().any(|a| a.action == "activation.refresh"
                    && a.reason.as_deref() == Some("upgrade SO-9")),
                "{audit:?}"
            );
        }
        assert!(
            portal.outdated(&id).await.unwrap().is_empty(),
            "{}",
            db.name
        );
        // Up to date: nothing is made.
        let none = portal
            .refresh_to_license(&devices[0].1, "again", &who())
            .await
            .unwrap();
        assert!(none.is_none());
        let e = portal.outdated("lic_nope").await.unwrap_err();
        assert_eq!(e.code(), "not-found");
    }
}

// ----- the admin command ------------------------------------------------------------------

fn bin(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-portal"));
    cmd.env_remove("LIC_PORTAL_DATA")
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .arg("--data")
        .arg(db.dir.path())
        .arg("--database")
        .arg(&db.url)
        .arg("--keys")
        .arg(db.keys_dir());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_edits_lists_and_refreshes_every_outdated_device_in_one_go() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (id, key) = license(&portal, policy(3)).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut devices = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            devices.push(activate(&portal, dir.path(), &format!("m-{i}"), &key).await);
        }
        let db = std::sync::Arc::new(db);
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("refreshes");
        let (db2, id2, out2) = (db.clone(), id.clone(), out.clone());
        let act0 = devices[0].1.clone();
        let (edit, bad, listed, first, second) = tokio::task::spawn_blocking(move || {
            let run = |args: &[&str]| bin(&db2).args(args).output().unwrap();
            let edit = run(&[
                "license",
                "edit",
                &id2,
                "--seats",
                "4",
                "--feature",
                "export-pdf",
                "--feature",
                "render-minutes=5000+",
                "--expires",
                "2030-01-01",
                "--reason",
                "order 12",
            ]);
            let bad = run(&[
                "license",
                "edit",
                &id2,
                "--expires",
                "soon",
                "--reason",
                "x",
            ]);
            let listed = run(&["license", "outdated", &id2]);
            // A file in the way for one device: it is reported, the others go on.
            std::fs::create_dir_all(&out2).unwrap();
            std::fs::write(out2.join(format!("{act0}.refresh.lic")), "in the way").unwrap();
            let refresh = |out2: &Path| {
                run(&[
                    "refresh",
                    "--license",
                    &id2,
                    "--all-outdated",
                    "--out-dir",
                    out2.to_str().unwrap(),
                    "--reason",
                    "upgrade SO-12",
                ])
            };
            let first = refresh(&out2);
            let kept = std::fs::read_to_string(out2.join(format!("{act0}.refresh.lic"))).unwrap();
            assert_eq!(kept, "in the way", "a file in the way was replaced");
            std::fs::remove_file(out2.join(format!("{act0}.refresh.lic"))).unwrap();
            let second = refresh(&out2);
            (edit, bad, listed, first, second)
        })
        .await
        .unwrap();
        let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
        let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
        assert!(edit.status.success(), "{}: {edit:?}", db.name);
        assert!(text(&edit).contains("seats: 3 → 4"), "{}", text(&edit));
        assert!(
            text(&edit).contains("3 active device(s)"),
            "{}",
            text(&edit)
        );
        assert_eq!(bad.status.code(), Some(2), "{bad:?}");
        assert!(err(&bad).contains("'soon'"), "{}", err(&bad));
        assert!(listed.status.success());
        assert_eq!(text(&listed).lines().count(), 3, "{}", text(&listed));
        assert!(
            text(&listed).contains(
                "features export-pdf render-minutes=1000 → export-pdf render-minutes=5000+"
            ),
            "{}",
            text(&listed)
        );
        // The first run: one device failed (its file was in the way), two refreshed.
        assert_eq!(first.status.code(), Some(1), "{}: {first:?}", db.name);
        assert!(err(&first).contains("already exists"), "{}", err(&first));
        assert!(
            err(&first).contains("3 device(s) out of date: 2 refresh file(s) written, 1 failed"),
            "{}",
            err(&first)
        );
        // The second run: only that device was left.
        assert!(second.status.success(), "{second:?}");
        assert!(
            err(&second).contains("1 device(s) out of date: 1 refresh file(s) written, 0 failed"),
            "{}",
            err(&second)
        );
        for (client, act) in &devices {
            let file = std::fs::read(out.join(format!("{act}.refresh.lic"))).unwrap();
            assert!(
                matches!(client.install(&file).unwrap(), Installed::Refresh { .. }),
                "{}",
                db.name
            );
            let e = client.status().unwrap().entitlements.unwrap();
            assert_eq!(
                e.features.get("render-minutes").and_then(|f| f.limit),
                Some(5000)
            );
        }
        assert!(portal.outdated(&id).await.unwrap().is_empty());
        let audit = portal.audit_log(10, Some(&id)).await.unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.action == "license.edit" && e.reason.as_deref() == Some("order 12"))
                .count(),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floating_license_with_leased_seats_is_edited_and_lists_no_lease_as_outdated() {
    for db in backends().await {
        let portal = portal(&db).await;
        let mut spec = policy(2);
        spec.floating = true;
        spec.lease_secs = 600;
        let (id, key) = license(&portal, spec).await;
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m-0", portal.trusted_keys().await.unwrap());
        let asked = c
            .lease_request(
                Some(Credential::LicenseKey(key)),
                LeaseAction::Take,
                new_instance(),
                None,
            )
            .unwrap();
        portal
            .lease(
                asked.file.armored().as_bytes(),
                LeaseAction::Take,
                false,
                &who(),
            )
            .await
            .unwrap();
        // A leased seat was issued no license (its request's recorded answer is empty):
        // each lease carries what the license grants, so it is never out of date. (It was
        // read as a license file: `armor-missing`, failing every edit's listing.)
        assert!(
            portal.outdated(&id).await.unwrap().is_empty(),
            "{}",
            db.name
        );
        let edit = LicenseEdit {
            features: Some(features(&[("export-pdf", None, false)])),
            ..Default::default()
        };
        portal
            .edit_license(&id, edit, "fewer features", &who())
            .await
            .unwrap();
        assert!(
            portal.outdated(&id).await.unwrap().is_empty(),
            "{}",
            db.name
        );
        // The admin command lists the devices out of date after its edit: it succeeds.
        let out = bin(&db)
            .args(["--format", "json", "license", "edit", &id])
            .args(["--status", "suspended", "--reason", "test"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {out:?}", db.name);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["outdated"], 0, "{}: {doc}", db.name);
        assert_eq!(doc["license"]["status"], "suspended", "{}: {doc}", db.name);
    }
}
