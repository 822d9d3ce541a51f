//! The device fingerprint: a few identifiers of the machine ("components"), read locally,
//! keyed by a secret of the device key and hashed before they go into any file.
//!
//! - `SystemSource` (the `device` feature) reads the real machine, cheaply and directly (no program is spawned,
//!   no process list is read); [`StaticSource`] is a fixed set for tests and for
//!   applications that compute their own components. Both implement [`FingerprintSource`].
//! - [`hash_components`] turns the raw values into a [`Fingerprint`]: one keyed hash
//!   (HMAC-SHA-256) per component, keyed by a secret derived from the device key
//!   ([`FingerprintKey`]). The raw values ([`RawComponents`]) never leave the machine, and
//!   the hashes cannot be inverted by guessing without that secret — not even for
//!   components with few possible values (memory size, CPU model, MAC addresses).
//! - [`match_fingerprint`] compares the licensed fingerprint with the current one under a
//!   [`MatchRule`] and says which components differ.
//!
//! ```
//! use lic_core::fingerprint::{self, component, FingerprintKey, RawComponents, FingerprintSource, StaticSource};
//! use lic_core::format::MatchRule;
//! use lic_core::keys::SecretKey;
//!
//! let key = FingerprintKey::of(&SecretKey::generate());
//! let mut raw = RawComponents::new();
//! raw.insert(component::MACHINE_ID, "3d1219c7c4c5404aaa1f6d2a48adfda4");
//! raw.insert(component::HOSTNAME, "build-01");
//! let licensed = fingerprint::hash_components(&key, "photo-pro", &StaticSource(raw).collect());
//!
//! let mut now = RawComponents::new();
//! now.insert(component::MACHINE_ID, "3d1219c7c4c5404aaa1f6d2a48adfda4");
//! now.insert(component::HOSTNAME, "renamed");
//! let current = fingerprint::hash_components(&key, "photo-pro", &now);
//!
//! let rule = MatchRule { required: vec![component::MACHINE_ID.into()], max_changed: 1 };
//! let report = fingerprint::match_fingerprint(&licensed, &current, &rule);
//! assert!(report.ok);
//! assert_eq!(report.differing, ["hostname"]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

#[cfg(feature = "device")]
mod system;
#[cfg(feature = "device")]
pub use system::SystemSource;

use crate::format::{Bytes32, Fingerprint, MatchRule};
use crate::keys::SecretKey;

/// Component names: the keys of a [`Fingerprint`] in files.
pub mod component {
    /// The operating system's machine id: `/etc/machine-id` on Linux, `IOPlatformUUID`
    /// on macOS, `MachineGuid` on Windows.
    pub const MACHINE_ID: &str = "machine-id";
    /// The host name, lowercase.
    pub const HOSTNAME: &str = "hostname";
    /// The CPU brand and the number of logical CPUs.
    pub const CPU: &str = "cpu";
    /// Total RAM, rounded up to whole GiB, so that small reporting differences do not count.
    pub const MEMORY: &str = "memory";
    /// The MAC addresses of the physical network interfaces: lowercase, sorted,
    /// deduplicated, joined with `,`.
    pub const MAC: &str = "mac";
    /// An id declared by the operator (`LIC_DEVICE_ID`), for containers and cloned VMs
    /// whose other components are not distinctive.
    pub const DECLARED_ID: &str = "declared-id";

    /// Every component `SystemSource` may collect.
    pub const ALL: &[&str] = &[MACHINE_ID, HOSTNAME, CPU, MEMORY, MAC, DECLARED_ID];
}

/// The environment variable `SystemSource::from_env` reads the declared id from.
pub const DECLARED_ID_ENV: &str = "LIC_DEVICE_ID";

/// The domain separator at the start of every component hash.
const HASH_DOMAIN: &[u8] = b"lic fingerprint v2";

/// The secret that keys a device's component hashes: derived from the device key
/// (`SHA-256("lic derive v1" || 00 || "fingerprint" || 00 || seed)`, the seed being the
/// 32-byte Ed25519 private key), so it stays on the device, is the same for every run
/// of every program that uses the store, and changes when the device key does. Zeroized
/// on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct FingerprintKey(Zeroizing<[u8; 32]>);

