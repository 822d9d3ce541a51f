//! Floating licenses at the portal (issue 11), over a real socket on loopback against the
//! router, on SQLite and on PostgreSQL (and two portal instances on one PostgreSQL
//! database): leases, heartbeats, release, the wait queue, revival, processes per seat,
//! checkouts until an OED, check-ins, reclamation, floating features, and crafted
//! requests. Time moves with a `ManualClock`; nothing sleeps.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use common::{TestDb, backends, snapshot};
use lic_core::clock::{Clock as _, ManualClock};
use lic_core::format::{
    self, Bytes32, CheckIn, Credential, Feature, Fingerprint, JournalHead, Lease, LeaseAction,
    LeaseRequest, License, Nonce,
};
use lic_core::keys::SecretKey;
use lic_portal::auth::{self, Role};
use lic_portal::http::{self, AppState, RateLimiter};
use lic_portal::ops::{NewLicense, Policy};
use lic_portal::{Actor, Portal};
use serde_json::Value;

// ----- the world -----------------------------------------------------------------------------

/// A portal with a manual clock, served on 127.0.0.1, and an admin token.
struct World {
    portal: Arc<Portal>,
    clock: ManualClock,
    addr: String,
    admin: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

async fn serve(portal: Arc<Portal>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let bound = http::Bound::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(portal).with_limiter(RateLimiter::unlimited());
    tokio::spawn(bound.serve(state, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn world(db: &TestDb, clock: &ManualClock) -> World {
    let portal = Arc::new(common::portal(db).await.with_clock(clock.clone()));
    let (_, admin) = auth::create_token(portal.db(), "admin", Role::Admin, None, 0)
        .await
        .unwrap();
    let (addr, stop) = serve(Arc::clone(&portal)).await;
    World {
        portal,
        clock: clock.clone(),
        addr,
        admin,
        _stop: stop,
    }
}

/// A floating policy of `seats` seats, leases of 60 s, as `tune` changes it.
fn floating_policy(seats: i64, tune: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy {
        product: "photo-pro".into(),
        name: format!("floating-{seats}-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
        seats,
        floating: true,
        lease_secs: 60,
        features: [
            ("export-pdf".to_string(), Feature::default()),
            (
                "render".to_string(),
                Feature {
                    floating: Some(1),
                    ..Feature::default()
                },
            ),
        ]
        .into(),
        ..Policy::default()
    };
    tune(&mut p);
    p
}

/// A license of `policy`; (license id, key).
async fn floating_license(portal: &Portal, policy: Policy) -> (String, String) {
    let p = portal.create_policy(policy, &Actor::cli()).await.unwrap();
    let created = portal
        .create_license(
            NewLicense {
                policy: p.id,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    (created.license.id, created.key.unwrap())
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn nonce() -> Nonce {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8] = 0xf1;
    Nonce(b)
}

/// A machine: its device key and fingerprint.
struct Device {
    key: SecretKey,
    fingerprint: Fingerprint,
}

fn device() -> Device {
    let key = SecretKey::generate();
    let fingerprint = [("machine-id".to_string(), Bytes32(key.public().to_bytes()))].into();
    Device { key, fingerprint }
}

/// An application instance (a process) on a device.
fn instance() -> Nonce {
    nonce()
}

/// What a lease request asks, beyond the device.
#[derive(Clone)]
struct Ask<'a> {
    key: &'a str,
    action: LeaseAction,
    instance: Nonce,
    feature: Option<&'a str>,
    hours: Option<u64>,
    created: DateTime<Utc>,
}

fn ask(key: &str, action: LeaseAction, instance: Nonce, at: DateTime<Utc>) -> Ask<'_> {
    Ask {
        key,
        action,
        instance,
        feature: None,
        hours: (action == LeaseAction::Checkout).then_some(1),
        created: at,
    }
}

/// A lease request signed by `d`: (armored, file hash).
fn request(d: &Device, a: &Ask<'_>) -> (String, Bytes32) {
    let r = LeaseRequest {
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(a.key.into()),
        fingerprint: d.fingerprint.clone(),
        action: a.action,
        instance: a.instance,
        feature: a.feature.map(String::from),
        hours: a.hours,
        journal: (a.action == LeaseAction::Checkout).then(JournalHead::first),
        nonce: nonce(),
        created: a.created,
        client: "floating-test".into(),
        variables: Default::default(),
    };
    let signed = format::sign(&r, &d.key).unwrap();
    let hash = format::file_hash(signed.bytes());
    (signed.armored(), hash)
}

fn path_of(action: LeaseAction) -> &'static str {
    match action {
        LeaseAction::Take => "/api/v1/leases",
        LeaseAction::Renew => "/api/v1/leases/renew",
        LeaseAction::Release => "/api/v1/leases/release",
        LeaseAction::Checkout => "/api/v1/checkout",
    }
}

/// POST over a fresh loopback connection: (status, JSON body).
async fn post(addr: &str, path: &str, body: &[u8], token: Option<&str>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let content_type = if token.is_some() && body.starts_with(b"{") {
        "application/json"
    } else {
        "text/plain"
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Accept: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

impl World {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Send a lease request of `d` to the route of its action.
    async fn send(&self, d: &Device, a: &Ask<'_>) -> (u16, Value) {
        let (body, _) = request(d, a);
        post(&self.addr, path_of(a.action), body.as_bytes(), None).await
    }

    async fn take(&self, d: &Device, key: &str, i: Nonce) -> (u16, Value) {
        self.send(d, &ask(key, LeaseAction::Take, i, self.now()))
            .await
    }

    async fn take_waiting(&self, d: &Device, key: &str, i: Nonce) -> (u16, Value) {
        let (body, _) = request(d, &ask(key, LeaseAction::Take, i, self.now()));
        post(
            &self.addr,
            "/api/v1/leases?wait=true",
            body.as_bytes(),
            None,
        )
        .await
    }

    async fn renew(&self, d: &Device, key: &str, i: Nonce) -> (u16, Value) {
        self.send(d, &ask(key, LeaseAction::Renew, i, self.now()))
            .await
    }

    async fn release(&self, d: &Device, key: &str, i: Nonce) -> (u16, Value) {
        self.send(d, &ask(key, LeaseAction::Release, i, self.now()))
            .await
    }

    /// Seats of `license` held now, by the portal's own view of its activations.
    async fn held(&self, license: &str) -> usize {
        self.portal
            .activations(Some(license), None)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.held)
            .count()
    }
}

#[track_caller]
fn ok(reply: &(u16, Value), what: &str) -> Value {
    assert_eq!(reply.0, 200, "{what}: {}", reply.1);
    reply.1.clone()
}

#[track_caller]
fn refused(reply: &(u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(reply.0, status, "{what}: {}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{what}: {}", reply.1);
    for part in ["message", "hint"] {
        assert!(
            reply.1["error"][part]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{what}: {}",
            reply.1
        );
    }
}

/// The lease in an answer, verified with the portal's keys.
async fn lease_of(w: &World, answer: &Value) -> Lease {
    let keys = w.portal.trusted_keys().await.unwrap();
    format::open::<Lease>(answer["lease"].as_str().unwrap().as_bytes(), &keys)
        .unwrap()
        .into_payload()
}

// ----- leases --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_clients_on_n_minus_one_seats_hold_exactly_the_seats_and_a_lapsed_lease_frees_one() {
    const N: usize = 5;
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) =
            floating_license(&w.portal, floating_policy(N as i64 - 1, |_| {})).await;
        let devices: Vec<(Device, Nonce)> = (0..N).map(|_| (device(), instance())).collect();
        let mut holding = Vec::new();
        for (i, (d, inst)) in devices.iter().enumerate() {
            let reply = w.take(d, &key, *inst).await;
            if i < N - 1 {
                let answer = ok(&reply, &format!("{}: device {i}", db.name));
                assert_eq!(answer["grant"], "taken");
                let lease = lease_of(&w, &answer).await;
                assert_eq!(lease.expires, w.now() + chrono::Duration::seconds(60));
                assert_eq!(lease.renew_after, w.now() + chrono::Duration::seconds(30));
                assert_eq!(lease.instance, *inst);
                assert_eq!(lease.license_id, license);
                assert_eq!(lease.device_key, Bytes32(d.key.public().to_bytes()));
                holding.push(i);
            } else {
                refused(&reply, 409, "no-seat", db.name);
                assert!(
                    reply.1["error"]["hint"]
                        .as_str()
                        .unwrap()
                        .contains("lapses at"),
                    "{}",
                    reply.1
                );
            }
            assert_eq!(w.held(&license).await, holding.len(), "{}", db.name);
        }
        // Heartbeats at the renewal time: everyone but device 0 renews.
        clock.advance(30);
        for (d, inst) in &devices[1..N - 1] {
            let answer = ok(&w.renew(d, &key, *inst).await, "renew");
            assert_eq!(answer["grant"], "held");
        }
        let last = &devices[N - 1];
        refused(
            &w.take(&last.0, &key, last.1).await,
            409,
            "no-seat",
            "still full",
        );
        assert_eq!(w.held(&license).await, N - 1);
        // Device 0's lease lapses at 60 s: nothing runs, the seat is simply free.
        clock.advance(31);
        assert_eq!(w.held(&license).await, N - 2, "{}", db.name);
        let answer = ok(&w.take(&last.0, &key, last.1).await, "the lapsed seat");
        assert_eq!(answer["grant"], "taken");
        assert_eq!(w.held(&license).await, N - 1);
        // Device 0 comes back: the pool is full again.
        let zero = &devices[0];
        refused(
            &w.renew(&zero.0, &key, zero.1).await,
            409,
            "no-seat",
            "back",
        );
        assert_eq!(w.held(&license).await, N - 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_racing_for_five_seats_never_hold_more_than_five() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(&w.portal, floating_policy(5, |_| {})).await;
        let bodies: Vec<String> = (0..32)
            .map(|_| {
                request(
                    &device(),
                    &ask(&key, LeaseAction::Take, instance(), w.now()),
                )
                .0
            })
            .collect();
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let addr = w.addr.clone();
                tokio::spawn(
                    async move { post(&addr, "/api/v1/leases", body.as_bytes(), None).await },
                )
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            let reply = t.await.unwrap();
            match reply.0 {
                200 => granted += 1,
                _ => refused(&reply, 409, "no-seat", db.name),
            }
        }
        assert_eq!(granted, 5, "{}", db.name);
        assert_eq!(w.held(&license).await, 5, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_portal_instances_on_one_postgresql_database_share_the_pool_exactly() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let clock = ManualClock::new(start());
    let w = world(&db, &clock).await;
    // A second instance: its own pool, writer and cache, the same database and keys.
    let other = Arc::new(
        Portal::open(
            lic_portal::db::Db::connect(&db.url).await.unwrap(),
            db.keys_dir(),
        )
        .await
        .unwrap()
        .with_clock(clock.clone()),
    );
    let (other_addr, _stop) = serve(Arc::clone(&other)).await;
    let (license, key) = floating_license(&w.portal, floating_policy(5, |_| {})).await;
    for round in 0..3 {
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let body = request(
                    &device(),
                    &ask(&key, LeaseAction::Take, instance(), w.now()),
                )
                .0;
                let addr = if i % 2 == 0 {
                    w.addr.clone()
                } else {
                    other_addr.clone()
                };
                tokio::spawn(
                    async move { post(&addr, "/api/v1/leases", body.as_bytes(), None).await },
                )
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            let reply = t.await.unwrap();
            match reply.0 {
                200 => granted += 1,
                _ => refused(&reply, 409, "no-seat", "two instances"),
            }
        }
        assert_eq!(granted, 5, "round {round}");
        assert_eq!(w.held(&license).await, 5, "round {round}");
        // Every lease lapses; the next round races for the pool again.
        clock.advance(61);
        assert_eq!(w.held(&license).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_a_seat_up_to_the_policy_cap_and_the_last_release_frees_it() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) =
            floating_license(&w.portal, floating_policy(1, |p| p.max_processes = Some(2))).await;
        let (d, other) = (device(), device());
        let (a, b, c) = (instance(), instance(), instance());
        let first = ok(&w.take(&d, &key, a).await, "a");
        let second = ok(&w.take(&d, &key, b).await, "b");
        assert_eq!(second["grant"], "held", "{}", db.name);
        assert_eq!(first["activation"], second["activation"], "one seat");
        refused(
            &w.take(&d, &key, c).await,
            409,
            "too-many-processes",
            db.name,
        );
        let shown = w
            .portal
            .activation(first["activation"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!((shown.instances, shown.held), (2, true));
        // One instance exits: the third may run; the seat is still the device's.
        let released = ok(&w.release(&d, &key, a).await, "release a");
        assert_eq!(released["released"], true);
        ok(&w.take(&d, &key, c).await, "c");
        refused(
            &w.take(&other, &key, instance()).await,
            409,
            "no-seat",
            "shared",
        );
        for i in [b, c] {
            assert_eq!(
                ok(&w.release(&d, &key, i).await, "release")["released"],
                true
            );
        }
        assert_eq!(w.held(&license).await, 0, "{}", db.name);
        ok(&w.take(&other, &key, instance()).await, "the freed seat");
        // Releasing what is not held is fine, and says so.
        let again = ok(&w.release(&d, &key, b).await, "again");
        assert_eq!(again["released"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_revives_ahead_of_a_waiter_within_the_window_only() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (_, key) =
            floating_license(&w.portal, floating_policy(1, |p| p.revival_secs = 30)).await;
        let (a, b) = (device(), device());
        let (ia, ib) = (instance(), instance());
        ok(&w.take(&a, &key, ia).await, "a");
        refused(
            &w.take_waiting(&b, &key, ib).await,
            409,
            "no-seat",
            "b queues",
        );
        // A's lease lapses (a short outage) and A is back within the window: its own seat
        // again, though B waits for one.
        clock.advance(61);
        let revived = ok(&w.renew(&a, &key, ia).await, "a revives");
        assert_eq!(revived["grant"], "revived", "{}", db.name);
        refused(
            &w.take_waiting(&b, &key, ib).await,
            409,
            "no-seat",
            "b still waits",
        );
        // A lapses again and comes back after the window: the waiter comes first.
        clock.advance(60 + 34);
        refused(&w.renew(&a, &key, ia).await, 409, "no-seat", "a too late");
        assert_eq!(
            ok(&w.take_waiting(&b, &key, ib).await, "b")["grant"],
            "taken"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_get_free_seats_in_the_order_they_queued() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (_, key) = floating_license(&w.portal, floating_policy(1, |_| {})).await;
        let (a, b, c, d) = (device(), device(), device(), device());
        let (ia, ib, ic, id) = (instance(), instance(), instance(), instance());
        ok(&w.take(&a, &key, ia).await, "a");
        clock.advance(1);
        refused(&w.take_waiting(&b, &key, ib).await, 409, "no-seat", "b");
        clock.advance(1);
        refused(&w.take_waiting(&c, &key, ic).await, 409, "no-seat", "c");
        ok(&w.release(&a, &key, ia).await, "a exits");
        // C asks first, but B queued before it; D does not queue and comes after both.
        refused(
            &w.take_waiting(&c, &key, ic).await,
            409,
            "no-seat",
            "c after b",
        );
        refused(
            &w.take(&d, &key, id).await,
            409,
            "no-seat",
            "d after the queue",
        );
        assert_eq!(
            ok(&w.take_waiting(&b, &key, ib).await, "b")["grant"],
            "taken"
        );
        ok(&w.release(&b, &key, ib).await, "b exits");
        assert_eq!(
            ok(&w.take_waiting(&c, &key, ic).await, "c")["grant"],
            "taken"
        );
        // A waiter that stops asking for two lease periods loses its place.
        ok(&w.release(&c, &key, ic).await, "c exits");
        ok(&w.take(&a, &key, ia).await, "a again");
        refused(
            &w.take_waiting(&b, &key, ib).await,
            409,
            "no-seat",
            "b queues",
        );
        clock.advance(121);
        ok(&w.release(&a, &key, ia).await, "a exits");
        ok(
            &w.take(&d, &key, id).await,
            &format!("{}: d, as b gave up", db.name),
        );
    }
}

// ----- checkout, OED, check-in -----------------------------------------------------------

/// Check a seat out: (answer, the checkout request's hash).
async fn checkout(w: &World, d: &Device, key: &str, hours: u64) -> ((u16, Value), Bytes32) {
    let a = Ask {
        hours: Some(hours),
        ..ask(key, LeaseAction::Checkout, instance(), w.now())
    };
    let (body, hash) = request(d, &a);
    (
        post(&w.addr, "/api/v1/checkout", body.as_bytes(), None).await,
        hash,
    )
}

fn check_in(d: &Device, activation: &str, after: Bytes32, at: DateTime<Utc>) -> String {
    let c = CheckIn {
        activation_id: activation.into(),
        product: "photo-pro".into(),
        counters: [("export-pdf".to_string(), 3)].into(),
        journal: JournalHead {
            seq: 1,
            prev: after,
            trail: Vec::new(),
        },
        created: at,
        variables: Default::default(),
    };
    format::sign(&c, &d.key).unwrap().armored()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_holds_its_seat_until_the_oed_and_nothing_takes_it_away_before() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(
            &w.portal,
            floating_policy(1, |p| p.max_checkout_hours = Some(48)),
        )
        .await;
        let (a, b) = (device(), device());
        // 1000 hours asked: capped at the policy's 48, not refused.
        let (reply, _) = checkout(&w, &a, &key, 1000).await;
        let answer = ok(&reply, db.name);
        let oed = w.now() + chrono::Duration::hours(48);
        assert_eq!(
            answer["offline_expiry"],
            oed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let keys = w.portal.trusted_keys().await.unwrap();
        let lic = format::open::<License>(answer["response"].as_str().unwrap().as_bytes(), &keys)
            .unwrap()
            .into_payload();
        assert_eq!(lic.offline_expiry, Some(oed));
        assert_eq!(lic.device_key, Bytes32(a.key.public().to_bytes()));
        let activation = answer["activation"].as_str().unwrap().to_string();
        assert_eq!(lic.activation_id, activation);
        // Held with no lease at all; no one else gets it.
        refused(&w.take(&b, &key, instance()).await, 409, "no-seat", "held");
        // An admin's deactivation before the OED is refused, naming the date (CLI-level
        // operation and API alike), and so is a reclamation.
        let when = oed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let err = w
            .portal
            .deactivate(&activation, "lost laptop", &Actor::cli())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "checked-out");
        assert!(err.to_string().contains(&when), "{err}");
        let api = post(
            &w.addr,
            &format!("/api/v1/activations/{activation}/deactivate"),
            br#"{"reason": "lost laptop"}"#,
            Some(&w.admin),
        )
        .await;
        refused(&api, 409, "checked-out", "api deactivation");
        assert!(api.1["error"]["message"].as_str().unwrap().contains(&when));
        // At the OED the seat is free without any action.
        clock.advance(48 * 3600);
        assert_eq!(w.held(&license).await, 0, "{}", db.name);
        ok(&w.take(&b, &key, instance()).await, "after the OED");
        // The device whose checkout ended finds the pool full now.
        refused(&checkout(&w, &a, &key, 1).await.0, 409, "no-seat", "again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_frees_the_seat_at_once_and_applying_it_twice_changes_nothing() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(
            &w.portal,
            floating_policy(1, |p| p.max_checkout_hours = Some(24)),
        )
        .await;
        let (a, b) = (device(), device());
        let (reply, request_hash) = checkout(&w, &a, &key, 8).await;
        let activation = ok(&reply, db.name)["activation"]
            .as_str()
            .unwrap()
            .to_string();
        clock.advance(3600);
        let file = check_in(&a, &activation, request_hash, w.now());
        let applied = ok(
            &post(&w.addr, "/api/v1/checkin", file.as_bytes(), None).await,
            "check-in",
        );
        assert_eq!(applied["kind"], "check-in");
        assert_eq!(applied["replay"], false);
        assert!(
            applied["response"]
                .as_str()
                .unwrap()
                .contains("LIC RECEIPT")
        );
        assert_eq!(w.held(&license).await, 0, "{}", db.name);
        let shown = w.portal.activation(&activation).await.unwrap();
        assert_eq!(shown.state, "deactivated");
        assert_eq!(shown.offline_expiry, None);
        assert_eq!(shown.usage["export-pdf"], 3);
        // Twice: the same receipt, nothing changed — through the API and `apply` alike.
        let before = snapshot(w.portal.db()).await;
        let again = ok(
            &post(&w.addr, "/api/v1/checkin", file.as_bytes(), None).await,
            "again",
        );
        assert_eq!(again["replay"], true);
        assert_eq!(again["response"], applied["response"]);
        let applied_again = w
            .portal
            .apply(file.as_bytes(), &Actor::cli())
            .await
            .unwrap();
        assert!(applied_again.replay);
        assert_eq!(snapshot(w.portal.db()).await, before, "{}", db.name);
        let ib = instance();
        ok(&w.take(&b, &key, ib).await, "the returned seat");
        // A check-in file applied by staff (`lic-portal apply`) for a second checkout.
        ok(&w.release(&b, &key, ib).await, "b");
        let c = device();
        let (reply, hash) = checkout(&w, &c, &key, 2).await;
        let act = ok(&reply, "c")["activation"].as_str().unwrap().to_string();
        let applied = w
            .portal
            .apply(check_in(&c, &act, hash, w.now()).as_bytes(), &Actor::cli())
            .await
            .unwrap();
        assert_eq!(applied.kind, "check-in");
        assert!(
            applied.note.contains("seat is returned"),
            "{}",
            applied.note
        );
        assert_eq!(w.held(&license).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_check_ins_are_refused_and_change_nothing() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (_, key) = floating_license(
            &w.portal,
            floating_policy(2, |p| p.max_checkout_hours = Some(24)),
        )
        .await;
        let (victim, attacker) = (device(), device());
        let (reply, hash) = checkout(&w, &victim, &key, 8).await;
        let activation = ok(&reply, db.name)["activation"]
            .as_str()
            .unwrap()
            .to_string();
        let before = snapshot(w.portal.db()).await;
        // Another device's key, for the victim's checkout: the signature is not the
        // activation's device's.
        let forged = check_in(&attacker, &activation, hash, w.now());
        let reply = post(&w.addr, "/api/v1/checkin", forged.as_bytes(), None).await;
        assert_eq!(reply.0, 400, "{}: {}", db.name, reply.1);
        assert_eq!(snapshot(w.portal.db()).await, before, "{}", db.name);
        // A check-in of a seat that is leased online, not checked out.
        let leased = ok(&w.take(&attacker, &key, instance()).await, "lease");
        let not_out = check_in(
            &attacker,
            leased["activation"].as_str().unwrap(),
            Bytes32([0; 32]),
            w.now(),
        );
        let mid = snapshot(w.portal.db()).await;
        refused(
            &post(&w.addr, "/api/v1/checkin", not_out.as_bytes(), None).await,
            409,
            "not-checked-out",
            "a lease",
        );
        assert_eq!(snapshot(w.portal.db()).await, mid);
        // A lease request is not a check-in, nor a file to apply.
        let (lease_req, _) = request(
            &attacker,
            &ask(&key, LeaseAction::Release, instance(), w.now()),
        );
        refused(
            &post(&w.addr, "/api/v1/checkin", lease_req.as_bytes(), None).await,
            400,
            "wrong-kind",
            "kind",
        );
    }
}

// ----- crafted lease requests ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_lease_requests_are_refused_and_touch_no_one_elses_seat() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(&w.portal, floating_policy(1, |_| {})).await;
        let (victim, attacker) = (device(), device());
        let vi = instance();
        let taken = ok(&w.take(&victim, &key, vi).await, "victim");
        let activation = taken["activation"].as_str().unwrap().to_string();
        let before = snapshot(w.portal.db()).await;
        // The attacker's own key, the victim's instance: a renewal of nothing it holds, a
        // release of nothing it holds.
        refused(
            &w.renew(&attacker, &key, vi).await,
            409,
            "not-leased",
            db.name,
        );
        let released = ok(&w.release(&attacker, &key, vi).await, "attacker release");
        assert_eq!(released["released"], false);
        assert_eq!(released["activation"], Value::Null);
        assert_eq!(snapshot(w.portal.db()).await, before, "{}", db.name);
        assert_eq!(w.held(&license).await, 1);
        let shown = w.portal.activation(&activation).await.unwrap();
        assert!(shown.held && shown.instances == 1);
        // A stale release (made more than 300 s ago) is refused.
        let stale = ask(
            &key,
            LeaseAction::Release,
            vi,
            w.now() - chrono::Duration::seconds(301),
        );
        refused(
            &w.send(&victim, &stale).await,
            400,
            "request-stale",
            "stale",
        );
        let future = ask(
            &key,
            LeaseAction::Take,
            vi,
            w.now() + chrono::Duration::seconds(301),
        );
        refused(
            &w.send(&attacker, &future).await,
            400,
            "request-stale",
            "ahead",
        );
        // An action sent to another action's route.
        let (renewal, _) = request(&victim, &ask(&key, LeaseAction::Renew, vi, w.now()));
        let wrong = post(&w.addr, "/api/v1/leases", renewal.as_bytes(), None).await;
        refused(&wrong, 400, "wrong-action", "route");
        assert!(
            wrong.1["error"]["hint"]
                .as_str()
                .unwrap()
                .contains("/api/v1/leases/renew")
        );
        // A feature that is not floating; a tampered request; another kind of file.
        let not_floating = Ask {
            feature: Some("export-pdf"),
            ..ask(&key, LeaseAction::Take, vi, w.now())
        };
        refused(
            &w.send(&victim, &not_floating).await,
            409,
            "feature-not-floating",
            "feature",
        );
        let (mut body, _) = request(
            &attacker,
            &ask(&key, LeaseAction::Take, instance(), w.now()),
        );
        body = body.replacen("A", "B", 3);
        let tampered = post(&w.addr, "/api/v1/leases", body.as_bytes(), None).await;
        assert_eq!(tampered.0, 400, "{}", tampered.1);
        // A replayed take: a copy of the victim's own request is not taken twice.
        let take = ask(&key, LeaseAction::Take, instance(), w.now());
        let (copy, _) = request(&victim, &take);
        ok(
            &post(&w.addr, "/api/v1/leases", copy.as_bytes(), None).await,
            "first",
        );
        refused(
            &post(&w.addr, "/api/v1/leases", copy.as_bytes(), None).await,
            409,
            "request-replayed",
            "replay",
        );
        // A replayed release, after the instance took the seat again, releases nothing.
        let (release, _) = request(&victim, &ask(&key, LeaseAction::Release, vi, w.now()));
        assert_eq!(
            ok(
                &post(&w.addr, "/api/v1/leases/release", release.as_bytes(), None).await,
                "r"
            )["released"],
            true
        );
        ok(&w.take(&victim, &key, vi).await, "again");
        let replay = ok(
            &post(&w.addr, "/api/v1/leases/release", release.as_bytes(), None).await,
            "replayed release",
        );
        assert_eq!(replay["released"], false);
        let shown = w.portal.activation(&activation).await.unwrap();
        assert!(shown.held, "{}: the replay released the seat", db.name);
        // An offline activation request for a floating license is refused.
        let dir = tempfile::tempdir().unwrap();
        let offline = common::request(dir.path(), "m-offline", &key);
        let err = w.portal.apply(&offline, &Actor::cli()).await.unwrap_err();
        assert_eq!(err.code(), "floating-online-only");
        assert!(err.hint().contains("lic lease"), "{}", err.hint());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_suspended_license_refuses_takes_and_renewals() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(&w.portal, floating_policy(2, |_| {})).await;
        let d = device();
        let i = instance();
        ok(&w.take(&d, &key, i).await, "take");
        w.portal
            .edit_license(
                &license,
                lic_portal::ops::LicenseEdit {
                    status: Some("suspended".into()),
                    ..Default::default()
                },
                "unpaid",
                &Actor::cli(),
            )
            .await
            .unwrap();
        refused(
            &w.renew(&d, &key, i).await,
            403,
            "license-suspended",
            db.name,
        );
        refused(
            &w.take(&device(), &key, instance()).await,
            403,
            "license-suspended",
            "take",
        );
        w.portal
            .revoke_license(&license, "fraud", &Actor::cli())
            .await
            .unwrap();
        refused(&w.renew(&d, &key, i).await, 403, "license-revoked", db.name);
    }
}

// ----- floating features ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floating_feature_is_a_pool_of_its_own_across_the_devices() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (_, key) = floating_license(&w.portal, floating_policy(3, |_| {})).await;
        let (a, b, c) = (device(), device(), device());
        let (ia, ib) = (instance(), instance());
        ok(&w.take(&a, &key, ia).await, "a");
        ok(&w.take(&b, &key, ib).await, "b");
        let render = |i| Ask {
            feature: Some("render"),
            ..ask(&key, LeaseAction::Take, i, w.now())
        };
        let answer = ok(&w.send(&a, &render(ia)).await, "a renders");
        let lease = lease_of(&w, &answer).await;
        assert_eq!(lease.feature.as_deref(), Some("render"), "{}", db.name);
        let full = w.send(&b, &render(ib)).await;
        refused(&full, 409, "no-seat", "one use");
        assert!(
            full.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`render`")
        );
        // A device without a seat may not use it at all.
        refused(
            &w.send(&c, &render(instance())).await,
            409,
            "not-leased",
            "no seat",
        );
        let release = Ask {
            feature: Some("render"),
            ..ask(&key, LeaseAction::Release, ia, w.now())
        };
        assert_eq!(ok(&w.send(&a, &release).await, "release")["released"], true);
        ok(&w.send(&b, &render(ib)).await, "b renders");
        // The use lapses with its lease like a seat.
        clock.advance(61);
        ok(&w.renew(&a, &key, ia).await, "a's seat again");
        ok(&w.send(&a, &render(ia)).await, "a renders again");
    }
}

// ----- reclamation ------------------------------------------------------------------------------

async fn reclaimed_ids(w: &World, dry_run: bool) -> Vec<String> {
    let mut ids: Vec<String> = w
        .portal
        .reclaim(dry_run, None, None, &Actor::cli())
        .await
        .unwrap()
        .seats
        .into_iter()
        .map(|s| s.activation)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclamation_frees_exactly_the_inactive_seats_keeps_checkouts_and_is_audited() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(
            &w.portal,
            floating_policy(3, |p| {
                p.lease_secs = 86_400;
                p.max_checkout_hours = Some(48);
                p.reclaim = true;
                p.inactivity_secs = Some(300);
            }),
        )
        .await;
        let (a, b, c, d) = (device(), device(), device(), device());
        let (ia, ib) = (instance(), instance());
        ok(&w.take(&a, &key, ia).await, "a");
        let inactive = ok(&w.take(&b, &key, ib).await, "b")["activation"]
            .as_str()
            .unwrap()
            .to_string();
        ok(&checkout(&w, &c, &key, 24).await.0, "c checks out");
        clock.advance(200);
        ok(&w.renew(&a, &key, ia).await, "a's heartbeat");
        clock.advance(200);
        // B is silent for 400 s (> 300); A for 200 s; C is checked out until its OED.
        let before = snapshot(w.portal.db()).await;
        assert_eq!(
            reclaimed_ids(&w, true).await,
            std::slice::from_ref(&inactive),
            "{}",
            db.name
        );
        assert_eq!(
            snapshot(w.portal.db()).await,
            before,
            "a dry run changes nothing"
        );
        let api = post(&w.addr, "/api/v1/reclaim?dry_run=true", b"", Some(&w.admin)).await;
        assert_eq!(
            ok(&api, "api dry run")["seats"][0]["activation"],
            inactive.as_str()
        );
        // A token limited to other products reclaims nothing of this one.
        let (_, video) = auth::create_token(
            w.portal.db(),
            "video",
            Role::Admin,
            Some(vec!["video-pro".into()]),
            0,
        )
        .await
        .unwrap();
        let scoped = post(&w.addr, "/api/v1/reclaim", b"", Some(&video)).await;
        assert_eq!(ok(&scoped, "scoped")["seats"], serde_json::json!([]));
        assert_eq!(
            reclaimed_ids(&w, false).await,
            std::slice::from_ref(&inactive)
        );
        assert_eq!(w.held(&license).await, 2);
        let audit = w
            .portal
            .audit_log(50, Some(&inactive))
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.action == "seat.reclaimed")
            .unwrap();
        assert_eq!(audit.actor, "reclaimer");
        assert!(audit.reason.unwrap().contains("300 s"));
        // Nothing left to reclaim.
        assert!(reclaimed_ids(&w, false).await.is_empty());
        // D takes the freed seat; B comes back and finds the pool full.
        ok(&w.take(&d, &key, instance()).await, "d");
        refused(&w.renew(&b, &key, ib).await, 409, "no-seat", "b back");
        // B gets a seat back when one is free.
        ok(&w.release(&a, &key, ia).await, "a exits");
        assert_eq!(ok(&w.renew(&b, &key, ib).await, "b")["grant"], "taken");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_reclamation_does_not_reclaim_seats_that_predate_it() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) =
            floating_license(&w.portal, floating_policy(2, |p| p.lease_secs = 86_400)).await;
        let policy = w.portal.license(&license).await.unwrap().policy;
        let a = device();
        ok(&w.take(&a, &key, instance()).await, "a");
        // A day without a heartbeat (the lease is long), before reclamation existed.
        clock.advance(20_000);
        let edit = lic_portal::ops::ReclaimEdit {
            reclaim: Some(true),
            inactivity_secs: Some(600),
            reclaim_every_secs: None,
            reason: "enable reclamation".into(),
        };
        let p = w
            .portal
            .edit_reclamation(&policy, &edit, &Actor::cli())
            .await
            .unwrap();
        assert_eq!(p.reclaim_since, Some(w.now().timestamp()));
        assert!(reclaimed_ids(&w, false).await.is_empty(), "{}", db.name);
        clock.advance(601);
        assert_eq!(reclaimed_ids(&w, false).await.len(), 1, "{}", db.name);
        assert_eq!(w.held(&license).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reclamation_timer_reclaims_what_the_command_would() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (_, key) = floating_license(
            &w.portal,
            floating_policy(3, |p| {
                p.lease_secs = 86_400;
                p.reclaim = true;
                p.inactivity_secs = Some(300);
                p.reclaim_every_secs = Some(1);
            }),
        )
        .await;
        let (a, b) = (device(), device());
        let ia = instance();
        ok(&w.take(&a, &key, ia).await, "a");
        ok(&w.take(&b, &key, instance()).await, "b");
        clock.advance(250);
        ok(&w.renew(&a, &key, ia).await, "a");
        clock.advance(100);
        let expected = reclaimed_ids(&w, true).await;
        assert_eq!(expected.len(), 1);
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let timer = tokio::spawn(Arc::clone(&w.portal).reclaim_timer(Some(tx)));
        let mut got = Vec::new();
        while got.is_empty() {
            let run = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
                .await
                .expect("the timer ran")
                .unwrap();
            got = run.seats.into_iter().map(|s| s.activation).collect();
        }
        timer.abort();
        assert_eq!(got, expected, "{}", db.name);
        assert!(reclaimed_ids(&w, true).await.is_empty());
        let audit = w.portal.audit_log(50, Some(&expected[0])).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|e| e.action == "seat.reclaimed" && e.actor == "reclaimer")
        );
    }
}

// ----- staff's view ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_see_the_lease_its_instances_the_last_access_and_the_oed() {
    for db in backends().await {
        let clock = ManualClock::new(start());
        let w = world(&db, &clock).await;
        let (license, key) = floating_license(
            &w.portal,
            floating_policy(2, |p| {
                p.lease_oed_hours = Some(2);
                p.max_checkout_hours = Some(8);
            }),
        )
        .await;
        let (a, c) = (device(), device());
        let taken = ok(&w.take(&a, &key, instance()).await, "a");
        let id = taken["activation"].as_str().unwrap();
        // "Always set an OED": the lease carries it, and staff cannot take the seat away.
        let lease = lease_of(&w, &taken).await;
        assert_eq!(
            lease.offline_expiry,
            Some(w.now() + chrono::Duration::hours(2))
        );
        let err = w
            .portal
            .deactivate(id, "x", &Actor::cli())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "checked-out", "{}", db.name);
        let (_, admin) = (0, &w.admin);
        let get = |path: String| {
            let addr = w.addr.clone();
            let admin = admin.clone();
            async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let head = format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\n\
                     Connection: close\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                serde_json::from_str::<Value>(out.split_once("\r\n\r\n").unwrap().1).unwrap()
            }
        };
        let shown = get(format!("/api/v1/activations/{id}")).await;
        assert_eq!(shown["floating"], true);
        assert_eq!(shown["held"], true);
        assert_eq!(shown["instances"], 1);
        assert_eq!(shown["lease_expires"], w.now().timestamp() + 60);
        assert_eq!(shown["offline_expiry"], w.now().timestamp() + 7200);
        assert_eq!(shown["checked_out"], false);
        assert_eq!(shown["last_accessed"], w.now().timestamp());
        ok(&checkout(&w, &c, &key, 4).await.0, "c");
        let list = get(format!("/api/v1/activations?license={license}")).await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            items
                .iter()
                .any(|a| a["checked_out"] == true && a["held"] == true)
        );
        // Past the lease and its OED, the seat is shown free.
        clock.advance(2 * 3600 + 1);
        let shown = get(format!("/api/v1/activations/{id}")).await;
        assert_eq!(
            (shown["held"].clone(), shown["instances"].clone()),
            (Value::Bool(false), 0.into())
        );
    }
}
