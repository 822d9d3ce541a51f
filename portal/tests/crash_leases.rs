//! Crash safety of the hosted portal's floating leases: `lic-portal serve` is killed
//! (SIGKILL) and started again on the same database and address while more workstations
//! than seats take and renew leases (`lic_core::lease` over HTTP, each workstation in its
//! own thread with its own store). On SQLite and on PostgreSQL:
//! - at every sampled moment, and at the end, no more workstations hold a valid lease
//!   (`Client::check`) than the license has seats;
//! - the database agrees: no more live leases than seats, `seats_used` untouched by
//!   leases, and every workstation that holds a lease has its seat there, live at least
//!   as long as the lease it holds (the portal never gave that seat to another);
//! - a workstation keeps its seat across every kill: no holder's renewal is refused (no
//!   lease can lapse: they last ten minutes); takes are refused only with `no-seat`, and
//!   nothing is answered with a server error (5xx), an unreadable answer or a panic. The
//!   portal being down shows as unreachable, and the workstation tries again.
//! - then the vendor suspends the license (the portal killed again meanwhile): every
//!   holder's next renewal is refused with the clear code `license-suspended`.
//!
//! `LIC_CRASH_ROUNDS=N` kills the portal N times per backend (default 12: once per seat
//! granted, then after every 30 renewals served).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::commands::{cmd, export_trust, init_with_product, json, serve};
use lic_core::client::{Client, new_instance};
use lic_core::format::Credential;
use lic_core::keys::Keyring;
use lic_core::lease::{self, HttpTransport, LeaseError};
use lic_portal::db::Db;

const SEATS: usize = 3;
const WORKSTATIONS: usize = 8;
const LEASE_SECS: u64 = 600;
/// Renewals served after a restart before the portal is killed again (once every seat
/// is granted): the kill lands among renewals in flight.
const RENEWALS_PER_ROUND: u64 = 30;
/// The codes a take may be refused with here: every seat is held.
const TAKE_REFUSALS: &[&str] = &["no-seat"];
/// The codes a renewal may be refused with once the license is suspended.
const SUSPENDED_REFUSALS: &[&str] = &["license-suspended"];

fn rounds() -> usize {
    std::env::var("LIC_CRASH_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("LIC_CRASH_ROUNDS is a number of kills"))
        .unwrap_or(SEATS + 9)
}

/// What a workstation's thread tells the test as it happens.
enum Event {
    Granted,
    Renewed,
    /// Workstation `i`'s renewal of the lease it held was refused, with this code.
    RenewalRefused(usize, String),
}

/// What a workstation saw, in the end.
#[derive(Debug, Default)]
struct Seen {
    granted: u64,
    renewed: u64,
    unreachable: u64,
    /// Refused takes, by code and whether the license was suspended (`None`: it was
    /// suspended while the request was under way, so either answer is right).
    take_refusals: BTreeMap<(String, Option<bool>), u64>,
    /// Refused renewals of a lease held: (code, whether the license was suspended).
    renewal_refusals: Vec<(String, Option<bool>)>,
    /// Anything else: a server error, an unreadable answer, a client failure.
    opaque: Vec<String>,
}

struct Shared {
    addr: String,
    key: String,
    stop: AtomicBool,
    suspended: AtomicBool,
    renewals: AtomicU64,
}

/// A workstation: take a seat, then renew it, until told to stop; after a renewal is
/// refused, take again.
fn workstation(
    i: usize,
    client: Arc<Client>,
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
) -> Seen {
    // The real client's transport: a refused, reset or cut-off exchange is unreachable.
    let transport = HttpTransport::new(&format!("http://{}", shared.addr)).unwrap();
    let instance = new_instance();
    let mut seen = Seen::default();
    let mut held = false;
    while !shared.stop.load(Ordering::SeqCst) {
        // Whether the license was suspended, read before the request is made and after
        // its answer: a request made before and answered after the suspension (a slow
        // machine, the portal restarted meanwhile) may get either answer.
        let before = shared.suspended.load(Ordering::SeqCst);
        let result = if held {
            lease::renew(&client, &transport, instance, None)
        } else {
            let key = Credential::LicenseKey(shared.key.clone());
            lease::take(&client, &transport, Some(key), instance, None, false)
        };
        let after = shared.suspended.load(Ordering::SeqCst);
        let suspended = (before == after).then_some(after);
        match result {
            Ok(_) if held => {
                seen.renewed += 1;
                shared.renewals.fetch_add(1, Ordering::SeqCst);
                let _ = events.send(Event::Renewed);
            }
            Ok(_) => {
                held = true;
                seen.granted += 1;
                let _ = events.send(Event::Granted);
            }
            Err(LeaseError::Unreachable(_)) => seen.unreachable += 1,
            Err(LeaseError::Refused { code, .. }) if held => {
                seen.renewal_refusals.push((code.clone(), suspended));
                held = false;
                let _ = events.send(Event::RenewalRefused(i, code));
            }
            Err(LeaseError::Refused { code, .. }) => {
                *seen.take_refusals.entry((code, suspended)).or_default() += 1;
            }
            Err(e) => seen.opaque.push(format!("{} ({}): {e}", e.code(), held)),
        }
    }
    seen
}

/// Workstations with a valid lease now.
fn holding(clients: &[Arc<Client>]) -> usize {
    clients.iter().filter(|c| c.check(None).is_ok()).count()
}

/// Live leases of `license` in the database now (active seats whose lease has not
/// lapsed), and its `seats_used`.
async fn db_seats(db: &Db, license: &str) -> (i64, i64) {
    let now = chrono::Utc::now().timestamp();
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM activations WHERE license = $1 AND state = 'active' \
         AND lease_expires > $2",
    )
    .bind(license)
    .bind(now)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let used: i64 = sqlx::query_scalar("SELECT seats_used FROM licenses WHERE id = $1")
        .bind(license)
        .fetch_one(db.pool())
        .await
        .unwrap();
    (live, used)
}

