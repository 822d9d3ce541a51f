//! The on-premise floating server on loopback, with lic's own client: the pool is never
//! exceeded, leases lapse by themselves, a refresh adds seats live, restarts keep every
//! lease and grant no more, check-ins add usage once, and the server refuses to start on
//! a machine or pool it is not licensed for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PRODUCT, Site, copy_dir, machine};
use lic_core::floating::Grant;
use lic_core::format::{Credential, LeaseAction};
use lic_core::lease::{
    self, ROUTE_CHECKIN, ROUTE_CHECKOUT, ROUTE_RELEASE, ROUTE_RENEW, ROUTE_TAKE, Transport as _,
};
use lic_server::{Config, Server};

fn config() -> Config {
    Config::default()
}

/// How many seats the server says are held, checked against the pool.
fn held(site: &Site) -> u32 {
    let s = site.status();
    assert!(s.held <= s.seats, "{} held of {}", s.held, s.seats);
    s.held
}

#[test]
fn n_clients_on_a_pool_of_n_minus_one_get_n_minus_one_leases_and_a_lapsed_seat_goes_to_the_waiting_one()
 {
    let site = Site::serving(3, config());
    let ws: Vec<_> = (1..=4)
        .map(|i| site.workstation(&format!("ws-{i}")))
        .collect();
    for w in &ws[..3] {
        let granted = site.take(w, true).unwrap();
        assert_eq!(granted.grant, Grant::Taken);
        // The lease verifies through the chain: the client trusts only the vendor.
        w.client.check(None).unwrap();
    }
    let refused = site.take(&ws[3], true).unwrap_err();
    assert_eq!(refused.code(), "no-seat", "{refused}");
    assert!(
        ws[3].client.check(None).is_err(),
        "no lease is kept on a refusal"
    );
    assert_eq!(held(&site), 3);

    // ws-1 stops renewing; the others renew at the renewal point.
    site.advance(300);
    for w in &ws[1..3] {
        assert_eq!(site.renew(w).unwrap().grant, Grant::Held);
    }
    assert_eq!(site.take(&ws[3], true).unwrap_err().code(), "no-seat");
    site.advance(301);
    // ws-1's lease has lapsed on the workstation and at the server.
    assert!(ws[0].client.check(None).is_err());
    assert_eq!(held(&site), 2);
    assert_eq!(site.take(&ws[3], true).unwrap().grant, Grant::Taken);
    ws[3].client.check(None).unwrap();
    assert_eq!(held(&site), 3);
    let late = site.renew(&ws[0]).unwrap_err();
    assert_eq!(late.code(), "not-leased", "{late}");
    let retake = site.take(&ws[0], false).unwrap_err();
    assert_eq!(retake.code(), "no-seat", "{retake}");
    assert_eq!(held(&site), 3);
}

#[test]
fn a_refresh_with_more_seats_takes_effect_live_and_the_waiting_client_gets_one() {
    let site = Site::serving(2, config());
    let ws: Vec<_> = (1..=3)
        .map(|i| site.workstation(&format!("ws-{i}")))
        .collect();
    site.take(&ws[0], false).unwrap();
    site.take(&ws[1], false).unwrap();
    assert_eq!(site.take(&ws[2], true).unwrap_err().code(), "no-seat");

    // The administrator installs the vendor's refresh with lic; the server keeps running.
    site.server_client()
        .install(site.pool_refresh(2, 3).armored().as_bytes())
        .unwrap();
    let granted = site.take(&ws[2], true).unwrap();
    assert_eq!(granted.grant, Grant::Taken);
    ws[2].client.check(None).unwrap();
    let status = site.status();
    assert_eq!((status.seats, status.held, status.serial), (3, 3, 2));
    // A fourth is still refused: the pool is three now.
    let ws4 = site.workstation("ws-4");
    assert_eq!(site.take(&ws4, false).unwrap_err().code(), "no-seat");
}

