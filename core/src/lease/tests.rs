//! The floating client against a stand-in server (a [`Transport`] that signs leases,
//! checkout licenses and receipts itself), with a [`ManualClock`]: time moves only when a
//! test moves it, and the holder's timer runs only when a test ticks it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use super::*;
use crate::clock::{Clock as _, ManualClock};
use crate::fingerprint::{RawComponents, StaticSource, component};
use crate::floating::{Terms, lease_times};
use crate::format::{
    Bytes32, CheckIn, Feature, FileKind, Lease, LeaseRequest, LicenseType, MatchRule,
};
use crate::keys::{Keyring, SecretKey};

const PRODUCT: &str = "photo-pro";
const KEY: &str = "PHPRO-7Q2M-K4XD-9WBT";

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn vendor() -> SecretKey {
    SecretKey::from_seed(&[11; 32])
}

/// How the stand-in signs what it answers: honestly, or crafted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Craft {
    Honest,
    UntrustedKey,
    OtherDevice,
    OtherProduct,
    OtherInstance,
    OtherRequest,
    OtherFingerprint,
}

#[derive(Default)]
struct Script {
    down: bool,
    refuse_take: Option<(u16, &'static str)>,
    refuse_renew: Option<(u16, &'static str)>,
    craft: Option<Craft>,
    /// 500 without a JSON body, for renewals.
    failing: bool,
}

/// A floating server in memory.
struct StandIn {
    clock: ManualClock,
    terms: Terms,
    script: Mutex<Script>,
    log: Mutex<Vec<String>>,
    features: format::Features,
    replays: AtomicU8,
}

impl StandIn {
    fn new(clock: &ManualClock) -> Arc<StandIn> {
        Arc::new(StandIn {
            clock: clock.clone(),
            terms: Terms {
                lease_secs: 600,
                renew_percent: 50,
                ..Terms::default()
            },
            script: Mutex::new(Script::default()),
            log: Mutex::new(Vec::new()),
            features: [
                ("export".to_string(), Feature::default()),
                (
                    "render".to_string(),
                    Feature {
                        floating: Some(2),
                        ..Feature::default()
                    },
                ),
            ]
            .into(),
            replays: AtomicU8::new(0),
        })
    }

    fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().unwrap());
    }

