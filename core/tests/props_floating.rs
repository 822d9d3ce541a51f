//! Property tests of the floating rules' arithmetic (`lic_core::floating`): a lease lasts
//! one period from its grant and never outlives the license, renewals never move its end
//! back, a checkout's Offline Expiry Date is the asked hours capped by the policy and the
//! license expiry, seats are never granted past the pool, nothing is taken away before
//! its OED, requests are fresh within the window either way — and none of it panics at
//! the edges of chrono's range or of `u64`. `PROPTEST_CASES` raises the number of cases.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lic_core::floating::{
    self, Grant, Holder, MAX_LEASE_SECS, MIN_LEASE_SECS, Pool, REQUEST_WINDOW_SECS, Reclamation,
    Refusal, Terms,
};
use lic_core::format::MAX_CHECKOUT_HOURS;
use proptest::prelude::*;

// ----- strategies --------------------------------------------------------------------

const YEAR_9999: i64 = 253_402_300_799;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// Any instant chrono can represent, weighted towards its edges and the years licenses
/// live in.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp();
    prop_oneof![
        4 => 0i64..=YEAR_9999,
        1 => min..=max,
        1 => (0i64..=200 * 365 * 86_400).prop_map(move |d| max - d),
        1 => (0i64..=200 * 365 * 86_400).prop_map(move |d| min + d),
        1 => Just(max),
        1 => Just(min),
    ]
    .prop_map(at)
}

/// An instant in the years licenses live in (1970 to 9999).
fn plain_secs() -> impl Strategy<Value = i64> {
    0i64..=YEAR_9999
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..100_000,
        Just(u64::MAX),
        Just(i64::MAX as u64),
        Just(u64::from(u32::MAX)),
        any::<u64>(),
    ]
}

/// Terms a policy may have (they pass `Terms::validate`).
fn valid_terms() -> impl Strategy<Value = Terms> {
    (
        MIN_LEASE_SECS..=MAX_LEASE_SECS,
        1u8..=100,
        prop::option::of(1u32..10),
        0u64..=86_400,
        prop::option::of(1u64..=MAX_CHECKOUT_HOURS),
        prop::option::of(1u64..=MAX_CHECKOUT_HOURS),
    )
        .prop_map(
            |(lease_secs, renew_percent, max_processes, revival_secs, checkout, oed)| Terms {
                lease_secs,
                renew_percent,
                max_processes,
                revival_secs,
                max_checkout_hours: checkout,
                lease_oed_hours: oed,
            },
        )
}

/// Any terms at all, valid or not, with values at the edges of their types.
fn any_terms() -> impl Strategy<Value = Terms> {
    (
        any_u64(),
        any::<u8>(),
        prop::option::of(any::<u32>()),
        any_u64(),
        prop::option::of(any_u64()),
        prop::option::of(any_u64()),
    )
        .prop_map(
            |(lease_secs, renew_percent, max_processes, revival_secs, checkout, oed)| Terms {
                lease_secs,
                renew_percent,
                max_processes,
                revival_secs,
                max_checkout_hours: checkout,
                lease_oed_hours: oed,
            },
        )
}

// ----- lease and OED arithmetic ------------------------------------------------------

