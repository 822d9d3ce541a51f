//! Property tests of the portal's decisions (`lic_portal::rules`): journal linking (a
//! chain links, skipped files within the trail still link, beyond it exactly a gap, two
//! children of one parent fork, late uploads of named files are late), files after the
//! device closed its account, usage deltas and totals at the edges of the counter range,
//! license-level totals, churn windows (pure, and through the portal on SQLite and
//! PostgreSQL with a manual clock), and the OED a seat keeps. `PROPTEST_CASES` raises the
//! number of cases of the pure properties; `LIC_PROPS_CHURN_CASES` (16 by default) that of
//! the churn scenario through the database.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

mod common;

use std::collections::BTreeMap;

use lic_core::format::{Bytes32, FileKind, JournalHead, MAX_COUNTER, MAX_TRAIL};
use lic_core::rules::{advance_trail, next_journal};
use lic_portal::rules::{self, AfterClose, ChurnRefused, Delta, Link};
use proptest::prelude::*;

// ----- a device's journal, built with the device's own functions ---------------------

/// The hash of file `seq` on branch `branch` (distinct for every pair).
fn file_hash(branch: u8, seq: u64) -> Bytes32 {
    let mut b = [0u8; 32];
    b[0] = branch;
    b[1..9].copy_from_slice(&seq.to_be_bytes());
    b[31] = 0xa5;
    Bytes32(b)
}

/// The journal entries of files `1..=n` a device writes after its activation request
/// (file 0), as `lic_core` writes them; `journal[s]` is the entry of file `s` (entry 0 is
/// the request's). Branch `branch` shares files `0..from` with branch 0 (a store restored
/// or cloned after file `from - 1`), and has hashes of its own from `from` on.
fn chain(n: u64, branch: u8, from: u64) -> (Vec<JournalHead>, Vec<Bytes32>) {
    let hash = |s: u64| file_hash(if s < from { 0 } else { branch }, s);
    let mut journal = vec![JournalHead::first()];
    let mut hashes = vec![hash(0)];
    let mut trail = Vec::new();
    let mut last = hash(0);
    for s in 1..=n {
        let entry = next_journal(s - 1, last, &trail);
        trail = advance_trail(&trail, last);
        last = hash(s);
        journal.push(entry);
        hashes.push(last);
    }
    (journal, hashes)
}

/// The portal's record of an activation's journal: the head's sequence and hash, and the
/// history it named.
struct Head {
    seq: u64,
    hash: Bytes32,
    known: Vec<Bytes32>,
}

impl Head {
    /// The head after the activation request (file 0).
    fn start(hashes: &[Bytes32]) -> Self {
        Head {
            seq: 0,
            hash: hashes[0],
            known: Vec::new(),
        }
    }

    fn link(&self, journal: &JournalHead, hash: &Bytes32) -> Link {
        rules::journal_link(
            self.seq,
            &self.hash,
            &self.known,
            journal,
            hash,
            FileKind::UsageReport,
        )
    }

    /// What the portal keeps when a file advances the head.
    fn advance(&mut self, journal: &JournalHead, hash: Bytes32) {
        self.seq = journal.seq;
        self.hash = hash;
        self.known = rules::known_history(journal);
    }
}