    fn routes(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    fn refusal(status: u16, code: &str) -> Reply {
        Reply {
            status,
            body: serde_json::json!({"error": {
                "code": code, "message": format!("refused: {code}"), "hint": "do something"
            }})
            .to_string(),
        }
    }

    fn lease_for(&self, request: &LeaseRequest, device: &[u8; 32], craft: Craft) -> String {
        let now = self.clock.now();
        let times = lease_times(&self.terms, now, None).unwrap();
        let other = SecretKey::from_seed(&[99; 32]);
        let mut lease = Lease {
            pool: None,
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: request.product.clone(),
            device_key: Bytes32(*device),
            fingerprint: request.fingerprint.clone(),
            match_rule: MatchRule {
                required: vec![component::MACHINE_ID.into()],
                max_changed: 0,
            },
            instance: request.instance,
            feature: request.feature.clone(),
            features: self.features.clone(),
            license_type: LicenseType::Floating,
            issued: times.issued,
            renew_after: times.renew_after,
            expires: times.expires,
            license_expires: None,
            offline_expiry: times.offline_expiry,
            clock_tolerance: 3600,
            request_nonce: request.nonce,
        };
        let mut key = vendor();
        match craft {
            Craft::Honest => {}
            Craft::UntrustedKey => key = SecretKey::from_seed(&[99; 32]),
            Craft::OtherDevice => lease.device_key = Bytes32(other.public().to_bytes()),
            Craft::OtherProduct => lease.product = "video-pro".into(),
            Craft::OtherInstance => lease.instance = Nonce([0xee; 16]),
            Craft::OtherRequest => lease.request_nonce = Nonce([0xdd; 16]),
            Craft::OtherFingerprint => {
                for hash in lease.fingerprint.values_mut() {
                    hash.0[0] ^= 1;
                }
            }
        }
        format::sign(&lease, &key).unwrap().armored()
    }
}

impl Transport for StandIn {
    fn post(&self, route: &str, body: &str) -> Result<Reply, Unreachable> {
        self.log.lock().unwrap().push(route.to_string());
        let script = self.script.lock().unwrap();
        if script.down {
            return Err(Unreachable("connection refused".into()));
        }
        let ok = |json: serde_json::Value| {
            Ok(Reply {
                status: 200,
                body: json.to_string(),
            })
        };
        let now = self.clock.now();
        if route == ROUTE_CHECKIN {
            let file = format::open::<CheckIn>(body.as_bytes(), &Keyring::new()).unwrap();
            let replay = self.replays.fetch_add(1, Ordering::SeqCst) > 0;
            let receipt = Receipt {
                activation_id: file.activation_id.clone(),
                file_hash: file.file_hash(),
                file_kind: FileKind::CheckIn.name().into(),
                state: "checked-in".into(),
                applied: now,
            };
            return ok(serde_json::json!({
                "response": format::sign(&receipt, &vendor()).unwrap().armored(),
                "activation": file.activation_id, "replay": replay, "flags": [],
            }));
        }
        let request = format::open::<LeaseRequest>(body.as_bytes(), &Keyring::new()).unwrap();
        crate::floating::fresh(request.created, now).unwrap();
        let device = request.signer().to_bytes();
        let route_path = route.split('?').next().unwrap_or(route);
        let craft = script.craft.unwrap_or(Craft::Honest);
        match (route_path, request.action) {
            (ROUTE_TAKE, LeaseAction::Take) => {
                if let Some((status, code)) = script.refuse_take {
                    return Ok(Self::refusal(status, code));
                }
                ok(serde_json::json!({
                    "lease": self.lease_for(&request, &device, craft),
                    "activation": "act_1", "grant": "taken",
                }))
            }
            (ROUTE_RENEW, LeaseAction::Renew) => {
                if script.failing {
                    return Ok(Reply {
                        status: 502,
                        body: "<html>bad gateway</html>".into(),
                    });
                }
                if let Some((status, code)) = script.refuse_renew {
                    return Ok(Self::refusal(status, code));
                }
                ok(serde_json::json!({
                    "lease": self.lease_for(&request, &device, craft),
                    "activation": "act_1", "grant": "held",
                }))
            }
            (ROUTE_RELEASE, LeaseAction::Release) => {
                ok(serde_json::json!({"released": true, "activation": "act_1"}))
            }
            (ROUTE_CHECKOUT, LeaseAction::Checkout) => {
                let hours = request.hours.unwrap();
                let oed = now + Duration::hours(i64::try_from(hours.min(48)).unwrap());
                let license = License {
                    pool: None,
                    pool_seats: None,
                    license_id: "lic_1".into(),
                    activation_id: "act_co".into(),
                    product: request.product.clone(),
                    device_key: Bytes32(device),
                    fingerprint: request.fingerprint.clone(),
                    match_rule: MatchRule {
                        required: vec![component::MACHINE_ID.into()],
                        max_changed: 0,
                    },
                    features: self.features.clone(),
                    license_type: LicenseType::Floating,
                    issued: now,
                    not_before: now,
                    expires: None,
                    offline_expiry: Some(oed),
                    clock_tolerance: 3600,
                    serial: 1,
                    request_nonce: request.nonce,
                    counters: BTreeMap::new(),
                };
                ok(serde_json::json!({
                    "response": format::sign(&license, &vendor()).unwrap().armored(),
                    "activation": "act_co",
                    "offline_expiry": oed.to_rfc3339(),
                }))
            }
            (route, action) => Ok(Self::refusal(
                400,
                &format!("wrong-action {route} {}", action.name()),
            )),
        }
    }
}

struct World {
    clock: ManualClock,
    server: Arc<StandIn>,
    dir: tempfile::TempDir,
    client: Arc<Client>,
}

fn machine() -> RawComponents {
    [
        (component::MACHINE_ID, "8f3c1d2e9a7b4c5d"),
        (component::HOSTNAME, "studio-07"),
    ]
    .into_iter()
    .collect()
}

impl World {
    fn new() -> World {
        let clock = ManualClock::new(t0());
        let server = StandIn::new(&clock);
        let dir = tempfile::tempdir().unwrap();
        let client = Arc::new(World::client_in(dir.path(), &clock));
        World {
            clock,
            server,
            dir,
            client,
        }
    }

