//! Paged, filtered lists through the library, on SQLite and PostgreSQL: walking every page
//! returns every row exactly once, in the list's order; each filter keeps exactly its
//! rows; limits out of range, bad cursors and unknown filter values are clear errors.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{backends, policy, portal};
use lic_portal::ops::{
    Activation, ActivationFilter, AuditFilter, LicenseFilter, LicenseInfo, NewLicense, Page,
    PageRequest, Policy, PolicyFilter,
};
use lic_portal::{Actor, Portal, PortalError};
use sqlx::Row as _;

/// Every page of a list, `limit` at a time, checking that only the last has no `next`.
macro_rules! walk {
    ($limit:expr, |$page:ident| $call:expr) => {{
        let mut out = Vec::new();
        let mut $page = PageRequest::first($limit);
        let mut pages = 0;
        loop {
            let p: Page<_> = $call.await.unwrap();
            pages += 1;
            let limit = usize::try_from($limit).unwrap();
            assert!(p.items.len() <= limit, "a page is at most the limit");
            let last = p.next.is_none();
            assert!(
                last || p.items.len() == limit,
                "only the last page is short"
            );
            out.extend(p.items);
            match p.next {
                Some(next) => $page.after = Some(next),
                None => break,
            }
            assert!(pages < 10_000, "the walk does not end");
        }
        out
    }};
}

