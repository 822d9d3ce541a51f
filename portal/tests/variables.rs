//! Device variables at the portal, on SQLite and on PostgreSQL: shown after activation,
//! updated by a usage report, kept from the newer file when an older report arrives late,
//! final from the deactivation; and files whose variables break the limits, signed by the
//! device's own key, refused with nothing changed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{backends, device, license, policy, portal, snapshot};
use lic_core::format::{self, Credential, UsageReport, Variables};
use lic_core::store::Store;
use lic_portal::Actor;

fn who() -> Actor {
    Actor("test".into())
}

fn vars(pairs: &[(&str, &str)]) -> Variables {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activation_shows_the_variables_of_the_newest_file_of_the_journal() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(2)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let store = tempfile::tempdir().unwrap();
        let client = device(store.path(), "m-1", keys.clone());

        // Set before activation: they come with the request.
        client.set_variable("site", "Lab 2").unwrap();
        client.set_variable("workstation.id", "WS-0042").unwrap();
        let req = client
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let applied = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        let id = applied.activation.clone().unwrap();
        client.install(applied.response.as_bytes()).unwrap();
        let shown = portal.activation(&id).await.unwrap();
        assert_eq!(
            shown.variables,
            vars(&[("site", "Lab 2"), ("workstation.id", "WS-0042")]),
            "{}",
            db.name
        );

        // A usage report replaces them with the device's set as it stands.
        client.set_variable("site", "Lab 3").unwrap();
        client.remove_variable("workstation.id").unwrap();
        let older = client.usage_report().unwrap();
        client.set_variable("site", "Lab 4").unwrap();
        client.set_variable("operator", "ada").unwrap();
        let newer = client.usage_report().unwrap();
        portal
            .apply(newer.armored().as_bytes(), &who())
            .await
            .unwrap();
        let newest = vars(&[("operator", "ada"), ("site", "Lab 4")]);
        assert_eq!(
            portal.activation(&id).await.unwrap().variables,
            newest,
            "{}",
            db.name
        );

        // The older report arrives late: counted in the journal, but its variables do
        // not overwrite the newer ones.
        let late = portal
            .apply(older.armored().as_bytes(), &who())
            .await
            .unwrap();
        assert!(late.flags.is_empty(), "{}: {:?}", db.name, late.flags);
        assert_eq!(
            portal.activation(&id).await.unwrap().variables,
            newest,
            "{}",
            db.name
        );
        // Applying it again (a replay) changes nothing either.
        portal
            .apply(older.armored().as_bytes(), &who())
            .await
            .unwrap();
        assert_eq!(portal.activation(&id).await.unwrap().variables, newest);

        // The deactivation carries the final values.
        client.set_variable("site", "Lab 5").unwrap();
        let deactivation = client.deactivate().unwrap();
        portal
            .apply(deactivation.armored().as_bytes(), &who())
            .await
            .unwrap();
        let last = portal.activation(&id).await.unwrap();
        assert_eq!(last.state, "deactivated");
        assert_eq!(
            last.variables,
            vars(&[("operator", "ada"), ("site", "Lab 5")]),
            "{}",
            db.name
        );
        // Listed with the activation too.
        let listed = portal.activations(None, None).await.unwrap();
        assert_eq!(listed[0].variables, last.variables);

        // A device without variables: the activation shows none.
        let other = tempfile::tempdir().unwrap();
        let plain = device(other.path(), "m-2", keys.clone());
        let req = plain
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let applied = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        let shown = portal
            .activation(applied.activation.as_deref().unwrap())
            .await
            .unwrap();
        assert!(shown.variables.is_empty(), "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactivation_takes_the_variables_of_its_request() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(1)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let store = tempfile::tempdir().unwrap();
        let client = device(store.path(), "m-1", keys.clone());
        client.set_variable("site", "before reset").unwrap();
        let req = client
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let applied = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        let id = applied.activation.clone().unwrap();
        client.install(applied.response.as_bytes()).unwrap();
        // The store is reset (same device key): a new request for the seat it holds.
        common::reset_store(store.path());
        let client = device(store.path(), "m-1", keys.clone());
        client.set_variable("site", "after reset").unwrap();
        let req = client
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let again = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        assert_eq!(
            again.activation.as_deref(),
            Some(id.as_str()),
            "{}",
            db.name
        );
        assert_eq!(
            portal.activation(&id).await.unwrap().variables,
            vars(&[("site", "after reset")]),
            "{}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_files_with_variables_beyond_the_limits_are_refused_and_change_nothing() {
    for db in backends().await {
        let portal = portal(&db).await;
        let (_, key) = license(&portal, policy(2)).await;
        let keys = portal.trusted_keys().await.unwrap();
        let store = tempfile::tempdir().unwrap();
        let client = device(store.path(), "m-1", keys.clone());
        client.set_variable("site", "Lab 2").unwrap();
        let req = client
            .request_activation(Credential::LicenseKey(key.clone()))
            .unwrap();
        let applied = portal
            .apply(req.armored().as_bytes(), &who())
            .await
            .unwrap();
        let id = applied.activation.clone().unwrap();
        client.install(applied.response.as_bytes()).unwrap();
        // The customer signs what they like with the device's own key: the portal holds
        // the variables to the limits all the same.
        let device_key = Store::open(store.path()).unwrap().device_key().unwrap();
        let next = format::open::<UsageReport>(
            client.usage_report().unwrap().bytes(),
            &lic_core::keys::Keyring::new(),
        )
        .unwrap()
        .into_payload();
        let crafted = |variables: Variables| {
            let report = UsageReport {
                variables,
                counters: [("render-minutes".to_string(), 7)].into(),
                ..next.clone()
            };
            // (Signed without the writer's checks, as a crafted file is.)
            let mut value = ciborium::Value::serialized(&report).unwrap();
            if let ciborium::Value::Map(entries) = &mut value {
                entries.push(("v".into(), 1.into()));
            }
            format::cbor::canonicalize(&mut value);
            format::sign_raw(
                format::FileKind::UsageReport,
                format::cbor::encode_value(&value),
                &device_key,
            )
            .unwrap()
            .armored()
        };
        let cases = [
            (
                "10,000 variables",
                crafted(
                    (0..10_000)
                        .map(|i| (format!("v{i}"), "x".to_string()))
                        .collect(),
                ),
                "too-large",
            ),
            (
                "a value of 1 MB",
                crafted(vars(&[("site", &"x".repeat(1 << 20))])),
                "too-large",
            ),
            (
                "65 variables",
                crafted(
                    (0..65)
                        .map(|i| (format!("v{i}"), "x".to_string()))
                        .collect(),
                ),
                "payload-invalid",
            ),
            (
                "a value of 1025 bytes",
                crafted(vars(&[("site", &"x".repeat(1025))])),
                "payload-invalid",
            ),
            (
                "a name with a space",
                crafted(vars(&[("site name", "x")])),
                "payload-invalid",
            ),
            (
                "20 KB of variables together",
                crafted(
                    (0..20)
                        .map(|i| (format!("v{i}"), "x".repeat(1000)))
                        .collect(),
                ),
                "payload-invalid",
            ),
        ];
        for (what, file, code) in cases {
            let before = snapshot(portal.db()).await;
            let err = portal.apply(file.as_bytes(), &who()).await.unwrap_err();
            assert_eq!(err.code(), code, "{}: {what}: {err}", db.name);
            assert!(err.status() >= 400 && err.status() < 500, "{what}");
            assert!(!err.hint().is_empty(), "{what}");
            if code == "payload-invalid" {
                assert!(err.to_string().contains("variable"), "{what}: {err}");
            }
            assert_eq!(snapshot(portal.db()).await, before, "{}: {what}", db.name);
        }
        assert_eq!(
            portal.activation(&id).await.unwrap().variables,
            vars(&[("site", "Lab 2")])
        );
    }
}
