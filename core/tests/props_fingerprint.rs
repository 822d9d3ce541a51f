//! Property tests of fingerprint matching (`lic_core::fingerprint::match_fingerprint`):
//! identical machines always match; changing (or losing) up to `max_changed` of the
//! components not required still matches, one more never does; a required component
//! that changes never matches; the order components are read in is irrelevant; components
//! the license does not name are ignored. `PROPTEST_CASES` raises the number of cases.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use std::collections::BTreeSet;

use lic_core::fingerprint::{FingerprintKey, RawComponents, hash_components, match_fingerprint};
use lic_core::format::MatchRule;
use proptest::prelude::*;

const PRODUCT: &str = "photo-pro";

/// A machine: 1 to 8 distinctly named components with any values, the names drawn from
/// the real ones and a few others.
fn machine() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop::sample::select(vec![
        "machine-id",
        "hostname",
        "cpu",
        "memory",
        "mac",
        "declared-id",
        "serial",
        "disk",
        "board",
        "bios",
    ]);
    prop::collection::btree_map(names, ".{0,24}", 1..8).prop_map(|m| {
        m.into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect::<Vec<_>>()
    })
}

fn raw(pairs: &[(String, String)]) -> RawComponents {
    pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// A machine, a rule over it (some components required, `max_changed` any, at the edges
/// too), and the device's fingerprint key.
fn setup() -> impl Strategy<Value = (Vec<(String, String)>, MatchRule, [u8; 32])> {
    machine().prop_flat_map(|m| {
        let n = m.len();
        (
            Just(m),
            prop::collection::vec(any::<bool>(), n),
            prop_oneof![0u32..8, Just(u32::MAX)],
            any::<[u8; 32]>(),
        )
            .prop_map(|(m, required, max_changed, key)| {
                let rule = MatchRule {
                    required: m
                        .iter()
                        .zip(&required)
                        .filter(|(_, r)| **r)
                        .map(|((name, _), _)| name.clone())
                        .collect(),
                    max_changed,
                };
                (m, rule, key)
            })
    })
}

/// The value a component changes to: never its old one.
fn changed(value: &str) -> String {
    format!("{value}~changed")
}

proptest! {
    /// The machine the license was issued to matches, under any rule that requires only
    /// components it has, whatever `max_changed` is (0 included).
    #[test]
    fn identical_components_always_match((m, rule, key) in setup()) {
        let key = FingerprintKey::from_bytes(key);
        let fp = hash_components(&key, PRODUCT, &raw(&m));
        let report = match_fingerprint(&fp, &fp, &rule);
        prop_assert!(report.ok, "{}", report);
        prop_assert_eq!(report.matched.len(), m.len());
        prop_assert!(report.differing.is_empty() && report.missing.is_empty());
        prop_assert!(report.required_failed.is_empty());
    }

    /// Changing or removing `k` of the components not required: it matches if and only if
    /// `k <= max_changed`, and the report names exactly the components changed.
    #[test]
    fn changing_up_to_max_changed_of_the_others_matches_and_one_more_never(
        (m, rule, key) in setup(),
        pick in any::<prop::sample::Index>(),
        how_many in 0usize..8,
        remove in prop::collection::vec(any::<bool>(), 8),
    ) {
        let key = FingerprintKey::from_bytes(key);
        let licensed = hash_components(&key, PRODUCT, &raw(&m));
        let others: Vec<&String> = m
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !rule.required.contains(n))
            .collect();
        let k = how_many.min(others.len());
        // `k` distinct components not required, from a random starting point.
        let start = if others.is_empty() { 0 } else { pick.index(others.len()) };
        let touched: BTreeSet<String> = (0..k)
            .map(|i| others[(start + i) % others.len()].clone())
            .collect();
        let mut now = Vec::new();
        let mut differing = BTreeSet::new();
        let mut missing = BTreeSet::new();
        for (i, (name, value)) in m.iter().enumerate() {
            if !touched.contains(name) {
                now.push((name.clone(), value.clone()));
            } else if remove[i % remove.len()] {
                missing.insert(name.clone());
            } else {
                differing.insert(name.clone());
                now.push((name.clone(), changed(value)));
            }
        }
        let current = hash_components(&key, PRODUCT, &raw(&now));
        let report = match_fingerprint(&licensed, &current, &rule);
        prop_assert_eq!(report.ok, k as u64 <= u64::from(rule.max_changed), "{}", report);
        prop_assert_eq!(report.changed() as usize, k);
        prop_assert_eq!(report.differing.iter().cloned().collect::<BTreeSet<_>>(), differing);
        prop_assert_eq!(report.missing.iter().cloned().collect::<BTreeSet<_>>(), missing);
        prop_assert!(report.required_failed.is_empty());
    }

    /// A required component that changes, disappears, or that the license never had, is
    /// never a match, however many changes the rule allows.
    #[test]
    fn a_required_component_that_differs_never_matches(
        (m, rule, key) in setup(),
        pick in any::<prop::sample::Index>(),
        how in 0u8..3,
    ) {
        let key = FingerprintKey::from_bytes(key);
        let licensed = hash_components(&key, PRODUCT, &raw(&m));
        let mut rule = rule;
        rule.max_changed = u32::MAX;
        let target = match how {
            // A component the license does not have, required.
            0 => {
                rule.required.push("not-licensed".into());
                "not-licensed".to_string()
            }
            _ => {
                let (name, _) = &m[pick.index(m.len())];
                if !rule.required.contains(name) {
                    rule.required.push(name.clone());
                }
                name.clone()
            }
        };
        let now: Vec<(String, String)> = m
            .iter()
            .filter(|(n, _)| !(how == 2 && *n == target))
            .map(|(n, v)| if *n == target { (n.clone(), changed(v)) } else { (n.clone(), v.clone()) })
            .collect();
        let current = hash_components(&key, PRODUCT, &raw(&now));
        let report = match_fingerprint(&licensed, &current, &rule);
        prop_assert!(!report.ok, "{}", report);
        prop_assert!(report.required_failed.contains(&target), "{:?}", report.required_failed);
    }

    /// The order the components are read in, and the order (or repetition) of the rule's
    /// required names, change nothing in the report.
    #[test]
    fn the_order_of_components_is_irrelevant(
        (m, rule, key) in setup(),
        shuffled in any::<u64>(),
        change in prop::collection::vec(any::<bool>(), 8),
    ) {
        let key = FingerprintKey::from_bytes(key);
        let licensed = hash_components(&key, PRODUCT, &raw(&m));
        let now: Vec<(String, String)> = m
            .iter()
            .enumerate()
            .map(|(i, (n, v))| (n.clone(), if change[i % 8] { changed(v) } else { v.clone() }))
            .collect();
        let report = match_fingerprint(&licensed, &hash_components(&key, PRODUCT, &raw(&now)), &rule);
        // The same components, read in another order; the rule's names reversed and doubled.
        let mut reordered = now.clone();
        let len = reordered.len();
        reordered.rotate_left((shuffled as usize) % len);
        reordered.reverse();
        let mut required = rule.required.clone();
        required.reverse();
        required.extend(rule.required.clone());
        let rule2 = MatchRule { required, max_changed: rule.max_changed };
        let current2 = hash_components(&key, PRODUCT, &raw(&reordered));
        prop_assert_eq!(match_fingerprint(&licensed, &current2, &rule2), report);
    }

    /// Components present now that the license does not name are ignored: adding any
    /// number of them changes nothing in the verdict.
    #[test]
    fn components_the_license_does_not_name_are_ignored(
        (m, rule, key) in setup(),
        extra in prop::collection::btree_map("x-[a-z]{1,8}", ".{0,12}", 0..5),
        change in prop::collection::vec(any::<bool>(), 8),
    ) {
        let key = FingerprintKey::from_bytes(key);
        let licensed = hash_components(&key, PRODUCT, &raw(&m));
        let now: Vec<(String, String)> = m
            .iter()
            .enumerate()
            .map(|(i, (n, v))| (n.clone(), if change[i % 8] { changed(v) } else { v.clone() }))
            .collect();
        let plain = match_fingerprint(&licensed, &hash_components(&key, PRODUCT, &raw(&now)), &rule);
        let mut more = now.clone();
        more.extend(extra);
        let with_extra =
            match_fingerprint(&licensed, &hash_components(&key, PRODUCT, &raw(&more)), &rule);
        prop_assert_eq!(with_extra, plain);
    }
}
