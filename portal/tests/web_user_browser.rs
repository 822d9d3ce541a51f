//! The end user's pages in a real headless Chromium, driven over WebDriver
//! (chromedriver), against `lic-portal serve` on a fresh SQLite store and the real `lic`:
//!
//! - a user-based license refuses a request until its user signs in: the refusal page
//!   says so and links to the sign-in; signed in, the same request gives the license,
//!   which installs with `lic install`;
//! - a deactivation file uploaded in the page frees the seat and gives a receipt to
//!   download, which `lic inspect` reads.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`; without them the tests skip
//! loudly, or fail with LIC_REQUIRE_BROWSER=1. Each test saves a screenshot of its last
//! page to `target/web-screenshots/NAME.png`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::browser::{BROWSER, browser, browser_available, downloaded, screenshot, start_driver};
use common::commands::{Serve, export_trust, init_with_product, lic, portal, vendor, with_secret};
use fantoccini::{Client, Locator};
use serde_json::json;

const ADA: &str = "ada@example.com";
const ADA_PASSWORD: &str = "correct horse battery staple";

/// A portal with product `photo-pro`: a user-based license of one seat for Ada (who has
/// a password) and a license of one seat by key; serving on a free port.
struct Vendor {
    dir: tempfile::TempDir,
    data: PathBuf,
    url: String,
    trust: PathBuf,
    user_license: String,
    key_license: String,
    key: String,
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
            "1",
        ],
    );
    let policy = policy["policy"]["id"].as_str().unwrap().to_string();
    let by_user = vendor(
        &data,
        &["license", "create", "--policy", &policy, "--user", ADA],
    );
    let by_key = vendor(&data, &["license", "create", "--policy", &policy]);
    // The vendor's support sets Ada's password (on standard input).
    let mut set = portal(&data);
    set.args(["user", "set-password", "--user", ADA]);
    with_secret(set, ADA_PASSWORD);
    let trust = dir.path().join("trusted-keys.pem");
    export_trust(portal(&data), &trust);
    let mut child = portal(&data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--uploads-per-minute",
            "0",
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
        user_license: by_user["license"]["id"].as_str().unwrap().to_string(),
        key_license: by_key["license"]["id"].as_str().unwrap().to_string(),
        key: by_key["key"].as_str().unwrap().to_string(),
        data,
        dir,
        _serve: Serve(child),
    }
}

/// The seats a license has in use, as `lic-portal license show` says.
fn seats_used(v: &Vendor, license: &str) -> i64 {
    let shown = vendor(&v.data, &["license", "show", license]);
    shown["seats_used"]
        .as_i64()
        .or_else(|| shown["license"]["seats_used"].as_i64())
        .unwrap_or_else(|| panic!("no seats_used in {shown}"))
}

/// `lic offline-activate` on a new store with `credential` (`--user U` or `--key K`).
fn offline_request(v: &Vendor, name: &str, credential: [&str; 2]) -> (PathBuf, PathBuf) {
    let store = v.dir.path().join(format!("{name}-store"));
    let file = v.dir.path().join(format!("{name}.req"));
    let out = lic(&store, &v.trust)
        .args(["offline-activate", "--product", "photo-pro"])
        .args(credential)
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (store, file)
}

