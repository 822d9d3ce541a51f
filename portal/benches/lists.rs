//! Paged lists at scale: 1,000,000 activations (and as many audit entries, 10,000
//! licenses) seeded with bulk SQL, then the first page, a deep page reached by cursor, and
//! each filter, through the library (no HTTP), on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo bench -p lic-portal --bench lists            # 1,000,000 activations
//! cargo bench -p lic-portal --bench lists -- 100000  # fewer
//! ```
//!
//! SQLite: a temporary file. PostgreSQL (127.0.0.1:5432, user postgres, trust auth): a
//! fresh database `lic_bench_lists_PID`, dropped at the end; skipped if unreachable.
//! Results: docs/performance.md ("Paged lists").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lic_portal::Portal;
use lic_portal::db::{Backend, Db};
use lic_portal::ops::{ActivationFilter, AuditFilter, LicenseFilter, PageRequest, PolicyFilter};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const LICENSES: i64 = 10_000;
const PRODUCTS: i64 = 10;
/// Each customer has 10 licenses (of 10 products), so 1/1000 of the activations.
const CUSTOMERS: i64 = 1_000;
/// A license file of a realistic size, so that rows are as large as real ones.
const FILE_LEN: usize = 900;

fn rows_wanted() -> i64 {
    std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

/// Seed `n` activations and `n` audit entries with bulk SQL.
async fn seed(db: &Db, n: i64) {
    let pg = db.backend() == Backend::Postgres;
    let exec = |sql: String| async move {
        sqlx::raw_sql(&sql)
            .execute(db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", &sql[..60.min(sql.len())]));
    };
    // The numbers 0 to n - 1 as `s(i)`, and a number as zero-padded text, in each dialect.
    let series = |n: i64| {
        if pg {
            format!("generate_series(0::bigint, {}) AS s(i)", n - 1)
        } else {
            format!(
                "(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) \
                 SELECT i FROM s) AS s",
                n - 1
            )
        }
    };
    let num = |expr: &str, width: usize| {
        if pg {
            format!("lpad(({expr})::text, {width}, '0')")
        } else {
            format!("printf('%0{width}d', {expr})")
        }
    };
    let now = chrono::Utc::now().timestamp() - n;
    exec(format!(
        "INSERT INTO products (code, name, created) SELECT 'prod-' || {}, 'Product', {now} FROM {}",
        num("i", 1),
        series(PRODUCTS)
    ))
    .await;
    exec(format!(
        "INSERT INTO policies (id, product, name, license_type, allow_offline, seats, features, \
         match_required, match_max_changed, clock_tolerance_secs, created) \
         SELECT 'pol_' || {p}, 'prod-' || {p}, 'standard', 'perpetual', 1, 1000, '{{}}', \
         '[\"machine-id\"]', 2, 86400, {now} FROM {}",
        series(PRODUCTS),
        p = num("i", 1),
    ))
    .await;
    // License L: product L % 10, customer L % 1000, one in a hundred revoked.
    exec(format!(
        "INSERT INTO licenses (id, product, policy, key_hint, seats, seats_used, status, created, \
         customer) \
         SELECT 'lic_' || {l}, 'prod-' || {p}, 'pol_' || {p}, 'ABCD', 1000, 90, \
         CASE WHEN i % 100 = 7 THEN 'revoked' ELSE 'active' END, {now} + i / 100, \
         'cust-' || {c} FROM {}",
        series(LICENSES),
        l = num("i", 5),
        p = num(&format!("i % {PRODUCTS}"), 1),
        c = num(&format!("i % {CUSTOMERS}"), 4),
    ))
    .await;
    // Activation i: license i % 10,000 (so its product and customer follow), created four
    // a second (ties broken by id), one round of licenses in ten deactivated.
    let file = "x".repeat(FILE_LEN);
    exec(format!(
        "INSERT INTO activations (id, license, product, device_key, device_kid, fingerprint, \
         request_hash, state, serial, license_file, journal_seq, journal_head, last_accessed, \
         created, deactivated, closed_by) \
         SELECT 'act_' || {a}, 'lic_' || {l}, 'prod-' || {p}, 'dev_' || {a}, 'kid', '{{}}', 'h', \
         CASE WHEN (i / {LICENSES}) % 10 = 3 THEN 'deactivated' ELSE 'active' END, 1, '{file}', \
         0, 'h', {now} + i / 4, {now} + i / 4, \
         CASE WHEN (i / {LICENSES}) % 10 = 3 THEN {now} + i / 4 ELSE NULL END, \
         CASE WHEN (i / {LICENSES}) % 10 = 3 THEN 'server' ELSE NULL END FROM {}",
        series(n),
        a = num("i", 10),
        l = num(&format!("i % {LICENSES}"), 5),
        p = num(&format!("i % {PRODUCTS}"), 1),
    ))
    .await;
    exec(format!(
        "INSERT INTO audit (id, at, actor, action, subject, detail) \
         SELECT 'aud_' || {a}, ({now} + i / 4) * 1000 + i % 4, 'bench', 'activation.create', \
         'act_' || {a}, 'license' FROM {}",
        series(n),
        a = num("i", 10),
    ))
    .await;
    if pg {
        // What autovacuum does soon after a bulk load.
        exec("ANALYZE".into()).await;
    }
}

/// Median and slowest of `runs` calls of `f` (after two warm-up calls), in milliseconds.
async fn time<F, Fut, T>(runs: usize, mut f: F) -> (f64, f64, T)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    f().await;
    f().await;
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f().await);
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        last.expect("ran"),
    )
}