/// Every workstation that holds a lease has its seat in the database, active, for its
/// own device, live at least until its lease ends, with its instance recorded as long.
async fn holders_have_their_seats(db: &Db, license: &str, clients: &[Arc<Client>], at: &str) {
    for (i, client) in clients.iter().enumerate() {
        if client.check(None).is_err() {
            continue;
        }
        let lease = client.status().unwrap().lease.unwrap();
        let device = hex::encode(client.device_key().unwrap().to_bytes());
        let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT state, device_key, lease_expires FROM activations \
             WHERE id = $1 AND license = $2",
        )
        .bind(&lease.activation_id)
        .bind(license)
        .fetch_optional(db.pool())
        .await
        .unwrap();
        let (state, key, until) = row.unwrap_or_else(|| {
            panic!("{at}: workstation {i} holds a lease on an unknown seat {lease:?}")
        });
        assert_eq!(state, "active", "{at}: workstation {i}");
        assert_eq!(key, device, "{at}: workstation {i}'s seat is its own");
        assert!(
            until.unwrap_or(0) >= lease.expires.timestamp(),
            "{at}: workstation {i}'s seat lapses at {until:?} in the database, its lease at {}",
            lease.expires
        );
        let instance: Option<i64> = sqlx::query_scalar(
            "SELECT expires FROM lease_instances WHERE activation = $1 AND instance = $2",
        )
        .bind(&lease.activation_id)
        .bind(lease.instance.to_string())
        .fetch_optional(db.pool())
        .await
        .unwrap();
        assert!(
            instance.unwrap_or(0) >= lease.expires.timestamp(),
            "{at}: workstation {i}'s instance lapses at {instance:?} in the database, its lease \
             at {}",
            lease.expires
        );
    }
}

/// Receive the workstations' events until `done` says so, sampling the workstations'
/// leases after each (bounded: the portal must serve within two minutes).
fn until(
    events: &mpsc::Receiver<Event>,
    clients: &[Arc<Client>],
    most: &mut usize,
    at: &str,
    mut done: impl FnMut(&Event) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("{at}: no lease granted or renewed in 120 s ({e})"));
        let now = holding(clients);
        *most = (*most).max(now);
        assert!(
            now <= SEATS,
            "{at}: {now} workstations hold a valid lease on {SEATS} seats"
        );
        if done(&event) {
            return;
        }
    }
}

