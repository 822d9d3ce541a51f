//! The device side against files signed with the fixture vendor key, on a real store in
//! a temporary directory, with an injected clock and fingerprint.

#![allow(clippy::unwrap_used)] // helpers of this test file, not product code

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use lic_core::client::{Client, ClientError, Installed};
use lic_core::clock::Clock;
use lic_core::fingerprint::{RawComponents, StaticSource, component};
use lic_core::format::{
    self, Credential, Deactivation, FormatError, License, SignedFile, UsageReport,
};
use lic_core::keys::Keyring;
use lic_core::rules::Violation;
use lic_core::store::STATE_FILE;
use lic_fixtures::stand_in::StandIn;

const PRODUCT: &str = "photo-pro";

#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
    fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

fn machine(machine_id: &str, hostname: &str, mac: &str) -> RawComponents {
    [
        (component::MACHINE_ID, machine_id),
        (component::HOSTNAME, hostname),
        (component::CPU, "Example CPU; 8 logical"),
        (component::MEMORY, "32 GiB"),
        (component::MAC, mac),
    ]
    .into_iter()
    .collect()
}

fn home() -> RawComponents {
    machine(
        "0123456789abcdef0123456789abcdef",
        "studio",
        "aa:bb:cc:dd:ee:01",
    )
}

struct Device {
    dir: tempfile::TempDir,
    clock: TestClock,
}

impl Device {
    fn new() -> Self {
        Device {
            dir: tempfile::tempdir().unwrap(),
            clock: TestClock(Arc::new(Mutex::new(start()))),
        }
    }

    fn client_for(&self, product: &str, raw: RawComponents, keys: Keyring) -> Client {
        Client::builder(product)
            .store(self.dir.path())
            .trust(keys)
            .clock(self.clock.clone())
            .fingerprint_source(StaticSource(raw))
            .open()
            .unwrap()
    }

    fn client(&self, portal: &StandIn) -> Client {
        self.client_for(PRODUCT, home(), portal.keys())
    }

    fn state(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join(STATE_FILE)).ok()
    }

    /// Activate: request, have the stand-in answer, install.
    fn activate(&self, portal: &StandIn) -> SignedFile {
        let client = self.client(portal);
        let request = client
            .request_activation(Credential::LicenseKey("PHPRO-1".into()))
            .unwrap();
        let license = portal.license_for(request.armored().as_bytes()).unwrap();
        assert!(matches!(
            client.install(license.armored().as_bytes()).unwrap(),
            Installed::License { .. }
        ));
        license
    }
}

fn payload(file: &SignedFile, portal: &StandIn) -> License {
    format::open::<License>(file.bytes(), &portal.keys())
        .unwrap()
        .into_payload()
}

/// Assert that `op` fails and leaves the store byte-for-byte as it was.
fn refused<T: std::fmt::Debug>(
    device: &Device,
    op: impl FnOnce() -> Result<T, ClientError>,
) -> ClientError {
    let before = device.state();
    let err = op().expect_err("the operation must be refused");
    assert_eq!(
        device.state(),
        before,
        "a refused operation changed the store ({err})"
    );
    err
}