/// The ids of `sql`'s rows, in its order: what a list must return, read independently.
async fn ids(portal: &Portal, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(portal.db().pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect()
}

/// Which items a filter keeps, said independently of the portal.
type Keep<'a, T> = Box<dyn Fn(&T) -> bool + 'a>;

fn once<T: Ord + Clone + std::fmt::Debug>(items: &[T], what: &str) {
    let set: BTreeSet<T> = items.iter().cloned().collect();
    assert_eq!(
        set.len(),
        items.len(),
        "{what}: a row came twice: {items:?}"
    );
}

/// A portal with three products, policies, licenses of three customers (some revoked),
/// and activations (some deactivated) with creation times that tie and differ.
struct World {
    portal: Portal,
    _devices: Vec<tempfile::TempDir>,
}

async fn world(db: &common::TestDb) -> World {
    let portal = portal(db).await;
    let cli = Actor::cli();
    for code in ["audio-pro", "video-pro"] {
        portal.create_product(code, code, &cli).await.unwrap();
    }
    let mut policies = Vec::new();
    for (product, name) in [
        ("photo-pro", "a"),
        ("photo-pro", "b"),
        ("video-pro", "a"),
        ("audio-pro", "z"),
        ("video-pro", "c"),
    ] {
        let p = Policy {
            product: product.into(),
            name: name.into(),
            ..policy(50)
        };
        policies.push(portal.create_policy(p, &cli).await.unwrap());
    }
    let customers = [Some("acme"), Some("globex"), None, Some("acme corp")];
    let mut keys = Vec::new();
    for i in 0..14 {
        let created = portal
            .create_license(
                NewLicense {
                    policy: policies[i % policies.len()].id.clone(),
                    customer: customers[i % customers.len()].map(String::from),
                    ..Default::default()
                },
                &cli,
            )
            .await
            .unwrap();
        if i % 5 == 2 {
            portal
                .revoke_license(&created.license.id, "test", &cli)
                .await
                .unwrap();
        } else if created.license.product == "photo-pro" || created.license.product == "video-pro" {
            keys.push((created.license.product.clone(), created.key.unwrap()));
        }
    }
    let mut devices = Vec::new();
    for i in 0..11 {
        let (product, key) = &keys[i % keys.len()];
        let dir = tempfile::tempdir().unwrap();
        let request = {
            use lic_core::fingerprint::{RawComponents, StaticSource, component};
            let raw: RawComponents = [(component::MACHINE_ID, format!("machine-{i}"))]
                .into_iter()
                .collect();
            lic_core::client::Client::builder(product)
                .store(dir.path())
                .trust(lic_core::keys::Keyring::new())
                .fingerprint_source(StaticSource(raw))
                .open()
                .unwrap()
                .request_activation(lic_core::format::Credential::LicenseKey(key.clone()))
                .unwrap()
                .armored()
        };
        let applied = portal.apply(request.as_bytes(), &cli).await.unwrap();
        if i % 3 == 1 {
            portal
                .deactivate(applied.activation.as_deref().unwrap(), "lost", &cli)
                .await
                .unwrap();
        }
        devices.push(dir);
    }
    // Times that differ and tie, as at any real portal (ties are ordered by id): in id
    // order, 0, 10, 20, 0, 10, 20… seconds before a fixed time (the rows were made over
    // however many seconds the machine took).
    const BASE: i64 = 1_800_000_000;
    for table in ["licenses", "activations"] {
        let all = ids(&portal, &format!("SELECT id FROM {table} ORDER BY id")).await;
        for (i, id) in all.iter().enumerate() {
            sqlx::query(&format!("UPDATE {table} SET created = $1 WHERE id = $2"))
                .bind(BASE - i64::try_from(i % 3).unwrap() * 10)
                .bind(id)
                .execute(portal.db().pool())
                .await
                .unwrap();
        }
    }
    World {
        portal,
        _devices: devices,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_every_list_returns_every_row_once_in_its_order() {
    for db in backends().await {
        let w = world(&db).await;
        let p = &w.portal;
        let name = db.name;
        for limit in [1, 2, 3, 1000] {
            let got: Vec<String> = walk!(limit, |page| p.list_products(None, &page))
                .into_iter()
                .map(|x| x.code)
                .collect();
            assert_eq!(got, ids(p, "SELECT code FROM products ORDER BY code").await);

            let got: Vec<String> = walk!(limit, |page| p.list_policies(
                &PolicyFilter::default(),
                None,
                &page
            ))
            .into_iter()
            .map(|x| x.id)
            .collect();
            let want = ids(p, "SELECT id FROM policies ORDER BY product, name").await;
            assert_eq!(got, want, "{name}: policies by {limit}");

            let got: Vec<String> = walk!(limit, |page| p.list_licenses(
                &LicenseFilter::default(),
                None,
                &page
            ))
            .into_iter()
            .map(|x| x.id)
            .collect();
            once(&got, "licenses");
            let want = ids(p, "SELECT id FROM licenses ORDER BY created, id").await;
            assert_eq!(got.len(), 14);
            assert_eq!(got, want, "{name}: licenses by {limit}");

            let got: Vec<String> = walk!(limit, |page| p.list_activations(
                &ActivationFilter::default(),
                None,
                &page
            ))
            .into_iter()
            .map(|x| x.id)
            .collect();
            once(&got, "activations");
            let want = ids(
                p,
                "SELECT id FROM activations ORDER BY created DESC, id DESC",
            )
            .await;
            assert_eq!(got.len(), 11);
            assert_eq!(got, want, "{name}: activations by {limit}");

            let got: Vec<String> = walk!(limit, |page| p
                .list_audit(&AuditFilter::default(), &page))
            .into_iter()
            .map(|x| x.id)
            .collect();
            once(&got, "audit");
            let want = ids(p, "SELECT id FROM audit ORDER BY at DESC, id DESC").await;
            assert!(got.len() > 30);
            assert_eq!(got, want, "{name}: audit by {limit}");
        }
        // The times really differ and tie (else the order above proves little).
        let times = ids(p, "SELECT DISTINCT CAST(created AS TEXT) FROM activations").await;
        assert_eq!(times.len(), 3, "{name}: {times:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_keeps_exactly_its_rows() {
    for db in backends().await {
        let w = world(&db).await;
        let p = &w.portal;
        let name = db.name;
        let licenses = p.licenses(None).await.unwrap();
        let activations = p.activations(None, None).await.unwrap();
        assert!(licenses.iter().any(|l| l.status == "revoked"));
        assert!(activations.iter().any(|a| a.state == "deactivated"));

        let filters: Vec<(LicenseFilter, Keep<'_, LicenseInfo>)> = vec![
            (
                LicenseFilter {
                    product: Some("video-pro".into()),
                    ..Default::default()
                },
                Box::new(|l| l.product == "video-pro"),
            ),
            (
                LicenseFilter {
                    status: Some("revoked".into()),
                    ..Default::default()
                },
                Box::new(|l| l.status == "revoked"),
            ),
            (
                LicenseFilter {
                    status: Some("active".into()),
                    ..Default::default()
                },
                Box::new(|l| l.status == "active"),
            ),
            (
                LicenseFilter {
                    customer: Some("acme".into()),
                    ..Default::default()
                },
                // Exactly: not "acme corp".
                Box::new(|l| l.customer.as_deref() == Some("acme")),
            ),
            (
                LicenseFilter {
                    product: Some("photo-pro".into()),
                    status: Some("active".into()),
                    customer: Some("globex".into()),
                },
                Box::new(|l| {
                    l.product == "photo-pro"
                        && l.status == "active"
                        && l.customer.as_deref() == Some("globex")
                }),
            ),
        ];
        for (filter, keep) in &filters {
            let want: Vec<&str> = licenses
                .iter()
                .filter(|l| keep(l))
                .map(|l| l.id.as_str())
                .collect();
            let got = walk!(2, |page| p.list_licenses(filter, None, &page));
            let got: Vec<&str> = got.iter().map(|l| l.id.as_str()).collect();
            assert_eq!(got, want, "{name}: {filter:?}");
            assert!(!want.is_empty() || filter.customer.is_some(), "{filter:?}");
        }

        let license_of = |id: &str| licenses.iter().find(|l| l.id == id).unwrap();
        let some_license = activations[0].license.clone();
        let filters: Vec<(ActivationFilter, Keep<'_, Activation>)> = vec![
            (
                ActivationFilter {
                    product: Some("video-pro".into()),
                    ..Default::default()
                },
                Box::new(|a| a.product == "video-pro"),
            ),
            (
                ActivationFilter {
                    license: Some(some_license.clone()),
                    ..Default::default()
                },
                Box::new(|a| a.license == some_license),
            ),
            (
                ActivationFilter {
                    state: Some("deactivated".into()),
                    ..Default::default()
                },
                Box::new(|a| a.state == "deactivated"),
            ),
            (
                ActivationFilter {
                    customer: Some("acme".into()),
                    ..Default::default()
                },
                Box::new(|a| license_of(&a.license).customer.as_deref() == Some("acme")),
            ),
            (
                ActivationFilter {
                    product: Some("photo-pro".into()),
                    state: Some("active".into()),
                    customer: Some("globex".into()),
                    license: None,
                },
                Box::new(|a| {
                    a.product == "photo-pro"
                        && a.state == "active"
                        && license_of(&a.license).customer.as_deref() == Some("globex")
                }),
            ),
        ];
        for (filter, keep) in &filters {
            let want: Vec<&str> = activations
                .iter()
                .filter(|a| keep(a))
                .map(|a| a.id.as_str())
                .collect();
            let got = walk!(2, |page| p.list_activations(filter, None, &page));
            let got: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(got, want, "{name}: {filter:?}");
            assert!(!want.is_empty() || filter.customer.is_some(), "{filter:?}");
        }

        let got = walk!(1, |page| p.list_policies(
            &PolicyFilter {
                product: Some("video-pro".into())
            },
            None,
            &page
        ));
        assert_eq!(
            got.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );

        // A token's products: only theirs, and a product outside them is "not found".
        let scope = ["video-pro".to_string()];
        let got = walk!(3, |page| p.list_activations(
            &ActivationFilter::default(),
            Some(&scope),
            &page
        ));
        assert!(!got.is_empty() && got.iter().all(|a| a.product == "video-pro"));
        let got = walk!(3, |page| p.list_products(Some(&scope), &page));
        assert_eq!(got.len(), 1);
        let refused = p
            .list_licenses(
                &LicenseFilter {
                    product: Some("photo-pro".into()),
                    ..Default::default()
                },
                Some(&scope),
                &PageRequest::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "not-found", "{refused}");
        let photo_license = licenses.iter().find(|l| l.product == "photo-pro").unwrap();
        let refused = p
            .list_activations(
                &ActivationFilter {
                    license: Some(photo_license.id.clone()),
                    ..Default::default()
                },
                Some(&scope),
                &PageRequest::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "not-found", "{refused}");
        let none = p
            .list_activations(
                &ActivationFilter::default(),
                Some(&[]),
                &PageRequest::default(),
            )
            .await
            .unwrap();
        assert!(none.items.is_empty() && none.next.is_none());

        // The customer is kept and shown.
        assert!(
            licenses
                .iter()
                .any(|l| l.customer.as_deref() == Some("acme corp"))
        );
        assert!(licenses.iter().any(|l| l.customer.is_none()));
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, PortalError>, code: &str, words: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.code(), code, "{e}");
    assert_eq!(
        e.status(),
        if code == "not-found" { 404 } else { 400 },
        "{e}"
    );
    assert!(e.to_string().contains(words), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_cursors_and_filter_values_out_of_range_are_clear_errors() {
    for db in backends().await {
        let w = world(&db).await;
        let p = &w.portal;
        let all = ActivationFilter::default();
        for limit in [0, -1, 1001, i64::MAX] {
            refused(
                p.list_activations(&all, None, &PageRequest::first(limit))
                    .await,
                "invalid",
                "give 1 to 1000",
            );
            refused(
                p.list_audit(&AuditFilter::default(), &PageRequest::first(limit))
                    .await,
                "invalid",
                "give 1 to 1000",
            );
        }
        assert_eq!(
            p.list_licenses(&LicenseFilter::default(), None, &PageRequest::first(1000))
                .await
                .unwrap()
                .items
                .len(),
            14
        );
        // The defaults: 100 items, the audit log 50.
        let audit = p
            .list_audit(&AuditFilter::default(), &PageRequest::default())
            .await
            .unwrap();
        let entries = ids(p, "SELECT id FROM audit").await.len();
        assert!(entries > 30);
        assert_eq!(audit.items.len(), entries.min(50));
        assert_eq!(audit.next.is_some(), entries > 50);
        let activations = p
            .list_activations(&all, None, &PageRequest::default())
            .await
            .unwrap();
        assert_eq!(activations.items.len(), 11);
        assert!(activations.next.is_none());

        let licenses_cursor = p
            .list_licenses(&LicenseFilter::default(), None, &PageRequest::first(1))
            .await
            .unwrap()
            .next
            .unwrap();
        for (cursor, words) in [
            (
                "garbage!",
                "not a cursor this portal gave out for the activations list",
            ),
            ("eyJ4IjoxfQ", "not a cursor this portal gave out"),
            (
                licenses_cursor.as_str(),
                "a cursor of the licenses list, given to the activations list",
            ),
        ] {
            let page = PageRequest {
                limit: None,
                after: Some(cursor.into()),
            };
            refused(
                p.list_activations(&all, None, &page).await,
                "invalid-cursor",
                words,
            );
        }
        // An empty cursor is the first page (a script's first call with NEXT="").
        let page = PageRequest {
            limit: Some(3),
            after: Some(String::new()),
        };
        assert_eq!(
            p.list_activations(&all, None, &page)
                .await
                .unwrap()
                .items
                .len(),
            3
        );

        refused(
            p.list_licenses(
                &LicenseFilter {
                    status: Some("expired".into()),
                    ..Default::default()
                },
                None,
                &PageRequest::default(),
            )
            .await,
            "invalid",
            "give active or suspended or revoked",
        );
        refused(
            p.list_activations(
                &ActivationFilter {
                    state: Some("Active".into()),
                    ..Default::default()
                },
                None,
                &PageRequest::default(),
            )
            .await,
            "invalid",
            "give active or deactivated",
        );
        refused(
            p.list_licenses(
                &LicenseFilter {
                    customer: Some("  ".into()),
                    ..Default::default()
                },
                None,
                &PageRequest::default(),
            )
            .await,
            "invalid",
            "customer",
        );
        refused(
            p.list_activations(
                &ActivationFilter {
                    product: Some("photo-pr0".into()),
                    ..Default::default()
                },
                None,
                &PageRequest::default(),
            )
            .await,
            "not-found",
            "photo-pr0",
        );
        refused(
            p.list_activations(
                &ActivationFilter {
                    license: Some("lic_nope".into()),
                    ..Default::default()
                },
                None,
                &PageRequest::default(),
            )
            .await,
            "not-found",
            "lic_nope",
        );
        refused(
            p.create_license(
                NewLicense {
                    policy: p.policies(None).await.unwrap()[0].id.clone(),
                    customer: Some("x".repeat(257)),
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await,
            "invalid",
            "1 to 256 characters",
        );
    }
}