fn trust(data: &Path, database: &str, dir: &Path) -> Keyring {
    let path: PathBuf = dir.join("trusted-keys.pem");
    export_trust(cmd(data, database), &path);
    Keyring::read(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_portal_never_leases_more_seats_than_the_license_and_holders_keep_theirs() {
    let rounds = rounds();
    for test in common::backends().await {
        let name = test.name;
        let data = test.dir.path().join("portal");
        let database = test.url.as_str();
        init_with_product(|| cmd(&data, database));
        let policy = json(
            cmd(&data, database),
            &[
                "policy",
                "create",
                "--product",
                "photo-pro",
                "--name",
                "floating",
                "--seats",
                &SEATS.to_string(),
                "--floating",
                "--lease-secs",
                &LEASE_SECS.to_string(),
            ],
        );
        let policy = policy["policy"]["id"].as_str().unwrap().to_string();
        let created = json(
            cmd(&data, database),
            &["license", "create", "--policy", &policy],
        );
        let key = created["key"].as_str().unwrap().to_string();
        let license = created["license"]["id"].as_str().unwrap().to_string();
        let keys = trust(&data, database, test.dir.path());

        let (mut server, addr) = serve(&data, database, "127.0.0.1:0");
        let db = Db::connect(&test.url).await.unwrap();
        let shared = Arc::new(Shared {
            addr: addr.clone(),
            key,
            stop: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
            renewals: AtomicU64::new(0),
        });
        let clients: Vec<Arc<Client>> = (0..WORKSTATIONS)
            .map(|i| {
                let store = test.dir.path().join(format!("ws-{i}"));
                Arc::new(common::device(
                    &store,
                    &format!("machine-{i}"),
                    keys.clone(),
                ))
            })
            .collect();
        let (tx, events) = mpsc::channel();
        let workers: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (c, shared, tx) = (c.clone(), shared.clone(), tx.clone());
                std::thread::spawn(move || workstation(i, c, shared, tx))
            })
            .collect();
        drop(tx);

        // Kill the portal each time a seat is granted until every seat is, then each time
        // it has served a few renewals after its restart.
        let mut most = 0;
        for round in 0..rounds {
            let at = format!("{name}, round {round}");
            if round < SEATS {
                until(&events, &clients, &mut most, &at, |e| {
                    matches!(e, Event::Granted)
                });
            } else {
                let from = shared.renewals.load(Ordering::SeqCst);
                until(&events, &clients, &mut most, &at, |_| {
                    shared.renewals.load(Ordering::SeqCst) >= from + RENEWALS_PER_ROUND
                });
            }
            drop(server); // SIGKILL, and wait for it
            let (live, used) = db_seats(&db, &license).await;
            assert!(
                live <= SEATS as i64,
                "{at}: {live} live leases in the database"
            );
            assert_eq!(used, 0, "{at}: leases take no node-locked seat");
            holders_have_their_seats(&db, &license, &clients, &at).await;
            server = serve(&data, database, &addr).0;
        }
        // After the last restart: every seat held again, renewals served.
        let at = format!("{name}, after the last restart");
        let from = shared.renewals.load(Ordering::SeqCst);
        until(&events, &clients, &mut most, &at, |_| {
            shared.renewals.load(Ordering::SeqCst) >= from + RENEWALS_PER_ROUND
                && holding(&clients) == SEATS
        });
        let (live, used) = db_seats(&db, &license).await;
        assert_eq!(live, SEATS as i64, "{at}: live leases in the database");
        assert_eq!(used, 0, "{at}");
        holders_have_their_seats(&db, &license, &clients, &at).await;
        let holders: Vec<usize> = (0..WORKSTATIONS)
            .filter(|&i| clients[i].check(None).is_ok())
            .collect();

        // The vendor suspends the license while the portal is down; after the restart every
        // holder's next renewal is refused, with its code.
        drop(server);
        json(
            cmd(&data, database),
            &[
                "license",
                "edit",
                &license,
                "--status",
                "suspended",
                "--reason",
                "crash test",
            ],
        );
        shared.suspended.store(true, Ordering::SeqCst);
        let server = serve(&data, database, &addr).0;
        let mut refused: BTreeMap<usize, String> = BTreeMap::new();
        let at = format!("{name}, suspended");
        while refused.len() < holders.len() {
            let event = events
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("{at}: holders refused: {refused:?} ({e})"));
            if let Event::RenewalRefused(i, code) = event {
                refused.insert(i, code);
            }
        }
        shared.stop.store(true, Ordering::SeqCst);
        let seen: Vec<Seen> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        drop(server);
        assert_eq!(
            refused.keys().copied().collect::<Vec<_>>(),
            holders,
            "{at}: each holder, refused"
        );

        // What every workstation saw.
        eprintln!("{name}: {rounds} kills; at most {most} workstations held a lease at once");
        for (i, s) in seen.iter().enumerate() {
            eprintln!("{name}: workstation {i}: {s:?}");
            assert!(
                s.opaque.is_empty(),
                "{name}: workstation {i}: {:?}",
                s.opaque
            );
            for ((code, suspended), n) in &s.take_refusals {
                let allowed = match suspended {
                    Some(true) => SUSPENDED_REFUSALS.contains(&code.as_str()),
                    Some(false) => TAKE_REFUSALS.contains(&code.as_str()),
                    None => {
                        SUSPENDED_REFUSALS.contains(&code.as_str())
                            || TAKE_REFUSALS.contains(&code.as_str())
                    }
                };
                assert!(
                    allowed,
                    "{name}: workstation {i}: {n} takes refused with {code}"
                );
            }
            // A held seat is never lost to a kill: a renewal is refused only once the
            // license is suspended, and then with its code.
            for (code, suspended) in &s.renewal_refusals {
                assert!(
                    *suspended != Some(false) && SUSPENDED_REFUSALS.contains(&code.as_str()),
                    "{name}: workstation {i}: a renewal refused with {code} \
                     (suspended: {suspended:?})"
                );
            }
        }
        let granted: u64 = seen.iter().map(|s| s.granted).sum();
        assert!(
            granted >= SEATS as u64,
            "{name}: {granted} grants for {SEATS} seats"
        );
        assert!(
            seen.iter().any(|s| s.unreachable > 0),
            "{name}: the kills were seen"
        );
        assert_eq!(most, SEATS, "{name}: every seat was held");
    }
}
