//! The full offline loop across both commands: `lic offline-activate` → `lic-portal
//! apply` → `lic install` → `lic consume` → `lic offline-deactivate` → `lic-portal
//! apply` → the seat is free, the consumption added, the receipt verifies.
//!
//! Both run as their real binaries. Cargo builds another package's binaries only for
//! that package's own tests, so the `lic` binary is built here (by `cargo build -p
//! lic --bin lic`, a no-op when the workspace's tests have built it already).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::sync::OnceLock;

use common::post;

use lic_core::format::{self, Receipt};
use lic_core::keys::Keyring;

/// The `lic` binary of this workspace, built with the profile of these tests.
fn lic_binary() -> &'static Path {
    static LIC: OnceLock<PathBuf> = OnceLock::new();
    LIC.get_or_init(|| lic_fixtures::binaries::workspace_binary("lic", "lic"))
}

struct Vendor {
    data: PathBuf,
    /// A database URL instead of the data directory's SQLite file.
    database: Option<String>,
}

impl Vendor {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-portal"));
        cmd.arg("--data").arg(&self.data);
        if let Some(url) = &self.database {
            cmd.args(["--database", url]);
        }
        cmd.args(args)
            .env_remove("LIC_PORTAL_DATABASE")
            .env_remove("LIC_PORTAL_KEYS")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Product `photo-pro`, a policy of it (`policy`: the options after `--product
    /// photo-pro`) and a license on that policy: (license id, license key).
    fn license(&self, policy: &[&str]) -> (String, String) {
        self.ok(&["product", "create", "photo-pro", "--name", "Photo Pro"]);
        let mut args = vec!["policy", "create", "--product", "photo-pro"];
        args.extend_from_slice(policy);
        let out = self.ok(&args);
        let policy = out.split_whitespace().nth(2).unwrap().to_string();
        let created = self.json(&["license", "create", "--policy", &policy]);
        (
            created["license"]["id"].as_str().unwrap().to_string(),
            created["key"].as_str().unwrap().to_string(),
        )
    }

    /// Export the trusted vendor keys to `path`, as the vendor ships them.
    fn export_trust(&self, path: &Path) {
        self.ok(&["key", "export", "--out", path.to_str().unwrap()]);
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

/// `lic offline-activate --product photo-pro --key KEY --out REQUEST` on `store`.
fn offline_activate(store: &Path, trust: &Path, key: &str, request: &Path) {
    let out = request.to_str().unwrap();
    let args = [
        "offline-activate",
        "--product",
        "photo-pro",
        "--key",
        key,
        "--out",
        out,
    ];
    assert_eq!(lic(store, trust, &args), ExitCode::SUCCESS);
}

/// Run the `lic` binary on `store`, trusting `trust`; its exit status (and its output,
/// on failure, in the test's log).
fn lic(store: &Path, trust: &Path, args: &[&str]) -> ExitCode {
    let out = Command::new(lic_binary())
        .arg("--store")
        .arg(store)
        .arg("--trust")
        .arg(trust)
        .args(args)
        .env_remove("LIC_STORE")
        .env_remove("LIC_TRUST")
        .env_remove("LIC_PRODUCT")
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("lic {args:?}: {out:?}");
    }
    ExitCode::from(u8::try_from(out.status.code().unwrap_or(255)).unwrap_or(255))
}

#[test]
fn the_offline_loop_across_lic_and_lic_portal() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
        database: None,
    };
    let out = vendor.ok(&["init"]);
    assert!(out.contains("vendor key: "), "{out}");
    let (license_id, key) = vendor.license(&[
        "--name",
        "standard",
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
    ]);
    let trust = dir.path().join("trusted-keys.pem");
    vendor.export_trust(&trust);

    let store = dir.path().join("store");
    let request = dir.path().join("photo-pro.req");
    offline_activate(&store, &trust, &key, &request);
    let out = vendor.ok(&["apply", request.to_str().unwrap()]);
    assert!(out.starts_with("ok "), "{out}");
    let license_file = dir.path().join("photo-pro.lic");
    assert!(
        license_file.exists(),
        "apply writes the license beside the request"
    );
    assert_eq!(
        lic(&store, &trust, &["install", license_file.to_str().unwrap()]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        vendor.json(&["license", "show", &license_id])["license"]["seats_used"],
        1
    );

    assert_eq!(
        lic(&store, &trust, &["consume", "render-minutes", "120"]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        lic(&store, &trust, &["check", "--feature", "render-minutes"]),
        ExitCode::SUCCESS
    );
    let deactivation = dir.path().join("photo-pro.deact");
    assert_eq!(
        lic(
            &store,
            &trust,
            &[
                "offline-deactivate",
                "--out",
                deactivation.to_str().unwrap()
            ]
        ),
        ExitCode::SUCCESS
    );
    let out = vendor.ok(&["apply", deactivation.to_str().unwrap()]);
    assert!(out.contains("receipt"), "{out}");
    // The operator learns what the receipt is for: proof, nothing to install.
    assert!(
        out.contains("vendor's signed confirmation")
            && out.contains("render-minutes=120")
            && out.contains("nothing needs to be installed"),
        "{out}"
    );
    // Applying it again changes nothing and gives the same receipt.
    let receipt_path = dir.path().join("photo-pro.receipt");
    let receipt_text = std::fs::read(&receipt_path).unwrap();
    let again = vendor.ok(&["apply", deactivation.to_str().unwrap()]);
    assert!(again.contains("applied before"), "{again}");
    assert_eq!(std::fs::read(&receipt_path).unwrap(), receipt_text);

    let info = vendor.json(&["license", "show", &license_id])["license"].clone();
    assert_eq!(info["seats_used"], 0, "the seat is free");
    assert_eq!(
        info["usage"]["render-minutes"], 120,
        "the consumption is added once"
    );
    let keys = Keyring::read(&trust).unwrap();
    let receipt = format::open::<Receipt>(&receipt_text, &keys).unwrap();
    assert_eq!(receipt.state, "deactivated");
    let deactivation_bytes = std::fs::read(&deactivation).unwrap();
    assert_eq!(
        receipt.file_hash,
        format::unarmor(&deactivation_bytes)
            .map(|(_, b)| format::file_hash(&b))
            .unwrap()
    );
    let audit = vendor.ok(&["audit"]);
    assert!(audit.contains("activation.deactivate"), "{audit}");
}

#[test]
fn apply_reports_each_file_and_a_summary_and_fails_if_any_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
        database: None,
    };
    vendor.ok(&["init"]);
    let good = lic_fixtures::dir().join("valid/usage-report.usage");
    let bad = lic_fixtures::dir().join("invalid/tampered-request.req");
    let out = vendor.run(&[
        "apply",
        "--out-dir",
        dir.path().to_str().unwrap(),
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("REFUSED") && stdout.contains("unknown-activation"),
        "{stdout}"
    );
    assert!(stdout.contains("bad-signature"), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("2 file(s): 0 applied, 2 refused"),
        "{stderr}"
    );
}