    fn client_in(dir: &std::path::Path, clock: &ManualClock) -> Client {
        Client::builder(PRODUCT)
            .store(dir)
            .trust(Keyring::with([vendor().public()]))
            .clock(clock.clone())
            .fingerprint_source(StaticSource(machine()))
            .open()
            .unwrap()
    }

    /// Another process on the same machine (the command run under `lic lease`).
    fn other_process(&self) -> Client {
        World::client_in(self.dir.path(), &self.clock)
    }

    fn holder(&self, events: &Arc<Mutex<Vec<HolderEvent>>>) -> LeaseHolder {
        let sink = events.clone();
        LeaseHolder::take(
            self.client.clone(),
            self.server.clone(),
            HolderOptions::default()
                .credential(Credential::LicenseKey(KEY.into()))
                .retry_secs(20)
                .on_event(move |e| sink.lock().unwrap().push(e.clone())),
        )
        .unwrap()
    }

    fn at(&self, secs: i64) -> DateTime<Utc> {
        self.clock.set(t0() + Duration::seconds(secs));
        self.clock.now()
    }
}

fn violations(events: &Mutex<Vec<HolderEvent>>) -> Vec<Violation> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            HolderEvent::Violation(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_holder_renews_at_renew_after_and_other_processes_see_the_lease() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    assert_eq!(w.server.routes(), [ROUTE_TAKE]);
    let lease = holder.status().lease.unwrap();
    assert_eq!(lease.renew_after, t0() + Duration::seconds(300));
    assert_eq!(lease.expires, t0() + Duration::seconds(600));
    // Another process checks through the lease in the store.
    let other = w.other_process();
    other.check(None).unwrap();
    let status = other.status().unwrap();
    assert_eq!(status.lease.as_ref().unwrap().activation_id, "act_1");
    assert_eq!(status.live_instances(), 1);
    assert_eq!(
        status.entitlements.as_ref().unwrap().license_type,
        LicenseType::Floating
    );

    // Before renew_after, nothing is sent.
    let next = holder.tick(w.at(299));
    assert_eq!(next, t0() + Duration::seconds(300));
    assert_eq!(w.server.routes(), [ROUTE_TAKE]);
    // At renew_after, one renewal.
    let next = holder.tick(w.at(300));
    assert_eq!(w.server.routes(), [ROUTE_TAKE, ROUTE_RENEW]);
    assert_eq!(next, t0() + Duration::seconds(600));
    let lease = holder.status().lease.unwrap();
    assert_eq!(lease.expires, t0() + Duration::seconds(900));
    assert!(holder.status().valid);
    assert!(matches!(
        events.lock().unwrap().as_slice(),
        [HolderEvent::Renewed(_)]
    ));
    // Well past the first lease's expiry, the renewed one holds.
    w.at(700);
    other.check(None).unwrap();
}

#[test]
fn a_short_outage_within_the_lease_costs_nothing() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    w.server.script(|s| s.down = true);
    let next = holder.tick(w.at(300));
    assert_eq!(next, t0() + Duration::seconds(320), "retried after 20 s");
    let status = holder.status();
    assert!(status.valid, "{status:?}");
    assert_eq!(status.violation, None);
    assert_eq!(
        status.unreachable_since,
        Some(t0() + Duration::seconds(300))
    );
    w.other_process().check(None).unwrap();
    // A failing gateway (no JSON) is retried the same way.
    w.server.script(|s| {
        s.down = false;
        s.failing = true;
    });
    holder.tick(w.at(320));
    assert!(holder.status().valid);
    // Back before the lease lapses: renewed, nothing was ever reported.
    w.server.script(|s| s.failing = false);
    holder.tick(w.at(340));
    let status = holder.status();
    assert!(status.valid);
    assert_eq!(status.unreachable_since, None);
    assert_eq!(status.lease.unwrap().expires, t0() + Duration::seconds(940));
    assert!(violations(&events).is_empty());
    assert_eq!(
        w.server.routes(),
        [ROUTE_TAKE, ROUTE_RENEW, ROUTE_RENEW, ROUTE_RENEW]
    );
}