#[test]
fn a_restarted_server_keeps_its_leases_and_grants_no_more_than_the_pool() {
    let mut site = Site::serving(2, config());
    let a = site.workstation("ws-a");
    let b = site.workstation("ws-b");
    let c = site.workstation("ws-c");
    site.take(&a, false).unwrap();
    site.take(&b, false).unwrap();
    for _ in 0..3 {
        site.kill();
        site.start(config()).unwrap();
        assert_eq!(held(&site), 2);
        assert_eq!(site.take(&c, false).unwrap_err().code(), "no-seat");
        assert_eq!(site.renew(&a).unwrap().grant, Grant::Held);
        assert_eq!(site.renew(&b).unwrap().grant, Grant::Held);
    }
    // Released at one start, free at the next.
    assert!(lease::release(&a.client, &site.transport(), a.instance, None).unwrap());
    site.kill();
    site.start(config()).unwrap();
    assert_eq!(site.take(&c, false).unwrap().grant, Grant::Taken);
    assert_eq!(held(&site), 2);
}

#[test]
fn the_server_store_copied_to_another_machine_does_not_start() {
    let site = Site::activated(2);
    let elsewhere = site.server_client_on(machine("another-machine"));
    let err = Server::open(elsewhere, &site.db(), config()).unwrap_err();
    assert_eq!(err.code(), "wrong-device", "{err}");
    assert!(!err.hint().is_empty());
    // On its own machine it starts.
    Server::open(site.server_client(), &site.db(), config()).unwrap();
}

#[test]
fn a_server_without_a_pool_license_does_not_start() {
    let site = Site::activated(2);
    // An ordinary (non-pool) activation of the same product on another store.
    let other = tempfile::tempdir().unwrap();
    let client = lic_core::client::Client::builder(PRODUCT)
        .store(other.path())
        .trust(site.vendor.keys())
        .clock(site.clock.clone())
        .fingerprint_source(machine("plain"))
        .open()
        .unwrap();
    let request = client
        .request_activation(Credential::LicenseKey(common::KEY.into()))
        .unwrap();
    let license = site.vendor.license_for(request.bytes()).unwrap();
    client.install(license.armored().as_bytes()).unwrap();
    let err = Server::open(client, &other.path().join("db"), config()).unwrap_err();
    assert_eq!(err.code(), "no-pool", "{err}");
}

#[test]
fn an_expired_pool_stops_the_server_from_leasing() {
    let site = Site::serving(2, config());
    let w = site.workstation("ws-1");
    site.take(&w, false).unwrap();
    site.advance(366 * 24 * 3600);
    let err = site.take(&w, false).unwrap_err();
    assert_eq!(err.code(), "expired", "{err}");
    let status = site.status();
    assert!(!status.problems.is_empty(), "{status:?}");
}

#[test]
fn a_restored_backup_of_the_server_is_refused_by_clients_that_saw_the_refresh() {
    let mut site = Site::serving(2, config());
    let backup = site.dir.path().join("backup");
    copy_dir(&site.store(), &backup);
    site.server_client()
        .install(site.pool_refresh(2, 3).armored().as_bytes())
        .unwrap();
    let w = site.workstation("ws-1");
    site.take(&w, false).unwrap();
    // The administrator restores the backup taken before the refresh (pool serial 1).
    site.kill();
    std::fs::remove_dir_all(site.store()).unwrap();
    copy_dir(&backup, &site.store());
    site.start(config()).unwrap();
    // The restored database holds no lease for it; the lease it is offered runs on the
    // replaced pool license.
    assert_eq!(site.renew(&w).unwrap_err().code(), "not-leased");
    let err = site.take(&w, false).unwrap_err();
    assert_eq!(err.code(), "pool-superseded", "{err}");
    assert_eq!(
        w.client.leases().unwrap().len(),
        1,
        "only the earlier lease is kept"
    );
    // A workstation that never saw the refresh cannot tell (docs/security.md).
    let fresh = site.workstation("ws-new");
    site.take(&fresh, false).unwrap();
}

