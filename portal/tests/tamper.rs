//! The tamper matrix, portal side (issue 14): for every kind of file the portal takes as
//! an anonymous HTTP upload — activation request, usage report, deactivation, lease
//! request, check-in — made fresh by a device so that the file as made is accepted, every
//! single-bit flip and every truncation of it, in raw COSE bytes, in armored text and in
//! the QR text form (`LIC1:` + base45, what a phone scans), POSTed through the real router (in process, `tower::ServiceExt::oneshot`) is answered
//! 4xx with a JSON error code, never 5xx, never a panic, and the database is unchanged:
//! every row of every table, dumped before and after each kind's matrix.
//!
//! Each matrix is tried on the database just before the file is accepted; the file as
//! made is then POSTed and must be accepted, on that same database. Armored text damaged
//! where the reader tolerates it by design (a final line end turned into a vertical tab,
//! the final line end cut) decodes to exactly the signed bytes of the file: such a
//! mutation is POSTed after the file itself and must get the answer the file gets a
//! second time, with the database as the file itself left it.
//!
//! The full matrix (some 70,000 uploads) runs on SQLite and on PostgreSQL, about 10
//! seconds each in a debug build. The upload rate limit is off (`RateLimiter::unlimited`).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestDb, device, dump_all, license, policy, portal};
use lic_core::format::{
    self, Bytes32, CheckIn, Credential, Feature, JournalHead, LeaseAction, LeaseRequest, Nonce,
};
use lic_core::keys::SecretKey;
use lic_portal::db::Db;
use lic_portal::http::{self, AppState, RateLimiter};
use lic_portal::ops::Policy;
use serde_json::Value;
use tower::ServiceExt as _;

/// POST `body` to `path` through the router: (status, JSON body).
async fn post(app: &Router, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.to_str().unwrap().starts_with("application/json"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(json, "{path}: {status}, not JSON: {bytes:?}");
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// What one kind's matrix found.
#[derive(Default)]
struct Tally {
    refused: usize,
    same_content: usize,
    codes: BTreeMap<String, usize>,
}

/// Run the matrix of `armored` against `path` on the database as it is now, then POST
/// the file itself (which must be accepted); returns the accepted answer.
async fn matrix(
    app: &Router,
    db: &Db,
    name: &str,
    path: &str,
    armored: &[u8],
    sqlite: bool,
) -> Value {
    let (kind, cose) = format::unarmor(armored).unwrap();
    assert!(kind.is_some(), "{name} is armored");
    let before = dump_all(db, sqlite).await;
    let mut tally = Tally::default();
    let mut same_content = Vec::new();
    let qr = format::qrtext::encode(&cose).into_bytes();
    for (form, original) in [("cose", &cose[..]), ("armored", armored), ("qr", &qr[..])] {
        let flips = (0..original.len() * 8).map(|bit| {
            let mut bytes = original.to_vec();
            bytes[bit / 8] ^= 1 << (bit % 8);
            (
                format!("bit {} of byte {} flipped", bit % 8, bit / 8),
                bytes,
            )
        });
        let cuts =
            (0..original.len()).map(|len| (format!("cut to {len}"), original[..len].to_vec()));
        for (what, bytes) in flips.chain(cuts) {
            let what = format!("{name} ({form}): {what}");
            let decoded = format::unarmor(&bytes).ok();
            // The QR text names no kind; armored text must still name the file's.
            if form != "cose"
                && decoded
                    .as_ref()
                    .is_some_and(|(k, b)| *b == cose && (form == "qr" || *k == kind))
            {
                // Damage outside the signed bytes: tried after the file itself.
                same_content.push((what, bytes));
                continue;
            }
            let (status, body) = post(app, path, bytes).await;
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                status.is_client_error(),
                "{what}: {status} {body} (decoded as {decoded:?})"
            );
            assert!(
                !code.is_empty()
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty())
                    && body["error"]["hint"]
                        .as_str()
                        .is_some_and(|h| !h.is_empty()),
                "{what}: {body}"
            );
            tally.refused += 1;
            *tally.codes.entry(code.to_string()).or_default() += 1;
        }
    }
    assert!(
        dump_all(db, sqlite).await == before,
        "{name}: a refused upload changed the database"
    );
    // The file as made is accepted on this very database.
    let (status, accepted) = post(app, path, armored.to_vec()).await;
    assert!(status.is_success(), "{name} as made: {status} {accepted}");
    // Given again, and each mutation that altered nothing signed: the same answer, and
    // nothing more changes.
    let (again_status, again) = post(app, path, armored.to_vec()).await;
    let after = dump_all(db, sqlite).await;
    for (what, bytes) in same_content {
        let (status, body) = post(app, path, bytes).await;
        assert_eq!((status, &body), (again_status, &again), "{what}");
        tally.same_content += 1;
    }
    assert!(
        dump_all(db, sqlite).await == after,
        "{name}: the same file again changed the database"
    );
    eprintln!(
        "tamper matrix, portal, {name} ({} bytes raw, {} armored, on {}): \
         {} refused, {} armored damage outside the signed bytes answered as the file given \
         again ({again_status}); codes: {:?}",
        cose.len(),
        armored.len(),
        if sqlite { "SQLite" } else { "PostgreSQL" },
        tally.refused,
        tally.same_content,
        tally.codes
    );
    accepted
}