impl FingerprintKey {
    /// The fingerprint key of the device whose key is `device`.
    pub fn of(device: &SecretKey) -> Self {
        FingerprintKey(device.derive("fingerprint"))
    }

    /// A key from its 32 bytes (tests, and applications that keep their own).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        FingerprintKey(Zeroizing::new(bytes))
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

/// Raw component values by name. They never leave the machine: only their keyed hashes
/// ([`hash_components`]) go into files, and `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RawComponents(BTreeMap<String, String>);

impl RawComponents {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets component `name` to `value`, replacing any earlier value.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    /// The raw value of component `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The names of the components present, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// How many components are present.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no component is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RawComponents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the values are identifiers of the machine.
        f.debug_tuple("RawComponents")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for RawComponents {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

/// Where the raw components come from. Object safe; `Send + Sync`, so that a
/// `Box<dyn FingerprintSource>` can be shared between threads.
pub trait FingerprintSource: Send + Sync {
    /// Reads the components. A component that cannot be read is absent: this never fails.
    fn collect(&self) -> RawComponents;
}

impl<T: FingerprintSource + ?Sized> FingerprintSource for &T {
    fn collect(&self) -> RawComponents {
        (**self).collect()
    }
}

impl<T: FingerprintSource + ?Sized> FingerprintSource for Box<T> {
    fn collect(&self) -> RawComponents {
        (**self).collect()
    }
}

impl<T: FingerprintSource + ?Sized> FingerprintSource for Arc<T> {
    fn collect(&self) -> RawComponents {
        (**self).collect()
    }
}

/// A fixed set of components, for tests and for applications that compute their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticSource(pub RawComponents);

impl FingerprintSource for StaticSource {
    fn collect(&self) -> RawComponents {
        self.0.clone()
    }
}

/// Hashes each component with the device's fingerprint key:
/// `HMAC-SHA-256(key, "lic fingerprint v2" || 0x00 || product || 0x00 || name || 0x00 || value)`.
///
/// The same machine gives unrelated hashes for different products and for different
/// device keys, and without the key a hash reveals nothing of its value, however few
/// values the component can take.
pub fn hash_components(key: &FingerprintKey, product: &str, raw: &RawComponents) -> Fingerprint {
    raw.0
        .iter()
        .map(|(name, value)| (name.clone(), component_hash(key, product, name, value)))
        .collect()
}

fn component_hash(key: &FingerprintKey, product: &str, name: &str, value: &str) -> Bytes32 {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key.0.as_slice())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(HASH_DOMAIN);
    mac.update(&[0]);
    mac.update(product.as_bytes());
    mac.update(&[0]);
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    Bytes32(mac.finalize().into_bytes().into())
}

/// The outcome of [`match_fingerprint`]. Every list is sorted by component name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchReport {
    /// Licensed components present now with the same hash.
    pub matched: Vec<String>,
    /// Licensed components present now with a different hash.
    pub differing: Vec<String>,
    /// Licensed components absent now.
    pub missing: Vec<String>,
    /// Components the rule requires that differ, are absent now or are not licensed.
    pub required_failed: Vec<String>,
    /// How many of the components not required may differ or be missing (the rule's
    /// `max_changed`).
    pub changed_allowed: u32,
    /// The verdict: every required component matches, and at most `changed_allowed` of
    /// the others differ or are missing.
    pub ok: bool,
}

impl MatchReport {
    /// How many licensed components that are not required differ or are missing: the
    /// number compared with [`changed_allowed`](Self::changed_allowed).
    pub fn changed(&self) -> u32 {
        let changed = self
            .differing
            .iter()
            .chain(&self.missing)
            .filter(|name| !self.required_failed.contains(name))
            .count();
        u32::try_from(changed).unwrap_or(u32::MAX)
    }
}

impl fmt::Display for MatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok {
            return write!(
                f,
                "the fingerprint matches ({} of {} changes allowed)",
                self.changed(),
                self.changed_allowed
            );
        }
        let mut parts = Vec::new();
        if !self.required_failed.is_empty() {
            parts.push(format!(
                "required component(s) do not match: {}",
                self.required_failed.join(", ")
            ));
        }
        if self.changed() > self.changed_allowed {
            let changed: Vec<&str> = self
                .differing
                .iter()
                .chain(&self.missing)
                .filter(|name| !self.required_failed.contains(name))
                .map(String::as_str)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            parts.push(format!(
                "{} component(s) changed, at most {} allowed: {}",
                changed.len(),
                self.changed_allowed,
                changed.join(", ")
            ));
        }
        write!(f, "the fingerprint does not match: {}", parts.join("; "))
    }
}