proptest! {
    /// Every file of a chain uploaded in order continues the head: no fork, no gap.
    #[test]
    fn a_chain_uploaded_in_order_always_continues(n in 1u64..100) {
        let (journal, hashes) = chain(n, 0, 0);
        let mut head = Head::start(&hashes);
        for s in 1..=n as usize {
            prop_assert_eq!(head.link(&journal[s], &hashes[s]), Link::Continues, "file {}", s);
            head.advance(&journal[s], hashes[s]);
        }
    }

    /// Uploading any subset of a chain, in order: a file that skips at most `MAX_TRAIL`
    /// files not uploaded continues the head; one that skips more is exactly a gap of the
    /// files skipped. Never a fork.
    #[test]
    fn skipped_files_within_the_trail_continue_and_beyond_it_are_exactly_a_gap(
        n in 1u64..120,
        uploaded in prop::collection::vec(prop_oneof![3 => Just(true), 1 => Just(false)], 120),
        long_skip in prop::option::of((1u64..120, 30u64..60)),
    ) {
        let (journal, hashes) = chain(n, 0, 0);
        let mut head = Head::start(&hashes);
        for s in 1..=n {
            let in_long_skip = long_skip.is_some_and(|(at, len)| s >= at && s < at + len);
            if (!uploaded[s as usize % 120] || in_long_skip) && s < n {
                continue;
            }
            let skipped = s - head.seq - 1;
            let expected = if skipped <= MAX_TRAIL as u64 {
                Link::Continues
            } else {
                Link::Gap { skipped }
            };
            prop_assert_eq!(head.link(&journal[s as usize], &hashes[s as usize]), expected);
            head.advance(&journal[s as usize], hashes[s as usize]);
        }
    }

    /// After the head moved on, an older file it named (its `prev` or its trail) uploaded
    /// late is late — nothing to suspect; an older file beyond what it named, and the
    /// head's own sequence with other bytes, are forks.
    #[test]
    fn an_older_file_the_head_named_is_late_and_any_other_a_fork(
        h in 1u64..100,
        back in 1u64..100,
    ) {
        let (journal, hashes) = chain(h, 0, 0);
        let mut head = Head::start(&hashes);
        head.advance(&journal[h as usize], hashes[h as usize]);
        let s = h.saturating_sub(back);
        if s >= 1 {
            let named = h - s <= MAX_TRAIL as u64 + 1;
            let got = head.link(&journal[s as usize], &hashes[s as usize]);
            if named {
                prop_assert_eq!(got, Link::Late);
            } else {
                prop_assert!(matches!(got, Link::Fork(_)), "{:?}", got);
            }
        }
        let other = file_hash(9, h);
        let got = head.link(&journal[h as usize], &other);
        prop_assert!(matches!(got, Link::Fork(_)), "{:?}", got);
    }

    /// Two children of one parent: once one branch's file is the head, a file of the other
    /// branch at or below the head is a fork, and one above it is a fork while its trail
    /// reaches the head's sequence — beyond that, a gap (it cannot be told).
    #[test]
    fn two_children_of_one_parent_fork(
        h in 1u64..80,
        from in 1u64..80,
        ahead in 0u64..80,
    ) {
        let from = from.min(h); // the branches part at or before the head
        let top = h + ahead;
        let (a, a_hashes) = chain(top, 0, 0);
        let (b, b_hashes) = chain(top, 1, from);
        let mut head = Head::start(&a_hashes);
        head.advance(&a[h as usize], a_hashes[h as usize]);
        for s in from..=top {
            let got = head.link(&b[s as usize], &b_hashes[s as usize]);
            let skipped = s.saturating_sub(h + 1);
            if s > h && skipped > MAX_TRAIL as u64 {
                prop_assert_eq!(got, Link::Gap { skipped });
            } else {
                prop_assert!(matches!(got, Link::Fork(_)), "file {} of the other branch: {:?}", s, got);
            }
        }
    }

    /// A file arriving after the device's own deactivation closed the account is
    /// superseded only if it is older than the deactivation and named by it; anything
    /// written after it, or not in its history, is a restored store.
    #[test]
    fn after_the_account_closed_only_a_named_older_file_is_superseded(
        close in 1u64..100,
        s in 0u64..200,
        other_bytes in any::<bool>(),
    ) {
        let (journal, hashes) = chain(close.max(s), 0, 0);
        let named = rules::known_history(&journal[close as usize]);
        let hash = if other_bytes { file_hash(7, s) } else { hashes[s as usize] };
        let got = rules::after_close(close, &named, s, &hash, FileKind::UsageReport);
        let superseded = s < close && !other_bytes && close - s <= MAX_TRAIL as u64 + 1;
        prop_assert_eq!(matches!(got, AfterClose::Superseded), superseded, "{:?}", got);
    }
}

