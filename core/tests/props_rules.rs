//! Property tests of the device's licensing rules (`lic_core::rules`): serials and
//! rollback, consumption at the edges of its range, the clock's high-water mark and its
//! tolerance, validity in time, and the device journal. Each property is stated from
//! what the rule promises (docs/format.md, docs/security.md), not by running the rule's
//! own code again. `PROPTEST_CASES` raises the number of cases (256 by default).

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use chrono::{DateTime, Duration, Utc};
use lic_core::format::{Bytes32, Feature, MAX_COUNTER, MAX_TRAIL};
use lic_core::rules::{
    self, ConsumeRefused, Consumed, IssuedAhead, SerialDecision, Violation, Window,
};
use proptest::prelude::*;

// ----- strategies --------------------------------------------------------------------

/// Seconds since the epoch anywhere in chrono's range, weighted towards its two edges and
/// the years a license lives in.
fn any_secs() -> impl Strategy<Value = i64> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp();
    prop_oneof![
        4 => 0i64..=253_402_300_799, // 1970 to 9999
        1 => min..=max,
        1 => (0i64..=200 * 365 * 86_400).prop_map(move |d| max - d),
        1 => (0i64..=200 * 365 * 86_400).prop_map(move |d| min + d),
        1 => Just(max),
        1 => Just(min),
    ]
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// Any instant chrono can represent.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    any_secs().prop_map(at)
}

/// An instant in the years licenses live in (1970 to 9999), where `now ± 100 years` stays
/// inside chrono's range.
fn plain_time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..=253_402_300_799).prop_map(at)
}

/// Tolerances: usual ones, the edges of `u64`, and everything between.
fn any_tolerance() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..=7 * 86_400,
        1 => any::<u64>(),
        1 => Just(u64::MAX),
        1 => Just(i64::MAX as u64),
        1 => Just(i64::MAX as u64 + 1),
    ]
}

/// Counters and amounts at the edges of their range: 0, 1, `u32::MAX`, `MAX_COUNTER`
/// and its neighbours, `u64::MAX`, and anything.
fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(MAX_COUNTER - 1),
        Just(MAX_COUNTER),
        Just(MAX_COUNTER + 1),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        0u64..1000,
        0u64..=MAX_COUNTER,
        any::<u64>(),
    ]
}

/// A feature: limited or not, overage on or off, capped or not, with limits and caps at
/// the edges of the range.
fn any_feature() -> impl Strategy<Value = Feature> {
    (
        prop::option::of(edge_u64()),
        any::<bool>(),
        prop::option::of(edge_u64()),
    )
        .prop_map(|(limit, overage, max_overage)| Feature {
            limit,
            overage,
            max_overage,
            floating: None,
        })
}

/// A feature and a consumption `(used, amount)` aimed at its limit: `used + amount` is
/// often exactly `limit - 1`, `limit`, `limit + 1`, or the overage cap and its
/// neighbours, as well as anything at the edges.
fn feature_and_consumption() -> impl Strategy<Value = (Feature, u64, u64)> {
    (
        any_feature(),
        edge_u64(),
        edge_u64(),
        -2i64..=2,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(f, used, amount, off, aim, split)| {
            let target = match (f.limit, f.max_overage, aim) {
                (Some(l), Some(cap), true) if f.overage => Some(l.saturating_add(cap)),
                (Some(l), _, _) => Some(l),
                _ => None,
            };
            match target {
                Some(t) if aim || split % 2 == 0 => {
                    let sum = t.saturating_add_signed(off);
                    // (`sum + 1` wraps to 0 only for `u64::MAX`: then any `used` is below it.)
                    let used = split.checked_rem(sum.wrapping_add(1)).unwrap_or(split);
                    (f, used, sum - used)
                }
                _ => (f, used, amount),
            }
        })
}

fn hash(n: u64) -> Bytes32 {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[31] = 0x5a;
    Bytes32(b)
}

// ----- serials and rollback ----------------------------------------------------------

