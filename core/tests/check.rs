//! `check::license`, the one call: every refusal typed, with the format's and the rules'
//! codes.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use chrono::{DateTime, Duration, TimeZone, Timelike as _, Utc};
use lic_core::check::{self, Check, CheckError, Device};
use lic_core::clock::FixedClock;
use lic_core::fingerprint::{RawComponents, component};
use lic_core::format::{
    self, Bytes32, Feature, FormatError, License, LicenseType, MatchRule, Nonce, Refresh,
};
use lic_core::keys::{Keyring, SecretKey};
use lic_core::rules::Violation;

const PRODUCT: &str = "photo-pro";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

fn machine(hostname: &str) -> RawComponents {
    [
        (component::MACHINE_ID, "8f3c1d2e9a7b4c5d"),
        (component::HOSTNAME, hostname),
        (component::MEMORY, "32 GiB"),
    ]
    .into_iter()
    .collect()
}

struct Setup {
    vendor: SecretKey,
    device_key: SecretKey,
    device: Device,
    keys: Keyring,
}

fn setup() -> Setup {
    let vendor = SecretKey::from_seed(&[1; 32]);
    let device_key = SecretKey::from_seed(&[2; 32]);
    let device = Device::from_components(&device_key, PRODUCT, &machine("studio"));
    let keys = Keyring::with([vendor.public()]);
    Setup {
        vendor,
        device_key,
        device,
        keys,
    }
}

fn license(s: &Setup) -> License {
    License {
        pool: None,
        pool_seats: None,
        license_id: "lic_1".into(),
        activation_id: "act_1".into(),
        product: PRODUCT.into(),
        device_key: Bytes32(s.device.key().to_bytes()),
        fingerprint: s.device.fingerprint().clone(),
        match_rule: MatchRule {
            required: vec![component::MACHINE_ID.into()],
            max_changed: 0,
        },
        features: [("export".to_string(), Feature::default())].into(),
        license_type: LicenseType::TimeLimited,
        issued: now(),
        not_before: now(),
        expires: Some(now() + Duration::days(30)),
        offline_expiry: None,
        clock_tolerance: 3600,
        serial: 1,
        request_nonce: Nonce([0; 16]),
        counters: Default::default(),
    }
}

fn signed(s: &Setup, l: &License) -> String {
    format::sign(l, &s.vendor).unwrap().armored()
}

fn at(t: DateTime<Utc>) -> FixedClock {
    FixedClock(t)
}

#[test]
fn a_license_for_this_device_gives_its_entitlements() {
    let s = setup();
    let l = license(&s);
    let file = signed(&s, &l);
    let licensed =
        check::license(file.as_bytes(), &s.keys, PRODUCT, &s.device, &at(now())).unwrap();
    assert_eq!(licensed.entitlements().license_id, "lic_1");
    assert!(licensed.entitlements().features.contains_key("export"));
    assert!(licensed.fingerprint().ok);
    assert_eq!(licensed.license().payload(), &l);
    assert!(licensed.refresh().is_none());
    // Binary bytes too.
    let binary = format::sign(&l, &s.vendor).unwrap();
    assert!(check::license(binary.bytes(), &s.keys, PRODUCT, &s.device, &at(now())).is_ok());
}

#[test]
fn another_product_is_a_typed_refusal() {
    let s = setup();
    let file = signed(&s, &license(&s));
    let err =
        check::license(file.as_bytes(), &s.keys, "video-pro", &s.device, &at(now())).unwrap_err();
    assert_eq!(
        err,
        CheckError::WrongProduct {
            expected: "video-pro".into(),
            found: PRODUCT.into()
        }
    );
    assert_eq!(err.code(), "wrong-product");
    assert!(!err.hint().is_empty());
}

#[test]
fn format_refusals_keep_the_formats_codes() {
    let s = setup();
    let file = signed(&s, &license(&s));
    let err = check::license(
        file.as_bytes(),
        &Keyring::new(),
        PRODUCT,
        &s.device,
        &at(now()),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        CheckError::Format(FormatError::UnknownKey { .. })
    ));
    assert_eq!(err.code(), "unknown-key");
    let tampered = file.replace("A", "B");
    let err =
        check::license(tampered.as_bytes(), &s.keys, PRODUCT, &s.device, &at(now())).unwrap_err();
    assert!(matches!(err, CheckError::Format(_)), "{err:?}");
    assert!(err.violations().is_empty());
}