// ----- usage deltas and totals at the edges of the range ------------------------------

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::from(u32::MAX)),
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

/// Values the portal holds for counters, totals and limits: within `MAX_COUNTER` (files,
/// policies and refreshes beyond it are refused), at its edges too.
fn counted() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(MAX_COUNTER - 1),
        Just(MAX_COUNTER),
        0u64..1000,
        0u64..=MAX_COUNTER,
    ]
}

fn counted_map() -> impl Strategy<Value = BTreeMap<String, u64>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["a", "b", "c", "d"]),
        counted(),
        0..4,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn counters() -> impl Strategy<Value = BTreeMap<String, u64>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["a", "b", "c", "d"]),
        edge_u64(),
        0..4,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    /// A counter's delta is exactly what it grew by, nothing when it stayed, and a counter
    /// that went back is never subtracted — for any two values, no overflow.
    #[test]
    fn a_usage_delta_is_exactly_the_growth_and_never_negative(
        reported in edge_u64(),
        cumulative in edge_u64(),
    ) {
        match rules::usage_delta(reported, cumulative) {
            Delta::Add(d) => {
                prop_assert!(d > 0);
                prop_assert_eq!(u128::from(reported) + u128::from(d), u128::from(cumulative));
            }
            Delta::Same => prop_assert_eq!(reported, cumulative),
            Delta::WentBack => prop_assert!(cumulative < reported),
        }
    }

    /// A license's total takes a delta exactly when the sum stays within `MAX_COUNTER`,
    /// and is then the exact sum; otherwise the refusal says what the sum would have been.
    #[test]
    fn a_total_takes_a_delta_only_within_the_counter_range(
        total in edge_u64(),
        delta in edge_u64(),
    ) {
        let sum = u128::from(total) + u128::from(delta);
        match rules::add_total("f", total, delta) {
            Ok(t) => {
                prop_assert_eq!(u128::from(t), sum);
                prop_assert!(t <= MAX_COUNTER);
            }
            Err(out) => {
                prop_assert!(sum > u128::from(MAX_COUNTER));
                prop_assert_eq!(out.value, sum);
                prop_assert_eq!(out.feature, "f");
            }
        }
    }

    /// The usage of a file: each feature that grew reports its new cumulative and exactly
    /// its growth; the features that went back are exactly those below what was reported;
    /// a counter beyond `MAX_COUNTER`, or a growth that would take the license's total
    /// past it, refuses the file.
    #[test]
    fn a_files_usage_reports_exactly_the_growth_of_each_counter_or_refuses_it(
        counters in counters(),
        reported in counters(),
        totals in counters(),
    ) {
        let growth = |f: &str, c: u64| c.checked_sub(reported.get(f).copied().unwrap_or(0));
        let out_of_range = counters.iter().any(|(f, c)| {
            *c > MAX_COUNTER
                || growth(f, *c).is_some_and(|d| {
                    d > 0
                        && u128::from(totals.get(f).copied().unwrap_or(0)) + u128::from(d)
                            > u128::from(MAX_COUNTER)
                })
        });
        match rules::usage(&counters, &reported, &totals) {
            Ok(usage) => {
                prop_assert!(!out_of_range);
                let grew: Vec<(String, u64, u64)> = counters
                    .iter()
                    .filter_map(|(f, c)| {
                        growth(f, *c).filter(|d| *d > 0).map(|d| (f.clone(), *c, d))
                    })
                    .collect();
                prop_assert_eq!(usage.grows, grew);
                let went_back: Vec<String> = counters
                    .iter()
                    .filter(|(f, c)| growth(f, **c).is_none())
                    .map(|(f, _)| f.clone())
                    .collect();
                prop_assert_eq!(usage.went_back, went_back);
            }
            Err(out) => {
                prop_assert!(out_of_range, "refused {:?}", out);
                prop_assert!(out.value > u128::from(MAX_COUNTER));
            }
        }
    }

    /// A license-level limit is flagged for every file that grows a total beyond it (not
    /// only the first to pass it), never for a total at or within it or one that did not
    /// grow; the total flagged is the exact new total. (Over what the portal holds: limits,
    /// totals and deltas within `MAX_COUNTER`.)
    #[test]
    fn a_license_total_is_flagged_exactly_when_a_growth_takes_it_beyond_its_limit(
        limits in counted_map(),
        before in counted_map(),
        grows in counted_map(),
    ) {
        let deltas: Vec<(String, u64)> = grows.into_iter().collect();
        let flagged = rules::total_passed(&limits, &before, &deltas);
        let expected: Vec<(String, u128)> = deltas
            .iter()
            .filter_map(|(f, d)| {
                let limit = u128::from(*limits.get(f)?);
                let now = u128::from(before.get(f).copied().unwrap_or(0)) + u128::from(*d);
                (*d > 0 && now > limit).then(|| (f.clone(), now))
            })
            .collect();
        let got: Vec<(String, u128)> =
            flagged.iter().map(|o| (o.feature.clone(), u128::from(o.total))).collect();
        prop_assert_eq!(got, expected);
    }
}