#[test]
fn a_checkout_carries_its_oed_and_its_check_in_adds_usage_once() {
    let site = Site::serving(1, config());
    let w = site.workstation("ws-1");
    let out = lease::checkout(
        &w.client,
        &site.transport(),
        Some(Credential::LicenseKey(common::KEY.into())),
        24,
    )
    .unwrap();
    let oed = out.offline_expiry.expect("a checkout has an OED");
    assert_eq!(oed, site.clock_now() + chrono::Duration::hours(24));
    let status = site.status();
    assert_eq!(status.held, 1);
    assert!(status.holders[0].offline_expiry.is_some(), "{status:?}");
    // The seat stays checked out while offline, leases or not.
    let other = site.workstation("ws-2");
    assert_eq!(site.take(&other, false).unwrap_err().code(), "no-seat");
    site.advance(3600);
    w.client.check(None).unwrap();
    w.client.consume("render-minutes", 7).unwrap();

    // As `lic checkin --server` does: the check-in file is made (and the checkout
    // license removed) before it is sent; the receipt is still verified with the
    // server's key.
    w.client.check_in().unwrap();
    let back = lease::check_in(&w.client, &site.transport()).unwrap();
    assert!(!back.replay);
    let counters = |site: &Site| {
        site.server_client()
            .status()
            .unwrap()
            .features
            .iter()
            .find(|f| f.name == "render-minutes")
            .map(|f| f.used)
    };
    assert_eq!(counters(&site), Some(7));
    // The same check-in again: the same receipt, nothing added.
    let again = site
        .transport()
        .post(ROUTE_CHECKIN, &back.check_in.armored())
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    let answer: serde_json::Value = serde_json::from_str(&again.body).unwrap();
    assert_eq!(answer["replay"], true);
    assert_eq!(answer["response"], back.receipt.as_str());
    assert_eq!(counters(&site), Some(7));
    // The seat is back in the pool.
    assert_eq!(site.take(&other, false).unwrap().grant, Grant::Taken);
    // The server's usage report carries the usage, signed by its device key.
    let report = site.server_client().usage_report().unwrap();
    let r = lic_core::format::payload_unverified::<lic_core::format::UsageReport>(report.bytes())
        .unwrap();
    assert_eq!(r.counters.get("render-minutes").copied(), Some(7));
}

#[test]
fn reclamation_frees_silent_seats_but_never_a_checkout_before_its_oed() {
    let cfg = Config {
        reclaim_after_secs: Some(3600),
        ..config()
    };
    let site = Site::serving(2, cfg);
    let leased = site.workstation("ws-lease");
    let away = site.workstation("ws-away");
    site.take(&leased, false).unwrap();
    lease::checkout(
        &away.client,
        &site.transport(),
        Some(Credential::LicenseKey(common::KEY.into())),
        48,
    )
    .unwrap();
    site.advance(3601);
    assert_eq!(site.server().reclaim(true).unwrap().len(), 1);
    let reclaimed = site.server().reclaim(false).unwrap();
    assert_eq!(reclaimed.len(), 1);
    let status = site.status();
    assert_eq!(status.holders.len(), 1);
    assert!(status.holders[0].checkout.is_some());
}

