//! The device fingerprint: a few identifiers of the machine ("components"), read locally,
//! keyed by a secret of the device key and hashed before they go into any file.
//!
//! - [`SystemSource`] reads the real machine, cheaply and directly (no program is spawned,
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
use std::fs::File;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
use zeroize::Zeroizing;

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

    /// Every component [`SystemSource`](super::SystemSource) may collect.
    pub const ALL: &[&str] = &[MACHINE_ID, HOSTNAME, CPU, MEMORY, MAC, DECLARED_ID];
}

/// The environment variable [`SystemSource::from_env`] reads the declared id from.
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

/// The real machine: machine id, host name, CPU, memory, physical MAC addresses and,
/// if given, the declared id.
///
/// Collecting reads a few small files or OS calls (about 1 ms on Linux); it never
/// enumerates processes and never runs a program.
#[derive(Clone)]
pub struct SystemSource {
    declared_id: Option<String>,
}

impl SystemSource {
    /// The real machine, with an operator-declared id (trimmed; empty means none).
    pub fn new(declared_id: Option<String>) -> Self {
        let declared_id = declared_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        Self { declared_id }
    }

    /// The real machine, with the declared id from the `LIC_DEVICE_ID` environment
    /// variable (trimmed; unset, empty or not UTF-8 means none).
    pub fn from_env() -> Self {
        Self::new(std::env::var(DECLARED_ID_ENV).ok())
    }

    /// The declared id, if any.
    pub fn declared_id(&self) -> Option<&str> {
        self.declared_id.as_deref()
    }
}

impl fmt::Debug for SystemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let declared = self.declared_id.as_ref().map(|_| "<redacted>");
        f.debug_struct("SystemSource")
            .field("declared_id", &declared)
            .finish()
    }
}