#[test]
fn unreachable_past_the_lease_is_reported_after_an_attempt_to_take_a_seat_again() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    w.server.script(|s| s.down = true);
    let mut now = w.at(300);
    // Quiet retries until the lease lapses; never later than the lapse.
    while now < t0() + Duration::seconds(600) {
        let next = holder.tick(now);
        assert!(next <= t0() + Duration::seconds(600));
        assert!(violations(&events).is_empty(), "at {now}");
        now = next;
        w.clock.set(now);
    }
    w.server.clear();
    holder.tick(w.at(600));
    assert_eq!(
        w.server.routes(),
        [ROUTE_RENEW, ROUTE_TAKE],
        "a seat is asked for again before the violation"
    );
    let reported = violations(&events);
    assert_eq!(reported.len(), 1);
    match &reported[0] {
        Violation::ServerUnreachable { since, lapsed, .. } => {
            assert_eq!(*since, t0() + Duration::seconds(300));
            assert_eq!(*lapsed, t0() + Duration::seconds(600));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reported[0].code(), "server-unreachable");
    assert!(!holder.status().valid);
    // The other process sees the lease lapse.
    let err = w.other_process().check(None).unwrap_err();
    assert_eq!(err.code(), "lease-lapsed");
    // Still down: retried, reported once.
    holder.tick(w.at(620));
    assert_eq!(violations(&events).len(), 1);
    // The server is back and a seat is free: taken again, the application may go on.
    w.server.script(|s| s.down = false);
    holder.tick(w.at(640));
    assert!(holder.status().valid);
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(HolderEvent::Retaken { .. })
    ));
    w.other_process().check(None).unwrap();
}

#[test]
fn a_refused_renewal_is_followed_by_a_retake_then_seat_lost_with_the_servers_code() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    // The seat was reclaimed, and another device took it: no seat is free.
    w.server.script(|s| {
        s.refuse_renew = Some((409, "not-leased"));
        s.refuse_take = Some((409, "no-seat"));
    });
    w.server.clear();
    holder.tick(w.at(300));
    assert_eq!(w.server.routes(), [ROUTE_RENEW, ROUTE_TAKE]);
    let reported = violations(&events);
    assert_eq!(
        reported,
        [Violation::SeatLost {
            code: "no-seat".into(),
            reason: "refused: no-seat".into()
        }]
    );
    assert!(!holder.status().valid);
    // The seat is gone at the server: the lease kept in the store is dropped, though it
    // has not lapsed, so other processes stop too.
    assert!(w.other_process().check(None).is_err());
}

#[test]
fn a_refused_renewal_with_a_free_seat_is_taken_again_silently() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    w.server
        .script(|s| s.refuse_renew = Some((409, "not-leased")));
    holder.tick(w.at(300));
    assert!(violations(&events).is_empty());
    assert!(holder.status().valid);
    assert!(matches!(
        events.lock().unwrap().as_slice(),
        [HolderEvent::Retaken {
            grant: Grant::Taken,
            ..
        }]
    ));
}