proptest! {
    /// A refresh whose serial is at or below the installed one is never applied: below is
    /// a rollback whatever its bytes; equal is the same file again or a conflict.
    #[test]
    fn a_serial_at_or_below_the_installed_one_is_never_applied(
        installed in edge_u64(),
        back in edge_u64(),
        same_file in any::<bool>(),
    ) {
        let offered = installed.saturating_sub(back);
        let decision = rules::serial(installed, offered, same_file);
        prop_assert_ne!(decision, SerialDecision::Apply);
        if offered < installed {
            prop_assert_eq!(decision, SerialDecision::Rollback);
        } else if same_file {
            prop_assert_eq!(decision, SerialDecision::AlreadyApplied);
        } else {
            prop_assert_eq!(decision, SerialDecision::Conflict);
        }
    }

    /// Any strictly greater serial is applied, whatever the bytes say about sameness.
    #[test]
    fn any_strictly_greater_serial_is_applied(
        installed in edge_u64().prop_map(|s| s.min(u64::MAX - 1)),
        ahead in 1u64..=u64::MAX,
        same_file in any::<bool>(),
    ) {
        let offered = installed.saturating_add(ahead);
        prop_assert_eq!(rules::serial(installed, offered, same_file), SerialDecision::Apply);
    }

    /// Refreshes installed in any order: the serial in force never goes down, only a new
    /// highest serial is applied, and the last one in force is the highest offered.
    #[test]
    fn installing_refreshes_in_any_order_ends_with_the_highest_serial(
        license_serial in 0u64..4,
        serials in prop::collection::vec(edge_u64(), 0..24)
            .prop_flat_map(|v| Just(v).prop_shuffle()),
    ) {
        let mut in_force = license_serial;
        let mut seen_max = license_serial;
        for offered in &serials {
            let before = in_force;
            if rules::serial(in_force, *offered, false) == SerialDecision::Apply {
                prop_assert!(*offered > seen_max, "applied {} after {}", offered, seen_max);
                in_force = *offered;
            }
            prop_assert!(in_force >= before, "the serial went back");
            seen_max = seen_max.max(*offered);
        }
        let highest = serials.iter().copied().max().unwrap_or(0).max(license_serial);
        prop_assert_eq!(in_force, highest);
    }
}

// ----- consumption at the edges of its range -----------------------------------------

proptest! {
    /// An accepted consumption's total is exactly `used + amount` (never wrapped) and
    /// within `MAX_COUNTER`; its overage is exactly what passes the limit; a refusal
    /// carries the amounts asked.
    #[test]
    fn an_accepted_consumption_is_the_exact_sum_and_its_overage_what_passes_the_limit(
        (feature, used, amount) in feature_and_consumption(),
    ) {
        let sum = u128::from(used) + u128::from(amount);
        match rules::consume(&feature, used, amount) {
            Ok(Consumed { total, overage }) => {
                prop_assert_eq!(u128::from(total), sum);
                prop_assert!(total <= MAX_COUNTER);
                let limit = feature.limit.map_or(u128::MAX, u128::from);
                prop_assert_eq!(u128::from(overage), sum.saturating_sub(limit));
            }
            Err(ConsumeRefused::OutOfRange { used: u, requested })
            | Err(ConsumeRefused::Limit { used: u, requested, .. })
            | Err(ConsumeRefused::OverageCap { used: u, requested, .. }) => {
                prop_assert_eq!((u, requested), (used, amount));
            }
        }
    }

    /// Whatever the feature, a sum past `MAX_COUNTER` (or past `u64`) is out of range, and
    /// a sum within it never is.
    #[test]
    fn a_sum_past_the_largest_counter_is_always_out_of_range(
        (feature, used, amount) in feature_and_consumption(),
    ) {
        let past = u128::from(used) + u128::from(amount) > u128::from(MAX_COUNTER);
        let out = matches!(
            rules::consume(&feature, used, amount),
            Err(ConsumeRefused::OutOfRange { .. })
        );
        prop_assert_eq!(out, past);
    }

    /// Within the counter range: a sum up to the limit is accepted; past the limit it is
    /// refused without overage, accepted with overage up to the cap (or without end when
    /// uncapped), and refused past the cap.
    #[test]
    fn within_range_the_limit_and_the_overage_cap_decide(
        (feature, used, amount) in feature_and_consumption().prop_map(|(f, used, amount)| {
            // Brought within the counter range, keeping the edges: `used` at most
            // `MAX_COUNTER`, `amount` at most what is left.
            let used = used.min(MAX_COUNTER);
            (f, used, amount.min(MAX_COUNTER - used))
        }),
    ) {
        let sum = u128::from(used) + u128::from(amount);
        prop_assert!(sum <= u128::from(MAX_COUNTER));
        let got = rules::consume(&feature, used, amount);
        match feature.limit.map(u128::from) {
            None => prop_assert!(got.is_ok()),
            Some(limit) if sum <= limit => prop_assert!(got.is_ok(), "{:?}", got),
            Some(_) if !feature.overage => {
                prop_assert!(matches!(got, Err(ConsumeRefused::Limit { .. })), "{:?}", got)
            }
            Some(limit) => match feature.max_overage.map(u128::from) {
                Some(cap) if sum > limit + cap => prop_assert!(
                    matches!(got, Err(ConsumeRefused::OverageCap { .. })),
                    "{:?}",
                    got
                ),
                _ => prop_assert!(got.is_ok(), "{:?}", got),
            },
        }
    }

    /// Consuming a sequence of amounts: what is in force is the sum of the accepted ones
    /// (never wrapped), it never passes the feature's ceiling or `MAX_COUNTER`, and each
    /// accepted step reports the increment it was asked for.
    #[test]
    fn a_sequence_of_consumptions_sums_the_accepted_ones_and_stays_under_the_ceiling(
        feature in any_feature(),
        amounts in prop::collection::vec(edge_u64(), 0..32),
    ) {
        let mut used = 0u64;
        let mut accepted: u128 = 0;
        for amount in amounts {
            if let Ok(c) = rules::consume(&feature, used, amount) {
                prop_assert_eq!(c.total - used, amount);
                accepted += u128::from(amount);
                used = c.total;
            }
            prop_assert_eq!(u128::from(used), accepted);
            prop_assert!(used <= MAX_COUNTER);
            if let Some(ceiling) = feature.ceiling() {
                prop_assert!(used <= ceiling, "{} past the ceiling {}", used, ceiling);
            }
        }
    }
}