impl FingerprintSource for SystemSource {
    fn collect(&self) -> RawComponents {
        let mut raw = RawComponents::new();
        if let Some(id) = platform::machine_id() {
            raw.insert(component::MACHINE_ID, id);
        }
        if let Some(name) = System::host_name().and_then(|h| normalize_hostname(&h)) {
            raw.insert(component::HOSTNAME, name);
        }
        // Targeted refreshes only: the CPU list (brand, count) and the RAM total.
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let cpus = system.cpus();
        let brand = cpus.first().map(|c| c.brand()).unwrap_or_default();
        if let Some(cpu) = cpu_value(brand, cpus.len()) {
            raw.insert(component::CPU, cpu);
        }
        if let Some(memory) = memory_value(system.total_memory()) {
            raw.insert(component::MEMORY, memory);
        }
        if let Some(macs) = join_macs(platform::physical_macs()) {
            raw.insert(component::MAC, macs);
        }
        if let Some(id) = &self.declared_id {
            raw.insert(component::DECLARED_ID, id.clone());
        }
        raw
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

fn normalize_hostname(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// `<brand>; <n> logical`, with the brand's whitespace collapsed. No CPU, no component.
fn cpu_value(brand: &str, logical: usize) -> Option<String> {
    if logical == 0 {
        return None;
    }
    let brand = brand.split_whitespace().collect::<Vec<_>>().join(" ");
    let brand = if brand.is_empty() { "unknown" } else { &brand };
    Some(format!("{brand}; {logical} logical"))
}

/// Total RAM rounded *up* to whole GiB. The OS reports the installed memory less what the
/// firmware and kernel reserve, which varies a little between boots and kernel versions;
/// rounding up keeps such a value on the installed size (a 24 GiB machine reporting
/// 23.5 GiB gives `24 GiB`), far from a rounding boundary.
fn memory_value(bytes: u64) -> Option<String> {
    const GIB: u64 = 1 << 30;
    (bytes > 0).then(|| format!("{} GiB", bytes.div_ceil(GIB)))
}

/// Reads a small text file (at most 4 KiB); `None` if it cannot be read.
fn read_small(path: &Path) -> Option<String> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A machine id as read, trimmed and lowercase; `None` if empty, all zeros (dashes
/// aside) or systemd's `uninitialized` placeholder.
fn normalize_machine_id(text: &str) -> Option<String> {
    let id = text.trim();
    let all_zero = id.chars().all(|c| c == '0' || c == '-');
    if all_zero || id.eq_ignore_ascii_case("uninitialized") {
        return None;
    }
    Some(id.to_ascii_lowercase())
}

/// The first usable machine id among `paths` (see [`normalize_machine_id`]).
#[cfg_attr(any(windows, target_os = "macos"), allow(dead_code))]
fn read_machine_id(paths: &[&Path]) -> Option<String> {
    paths
        .iter()
        .find_map(|path| read_small(path).and_then(|text| normalize_machine_id(&text)))
}

/// Interface names that are never a physical NIC: loopback, bridges, containers, VMs,
/// tunnels and VPNs. Unix-style names by prefix; Windows names (adapter aliases such as
/// "vEthernet (WSL)") by substring.
fn is_virtual_interface(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "lo",
        "docker",
        "veth",
        "br-",
        "bridge",
        "virbr",
        "vnet",
        "vmnet",
        "vboxnet",
        "tun",
        "tap",
        "wg",
        "zt",
        "utun",
        "ifb",
        "dummy",
        "bond",
        "team",
        "vxlan",
        "geneve",
        "flannel",
        "cni",
        "cali",
        "weave",
        "kube",
        "cilium",
        "podman",
        "lxc",
        "lxd",
        "awdl",
        "llw",
        "gif",
        "stf",
        "anpi",
        "ap",
        "p2p",
        "ipsec",
        "ppp",
        "gre",
        "sit",
        "ip6",
        "nlmon",
        "macvtap",
        "macvlan",
        "ipvlan",
        "tailscale",
        "nordlynx",
    ];
    const SUBSTRINGS: &[&str] = &[
        "loopback",
        "virtual",
        "vethernet",
        "hyper-v",
        "vmware",
        "virtualbox",
        "pseudo",
        "teredo",
        "isatap",
        "bluetooth",
        "vpn",
        "tailscale",
        "zerotier",
        "wireguard",
        "npcap",
        "wsl",
        "local area connection*",
    ];
    let name = name.trim().to_ascii_lowercase();
    name.is_empty()
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || SUBSTRINGS.iter().any(|s| name.contains(s))
}

/// A MAC address as 6 colon-separated hex octets, lowercase; `None` if malformed or
/// all zero.
fn normalize_mac(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let octets: Vec<&str> = text.split(':').collect();
    let well_formed = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    (well_formed && octets.iter().any(|o| *o != "00")).then_some(text)
}

/// The MACs of the physical interfaces under a sysfs `class/net` directory: an interface
/// is physical if it has a `device` entry (a bus device behind it) and a name that is not
/// a virtual one; its address counts only if it is the permanent one (`addr_assign_type`
/// 0, or unreadable on old kernels), not a random or user-set one.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn sysfs_physical_macs(class_net: &Path) -> BTreeSet<String> {
    let mut macs = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(class_net) else {
        return macs;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let dir = class_net.join(name);
        if is_virtual_interface(name) || !dir.join("device").exists() {
            continue;
        }
        let permanent = read_small(&dir.join("addr_assign_type")).is_none_or(|t| t.trim() == "0");
        if !permanent {
            continue;
        }
        if let Some(mac) = read_small(&dir.join("address")).and_then(|a| normalize_mac(&a)) {
            macs.insert(mac);
        }
    }
    macs
}

fn join_macs(macs: BTreeSet<String>) -> Option<String> {
    (!macs.is_empty()).then(|| macs.into_iter().collect::<Vec<_>>().join(","))
}

/// Linux and other Unix systems (not macOS): machine id from files, MACs from sysfs on
/// Linux and from `sysinfo` elsewhere.
#[cfg(not(any(windows, target_os = "macos")))]
mod platform {
    use std::collections::BTreeSet;
    use std::path::Path;

    pub(super) fn machine_id() -> Option<String> {
        super::read_machine_id(&[
            Path::new("/etc/machine-id"),
            Path::new("/var/lib/dbus/machine-id"),
        ])
    }

    #[cfg(target_os = "linux")]
    pub(super) fn physical_macs() -> BTreeSet<String> {
        super::sysfs_physical_macs(Path::new("/sys/class/net"))
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn physical_macs() -> BTreeSet<String> {
        super::sysinfo_physical_macs()
    }
}

/// macOS: `IOPlatformUUID` of the `IOPlatformExpertDevice`, read through IOKit by
/// `sysinfo` (`IOServiceGetMatchingService` + `IORegistryEntryCreateCFProperty`; no
/// program is run).
#[cfg(target_os = "macos")]
mod platform {
    use std::collections::BTreeSet;

    pub(super) fn machine_id() -> Option<String> {
        super::normalize_machine_id(&sysinfo::Product::uuid()?)
    }

    pub(super) fn physical_macs() -> BTreeSet<String> {
        super::sysinfo_physical_macs()
    }
}

/// Windows: `MachineGuid` under `HKLM\SOFTWARE\Microsoft\Cryptography`, in the 64-bit
/// registry view (a 32-bit process would otherwise be redirected to `WOW6432Node`, which
/// has no such value).
#[cfg(windows)]
mod platform {
    use std::collections::BTreeSet;

    /// `KEY_WOW64_64KEY` from winnt.h.
    const KEY_WOW64_64KEY: u32 = 0x0100;

    pub(super) fn machine_id() -> Option<String> {
        let key = windows_registry::LOCAL_MACHINE
            .options()
            .read()
            .access(KEY_WOW64_64KEY)
            .open(r"SOFTWARE\Microsoft\Cryptography")
            .ok()?;
        let guid = key.get_string("MachineGuid").ok()?;
        super::normalize_machine_id(&guid)
    }

    pub(super) fn physical_macs() -> BTreeSet<String> {
        super::sysinfo_physical_macs()
    }
}

/// The MACs of the physical interfaces as `sysinfo` lists them (where there is no sysfs),
/// without virtual interface names and without locally administered addresses (random
/// Wi-Fi addresses, most virtual adapters).
#[cfg(not(target_os = "linux"))]
fn sysinfo_physical_macs() -> BTreeSet<String> {
    sysinfo::Networks::new_with_refreshed_list()
        .iter()
        .filter(|(name, _)| !is_virtual_interface(name))
        .map(|(_, data)| data.mac_address())
        .filter(|mac| !mac.is_unspecified() && mac.0[0] & 0x02 == 0)
        .map(|mac| mac.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn raw(pairs: &[(&str, &str)]) -> RawComponents {
        pairs.iter().copied().collect()
    }

    fn sample() -> RawComponents {
        raw(&[
            (component::MACHINE_ID, "3d1219c7c4c5404aaa1f6d2a48adfda4"),
            (component::HOSTNAME, "build-host-7"),
            (component::CPU, "AMD EPYC; 2 logical"),
            (component::MEMORY, "24 GiB"),
            (component::MAC, "02:fc:00:00:00:01,3c:22:fb:11:22:33"),
            (component::DECLARED_ID, "customer-vm-0042"),
        ])
    }

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
        let source = SystemSource::new(Some("customer-vm-0042".into()));
        assert!(!format!("{source:?}").contains("customer-vm-0042"));
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

    // ---- component values ----

    #[test]
    fn machine_id_is_read_from_the_first_usable_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).expect("write");
            path
        };
        let empty = write("empty", "");
        let blank = write("blank", " \n");
        let zeros = write("zeros", "00000000000000000000000000000000\n");
        let uninit = write("uninit", "uninitialized\n");
        let valid = write("valid", "3D1219C7C4C5404AAA1F6D2A48ADFDA4\n");
        let other = write("other", "ffffffffffffffffffffffffffffffff");
        let absent = dir.path().join("absent");

        let id = read_machine_id(&[&absent, &empty, &blank, &zeros, &uninit, &valid, &other]);
        assert_eq!(id.as_deref(), Some("3d1219c7c4c5404aaa1f6d2a48adfda4"));
        assert_eq!(
            read_machine_id(&[&other, &valid]).as_deref(),
            Some("ffffffffffffffffffffffffffffffff")
        );
        assert_eq!(read_machine_id(&[&absent, &empty, &zeros, &uninit]), None);
        assert_eq!(read_machine_id(&[]), None);
        // An all-zero UUID (macOS, Windows form) is no id either.
        assert_eq!(
            normalize_machine_id("00000000-0000-0000-0000-000000000000"),
            None
        );
    }

    #[test]
    fn cpu_memory_and_hostname_values() {
        assert_eq!(
            cpu_value("  AMD   EPYC 7B13 ", 2).as_deref(),
            Some("AMD EPYC 7B13; 2 logical")
        );
        assert_eq!(cpu_value("", 4).as_deref(), Some("unknown; 4 logical"));
        assert_eq!(cpu_value("AMD EPYC", 0), None);

        const GIB: u64 = 1 << 30;
        // /proc/meminfo of a 24 GiB VM: 24684084 kB.
        assert_eq!(memory_value(24_684_084 * 1024).as_deref(), Some("24 GiB"));
        // A few MiB more or less reserved: the same value.
        assert_eq!(
            memory_value(24_684_084 * 1024 - (64 << 20)).as_deref(),
            Some("24 GiB")
        );
        assert_eq!(memory_value(16 * GIB).as_deref(), Some("16 GiB"));
        assert_eq!(memory_value(16 * GIB + 1).as_deref(), Some("17 GiB"));
        assert_eq!(memory_value(0), None);

        assert_eq!(
            normalize_hostname(" Build-01.\n").as_deref(),
            Some("build-01")
        );
        assert_eq!(normalize_hostname("  "), None);
    }

    #[test]
    fn declared_id_is_trimmed_and_empty_means_none() {
        assert_eq!(
            SystemSource::new(Some("  vm-42 \n".into())).declared_id(),
            Some("vm-42")
        );
        assert_eq!(SystemSource::new(Some(" \t".into())).declared_id(), None);
        assert_eq!(SystemSource::new(None).declared_id(), None);
    }

    // ---- MAC filter ----

    #[test]
    fn interface_name_filter() {
        for name in [
            "lo",
            "lo0",
            "docker0",
            "veth1a2b3c",
            "br-0123abcd",
            "virbr0",
            "virbr0-nic",
            "vnet3",
            "tun0",
            "tap0",
            "wg0",
            "ztabcdef",
            "utun2",
            "awdl0",
            "bridge100",
            "vEthernet (WSL)",
            "VMware Network Adapter VMnet8",
            "Loopback Pseudo-Interface 1",
            "Local Area Connection* 2",
            "",
        ] {
            assert!(is_virtual_interface(name), "{name:?} should be virtual");
        }
        for name in [
            "eth0", "enp3s0", "eno1", "ens5", "wlp2s0", "wlan0", "en0", "Ethernet", "Wi-Fi",
        ] {
            assert!(!is_virtual_interface(name), "{name:?} should be physical");
        }
    }

    #[test]
    fn mac_normalization() {
        assert_eq!(
            normalize_mac("3C:22:FB:11:22:33\n").as_deref(),
            Some("3c:22:fb:11:22:33")
        );
        assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
        assert_eq!(normalize_mac(""), None);
        assert_eq!(normalize_mac("3c:22:fb:11:22"), None);
        assert_eq!(normalize_mac("3c:22:fb:11:22:3g"), None);
        assert_eq!(normalize_mac("3c-22-fb-11-22-33"), None);
    }

    /// A fake `/sys/class/net`: `(name, has device, address, addr_assign_type)`.
    fn fake_sysfs(interfaces: &[(&str, bool, &str, Option<&str>)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for (name, device, address, assign) in interfaces {
            let dir = root.path().join(name);
            fs::create_dir(&dir).expect("mkdir");
            fs::write(dir.join("address"), format!("{address}\n")).expect("write");
            if let Some(assign) = assign {
                fs::write(dir.join("addr_assign_type"), format!("{assign}\n")).expect("write");
            }
            if *device {
                fs::create_dir(dir.join("device")).expect("mkdir");
            }
        }
        root
    }

    #[test]
    fn sysfs_mac_filter_keeps_only_physical_permanent_addresses() {
        let root = fake_sysfs(&[
            ("lo", false, "00:00:00:00:00:00", Some("0")),
            ("eth0", true, "3C:22:FB:11:22:33", Some("0")),
            ("enp3s0", true, "00:1b:21:aa:bb:cc", None), // old kernel: no addr_assign_type
            ("eth1", true, "3c:22:fb:11:22:33", Some("0")), // duplicate of eth0
            ("docker0", false, "02:42:ac:11:00:01", Some("3")),
            ("veth9a8b7c", false, "7a:1b:2c:3d:4e:5f", Some("1")),
            ("br-1234abcd", false, "02:42:12:34:ab:cd", Some("3")),
            ("virbr0", true, "52:54:00:12:34:56", Some("3")), // has device, virtual name
            ("wlan0", true, "d6:11:22:33:44:55", Some("1")),  // randomized address
            ("wlan1", true, "d6:11:22:33:44:66", Some("3")),  // address set by software
            ("eth2", true, "00:00:00:00:00:00", Some("0")),   // all zero
            (
                "ib0",
                true,
                "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0b:16:e1",
                Some("0"),
            ),
            ("eno1", false, "00:1b:21:dd:ee:ff", Some("0")), // no device entry
        ]);
        let macs = sysfs_physical_macs(root.path());
        assert_eq!(
            macs.iter().map(String::as_str).collect::<Vec<_>>(),
            ["00:1b:21:aa:bb:cc", "3c:22:fb:11:22:33"]
        );
        assert_eq!(
            join_macs(macs).as_deref(),
            Some("00:1b:21:aa:bb:cc,3c:22:fb:11:22:33")
        );
    }

    #[test]
    fn sysfs_without_physical_interfaces_gives_no_mac_component() {
        let root = fake_sysfs(&[
            ("lo", false, "00:00:00:00:00:00", Some("0")),
            ("eth0", false, "02:42:ac:11:00:02", Some("3")), // a container's veth peer
        ]);
        assert!(sysfs_physical_macs(root.path()).is_empty());
        assert_eq!(join_macs(BTreeSet::new()), None);
        assert!(sysfs_physical_macs(&root.path().join("absent")).is_empty());
    }

    // ---- the real machine ----

    #[cfg(target_os = "linux")]
    #[test]
    fn system_source_collects_the_basic_components() {
        let raw = SystemSource::new(None).collect();
        for name in [
            component::MACHINE_ID,
            component::HOSTNAME,
            component::CPU,
            component::MEMORY,
        ] {
            assert!(
                raw.get(name).is_some_and(|v| !v.is_empty()),
                "{name} missing: {raw:?}"
            );
        }
        assert_eq!(raw.get(component::DECLARED_ID), None);
        assert!(raw.names().all(|n| component::ALL.contains(&n)));

        let raw = SystemSource::new(Some("vm-42".into())).collect();
        assert_eq!(raw.get(component::DECLARED_ID), Some("vm-42"));
    }

    #[test]
    fn sources_are_object_safe_and_shareable() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        let sources: Vec<Box<dyn FingerprintSource>> = vec![
            Box::new(StaticSource(sample())),
            Box::new(SystemSource::new(None)),
        ];
        assert_send_sync(&sources);
        assert_eq!(sources[0].collect(), sample());
        fn collect_from(source: impl FingerprintSource) -> RawComponents {
            source.collect()
        }
        let source = StaticSource(sample());
        assert_eq!(collect_from(&source), sample());
        assert_eq!(collect_from(Arc::new(source)), sample());
    }
}