/// Compares the licensed fingerprint with the current one under `rule`.
///
/// Every component in `rule.required` must be present in both and equal. Among the
/// licensed components not required, at most `rule.max_changed` may differ or be missing.
/// Components present now but not licensed are ignored.
pub fn match_fingerprint(
    licensed: &Fingerprint,
    current: &Fingerprint,
    rule: &MatchRule,
) -> MatchReport {
    let required: BTreeSet<&str> = rule.required.iter().map(String::as_str).collect();
    let mut report = MatchReport {
        matched: Vec::new(),
        differing: Vec::new(),
        missing: Vec::new(),
        required_failed: Vec::new(),
        changed_allowed: rule.max_changed,
        ok: false,
    };
    let mut changed: u64 = 0;
    // BTreeMap iteration is sorted by name, so the lists are too.
    for (name, hash) in licensed {
        let is_required = required.contains(name.as_str());
        match current.get(name) {
            Some(now) if now == hash => report.matched.push(name.clone()),
            now => {
                if now.is_some() {
                    report.differing.push(name.clone());
                } else {
                    report.missing.push(name.clone());
                }
                if !is_required {
                    changed += 1;
                }
            }
        }
    }
    report.required_failed = required
        .iter()
        .filter(|name| match (licensed.get(**name), current.get(**name)) {
            (Some(l), Some(c)) => l != c,
            _ => true,
        })
        .map(|name| (*name).to_owned())
        .collect();
    report.ok = report.required_failed.is_empty() && changed <= u64::from(rule.max_changed);
    report
}

/// Components for the tests of this module and of `system`.
#[cfg(test)]
pub(crate) mod samples {
    use super::{RawComponents, component};

    pub fn raw(pairs: &[(&str, &str)]) -> RawComponents {
        pairs.iter().copied().collect()
    }

