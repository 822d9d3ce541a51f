//! `lic check` as a whole process, next to a minimal process that reads and verifies one
//! file: `lic-bench-minimal` (tests/src/bin/lic-bench-minimal.rs, built here with the
//! benchmark's profile) reads the same license with
//! `std::fs` and verifies it with `format::open::<License>`, nothing else. Target: the
//! median of `lic check` within 2× of that minimal process. `lic inspect` on the same
//! license shows what the `lic` binary's own start-up (argument parsing, trust file)
//! adds. Results go in docs/performance.md.

use std::process::{Command, Stdio};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use lic_fixtures::stand_in::StandIn;

fn lic(store: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
    cmd.arg("--trust")
        .arg(lic_fixtures::dir().join("keys/vendor.pub.pem"))
        .args(args)
        .env("LIC_STORE", store)
        .env_remove("LIC_PRODUCT")
        .env_remove("LIC_DEVICE_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn minimal(binary: &std::path::Path, license: &std::path::Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg(license).stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("the process runs");
    assert!(status.success(), "{cmd:?} failed");
}

fn bench(c: &mut Criterion) {
    // LIC_BENCH_DIR=DIR keeps the store and the license there, to profile the processes
    // by hand afterwards (`perf`, `strace -c`); by default a temporary directory.
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = match std::env::var_os("LIC_BENCH_DIR") {
        Some(kept) => {
            let kept = std::path::PathBuf::from(kept);
            std::fs::create_dir_all(&kept).expect("LIC_BENCH_DIR");
            kept
        }
        None => temp.path().to_path_buf(),
    };
    let minimal_bin = lic_fixtures::binaries::workspace_binary("lic-tests", "lic-bench-minimal");
    let store = dir.join("store");
    assert!(!store.exists(), "{} must not exist yet", store.display());
    let request = dir.join("p.req");
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
    let license_path = dir.join("p.lic");
    std::fs::write(&license_path, license.armored()).expect("write");
    run(lic(&store, &["install"]).arg(&license_path));
    run(&mut lic(&store, &["check"]));
    run(&mut minimal(&minimal_bin, &license_path));

    let mut group = c.benchmark_group("process");
    group.sample_size(50);
    group.bench_function("minimal process: read + verify one license file", |b| {
        b.iter(|| run(&mut minimal(&minimal_bin, &license_path)))
    });
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
