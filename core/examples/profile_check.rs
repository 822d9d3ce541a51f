//! A harness for instruction counts (docs/performance.md): `check::license` on the
//! armored fixture license for the fixture device, and the floor (one Ed25519
//! `verify_strict` over a message of the license's size), each `N` times behind its own
//! non-inlined function, so that callgrind's inclusive cost of `run_check` and
//! `run_floor` gives the two in the same run.
//!
//! ```sh
//! cargo build --release -p lic-core --example profile_check
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/profile_check 200
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'run_check|run_floor'
//! ```

use std::hint::black_box;

use ed25519_dalek::{Signer as _, SigningKey};
use lic_core::check::{self, Device};
use lic_core::clock::FixedClock;
use lic_core::fingerprint::RawComponents;
use lic_core::format::{self, License};
use lic_core::keys::{Keyring, SecretKey};

const LICENSE: &[u8] = include_bytes!("../../fixtures/valid/license.lic");
const LICENSE_COSE: &[u8] = include_bytes!("../../fixtures/valid/license.cose");
const VENDOR_PUB: &str = include_str!("../../fixtures/keys/vendor.pub.pem");
const DEVICE_KEY: &str = include_str!("../../fixtures/keys/device.key.pem");
const MANIFEST: &str = include_str!("../../fixtures/manifest.json");

#[inline(never)]
fn run_check(n: u32, keys: &Keyring, product: &str, device: &Device, clock: &FixedClock) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(check::license(black_box(LICENSE), keys, product, device, clock).is_ok());
    }
    ok
}

#[inline(never)]
fn run_floor(
    n: u32,
    public: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &ed25519_dalek::Signature,
) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(public.verify_strict(black_box(message), signature).is_ok());
    }
    ok
}

fn main() -> Result<(), String> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let keys = Keyring::from_pem(VENDOR_PUB).map_err(|e| e.to_string())?;
    let license = format::open::<License>(LICENSE, &keys).map_err(|e| e.to_string())?;
    let product = license.product.clone();
    let manifest: serde_json::Value = serde_json::from_str(MANIFEST).map_err(|e| e.to_string())?;
    let components: RawComponents = manifest["fingerprint"]["components"]
        .as_object()
        .ok_or("fixture components")?
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let key = SecretKey::from_pem(DEVICE_KEY).map_err(|e| e.to_string())?;
    let device = Device::from_components(&key, &product, &components);
    let clock = FixedClock(license.issued);

    let signing = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; LICENSE_COSE.len()];
    let signature = signing.sign(&message);
    let public = signing.verifying_key();

    let checked = run_check(n, &keys, &product, &device, &clock);
    let verified = run_floor(n, &public, &message, &signature);
    if checked != n as usize || verified != n as usize {
        return Err(format!(
            "{checked} checks and {verified} signatures of {n} passed"
        ));
    }
    println!("{n} checks, {n} signatures");
    Ok(())
}
