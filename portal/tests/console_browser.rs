//! The console in a real headless Chromium, driven over WebDriver (chromedriver), against
//! `lic-portal serve` on a fresh SQLite store: a support person signs in, finds the
//! license by its key's last four characters, opens its devices and the device, and
//! downloads a refresh file with a reason; the file installs with `lic install`, and the
//! audit log page shows the reason.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`; without them the test skips
//! loudly, or fails with LIC_REQUIRE_BROWSER=1. Screenshots (for docs/vendor-guide.md and
//! docs/support-guide.md) go to `target/web-screenshots/console-*.png`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::browser::{BROWSER, browser, browser_available, downloaded, screenshot, start_driver};
use common::commands::{Serve, export_trust, init_with_product, lic, portal, vendor, with_secret};
use fantoccini::{Client, Locator};

const PASSWORD: &str = "support person's long password";

/// The vendor's portal with `photo-pro` (one license, activated on one device), a support
/// account `sam`, serving on a free port; the customer's store and trusted keys.
struct Setup {
    dir: tempfile::TempDir,
    url: String,
    trust: PathBuf,
    store: PathBuf,
    key: String,
    license: String,
    _serve: Serve,
}

fn setup() -> Setup {
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
            "studio",
            "--type",
            "time-limited",
            "--seats",
            "2",
            "--validity-days",
            "365",
            "--feature",
            "export-pdf",
            "--feature",
            "render-minutes=500",
        ],
    );
    let policy = policy["policy"]["id"].as_str().unwrap().to_string();
    let created = vendor(
        &data,
        &[
            "license",
            "create",
            "--policy",
            &policy,
            "--customer",
            "Acme Studio",
        ],
    );
    let key = created["key"].as_str().unwrap().to_string();
    let license = created["license"]["id"].as_str().unwrap().to_string();
    let trust = dir.path().join("trusted-keys.pem");
    export_trust(portal(&data), &trust);

    // The customer activates offline; the vendor applies the request.
    let store = dir.path().join("store");
    let request = dir.path().join("device.req");
    let out = lic(&store, &trust)
        .args(["offline-activate", "--product", "photo-pro", "--key", &key])
        .arg("--out")
        .arg(&request)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answers = dir.path().join("answers");
    let out = portal(&data)
        .arg("apply")
        .arg(&request)
        .arg("--out-dir")
        .arg(&answers)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = std::fs::read_dir(&answers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lic"))
        .unwrap();
    let out = lic(&store, &trust)
        .arg("install")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // A support account, its password on standard input.
    let mut add = portal(&data);
    add.args(["staff", "add", "--name", "sam", "--role", "support"]);
    with_secret(add, PASSWORD);

    let mut child = portal(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    Setup {
        url: format!("http://{addr}"),
        _serve: Serve(child),
        dir,
        trust,
        store,
        key,
        license,
    }
}

async fn click(client: &Client, locator: Locator<'_>) {
    loop {
        let element = client.wait().for_element(locator).await.unwrap();
        match element.click().await {
            Ok(()) => return,
            // Found on the page a navigation was replacing: find it on the new one.
            Err(e) if e.is_stale_element_reference() => continue,
            Err(e) => panic!("clicking {locator:?}: {e}"),
        }
    }
}

/// Wait for the page whose heading is `text` (the one a click led to, not the page
/// before it, which may still be showing).
async fn wait_heading(client: &Client, text: &str) {
    client
        .wait()
        .for_element(Locator::XPath(&format!("//h1[normalize-space()='{text}']")))
        .await
        .unwrap_or_else(|e| panic!("a page headed {text:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_finds_a_device_and_sends_a_refresh_file_with_a_reason() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let s = setup();
    let downloads = s.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;

    // Not signed in: the console sends the browser to its sign-in form, and back.
    client
        .goto(&format!("{}/console/licenses", s.url))
        .await
        .unwrap();
    wait_heading(&client, "Sign in to the console").await;
    client
        .find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("sam")
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(&client, Locator::Css("button[type=submit]")).await;
    wait_heading(&client, "Licenses").await;

    // The customer reads out the last four characters of their key.
    let alnum: String = s.key.chars().filter(char::is_ascii_alphanumeric).collect();
    let hint = &alnum[alnum.len() - 4..];
    client
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys(hint)
        .await
        .unwrap();
    click(&client, Locator::Id("search")).await;
    click(
        &client,
        Locator::Css(&format!(
            "#licenses a[href='/console/licenses/{}']",
            s.license
        )),
    )
    .await;
    wait_heading(&client, &format!("License {}", s.license)).await;
    let seats = client.find(Locator::Id("seats-used")).await.unwrap();
    assert_eq!(seats.text().await.unwrap(), "1");
    let of = client.find(Locator::Id("seats")).await.unwrap();
    assert_eq!(of.text().await.unwrap(), "2");
    screenshot(&client, "console-license").await;

    click(&client, Locator::Id("devices-tab")).await;
    let device = client
        .wait()
        .for_element(Locator::Css("#devices tbody a"))
        .await
        .unwrap();
    screenshot(&client, "console-devices").await;
    device.click().await.unwrap();
    client
        .wait()
        .for_element(Locator::XPath(
            "//h1[starts-with(normalize-space(), 'Device act_')]",
        ))
        .await
        .unwrap();
    screenshot(&client, "console-device").await;

    // A refresh file: thirty more days, with the reason.
    let reason = "renewed by phone, ticket 4711";
    client
        .find(Locator::Id("extend_days"))
        .await
        .unwrap()
        .send_keys("30")
        .await
        .unwrap();
    client
        .find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys(reason)
        .await
        .unwrap();
    click(&client, Locator::Id("download-refresh")).await;
    let file = downloaded(&downloads, "license_refresh.lic").await;
    let out = lic(&s.store, &s.trust)
        .arg("install")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("serial 1 → 2"), "{said}");
    let out = lic(&s.store, &s.trust)
        .args(["check", "--product", "photo-pro"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The audit log, from the console's navigation, shows who sent it and why.
    click(&client, Locator::LinkText("Audit log")).await;
    wait_heading(&client, "Audit log").await;
    let table = client
        .wait()
        .for_element(Locator::Id("audit"))
        .await
        .unwrap();
    let text = table.text().await.unwrap();
    assert!(text.contains("activation.refresh"), "{text}");
    assert!(text.contains(reason), "{text}");
    assert!(text.contains("staff:sam"), "{text}");
    screenshot(&client, "console-audit").await;
    client.close().await.unwrap();
}