#[test]
fn a_revoked_license_is_seat_lost_at_once_even_while_the_lease_holds() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    w.server.script(|s| {
        s.refuse_renew = Some((403, "license-revoked"));
        s.refuse_take = Some((403, "license-revoked"));
    });
    holder.tick(w.at(300));
    let reported = violations(&events);
    assert_eq!(reported.len(), 1);
    assert!(
        matches!(&reported[0], Violation::SeatLost { code, .. } if code == "license-revoked"),
        "{reported:?}"
    );
    assert_eq!(reported[0].code(), "seat-lost");
    assert!(!reported[0].hint().is_empty());
}

#[test]
fn stopping_releases_the_seat_and_forgets_the_lease() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    assert!(holder.stop().unwrap());
    assert_eq!(w.server.routes(), [ROUTE_TAKE, ROUTE_RELEASE]);
    assert!(w.other_process().check(None).is_err());
    assert!(w.client.leases().unwrap().is_empty());
    // Exiting never fails: with the server down, the lease is forgotten all the same.
    let holder = w.holder(&events);
    w.server.script(|s| s.down = true);
    drop(holder);
    assert!(w.client.leases().unwrap().is_empty());
}

#[test]
fn the_background_thread_renews_by_the_clients_clock() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events).spawn();
    // Time moves only when told: the thread sees renew_after and renews.
    w.at(300);
    holder.shared.wake.notify_all();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.server.routes().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        holder.shared.wake.notify_all();
    }
    assert_eq!(w.server.routes()[..2], [ROUTE_TAKE, ROUTE_RENEW]);
    holder.stop().unwrap();
    assert_eq!(w.server.routes().last().unwrap(), ROUTE_RELEASE);
}

#[test]
fn crafted_leases_are_refused_and_leave_the_store_as_it_was() {
    for (craft, code) in [
        (Craft::UntrustedKey, "unknown-key"),
        (Craft::OtherDevice, "wrong-device"),
        (Craft::OtherProduct, "wrong-product"),
        (Craft::OtherInstance, "lease-mismatch"),
        (Craft::OtherRequest, "lease-mismatch"),
        (Craft::OtherFingerprint, "wrong-device"),
    ] {
        let w = World::new();
        w.server.script(|s| s.craft = Some(craft));
        let err = take(
            &w.client,
            &*w.server,
            Some(Credential::LicenseKey(KEY.into())),
            new_instance(),
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(err.code(), code, "{craft:?}: {err}");
        assert!(w.client.leases().unwrap().is_empty(), "{craft:?}");
        assert_eq!(
            w.client.check(None).unwrap_err().code(),
            "not-activated",
            "{craft:?}"
        );
    }
}

#[test]
fn a_crafted_lease_on_renewal_is_retried_then_reported_as_lease_lapsed() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    w.server.script(|s| s.craft = Some(Craft::UntrustedKey));
    holder.tick(w.at(300));
    assert!(
        holder.status().valid,
        "retried quietly while the lease holds"
    );
    holder.tick(w.at(600));
    assert_eq!(
        violations(&events),
        [Violation::LeaseLapsed {
            at: t0() + Duration::seconds(600)
        }]
    );
}

#[test]
fn a_lease_request_needs_a_credential_once_and_remembers_it() {
    let w = World::new();
    let err = w
        .client
        .lease_request(None, LeaseAction::Take, new_instance(), None)
        .unwrap_err();
    assert_eq!(err.code(), "credential-needed");
    w.client
        .lease_request(
            Some(Credential::User("ana".into())),
            LeaseAction::Take,
            new_instance(),
            None,
        )
        .unwrap();
    let asked = w
        .client
        .lease_request(None, LeaseAction::Renew, new_instance(), Some("render"))
        .unwrap();
    assert_eq!(asked.request.credential, Credential::User("ana".into()));
    assert_eq!(asked.request.feature.as_deref(), Some("render"));
    assert_eq!(asked.request.created, t0());
    assert_eq!(asked.file.kind(), FileKind::LeaseRequest);
}

