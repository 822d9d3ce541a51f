//! Races between different operations on the same activation or license, on SQLite and
//! on PostgreSQL (where transactions really run at once): seats and usage counts hold
//! whatever arrives at the same moment.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{backends, device, license, policy, portal};
use lic_core::format::Credential;
use lic_portal::{Actor, Portal};

fn who() -> Actor {
    Actor("race".into())
}

/// Activate a new device of `key` on `portal`; returns its client and activation id.
async fn activated(
    portal: &Portal,
    dir: &std::path::Path,
    machine: &str,
    key: &str,
) -> (lic_core::client::Client, String) {
    let keys = portal.trusted_keys().await.unwrap();
    let c = device(dir, machine, keys);
    let req = c
        .request_activation(Credential::LicenseKey(key.into()))
        .unwrap();
    let lic = portal
        .apply(req.armored().as_bytes(), &who())
        .await
        .unwrap();
    c.install(lic.response.as_bytes()).unwrap();
    (c, lic.activation.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_side_deactivation_and_the_device_file_at_once_free_one_seat() {
    const ROUNDS: usize = 12;
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(ROUNDS as i64 + 1)).await;
        // One device that stays: the seat count must not fall below it.
        let stay = tempfile::tempdir().unwrap();
        activated(&portal, stay.path(), "m-stay", &key).await;
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        for i in 0..ROUNDS {
            let dir = tempfile::tempdir().unwrap();
            let (c, act) = activated(&portal, dir.path(), &format!("m-{i}"), &key).await;
            c.consume("render-minutes", 3).unwrap();
            files.push((act, c.deactivate().unwrap().armored().into_bytes()));
            dirs.push(dir);
        }
        let mut tasks = Vec::new();
        for (act, file) in files {
            let portal = Arc::clone(&portal);
            tasks.push(tokio::spawn(async move {
                let actor = who();
                let (server, device) = tokio::join!(
                    portal.deactivate(&act, "machine retired", &actor),
                    portal.apply(&file, &actor),
                );
                // Whichever came second finds the activation ended: the server side says
                // so, the device file is still applied (its consumption counts).
                if let Err(e) = &server {
                    assert_eq!(e.code(), "not-active", "{e}");
                }
                device.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let info = portal.license(&license_id).await.unwrap();
        let active = portal
            .activations(Some(&license_id), None)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.state == "active")
            .count();
        assert_eq!(active, 1, "{}", db.name);
        assert_eq!(
            info.seats_used, 1,
            "{}: each activation freed its seat exactly once",
            db.name
        );
        assert_eq!(
            info.usage.get("render-minutes"),
            Some(&(3 * ROUNDS as i64)),
            "{}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_usage_reports_of_one_device_at_once_count_each_unit_once() {
    const DEVICES: usize = 6;
    const REPORTS: u64 = 8;
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(DEVICES as i64)).await;
        let mut dirs = Vec::new();
        let mut reports = Vec::new();
        for d in 0..DEVICES {
            let dir = tempfile::tempdir().unwrap();
            let (c, _) = activated(&portal, dir.path(), &format!("m-{d}"), &key).await;
            // Each report carries the cumulative count: 1, 2, … REPORTS.
            for _ in 0..REPORTS {
                c.consume("render-minutes", 1).unwrap();
                reports.push(c.usage_report().unwrap().armored().into_bytes());
            }
            dirs.push(dir);
        }
        let mut tasks = Vec::new();
        for file in reports {
            let portal = Arc::clone(&portal);
            tasks.push(tokio::spawn(
                async move { portal.apply(&file, &who()).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(
            info.usage.get("render-minutes"),
            Some(&(DEVICES as i64 * REPORTS as i64)),
            "{}: every unit counted once, whatever the order",
            db.name
        );
        for a in portal.activations(Some(&license_id), None).await.unwrap() {
            assert_eq!(
                a.usage.get("render-minutes"),
                Some(&(REPORTS as i64)),
                "{}: the last reported value is the highest",
                db.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_device_asking_several_times_at_once_holds_one_seat() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(5)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = device(dir.path(), "m", keys);
        // Eight different requests (each its own nonce) from the same device key.
        let requests: Vec<Vec<u8>> = (0..8)
            .map(|_| {
                c.request_activation(Credential::LicenseKey(key.clone()))
                    .unwrap()
                    .armored()
                    .into_bytes()
            })
            .collect();
        let mut tasks = Vec::new();
        for file in requests {
            let portal = Arc::clone(&portal);
            tasks.push(tokio::spawn(
                async move { portal.apply(&file, &who()).await },
            ));
        }
        let mut activations = std::collections::BTreeSet::new();
        for t in tasks {
            let applied = t.await.unwrap().unwrap();
            activations.insert(applied.activation.unwrap());
        }
        assert_eq!(activations.len(), 1, "{}: {activations:?}", db.name);
        assert_eq!(
            portal.license(&license_id).await.unwrap().seats_used,
            1,
            "{}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotations_at_once_leave_one_active_key() {
    for db in backends().await {
        let first = Arc::new(portal(&db).await);
        let conn = lic_portal::db::Db::connect(&db.url).await.unwrap();
        // A second instance on the same database (and, here, the same key directory).
        let second = Arc::new(Portal::open(conn, db.keys_dir()).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..8 {
            let p = Arc::clone(if i % 2 == 0 { &first } else { &second });
            tasks.push(tokio::spawn(async move { p.rotate_key(&who()).await }));
        }
        let mut rotated = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => rotated += 1,
                Err(e) => assert_eq!(e.code(), "conflict", "{}: {e}", db.name),
            }
        }
        assert!(rotated >= 1, "{}", db.name);
        let keys = lic_portal::vendor::list(first.db()).await.unwrap();
        assert_eq!(
            keys.iter().filter(|k| k.active).count(),
            1,
            "{}: {keys:?}",
            db.name
        );
        // Init's key and every rotation that won, each recorded once.
        assert_eq!(keys.len(), rotated + 1, "{}", db.name);
    }
}