async fn upload(client: &Client, url: &str, page: &str, file: &Path) {
    client.goto(&format!("{url}{page}")).await.unwrap();
    let input = client.find(Locator::Id("file")).await.unwrap();
    input.send_keys(file.to_str().unwrap()).await.unwrap();
    client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_based_license_refuses_a_request_until_its_user_signs_in() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal();
    let (store, request) = offline_request(&v, "ada", ["--user", ADA]);
    let downloads = v.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;

    // Not signed in: refused, in words, with the way to sign in.
    upload(&client, &v.url, "/activate", &request).await;
    let alert = client
        .wait()
        .for_element(Locator::Id("refusal"))
        .await
        .unwrap();
    let shown = alert.text().await.unwrap();
    assert!(shown.contains("sign-in-required"), "{shown}");
    assert!(shown.contains(ADA), "{shown}");
    assert!(shown.contains("sign in"), "{shown}");
    assert_eq!(seats_used(&v, &v.user_license), 0);

    // Sign in from the refusal, by its link; a wrong password first.
    client
        .find(Locator::Id("signin-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let name = client
        .wait()
        .for_element(Locator::Id("name"))
        .await
        .unwrap();
    name.send_keys(ADA).await.unwrap();
    let password = client.find(Locator::Id("password")).await.unwrap();
    password.send_keys("not the password").await.unwrap();
    client
        .find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let alert = client
        .wait()
        .for_element(Locator::Id("refusal"))
        .await
        .unwrap();
    assert!(
        alert.text().await.unwrap().contains("sign-in-failed"),
        "{}",
        alert.text().await.unwrap()
    );
    // The name is kept; the password typed again.
    let password = client.find(Locator::Id("password")).await.unwrap();
    password.send_keys(ADA_PASSWORD).await.unwrap();
    client
        .find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Back on the activation page, signed in.
    let who = client
        .wait()
        .for_element(Locator::Id("signed-in-as"))
        .await
        .unwrap();
    assert!(who.text().await.unwrap().contains(ADA));
    assert!(client.current_url().await.unwrap().path() == "/activate");

    // The same request now gives the license, which installs.
    let input = client.find(Locator::Id("file")).await.unwrap();
    input.send_keys(request.to_str().unwrap()).await.unwrap();
    client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let link = client
        .wait()
        .for_element(Locator::Id("download"))
        .await
        .unwrap();
    link.click().await.unwrap();
    let file = downloaded(&downloads, "photo-pro.lic").await;
    let out = lic(&store, &v.trust)
        .arg("install")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = lic(&store, &v.trust)
        .args(["check", "--product", "photo-pro"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(seats_used(&v, &v.user_license), 1);

    screenshot(&client, "user-signed-in").await;

    // Signing out ends it: the header offers the sign-in again.
    client
        .find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("signin-submit"))
        .await
        .unwrap();
    assert!(client.find(Locator::Id("signed-in-as")).await.is_err());
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_file_uploaded_in_the_page_gives_a_receipt() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal();
    // A machine activated by key (through the API), then deactivated offline.
    let (store, request) = offline_request(&v, "old", ["--key", &v.key]);
    let body = std::fs::read(&request).unwrap();
    let (status, license) = common::post(
        v.url.trim_start_matches("http://"),
        "/api/v1/activate",
        &body,
        "text/plain",
    );
    assert_eq!(status, 200, "{license}");
    let license_file = v.dir.path().join("old.lic");
    std::fs::write(&license_file, license).unwrap();
    let out = lic(&store, &v.trust)
        .arg("install")
        .arg(&license_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(seats_used(&v, &v.key_license), 1);
    let deactivation = v.dir.path().join("photo-pro.deact");
    let out = lic(&store, &v.trust)
        .arg("offline-deactivate")
        .arg("--out")
        .arg(&deactivation)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let downloads = v.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;
    // Found from the home page's navigation, as a person would.
    client.goto(&v.url).await.unwrap();
    client
        .find(Locator::LinkText("Free a seat"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let label = client
        .wait()
        .for_element(Locator::Css("label[for=file]"))
        .await
        .unwrap();
    assert!(label.text().await.unwrap().contains("Deactivation"));
    let input = client.find(Locator::Id("file")).await.unwrap();
    input
        .send_keys(deactivation.to_str().unwrap())
        .await
        .unwrap();
    client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let link = client
        .wait()
        .for_element(Locator::Id("download"))
        .await
        .unwrap();
    let heading = client.find(Locator::Css("h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "The seat is free");
    assert_eq!(seats_used(&v, &v.key_license), 0);
    link.click().await.unwrap();
    let receipt = downloaded(&downloads, "photo-pro-deactivation.receipt").await;
    let out = lic(&store, &v.trust)
        .arg("inspect")
        .arg(&receipt)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["kind"], json!("receipt"), "{inspected}");
    // On a phone's width the page fits: no sideways scrolling.
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
        json!(true),
        "the receipt page scrolls sideways at 390 px"
    );
    client.set_window_size(1024, 1400).await.unwrap();

    screenshot(&client, "deactivation-receipt").await;
    client.close().await.unwrap();
}