#[test]
fn crafted_requests_are_refused_with_codes_and_change_nothing() {
    let site = Site::serving(1, config());
    let w = site.workstation("ws-1");
    let t = site.transport();
    let asked = w
        .client
        .lease_request(
            Some(Credential::LicenseKey(common::KEY.into())),
            LeaseAction::Take,
            w.instance,
            None,
        )
        .unwrap();
    let body = asked.file.armored();
    let first = t.post(ROUTE_TAKE, &body).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let before = site.status();
    let code = |r: lease::Reply| {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()));
        (r.status, v["error"]["code"].as_str().unwrap().to_owned())
    };
    // The same request again.
    assert_eq!(
        code(t.post(ROUTE_TAKE, &body).unwrap()),
        (409, "request-replayed".into())
    );
    // A take sent to the renew route.
    let take2 = w
        .client
        .lease_request(None, LeaseAction::Take, w.instance, None)
        .unwrap();
    assert_eq!(
        code(t.post(ROUTE_RENEW, &take2.file.armored()).unwrap()),
        (400, "wrong-action".into())
    );
    // Not a lic file at all; a file of another kind.
    let (status, _) = code(t.post(ROUTE_TAKE, "hello").unwrap());
    assert_eq!(status, 400);
    let (status, _) = code(t.post(ROUTE_TAKE, &site.pool_license.armored()).unwrap());
    assert_eq!(status, 400);
    // Another product's request, signed by the customer's own key.
    let other = lic_core::client::Client::builder("other-product")
        .store(site.dir.path().join("other"))
        .trust(site.vendor.keys())
        .clock(site.clock.clone())
        .fingerprint_source(machine("other"))
        .open()
        .unwrap();
    let foreign = other
        .lease_request(
            Some(Credential::LicenseKey(common::KEY.into())),
            LeaseAction::Take,
            w.instance,
            None,
        )
        .unwrap();
    assert_eq!(
        code(t.post(ROUTE_TAKE, &foreign.file.armored()).unwrap()),
        (403, "wrong-product".into())
    );
    // A floating feature: leased by the vendor's portal, not here.
    let feature = w
        .client
        .lease_request(None, LeaseAction::Take, w.instance, Some("render-minutes"))
        .unwrap();
    assert_eq!(
        code(t.post(ROUTE_TAKE, &feature.file.armored()).unwrap()),
        (403, "feature-not-floating".into())
    );
    // A check-in that is not a lic file.
    assert_eq!(code(t.post(ROUTE_CHECKIN, "x").unwrap()).0, 400);
    // A body over the limit, and a query the take route does not take: the API's JSON
    // error too, not the HTTP library's plain text.
    let huge = "x".repeat(lic_server::http::MAX_BODY + 1);
    for route in [
        ROUTE_TAKE,
        ROUTE_RENEW,
        ROUTE_RELEASE,
        ROUTE_CHECKOUT,
        ROUTE_CHECKIN,
    ] {
        assert_eq!(
            code(t.post(route, &huge).unwrap()),
            (413, "too-large".into()),
            "{route}"
        );
    }
    assert_eq!(
        code(t.post(&format!("{ROUTE_TAKE}?wait=maybe"), &body).unwrap()),
        (400, "bad-request".into())
    );
    assert_eq!(site.status(), before);
    // A request made long ago.
    let stale = w
        .client
        .lease_request(None, LeaseAction::Renew, w.instance, None)
        .unwrap();
    site.advance(3600);
    let (status, stale_code) = code(t.post(ROUTE_RENEW, &stale.file.armored()).unwrap());
    assert_eq!((status, stale_code.as_str()), (400, "request-stale"));
}

#[test]
fn the_server_stops_leasing_when_its_clock_is_turned_back() {
    let site = Site::serving(2, config());
    site.advance(3600);
    site.take(&site.workstation("ws-1"), false).unwrap();
    site.clock.set(site.clock_now() - chrono::Duration::days(2));
    let err = site.take(&site.workstation("ws-2"), false).unwrap_err();
    assert_eq!(err.code(), "clock-turned-back", "{err}");
    assert!(!site.status().problems.is_empty());
}

#[test]
fn a_deactivated_server_stops_and_its_pool_license_cannot_come_back() {
    let site = Site::serving(2, config());
    let w = site.workstation("ws-1");
    site.take(&w, false).unwrap();
    // The administrator moves the server: the deactivation file goes to the vendor.
    let deactivation = site.server_client().deactivate().unwrap();
    assert!(!deactivation.bytes().is_empty());
    let err = site.renew(&w).unwrap_err();
    assert_eq!(err.code(), "no-pool", "{err}");
    let again = site
        .server_client()
        .install(site.pool_license.armored().as_bytes())
        .unwrap_err();
    assert_eq!(again.code(), "already-deactivated", "{again}");
    let err = Server::open(site.server_client(), &site.db(), config()).unwrap_err();
    assert!(["not-activated", "no-pool"].contains(&err.code()), "{err}");
}
