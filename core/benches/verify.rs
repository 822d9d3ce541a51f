//! Decoding and verifying a license file, and checking it for this device: the full
//! `check::license` (open + rules + match) beside its floor, one Ed25519
//! `verify_strict`, in the same run (budget: ≤ 1.15× the floor). Results go in
//! `docs/performance.md`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey};
use lic_core::check::{self, Device};
use lic_core::clock::FixedClock;
use lic_core::fingerprint::RawComponents;
use lic_core::format::{self, License};
use lic_core::keys::{Keyring, SecretKey};

const LICENSE: &[u8] = include_bytes!("../../fixtures/valid/license.lic");
const LICENSE_COSE: &[u8] = include_bytes!("../../fixtures/valid/license.cose");
const VENDOR_PUB: &str = include_str!("../../fixtures/keys/vendor.pub.pem");
const KEY_SET: &[u8] = include_bytes!("../../fixtures/valid/key-set.keys");
const DEVICE_KEY: &str = include_str!("../../fixtures/keys/device.key.pem");
const MANIFEST: &str = include_str!("../../fixtures/manifest.json");

/// The fixture device: its key and the components the fixture license was issued for.
fn fixture_device(product: &str) -> Device {
    let manifest: serde_json::Value = serde_json::from_str(MANIFEST).expect("manifest");
    let components: RawComponents = manifest["fingerprint"]["components"]
        .as_object()
        .expect("fixture components")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let key = SecretKey::from_pem(DEVICE_KEY).expect("fixture device key");
    Device::from_components(&key, product, &components)
}

fn bench(c: &mut Criterion) {
    let keys = Keyring::from_pem(VENDOR_PUB).expect("fixture key");
    format::open::<License>(LICENSE, &keys).expect("the fixture license verifies");

    // The application's whole check: open (armor, strict CBOR, COSE, verify_strict,
    // payload), the product, the rules and the fingerprint match.
    let license = format::open::<License>(LICENSE, &keys).expect("fixture license");
    let product = license.product.clone();
    let device = fixture_device(&product);
    let clock = FixedClock(license.issued);
    check::license(LICENSE, &keys, &product, &device, &clock).expect("the fixture license checks");
    c.bench_function("check::license (open + rules + match, armored)", |b| {
        b.iter(|| check::license(black_box(LICENSE), &keys, &product, &device, &clock))
    });
    c.bench_function("check::license (open + rules + match, binary)", |b| {
        b.iter(|| check::license(black_box(LICENSE_COSE), &keys, &product, &device, &clock))
    });
    c.bench_function("license: unarmor + verify + decode (end to end)", |b| {
        b.iter(|| format::open::<License>(black_box(LICENSE), &keys))
    });
    c.bench_function("license: verify + decode (binary, no armor)", |b| {
        b.iter(|| format::open::<License>(black_box(LICENSE_COSE), &keys))
    });
    c.bench_function("license: unarmor only", |b| {
        b.iter(|| format::armor::decode(black_box(LICENSE)))
    });

    // What an installed key set adds to every use of the store: verifying it again from
    // the anchors (none installed: a copy of the anchors).
    let installed = [format::unarmor(KEY_SET).expect("fixture key set").1];
    assert_eq!(lic_core::trust::effective(&keys, &installed).version, 1);
    c.bench_function("trust: the anchors with one installed key set", |b| {
        b.iter(|| lic_core::trust::effective(&keys, black_box(&installed)))
    });
    c.bench_function("trust: the anchors, no key set", |b| {
        b.iter(|| lic_core::trust::effective(&keys, black_box(&[] as &[Vec<u8>])))
    });

    // The floor: one Ed25519 verify_strict over a message of the license's size.
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; LICENSE_COSE.len()];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    c.bench_function("ed25519 verify_strict (floor)", |b| {
        b.iter(|| public.verify_strict(black_box(&message), &signature))
    });
}

/// The ratio the budget is stated in, robust to a machine shared with other work: in
/// each round the floor is timed just before and just after the checks, and each check
/// is divided by the mean of the two; the median over the rounds is printed after
/// criterion's figures (with the median times, which the load inflates).
fn interleaved(_: &mut Criterion) {
    use std::time::Instant;
    let keys = Keyring::from_pem(VENDOR_PUB).expect("fixture key");
    let license = format::open::<License>(LICENSE, &keys).expect("fixture license");
    let product = license.product.clone();
    let device = fixture_device(&product);
    let clock = FixedClock(license.issued);
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; LICENSE_COSE.len()];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    const BATCH: u32 = 20;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
    };
    let mut floor = || {
        black_box(public.verify_strict(black_box(&message), &signature)).ok();
    };
    let mut armored = || {
        black_box(check::license(
            black_box(LICENSE),
            &keys,
            &product,
            &device,
            &clock,
        ))
        .ok();
    };
    let mut binary = || {
        black_box(check::license(
            black_box(LICENSE_COSE),
            &keys,
            &product,
            &device,
            &clock,
        ))
        .ok();
    };
    let (mut floors, mut ratios_armored, mut ratios_binary) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..1000 {
        let before = time(&mut floor);
        let a = time(&mut armored);
        let b = time(&mut binary);
        let after = time(&mut floor);
        let f = (before + after) / 2.0;
        floors.push(f);
        ratios_armored.push(a / f);
        ratios_binary.push(b / f);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "paired rounds (median of 1000): verify_strict {:.1} µs; check::license / verify_strict: \
         armored {:.3}x, binary {:.3}x",
        median(&mut floors),
        median(&mut ratios_armored),
        median(&mut ratios_binary),
    );
}

criterion_group!(benches, bench, interleaved);
criterion_main!(benches);
