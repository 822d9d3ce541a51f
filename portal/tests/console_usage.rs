//! The console's usage charts (`/console/usage`, `/console/usage/{license}`) through the
//! router, on SQLite and PostgreSQL: for a known history (three devices activated, one
//! deactivated, usage reported beyond a license-wide limit) the pages show the right
//! numbers, in accessible inline SVG with a data table; read-only may see them, another
//! product's license is "not found".

#![allow(clippy::unwrap_used)]

mod common;
mod console2_support;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{backends, license, policy, portal};
use console2_support::{activate, app, between, get, send, staff, video_license};
use lic_core::clock::ManualClock;
use lic_portal::Actor;
use lic_portal::auth::Role;
use lic_portal::ops::LicenseEdit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_pages_show_the_seats_and_consumption_of_a_known_history() {
    for db in backends().await {
        // The portal's clock moves 10 s between events (within the devices' tolerance), so
        // that each is a step of its own.
        let clock = ManualClock::new(chrono::Utc::now());
        let portal = Arc::new(portal(&db).await.with_clock(clock.clone()));
        let (id, key) = license(&portal, policy(4)).await;
        let video = video_license(&portal).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut devices = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            clock.advance(10);
            devices.push(activate(&portal, dir.path(), &format!("m-{i}"), &key).await);
        }
        clock.advance(10);
        // Device 0 reports 120 render-minutes, device 1 30: 150 against a license-wide 100.
        for (i, n) in [(0, 120), (1, 30)] {
            devices[i].0.consume("render-minutes", n).unwrap();
            let report = devices[i].0.usage_report().unwrap();
            portal
                .apply(report.armored().as_bytes(), &Actor::cli())
                .await
                .unwrap();
        }
        let edit = LicenseEdit {
            total_limits: Some([("render-minutes".to_string(), 100)].into()),
            ..Default::default()
        };
        portal
            .edit_license(&id, edit, "cap", &Actor::cli())
            .await
            .unwrap();
        // Device 2 gives its seat back.
        let deactivation = devices[2].0.deactivate().unwrap();
        portal
            .apply(deactivation.armored().as_bytes(), &Actor::cli())
            .await
            .unwrap();

        let app = app(&portal);
        let reader = staff(&portal, "rita", Role::ReadOnly, None).await;
        let page = send(&app, get(&format!("/console/usage/{id}"), &reader)).await;
        assert_eq!(page.status, StatusCode::OK, "{}: {}", db.name, page.body);
        let body = &page.body;
        assert_eq!(between(body, "id=\"usage-seats-used\">", "<"), "2");
        assert_eq!(between(body, "id=\"usage-seats\">", "<"), "4");
        assert_eq!(between(body, "id=\"usage-active-devices\">", "<"), "2");
        // Every chart is an accessible image with a title, a description and a table.
        for chart in ["seats", "consumption", "devices"] {
            assert!(
                body.contains(&format!(
                    "<svg class=\"chart\" id=\"{chart}\" role=\"img\" aria-labelledby=\"{chart}-title {chart}-desc\""
                )),
                "{chart}: {body}"
            );
            assert!(
                body.contains(&format!("<title id=\"{chart}-title\">")),
                "{chart}"
            );
            assert!(
                body.contains(&format!("<table id=\"{chart}-data\">")),
                "{chart}"
            );
        }
        assert!(!body.contains("<script"), "{body}");
        // Seats over time: 1, 2, 3, then 2 (each step a row of the table).
        let steps = between(body, "<table id=\"seats-data\">", "</table>");
        let values: Vec<String> = steps
            .split("</th><td>")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().to_string())
            .collect();
        assert_eq!(values, ["1", "2", "3", "2"], "{}: {steps}", db.name);
        // Consumption: 150 of 100, 50 beyond; the bar drawn in two parts.
        let consumption = between(body, "<svg class=\"chart\" id=\"consumption\"", "</svg>");
        assert!(consumption.contains("150 / 100 (+50)"), "{consumption}");
        assert!(consumption.contains("class=\"bar-over\""), "{consumption}");
        let limits = between(body, "<table id=\"limits\">", "</table>");
        assert!(
            limits.contains("<th scope=\"row\">render-minutes</th><td>150</td><td>100</td><td>50</td><td>1000</td>"),
            "{limits}"
        );
        // Per device: 120 and 30 of the per-device 1000.
        let per_device = between(body, "<table id=\"devices-data\">", "</table>");
        assert!(
            per_device.contains("<td>120</td><td>1000</td><td>0</td>"),
            "{per_device}"
        );
        assert!(
            per_device.contains("<td>30</td><td>1000</td><td>0</td>"),
            "{per_device}"
        );

        // Per product: photo-pro's seats, its license, its consumption.
        let all = send(&app, get("/console/usage", &reader)).await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.body);
        assert_eq!(between(&all.body, "id=\"seats-used-photo-pro\">", "<"), "2");
        assert_eq!(between(&all.body, "id=\"seats-used-video-pro\">", "<"), "0");
        let licenses = between(
            &all.body,
            "<table id=\"licenses-photo-pro-data\">",
            "</table>",
        );
        assert!(
            licenses.contains(&format!("<th scope=\"row\">{id}</th><td>2</td><td>4</td>")),
            "{licenses}"
        );
        let consumed = between(
            &all.body,
            "<table id=\"consumption-photo-pro-data\">",
            "</table>",
        );
        assert!(
            consumed.contains("<th scope=\"row\">render-minutes</th><td>150</td>"),
            "{consumed}"
        );
        assert!(
            all.body.contains("id=\"seats-photo-pro\" role=\"img\""),
            "{}",
            all.body
        );

        // An account limited to video-pro: photo-pro's license is not found, its product
        // not shown.
        let scoped = staff(&portal, "vic", Role::ReadOnly, Some(&["video-pro"])).await;
        let hidden = send(&app, get(&format!("/console/usage/{id}"), &scoped)).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
        let missing = send(&app, get("/console/usage/lic_nope", &scoped)).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            between(&hidden.body, "id=\"message\">", "<").replace(&id, "ID"),
            between(&missing.body, "id=\"message\">", "<").replace("lic_nope", "ID"),
        );
        let own = send(&app, get("/console/usage", &scoped)).await;
        assert!(!own.body.contains("photo-pro"), "{}", own.body);
        let own = send(&app, get(&format!("/console/usage/{video}"), &scoped)).await;
        assert_eq!(own.status, StatusCode::OK);
        assert!(own.body.contains("No seat was taken yet"), "{}", own.body);
    }
}