// ----- churn windows -----------------------------------------------------------------

proptest! {
    /// The churn policy refuses the next activation exactly when the period already holds
    /// `max` deactivations, and says how many and the oldest.
    #[test]
    fn churn_refuses_exactly_at_max_deactivations_in_the_period(
        max in 0i64..6,
        recent in prop::collection::vec(0i64..1_000_000, 0..10),
    ) {
        let mut recent = recent;
        recent.sort();
        let got = rules::churn(max, &recent);
        if (recent.len() as i64) < max {
            prop_assert_eq!(got, Ok(()));
        } else {
            prop_assert_eq!(
                got,
                Err(ChurnRefused { count: recent.len() as i64, oldest: recent.first().copied() })
            );
        }
    }
}

// ----- the OED a seat keeps ------------------------------------------------------------

proptest! {
    /// A checkout's OED still ahead is never shortened by a lease (the policy's OED on
    /// every lease may lengthen it); without one ahead, the seat keeps the lease's own.
    #[test]
    fn a_lease_never_shortens_a_checkouts_oed(
        checked_out in any::<bool>(),
        current in prop::option::of(any::<i64>()),
        lease_oed in prop::option::of(any::<i64>()),
        now in any::<i64>(),
    ) {
        let (oed, still) = rules::seat_oed(checked_out, current, lease_oed, now);
        let ahead = current.filter(|c| checked_out && *c > now);
        prop_assert_eq!(still, ahead.is_some());
        match ahead {
            Some(c) => {
                let oed = oed.unwrap();
                prop_assert!(oed >= c);
                prop_assert!(lease_oed.is_none_or(|l| oed >= l));
                prop_assert!(oed == c || Some(oed) == lease_oed);
            }
            None => prop_assert_eq!(oed, lease_oed),
        }
    }
}

// ----- churn windows through the portal ------------------------------------------------

/// A churn scenario: the policy's `max` deactivations per `days`, and the waits (seconds)
/// before each activation attempt.
fn churn_scenario() -> impl Strategy<Value = (i64, i64, Vec<i64>)> {
    (1i64..=3, 1i64..=3).prop_flat_map(|(max, days)| {
        (
            Just(max),
            Just(days),
            prop::collection::vec(
                prop_oneof![0i64..=days * 86_400, Just(days * 86_400), Just(0)],
                1..8,
            ),
        )
    })
}

