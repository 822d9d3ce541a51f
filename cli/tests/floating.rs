//! `lic lease`, `lic checkout`, `lic checkin` and the floating part of `lic status`,
//! against a stand-in floating server on loopback (a few lines of HTTP that sign leases,
//! checkout licenses and receipts with the fixture vendor key): the command runs while
//! the seat is held and sees the lease, its exit status passes through, the seat is
//! released at exit, refusals quote the server, and every argument error says what to do.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use common::{Env, error_code, stderr, stdout};
use lic_core::format::{
    self, Bytes32, CheckIn, FileKind, Lease, LeaseAction, LeaseRequest, License, LicenseType,
    MatchRule, Receipt,
};
use lic_core::keys::Keyring;
use serde_json::{Value, json};

const KEY: &str = "PHPRO-7Q2M-K4XD-9WBT";

#[derive(Default)]
struct Script {
    no_seat: bool,
    /// Refuse this many takes with `no-seat`, then grant.
    busy_takes: u32,
    checkouts: u32,
}

/// A floating server on a loopback port: one thread, one connection at a time.
struct Server {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
    script: Arc<Mutex<Script>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script::default()));
        let (l, s) = (log.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                serve(stream, &l, &s);
            }
        });
        Server { url, log, script }
    }

    fn routes(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<String>>, script: &Mutex<Script>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let route = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    log.lock().unwrap().push(route.clone());
    let (status, answer) = answer(&route, &body, &mut script.lock().unwrap());
    let answer = answer.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
}

fn refusal(code: &str, message: &str) -> (u16, Value) {
    (
        409,
        json!({"error": {"code": code, "message": message, "hint": "ask a colleague"}}),
    )
}

fn answer(route: &str, body: &[u8], script: &mut Script) -> (u16, Value) {
    let vendor = lic_fixtures::vendor_key();
    let now = Utc::now();
    if route == "/api/v1/checkin" {
        let file = format::open::<CheckIn>(body, &Keyring::new()).unwrap();
        let receipt = Receipt {
            activation_id: file.activation_id.clone(),
            file_hash: file.file_hash(),
            file_kind: FileKind::CheckIn.name().into(),
            state: "checked-in".into(),
            applied: now,
        };
        return (
            200,
            json!({"response": format::sign(&receipt, &vendor).unwrap().armored(),
                   "activation": file.activation_id, "replay": false, "flags": []}),
        );
    }
    let request = format::open::<LeaseRequest>(body, &Keyring::new()).unwrap();
    let device = Bytes32(request.signer().to_bytes());
    let rule = MatchRule {
        required: vec![],
        max_changed: 10,
    };
    match request.action {
        LeaseAction::Take | LeaseAction::Renew => {
            if request.action == LeaseAction::Take && (script.no_seat || script.busy_takes > 0) {
                script.busy_takes = script.busy_takes.saturating_sub(1);
                return refusal(
                    "no-seat",
                    "all 3 floating seat(s) of the license are in use",
                );
            }
            let lease = Lease {
                pool: None,
                license_id: "lic_1".into(),
                activation_id: "act_fl".into(),
                product: request.product.clone(),
                device_key: device,
                fingerprint: request.fingerprint.clone(),
                match_rule: rule,
                instance: request.instance,
                feature: request.feature.clone(),
                features: [("export-pdf".to_string(), Default::default())].into(),
                license_type: LicenseType::Floating,
                issued: now,
                renew_after: now + Duration::seconds(300),
                expires: now + Duration::seconds(600),
                license_expires: None,
                offline_expiry: None,
                clock_tolerance: 3600,
                request_nonce: request.nonce,
            };
            (
                200,
                json!({"lease": format::sign(&lease, &vendor).unwrap().armored(),
                       "activation": "act_fl", "grant": "taken"}),
            )
        }
        LeaseAction::Release => (200, json!({"released": true, "activation": "act_fl"})),
        LeaseAction::Checkout => {
            script.checkouts += 1;
            let activation = format!("act_co{}", script.checkouts);
            let oed = now + Duration::hours(i64::try_from(request.hours.unwrap()).unwrap());
            let license = License {
                pool: None,
                pool_seats: None,
                license_id: "lic_1".into(),
                activation_id: activation.clone(),
                product: request.product.clone(),
                device_key: device,
                fingerprint: request.fingerprint.clone(),
                match_rule: rule,
                features: [("export-pdf".to_string(), Default::default())].into(),
                license_type: LicenseType::Floating,
                issued: now,
                not_before: now,
                expires: None,
                offline_expiry: Some(oed),
                clock_tolerance: 3600,
                serial: 1,
                request_nonce: request.nonce,
                counters: Default::default(),
            };
            (
                200,
                json!({"response": format::sign(&license, &vendor).unwrap().armored(),
                       "activation": activation, "offline_expiry": oed.to_rfc3339()}),
            )
        }
    }
}

