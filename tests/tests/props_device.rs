//! Property test of serial monotonicity on a real device store: refreshes installed in
//! any order through `Client::install` (signed by the fixture vendor key, on a store in a
//! temporary directory) end with the highest serial in force; every refresh at or below
//! the one in force is refused as a rollback (or is the very file again) and leaves the
//! store as it was. 32 cases by default (each activates a store); `PROPTEST_CASES` raises
//! it.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use chrono::{DateTime, Duration, TimeZone, Utc};
use lic_core::client::{Client, ClientError, Installed};
use lic_core::clock::FixedClock;
use lic_core::fingerprint::{RawComponents, StaticSource, component};
use lic_core::format::{self, Credential, License};
use lic_core::store::STATE_FILE;
use lic_fixtures::stand_in::StandIn;
use proptest::prelude::*;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

/// 1 to 8 distinct refresh serials (above the license's 1), at the edges of `u64` too, in
/// any order.
fn serials() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::btree_set(
        prop_oneof![
            2u64..40,
            Just(u64::MAX),
            Just(u64::MAX - 1),
            2u64..=u64::MAX
        ],
        1..8,
    )
    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
    .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Installed in any order, then some installed again: each refresh above the serial in
    /// force is applied from it; each at or below it is refused (a rollback), or is the
    /// very file in force (already applied), and changes nothing in the store; the serial
    /// in force at the end is the highest.
    #[test]
    fn refreshes_installed_in_any_order_end_with_the_highest_serial(
        serials in serials(),
        again in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut portal = StandIn::new(start());
        let raw: RawComponents = [
            (component::MACHINE_ID, "0123456789abcdef0123456789abcdef"),
            (component::HOSTNAME, "studio"),
        ]
        .into_iter()
        .collect();
        let client = Client::builder("photo-pro")
            .store(dir.path())
            .trust(portal.keys())
            .clock(FixedClock(start() + Duration::days(1)))
            .fingerprint_source(StaticSource(raw))
            .open()
            .unwrap();
        let request = client
            .request_activation(Credential::LicenseKey("PHPRO-1".into()))
            .unwrap();
        let license = portal.license_for(request.armored().as_bytes()).unwrap();
        client.install(license.armored().as_bytes()).unwrap();
        let license: License =
            format::open::<License>(license.bytes(), &portal.keys()).unwrap().into_payload();
        prop_assert_eq!(license.serial, 1);
        portal.now = start() + Duration::hours(1);
        portal.valid_for = Some(Duration::days(700));
        let state = || std::fs::read(dir.path().join(STATE_FILE)).unwrap();

        let files: Vec<_> = serials.iter().map(|s| portal.refresh_for(&license, *s, None)).collect();
        let mut in_force = 1u64;
        let mut in_force_file = None;
        let order = serials.iter().copied().zip(files.iter()).chain(
            again.iter().map(|i| {
                let k = i.index(serials.len());
                (serials[k], &files[k])
            }),
        );
        for (serial, file) in order {
            let before = state();
            match client.install(file.armored().as_bytes()) {
                Ok(Installed::Refresh { from_serial, to_serial }) => {
                    prop_assert!(serial > in_force, "applied {} over {}", serial, in_force);
                    prop_assert_eq!((from_serial, to_serial), (in_force, serial));
                    in_force = serial;
                    in_force_file = Some(file.bytes().to_vec());
                }
                Ok(Installed::RefreshAlreadyApplied { serial: s }) => {
                    prop_assert_eq!(s, in_force);
                    prop_assert_eq!(in_force_file.as_deref(), Some(file.bytes()));
                    prop_assert_eq!(state(), before);
                }
                Err(ClientError::Rollback { installed, offered }) => {
                    prop_assert!(serial < in_force, "refused {} over {}", serial, in_force);
                    prop_assert_eq!((installed, offered), (in_force, serial));
                    prop_assert_eq!(state(), before, "a refused refresh changed the store");
                }
                other => prop_assert!(false, "serial {} over {}: {:?}", serial, in_force, other),
            }
        }
        prop_assert_eq!(in_force, serials.iter().copied().max().unwrap());
        let status = client.status().unwrap();
        prop_assert!(status.is_valid(), "{:?}", status.violations);
        prop_assert_eq!(status.entitlements.unwrap().serial, in_force);
    }
}
