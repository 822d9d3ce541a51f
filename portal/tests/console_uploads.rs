//! The console's uploads (`/console/uploads`) through the router, on SQLite and
//! PostgreSQL: several files at once, each applied on its own with its own result (a bad
//! one refused with message, hint and code, changing nothing, the others applied), the
//! responses downloadable; a forged form, a role the account lacks and a file of another
//! product refused as the API's apply refuses them.

#![allow(clippy::unwrap_used)]

mod common;
mod console2_support;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{backends, license, policy, portal, snapshot};
use console2_support::{
    Staff, activate, app, between, get, post_files, send, staff, video_license,
};
use lic_portal::PortalError;
use lic_portal::auth::Role;
use lic_portal::http::ApiError;

/// The text of result row `n` (1-based) of an upload's page.
fn row(body: &str, n: usize) -> String {
    between(body, &format!("<tr id=\"result-{n}\""), "</tr>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_each_get_a_result_and_a_bad_one_changes_nothing() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (id, key) = license(&portal, policy(3)).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut devices = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            devices.push(activate(&portal, dir.path(), &format!("m-{i}"), &key).await);
        }
        let deactivation = devices[0].0.deactivate().unwrap().armored();
        devices[1].0.consume("render-minutes", 42).unwrap();
        let report = devices[1].0.usage_report().unwrap().armored();
        // A deactivation whose signature no longer holds: one character of it changed.
        let mut tampered = devices[2].0.deactivate().unwrap().armored().into_bytes();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let huge = vec![b'x'; 70 * 1024];

        let app = app(&portal);
        let support = staff(&portal, "sam", Role::Support, None).await;
        let form = send(&app, get("/console/uploads", &support)).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(
            form.body
                .contains("type=\"file\" id=\"files\" name=\"files\" multiple"),
            "{}",
            form.body
        );
        assert!(form.body.contains("enctype=\"multipart/form-data\""));

        // The bad files alone change nothing.
        let before = snapshot(portal.db()).await;
        let r = send(
            &app,
            post_files(
                "/console/uploads",
                &support,
                Some(&support.csrf),
                &[("bad.deact", &tampered), ("huge.lic", &huge)],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.name, r.body);
        assert!(r.body.contains("0 of 2 file(s) applied"), "{}", r.body);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        let huge_row = row(&r.body, 2);
        assert!(
            huge_row.contains("class=\"code\">file-too-large<") || huge_row.contains("too-large"),
            "{huge_row}"
        );

        // Together with good ones: each its own result.
        let r = send(
            &app,
            post_files(
                "/console/uploads",
                &support,
                Some(&support.csrf),
                &[
                    ("dev-0.deact", deactivation.as_bytes()),
                    ("bad.deact", &tampered),
                    ("dev-1.usage", report.as_bytes()),
                ],
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.name, r.body);
        assert!(r.body.contains("2 of 3 file(s) applied"), "{}", r.body);
        let first = row(&r.body, 1);
        assert!(
            first.contains("dev-0.deact") && first.contains("deactivation"),
            "{first}"
        );
        assert!(
            first.contains(&format!("Seat freed on license {id}")),
            "{first}"
        );
        assert!(first.contains("download=\"dev-0.receipt\""), "{first}");
        let second = row(&r.body, 2);
        assert!(
            second.contains("class=\"refused\"") && second.contains("Refused: "),
            "{second}"
        );
        assert!(second.contains("What to do:"), "{second}");
        let code = between(&second, "class=\"code\">", "<");
        assert!(!code.is_empty(), "{second}");
        let third = row(&r.body, 3);
        assert!(
            third.contains(&format!("Usage counted on license {id}")),
            "{third}"
        );

        // Applied: one seat fewer, the usage counted; the tampered device still holds its seat.
        let after = portal.license(&id).await.unwrap();
        assert_eq!(after.seats_used, 2, "{}", db.name);
        assert_eq!(after.usage.get("render-minutes"), Some(&42));
        assert_eq!(
            portal.activation(&devices[0].1).await.unwrap().state,
            "deactivated"
        );
        assert_eq!(
            portal.activation(&devices[2].1).await.unwrap().state,
            "active"
        );
        let audit = portal.audit_log(50, None).await.unwrap();
        assert!(audit.iter().any(|a| a.actor == "staff:sam"), "{audit:?}");

        // The receipt downloads, and is the vendor's.
        let token = between(&first, "href=\"/download/", "\"");
        let receipt = send(&app, get(&format!("/download/{token}"), &support)).await;
        assert_eq!(receipt.status, StatusCode::OK);
        assert!(receipt.body.contains("RECEIPT"), "{}", receipt.body);

        // The same deactivation again: applied before, nothing changed.
        let before = snapshot(portal.db()).await;
        let r = send(
            &app,
            post_files(
                "/console/uploads",
                &support,
                Some(&support.csrf),
                &[("dev-0.deact", deactivation.as_bytes())],
            ),
        )
        .await;
        assert!(row(&r.body, 1).contains("Applied before"), "{}", r.body);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forms_missing_roles_and_other_products_are_refused() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (_, key) = license(&portal, policy(2)).await;
        video_license(&portal).await;
        let dir = tempfile::tempdir().unwrap();
        let (client, _) = activate(&portal, dir.path(), "m-0", &key).await;
        let deactivation = client.deactivate().unwrap().armored();
        let file = [("dev.deact", deactivation.as_bytes())];
        let app = app(&portal);
        let before = snapshot(portal.db()).await;

        let support = staff(&portal, "sam", Role::Support, None).await;
        for csrf in [None, Some("0".repeat(64).as_str()), Some("")] {
            let r = send(&app, post_files("/console/uploads", &support, csrf, &file)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}: {}", db.name, r.body);
            assert!(r.body.contains("nothing was done"), "{}", r.body);
        }
        // Read-only may not upload.
        let reader = staff(&portal, "rita", Role::ReadOnly, None).await;
        let r = send(&app, get("/console/uploads", &reader)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send(
            &app,
            post_files("/console/uploads", &reader, Some(&reader.csrf), &file),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // Support limited to video-pro: the photo-pro file is "unknown", as the API says.
        let scoped = staff(&portal, "vic", Role::Support, Some(&["video-pro"])).await;
        let r = send(
            &app,
            post_files("/console/uploads", &scoped, Some(&scoped.csrf), &file),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let refused = row(&r.body, 1);
        let unknown = ApiError::from(PortalError::UnknownActivation {
            activation: "X".into(),
        });
        assert_eq!(
            between(&refused, "class=\"code\">", "<"),
            unknown.code(),
            "{refused}"
        );
        // No file at all.
        let r = send(
            &app,
            post_files("/console/uploads", &support, Some(&support.csrf), &[]),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(r.body.contains("no file was chosen"), "{}", r.body);
        // Too much at once: refused whole before anything is applied.
        let big = vec![b'x'; 60 * 1024];
        let many: Vec<(&str, &[u8])> = (0..23).map(|_| ("big.lic", big.as_slice())).collect();
        let r = send(
            &app,
            post_files("/console/uploads", &support, Some(&support.csrf), &many),
        )
        .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
        assert!(
            r.body.contains("too-large") && r.body.contains("nothing was applied"),
            "{}",
            r.body
        );
        // More files than one upload applies: the extra one is refused on its own row.
        let tiny: Vec<(&str, &[u8])> = (0..21).map(|_| ("t.txt", b"x".as_slice())).collect();
        let r = send(
            &app,
            post_files("/console/uploads", &support, Some(&support.csrf), &tiny),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(row(&r.body, 21).contains("too-many-files"), "{}", r.body);
        assert!(row(&r.body, 20).contains("armor-missing"), "{}", r.body);
        // No session.
        let anon = Staff {
            cookie: "x=1".into(),
            csrf: String::new(),
        };
        let r = send(&app, post_files("/console/uploads", &anon, Some(""), &file)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}