#[test]
fn the_device_loop_request_license_install_check_consume_report_deactivate() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client(&portal);
    assert!(matches!(
        client.status().unwrap().violations.as_slice(),
        [Violation::NotActivated { .. }]
    ));

    let request = client
        .request_activation(Credential::LicenseKey("PHPRO-1".into()))
        .unwrap();
    // Asking again repeats the very same request (the user lost the file).
    let again = client
        .request_activation(Credential::LicenseKey("PHPRO-1".into()))
        .unwrap();
    assert_eq!(again.bytes(), request.bytes());
    let license_file = portal.license_for(request.armored().as_bytes()).unwrap();
    let license = payload(&license_file, &portal);
    assert_eq!(
        license.device_key.0,
        client.device_key().unwrap().to_bytes()
    );

    assert_eq!(
        client.install(license_file.armored().as_bytes()).unwrap(),
        Installed::License {
            activation_id: license.activation_id.clone()
        }
    );
    let status = client.status().unwrap();
    assert!(status.is_valid(), "{:?}", status.violations);
    assert_eq!(
        status.entitlements.as_ref().unwrap().activation_id,
        license.activation_id
    );
    client.check(None).unwrap();
    client.check(Some("render-minutes")).unwrap();

    assert_eq!(client.consume("render-minutes", 30).unwrap().total, 30);
    assert_eq!(client.consume("render-minutes", 12).unwrap().total, 42);
    assert_eq!(client.consume("batch-jobs", 3).unwrap().total, 3);

    let report_file = client.usage_report().unwrap();
    let report = format::open::<UsageReport>(report_file.armored().as_bytes(), &Keyring::new())
        .unwrap()
        .expect_signer(&client.device_key().unwrap())
        .unwrap();
    assert_eq!(report.activation_id, license.activation_id);
    assert_eq!(report.counters.get("render-minutes"), Some(&42));
    assert_eq!(report.journal.seq, 1);
    assert_eq!(
        report.journal.prev,
        request.hash(),
        "the journal starts at the request"
    );

    device.clock.advance(Duration::hours(2));
    client.consume("render-minutes", 8).unwrap();
    let deactivation_file = client.deactivate().unwrap();
    let deactivation =
        format::open::<Deactivation>(deactivation_file.armored().as_bytes(), &Keyring::new())
            .unwrap()
            .expect_signer(&client.device_key().unwrap())
            .unwrap();
    assert_eq!(deactivation.counters.get("render-minutes"), Some(&50));
    assert_eq!(deactivation.counters.get("batch-jobs"), Some(&3));
    assert_eq!(deactivation.journal.seq, 2);
    assert_eq!(deactivation.journal.prev, report_file.hash());

    // The license is gone; deactivating again hands out the same file.
    assert!(matches!(
        client.status().unwrap().violations.as_slice(),
        [Violation::NotActivated { .. }]
    ));
    assert_eq!(
        client.deactivate().unwrap().bytes(),
        deactivation_file.bytes()
    );
}

#[test]
fn a_license_for_another_device_is_refused() {
    let portal = StandIn::new(start());
    let (a, b) = (Device::new(), Device::new());
    let request = a
        .client(&portal)
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();
    let client_b = b.client(&portal);
    client_b
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let err = refused(&b, || client_b.install(license.bytes()));
    assert!(matches!(err, ClientError::NotThisDevice { .. }), "{err}");
    assert!(
        err.to_string().contains("issued to another device"),
        "{err}"
    );
}

#[test]
fn a_license_for_another_product_is_refused() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let request = device
        .client(&portal)
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();
    let other = device.client_for("video-pro", home(), portal.keys());
    let err = refused(&device, || other.install(license.bytes()));
    assert!(
        matches!(&err, ClientError::WrongProduct { expected, found } if expected == "video-pro" && found == PRODUCT),
        "{err}"
    );
}

#[test]
fn a_tampered_license_is_refused() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client(&portal);
    let request = client
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let mut bytes = portal.license_for(request.bytes()).unwrap().into_bytes();
    let at = bytes
        .windows(PRODUCT.len())
        .position(|w| w == PRODUCT.as_bytes())
        .unwrap();
    bytes[at] ^= 0x20; // "photo-pro" → "Photo-pro"
    let err = refused(&device, || client.install(&bytes));
    assert!(
        matches!(err, ClientError::Format(FormatError::BadSignature)),
        "{err}"
    );
}

#[test]
fn a_license_from_an_untrusted_vendor_is_refused() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client_for(PRODUCT, home(), Keyring::new());
    let request = client
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();
    let err = refused(&device, || client.install(license.bytes()));
    assert!(
        matches!(err, ClientError::Format(FormatError::UnknownKey { .. })),
        "{err}"
    );
}

#[test]
fn an_expired_license_is_refused_and_one_that_expires_stops_working() {
    let mut portal = StandIn::new(start());
    portal.valid_for = Some(Duration::days(30));
    let device = Device::new();
    let client = device.client(&portal);
    let request = client
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();

    device.clock.advance(Duration::days(31));
    let err = refused(&device, || client.install(license.bytes()));
    assert!(
        matches!(err, ClientError::Violation(Violation::Expired { .. })),
        "{err}"
    );

    device.clock.set(start() + Duration::days(1));
    client.install(license.bytes()).unwrap();
    client.consume("render-minutes", 1).unwrap();
    device.clock.set(start() + Duration::days(30));
    let status = client.status().unwrap();
    assert!(matches!(
        status.violations.as_slice(),
        [Violation::Expired { .. }]
    ));
    let err = refused(&device, || client.consume("render-minutes", 1));
    assert!(
        matches!(err, ClientError::Violation(Violation::Expired { .. })),
        "{err}"
    );
}