/// `lic --trust … ARGS` as a command line for the command run under `lic lease`.
fn inner_lic(args: &[&str]) -> Vec<String> {
    let trust = lic_fixtures::dir().join("keys/vendor.pub.pem");
    [
        env!("CARGO_BIN_EXE_lic"),
        "--trust",
        trust.to_str().unwrap(),
    ]
    .iter()
    .chain(args)
    .map(|s| s.to_string())
    .collect()
}

fn lease_args<'a>(server: &'a Server, extra: &[&'a str], command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--product", "photo-pro", "lease", "--server", &server.url];
    args.extend(extra);
    args.push("--");
    args.extend(command);
    args
}

#[test]
fn the_command_runs_while_the_seat_is_held_sees_the_lease_and_its_status_passes_through() {
    let env = Env::new();
    let server = Server::start();
    let check = inner_lic(&["check"]);
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    let out = env.lic(&lease_args(&server, &["--key", KEY], &check));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("ok: 'photo-pro' is licensed"),
        "the command's own output: {out:?}"
    );
    assert!(
        stderr(&out).contains("holding a seat of 'photo-pro'"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("released the seat"), "{out:?}");
    assert_eq!(
        server.routes(),
        ["/api/v1/leases", "/api/v1/leases/release"]
    );
    // After the command, the seat is released and the lease is gone.
    let out = env.lic(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // The command's exit status passes through; the key is remembered.
    let out = env.lic(&lease_args(&server, &[], &["sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(stderr(&out).contains("exited with 7"), "{out:?}");

    // The status the command sees, as JSON: the lease and this machine's instances.
    let status = inner_lic(&["--format", "json", "status"]);
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    let out = env.lic(&lease_args(&server, &[], &status));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["instances"], 1);
    assert_eq!(doc["lease"]["activation_id"], "act_fl");
    assert_eq!(doc["lease"]["live"], true);
    assert_eq!(doc["license"]["type"], "floating");
    assert!(doc["lease"]["renew_after"].is_string());
}

#[test]
fn lease_prints_its_result_as_json_after_the_command() {
    let env = Env::new();
    let server = Server::start();
    let mut args = vec!["--format", "json"];
    args.extend(lease_args(&server, &["--key", KEY], &["true"]));
    let out = env.lic(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        doc,
        json!({
            "format": 1,
            "product": "photo-pro",
            "activation_id": "act_fl",
            "grant": "taken",
            "exit_status": 0,
            "released": true,
            "violations": [],
        })
    );
    // Progress goes to standard error, one JSON document per line.
    let first: Value = serde_json::from_str(stderr(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "leased");
    assert_eq!(first["format"], 1);
}

#[test]
fn no_seat_is_refused_in_the_servers_words_and_the_command_does_not_run() {
    let env = Env::new();
    let server = Server::start();
    server.script.lock().unwrap().no_seat = true;
    let marker = env.path("ran");
    let marker = marker.to_str().unwrap();
    let out = env.lic(&lease_args(&server, &["--key", KEY], &["touch", marker]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("no-seat"));
    assert!(
        stderr(&out).contains("all 3 floating seat(s) of the license are in use"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("ask a colleague"), "{out:?}");
    assert!(!std::path::Path::new(marker).exists());
}

#[test]
fn wait_queues_until_a_seat_frees_saying_so() {
    let env = Env::new();
    let server = Server::start();
    server.script.lock().unwrap().busy_takes = 1;
    let out = env.lic(&lease_args(&server, &["--key", KEY, "--wait"], &["true"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out).contains("waiting in the queue for a seat"),
        "{out:?}"
    );
    assert_eq!(
        server.routes(),
        [
            "/api/v1/leases?wait=true",
            "/api/v1/leases?wait=true",
            "/api/v1/leases/release"
        ]
    );
}

#[test]
fn a_command_that_cannot_run_releases_the_seat() {
    let env = Env::new();
    let server = Server::start();
    let out = env.lic(&lease_args(
        &server,
        &["--key", KEY],
        &["/nonexistent/command"],
    ));
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert_eq!(error_code(&out).as_deref(), Some("command-failed"));
    assert_eq!(
        server.routes(),
        ["/api/v1/leases", "/api/v1/leases/release"]
    );
}

#[test]
fn checkout_installs_a_license_until_its_oed_and_checkin_returns_it_online_or_as_a_file() {
    let env = Env::new();
    let server = Server::start();
    let out = env.lic(&[
        "--product",
        "photo-pro",
        "--format",
        "json",
        "checkout",
        "--server",
        &server.url,
        "--hours",
        "8",
        "--key",
        KEY,
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["activation_id"], "act_co1");
    assert_eq!(doc["hours_asked"], 8);
    assert!(doc["offline_expiry"].is_string());
    // Offline now: the checkout license holds, and status shows its OED.
    let status = env.ok(&["status"]);
    assert!(status.contains("offline until:"), "{status}");
    // Written as a file for the vendor.
    let file = env.path("seat.checkin");
    let out = env.lic(&["checkin", "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let check_in =
        format::open::<CheckIn>(&std::fs::read(&file).unwrap(), &Keyring::new()).unwrap();
    assert_eq!(check_in.activation_id, "act_co1");
    assert_eq!(env.lic(&["check"]).status.code(), Some(1));

    // Checked out again (the key remembered), then checked in online.
    env.ok(&[
        "--product",
        "photo-pro",
        "checkout",
        "--server",
        &server.url,
        "--hours",
        "2",
    ]);
    let out = env.lic(&["--format", "json", "checkin", "--server", &server.url]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["activation_id"], "act_co2");
    assert_eq!(doc["seat_freed"], true);
    assert_eq!(doc["replay"], false);
    assert!(
        doc["receipt"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN LIC RECEIPT-----")
    );
}

#[test]
fn argument_errors_say_what_to_do() {
    let env = Env::new();
    for (args, code, says) in [
        (
            vec!["lease", "--server", "http://127.0.0.1:9", "--", "true"],
            "usage",
            "--product PRODUCT",
        ),
        (
            vec![
                "--product",
                "photo-pro",
                "lease",
                "--server",
                "licensing.example.com",
                "--",
                "true",
            ],
            "usage",
            "https://",
        ),
        (
            vec![
                "--product",
                "photo-pro",
                "lease",
                "--server",
                "http://127.0.0.1:9",
                "--",
                "true",
            ],
            "credential-needed",
            "--key KEY",
        ),
        (
            vec![
                "--product",
                "photo-pro",
                "checkout",
                "--server",
                "http://127.0.0.1:9",
                "--hours",
                "8",
                "--key",
                "not a key",
            ],
            "license-key-invalid",
            "",
        ),
        (
            vec!["--product", "photo-pro", "checkin", "--out", "x.checkin"],
            "not-checked-out",
            "lic checkout",
        ),
    ] {
        let out = env.lic(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let got = error_code(&out);
        if code == "license-key-invalid" {
            assert!(got.is_some(), "{args:?}: {out:?}");
        } else {
            assert_eq!(got.as_deref(), Some(code), "{args:?}: {out:?}");
        }
        assert!(stderr(&out).contains(says), "{args:?}: {out:?}");
    }
    // Clap's own refusals: exit status 2 and the usage.
    for args in [
        vec!["lease", "--server", "http://x"],
        vec!["checkout", "--server", "http://x", "--hours", "0"],
        vec!["checkin"],
        vec!["checkin", "--server", "http://x", "--out", "f"],
        vec!["checkin", "--force", "--server", "http://x"],
    ] {
        let out = env.lic(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr(&out).starts_with("error: "), "{args:?}: {out:?}");
    }
    // The JSON form of an error.
    let out = env.lic(&[
        "--format",
        "json",
        "--product",
        "photo-pro",
        "checkin",
        "--out",
        "x.checkin",
    ]);
    let doc: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(doc["error"]["code"], "not-checked-out");
    assert_eq!(doc["format"], 1);
}