async fn run(name: &str, url: &str, keys: &std::path::Path, n: i64) {
    let db = Db::connect(url).await.expect("connect");
    Portal::init(&db, keys).await.expect("init");
    let start = Instant::now();
    seed(&db, n).await;
    println!(
        "\n{name}: seeded {n} activations, {n} audit entries, {LICENSES} licenses in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let portal = Portal::open(db, keys).await.expect("open");
    const RUNS: usize = 30;
    let first = PageRequest::default();
    let big = PageRequest::first(1000);
    let act = |f: ActivationFilter| f;
    let report = |what: &str, (median, max, items): (f64, f64, usize)| {
        println!("  {what:<58} {median:>7.2} ms  (max {max:>6.2} ms, {items} items)");
    };

    macro_rules! case {
        ($what:expr, $call:expr) => {{
            let r = time(RUNS, || async { $call.await.expect($what).items.len() }).await;
            report($what, r);
        }};
    }
    let all = ActivationFilter::default();
    case!(
        "activations, first page (100)",
        portal.list_activations(&all, None, &first)
    );
    case!(
        "activations, first page (1000)",
        portal.list_activations(&all, None, &big)
    );

    // A cursor half-way: walk 1000 at a time, timing the walk.
    let walk_pages = (n / 2 / 1000).max(1);
    let start = Instant::now();
    let mut page = big.clone();
    for _ in 0..walk_pages {
        let p = portal
            .list_activations(&all, None, &page)
            .await
            .expect("walk");
        page.after = p.next;
    }
    let walked = start.elapsed();
    println!(
        "  {:<58} {:>7.2} ms  ({walk_pages} pages of 1000 in {:.1} s)",
        "activations, walking by cursor: a page of 1000",
        walked.as_secs_f64() * 1000.0 / walk_pages as f64,
        walked.as_secs_f64()
    );
    let deep = PageRequest {
        limit: None,
        after: page.after.clone(),
    };
    case!(
        &format!(
            "activations, deep page (100 after row {})",
            walk_pages * 1000
        ),
        portal.list_activations(&all, None, &deep)
    );
    case!(
        "activations, product=prod-3 (1 in 10)",
        portal.list_activations(
            &act(ActivationFilter {
                product: Some("prod-3".into()),
                ..Default::default()
            }),
            None,
            &first
        )
    );
    case!(
        "activations, license=lic_00042 (1 in 10,000)",
        portal.list_activations(
            &act(ActivationFilter {
                license: Some("lic_00042".into()),
                ..Default::default()
            }),
            None,
            &first
        )
    );
    case!(
        "activations, state=deactivated (1 in 10)",
        portal.list_activations(
            &act(ActivationFilter {
                state: Some("deactivated".into()),
                ..Default::default()
            }),
            None,
            &first
        )
    );
    case!(
        "activations, customer=cust-0042 (10 licenses, 1 in 1000)",
        portal.list_activations(
            &act(ActivationFilter {
                customer: Some("cust-0042".into()),
                ..Default::default()
            }),
            None,
            &first
        )
    );
    case!(
        "activations, product=prod-3 & state=deactivated",
        portal.list_activations(
            &act(ActivationFilter {
                product: Some("prod-3".into()),
                state: Some("deactivated".into()),
                ..Default::default()
            }),
            None,
            &first
        )
    );
    case!(
        "activations, token limited to prod-3 and prod-4",
        portal.list_activations(&all, Some(&["prod-3".into(), "prod-4".into()]), &first)
    );
    let lic = LicenseFilter::default();
    case!(
        "licenses, first page (100)",
        portal.list_licenses(&lic, None, &first)
    );
    let mid = portal
        .list_licenses(&lic, None, &PageRequest::first(1000))
        .await
        .expect("licenses")
        .next;
    case!(
        "licenses, page after the first 1000",
        portal.list_licenses(
            &lic,
            None,
            &PageRequest {
                limit: None,
                after: mid.clone()
            }
        )
    );
    case!(
        "licenses, product=prod-3",
        portal.list_licenses(
            &LicenseFilter {
                product: Some("prod-3".into()),
                ..Default::default()
            },
            None,
            &first
        )
    );
    case!(
        "licenses, status=revoked (1 in 100)",
        portal.list_licenses(
            &LicenseFilter {
                status: Some("revoked".into()),
                ..Default::default()
            },
            None,
            &first
        )
    );
    case!(
        "licenses, customer=cust-0042",
        portal.list_licenses(
            &LicenseFilter {
                customer: Some("cust-0042".into()),
                ..Default::default()
            },
            None,
            &first
        )
    );
    case!(
        "policies, product=prod-3",
        portal.list_policies(
            &PolicyFilter {
                product: Some("prod-3".into())
            },
            None,
            &first
        )
    );
    case!("products, first page", portal.list_products(None, &first));
    let audit = AuditFilter::default();
    case!(
        "audit, first page (50)",
        portal.list_audit(&audit, &PageRequest::default())
    );
    let deep_audit = {
        let mut page = big.clone();
        for _ in 0..walk_pages {
            page.after = portal.list_audit(&audit, &page).await.expect("walk").next;
        }
        PageRequest {
            limit: None,
            after: page.after,
        }
    };
    case!(
        &format!("audit, deep page (50 after entry {})", walk_pages * 1000),
        portal.list_audit(&audit, &deep_audit)
    );
    case!(
        "audit, subject=act_0000000042",
        portal.list_audit(
            &AuditFilter {
                subject: Some("act_0000000042".into())
            },
            &PageRequest::default()
        )
    );
}

fn main() {
    let n = rows_wanted();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("portal.db").display());
        run("SQLite", &url, &dir.path().join("keys"), n).await;

        use sqlx::Connection as _;
        match sqlx::PgConnection::connect(PG_ADMIN).await {
            Err(e) => println!("\nPostgreSQL: skipped ({PG_ADMIN} is unreachable: {e})"),
            Ok(mut admin) => {
                let name = format!("lic_bench_lists_{}", std::process::id());
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                let pg_dir = tempfile::tempdir().expect("tempdir");
                let keys = pg_dir.path().join("keys");
                // Dropped whatever happens to the run (on a thread of its own).
                let ran = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(run("PostgreSQL", &url, &keys, n))
                })
                .join();
                sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .expect("drop database");
                if ran.is_err() {
                    std::process::exit(1);
                }
            }
        }
    });
}