    pub fn sample() -> RawComponents {
        raw(&[
            (component::MACHINE_ID, "3d1219c7c4c5404aaa1f6d2a48adfda4"),
            (component::HOSTNAME, "build-host-7"),
            (component::CPU, "AMD EPYC; 2 logical"),
            (component::MEMORY, "24 GiB"),
            (component::MAC, "02:fc:00:00:00:01,3c:22:fb:11:22:33"),
            (component::DECLARED_ID, "customer-vm-0042"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{raw, sample};
    use super::*;

    // ---- hashing ----

    fn hash_components(product: &str, raw: &RawComponents) -> Fingerprint {
        super::hash_components(&FingerprintKey::from_bytes([7; 32]), product, raw)
    }

    #[test]
    fn hash_follows_the_documented_construction() {
        let fp = hash_components("photo-pro", &raw(&[("machine-id", "abc")]));
        // python3: hmac.new(bytes([7]*32), b'lic fingerprint v2\0photo-pro\0machine-id\0abc',
        //                   hashlib.sha256).hexdigest()
        assert_eq!(
            fp["machine-id"].to_string(),
            "44cd281507669d3b5896742f9528fea8abbf3a26bafd94af36657f9d1bba5fd7"
        );
        // The key comes from the device key as documented: SHA-256 over
        // "lic derive v1\0fingerprint\0" and the 32-byte seed.
        let device = FingerprintKey::of(&SecretKey::from_seed(&[3; 32]));
        let fp = super::hash_components(&device, "photo-pro", &raw(&[("machine-id", "abc")]));
        assert_eq!(
            fp["machine-id"].to_string(),
            "6dc58a357cee4b94436b9c7d14d91728493339ecfadc94efab064e4d94718003"
        );
    }

    #[test]
    fn hashing_is_keyed_by_the_device() {
        let a = hash_components("photo-pro", &sample());
        let other = FingerprintKey::of(&SecretKey::from_seed(&[4; 32]));
        let b = super::hash_components(&other, "photo-pro", &sample());
        for name in a.keys() {
            assert_ne!(
                a[name], b[name],
                "{name} hashes the same under two device keys"
            );
        }
        // Guessing a low-entropy value takes the key: every memory size from 1 to 4096
        // GiB hashed with another key never gives the device's hash.
        let target = a[component::MEMORY];
        assert!((1..=4096).all(|gib| {
            let guess = raw(&[(component::MEMORY, &format!("{gib} GiB"))]);
            super::hash_components(&other, "photo-pro", &guess)[component::MEMORY] != target
        }));
        assert!(!format!("{other:?}").contains("4, 4"));
    }

    #[test]
    fn hashing_is_deterministic() {
        let a = hash_components("photo-pro", &sample());
        let b = hash_components("photo-pro", &sample());
        assert_eq!(a, b);
        assert_eq!(a.len(), 6);
        assert!(a.keys().map(String::as_str).eq(sample().names()));
    }

    #[test]
    fn hashing_is_salted_by_product() {
        let a = hash_components("photo-pro", &sample());
        let b = hash_components("video-pro", &sample());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for name in a.keys() {
            assert_ne!(a[name], b[name], "{name} hashes the same for two products");
        }
    }

    #[test]
    fn same_value_under_other_names_hashes_differently() {
        let fp = hash_components("p", &raw(&[("a", "same"), ("b", "same")]));
        assert_ne!(fp["a"], fp["b"]);
    }

    #[test]
    fn raw_values_appear_neither_in_hashes_nor_in_debug() {
        let raw = sample();
        let fp = hash_components("photo-pro", &raw);
        let fp_text = format!("{fp:?} {}", serde_json::to_string(&fp).expect("json"));
        let debug = format!("{raw:?} {:?}", StaticSource(raw.clone()));
        for name in raw.names() {
            let value = raw.get(name).expect("present");
            assert!(!fp_text.contains(value), "{name} value in fingerprint");
            assert!(!debug.contains(value), "{name} value in Debug: {debug}");
            assert!(debug.contains(name), "Debug should name {name}: {debug}");
        }
        #[cfg(feature = "device")]
        {
            let source = SystemSource::new(Some("customer-vm-0042".into()));
            assert!(!format!("{source:?}").contains("customer-vm-0042"));
        }
    }

    #[test]
    fn raw_components_accessors() {
        let mut raw = RawComponents::new();
        assert!(raw.is_empty());
        raw.insert("b", "2");
        raw.insert("a", "1");
        raw.insert("b", "3");
        assert_eq!(raw.len(), 2);
        assert_eq!(raw.get("b"), Some("3"));
        assert_eq!(raw.get("c"), None);
        assert_eq!(raw.names().collect::<Vec<_>>(), ["a", "b"]);
    }

    // ---- matching ----

    fn rule(required: &[&str], max_changed: u32) -> MatchRule {
        MatchRule {
            required: required.iter().map(|s| s.to_string()).collect(),
            max_changed,
        }
    }

    /// The licensed sample, and the current one with `changes` applied (a value, or
    /// `None` to remove the component).
    fn licensed_and_current(changes: &[(&str, Option<&str>)]) -> (Fingerprint, Fingerprint) {
        let licensed = hash_components("photo-pro", &sample());
        let mut now = sample();
        for (name, value) in changes {
            match value {
                Some(v) => now.insert(name, *v),
                None => {
                    now.0.remove(*name);
                }
            }
        }
        (licensed, hash_components("photo-pro", &now))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_equal_matches() {
        let (licensed, current) = licensed_and_current(&[]);
        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 0));
        assert!(report.ok);
        assert_eq!(report.matched, licensed.keys().cloned().collect::<Vec<_>>());
        assert!(report.differing.is_empty() && report.missing.is_empty());
        assert!(report.required_failed.is_empty());
        assert_eq!(report.changed(), 0);
    }

    #[test]
    fn a_differing_required_component_fails() {
        let (licensed, current) = licensed_and_current(&[("machine-id", Some("other"))]);
        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 5));
        assert!(!report.ok);
        assert_eq!(report.required_failed, names(&["machine-id"]));
        assert_eq!(report.differing, names(&["machine-id"]));
        // The required component does not count against max_changed.
        assert_eq!(report.changed(), 0);
        assert!(report.to_string().contains("machine-id"));
    }

    #[test]
    fn a_missing_required_component_fails() {
        let (licensed, current) = licensed_and_current(&[("machine-id", None)]);
        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 5));
        assert!(!report.ok);
        assert_eq!(report.required_failed, names(&["machine-id"]));
        assert_eq!(report.missing, names(&["machine-id"]));
    }

    #[test]
    fn a_required_component_the_license_lacks_fails() {
        let (licensed, current) = licensed_and_current(&[]);
        let report = match_fingerprint(&licensed, &current, &rule(&["serial"], 5));
        assert!(!report.ok);
        assert_eq!(report.required_failed, names(&["serial"]));
    }

    #[test]
    fn two_of_four_others_changed_with_max_two_is_ok() {
        // Required: machine-id and declared-id; the four others: cpu, hostname, mac, memory.
        let (licensed, current) =
            licensed_and_current(&[("hostname", Some("renamed")), ("memory", Some("32 GiB"))]);
        let report = match_fingerprint(
            &licensed,
            &current,
            &rule(&["machine-id", "declared-id"], 2),
        );
        assert!(report.ok, "{report}");
        assert_eq!(report.differing, names(&["hostname", "memory"]));
        assert_eq!(
            report.matched,
            names(&["cpu", "declared-id", "mac", "machine-id"])
        );
        assert_eq!(report.changed(), 2);
        assert_eq!(report.changed_allowed, 2);
    }

    #[test]
    fn three_of_four_others_changed_with_max_two_fails() {
        let (licensed, current) = licensed_and_current(&[
            ("hostname", Some("renamed")),
            ("memory", Some("32 GiB")),
            ("cpu", Some("other; 8 logical")),
        ]);
        let report = match_fingerprint(
            &licensed,
            &current,
            &rule(&["machine-id", "declared-id"], 2),
        );
        assert!(!report.ok);
        assert!(report.required_failed.is_empty());
        assert_eq!(report.differing, names(&["cpu", "hostname", "memory"]));
        assert_eq!(report.changed(), 3);
        let text = report.to_string();
        assert!(
            text.contains("3 component(s) changed, at most 2 allowed"),
            "{text}"
        );
    }

    #[test]
    fn missing_licensed_components_count_as_changed() {
        let (licensed, current) = licensed_and_current(&[("mac", None), ("hostname", None)]);
        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 1));
        assert!(!report.ok);
        assert_eq!(report.missing, names(&["hostname", "mac"]));
        assert!(report.differing.is_empty());
        assert_eq!(report.changed(), 2);

        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 2));
        assert!(report.ok);
    }

    #[test]
    fn extra_current_components_are_ignored() {
        let mut licensed = hash_components("photo-pro", &sample());
        licensed.remove("mac");
        licensed.remove("declared-id");
        let current = hash_components("photo-pro", &sample());
        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 0));
        assert!(report.ok);
        assert_eq!(report.matched.len(), 4);
        assert!(!report.matched.contains(&"mac".to_string()));
        assert!(report.differing.is_empty() && report.missing.is_empty());
    }

    #[test]
    fn other_product_hashes_do_not_match() {
        let licensed = hash_components("photo-pro", &sample());
        let current = hash_components("video-pro", &sample());
        let report = match_fingerprint(&licensed, &current, &rule(&["machine-id"], 6));
        assert!(!report.ok);
        assert_eq!(report.required_failed, names(&["machine-id"]));
    }
}