#[test]
fn a_bulk_apply_answers_every_file_in_order_and_takes_one_seat_per_device() {
    let backends = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::backends());
    for db in &backends {
        bulk_apply_on(&db.url, db.name);
    }
}

/// The bulk apply of 42 files on the database at `url` (`name`: for the messages).
fn bulk_apply_on(url: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
        database: Some(url.to_string()),
    };
    vendor.ok(&["init"]);
    let (license, key) = vendor.license(&["--name", "p", "--seats", "45"]);
    // 40 requests, each from its own device...
    let inbox = dir.path().join("in");
    let made = Command::new(env!("CARGO_BIN_EXE_lic-load"))
        .args(["--key", &key, "--requests", "40", "--write-to"])
        .arg(&inbox)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut files: Vec<PathBuf> = (0..40)
        .map(|i| inbox.join(format!("req-{i}.req")))
        .collect();
    // ...the first one again under another name, and a tampered file among them.
    let again = inbox.join("again.req");
    std::fs::copy(&files[0], &again).unwrap();
    files.insert(20, again);
    files.insert(10, lic_fixtures::dir().join("invalid/tampered-request.req"));
    let out_dir = dir.path().join("out");
    let mut args = vec![
        "--format",
        "json",
        "apply",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = vendor.run(&args);
    assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = doc["items"].as_array().unwrap();
    // One item per file, in the order given.
    let named: Vec<&str> = items.iter().map(|i| i["file"].as_str().unwrap()).collect();
    let given: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    assert_eq!(named, given);
    assert_eq!(items[10]["error"]["code"], "bad-signature");
    // The first request and its copy: one seat, the same answer twice (whichever of the
    // two, applied at once, reached the database first).
    assert_eq!(
        (&items[0]["status"], &items[21]["status"]),
        (&"ok".into(), &"ok".into())
    );
    assert_eq!(items[21]["activation"], items[0]["activation"]);
    assert_ne!(items[0]["replay"], items[21]["replay"]);
    let taken: Vec<_> = items
        .iter()
        .filter(|i| i["status"] == "ok" && i["replay"] == false)
        .collect();
    assert_eq!(taken.len(), 40, "{name}");
    assert_eq!(
        (doc["applied"].as_u64(), doc["refused"].as_u64()),
        (Some(41), Some(1))
    );
    // Each response written, for its own request.
    for item in &taken {
        let text = std::fs::read_to_string(item["response_file"].as_str().unwrap()).unwrap();
        assert!(text.contains("BEGIN LIC LICENSE"), "{item}");
    }
    let shown = vendor.json(&["license", "show", &license]);
    assert_eq!(shown["license"]["seats_used"], 40, "{name}");
}

