//! The browser tests' harness: a headless Chromium driven over WebDriver
//! (chromedriver), screenshots, downloads.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install
//! chromium chromium-driver`). Without them the tests skip loudly, or fail with
//! LIC_REQUIRE_BROWSER=1 (as in CI). Screenshots go to `target/web-screenshots/NAME.png`.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const REQUIRE: &str = "LIC_REQUIRE_BROWSER";

/// One browser at a time: the machines running these tests have few cores.
pub static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the browser is there; if not, skip loudly (or fail with LIC_REQUIRE_BROWSER=1).
pub fn browser_available() -> bool {
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
    lic_fixtures::skip::loudly("the browser tests of the portal's pages", &why, REQUIRE);
    false
}

/// chromedriver on a free loopback port, killed when dropped.
pub struct Driver {
    child: Child,
    pub url: String,
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

pub fn start_driver() -> Driver {
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
pub async fn browser(driver: &Driver, downloads: &Path) -> Client {
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
pub async fn screenshot(client: &Client, name: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The file the browser downloaded into `dir` as `name`, waited for with a bound.
pub async fn downloaded(dir: &Path, name: &str) -> PathBuf {
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
