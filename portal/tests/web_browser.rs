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

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::commands::{Serve, lic, portal, vendor};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const REQUIRE: &str = "LIC_REQUIRE_BROWSER";

/// One browser at a time: the machines running these tests have few cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the browser is there; if not, skip loudly (or fail with LIC_REQUIRE_BROWSER=1).
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} missing (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var(REQUIRE).as_deref() != Ok("1"),
        "{REQUIRE}=1 but {why}"
    );
    lic_fixtures::skip::loudly("the browser tests of the self-service pages", &why, REQUIRE);
    false
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /status` of chromedriver: whether it answers that it is ready.
fn driver_ready(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.contains("\"ready\":true")
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Poll its status, a bounded number of times.
    for _ in 0..200 {
        if driver_ready(port) {
            return driver;
        }
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = driver.child.kill();
    panic!("chromedriver did not answer /status on port {port} within 10 s");
}

/// A headless Chromium that downloads into `downloads` without asking.
async fn browser(driver: &Driver, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--window-size=1024,1400",
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap()
}

/// Save the browser's page as `target/web-screenshots/NAME.png`.
async fn screenshot(client: &Client, name: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

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
    let out = portal(&data)
        .args(["key", "export", "--out", trust.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
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

/// The file the browser downloaded into `dir` as `name`, waited for with a bound.
async fn downloaded(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    for _ in 0..300 {
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        if path.exists() && !partial {
            return path;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    panic!(
        "{name} was not downloaded into {} within 30 s (there: {seen:?})",
        dir.display()
    );
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
