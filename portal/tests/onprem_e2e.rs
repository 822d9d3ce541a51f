//! The whole loop of an on-premise floating server across the real binaries, on the
//! portal's embedded SQLite store: the server's pool request (`lic offline-activate
//! --pool-seats`) applied at the portal, the pool license installed, `lic-server serve`
//! leasing to workstations (`lic checkout`, `lic lease`, `lic checkin`), the site's usage
//! reported and counted once, a refresh with more seats taken live, and the server's
//! deactivation freeing the pool.

#![allow(clippy::unwrap_used)]

mod common;

use common::commands::{Serve, lic, portal, vendor};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn server_binary() -> &'static Path {
    static SERVER: OnceLock<PathBuf> = OnceLock::new();
    SERVER.get_or_init(|| lic_fixtures::binaries::workspace_binary("lic-server", "lic-server"))
}

/// `lic-portal apply FILE`: the one item.
fn apply(data: &Path, file: &Path) -> serde_json::Value {
    let doc = vendor(data, &["apply", file.to_str().unwrap()]);
    doc["items"][0].clone()
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    out
}

fn refused(cmd: &mut Command, code: &str) {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?}: {out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(code), "{cmd:?}: expected {code}: {said}");
}

#[test]
fn a_site_without_a_route_to_the_vendor_floats_its_pool_and_reports_its_usage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    ok(portal(&data).arg("init"));
    vendor(
        &data,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    let policy = vendor(
        &data,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "site-floating",
            "--seats",
            "4",
            "--floating",
            "--max-checkout-hours",
            "48",
            "--feature",
            "render-minutes=100",
        ],
    );
    let policy_id = policy["policy"]["id"].as_str().unwrap().to_string();
    let created = vendor(&data, &["license", "create", "--policy", &policy_id]);
    let key = created["key"].as_str().unwrap().to_string();
    let license_id = created["license"]["id"].as_str().unwrap().to_string();
    let trust = dir.path().join("trusted-keys.pem");
    ok(portal(&data).args(["key", "export", "--out", trust.to_str().unwrap()]));
    let license = || vendor(&data, &["license", "show", &license_id])["license"].clone();

    // The site's administrator: a request for a pool of 2 seats, carried to the vendor.
    let server = dir.path().join("server");
    let request = dir.path().join("pool.req");
    ok(lic(&server, &trust).args([
        "offline-activate",
        "--product",
        "photo-pro",
        "--key",
        &key,
        "--pool-seats",
        "2",
        "--out",
        request.to_str().unwrap(),
    ]));
    let applied = apply(&data, &request);
    assert_eq!(applied["status"], "ok", "{applied}");
    let activation = applied["activation"].as_str().unwrap().to_string();
    let pool_license = applied["response_file"].as_str().unwrap().to_string();
    assert_eq!(license()["seats_used"], 2);
    ok(lic(&server, &trust).args(["install", &pool_license]));

    let mut child = Command::new(server_binary())
        .arg("--store")
        .arg(&server)
        .args(["--product", "photo-pro", "--trust"])
        .arg(&trust)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://{}", common::listening_addr(&mut child));
    let running = Serve(child);

    // Workstations: two checkouts fill the pool; a third is refused.
    let ws = |name: &str| dir.path().join(name);
    let checkout = |name: &str| {
        lic(&ws(name), &trust)
            .args(["checkout", "--server", &url, "--product", "photo-pro"])
            .args(["--key", &key, "--hours", "24"])
            .output()
            .unwrap()
    };
    let lease = |name: &str| {
        let mut cmd = lic(&ws(name), &trust);
        cmd.args(["lease", "--server", &url, "--product", "photo-pro"])
            .args(["--key", &key, "--", "true"]);
        cmd
    };
    assert!(checkout("ws-a").status.success());
    assert!(checkout("ws-b").status.success());
    refused(&mut lease("ws-c"), "no-seat");

    // ws-a works offline, then checks in: its usage goes to the server's counters.
    ok(lic(&ws("ws-a"), &trust).args(["consume", "render-minutes", "5"]));
    ok(lic(&ws("ws-a"), &trust).args(["checkin", "--server", &url]));
    ok(&mut lease("ws-c"));

    // The server's usage report, applied twice, counts once.
    let usage = dir.path().join("site.usage");
    ok(lic(&server, &trust).args(["usage-report", "--out", usage.to_str().unwrap()]));
    let first = apply(&data, &usage);
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["replay"], false);
    let again = apply(&data, &usage);
    assert_eq!(again["replay"], true, "{again}");
    assert_eq!(license()["usage"]["render-minutes"], 5);

    // Support gives the pool a third seat; the server takes it without a restart.
    let refresh = dir.path().join("license_refresh.lic");
    vendor(
        &data,
        &[
            "refresh",
            "--activation",
            &activation,
            "--seats",
            "3",
            "--reason",
            "site grows",
            "--out",
            refresh.to_str().unwrap(),
        ],
    );
    assert_eq!(license()["seats_used"], 3);
    ok(lic(&server, &trust).args(["install", refresh.to_str().unwrap()]));
    assert!(checkout("ws-a").status.success());
    assert!(checkout("ws-c").status.success());
    refused(&mut lease("ws-d"), "no-seat");

    // The site moves its server: the deactivation frees the pool at the portal.
    drop(running);
    let deactivation = dir.path().join("server.deact");
    ok(lic(&server, &trust).args([
        "offline-deactivate",
        "--out",
        deactivation.to_str().unwrap(),
    ]));
    let freed = apply(&data, &deactivation);
    assert_eq!(freed["status"], "ok", "{freed}");
    assert_eq!(license()["seats_used"], 0);
}