#[test]
fn the_clock_mark_rises_with_each_lease_and_a_clock_turned_back_is_a_violation() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    holder.tick(w.at(300));
    assert!(w.client.status().unwrap().last_seen.unwrap() >= t0() + Duration::seconds(300));
    // Turned back by more than the tolerance (3600 s): the check and the next renewal
    // say so.
    w.clock.set(t0() - Duration::seconds(7200));
    let err = w.other_process().check(None).unwrap_err();
    assert_eq!(err.code(), "clock-turned-back");
}

#[test]
fn a_renewal_with_the_clock_turned_back_is_reported_at_once() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let holder = w.holder(&events);
    holder.tick(w.at(300));
    // Turned back past the mark by more than the tolerance, with the lease still live by
    // this clock: the renewed lease is refused by the device itself, and said so.
    w.clock.set(t0() - Duration::seconds(7200));
    let mut core = holder.shared.lock();
    core.next_attempt = w.clock.now();
    drop(core);
    holder.tick(w.clock.now());
    let reported = violations(&events);
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].code(), "clock-turned-back");
    assert!(!holder.status().valid);
}

#[test]
fn a_floating_feature_is_usable_only_with_a_live_lease_for_it() {
    let w = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let _seat = w.holder(&events);
    w.client.check(Some("export")).unwrap();
    assert_eq!(
        w.client.check(Some("render")).unwrap_err().code(),
        "feature-not-leased"
    );
    let feature = LeaseHolder::take(
        w.client.clone(),
        w.server.clone(),
        HolderOptions::default().feature("render"),
    )
    .unwrap();
    w.other_process().check(Some("render")).unwrap();
    assert_eq!(w.other_process().status().unwrap().leases.len(), 2);
    feature.stop().unwrap();
    assert_eq!(
        w.client.check(Some("render")).unwrap_err().code(),
        "feature-not-leased"
    );
}

#[test]
fn a_checkout_installs_with_its_oed_and_ends_there() {
    let w = World::new();
    let out = checkout(
        &w.client,
        &*w.server,
        Some(Credential::LicenseKey(KEY.into())),
        24,
    )
    .unwrap();
    assert_eq!(out.activation_id, "act_co");
    assert_eq!(out.offline_expiry, Some(t0() + Duration::hours(24)));
    // Offline now: no lease, the checkout license holds until its OED.
    w.server.script(|s| s.down = true);
    w.at(23 * 3600);
    let status = w.other_process().status().unwrap();
    assert!(status.is_valid(), "{:?}", status.violations);
    assert_eq!(
        status.entitlements.unwrap().offline_expiry,
        Some(t0() + Duration::hours(24))
    );
    w.at(24 * 3600);
    assert_eq!(
        w.other_process().check(None).unwrap_err().code(),
        "offline-expired"
    );
    // Reconnected with a seat free: a lease resumes the product.
    w.server.script(|s| s.down = false);
    let events = Arc::new(Mutex::new(Vec::new()));
    let _holder = w.holder(&events);
    w.other_process().check(None).unwrap();
}

#[test]
fn a_clock_turned_back_during_a_checkout_is_a_violation() {
    let w = World::new();
    checkout(
        &w.client,
        &*w.server,
        Some(Credential::LicenseKey(KEY.into())),
        48,
    )
    .unwrap();
    w.at(10 * 3600);
    w.client.check(None).unwrap();
    w.client.consume("export", 1).unwrap();
    // Back to before the checkout began, to stretch it: beyond the tolerance.
    w.at(10 * 3600 - 2 * 3600);
    let err = w.other_process().check(None).unwrap_err();
    assert_eq!(err.code(), "clock-turned-back");
}

#[test]
fn a_refused_checkout_leaves_no_request_pending() {
    let w = World::new();
    w.server.script(|s| s.down = true);
    let err = checkout(
        &w.client,
        &*w.server,
        Some(Credential::LicenseKey(KEY.into())),
        8,
    )
    .unwrap_err();
    assert_eq!(err.code(), "server-unreachable");
    assert!(!w.client.has_pending_request().unwrap());
    // An offline activation request on its way to the vendor is not replaced.
    w.client
        .request_activation(Credential::LicenseKey(KEY.into()))
        .unwrap();
    let err = w.client.checkout_request(None, 8).unwrap_err();
    assert_eq!(err.code(), "request-pending");
}