// ----- the clock: high-water mark and tolerance --------------------------------------

proptest! {
    /// A clock earlier than the mark by more than the tolerance is always turned back
    /// (with what it saw); within the tolerance, or at or after the mark, it never is;
    /// without a mark nothing is. For any instant chrono holds and any tolerance: no
    /// panic at the edges.
    #[test]
    fn the_clock_is_turned_back_exactly_when_it_is_behind_the_mark_by_more_than_the_tolerance(
        now in any_time(),
        mark in any_time(),
        tolerance in any_tolerance(),
    ) {
        let got = rules::clock(now, Some(mark), tolerance);
        let behind = i128::from(mark.timestamp()) - i128::from(now.timestamp());
        // The tolerance in force is at most 100 years (docs/format.md).
        let allowed = i128::from(tolerance).min(100 * 365 * 86_400);
        if behind > allowed {
            prop_assert_eq!(
                got,
                Some(Violation::ClockTurnedBack { now, last_seen: mark, tolerance_secs: tolerance })
            );
        } else {
            prop_assert_eq!(got, None);
        }
        prop_assert_eq!(rules::clock(now, None, tolerance), None);
    }

    /// Within the tolerance behind the mark is never turned back, whatever the mark.
    #[test]
    fn a_clock_within_the_tolerance_is_never_turned_back(
        mark in plain_time(),
        tolerance in 0u64..=30 * 86_400,
        back in 0u64..=30 * 86_400,
    ) {
        let back = back.min(tolerance);
        let now = mark - Duration::seconds(i64::try_from(back).unwrap());
        prop_assert_eq!(rules::clock(now, Some(mark), tolerance), None);
        let one_more = now - Duration::seconds(1);
        if back == tolerance {
            prop_assert!(rules::clock(one_more, Some(mark), tolerance).is_some());
        }
    }

    /// Over any sequence of observed times the mark never moves back, is at least every
    /// time seen, and ends at the latest of them; a clock that only goes forward is never
    /// turned back by it.
    #[test]
    fn the_mark_never_moves_back_over_any_sequence_of_observed_times(
        times in prop::collection::vec(any_time(), 1..40),
        tolerance in any_tolerance(),
    ) {
        let mut mark: Option<DateTime<Utc>> = None;
        for t in &times {
            let next = rules::raise_mark(mark, *t);
            if let Some(m) = mark {
                prop_assert!(next >= m, "the mark moved back from {} to {}", m, next);
            }
            prop_assert!(next >= *t);
            mark = Some(next);
        }
        prop_assert_eq!(mark, times.iter().copied().max());
        let mut sorted = times.clone();
        sorted.sort();
        let mut mark = None;
        for t in sorted {
            prop_assert_eq!(rules::clock(t, mark, tolerance), None);
            mark = Some(rules::raise_mark(mark, t));
        }
    }

    /// A file is refused as issued ahead exactly when installing it (raising the mark to
    /// its issue time) would make this clock count as turned back: never a file that
    /// installs and then breaks the clock, never a refusal of one that would not.
    #[test]
    fn a_file_is_issued_ahead_exactly_when_installing_it_would_turn_the_clock_back(
        now in any_time(),
        issued in any_time(),
        tolerance in any_tolerance(),
    ) {
        let ahead = rules::issued_ahead(now, issued, tolerance);
        let raised = rules::raise_mark(Some(now), issued);
        prop_assert_eq!(ahead.is_err(), rules::clock(now, Some(raised), tolerance).is_some());
        if let Err(IssuedAhead { now: n, issued: i, tolerance_secs }) = ahead {
            prop_assert_eq!((n, i, tolerance_secs), (now, issued, tolerance));
            prop_assert!(issued > now);
        }
    }

    /// Validity in time: expired exactly from the expiry on (no tolerance), offline-expired
    /// exactly from the offline expiry on, not yet valid only more than the tolerance
    /// before not-before. For any instants and tolerances: no panic.
    #[test]
    fn validity_is_exact_at_the_expiry_and_tolerant_only_before_not_before(
        now in any_time(),
        not_before in any_time(),
        expires in prop::option::of(any_time()),
        offline_expiry in prop::option::of(any_time()),
        tolerance in any_tolerance(),
    ) {
        let window = Window { not_before, expires, offline_expiry, clock_tolerance: tolerance };
        let got = rules::validity(window, now);
        let early = i128::from(not_before.timestamp()) - i128::from(now.timestamp());
        let allowed = i128::from(tolerance).min(100 * 365 * 86_400);
        prop_assert_eq!(
            got.contains(&Violation::NotYetValid { from: not_before }),
            early > allowed
        );
        prop_assert_eq!(
            got.iter().any(|v| matches!(v, Violation::Expired { .. })),
            expires.is_some_and(|e| now >= e)
        );
        prop_assert_eq!(
            got.iter().any(|v| matches!(v, Violation::OfflineExpired { .. })),
            offline_expiry.is_some_and(|e| now >= e)
        );
    }
}

