//! Collecting and matching the device fingerprint (budget: collection ≤ 5 ms; never
//! `System::new_all`, which costs 6.7 ms and grows with the number of processes).
//! Results go in `docs/performance.md`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use lic_core::fingerprint::{
    self, FingerprintKey, FingerprintSource, RawComponents, SystemSource, component,
    hash_components,
};
use lic_core::format::MatchRule;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

fn bench(c: &mut Criterion) {
    let source = SystemSource::new(Some("bench-device".into()));
    let key = FingerprintKey::of(&lic_core::keys::SecretKey::from_seed(&[7; 32]));
    let collected = source.collect();
    println!(
        "collected components: {}",
        collected.names().collect::<Vec<_>>().join(", ")
    );

    c.bench_function(
        "fingerprint: SystemSource::collect + hash_components",
        |b| b.iter(|| hash_components(&key, black_box("photo-pro"), &source.collect())),
    );
    c.bench_function("fingerprint: SystemSource::collect", |b| {
        b.iter(|| source.collect())
    });
    // The sysinfo part of the collection on its own: CPU list + RAM total.
    c.bench_function(
        "fingerprint: sysinfo targeted refresh (cpu list + ram)",
        |b| {
            b.iter(|| {
                System::new_with_specifics(
                    RefreshKind::nothing()
                        .with_cpu(CpuRefreshKind::nothing())
                        .with_memory(MemoryRefreshKind::nothing().with_ram()),
                )
            })
        },
    );
    c.bench_function("fingerprint: sysinfo host_name", |b| {
        b.iter(System::host_name)
    });

    // Matching a 6-component fingerprint with 2 changed components.
    let licensed_raw = six_components("host-a", "24 GiB");
    let current_raw = six_components("host-b", "32 GiB");
    let licensed = hash_components(&key, "photo-pro", &licensed_raw);
    let current = hash_components(&key, "photo-pro", &current_raw);
    let rule = MatchRule {
        required: vec![component::MACHINE_ID.into()],
        max_changed: 2,
    };
    assert!(fingerprint::match_fingerprint(&licensed, &current, &rule).ok);
    c.bench_function("fingerprint: hash_components (6 components)", |b| {
        b.iter(|| hash_components(&key, black_box("photo-pro"), black_box(&current_raw)))
    });
    c.bench_function("fingerprint: match_fingerprint (6 components)", |b| {
        b.iter(|| fingerprint::match_fingerprint(black_box(&licensed), black_box(&current), &rule))
    });
}

fn six_components(host: &str, memory: &str) -> RawComponents {
    let mut raw = RawComponents::new();
    raw.insert(component::MACHINE_ID, "3d1219c7c4c5404aaa1f6d2a48adfda4");
    raw.insert(component::HOSTNAME, host);
    raw.insert(component::CPU, "AMD EPYC; 2 logical");
    raw.insert(component::MEMORY, memory);
    raw.insert(component::MAC, "02:fc:00:00:00:01");
    raw.insert(component::DECLARED_ID, "bench-device");
    raw
}

criterion_group!(benches, bench);
criterion_main!(benches);
