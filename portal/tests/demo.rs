//! The quick start, followed as a person would: start `lic-portal demo`, run the commands
//! it prints in a shell exactly as printed (curl included), make one mistake on the way
//! (a mistyped product), recover as the messages say, and start the demo a second time
//! to see its printed commands work again.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use common::post;

/// The `lic` binary of this workspace (the demo prints the one beside `lic-portal`).
fn lic_binary() -> &'static Path {
    static LIC: OnceLock<PathBuf> = OnceLock::new();
    LIC.get_or_init(|| lic_fixtures::binaries::workspace_binary("lic", "lic"))
}

/// A running demo, stopped on drop, with what it printed before serving.
struct Demo {
    child: Child,
    printed: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// `lic-portal demo --dir DIR --listen 127.0.0.1:0`, read up to its "serving on" line.
    fn start(dir: &Path) -> Demo {
        lic_binary();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lic-portal"))
            .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            // Not from a source tree: the demo must not run cargo (the test built lic).
            .env_remove("CARGO")
            .env_remove("LIC_PORTAL_DATABASE")
            .env_remove("LIC_PORTAL_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = String::new();
        // The demo prints its instructions, then "serving on …" once it listens; a demo
        // that fails ends the stream, and the test with it.
        loop {
            let line = lines
                .next()
                .expect("the demo prints a `serving on` line")
                .unwrap();
            if line.starts_with("serving on ") {
                break;
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        std::thread::spawn(move || for _ in lines {});
        Demo { child, printed }
    }

    /// The printed commands, in order: the lines a person copies into a shell.
    fn commands(&self) -> Vec<String> {
        let vendor = env!("CARGO_BIN_EXE_lic-portal");
        self.printed
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter(|l| {
                ["cd ", "lic() ", "lic ", "curl "]
                    .iter()
                    .any(|p| l.starts_with(p))
                    || l.starts_with(vendor)
            })
            .map(str::to_string)
            .collect()
    }

    fn value(&self, label: &str) -> String {
        let line = self
            .printed
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no '{label}' in:\n{}", self.printed));
        line.split_whitespace().nth(2).unwrap().to_string()
    }

    fn url(&self) -> String {
        let at = self.printed.find("API at ").unwrap() + "API at ".len();
        let rest = &self.printed[at..];
        rest[..rest.find('\n').unwrap()]
            .trim_end_matches('/')
            .to_string()
    }
}

/// Run `script` in bash (`set -e`: the first failing line stops it, as a person would
/// stop), with no lic settings from the test's environment.
fn bash(script: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .env_remove("LIC_STORE")
        .env_remove("LIC_PRODUCT")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn require_curl() {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the demo prints curl commands and this test runs them: install curl (apt-get \
         install curl)"
    );
}

#[test]
fn the_demo_prints_commands_that_work_as_printed_twice_and_a_mistake_is_recoverable() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("lic-demo");
    let demo = Demo::start(&demo_dir);
    let commands = demo.commands();
    let key = demo.value("license key:");
    assert_eq!(key.len(), 29, "a key of five groups: {key}");
    lic_core::license_key::check(&key).unwrap();
    let url = demo.url();
    // The paths printed are absolute (the commands are for another terminal) and the
    // lic printed is this workspace's, built before the instructions were printed.
    let trust = demo_dir.join("trusted-keys.pem");
    assert!(trust.is_file());
    let setup = &commands[..2];
    assert!(
        setup[0].starts_with(&format!("cd {}", demo_dir.join("customer").display())),
        "{setup:?}"
    );
    assert!(
        setup[1].contains(&format!(
            "{} --trust {} ",
            lic_binary().display(),
            trust.display()
        )),
        "{setup:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("lic activate --server")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("curl ")),
        "{commands:?}"
    );

    // Every printed command, as printed.
    let out = bash(&commands.join("\n"));
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("installed the license for 'photo-pro'"),
        "{shown}"
    );
    assert!(
        shown.contains("the vendor confirmed that the seat of activation"),
        "{shown}"
    );
    // Overage shows in the policy's own notation, as the banner says it.
    assert!(demo.printed.contains("batch-jobs 100+"), "{}", demo.printed);
    assert!(
        shown.contains("feature batch-jobs: used 120 of 100+ (overage allowed), 20 overage"),
        "{shown}"
    );
    assert!(shown.contains("receipt file: signature valid"), "{shown}");
    // The files it made stay in the demo's customer directory, not where the demo ran.
    assert!(demo_dir.join("customer/demo.lic").is_file());
    assert!(demo_dir.join("customer/demo.receipt").is_file());

    // One mistake: a mistyped product. Online, the portal's refusal is shown and nothing
    // is left behind; offline, curl's saved answer is the portal's error, which `lic
    // install` shows as such, and the pending request is forgotten as the message says.
    let set = format!("{}\n{}\n", setup[0], setup[1]);
    let out = bash(&format!(
        "{set}lic activate --server {url} --product photo-pr0 --key {key}"
    ));
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("the portal refused the file"), "{shown}");
    assert!(shown.contains("(error code: wrong-product)"), "{shown}");
    let out = bash(&format!(
        "{set}lic offline-activate --product photo-pr0 --key {key} --out typo.req\n\
         curl -sS --fail-with-body -H 'Accept: text/plain' --data-binary @typo.req -o typo.lic \
         {url}/api/v1/activate || true\n\
         lic install typo.lic"
    ));
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("this file holds the portal's refusal, not a lic file"),
        "{shown}"
    );
    assert!(shown.contains("(error code: wrong-product)"), "{shown}");
    // The store knows a deactivated photo-pro and the pending photo-pr0: the typo is the
    // product a bare command means, and `store info` says how to drop it.
    let out = bash(&format!("{set}lic store info"));
    let shown = text(&out);
    assert!(shown.contains("`lic store forget photo-pr0`"), "{shown}");
    let out = bash(&format!(
        "{set}lic store forget photo-pr0\n\
         lic activate --server {url} --product photo-pro --key {key}\n\
         lic status"
    ));
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("forgot the pending activation request for 'photo-pr0'"),
        "{shown}"
    );
    assert!(shown.contains("photo-pro: licensed"), "{shown}");
    drop(demo);

    // A second run starts afresh, and its printed commands work again as printed.
    let again = Demo::start(&demo_dir);
    assert_ne!(again.value("license key:"), key, "a fresh demo license");
    assert!(!demo_dir.join("customer/demo.lic").exists());
    let out = bash(&again.commands().join("\n"));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_demo_never_empties_a_directory_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .args(["demo", "--no-serve", "--dir"])
        .arg(dir.path())
        .env_remove("CARGO")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("was not made by the demo"), "{shown}");
    assert_eq!(
        std::fs::read(dir.path().join("precious.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn the_portal_takes_a_request_as_the_qr_text_a_phone_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("lic-demo");
    let demo = Demo::start(&demo_dir);
    let commands = demo.commands();
    let key = demo.value("license key:");
    let out = bash(&format!(
        "{}\n{}\nlic offline-activate --product photo-pro --key {key} --out demo.req",
        commands[0], commands[1]
    ));
    assert!(out.status.success(), "{}", text(&out));
    let armored = std::fs::read(demo_dir.join("customer/demo.req")).unwrap();
    let (_, bytes) = lic_core::format::unarmor(&armored).unwrap();
    let qr_text = lic_core::format::qrtext::encode(&bytes);
    let addr = demo.url().trim_start_matches("http://").to_string();
    let (status, license) = post(
        &addr,
        "/api/v1/activate",
        format!("{qr_text}\n").as_bytes(),
        "text/plain",
    );
    assert_eq!(status, 200, "{license}");
    std::fs::write(demo_dir.join("customer/demo.lic"), &license).unwrap();
    let out = bash(&format!(
        "{}\n{}\nlic install demo.lic",
        commands[0], commands[1]
    ));
    assert!(out.status.success(), "{}", text(&out));
    // A damaged scan is refused with what is wrong, and takes no seat.
    let damaged = format!("LIC1:{}", qr_text["LIC1:".len()..].to_lowercase());
    let (status, body) = post(&addr, "/api/v1/activate", damaged.as_bytes(), "text/plain");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("upper case"), "{body}");
}

#[test]
fn the_demo_answers_in_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .args(["--format", "json", "demo", "--no-serve", "--dir"])
        .arg(dir.path().join("d"))
        .env_remove("CARGO")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format"], 1, "{doc}");
    assert_eq!(doc["serving"], false, "{doc}");
    let key = doc["license_key"].as_str().unwrap();
    lic_core::license_key::check(key).unwrap();
    for member in [
        "dir",
        "url",
        "trusted_keys",
        "customer_dir",
        "portal_data",
        "lic",
    ] {
        assert!(doc[member].is_string(), "{member}: {doc}");
    }
}
