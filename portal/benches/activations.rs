//! Activations per second through the library (no HTTP), 32 concurrent callers, on
//! SQLite with durable commits (and PostgreSQL when reachable). A load test against the
//! HTTP server is `lic-load` (docs/performance.md).

use std::sync::Arc;
use std::time::Instant;

use lic_core::format::{self, ActivationRequest, Bytes32, Credential, JournalHead, Nonce};
use lic_core::keys::SecretKey;
use lic_portal::db::Db;
use lic_portal::ops::{NewLicense, Policy};
use lic_portal::{Actor, Portal};

fn request(key: &str, i: usize) -> Vec<u8> {
    let device = SecretKey::generate();
    let r = ActivationRequest {
        pool_seats: None,
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(key.into()),
        fingerprint: [("machine-id".to_string(), Bytes32([(i % 251) as u8; 32]))].into(),
        nonce: Nonce([(i % 256) as u8; 16]),
        created: chrono::Utc::now(),
        client: "bench".into(),
        journal: JournalHead::first(),
        variables: Default::default(),
    };
    format::sign(&r, &device).expect("valid").into_bytes()
}

async fn run(url: &str, keys: &std::path::Path, n: usize) {
    let db = Db::connect(url).await.expect("db");
    Portal::init(&db, keys).await.expect("init");
    let portal = Arc::new(Portal::open(db, keys).await.expect("open"));
    let a = Actor("bench".into());
    portal
        .create_product("photo-pro", "Photo Pro", &a)
        .await
        .expect("product");
    let policy = portal
        .create_policy(
            Policy {
                id: String::new(),
                product: "photo-pro".into(),
                name: "bench".into(),
                license_type: format::LicenseType::Perpetual,
                allow_offline: true,
                seats: 1_000_000,
                validity_days: None,
                features: Default::default(),
                match_rule: format::MatchRule {
                    required: vec!["machine-id".into()],
                    max_changed: 0,
                },
                clock_tolerance_secs: 3600,
                max_offline_days: None,
                inactivity_secs: None,
                max_deactivations: None,
                deactivation_period_days: None,
                total_limits: Default::default(),
                refuse_over_total: false,
                created: 0,
                ..Policy::default()
            },
            &a,
        )
        .await
        .expect("policy");
    let key = portal
        .create_license(
            NewLicense {
                policy: policy.id,
                ..Default::default()
            },
            &a,
        )
        .await
        .expect("license")
        .key
        .expect("key");
    let requests: Vec<Vec<u8>> = (0..n).map(|i| request(&key, i)).collect();
    let requests = Arc::new(requests);
    let start = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let (portal, requests) = (Arc::clone(&portal), Arc::clone(&requests));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (w..requests.len()).step_by(32) {
                    let t = Instant::now();
                    portal
                        .apply(&requests[i], &Actor("bench".into()))
                        .await
                        .expect("applied");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "{url}: {n} activations in {secs:.2} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / secs,
        lat[lat.len() / 2].as_secs_f64() * 1e3,
        lat[lat.len() * 99 / 100].as_secs_f64() * 1e3
    );
}

fn main() {
    let n: usize = std::env::var("LIC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    rt.block_on(run(&url, &dir.path().join("keys"), n));
    for f in ["bench.db", "bench.db-wal"] {
        let size = std::fs::metadata(dir.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        println!("{f}: {} KiB", size / 1024);
    }
}
