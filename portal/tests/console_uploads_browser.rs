//! The console's edit, upload and usage pages in a real headless Chromium (chromedriver),
//! on `lic-portal serve` (the real binary) with a fresh SQLite store and devices made by
//! the `lic` binary: a vendor signs in, uploads a deactivation file made by `lic
//! offline-deactivate` on /console/uploads, and sees the seat count drop by one on
//! /console/usage/{license} (and on the license page, /console/licenses/{license}, where
//! that page exists); an admin edits a license and downloads the refresh file of the
//! device the edit left out of date, which `lic install` installs.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`; without them the tests skip
//! loudly, or fail with LIC_REQUIRE_BROWSER=1. Screenshots: `target/web-screenshots/`
//! `console-uploads.png`, `console-usage.png`, `console-edit.png`, `console-edited.png`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::browser::{BROWSER, browser, browser_available, downloaded, screenshot, start_driver};
use common::commands::{Serve, export_trust, init_with_product, lic, portal, vendor, with_secret};
use fantoccini::{Client, Locator};

const STAFF: &str = "vera";
const PASSWORD: &str = "a long enough console password";

/// The vendor's side: a portal with product `photo-pro` and a license of 3 seats, an
/// admin account, two devices activated on the license (their stores), serving on a free
/// port.
struct Vendor {
    dir: tempfile::TempDir,
    url: String,
    trust: PathBuf,
    license: String,
    devices: Vec<PathBuf>,
    _serve: Serve,
}

