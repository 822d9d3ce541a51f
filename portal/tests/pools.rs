//! On-premise floating servers (pools) at the portal, on SQLite and on PostgreSQL: a
//! server's activation request takes `pool_seats` of a floating license; the seats are
//! counted in every seat count (leases, checkouts, other pools, license edits); the
//! server's deactivation frees them; support's refresh changes them; and the refusals
//! (`pool-not-floating`, `no-seat`, `pool-held`, `device-has-seat`, `not-a-pool`,
//! `seats-in-use`) change nothing — also for a request the customer crafted with their
//! own device key.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use common::{TestDb, backends, snapshot};
use lic_core::format::{
    self, ActivationRequest, Bytes32, Credential, Fingerprint, JournalHead, LeaseAction,
    LeaseRequest, License, Nonce, Refresh,
};
use lic_core::keys::SecretKey;
use lic_portal::auth::{self, Role};
use lic_portal::http::{self, AppState, RateLimiter};
use lic_portal::ops::{LicenseEdit, Policy, RefreshSpec};
use lic_portal::{Actor, Portal, PortalError};
use serde_json::Value;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn nonce() -> Nonce {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8] = 0x9f;
    Nonce(b)
}

/// A floating policy of `seats` seats (leases of 60 s).
fn floating_policy(seats: i64) -> Policy {
    Policy {
        product: "photo-pro".into(),
        name: format!("pool-{seats}-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
        seats,
        floating: true,
        lease_secs: 60,
        features: [("export-pdf".to_string(), format::Feature::default())].into(),
        ..Policy::default()
    }
}

/// A node-locked policy of `seats` seats.
fn node_locked_policy(seats: i64) -> Policy {
    Policy {
        name: format!("locked-{seats}-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
        ..common::policy(seats)
    }
}

/// An on-premise floating server: a `lic` store in its own directory.
struct Server {
    dir: tempfile::TempDir,
    machine: String,
}

impl Server {
    fn new() -> Server {
        Server {
            dir: tempfile::tempdir().unwrap(),
            machine: format!("server-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
        }
    }

    fn client(&self, keys: lic_core::keys::Keyring) -> lic_core::client::Client {
        common::device(self.dir.path(), &self.machine, keys)
    }

    /// Its activation request for a pool of `seats` (the same one again while it is
    /// pending).
    fn request(&self, key: &str, seats: u32) -> Vec<u8> {
        self.client(lic_core::keys::Keyring::new())
            .request_pool_activation(Credential::LicenseKey(key.into()), seats)
            .unwrap()
            .armored()
            .into_bytes()
    }
}

/// A workstation that leases seats online: its device key and fingerprint.
struct Workstation {
    key: SecretKey,
    fingerprint: Fingerprint,
}

fn workstation() -> Workstation {
    let key = SecretKey::generate();
    let fingerprint = [("machine-id".to_string(), Bytes32(key.public().to_bytes()))].into();
    Workstation { key, fingerprint }
}

fn lease_request(w: &Workstation, key: &str) -> Vec<u8> {
    let r = LeaseRequest {
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(key.into()),
        fingerprint: w.fingerprint.clone(),
        action: LeaseAction::Take,
        instance: nonce(),
        feature: None,
        hours: None,
        journal: None,
        nonce: nonce(),
        created: Utc::now(),
        client: "pools-test".into(),
        variables: Default::default(),
    };
    format::sign(&r, &w.key).unwrap().armored().into_bytes()
}

async fn take(portal: &Portal, w: &Workstation, key: &str) -> Result<String, PortalError> {
    portal
        .lease(
            &lease_request(w, key),
            LeaseAction::Take,
            false,
            &Actor::anonymous("127.0.0.1"),
        )
        .await
        .map(|a| a.activation)
}

/// An activation request the customer wrote and signed with a device key of their own.
fn crafted_pool_request(key: &SecretKey, license_key: &str, seats: Option<u32>) -> Vec<u8> {
    let r = ActivationRequest {
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(license_key.into()),
        fingerprint: [("machine-id".to_string(), Bytes32(key.public().to_bytes()))].into(),
        nonce: nonce(),
        created: Utc::now(),
        client: "crafted".into(),
        journal: JournalHead::first(),
        variables: Default::default(),
        pool_seats: seats,
    };
    format::sign(&r, key).unwrap().armored().into_bytes()
}

async fn opened<T: format::Payload>(portal: &Portal, armored: &str) -> T {
    let keys = portal.trusted_keys().await.unwrap();
    format::open::<T>(armored.as_bytes(), &keys)
        .unwrap()
        .into_payload()
}

async fn seats_used(portal: &Portal, license: &str) -> i64 {
    portal.license(license).await.unwrap().seats_used
}

#[track_caller]
fn refused<T: std::fmt::Debug>(got: Result<T, PortalError>, code: &str, what: &str) -> PortalError {
    let e = got.expect_err(what);
    assert_eq!(e.code(), code, "{what}: {e}");
    assert!(!e.to_string().is_empty() && !e.hint().is_empty(), "{what}");
    e
}

async fn setup(db: &TestDb) -> Portal {
    common::portal(db).await
}

fn who() -> Actor {
    Actor::cli()
}

// ----- a pool ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_request_on_a_floating_license_gets_a_pool_license_and_holds_its_seats() {
    for db in backends().await {
        let portal = setup(&db).await;
        let (license, key) = common::license(&portal, floating_policy(5)).await;
        let server = Server::new();
        let request = server.request(&key, 3);
        let applied = portal.apply(&request, &who()).await.unwrap();
        let pool: License = opened(&portal, &applied.response).await;
        assert_eq!(pool.pool_seats, Some(3), "{}", db.name);
        assert_eq!(pool.license_id, license);
        assert!(pool.features.contains_key("export-pdf"));
        assert!(pool.pool.is_none());
        let act = applied.activation.clone().unwrap();
        let shown = portal.activation(&act).await.unwrap();
        assert_eq!(shown.pool_seats, Some(3));
        assert!(shown.held && shown.floating);
        assert_eq!(seats_used(&portal, &license).await, 3);
        // The JSON view carries it.
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["pool_seats"], 3);

        // The same request again: the same license, nothing more taken.
        let again = portal.apply(&request, &who()).await.unwrap();
        assert!(again.replay);
        assert_eq!(again.response, applied.response);
        assert_eq!(seats_used(&portal, &license).await, 3);

        // The server's store is reset and it asks again (even for more seats): its pool
        // comes back, with the seats it holds.
        common::reset_store(server.dir.path());
        let anew = portal
            .apply(&server.request(&key, 4), &who())
            .await
            .unwrap();
        assert_eq!(anew.activation.as_deref(), Some(act.as_str()));
        let back: License = opened(&portal, &anew.response).await;
        assert_eq!(back.pool_seats, Some(3));
        assert_eq!(seats_used(&portal, &license).await, 3, "{}", db.name);

        // Two seats are left for leases: two workstations lease, the third finds none.
        let (a, b, c) = (workstation(), workstation(), workstation());
        take(&portal, &a, &key).await.unwrap();
        take(&portal, &b, &key).await.unwrap();
        refused(
            take(&portal, &c, &key).await,
            "no-seat",
            "the pool holds the rest",
        );
        // The listing shows the pool and its seats.
        let listed = portal.activations(Some(&license), None).await.unwrap();
        let pools: Vec<_> = listed.iter().filter(|x| x.pool_seats.is_some()).collect();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].id, act);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_requests_that_cannot_be_granted_are_refused_and_change_nothing() {
    for db in backends().await {
        let portal = setup(&db).await;
        // A node-locked license has no pool.
        let (_, locked_key) = common::license(&portal, node_locked_policy(5)).await;
        let before = snapshot(portal.db()).await;
        refused(
            portal
                .apply(&Server::new().request(&locked_key, 1), &who())
                .await,
            "pool-not-floating",
            "node-locked",
        );
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        let (license, key) = common::license(&portal, floating_policy(5)).await;
        // More seats than the license has.
        let before = snapshot(portal.db()).await;
        let e = refused(
            portal.apply(&Server::new().request(&key, 6), &who()).await,
            "no-seat",
            "six of five",
        );
        assert!(e.to_string().contains("5 of its 5"), "{e}");
        assert_eq!(e.status(), 409);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        // One pool per license.
        let first = portal
            .apply(&Server::new().request(&key, 2), &who())
            .await
            .unwrap();
        let holder = first.activation.unwrap();
        let before = snapshot(portal.db()).await;
        let e = refused(
            portal.apply(&Server::new().request(&key, 1), &who()).await,
            "pool-held",
            "a second pool",
        );
        assert!(e.to_string().contains(&holder), "{e}");
        assert!(e.hint().contains("deactivate"), "{}", e.hint());
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        // A workstation that holds a leased seat cannot hold a pool too (after the first
        // pool is gone).
        portal.deactivate(&holder, "moved", &who()).await.unwrap();
        assert_eq!(seats_used(&portal, &license).await, 0);
        let w = workstation();
        let leased = take(&portal, &w, &key).await.unwrap();
        let before = snapshot(portal.db()).await;
        let e = refused(
            portal
                .apply(&crafted_pool_request(&w.key, &key, Some(1)), &who())
                .await,
            "device-has-seat",
            "a leasing workstation",
        );
        assert!(e.to_string().contains(&leased), "{e}");
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        // And the server of a pool takes no leased seat of its license.
        let server = SecretKey::generate();
        portal
            .apply(&crafted_pool_request(&server, &key, Some(2)), &who())
            .await
            .unwrap();
        let as_workstation = Workstation {
            fingerprint: [(
                "machine-id".to_string(),
                Bytes32(server.public().to_bytes()),
            )]
            .into(),
            key: server,
        };
        refused(
            take(&portal, &as_workstation, &key).await,
            "device-has-seat",
            "the server leasing",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_leases_hold_seats_a_pool_cannot_take() {
    for db in backends().await {
        let portal = setup(&db).await;
        let (license, key) = common::license(&portal, floating_policy(3)).await;
        take(&portal, &workstation(), &key).await.unwrap();
        take(&portal, &workstation(), &key).await.unwrap();
        let before = snapshot(portal.db()).await;
        let e = refused(
            portal.apply(&Server::new().request(&key, 2), &who()).await,
            "no-seat",
            "two leased of three",
        );
        assert!(e.to_string().contains("1 of its 3"), "{e}");
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        portal
            .apply(&Server::new().request(&key, 1), &who())
            .await
            .unwrap();
        assert_eq!(seats_used(&portal, &license).await, 1);
        refused(take(&portal, &workstation(), &key).await, "no-seat", "full");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_deactivation_frees_every_seat_of_its_pool() {
    for db in backends().await {
        let portal = setup(&db).await;
        let keys = portal.trusted_keys().await.unwrap();
        let (license, key) = common::license(&portal, floating_policy(4)).await;
        let server = Server::new();
        let applied = portal
            .apply(&server.request(&key, 4), &who())
            .await
            .unwrap();
        let client = server.client(keys);
        client.install(applied.response.as_bytes()).unwrap();
        refused(
            take(&portal, &workstation(), &key).await,
            "no-seat",
            "all pooled",
        );

        // Usage the server aggregated from its clients, then its deactivation.
        client.consume("export-pdf", 1).unwrap();
        let report = client.usage_report().unwrap().armored();
        portal.apply(report.as_bytes(), &who()).await.unwrap();
        let deactivation = client.deactivate().unwrap().armored();
        portal.apply(deactivation.as_bytes(), &who()).await.unwrap();
        assert_eq!(seats_used(&portal, &license).await, 0, "{}", db.name);
        let act = applied.activation.unwrap();
        let shown = portal.activation(&act).await.unwrap();
        assert_eq!(shown.state, "deactivated");
        assert!(!shown.held);
        assert_eq!(shown.pool_seats, Some(4));
        // Applied again: nothing more is freed.
        portal.apply(deactivation.as_bytes(), &who()).await.unwrap();
        assert_eq!(seats_used(&portal, &license).await, 0);
        take(&portal, &workstation(), &key).await.unwrap();

        // A new pool next to the lease, ended by staff: its seats are free again, the
        // lease's stays counted by its lease.
        let next = portal
            .apply(&Server::new().request(&key, 3), &who())
            .await
            .unwrap()
            .activation
            .unwrap();
        assert_eq!(seats_used(&portal, &license).await, 3);
        portal
            .deactivate(&next, "server lost", &who())
            .await
            .unwrap();
        assert_eq!(seats_used(&portal, &license).await, 0, "{}", db.name);
        portal
            .apply(&Server::new().request(&key, 3), &who())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_gives_a_pool_more_or_fewer_seats_and_always_says_how_many() {
    for db in backends().await {
        let portal = setup(&db).await;
        let (license, key) = common::license(&portal, floating_policy(5)).await;
        let server = Server::new();
        let act = portal
            .apply(&server.request(&key, 2), &who())
            .await
            .unwrap()
            .activation
            .unwrap();
        take(&portal, &workstation(), &key).await.unwrap();
        let spec = |seats: Option<u32>| RefreshSpec {
            reason: "order 42".into(),
            pool_seats: seats,
            ..Default::default()
        };
        // 5 seats, 1 leased: the pool may grow to 4.
        let file = portal.refresh(&act, &spec(Some(4)), &who()).await.unwrap();
        let refresh: Refresh = opened(&portal, &file).await;
        assert_eq!(refresh.pool_seats, Some(4));
        assert_eq!(seats_used(&portal, &license).await, 4, "{}", db.name);
        assert_eq!(portal.activation(&act).await.unwrap().pool_seats, Some(4));
        refused(
            take(&portal, &workstation(), &key).await,
            "no-seat",
            "grown",
        );

        let before = snapshot(portal.db()).await;
        let e = refused(
            portal.refresh(&act, &spec(Some(5)), &who()).await,
            "no-seat",
            "five with one leased",
        );
        assert!(e.to_string().contains("4 of its 5"), "{e}");
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        // A refresh that changes something else still says how many seats.
        let file = portal.refresh(&act, &spec(None), &who()).await.unwrap();
        let refresh: Refresh = opened(&portal, &file).await;
        assert_eq!(refresh.pool_seats, Some(4));
        assert_eq!(refresh.serial, 3);

        // Fewer seats give them back.
        portal.refresh(&act, &spec(Some(1)), &who()).await.unwrap();
        assert_eq!(seats_used(&portal, &license).await, 1);
        take(&portal, &workstation(), &key).await.unwrap();

        // The server's store is reset and it asks again: the pool comes back with the
        // seats the last refresh gave it, and that refresh's serial.
        common::reset_store(server.dir.path());
        let anew = portal
            .apply(&server.request(&key, 5), &who())
            .await
            .unwrap();
        assert_eq!(anew.activation.as_deref(), Some(act.as_str()));
        let back: License = opened(&portal, &anew.response).await;
        assert_eq!(back.pool_seats, Some(1), "{}", db.name);
        assert_eq!(back.serial, 4);
        assert_eq!(seats_used(&portal, &license).await, 1);

        // Not a pool.
        let (_, locked_key) = common::license(&portal, node_locked_policy(2)).await;
        let dir = tempfile::tempdir().unwrap();
        let locked = portal
            .apply(&common::request(dir.path(), "ws-1", &locked_key), &who())
            .await
            .unwrap()
            .activation
            .unwrap();
        let before = snapshot(portal.db()).await;
        refused(
            portal.refresh(&locked, &spec(Some(2)), &who()).await,
            "not-a-pool",
            "node-locked",
        );
        assert_eq!(snapshot(portal.db()).await, before);
        // An ordinary refresh of a node-locked device has no pool seats.
        let file = portal.refresh(&locked, &spec(None), &who()).await.unwrap();
        let refresh: Refresh = opened(&portal, &file).await;
        assert_eq!(refresh.pool_seats, None);
        refused(
            portal.refresh(&act, &spec(Some(0)), &who()).await,
            "invalid",
            "no seats",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_edit_below_the_seats_a_pool_holds_is_refused() {
    for db in backends().await {
        let portal = setup(&db).await;
        let (license, key) = common::license(&portal, floating_policy(5)).await;
        portal
            .apply(&Server::new().request(&key, 4), &who())
            .await
            .unwrap();
        let before = snapshot(portal.db()).await;
        let e = refused(
            portal
                .edit_license(
                    &license,
                    LicenseEdit {
                        seats: Some(3),
                        ..Default::default()
                    },
                    "downgrade",
                    &who(),
                )
                .await,
            "seats-in-use",
            "below the pool",
        );
        assert!(e.to_string().contains("pool"), "{e}");
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        portal
            .edit_license(
                &license,
                LicenseEdit {
                    seats: Some(4),
                    ..Default::default()
                },
                "downgrade",
                &who(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_pool_request_signed_with_the_customers_own_key_gets_no_more_than_is_free() {
    for db in backends().await {
        let portal = setup(&db).await;
        let (license, key) = common::license(&portal, floating_policy(5)).await;
        take(&portal, &workstation(), &key).await.unwrap();
        let attacker = SecretKey::generate();
        let before = snapshot(portal.db()).await;
        for seats in [5, 6, u32::MAX] {
            refused(
                portal
                    .apply(&crafted_pool_request(&attacker, &key, Some(seats)), &who())
                    .await,
                "no-seat",
                &format!("{seats} seats"),
            );
        }
        // (A pool of no seats cannot even be signed: the format refuses it.)
        // An anonymous upload is refused the same.
        refused(
            portal
                .apply(
                    &crafted_pool_request(&attacker, &key, Some(9)),
                    &Actor::anonymous("203.0.113.9"),
                )
                .await,
            "no-seat",
            "anonymous",
        );
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        // What is free, it may have: the pool is a floating license's feature.
        portal
            .apply(&crafted_pool_request(&attacker, &key, Some(4)), &who())
            .await
            .unwrap();
        assert_eq!(seats_used(&portal, &license).await, 4);
        // A second crafted request from the same key gets its pool back, no more.
        let again = portal
            .apply(&crafted_pool_request(&attacker, &key, Some(5)), &who())
            .await
            .unwrap();
        let back: License = opened(&portal, &again.response).await;
        assert_eq!(back.pool_seats, Some(4));
        assert_eq!(seats_used(&portal, &license).await, 4, "{}", db.name);
    }
}

// ----- over HTTP -----------------------------------------------------------------------------

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

async fn call(addr: &str, method: &str, path: &str, body: &str, token: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_shows_pool_seats_and_refreshes_them() {
    for db in backends().await {
        let portal = Arc::new(setup(&db).await);
        let (_, admin) = auth::create_token(portal.db(), "admin", Role::Admin, None, 0)
            .await
            .unwrap();
        let (addr, _stop) = serve(Arc::clone(&portal)).await;
        let (license, key) = common::license(&portal, floating_policy(5)).await;
        let act = portal
            .apply(&Server::new().request(&key, 2), &who())
            .await
            .unwrap()
            .activation
            .unwrap();
        let (status, shown) = call(
            &addr,
            "GET",
            &format!("/api/v1/activations/{act}"),
            "",
            &admin,
        )
        .await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["pool_seats"], 2, "{shown}");
        let (status, listed) = call(
            &addr,
            "GET",
            &format!("/api/v1/activations?license={license}"),
            "",
            &admin,
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        assert!(listed.to_string().contains("\"pool_seats\":2"), "{listed}");

        let path = format!("/api/v1/activations/{act}/refresh");
        let (status, answer) = call(
            &addr,
            "POST",
            &path,
            r#"{"reason":"order 7","pool_seats":3}"#,
            &admin,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let refresh: Refresh = opened(&portal, answer["refresh"].as_str().unwrap()).await;
        assert_eq!(refresh.pool_seats, Some(3));
        let (status, answer) = call(
            &addr,
            "POST",
            &path,
            r#"{"reason":"order 8","pool_seats":6}"#,
            &admin,
        )
        .await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"]["code"], "no-seat", "{answer}");
        assert_eq!(seats_used(&portal, &license).await, 3, "{}", db.name);
    }
}

// ----- under concurrency -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pools_and_leases_never_hold_more_than_the_seats_and_one_pool_wins() {
    for db in backends().await {
        let portal = Arc::new(setup(&db).await);
        let (license, key) = common::license(&portal, floating_policy(5)).await;
        // Six servers ask for a pool of 2 at once, while six workstations lease.
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (p, k) = (Arc::clone(&portal), key.clone());
            let request = Server::new().request(&key, 2);
            tasks.push(tokio::spawn(async move {
                p.apply(&request, &Actor::cli()).await.map(|_| "pool")
            }));
            let (p, k2) = (Arc::clone(&portal), k);
            tasks.push(tokio::spawn(async move {
                take(&p, &workstation(), &k2).await.map(|_| "lease")
            }));
        }
        let mut pools = 0;
        let mut leases = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok("pool") => pools += 1,
                Ok(_) => leases += 1,
                Err(e) => assert!(
                    ["pool-held", "no-seat", "conflict"].contains(&e.code()),
                    "{}: {e}",
                    db.name
                ),
            }
        }
        assert!(pools <= 1, "{}: {pools} pools", db.name);
        assert!(
            pools * 2 + leases <= 5,
            "{}: {pools} pools, {leases} leases",
            db.name
        );
        let listed = portal.activations(Some(&license), None).await.unwrap();
        let pooled: i64 = listed
            .iter()
            .filter(|a| a.state == "active")
            .filter_map(|a| a.pool_seats)
            .sum();
        let leased = listed
            .iter()
            .filter(|a| a.held && a.pool_seats.is_none())
            .count();
        assert_eq!(pooled, pools * 2, "{}", db.name);
        assert_eq!(leased, leases as usize, "{}", db.name);
        assert_eq!(seats_used(&portal, &license).await, pooled, "{}", db.name);
    }
}
