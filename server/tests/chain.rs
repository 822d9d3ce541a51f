//! The client's side of the chain (vendor key → pool license → lease), against rogue
//! floating servers run by someone who owns a device key and wants more seats than the
//! vendor sold: each crafted lease is refused with its code and nothing is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::{KEY, PRODUCT, machine, t0, vendor};
use lic_core::client::{Client, new_instance};
use lic_core::clock::ManualClock;
use lic_core::floating::{Terms, lease_times};
use lic_core::format::{
    self, Bytes32, Credential, Lease, LeaseRequest, License, LicenseType, MatchRule, PoolChain,
};
use lic_core::keys::{Keyring, SecretKey};
use lic_core::lease::{self, Reply, Transport, Unreachable};
use lic_fixtures::stand_in::StandIn;

/// A floating server that signs whatever lease it likes with `key`, carrying `chain`.
struct Rogue {
    key: SecretKey,
    chain: Option<PoolChain>,
    license_id: String,
}

impl Transport for Rogue {
    fn post(&self, _route: &str, body: &str) -> Result<Reply, Unreachable> {
        let req = format::open::<LeaseRequest>(body.as_bytes(), &Keyring::new()).unwrap();
        let times = lease_times(&Terms::default(), req.created, None).unwrap();
        let lease = Lease {
            license_id: self.license_id.clone(),
            activation_id: "onp_rogue".into(),
            product: req.product.clone(),
            device_key: Bytes32(req.signer().to_bytes()),
            fingerprint: req.fingerprint.clone(),
            match_rule: MatchRule {
                required: Vec::new(),
                max_changed: 0,
            },
            instance: req.instance,
            feature: None,
            features: Default::default(),
            license_type: LicenseType::Floating,
            issued: times.issued,
            renew_after: times.renew_after,
            expires: times.expires,
            license_expires: None,
            offline_expiry: None,
            clock_tolerance: 3600,
            request_nonce: req.nonce,
            pool: self.chain.clone(),
        };
        let file = format::sign(&lease, &self.key).unwrap();
        Ok(Reply {
            status: 200,
            body: serde_json::json!({
                "lease": file.armored(),
                "activation": "onp_rogue",
                "grant": "taken",
            })
            .to_string(),
        })
    }
}

/// A server store activated by `vendor` for `product` (with `pool_seats`): its device
/// key and the license the vendor signed.
fn server_of(
    dir: &std::path::Path,
    vendor: &StandIn,
    product: &str,
    pool_seats: Option<u32>,
) -> (SecretKey, Vec<u8>) {
    let admin = Client::builder(product)
        .store(dir)
        .trust(vendor.keys())
        .clock(ManualClock::new(vendor.now))
        .fingerprint_source(machine("rogue"))
        .open()
        .unwrap();
    let credential = Credential::LicenseKey(KEY.into());
    let request = match pool_seats {
        Some(n) => admin.request_pool_activation(credential, n).unwrap(),
        None => admin.request_activation(credential).unwrap(),
    };
    let license = vendor.license_for(request.bytes()).unwrap();
    (
        admin.store().device_key().unwrap(),
        license.bytes().to_vec(),
    )
}

fn license_id(license: &[u8]) -> String {
    format::payload_unverified::<License>(license)
        .unwrap()
        .license_id
        .clone()
}

/// Take a lease from `rogue` on a workstation that trusts only the real vendor: the code
/// of the refusal; the workstation keeps nothing.
fn refused(rogue: &Rogue) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ws = Client::builder(PRODUCT)
        .store(dir.path())
        .trust(vendor(t0()).keys())
        .clock(ManualClock::new(t0()))
        .fingerprint_source(machine("ws"))
        .open()
        .unwrap();
    let err = lease::take(
        &ws,
        rogue,
        Some(Credential::LicenseKey(KEY.into())),
        new_instance(),
        None,
        false,
    )
    .unwrap_err();
    assert!(ws.leases().unwrap().is_empty(), "no lease is kept");
    assert!(ws.check(None).is_err());
    assert!(!err.hint().is_empty());
    err.code().to_owned()
}

/// A server signing with `key`, carrying `license` as its pool license.
fn signed_with(key: SecretKey, license: Vec<u8>) -> Rogue {
    Rogue {
        key,
        license_id: license_id(&license),
        chain: chain(license),
    }
}

fn chain(license: Vec<u8>) -> Option<PoolChain> {
    Some(PoolChain {
        license,
        refresh: None,
    })
}

#[test]
fn an_honest_pool_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (key, license) = server_of(dir.path(), &vendor(t0()), PRODUCT, Some(2));
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Client::builder(PRODUCT)
        .store(ws_dir.path())
        .trust(vendor(t0()).keys())
        .clock(ManualClock::new(t0()))
        .fingerprint_source(machine("ws"))
        .open()
        .unwrap();
    let honest = signed_with(key, license);
    lease::take(
        &ws,
        &honest,
        Some(Credential::LicenseKey(KEY.into())),
        new_instance(),
        None,
        false,
    )
    .unwrap();
    ws.check(None).unwrap();
}

#[test]
fn a_pool_license_signed_by_a_key_the_vendor_does_not_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake_vendor = vendor(t0());
    fake_vendor.vendor = std::sync::Arc::new(lic_fixtures::untrusted_vendor_key());
    let (key, license) = server_of(dir.path(), &fake_vendor, PRODUCT, Some(50));
    let rogue = signed_with(key, license);
    assert_eq!(refused(&rogue), "pool-untrusted");
}

#[test]
fn an_expired_pool_license_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, license) = server_of(
        dir.path(),
        &vendor(t0() - Duration::days(400)),
        PRODUCT,
        Some(2),
    );
    let rogue = signed_with(key, license);
    assert_eq!(refused(&rogue), "pool-expired");
}

#[test]
fn a_pool_license_for_another_product_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, license) = server_of(dir.path(), &vendor(t0()), "cheap-viewer", Some(50));
    let rogue = signed_with(key, license);
    assert_eq!(refused(&rogue), "pool-other-product");
}

#[test]
fn an_ordinary_license_does_not_make_its_device_a_floating_server() {
    let dir = tempfile::tempdir().unwrap();
    let (key, license) = server_of(dir.path(), &vendor(t0()), PRODUCT, None);
    let rogue = signed_with(key, license);
    assert_eq!(refused(&rogue), "pool-untrusted");
}

#[test]
fn a_lease_signed_by_a_key_the_pool_does_not_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, license) = server_of(dir.path(), &vendor(t0()), PRODUCT, Some(2));
    let rogue = Rogue {
        key: SecretKey::from_seed(&[77; 32]),
        license_id: license_id(&license),
        chain: chain(license),
    };
    assert_eq!(refused(&rogue), "pool-untrusted");
}

#[test]
fn a_lease_for_another_license_than_the_pool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, license) = server_of(dir.path(), &vendor(t0()), PRODUCT, Some(2));
    let rogue = Rogue {
        key,
        license_id: "lic_someone_else".into(),
        chain: chain(license),
    };
    assert_eq!(refused(&rogue), "pool-untrusted");
}

#[test]
fn a_lease_with_no_chain_from_an_unknown_key_is_refused() {
    let rogue = Rogue {
        key: SecretKey::from_seed(&[78; 32]),
        license_id: "lic_x".into(),
        chain: None,
    };
    assert_eq!(refused(&rogue), "unknown-key");
}