/// Through the portal, on SQLite and PostgreSQL, with a manual clock: a license takes
/// another activation exactly when fewer than `max` of its deactivations happened in the
/// period before now (a deactivation exactly one period old is out of it); so no window of
/// one period ever holds more than `max` deactivations. A refusal names the time the
/// next activation is possible from, and at that time it is.
#[test]
fn churn_windows_through_the_portal_hold_at_most_max_deactivations_per_period() {
    use lic_core::clock::{Clock as _, ManualClock};
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let cases: u32 = std::env::var("LIC_PROPS_CHURN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    for db in rt.block_on(common::backends()) {
        let clock = ManualClock::new(start);
        let portal = rt.block_on(common::portal(&db)).with_clock(clock.clone());
        let serial = std::sync::atomic::AtomicU64::new(0);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let case = |(max, days, waits): (i64, i64, Vec<i64>)| {
            rt.block_on(async {
                let n = serial.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut policy = common::policy(1);
                policy.name = format!("churn-{n}");
                policy.max_deactivations = Some(max);
                policy.deactivation_period_days = Some(days);
                let (_, key) = common::license(&portal, policy).await;
                let period = days * 86_400;
                clock.advance(86_400);
                let mut deactivated: Vec<i64> = Vec::new();
                // Activate and at once deactivate (the seat frees; churn counts it).
                let attempt = |deactivated: &mut Vec<i64>| {
                    let now = clock.now().timestamp();
                    let in_period =
                        deactivated.iter().filter(|d| **d > now - period).count() as i64;
                    let dir = tempfile::tempdir().unwrap();
                    let request = common::request(dir.path(), &format!("m{n}"), &key);
                    let portal = &portal;
                    async move {
                        let got = portal.apply(&request, &lic_portal::Actor::cli()).await;
                        (now, in_period, got)
                    }
                };
                for wait in waits {
                    clock.advance(wait);
                    let (now, in_period, got) = attempt(&mut deactivated).await;
                    match got {
                        Ok(applied) => {
                            prop_assert!(
                                in_period < max,
                                "{}: activated with {} deactivations in the period (max {})",
                                db.name,
                                in_period,
                                max
                            );
                            portal
                                .deactivate(
                                    &applied.activation.unwrap(),
                                    "churn",
                                    &lic_portal::Actor::cli(),
                                )
                                .await
                                .unwrap();
                            deactivated.push(now);
                        }
                        Err(lic_portal::PortalError::TooManyDeactivations {
                            from, count, ..
                        }) => {
                            prop_assert!(
                                in_period >= max,
                                "{}: refused with {} deactivations in the period (max {})",
                                db.name,
                                in_period,
                                max
                            );
                            prop_assert_eq!(count, in_period);
                            // The promise: possible from `from`.
                            let from = chrono::DateTime::parse_from_rfc3339(&from)
                                .map_err(|e| TestCaseError::fail(e.to_string()))?
                                .timestamp();
                            prop_assert!(from > now);
                            clock.advance(from - now);
                            let (now, in_period, got) = attempt(&mut deactivated).await;
                            prop_assert!(in_period < max);
                            let applied = got.map_err(|e| {
                                TestCaseError::fail(format!(
                                    "{}: refused at {now}, the time the refusal promised: {e}",
                                    db.name
                                ))
                            })?;
                            portal
                                .deactivate(
                                    &applied.activation.unwrap(),
                                    "churn",
                                    &lic_portal::Actor::cli(),
                                )
                                .await
                                .unwrap();
                            deactivated.push(now);
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("{}: {e}", db.name))),
                    }
                    // No window of one period holds more than `max` deactivations.
                    for d in &deactivated {
                        let window = deactivated.iter().filter(|e| **e <= *d && **e > d - period);
                        prop_assert!(window.count() as i64 <= max);
                    }
                }
                Ok(())
            })
        };
        // Regressions first: one deactivation, a one-day period, refused, then tried again
        // at the time the refusal named (it was refused at that very second).
        for scenario in [(1, 1, vec![0, 0])] {
            if let Err(e) = case(scenario.clone()) {
                panic!("{}: {scenario:?}: {e}", db.name);
            }
        }
        if let Err(e) = runner.run(&churn_scenario(), case) {
            panic!("{}: {e}", db.name);
        }
    }
}
