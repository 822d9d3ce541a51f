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

/// The ratio the budget is stated in, robust to a machine shared with other work: the
/// floor and the check measured in alternation, in batches, each taking the fastest
/// batch (the least disturbed). Printed after criterion's figures.
fn interleaved(_: &mut Criterion) {
    use std::time::{Duration, Instant};
    let keys = Keyring::from_pem(VENDOR_PUB).expect("fixture key");
    let license = format::open::<License>(LICENSE, &keys).expect("fixture license");
    let product = license.product.clone();
    let device = fixture_device(&product);
    let clock = FixedClock(license.issued);
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; LICENSE_COSE.len()];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    const BATCH: u32 = 40;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed() / BATCH
    };
    let mut best = [Duration::MAX; 3];
    for _ in 0..300 {
        let t = [
            time(&mut || {
                black_box(public.verify_strict(black_box(&message), &signature)).ok();
            }),
            time(&mut || {
                black_box(check::license(
                    black_box(LICENSE),
                    &keys,
                    &product,
                    &device,
                    &clock,
                ))
                .ok();
            }),
            time(&mut || {
                black_box(check::license(
                    black_box(LICENSE_COSE),
                    &keys,
                    &product,
                    &device,
                    &clock,
                ))
                .ok();
            }),
        ];
        for (b, t) in best.iter_mut().zip(t) {
            *b = (*b).min(t);
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "interleaved (fastest batch of {BATCH}): verify_strict {:.1} µs; check::license armored \
         {:.1} µs ({:.2}x), binary {:.1} µs ({:.2}x)",
        us(best[0]),
        us(best[1]),
        us(best[1]) / us(best[0]),
        us(best[2]),
        us(best[2]) / us(best[0]),
    );
}

criterion_group!(benches, bench, interleaved);
criterion_main!(benches);
