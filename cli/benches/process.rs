//! `lic check` as a whole process, next to the minimal process that reads and verifies
//! one file (`lic inspect` on the same license). Target: the median of `lic check`
//! within 2× of that minimal process. Results go in docs/performance.md.

use std::process::{Command, Stdio};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use lic_fixtures::stand_in::StandIn;

fn lic(store: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
    cmd.args(args)
        .env("LIC_STORE", store)
        .env("LIC_TRUST", lic_fixtures::dir().join("keys/vendor.pub.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("lic runs");
    assert!(status.success(), "{cmd:?} failed");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let request = dir.path().join("p.req");
    run(lic(
        &store,
        &[
            "offline-activate",
            "--key",
            "K",
            "--product",
            "photo-pro",
            "--out",
        ],
    )
    .arg(&request));
    let license = StandIn::new(Utc::now())
        .license_for(&std::fs::read(&request).expect("request"))
        .expect("license");
    let license_path = dir.path().join("p.lic");
    std::fs::write(&license_path, license.armored()).expect("write");
    run(lic(&store, &["install"]).arg(&license_path));
    run(&mut lic(&store, &["check"]));

    let mut group = c.benchmark_group("process");
    group.sample_size(50);
    group.bench_function("lic inspect LICENSE (read + verify one file)", |b| {
        b.iter(|| run(lic(&store, &["inspect"]).arg(&license_path)))
    });
    group.bench_function("lic check (store, license, fingerprint, clock)", |b| {
        b.iter(|| run(&mut lic(&store, &["check"])))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
