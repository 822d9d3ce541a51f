//! [`SystemSource`]: the components of the real machine (the `device` feature).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use super::{DECLARED_ID_ENV, FingerprintSource, RawComponents, component};

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
    use std::sync::Arc;

    use crate::fingerprint::StaticSource;
    use crate::fingerprint::samples::sample;

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
