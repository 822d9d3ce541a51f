//! The `lic-server` binary as an administrator runs it, killed (SIGKILL) and restarted
//! while workstations keep asking for seats: no more workstations ever hold a valid lease
//! than the pool has seats (sampled at every grant and restart, and at the end), every
//! lease granted before a kill is still held after, and a workstation refused a seat is
//! refused with `no-seat` (the server down: unreachable), never an opaque failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use chrono::Utc;
use lic_core::client::{Client, new_instance};
use lic_core::fingerprint::{RawComponents, StaticSource, component};
use lic_core::format::{Credential, LicenseType};
use lic_core::lease::{self, HttpTransport};
use lic_fixtures::stand_in::StandIn;

const PRODUCT: &str = "photo-pro";
const KEY: &str = "PHPRO-7Q2M-K4XD-9WBT";
const SEATS: u32 = 3;

fn machine(name: &str) -> StaticSource {
    let mut c = RawComponents::new();
    c.insert(component::MACHINE_ID, format!("id-{name}"));
    c.insert(component::HOSTNAME, name);
    StaticSource(c)
}

fn vendor() -> StandIn {
    let mut v = StandIn::new(Utc::now());
    v.license_type = LicenseType::Floating;
    v
}

fn trust_file() -> PathBuf {
    lic_fixtures::dir().join("keys/vendor.pub.pem")
}

/// Activate the server's store offline, on this machine (as `lic offline-activate
/// --pool-seats` and `lic install` do).
fn activate(store: &Path) {
    let admin = Client::builder(PRODUCT)
        .store(store)
        .trust(vendor().keys())
        .open()
        .unwrap();
    let request = admin
        .request_pool_activation(Credential::LicenseKey(KEY.into()), SEATS)
        .unwrap();
    let license = vendor().license_for(request.bytes()).unwrap();
    admin.install(license.armored().as_bytes()).unwrap();
}

fn lic_server(store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-server"));
    cmd.arg("--store")
        .arg(store)
        .args(["--product", PRODUCT, "--trust"])
        .arg(trust_file())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    cmd
}

/// Start `lic-server serve` on a port the system chooses: the process and its URL (the
/// first line it prints).
fn serve(store: &Path) -> (Child, String) {
    let mut child = lic_server(store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the first line names the address: {line:?}"))
        .to_owned();
    (child, url)
}

fn workstation(dir: &Path, name: &str) -> Client {
    Client::builder(PRODUCT)
        .store(dir.join(name))
        .trust(vendor().keys())
        .fingerprint_source(machine(name))
        .open()
        .unwrap()
}

#[test]
fn killing_and_restarting_the_server_never_grants_more_leases_than_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("server");
    activate(&store);
    let (mut child, url) = serve(&store);
    let url = Arc::new(std::sync::Mutex::new(url));
    let stop = Arc::new(AtomicBool::new(false));
    let granted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let clients: Vec<Arc<Client>> = (0..8)
        .map(|i| Arc::new(workstation(dir.path(), &format!("ws-{i}"))))
        .collect();
    let holding = || clients.iter().filter(|c| c.check(None).is_ok()).count();
    let workers: Vec<_> = clients
        .iter()
        .map(|client| {
            let client = client.clone();
            let (url, stop, granted, tx) = (url.clone(), stop.clone(), granted.clone(), tx.clone());
            std::thread::spawn(move || {
                let instance = new_instance();
                let mut held = false;
                // Refusals and failures other than `no-seat` and the server being down.
                let mut unclear = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let base = url.lock().unwrap().clone();
                    let transport = HttpTransport::new(&base).unwrap();
                    let result = if held {
                        lease::renew(&client, &transport, instance, None).map(|_| ())
                    } else {
                        lease::take(
                            &client,
                            &transport,
                            Some(Credential::LicenseKey(KEY.into())),
                            instance,
                            None,
                            false,
                        )
                        .map(|_| ())
                    };
                    match result {
                        Ok(()) if !held => {
                            held = true;
                            granted.fetch_add(1, Ordering::SeqCst);
                            tx.send(()).unwrap();
                        }
                        Ok(()) => {}
                        // A holder's renewal refused is a lost seat; it never happens
                        // while no time passes.
                        Err(e) if held && e.code() != "server-unreachable" => {
                            panic!("a held seat was refused: {e}")
                        }
                        Err(e) if ["no-seat", "server-unreachable"].contains(&e.code()) => {}
                        Err(e) => unclear.push(format!("{}: {e}", e.code())),
                    }
                }
                unclear
            })
        })
        .collect();
    drop(tx);
    // Kill the server each time a seat has been granted, until the pool is full, and a
    // few more times once it is.
    for round in 0..SEATS + 3 {
        if round < SEATS {
            rx.recv().unwrap();
            assert!(holding() <= SEATS as usize, "round {round}: after a grant");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(holding() <= SEATS as usize, "round {round}: killed");
        let (next, next_url) = serve(&store);
        child = next;
        *url.lock().unwrap() = next_url;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let unclear = w.join().unwrap();
        assert!(
            unclear.is_empty(),
            "refused without a clear code: {unclear:?}"
        );
    }
    assert_eq!(holding(), SEATS as usize, "workstations with a valid lease");
    assert_eq!(granted.load(Ordering::SeqCst), SEATS as usize);

    // The server agrees, after one more kill.
    child.kill().unwrap();
    child.wait().unwrap();
    let out = lic_server(&store)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["format"], 1);
    assert_eq!(status["seats"], SEATS);
    assert_eq!(status["held"], SEATS);
    assert_eq!(status["problems"], serde_json::json!([]));
}

#[test]
fn the_binary_refuses_to_start_without_a_store_or_with_an_unusable_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = lic_server(&dir.path().join("nowhere"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("lic offline-activate --pool-seats"), "{err}");

    // A store with a device key and no pool license.
    let store = dir.path().join("server");
    let admin = Client::builder(PRODUCT)
        .store(&store)
        .trust(vendor().keys())
        .open()
        .unwrap();
    admin
        .request_pool_activation(Credential::LicenseKey(KEY.into()), 2)
        .unwrap();
    let pending = lic_server(&store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(pending.status.code(), Some(2));
    let err = String::from_utf8_lossy(&pending.stderr);
    assert!(
        err.contains("no-pool") || err.contains("not-activated"),
        "{err}"
    );
    // status says why, and exits 1.
    let status = lic_server(&store)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(!v["problems"].as_array().unwrap().is_empty(), "{v}");
}

/// Faults (issue 14): a store directory that is not there is a clear error saying how to
/// activate, exit 2, and nothing is created (no store, no database).
#[test]
fn a_server_started_on_a_store_that_is_not_there_says_how_to_activate_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("no-store");
    let out = lic_server(&store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("there is no store at") && err.contains("lic offline-activate --pool-seats"),
        "{err}"
    );
    assert!(!store.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