#[test]
fn times_and_devices_are_typed_violations_in_order() {
    let s = setup();
    let file = signed(&s, &license(&s));
    let later = now() + Duration::days(31);
    let err = check::license(file.as_bytes(), &s.keys, PRODUCT, &s.device, &at(later)).unwrap_err();
    assert_eq!(err.code(), "expired");
    assert!(matches!(err.violations(), [Violation::Expired { .. }]));

    // Another machine (the required machine id differs) and, later, expired too.
    let elsewhere = Device::from_components(
        &s.device_key,
        PRODUCT,
        &[(component::MACHINE_ID, "other")].into_iter().collect(),
    );
    let err =
        check::license(file.as_bytes(), &s.keys, PRODUCT, &elsewhere, &at(later)).unwrap_err();
    match err.violations() {
        [
            Violation::Expired { .. },
            Violation::WrongDevice {
                required_failed, ..
            },
        ] => {
            assert!(required_failed.contains(&component::MACHINE_ID.to_string()));
        }
        other => panic!("{other:?}"),
    }
    // The same components under another device key.
    let other_key = SecretKey::from_seed(&[3; 32]);
    let other = Device::new(other_key.public(), s.device.fingerprint().clone());
    let err = check::license(file.as_bytes(), &s.keys, PRODUCT, &other, &at(now())).unwrap_err();
    assert_eq!(
        err.violations(),
        [Violation::WrongDevice {
            required_failed: vec!["device-key".into()],
            differing: Vec::new(),
            max_changed: 0
        }]
    );
    // A changed host name is one change more than the rule allows.
    let renamed = Device::from_components(&s.device_key, PRODUCT, &machine("renamed"));
    let err = check::license(file.as_bytes(), &s.keys, PRODUCT, &renamed, &at(now())).unwrap_err();
    assert_eq!(err.code(), "wrong-device");
}

#[test]
fn the_full_form_lays_a_refresh_over_and_sees_a_clock_turned_back() {
    let s = setup();
    let l = license(&s);
    let file = signed(&s, &l);
    let refresh = Refresh {
        pool_seats: None,
        license_id: l.license_id.clone(),
        activation_id: l.activation_id.clone(),
        product: PRODUCT.into(),
        device_key: l.device_key,
        serial: 2,
        features: [("print".to_string(), Feature::default())].into(),
        license_type: LicenseType::Subscription,
        expires: Some(now() + Duration::days(90)),
        offline_expiry: None,
        clock_tolerance: 60,
        clock_floor: None,
        reason: "renewal".into(),
        issued: now(),
    };
    let r = format::sign(&refresh, &s.vendor).unwrap();
    let later = now() + Duration::days(60);
    let e = Check::new(&s.keys, PRODUCT, &s.device)
        .refresh(Some(r.bytes()))
        .evaluate(file.as_bytes(), later)
        .unwrap();
    assert!(e.violations.is_empty(), "{:?}", e.violations);
    assert_eq!(e.licensed.entitlements().serial, 2);
    assert!(e.licensed.entitlements().features.contains_key("print"));

    let e = Check::new(&s.keys, PRODUCT, &s.device)
        .last_seen(Some(now() + Duration::days(2)))
        .evaluate(file.as_bytes(), now() + Duration::days(1))
        .unwrap();
    assert_eq!(e.violations.len(), 1);
    assert_eq!(e.violations[0].code(), "clock-turned-back");
    assert_eq!(e.into_result().unwrap_err().code(), "clock-turned-back");

    // A refresh of another activation.
    let mut other = refresh.clone();
    other.activation_id = "act_2".into();
    let r = format::sign(&other, &s.vendor).unwrap();
    let err = Check::new(&s.keys, PRODUCT, &s.device)
        .refresh(Some(r.bytes()))
        .evaluate(file.as_bytes(), now())
        .unwrap_err();
    assert_eq!(err.code(), "refresh-mismatch");
}

#[test]
fn signing_drops_fractions_of_a_second() {
    let s = setup();
    let mut l = license(&s);
    l.issued = now() + Duration::milliseconds(1500);
    let file = signed(&s, &l);
    let read = format::open::<License>(file.as_bytes(), &s.keys).unwrap();
    assert_eq!(read.issued, now() + Duration::seconds(1));
    assert_eq!(read.issued.nanosecond(), 0);
}
