//! The self-service pages in a real headless Chromium, driven over WebDriver
//! (chromedriver): `lic-portal serve` on a fresh SQLite store, an activation request made
//! by the `lic` binary, uploaded (or pasted) in the page, the license downloaded by the
//! browser and installed with `lic install`; and a refusal shown in words.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install
//! chromium chromium-driver`). Without them the tests skip loudly, or fail with
//! LIC_REQUIRE_BROWSER=1 (as in CI). Each test saves a screenshot of its last page to
//! `target/web-screenshots/NAME.png`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::browser::{BROWSER, browser, browser_available, downloaded, screenshot, start_driver};
use common::commands::{Serve, export_trust, lic, portal, vendor};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::json;

/// The vendor's side: a portal with product `photo-pro` (a license of `seats` seats) and
/// `video-pro` (one license), serving on a free port, branded; the customer's trusted keys.
struct Vendor {
    dir: tempfile::TempDir,
    url: String,
    trust: PathBuf,
    photo_key: String,
    video_key: String,
    _serve: Serve,
}

fn vendor_portal(seats: u32) -> Vendor {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let out = portal(&data).arg("init").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut keys = Vec::new();
    for (code, name) in [("photo-pro", "Photo Pro"), ("video-pro", "Video Pro")] {
        vendor(&data, &["product", "create", code, "--name", name]);
        let policy = vendor(
            &data,
            &[
                "policy",
                "create",
                "--product",
                code,
                "--name",
                "standard",
                "--seats",
                &seats.to_string(),
            ],
        );
        let id = policy["policy"]["id"].as_str().unwrap().to_string();
        let created = vendor(&data, &["license", "create", "--policy", &id]);
        keys.push(created["key"].as_str().unwrap().to_string());
    }
    let trust = dir.path().join("trusted-keys.pem");
    export_trust(portal(&data), &trust);
    let logo = dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="#1f5fbf"/></svg>"##,
    )
    .unwrap();
    let mut child = portal(&data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--uploads-per-minute",
            "0",
        ])
        .args(["--brand-name", "Acme Imaging", "--brand-logo"])
        .arg(&logo)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    let serve = Serve(child);
    let video_key = keys.pop().unwrap();
    let photo_key = keys.pop().unwrap();
    Vendor {
        url: format!("http://{addr}"),
        trust,
        photo_key,
        video_key,
        dir,
        _serve: serve,
    }
}

/// `lic offline-activate` on a new store: (the store, the request file).
fn offline_request(v: &Vendor, name: &str, product: &str, key: &str) -> (PathBuf, PathBuf) {
    let store = v.dir.path().join(format!("{name}-store"));
    let file = v.dir.path().join(format!("{name}.req"));
    let out = lic(&store, &v.trust)
        .args([
            "offline-activate",
            "--product",
            product,
            "--key",
            key,
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (store, file)
}

/// Open the form, fill it in with `fill`, send it; the branded page is checked on the way.
async fn send_form(client: &Client, url: &str) {
    client.goto(&format!("{url}/activate")).await.unwrap();
    let source = client.source().await.unwrap();
    assert!(source.contains("Acme Imaging"), "branded: {source}");
    assert!(source.contains("src=\"/static/logo\""), "logo: {source}");
}

/// The license the page offered, downloaded by the browser, installed by `lic`.
async fn download_and_install(client: &Client, v: &Vendor, store: &Path, downloads: &Path) {
    let link = client
        .wait()
        .for_element(Locator::Id("download"))
        .await
        .unwrap();
    let heading = client.find(Locator::Css("h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "Your license is ready");
    let page = client.source().await.unwrap();
    assert!(page.contains("lic install photo-pro.lic"), "{page}");
    link.click().await.unwrap();
    let file = downloaded(downloads, "photo-pro.lic").await;
    let out = lic(store, &v.trust)
        .arg("install")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = lic(store, &v.trust)
        .args(["check", "--product", "photo-pro"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_request_file_gives_a_license_that_installs() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal(2);
    let (store, request) = offline_request(&v, "upload", "photo-pro", &v.photo_key);
    let downloads = v.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;

    send_form(&client, &v.url).await;
    let input = client.find(Locator::Id("file")).await.unwrap();
    input.send_keys(request.to_str().unwrap()).await.unwrap();
    client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    download_and_install(&client, &v, &store, &downloads).await;

    screenshot(&client, "upload").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_request_text_gives_a_license_that_installs() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal(2);
    let (store, request) = offline_request(&v, "paste", "photo-pro", &v.photo_key);
    let text = std::fs::read_to_string(&request).unwrap();
    let downloads = v.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;

    send_form(&client, &v.url).await;
    // By keyboard alone: type into the box its label names, then Enter on the button.
    let label = client.find(Locator::Css("label[for=text]")).await.unwrap();
    assert!(label.text().await.unwrap().contains("paste"));
    let area = client.find(Locator::Id("text")).await.unwrap();
    area.send_keys(&text).await.unwrap();
    let button = client.find(Locator::Id("submit")).await.unwrap();
    button.send_keys(&Key::Enter.to_string()).await.unwrap();
    download_and_install(&client, &v, &store, &downloads).await;

    screenshot(&client, "paste").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_explained_on_the_page() {
    if !browser_available() {
        return;
    }
    let _one = BROWSER.lock().await;
    let v = vendor_portal(1);
    // A key for another product than the request's.
    let (store, request) = offline_request(&v, "wrong", "photo-pro", &v.video_key);
    let downloads = v.dir.path().join("downloads");
    let driver = start_driver();
    let client = browser(&driver, &downloads).await;

    // What the API says to the same file.
    let body = std::fs::read(&request).unwrap();
    let (status, answer) = common::post(
        v.url.trim_start_matches("http://"),
        "/api/v1/activate",
        &body,
        "application/json",
    );
    assert!((400..500).contains(&status), "{status} {answer}");
    let api: serde_json::Value = serde_json::from_str(&answer).unwrap();

    send_form(&client, &v.url).await;
    let input = client.find(Locator::Id("file")).await.unwrap();
    input.send_keys(request.to_str().unwrap()).await.unwrap();
    client
        .find(Locator::Id("submit"))
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
    let shown = alert.text().await.unwrap();
    for part in ["message", "hint", "code"] {
        let said = api["error"][part].as_str().unwrap();
        assert!(shown.contains(said), "{part} {said:?} not in {shown:?}");
    }
    // The form is there again, to send another file.
    client.find(Locator::Id("file")).await.unwrap();
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
        "the refusal page scrolls sideways at 390 px"
    );
    // Nothing was installed.
    let out = lic(&store, &v.trust)
        .args(["check", "--product", "photo-pro"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");

    screenshot(&client, "refused").await;
    client.close().await.unwrap();
}