#[test]
fn refreshes_apply_once_and_never_roll_back() {
    let mut portal = StandIn::new(start());
    let device = Device::new();
    let license = payload(&device.activate(&portal), &portal);
    let client = device.client(&portal);

    // Ten days later, on both sides (a refresh from ahead of this clock is refused).
    portal.now = start() + Duration::days(10);
    device.clock.set(portal.now);
    portal.valid_for = Some(Duration::days(700));
    let r2 = portal.refresh_for(&license, 2, None);
    let r3 = portal.refresh_for(&license, 3, None);
    assert_eq!(
        client.install(r3.armored().as_bytes()).unwrap(),
        Installed::Refresh {
            from_serial: 1,
            to_serial: 3
        }
    );
    // The same refresh again: a no-op that changes nothing.
    let before = device.state();
    assert_eq!(
        client.install(r3.armored().as_bytes()).unwrap(),
        Installed::RefreshAlreadyApplied { serial: 3 }
    );
    assert_eq!(device.state(), before);
    // An older one: a rollback.
    let err = refused(&device, || client.install(r2.armored().as_bytes()));
    assert!(
        matches!(
            err,
            ClientError::Rollback {
                installed: 3,
                offered: 2
            }
        ),
        "{err}"
    );
    let status = client.status().unwrap();
    assert!(status.is_valid(), "{:?}", status.violations);
    let e = status.entitlements.unwrap();
    assert_eq!(e.serial, 3);
    assert_eq!(e.expires, Some(portal.now + Duration::days(700)));
}

#[test]
fn a_refresh_for_another_activation_is_refused() {
    let portal = StandIn::new(start());
    let (a, b) = (Device::new(), Device::new());
    let license_a = payload(&a.activate(&portal), &portal);
    b.activate(&portal);
    let refresh = portal.refresh_for(&license_a, 2, None);
    let client_b = b.client(&portal);
    let err = refused(&b, || client_b.install(refresh.bytes()));
    assert!(matches!(err, ClientError::RefreshMismatch { .. }), "{err}");
}

#[test]
fn a_license_cannot_be_installed_again_after_deactivation() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let license = device.activate(&portal);
    let client = device.client(&portal);
    client.deactivate().unwrap();
    let err = refused(&device, || client.install(license.armored().as_bytes()));
    assert!(
        matches!(err, ClientError::AlreadyDeactivated { .. }),
        "{err}"
    );
}