fn floating_policy() -> Policy {
    Policy {
        product: "photo-pro".into(),
        name: "floating".into(),
        seats: 2,
        floating: true,
        lease_secs: 60,
        max_checkout_hours: Some(24),
        features: [("export-pdf".to_string(), Feature::default())].into(),
        ..Policy::default()
    }
}

fn lease_request(key: &SecretKey, license_key: &str, action: LeaseAction, n: u8) -> LeaseRequest {
    LeaseRequest {
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(license_key.into()),
        fingerprint: [("machine-id".to_string(), Bytes32(key.public().to_bytes()))].into(),
        action,
        instance: Nonce([n; 16]),
        feature: None,
        hours: (action == LeaseAction::Checkout).then_some(2),
        journal: (action == LeaseAction::Checkout).then(JournalHead::first),
        nonce: Nonce([n.wrapping_add(100); 16]),
        created: chrono::Utc::now(),
        client: "tamper-test".into(),
        variables: Default::default(),
    }
}

/// Every kind the portal's anonymous upload routes take, on `db`.
async fn every_upload(db: &TestDb) {
    let sqlite = db.name == "sqlite";
    let portal = Arc::new(portal(db).await);
    let state = AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited());
    let app = http::router(state);
    let conn = portal.db();
    let (_, key) = license(&portal, policy(2)).await;
    let store = tempfile::tempdir().unwrap();
    let keys = portal.trusted_keys().await.unwrap();
    let c = device(store.path(), "machine-1", keys);

    // Node-locked: activation request, usage report, deactivation.
    let request = c
        .request_activation(Credential::LicenseKey(key.clone()))
        .unwrap()
        .armored();
    let answer = matrix(
        &app,
        conn,
        "activation request",
        "/api/v1/activate",
        request.as_bytes(),
        sqlite,
    )
    .await;
    c.install(answer["response"].as_str().unwrap().as_bytes())
        .unwrap();
    c.consume("render-minutes", 7).unwrap();
    let report = c.usage_report().unwrap().armored();
    matrix(
        &app,
        conn,
        "usage report",
        "/api/v1/usage",
        report.as_bytes(),
        sqlite,
    )
    .await;
    let deactivation = c.deactivate().unwrap().armored();
    matrix(
        &app,
        conn,
        "deactivation",
        "/api/v1/deactivate",
        deactivation.as_bytes(),
        sqlite,
    )
    .await;

    // Floating: a lease request, a checkout's check-in.
    let (_, floating_key) = license(&portal, floating_policy()).await;
    let machine = SecretKey::generate();
    let take = format::sign(
        &lease_request(&machine, &floating_key, LeaseAction::Take, 1),
        &machine,
    )
    .unwrap()
    .armored();
    matrix(
        &app,
        conn,
        "lease request",
        "/api/v1/leases",
        take.as_bytes(),
        sqlite,
    )
    .await;

    let laptop = SecretKey::generate();
    let checkout = format::sign(
        &lease_request(&laptop, &floating_key, LeaseAction::Checkout, 2),
        &laptop,
    )
    .unwrap();
    let (status, answer) = post(&app, "/api/v1/checkout", checkout.armored().into_bytes()).await;
    assert!(status.is_success(), "{status} {answer}");
    let activation = format::open::<format::License>(
        answer["response"].as_str().unwrap().as_bytes(),
        &portal.trusted_keys().await.unwrap(),
    )
    .unwrap()
    .payload()
    .activation_id
    .clone();
    let check_in = CheckIn {
        activation_id: activation,
        product: "photo-pro".into(),
        counters: [("export-pdf".to_string(), 3)].into(),
        journal: JournalHead {
            seq: 1,
            prev: checkout.hash(),
            trail: Vec::new(),
        },
        created: chrono::Utc::now(),
        variables: Default::default(),
    };
    let check_in = format::sign(&check_in, &laptop).unwrap().armored();
    matrix(
        &app,
        conn,
        "check-in",
        "/api/v1/checkin",
        check_in.as_bytes(),
        sqlite,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flip_and_cut_of_every_upload_is_refused_4xx_and_changes_nothing_on_sqlite() {
    let db = common::backends().await.into_iter().next().unwrap();
    assert_eq!(db.name, "sqlite");
    every_upload(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flip_and_cut_of_every_upload_is_refused_4xx_and_changes_nothing_on_postgres() {
    let Some(db) = common::postgres().await else {
        return;
    };
    every_upload(&db).await;
}