proptest! {
    /// A lease granted at `now` lasts exactly one lease period — or ends at the license's
    /// expiry if that comes first — is renewed at the policy's fraction of what it lasts,
    /// and its OED (the policy's on every lease) is that many hours on, never past the
    /// license's expiry. A license that expired leases nothing.
    #[test]
    fn a_lease_lasts_one_period_renews_at_its_fraction_and_never_outlives_the_license(
        terms in valid_terms(),
        now in plain_secs(),
        expires in prop::option::of(plain_secs()),
    ) {
        let got = floating::lease_times(&terms, at(now), expires.map(at));
        match expires {
            Some(e) if e <= now => {
                prop_assert_eq!(got, Err(Refusal::LicenseExpired { at: at(e) }));
            }
            _ => {
                let times = got.unwrap();
                let cap = |t: i64| expires.map_or(t, |e| t.min(e));
                let lease = i64::try_from(terms.lease_secs).unwrap();
                prop_assert_eq!(times.issued, at(now));
                prop_assert_eq!(times.expires.timestamp(), cap(now + lease));
                prop_assert!(times.expires > at(now));
                let lasts = times.expires.timestamp() - now;
                prop_assert_eq!(
                    times.renew_after.timestamp() - now,
                    lasts * i64::from(terms.renew_percent) / 100
                );
                prop_assert!(times.renew_after <= times.expires);
                let oed = terms
                    .lease_oed_hours
                    .map(|h| cap(now + i64::try_from(h).unwrap() * 3600));
                prop_assert_eq!(times.offline_expiry.map(|t| t.timestamp()), oed);
            }
        }
    }

    /// Renewals at later and later times never move the lease's end back, never past the
    /// license's expiry, and each lasts at most one period from its renewal.
    #[test]
    fn renewals_never_move_the_lease_end_back_nor_past_the_license_expiry(
        terms in valid_terms(),
        start in plain_secs(),
        steps in prop::collection::vec(0i64..=2 * 86_400, 1..24),
        life in 1i64..=400 * 86_400,
    ) {
        let license_expires = at(start.saturating_add(life).min(YEAR_9999));
        let mut now = start;
        let mut last_end: Option<DateTime<Utc>> = None;
        for step in steps {
            now = (now + step).min(YEAR_9999);
            match floating::lease_times(&terms, at(now), Some(license_expires)) {
                Ok(times) => {
                    prop_assert!(times.expires <= license_expires);
                    prop_assert!(times.offline_expiry.is_none_or(|o| o <= license_expires));
                    prop_assert!(
                        times.expires.timestamp() - now <= i64::try_from(terms.lease_secs).unwrap()
                    );
                    if let Some(end) = last_end {
                        prop_assert!(times.expires >= end, "{} moved back to {}", end, times.expires);
                    }
                    last_end = Some(times.expires);
                }
                Err(refused) => {
                    prop_assert!(at(now) >= license_expires, "{}", refused);
                    prop_assert_eq!(refused.code(), "license-expired");
                }
            }
        }
    }

    /// A checkout's OED is the hours asked (at least one, at most the policy's longest),
    /// ended early by the license's expiry; never past it. A policy without checkouts and
    /// an expired license refuse.
    #[test]
    fn a_checkout_ends_at_the_asked_hours_capped_by_the_policy_and_the_license_expiry(
        terms in valid_terms(),
        now in plain_secs(),
        asked in any_u64(),
        expires in prop::option::of(plain_secs()),
    ) {
        let got = floating::checkout_expiry(&terms, at(now), asked, expires.map(at));
        let Some(max) = terms.max_checkout_hours else {
            prop_assert_eq!(got, Err(Refusal::CheckoutNotAllowed));
            return Ok(());
        };
        if let Some(e) = expires.filter(|e| *e <= now) {
            prop_assert_eq!(got, Err(Refusal::LicenseExpired { at: at(e) }));
            return Ok(());
        }
        let oed = got.unwrap().timestamp();
        let hours = i64::try_from(asked.clamp(1, max)).unwrap();
        prop_assert_eq!(oed, expires.map_or(now + hours * 3600, |e| (now + hours * 3600).min(e)));
        prop_assert!(oed > now);
        prop_assert!(oed - now <= i64::try_from(max).unwrap() * 3600);
    }

    /// At any instant chrono holds, with any terms (valid or not) and any hours: the lease
    /// and checkout arithmetic answers without panicking, a lease never ends before it was
    /// granted, and nothing ends past the license's expiry.
    #[test]
    fn lease_and_oed_arithmetic_never_panics_at_the_edges_of_time(
        terms in any_terms(),
        now in any_time(),
        asked in any_u64(),
        expires in prop::option::of(any_time()),
    ) {
        if let Ok(times) = floating::lease_times(&terms, now, expires) {
            prop_assert!(times.expires >= now);
            prop_assert!(expires.is_none_or(|e| times.expires <= e));
            prop_assert!(
                times.offline_expiry.is_none_or(|o| o >= now && expires.is_none_or(|e| o <= e))
            );
            if terms.renew_percent <= 100 {
                prop_assert!(times.renew_after >= now && times.renew_after <= times.expires);
            }
        }
        if let Ok(oed) = floating::checkout_expiry(&terms, now, asked, expires) {
            prop_assert!(oed >= now);
            prop_assert!(expires.is_none_or(|e| oed <= e));
        }
    }
}

// ----- seats -------------------------------------------------------------------------