#[test]
fn a_refresh_for_a_deactivated_activation_is_refused_and_changes_nothing() {
    let mut portal = StandIn::new(start());
    let device = Device::new();
    let license = payload(&device.activate(&portal), &portal);
    let client = device.client(&portal);
    client.consume("render-minutes", 5).unwrap();
    client.deactivate().unwrap();
    portal.now = start() + Duration::days(1);
    device.clock.set(start() + Duration::days(1));
    let refresh = portal.refresh_for(&license, 2, None);

    let err = refused(&device, || client.install(refresh.armored().as_bytes()));
    assert!(
        matches!(
            &err,
            ClientError::AlreadyDeactivated { activation_id, file: format::FileKind::Refresh }
                if *activation_id == license.activation_id
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "already-deactivated");
    assert_eq!(
        err.to_string(),
        format!(
            "activation {} was deactivated on this device; its refresh cannot be installed here again",
            license.activation_id
        )
    );
    assert!(
        err.hint().contains("new activation request"),
        "{}",
        err.hint()
    );

    // Also once the product is activated here again: the old activation's refresh is
    // still refused as deactivated (not as a refresh for another activation).
    device.activate(&portal);
    let err = refused(&device, || client.install(refresh.bytes()));
    assert_eq!(err.code(), "already-deactivated", "{err}");
    // And with a clock-floor reset, which would otherwise lower the clock mark.
    let floor = portal.refresh_for(&license, 3, Some(start()));
    let err = refused(&device, || client.install(floor.bytes()));
    assert_eq!(err.code(), "already-deactivated", "{err}");
}

#[test]
fn a_license_issued_ahead_of_this_clock_is_refused_until_the_clock_is_right() {
    // The vendor's clock is two days ahead of this device's (the device's is wrong).
    let portal = StandIn::new(start() + Duration::days(2));
    let device = Device::new();
    let client = device.client(&portal);
    let request = client
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();
    let err = refused(&device, || client.install(license.bytes()));
    assert!(
        matches!(
            &err,
            ClientError::ClockBehind { file: format::FileKind::License, now, issued, tolerance_secs: 3600 }
                if *now == start() && *issued == start() + Duration::days(2)
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "clock-behind");
    assert_eq!(
        err.to_string(),
        "this device's clock says 2026-11-20T09:00:00Z, but the license was issued at \
         2026-11-22T09:00:00Z (more than the 3600 s the license allows)"
    );
    assert!(
        err.hint().contains("set this computer's clock"),
        "{}",
        err.hint()
    );
    // The request still waits: once the clock is right, the same file installs.
    device.clock.set(start() + Duration::days(2));
    client.install(license.bytes()).unwrap();
    client.check(None).unwrap();
}

#[test]
fn a_license_issued_ahead_within_the_tolerance_installs_and_raises_the_mark() {
    let portal = StandIn::new(start() + Duration::minutes(30));
    let device = Device::new();
    let client = device.client(&portal);
    let request = client
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();
    client.install(license.bytes()).unwrap();
    let status = client.status().unwrap();
    assert!(status.is_valid(), "{:?}", status.violations);
    assert_eq!(status.last_seen, Some(start() + Duration::minutes(30)));
}

#[test]
fn a_refresh_issued_ahead_of_this_clock_is_refused() {
    let mut portal = StandIn::new(start());
    let device = Device::new();
    let license = payload(&device.activate(&portal), &portal);
    let client = device.client(&portal);
    portal.now = start() + Duration::days(3);
    let refresh = portal.refresh_for(&license, 2, None);
    let err = refused(&device, || client.install(refresh.bytes()));
    assert!(
        matches!(
            err,
            ClientError::ClockBehind {
                file: format::FileKind::Refresh,
                ..
            }
        ),
        "{err:?}"
    );
    // A clock-floor reset that would set the mark well ahead of this clock: the same.
    let floor = portal.refresh_for(&license, 3, Some(start() + Duration::days(3)));
    let err = refused(&device, || client.install(floor.bytes()));
    assert_eq!(err.code(), "clock-behind", "{err}");
    device.clock.set(start() + Duration::days(3));
    assert!(matches!(
        client.install(refresh.bytes()).unwrap(),
        Installed::Refresh { to_serial: 2, .. }
    ));
}

#[test]
fn concurrent_first_runs_on_a_fresh_store_share_one_device_key() {
    let portal = StandIn::new(start());
    for _ in 0..3 {
        let device = Device::new();
        let barrier = std::sync::Barrier::new(6);
        let kids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let (device, barrier, portal) = (&device, &barrier, &portal);
                    s.spawn(move || {
                        let client = device.client(portal);
                        barrier.wait();
                        if i % 2 == 0 {
                            client.status().unwrap().device_kid.unwrap()
                        } else {
                            client.device_key().unwrap().kid().to_string()
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
        // The key they saw is the one that stays, and it signs what comes next.
        let client = device.client(&portal);
        assert_eq!(client.device_key().unwrap().kid().to_string(), kids[0]);
        device.activate(&portal);
        client.check(None).unwrap();
    }
}

#[test]
fn a_license_installs_only_against_the_request_it_answers() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client(&portal);
    let first = client
        .request_activation(Credential::LicenseKey("K1".into()))
        .unwrap();
    let stale = portal.license_for(first.bytes()).unwrap();
    // A new request with another key replaces the first.
    client
        .request_activation(Credential::LicenseKey("K2".into()))
        .unwrap();
    let err = refused(&device, || client.install(stale.bytes()));
    assert!(matches!(err, ClientError::RequestMismatch { .. }), "{err}");
}

#[test]
fn the_same_license_installed_twice_is_a_no_op() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let license = device.activate(&portal);
    let before = device.state();
    assert!(matches!(
        device.client(&portal).install(license.bytes()).unwrap(),
        Installed::LicenseAlreadyInstalled { .. }
    ));
    assert_eq!(device.state(), before);
}

fn edit_state(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(STATE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_counter_edited_by_hand_is_detected_and_nothing_is_reset() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let license = device.activate(&portal);
    let client = device.client(&portal);
    client.consume("render-minutes", 90).unwrap();
    // The counter 90 (0x18 0x5a in CBOR) set back to 10 (0x0a0 form is shorter, so keep
    // the length: 0x18 0x0a).
    edit_state(device.dir.path(), |bytes| {
        let at = bytes
            .windows(2)
            .rposition(|w| w == [0x18, 90])
            .expect("the counter is in the state");
        bytes[at + 1] = 10;
    });
    let status = client.status().unwrap();
    assert!(
        matches!(
            status.violations.as_slice(),
            [Violation::StoreTampered { .. }]
        ),
        "{:?}",
        status.violations
    );
    // Every other call gives the same violation, and changes nothing.
    let tampered = |err: &ClientError| {
        matches!(err, ClientError::Violation(Violation::StoreTampered { .. }))
            && err.code() == "store-tampered"
            && err.hint().contains("lic store reset")
    };
    let err = refused(&device, || client.consume("render-minutes", 1));
    assert!(tampered(&err), "{err:?}");
    let err = refused(&device, || client.check(None));
    assert!(tampered(&err), "{err:?}");
    let err = refused(&device, || client.deactivate());
    assert!(tampered(&err), "{err:?}");
    let err = refused(&device, || client.usage_report());
    assert!(tampered(&err), "{err:?}");
    let err = refused(&device, || client.explain_fingerprint(None));
    assert!(tampered(&err), "{err:?}");
    let refresh = portal.refresh_for(&payload(&license, &portal), 2, None);
    let err = refused(&device, || client.install(refresh.bytes()));
    assert!(tampered(&err), "{err:?}");
    let err = refused(&device, || {
        device
            .client_for("video-pro", home(), portal.keys())
            .request_activation(Credential::LicenseKey("K".into()))
    });
    assert!(tampered(&err), "{err:?}");
}

#[test]
fn a_missing_device_key_beside_the_state_is_the_same_violation() {
    let portal = StandIn::new(start());
    let device = Device::new();
    device.activate(&portal);
    let client = device.client(&portal);
    std::fs::remove_file(device.dir.path().join(lic_core::store::KEY_FILE)).unwrap();
    assert!(matches!(
        client.status().unwrap().violations.as_slice(),
        [Violation::StoreTampered { .. }]
    ));
    let err = refused(&device, || client.consume("render-minutes", 1));
    assert!(
        matches!(err, ClientError::Violation(Violation::StoreTampered { .. })),
        "{err:?}"
    );
    assert!(
        !device.dir.path().join(lic_core::store::KEY_FILE).exists(),
        "no new device key was made beside the old state"
    );
}

#[test]
fn a_clock_turned_back_beyond_the_tolerance_is_a_violation() {
    let portal = StandIn::new(start());
    let device = Device::new();
    device.activate(&portal);
    let client = device.client(&portal);
    device.clock.advance(Duration::days(3));
    client.consume("render-minutes", 1).unwrap(); // records the high-water mark

    // Back by less than the tolerance (1 h): fine.
    device.clock.advance(Duration::minutes(-50));
    client.check(None).unwrap();
    // Back by a day: a violation, and nothing may be consumed.
    device.clock.advance(Duration::days(-1));
    let status = client.status().unwrap();
    assert!(
        matches!(
            status.violations.as_slice(),
            [Violation::ClockTurnedBack { .. }]
        ),
        "{:?}",
        status.violations
    );
    let err = refused(&device, || client.consume("render-minutes", 1));
    assert_eq!(err.code(), "clock-turned-back");
    // Setting the clock right again ends the violation.
    device.clock.advance(Duration::days(1));
    client.check(None).unwrap();
}

#[test]
fn a_refresh_with_a_clock_floor_reset_ends_a_clock_violation() {
    let mut portal = StandIn::new(start());
    let device = Device::new();
    let license = payload(&device.activate(&portal), &portal);
    let client = device.client(&portal);
    // Once the clock ran half a year ahead; now it is right again and seen as turned back.
    device.clock.advance(Duration::days(180));
    client.consume("render-minutes", 1).unwrap();
    device.clock.set(start() + Duration::days(2));
    assert_eq!(client.check(None).unwrap_err().code(), "clock-turned-back");
    portal.now = start() + Duration::days(2);
    let refresh = portal.refresh_for(&license, 2, Some(start() + Duration::days(2)));
    client.install(refresh.bytes()).unwrap();
    client.check(None).unwrap();
}

#[test]
fn consumption_beyond_the_limit_is_refused_unless_overage_is_allowed() {
    let portal = StandIn::new(start());
    let device = Device::new();
    device.activate(&portal);
    let client = device.client(&portal);
    client.consume("render-minutes", 99).unwrap();
    let err = refused(&device, || client.consume("render-minutes", 2));
    assert!(
        matches!(
            &err,
            ClientError::LimitExceeded {
                limit: 100,
                used: 99,
                requested: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(client.consume("render-minutes", 1).unwrap().total, 100);
    assert_eq!(
        client.check(Some("render-minutes")).unwrap_err().code(),
        "limit-exceeded"
    );
    // batch-jobs allows overage beyond its limit of 10.
    let c = client.consume("batch-jobs", 12).unwrap();
    assert_eq!((c.total, c.overage), (12, 2));
    let err = refused(&device, || client.consume("no-such-feature", 1));
    assert_eq!(err.code(), "feature-not-licensed");
}

#[test]
fn the_fingerprint_rule_tolerates_small_changes_only() {
    let portal = StandIn::new(start());
    let device = Device::new();
    device.activate(&portal);
    let keys = portal.keys();
    // A new network card: one component changed, allowed.
    let new_nic = machine(
        "0123456789abcdef0123456789abcdef",
        "studio",
        "aa:bb:cc:dd:ee:99",
    );
    let c = device.client_for(PRODUCT, new_nic, keys.clone());
    c.check(None).unwrap();
    // Network card and host name: two changes, one allowed.
    let two = machine(
        "0123456789abcdef0123456789abcdef",
        "renamed",
        "aa:bb:cc:dd:ee:99",
    );
    let err = device
        .client_for(PRODUCT, two, keys.clone())
        .check(None)
        .unwrap_err();
    assert_eq!(err.code(), "wrong-device");
    assert!(err.to_string().contains("hostname, mac"), "{err}");
    // Another machine id: the required component.
    let clone = machine(
        "ffffffffffffffffffffffffffffffff",
        "studio",
        "aa:bb:cc:dd:ee:01",
    );
    let err = device
        .client_for(PRODUCT, clone, keys)
        .check(None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("required component(s) machine-id differ"),
        "{err}"
    );
}

#[test]
fn installing_on_a_machine_that_changed_too_much_is_refused() {
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client(&portal);
    let request = client
        .request_activation(Credential::LicenseKey("K".into()))
        .unwrap();
    let license = portal.license_for(request.bytes()).unwrap();
    let moved = machine(
        "ffffffffffffffffffffffffffffffff",
        "studio",
        "aa:bb:cc:dd:ee:01",
    );
    let other = device.client_for(PRODUCT, moved, portal.keys());
    let err = refused(&device, || other.install(license.bytes()));
    assert_eq!(err.code(), "wrong-device");
}

#[test]
fn activating_an_activated_product_is_refused() {
    let portal = StandIn::new(start());
    let device = Device::new();
    device.activate(&portal);
    let client = device.client(&portal);
    let err = refused(&device, || {
        client.request_activation(Credential::LicenseKey("K".into()))
    });
    assert_eq!(err.code(), "already-activated");
}

#[test]
fn variables_set_before_activation_travel_in_the_request_and_later_ones_in_the_next_files() {
    use lic_core::format::ActivationRequest;
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client(&portal);
    // Before activation: kept in the store for the product.
    client.set_variable("site", "Lab 2").unwrap();
    client.set_variable("operator.id", "42").unwrap();
    client.set_variable("site", "Lab 3").unwrap();
    assert_eq!(
        client.variables().unwrap(),
        [
            ("operator.id".to_string(), "42".to_string()),
            ("site".to_string(), "Lab 3".to_string())
        ]
        .into()
    );
    let request = client
        .request_activation(Credential::LicenseKey("PHPRO-1".into()))
        .unwrap();
    let read = format::open::<ActivationRequest>(request.bytes(), &Keyring::new())
        .unwrap()
        .into_payload();
    assert_eq!(read.variables, client.variables().unwrap());
    // Set after the request was made: the same request is handed out again (its nonce
    // is the one the license will answer), the change travels in the next file.
    client.set_variable("seat", "bench 4").unwrap();
    let again = client
        .request_activation(Credential::LicenseKey("PHPRO-1".into()))
        .unwrap();
    assert_eq!(again.bytes(), request.bytes());
    let license = portal.license_for(request.armored().as_bytes()).unwrap();
    client.install(license.armored().as_bytes()).unwrap();

    assert_eq!(
        client.remove_variable("operator.id").unwrap(),
        Some("42".into())
    );
    assert_eq!(client.remove_variable("operator.id").unwrap(), None);
    let report =
        format::open::<UsageReport>(client.usage_report().unwrap().bytes(), &Keyring::new())
            .unwrap()
            .into_payload();
    assert_eq!(
        report.variables,
        [
            ("seat".to_string(), "bench 4".to_string()),
            ("site".to_string(), "Lab 3".to_string())
        ]
        .into()
    );

    client.set_variable("site", "Lab 9").unwrap();
    let deactivation =
        format::open::<Deactivation>(client.deactivate().unwrap().bytes(), &Keyring::new())
            .unwrap()
            .into_payload();
    assert_eq!(deactivation.variables["site"], "Lab 9");
    // Kept on the device after deactivation, for a new activation.
    assert_eq!(client.variables().unwrap()["site"], "Lab 9");

    // Without variables, nothing of them is in the file.
    client.remove_variable("site").unwrap();
    client.remove_variable("seat").unwrap();
    assert!(client.variables().unwrap().is_empty());
    let request = client
        .request_activation(Credential::LicenseKey("PHPRO-2".into()))
        .unwrap();
    assert!(
        !request.bytes().windows(9).any(|w| w == b"variables"),
        "an empty set of variables is omitted"
    );
}

#[test]
fn variables_that_break_the_limits_are_refused_and_change_nothing() {
    use lic_core::format::{MAX_VARIABLE_VALUE, MAX_VARIABLES};
    let portal = StandIn::new(start());
    let device = Device::new();
    let client = device.client(&portal);
    client.set_variable("a", "1").unwrap();
    for bad in ["", "has space", "ümlaut", "semi;colon", &"n".repeat(65)] {
        let err = refused(&device, || client.set_variable(bad, "x"));
        assert_eq!(err.code(), "variable-name-invalid", "{bad:?}");
        assert!(err.hint().contains("letters, digits"), "{}", err.hint());
    }
    client.set_variable(&"n".repeat(64), "x").unwrap();
    client.set_variable("Name-1_x.y", "").unwrap();
    // Values: any UTF-8 text up to 1024 bytes (bytes, not characters).
    client
        .set_variable("v", &"é".repeat(MAX_VARIABLE_VALUE / 2))
        .unwrap();
    let err = refused(&device, || {
        client.set_variable("v", &"x".repeat(MAX_VARIABLE_VALUE + 1))
    });
    assert_eq!(err.code(), "variable-value-too-long");
    assert_eq!(client.variables().unwrap()["v"].len(), MAX_VARIABLE_VALUE);
    // At most 64 per product; replacing one when there are 64 is allowed.
    let have = client.variables().unwrap().len();
    for i in have..MAX_VARIABLES {
        client.set_variable(&format!("k{i}"), "v").unwrap();
    }
    let err = refused(&device, || client.set_variable("one-more", "v"));
    assert_eq!(err.code(), "too-many-variables");
    assert!(err.hint().contains("lic var unset"), "{}", err.hint());
    client.set_variable("a", "replaced").unwrap();
    // Another product has its own.
    let other = device.client_for("other-product", home(), portal.keys());
    other.set_variable("one-more", "v").unwrap();
    assert!(!client.variables().unwrap().contains_key("one-more"));
    // Together at most 16 KiB: 17 values of 1000 bytes pass it.
    for i in 0..16 {
        other
            .set_variable(&format!("big{i}"), &"x".repeat(1000))
            .unwrap();
    }
    let err = refused(&device, || other.set_variable("big16", &"x".repeat(1000)));
    assert_eq!(err.code(), "variables-too-large");
    // Everything the store holds still signs: a request with the most is a valid file.
    let request = client
        .request_activation(Credential::LicenseKey("PHPRO-1".into()))
        .unwrap();
    assert!(request.armored().len() <= format::armor::MAX_FILE_SIZE);
}
