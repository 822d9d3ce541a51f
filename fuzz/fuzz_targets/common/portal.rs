//! The portal the portal targets share: SQLite on tmpfs, product photo-pro, a
//! node-locked license with the fixtures' key and a floating license.

use std::sync::{Arc, OnceLock};

use lic_core::format::{Feature, LicenseType, MatchRule};
use lic_portal::ops::{NewLicense, Policy};
use lic_portal::{Actor, Portal};

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub portal: Arc<Portal>,
    /// A time-limited license whose key is the fixtures' (their requests name it).
    pub license: String,
    /// A floating license: the fixtures' check-ins and lease requests reach it.
    pub floating_key: String,
    _dir: tempfile::TempDir,
}

fn policy(name: &str, floating: bool) -> Policy {
    let mut p = Policy {
        product: lic_fixtures::PRODUCT.into(),
        name: name.into(),
        license_type: if floating {
            LicenseType::Floating
        } else {
            LicenseType::TimeLimited
        },
        floating,
        allow_offline: true,
        seats: 3,
        validity_days: Some(365),
        features: [
            ("export-pdf".to_string(), Feature::default()),
            (
                "render-minutes".to_string(),
                Feature {
                    limit: Some(600),
                    ..Feature::default()
                },
            ),
        ]
        .into(),
        match_rule: MatchRule {
            required: vec!["machine-id".into()],
            max_changed: 2,
        },
        clock_tolerance_secs: 3600,
        max_deactivations: Some(5),
        deactivation_period_days: Some(30),
        ..Policy::default()
    };
    if floating {
        p.lease_secs = 600;
        p.max_checkout_hours = Some(72);
    }
    p
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = super::runtime();
        // On tmpfs where there is one: the database is written on every input.
        let dir = super::scratch("lic-fuzz-portal-");
        let (portal, license, floating_key) = rt.block_on(async {
            let url = format!("sqlite://{}", dir.path().join("portal.db").display());
            let db = lic_portal::db::Db::connect(&url).await.expect("database");
            let keys = dir.path().join("keys");
            Portal::init(&db, &keys).await.expect("init");
            let portal = Portal::open(db, &keys).await.expect("open");
            let actor = Actor::cli();
            portal
                .create_product(lic_fixtures::PRODUCT, "Photo Pro", &actor)
                .await
                .expect("product");
            let mut ids = Vec::new();
            for (name, floating) in [("node-locked", false), ("floating", true)] {
                let p = portal
                    .create_policy(policy(name, floating), &actor)
                    .await
                    .expect("policy");
                let created = portal
                    .create_license(
                        NewLicense {
                            policy: p.id,
                            ..Default::default()
                        },
                        &actor,
                    )
                    .await
                    .expect("license");
                ids.push((created.license.id, created.key.expect("a key")));
            }
            // The node-locked license takes the fixtures' key, so that their requests
            // (and what the fuzzer makes of them) reach it.
            sqlx::query("UPDATE licenses SET key_hash = $1 WHERE id = $2")
                .bind(lic_portal::ops::key_hash(lic_fixtures::LICENSE_KEY))
                .bind(&ids[0].0)
                .execute(portal.db().pool())
                .await
                .expect("the fixtures' key");
            (portal, ids[0].0.clone(), ids[1].1.clone())
        });
        World {
            rt,
            portal: Arc::new(portal),
            license,
            floating_key,
            _dir: dir,
        }
    })
}

/// After every file the portal takes: a license's seats used are its active
/// activations, never more than its seats. (Counted in SQL: the activation listing brings
/// every integrity flag of each activation, and a fuzzer raises thousands.)
pub async fn books_balance(w: &World) {
    let info = w.portal.license(&w.license).await.expect("the license");
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM activations WHERE license = $1 AND state = 'active'",
    )
    .bind(&w.license)
    .fetch_one(w.portal.db().pool())
    .await
    .expect("active activations");
    assert_eq!(info.seats_used, active, "seats used against active activations");
    assert!(info.seats_used <= info.seats, "{} of {} seats", info.seats_used, info.seats);
}