proptest! {
    /// Devices asking for seats in any order at any times: at no instant do more devices
    /// hold a seat than the pool has; a device that holds its seat keeps it; a refusal
    /// comes only when every seat is held by others.
    #[test]
    fn seats_are_never_granted_past_the_pool(
        seats in 0u64..5,
        terms in valid_terms(),
        start in plain_secs(),
        asks in prop::collection::vec((0usize..8, 0u64..=1200), 1..60),
    ) {
        let terms = Terms { lease_secs: terms.lease_secs.min(900), lease_oed_hours: None, ..terms };
        let mut holders: BTreeMap<usize, Holder> = BTreeMap::new();
        let mut now = at(start);
        for (device, wait) in asks {
            now = at((now.timestamp() + i64::try_from(wait).unwrap()).min(YEAR_9999));
            let held_by_others =
                holders.iter().filter(|(d, h)| **d != device && h.holds(now)).count() as u64;
            let me = holders.get(&device).copied();
            let pool = Pool { seats, held_by_others, waiting_ahead: 0, next_free: None };
            match floating::grant(pool, me, terms.revival_secs, None, now) {
                Ok(grant) => {
                    if grant == Grant::Held {
                        prop_assert!(me.is_some_and(|h| h.holds(now)));
                    }
                    let times = floating::lease_times(&terms, now, None).unwrap();
                    holders.insert(
                        device,
                        Holder { lease_expires: Some(times.expires), offline_expiry: None },
                    );
                }
                Err(refused) => {
                    prop_assert_eq!(refused.code(), "no-seat");
                    prop_assert!(held_by_others >= seats, "refused with a seat free");
                }
            }
            let holding = holders.values().filter(|h| h.holds(now)).count() as u64;
            prop_assert!(holding <= seats, "{} devices hold {} seats", holding, seats);
        }
    }

    /// A new device gets a seat exactly when more seats are free than devices wait ahead
    /// of it; a device that holds its seat always keeps it. Any numbers, no panic.
    #[test]
    fn a_new_device_gets_a_seat_exactly_when_one_is_free_beyond_those_waiting(
        seats in any_u64(),
        held in any_u64(),
        waiting in any_u64(),
        revival in any_u64(),
        now in any_time(),
        lapsed in prop::option::of(any_time()),
    ) {
        let pool = Pool { seats, held_by_others: held, waiting_ahead: waiting, next_free: None };
        let free = seats.saturating_sub(held);
        let got = floating::grant(pool, None, revival, None, now);
        prop_assert_eq!(got.is_ok(), free > waiting);
        let holding = Holder { lease_expires: Some(now), offline_expiry: lapsed };
        let got = floating::grant(pool, Some(holding), revival, None, now);
        if holding.holds(now) {
            prop_assert_eq!(got, Ok(Grant::Held));
        } else if got == Ok(Grant::Revived) {
            prop_assert!(free > 0 && revival > 0);
        }
    }

    /// A holder holds the seat exactly while its lease is live or its OED is ahead, and
    /// stops at the later of the two.
    #[test]
    fn a_holder_holds_while_its_lease_is_live_or_its_oed_ahead(
        lease in prop::option::of(any_time()),
        oed in prop::option::of(any_time()),
        now in any_time(),
    ) {
        let h = Holder { lease_expires: lease, offline_expiry: oed };
        prop_assert_eq!(
            h.holds(now),
            lease.is_some_and(|t| t > now) || oed.is_some_and(|t| t > now)
        );
        prop_assert_eq!(h.until(), lease.into_iter().chain(oed).max());
        if let Some(until) = h.until() {
            prop_assert!(!h.holds(until));
        }
    }
}

// ----- taking seats away, freshness --------------------------------------------------

proptest! {
    /// Nothing is taken away before its OED; a seat is reclaimed exactly when it has been
    /// inactive for longer than the threshold, counted from its last access or from when
    /// reclamation was enabled, whichever is later.
    #[test]
    fn a_seat_is_reclaimed_only_when_inactive_past_the_threshold_and_never_before_its_oed(
        inactivity in prop_oneof![0u64..=400 * 86_400, any_u64()],
        enabled in plain_secs(),
        last in plain_secs(),
        oed in prop::option::of(plain_secs()),
        now in plain_secs(),
    ) {
        let rule = Reclamation { inactivity_secs: inactivity, enabled_since: at(enabled) };
        let got = floating::reclaimable(&rule, at(last), oed.map(at), at(now));
        let before_oed = oed.is_some_and(|o| o > now);
        prop_assert_eq!(floating::may_take_away(oed.map(at), at(now)).is_err(), before_oed);
        let idle = i128::from(now) - i128::from(last.max(enabled));
        // The threshold in force is at most 100 years.
        let threshold = i128::from(inactivity).min(100 * 365 * 86_400);
        prop_assert_eq!(got, !before_oed && idle > threshold);
    }

    /// A request is fresh exactly when it was made within `REQUEST_WINDOW_SECS` of the
    /// server's clock, either way; at any instants chrono holds, no panic.
    #[test]
    fn a_request_is_fresh_exactly_within_the_window_either_way(
        created in any_time(),
        now in any_time(),
        near in -2 * REQUEST_WINDOW_SECS..=2 * REQUEST_WINDOW_SECS,
    ) {
        let apart = i128::from(now.timestamp()) - i128::from(created.timestamp());
        prop_assert_eq!(
            floating::fresh(created, now).is_ok(),
            apart.abs() <= i128::from(REQUEST_WINDOW_SECS)
        );
        if let Some(close) = now.timestamp().checked_add(near).and_then(|s| DateTime::from_timestamp(s, 0)) {
            prop_assert_eq!(
                floating::fresh(close, now).is_ok(),
                near.abs() <= REQUEST_WINDOW_SECS
            );
        }
    }
}