#[test]
fn apply_keeps_both_responses_of_requests_named_alike() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
        database: None,
    };
    vendor.ok(&["init"]);
    let (_, key) = vendor.license(&["--name", "p", "--seats", "3"]);
    let trust = dir.path().join("trusted-keys.pem");
    vendor.export_trust(&trust);
    // Two machines, each writing the default name `photo-pro.req`, collected in two
    // folders; the responses go into one.
    let mut requests = Vec::new();
    for machine in ["a", "b"] {
        let folder = dir.path().join(machine);
        std::fs::create_dir(&folder).unwrap();
        let request = folder.join("photo-pro.req");
        let store = dir.path().join(format!("store-{machine}"));
        offline_activate(&store, &trust, &key, &request);
        requests.push(request);
    }
    let responses = dir.path().join("responses");
    std::fs::create_dir(&responses).unwrap();
    let out = vendor.run(&[
        "apply",
        "--out-dir",
        responses.to_str().unwrap(),
        requests[0].to_str().unwrap(),
        requests[1].to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 2);
    let mut written: Vec<String> = std::fs::read_dir(&responses)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written.len(), 2, "{written:?}");
    // The second one beside the first, named by its request's hash.
    assert!(
        written[0].starts_with("photo-pro-") && written[0].ends_with(".lic"),
        "{written:?}"
    );
    assert_eq!(written[1], "photo-pro.lic");
    // Each response is its own device's license.
    for name in &written {
        let text = std::fs::read_to_string(responses.join(name)).unwrap();
        assert!(text.contains("BEGIN LIC LICENSE"), "{name}");
    }
}

/// A running `lic-portal serve`, stopped on drop.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(vendor: &Vendor) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .arg("--data")
        .arg(&vendor.data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--uploads-per-minute",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    Server { child, addr }
}

#[test]
fn the_offline_loop_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Vendor {
        data: dir.path().join("portal"),
        database: None,
    };
    vendor.ok(&["init"]);
    let (license_id, key) = vendor.license(&[
        "--name",
        "std",
        "--seats",
        "1",
        "--feature",
        "render-minutes=500",
    ]);
    let trust = dir.path().join("trust.pem");
    vendor.export_trust(&trust);
    let server = serve(&vendor);

    let store = dir.path().join("store");
    let request = dir.path().join("r.req");
    offline_activate(&store, &trust, &key, &request);
    // Accept: text/plain gives the license file itself, ready to install.
    let (status, license) = post(
        &server.addr,
        "/api/v1/activate",
        &std::fs::read(&request).unwrap(),
        "text/plain",
    );
    assert_eq!(status, 200, "{license}");
    assert!(
        license.starts_with("-----BEGIN LIC LICENSE-----"),
        "{license}"
    );
    let license_path = dir.path().join("r.lic");
    std::fs::write(&license_path, &license).unwrap();
    assert_eq!(
        lic(&store, &trust, &["install", license_path.to_str().unwrap()]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        lic(&store, &trust, &["consume", "render-minutes", "9"]),
        ExitCode::SUCCESS
    );

    let deactivation = dir.path().join("r.deact");
    assert_eq!(
        lic(
            &store,
            &trust,
            &[
                "offline-deactivate",
                "--out",
                deactivation.to_str().unwrap()
            ]
        ),
        ExitCode::SUCCESS
    );
    // The default answer is JSON.
    let (status, json) = post(
        &server.addr,
        "/api/v1/deactivate",
        &std::fs::read(&deactivation).unwrap(),
        "*/*",
    );
    assert_eq!(status, 200, "{json}");
    let applied: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(applied["response_kind"], "receipt");
    let note = applied["note"].as_str().unwrap();
    assert!(
        note.starts_with("The seat is free")
            && note.contains(applied["activation"].as_str().unwrap())
            && note.contains("render-minutes=9")
            && note.contains("nothing needs to be installed"),
        "{note}"
    );
    let receipt = format::open::<Receipt>(
        applied["response"].as_str().unwrap().as_bytes(),
        &Keyring::read(&trust).unwrap(),
    )
    .unwrap();
    assert_eq!(receipt.state, "deactivated");
    // A tampered upload: a JSON error with a code and a message.
    let (status, json) = post(
        &server.addr,
        "/api/v1/activate",
        b"-----BEGIN LIC ACTIVATION REQUEST-----\nAAAA\n-----END LIC ACTIVATION REQUEST-----\n",
        "*/*",
    );
    assert_eq!(status, 400, "{json}");
    let err: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        err["error"]["code"].is_string() && err["error"]["message"].is_string(),
        "{json}"
    );
    drop(server);

    let info = vendor.json(&["license", "show", &license_id])["license"].clone();
    assert_eq!(info["seats_used"], 0);
    assert_eq!(info["usage"]["render-minutes"], 9);
}