fn vendor_portal() -> Vendor {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    init_with_product(|| portal(&data));
    let policy = vendor(
        &data,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "standard",
            "--seats",
            "3",
            "--feature",
            "export-pdf",
        ],
    );
    let id = policy["policy"]["id"].as_str().unwrap().to_string();
    let created = vendor(
        &data,
        &[
            "license",
            "create",
            "--policy",
            &id,
            "--customer",
            "Acme GmbH",
        ],
    );
    let license = created["license"]["id"].as_str().unwrap().to_string();
    let key = created["key"].as_str().unwrap().to_string();
    let mut add = portal(&data);
    add.args(["staff", "add", "--name", STAFF, "--role", "admin"]);
    with_secret(add, PASSWORD);
    let trust = dir.path().join("trusted-keys.pem");
    export_trust(portal(&data), &trust);
    // Two devices: `lic offline-activate`, the request applied by the vendor, the license
    // installed.
    let mut devices = Vec::new();
    for name in ["a", "b"] {
        let store = dir.path().join(format!("{name}-store"));
        let request = dir.path().join(format!("{name}.req"));
        let out = lic(&store, &trust)
            .args([
                "offline-activate",
                "--product",
                "photo-pro",
                "--key",
                &key,
                "--out",
            ])
            .arg(&request)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = portal(&data).arg("apply").arg(&request).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = lic(&store, &trust)
            .arg("install")
            .arg(request.with_extension("lic"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        devices.push(store);
    }
    let mut child = portal(&data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--brand-name",
            "Acme Imaging",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    Vendor {
        url: format!("http://{addr}"),
        trust,
        license,
        devices,
        dir,
        _serve: Serve(child),
    }
}

/// Sign in on the console's form, by its labels' fields; lands on `next`.
async fn sign_in(client: &Client, url: &str, next: &str) {
    client
        .goto(&format!("{url}/console/signin?next={next}"))
        .await
        .unwrap();
    let name = client.find(Locator::Id("name")).await.unwrap();
    name.send_keys(STAFF).await.unwrap();
    let password = client.find(Locator::Id("password")).await.unwrap();
    password.send_keys(PASSWORD).await.unwrap();
    client
        .find(Locator::Css(
            "form[aria-label='Sign in'] button[type=submit]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("signed-in-as"))
        .await
        .unwrap();
}

/// The text of the element `id` on the page at `path`.
async fn text_at(client: &Client, url: &str, path: &str, id: &str) -> String {
    client.goto(&format!("{url}{path}")).await.unwrap();
    let element = client.wait().for_element(Locator::Id(id)).await.unwrap();
    element.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_deactivation_file_frees_a_seat() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal();
    // Device a gives its seat back: the deactivation file `lic offline-deactivate` writes.
    let deactivation = v.dir.path().join("device-a.deact");
    let out = lic(&v.devices[0], &v.trust)
        .args(["offline-deactivate", "--out"])
        .arg(&deactivation)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // And a file that is not one, sent along with it.
    let junk = v.dir.path().join("notes.txt");
    std::fs::write(&junk, "not a lic file").unwrap();
    let downloads = v.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;
    let usage = format!("/console/usage/{}", v.license);

    sign_in(&client, &v.url, &usage).await;
    let before = text_at(&client, &v.url, &usage, "usage-seats-used").await;
    assert_eq!(before, "2");

    client
        .goto(&format!("{}/console/uploads", v.url))
        .await
        .unwrap();
    let input = client.find(Locator::Id("files")).await.unwrap();
    // Several files at once: one path a line.
    input
        .send_keys(&format!(
            "{}\n{}",
            deactivation.to_str().unwrap(),
            junk.to_str().unwrap()
        ))
        .await
        .unwrap();
    client
        .find(Locator::Id("upload"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let results = client
        .wait()
        .for_element(Locator::Id("results"))
        .await
        .unwrap();
    let applied = results
        .find(Locator::Css("#result-1 .outcome"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        applied.contains(&format!("Seat freed on license {}", v.license)),
        "{applied}"
    );
    let refused = results
        .find(Locator::Css("#result-2 .outcome"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.starts_with("Refused: "), "{refused}");
    results.find(Locator::Css("#result-2 .hint")).await.unwrap();
    // The receipt downloads.
    results
        .find(Locator::Css("#result-1 a.download"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let receipt = downloaded(&downloads, "device-a.receipt").await;
    assert!(
        std::fs::read_to_string(receipt)
            .unwrap()
            .contains("RECEIPT")
    );
    screenshot(&client, "console-uploads").await;

    // The license page shows the seat freed: one in use, down from two.
    client
        .goto(&format!("{}/console/licenses/{}", v.url, v.license))
        .await
        .unwrap();
    let shown = client
        .wait()
        .for_element(Locator::Id("seats-used"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown.trim(), "1", "#seats-used on the license page");

    // The seat count dropped by one on the usage page.
    let after = text_at(&client, &v.url, &usage, "usage-seats-used").await;
    assert_eq!(after, "1");
    let active = client
        .find(Locator::Id("usage-active-devices"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(active, "1");
    // The chart is an image with a name, and its data is a table: 1, 2, then 1.
    let chart = client
        .find(Locator::Css("svg#seats[role=img]"))
        .await
        .unwrap();
    assert_eq!(
        chart.attr("aria-labelledby").await.unwrap().as_deref(),
        Some("seats-title seats-desc")
    );
    let cells = client
        .find_all(Locator::Css("#seats-data tbody td"))
        .await
        .unwrap();
    let mut values = Vec::new();
    for c in cells {
        values.push(c.prop("textContent").await.unwrap().unwrap_or_default());
    }
    assert_eq!(values.last().map(String::as_str), Some("1"), "{values:?}");
    assert!(values.iter().any(|v| v == "2"), "{values:?}");
    // On a phone's width the charts shrink and the tables scroll in their own box: the
    // page does not scroll sideways.
    client.set_window_size(390, 844).await.unwrap();
    let fits = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits,
        serde_json::json!(true),
        "the usage page scrolls sideways at 390 px"
    );
    client.set_window_size(1024, 1400).await.unwrap();
    screenshot(&client, "console-usage").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_lists_the_devices_out_of_date_and_their_refresh_installs() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal();
    let downloads = v.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;
    let edit = format!("/console/licenses/{}/edit", v.license);

    sign_in(&client, &v.url, &edit).await;
    client
        .wait()
        .for_element(Locator::Id("features"))
        .await
        .unwrap();
    // A refusal first: fewer seats than in use.
    let seats = client.find(Locator::Id("seats")).await.unwrap();
    seats.clear().await.unwrap();
    seats.send_keys("1").await.unwrap();
    let reason = client.find(Locator::Id("reason")).await.unwrap();
    reason.send_keys("shrink").await.unwrap();
    client
        .find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refusal = client
        .wait()
        .for_element(Locator::Id("refusal"))
        .await
        .unwrap();
    let said = refusal.text().await.unwrap();
    assert!(said.contains("seats-in-use"), "{said}");
    assert!(said.contains("What to do:"), "{said}");

    // Then the edit: a new feature, 4 seats.
    let seats = client.find(Locator::Id("seats")).await.unwrap();
    seats.clear().await.unwrap();
    seats.send_keys("4").await.unwrap();
    let features = client.find(Locator::Id("features")).await.unwrap();
    features.clear().await.unwrap();
    features
        .send_keys("export-pdf batch-jobs=100+")
        .await
        .unwrap();
    let reason = client.find(Locator::Id("reason")).await.unwrap();
    reason.clear().await.unwrap();
    reason.send_keys("upgrade SO-7781").await.unwrap();
    screenshot(&client, "console-edit").await;
    client
        .find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let table = client
        .wait()
        .for_element(Locator::Id("outdated"))
        .await
        .unwrap();
    let buttons = table
        .find_all(Locator::Css("button.refresh"))
        .await
        .unwrap();
    assert_eq!(buttons.len(), 2, "both devices are out of date");
    let back = client.find(Locator::Id("back-to-license")).await.unwrap();
    assert_eq!(
        back.attr("href").await.unwrap(),
        Some(format!("/console/licenses/{}", v.license))
    );
    screenshot(&client, "console-edited").await;
    buttons[0].click().await.unwrap();
    let file = downloaded(&downloads, "license_refresh.lic").await;
    // The refresh is for one of the two devices: it installs on that one.
    let installed = v.devices.iter().any(|store| {
        lic(store, &v.trust)
            .arg("install")
            .arg(&file)
            .output()
            .unwrap()
            .status
            .success()
    });
    assert!(installed, "the refresh file installs on its device");
    client.close().await.unwrap();
}