// ----- the device journal ------------------------------------------------------------

proptest! {
    /// The next journal entry follows the last one by exactly one (never wrapping at the
    /// top of the range), names the last file as `prev`, and carries the newest
    /// `MAX_TRAIL` hashes of the trail, in order.
    #[test]
    fn the_next_journal_entry_follows_the_last_by_one_and_keeps_the_newest_trail(
        last_seq in edge_u64(),
        last in any::<u64>(),
        trail in prop::collection::vec(any::<u64>(), 0..80),
    ) {
        let trail: Vec<Bytes32> = trail.into_iter().map(hash).collect();
        let head = rules::next_journal(last_seq, hash(last), &trail);
        prop_assert!(head.seq > last_seq || last_seq == u64::MAX);
        if last_seq < u64::MAX {
            prop_assert_eq!(head.seq, last_seq + 1);
        }
        prop_assert_eq!(head.prev, hash(last));
        prop_assert_eq!(&head.trail[..], &trail[..trail.len().min(MAX_TRAIL)]);
    }

    /// A device writing files one after another: each file's trail holds the hashes of
    /// the files before its `prev`, newest first, as many as `MAX_TRAIL` (or as there are).
    #[test]
    fn a_chain_of_files_carries_the_hashes_of_the_files_before_it(
        files in 1usize..80,
    ) {
        // File 0 is the activation request; its hash starts the journal.
        let mut seq = 0u64;
        let mut head = hash(0);
        let mut trail: Vec<Bytes32> = Vec::new();
        for n in 1..=files as u64 {
            let entry = rules::next_journal(seq, head, &trail);
            prop_assert_eq!(entry.seq, n);
            prop_assert_eq!(entry.prev, hash(n - 1));
            let expected: Vec<Bytes32> =
                (0..n.saturating_sub(1)).rev().take(MAX_TRAIL).map(hash).collect();
            prop_assert_eq!(&entry.trail, &expected);
            trail = rules::advance_trail(&trail, head);
            prop_assert!(trail.len() <= MAX_TRAIL);
            seq = entry.seq;
            head = hash(n);
        }
    }
}