#[test]
fn a_check_in_removes_the_checkout_keeps_a_tombstone_and_is_handed_out_again() {
    let w = World::new();
    let granted = w.server.clone();
    // The checkout license, kept to offer it again later.
    let file = w
        .client
        .checkout_request(Some(Credential::LicenseKey(KEY.into())), 24)
        .unwrap();
    let reply = granted.post(ROUTE_CHECKOUT, &file.armored()).unwrap();
    let license: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let license = license["response"].as_str().unwrap().to_string();
    w.client.install(license.as_bytes()).unwrap();
    w.client.consume("export", 3).unwrap();

    let checked_in = check_in(&w.client, &*w.server).unwrap();
    assert_eq!(checked_in.activation_id, "act_co");
    assert!(!checked_in.replay);
    let payload =
        format::open::<CheckIn>(checked_in.check_in.armored().as_bytes(), &Keyring::new()).unwrap();
    assert_eq!(payload.counters["export"], 3);
    assert_eq!(payload.journal.seq, 1);
    assert_eq!(
        payload.journal.prev,
        format::file_hash(file.bytes()),
        "continues the journal the checkout request started"
    );
    assert_eq!(w.client.check(None).unwrap_err().code(), "not-activated");
    // The same license cannot be installed again.
    let err = w.client.install(license.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "already-deactivated");
    // Asked again: the same file, and the server's replay answer.
    let again = check_in(&w.client, &*w.server).unwrap();
    assert_eq!(again.check_in.bytes(), checked_in.check_in.bytes());
    assert!(again.replay);
    // A deactivation is not the check-in, and is not handed out in its place.
    assert_eq!(w.client.deactivate().unwrap_err().code(), "not-activated");
}

#[test]
fn only_a_checkout_is_checked_in() {
    let w = World::new();
    assert_eq!(w.client.check_in().unwrap_err().code(), "not-checked-out");
}

/// A server that always gives the same answer.
struct Canned(Reply);

impl Transport for Canned {
    fn post(&self, _: &str, _: &str) -> Result<Reply, Unreachable> {
        Ok(self.0.clone())
    }
}

#[test]
fn refusals_and_failures_have_codes_and_hints() {
    let refused = exchange(&Canned(StandIn::refusal(409, "no-seat")), ROUTE_TAKE, "").unwrap_err();
    assert_eq!(refused.code(), "no-seat");
    assert_eq!(refused.hint(), "do something");
    let html = exchange(
        &Canned(Reply {
            status: 404,
            body: "<h1>Not Found</h1>".into(),
        }),
        ROUTE_TAKE,
        "",
    )
    .unwrap_err();
    assert_eq!(html.code(), "server-error");
    assert!(html.to_string().contains("Not Found"), "{html}");
    let busy = exchange(
        &Canned(Reply {
            status: 200,
            body: "{}".into(),
        }),
        ROUTE_TAKE,
        "",
    )
    .and_then(|body| parse::<LeaseAnswer>(&body, "a lease answer").map(drop))
    .unwrap_err();
    assert_eq!(busy.code(), "server-answer");
}

#[cfg(feature = "online")]
#[test]
fn the_http_transport_takes_http_and_https_addresses_only() {
    assert_eq!(
        HttpTransport::new("https://licensing.example.com/")
            .unwrap()
            .base(),
        "https://licensing.example.com"
    );
    assert!(HttpTransport::new(" http://127.0.0.1:8477 ").is_ok());
    let err = HttpTransport::new("licensing.example.com").unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    // Nothing listens on port 9 of loopback: unreachable, with the address.
    let err = HttpTransport::new("http://127.0.0.1:9")
        .unwrap()
        .post(ROUTE_TAKE, "x")
        .unwrap_err();
    assert!(err.0.contains("127.0.0.1:9"), "{err}");
}
