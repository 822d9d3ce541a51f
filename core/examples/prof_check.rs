use lic_core::check::{self, Device};
use lic_core::clock::FixedClock;
use lic_core::fingerprint::RawComponents;
use lic_core::format::{self, License};
use lic_core::keys::{Keyring, SecretKey};
const LICENSE: &[u8] = include_bytes!("../../fixtures/valid/license.lic");
const VENDOR_PUB: &str = include_str!("../../fixtures/keys/vendor.pub.pem");
const DEVICE_KEY: &str = include_str!("../../fixtures/keys/device.key.pem");
fn main() {
    let keys = Keyring::from_pem(VENDOR_PUB).unwrap();
    let license = format::open::<License>(LICENSE, &keys).unwrap();
    let comps: RawComponents = [
        ("cpu", "Intel(R) Core(TM) i7-12700; 20 logical"),
        ("hostname", "studio-07"),
        ("mac", "3c:22:fb:11:22:33"),
        ("machine-id", "8f3c1d2e9a7b4c5d8e6f1a2b3c4d5e6f"),
        ("memory", "32 GiB"),
    ]
    .into_iter()
    .collect();
    let device = Device::from_components(
        &SecretKey::from_pem(DEVICE_KEY).unwrap(),
        &license.product,
        &comps,
    );
    let clock = FixedClock(license.issued);
    let n: usize = std::env::args().nth(1).map_or(200, |a| a.parse().unwrap());
    for _ in 0..n {
        std::hint::black_box(
            check::license(
                std::hint::black_box(LICENSE),
                &keys,
                &license.product,
                &device,
                &clock,
            )
            .unwrap(),
        );
    }
}
