//! An application's license check at start-up, with no store: `lic-core` built with
//! `default-features = false` (verify-only) is enough. docs/client-api.md shows this file.
//!
//! ```sh
//! cargo run -p lic-core --no-default-features --example check_license -- \
//!     fixtures/valid/license.lic fixtures/keys/device.key.pem \
//!     machine-id=8f3c1d2e9a7b4c5d8e6f1a2b3c4d5e6f hostname=studio-07
//! ```
//!
//! Exit status: 0 licensed, 1 not licensed now (a violation), 2 the file or the key is
//! unusable.

use std::path::Path;
use std::process::ExitCode;

use lic_core::check::{self, CheckError, Device};
use lic_core::clock::SystemClock;
use lic_core::fingerprint::RawComponents;
use lic_core::format::armor::MAX_FILE_SIZE;
use lic_core::keys::{Keyring, SecretKey};

/// The vendor's public key(s), compiled in: the application's trust anchors.
const VENDOR_KEYS: &str = include_str!("../../fixtures/keys/vendor.pub.pem");
/// The product this application is.
const PRODUCT: &str = "photo-pro";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [license_path, device_key_path, components @ ..] = args.as_slice() else {
        eprintln!("usage: check_license LICENSE DEVICE-KEY [NAME=VALUE]...");
        return ExitCode::from(2);
    };
    match run(
        Path::new(license_path),
        Path::new(device_key_path),
        components,
    ) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(license: &Path, device_key: &Path, components: &[String]) -> Result<ExitCode, String> {
    // Trust anchors: a bad compiled-in key is a build mistake, reported, never a panic.
    let trusted = Keyring::from_pem(VENDOR_KEYS).map_err(|e| e.to_string())?;
    // This device: its key (kept by the application) and its fingerprint components
    // (collected by the application; with the `device` feature,
    // `lic_core::fingerprint::SystemSource` reads the real machine).
    let key = SecretKey::read(device_key).map_err(|e| e.to_string())?;
    let raw: RawComponents = components
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let device = Device::from_components(&key, PRODUCT, &raw);
    // Read at most one byte more than a lic file may have: a larger file is refused.
    let bytes = read_capped(license)?;

    match check::license(&bytes, &trusted, PRODUCT, &device, &SystemClock) {
        Ok(licensed) => {
            let e = licensed.entitlements();
            println!(
                "licensed: {} ({:?}), serial {}",
                e.product, e.license_type, e.serial
            );
            for (name, feature) in &e.features {
                match feature.limit {
                    Some(limit) => println!("  {name}: up to {limit}"),
                    None => println!("  {name}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(CheckError::Violations(violations)) => {
            for v in &violations {
                eprintln!("not licensed: {v} [{}]\n  {}", v.code(), v.hint());
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(format!("{e} [{}]\n  {}", e.code(), e.hint())),
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}
