//! The console's license edit (`/console/licenses/{license}/edit`) and the refresh files
//! of the devices an edit leaves out of date, through the router, on SQLite and
//! PostgreSQL: an edit needs a reason; a refused edit (no reason, fewer seats than in use,
//! a bad value, a forged form, a role or product the account lacks) shows why and changes
//! nothing; a granted one lists the out-of-date devices, whose refresh files install.

#![allow(clippy::unwrap_used)]

mod common;
mod console2_support;

use std::sync::Arc;

use axum::http::{StatusCode, header};
use common::{backends, license, policy, portal, snapshot};
use console2_support::{activate, app, between, get, post_form, send, staff, video_license};
use lic_core::client::Installed;
use lic_portal::auth::Role;

fn edit_fields<'a>(
    csrf: &'a str,
    seats: &'a str,
    features: &'a str,
    reason: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("seats", seats),
        ("expires", ""),
        ("features", features),
        ("total_limits", ""),
        ("status", "active"),
        ("allow_offline", ""),
        ("reason", reason),
    ]
}

const FEATURES: &str = "export-pdf render-minutes=1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_needs_a_reason_and_a_refused_edit_changes_nothing() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (id, key) = license(&portal, policy(3)).await;
        let video = video_license(&portal).await;
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        for (i, dir) in dirs.iter().enumerate() {
            activate(&portal, dir.path(), &format!("m-{i}"), &key).await;
        }
        let app = app(&portal);
        let admin = staff(&portal, "ada", Role::Admin, None).await;
        let path = format!("/console/licenses/{id}/edit");

        let form = send(&app, get(&path, &admin)).await;
        assert_eq!(form.status, StatusCode::OK, "{}: {}", db.name, form.body);
        assert!(
            form.body.contains("name=\"seats\" min=\"1\" value=\"3\""),
            "{}",
            form.body
        );
        assert!(
            form.body.contains(&format!("value=\"{FEATURES}\"")),
            "{}",
            form.body
        );
        assert!(
            form.body.contains("<label for=\"reason\">"),
            "{}",
            form.body
        );
        assert!(
            form.body
                .contains(&format!("href=\"/console/licenses/{id}\""))
        );

        let before = snapshot(portal.db()).await;
        // No reason.
        let r = send(
            &app,
            post_form(
                &path,
                &admin,
                &edit_fields(&admin.csrf, "5", FEATURES, "  "),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}: {}", db.name, r.body);
        assert!(r.body.contains("needs a reason"), "{}", r.body);
        assert!(r.body.contains("id=\"refusal-hint\""), "{}", r.body);
        assert_eq!(between(&r.body, "id=\"refusal-code\">", "<"), "invalid");
        // The values sent are kept.
        assert!(r.body.contains("value=\"5\""), "{}", r.body);
        // Fewer seats than in use: message, hint and code.
        let r = send(
            &app,
            post_form(
                &path,
                &admin,
                &edit_fields(&admin.csrf, "1", FEATURES, "shrink"),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}: {}", db.name, r.body);
        assert_eq!(
            between(&r.body, "id=\"refusal-code\">", "<"),
            "seats-in-use"
        );
        assert!(r.body.contains("2"), "{}", r.body);
        assert!(
            between(&r.body, "id=\"refusal-hint\">", "</p>").len() > 30,
            "{}",
            r.body
        );
        // A bad value.
        let r = send(
            &app,
            post_form(
                &path,
                &admin,
                &edit_fields(&admin.csrf, "3", "render-minutes=lots", "more"),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("render-minutes=lots"), "{}", r.body);
        // Nothing to change.
        let r = send(
            &app,
            post_form(
                &path,
                &admin,
                &edit_fields(&admin.csrf, "3", FEATURES, "no-op"),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("nothing to change"), "{}", r.body);
        // A forged form: another token, or none.
        for token in ["0".repeat(64), String::new()] {
            let r = send(
                &app,
                post_form(&path, &admin, &edit_fields(&token, "5", FEATURES, "forged")),
            )
            .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
            assert!(r.body.contains("nothing was done"), "{}", r.body);
        }
        // Support may not edit (403); an admin limited to another product finds no such
        // license (404, as for a missing one).
        let support = staff(&portal, "sam", Role::Support, None).await;
        let r = send(&app, get(&path, &support)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let r = send(
            &app,
            post_form(
                &path,
                &support,
                &edit_fields(&support.csrf, "5", FEATURES, "more"),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let scoped = staff(&portal, "vic", Role::Admin, Some(&["video-pro"])).await;
        let hidden = send(
            &app,
            post_form(
                &path,
                &scoped,
                &edit_fields(&scoped.csrf, "5", FEATURES, "more"),
            ),
        )
        .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
        let missing = send(&app, get("/console/licenses/lic_nope/edit", &scoped)).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            between(&hidden.body, "id=\"message\">", "<").replace(&id, "ID"),
            between(&missing.body, "id=\"message\">", "<").replace("lic_nope", "ID"),
        );
        let own = send(
            &app,
            get(&format!("/console/licenses/{video}/edit"), &scoped),
        )
        .await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.body);
        // Without a session: to the sign-in form (GET), 401 (POST).
        let anon = console2_support::Staff {
            cookie: "x=1".into(),
            csrf: String::new(),
        };
        let r = send(&app, get(&path, &anon)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let r = send(
            &app,
            post_form(&path, &anon, &edit_fields("", "5", FEATURES, "x")),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        // With a reason, it is done.
        let r = send(
            &app,
            post_form(
                &path,
                &admin,
                &edit_fields(&admin.csrf, "5", FEATURES, "bought 2 more"),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.name, r.body);
        assert!(r.body.contains("id=\"changes\""), "{}", r.body);
        assert!(
            r.body
                .contains("<th scope=\"row\">seats</th><td>3</td><td>5</td>"),
            "{}",
            r.body
        );
        // Seats only: no device is out of date.
        assert!(r.body.contains("id=\"none-outdated\""), "{}", r.body);
        assert!(r.body.contains(&format!(
            "href=\"/console/licenses/{id}\" id=\"back-to-license\""
        )));
        let after = portal.license(&id).await.unwrap();
        assert_eq!(after.seats, 5);
        let audit = portal.audit_log(20, Some(&id)).await.unwrap();
        assert!(
            audit.iter().any(|a| a.action == "license.edit"
                && a.reason.as_deref() == Some("bought 2 more")
                && a.actor == "staff:ada"),
            "{audit:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_an_edit_leaves_out_of_date_get_refresh_files_that_install() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (id, key) = license(&portal, policy(3)).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut devices = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            devices.push(activate(&portal, dir.path(), &format!("m-{i}"), &key).await);
        }
        // One device is gone: it is not listed.
        portal
            .deactivate(&devices[2].1, "lost", &lic_portal::Actor::cli())
            .await
            .unwrap();
        let app = app(&portal);
        let admin = staff(&portal, "ada", Role::Admin, None).await;
        let path = format!("/console/licenses/{id}/edit");
        let gold = "batch-jobs=100+ export-pdf render-minutes=5000";
        let mut fields = edit_fields(&admin.csrf, "3", gold, "upgrade SO-9");
        fields[2] = ("expires", "2030-01-01");
        let r = send(&app, post_form(&path, &admin, &fields)).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.name, r.body);
        assert!(
            r.body.contains("<th scope=\"row\">features</th>"),
            "{}",
            r.body
        );
        for (_, act) in &devices[..2] {
            assert!(
                r.body.contains(&format!("id=\"refresh-{act}\"")),
                "{}",
                r.body
            );
        }
        assert!(!r.body.contains(&format!("id=\"refresh-{}\"", devices[2].1)));
        assert!(
            r.body.contains("name=\"reason\" value=\"upgrade SO-9\""),
            "{}",
            r.body
        );
        assert!(r.body.contains(&format!("href=\"/console/licenses/{id}\"")));

        let refresh = format!("/console/licenses/{id}/refresh");
        // A forged form makes nothing.
        let before = snapshot(portal.db()).await;
        let forged = send(
            &app,
            post_form(
                &refresh,
                &admin,
                &[
                    ("csrf", "nope"),
                    ("activation", &devices[0].1),
                    ("reason", "x"),
                ],
            ),
        )
        .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        // An activation of no such license, and no reason: refused.
        let other = send(
            &app,
            post_form(
                &refresh,
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("activation", "act_nope"),
                    ("reason", "x"),
                ],
            ),
        )
        .await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
        let no_reason = send(
            &app,
            post_form(
                &refresh,
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("activation", &devices[0].1),
                    ("reason", ""),
                ],
            ),
        )
        .await;
        assert_eq!(
            no_reason.status,
            StatusCode::BAD_REQUEST,
            "{}",
            no_reason.body
        );
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        for (client, act) in &devices[..2] {
            let file = send(
                &app,
                post_form(
                    &refresh,
                    &admin,
                    &[
                        ("csrf", &admin.csrf),
                        ("activation", act),
                        ("reason", "upgrade SO-9"),
                    ],
                ),
            )
            .await;
            assert_eq!(file.status, StatusCode::OK, "{}: {}", db.name, file.body);
            assert_eq!(
                file.headers[header::CONTENT_DISPOSITION],
                "attachment; filename=\"license_refresh.lic\""
            );
            let installed = client.install(file.body.as_bytes()).unwrap();
            assert!(
                matches!(installed, Installed::Refresh { to_serial: 2, .. }),
                "{installed:?}"
            );
            let e = client.status().unwrap().entitlements.unwrap();
            assert_eq!(lic_portal_features(&e.features), gold);
            let audit = portal.audit_log(10, Some(act)).await.unwrap();
            assert!(
                audit.iter().any(|a| a.action == "activation.refresh"
                    && a.reason.as_deref() == Some("upgrade SO-9")
                    && a.actor == "staff:ada"),
                "{audit:?}"
            );
        }
        // Up to date now: the list is empty, and another refresh is refused as needless.
        let list = send(
            &app,
            get(&format!("/console/licenses/{id}/outdated"), &admin),
        )
        .await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(list.body.contains("id=\"none-outdated\""), "{}", list.body);
        let again = send(
            &app,
            post_form(
                &refresh,
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("activation", &devices[0].1),
                    ("reason", "again"),
                ],
            ),
        )
        .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert!(
            again.body.contains("no refresh file was made"),
            "{}",
            again.body
        );
        // Read-only may not make refresh files.
        let reader = staff(&portal, "rita", Role::ReadOnly, None).await;
        let r = send(
            &app,
            get(&format!("/console/licenses/{id}/outdated"), &reader),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

/// Features as the console's form writes them.
fn lic_portal_features(f: &lic_core::format::Features) -> String {
    f.iter()
        .map(|(name, f)| match (f.limit, f.overage) {
            (None, _) => name.clone(),
            (Some(l), true) => format!("{name}={l}+"),
            (Some(l), false) => format!("{name}={l}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
