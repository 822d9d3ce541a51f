//! Crash safety of the store under real SIGKILLs: `lic consume` and `lic install` killed
//! at random moments, a thousand times each by default (`LIC_CRASH_KILLS=N` for a long
//! run; `LIC_CRASH_SEED=N` for other delays). The delays come from a seeded generator
//! and spread over a whole unkilled run's life, measured first, so that kills land
//! before, inside and after the store's write. After every kill the store opens (`lic
//! status`, which verifies it) and:
//! - consume: the counter, as `lic` reads it, never goes down, rises by at most one per
//!   attempt, and stays between the increments acknowledged (exit 0, JSON read) and those
//!   plus the processes killed: no acknowledged increment is lost, none is counted twice.
//!   Also with 2–4 processes at once on one store (its lock serialises them).
//! - install: the installed serial is the old or the new refresh's, never anything
//!   else, and the entitlements are exactly that serial's.
//!
//! The crash points of `LIC_CRASH_AT` (each step of a write, deterministically) are in
//! `device_loop.rs`; these are the kills no one placed.

#![allow(clippy::unwrap_used)] // helpers of this test file, not product code

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lic_core::format::{self, Feature, License};
use lic_fixtures::stand_in::StandIn;

mod common;
use common::{Env, temp_files, used};

/// Kills per test by default: 20–25 s per test in a debug build on two busy cores.
const DEFAULT_KILLS: usize = 1000;
const DEFAULT_SEED: u64 = 0x5eed_c0de_2026_0014;

fn kills() -> usize {
    std::env::var("LIC_CRASH_KILLS")
        .ok()
        .map(|v| v.parse().expect("LIC_CRASH_KILLS is a number of kills"))
        .unwrap_or(DEFAULT_KILLS)
}

fn seed() -> u64 {
    std::env::var("LIC_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("LIC_CRASH_SEED is a number"))
        .unwrap_or(DEFAULT_SEED)
}

/// splitmix64: the delays, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay in `[0, max]`.
    fn delay(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap().max(1);
        Duration::from_nanos(self.next() % (nanos + 1))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How a process ended.
enum End {
    /// Exit 0: what it printed.
    Acknowledged(Vec<u8>),
    /// SIGKILL before it exited.
    Killed,
}

fn ended(out: Output, what: &str) -> End {
    if out.status.signal() == Some(9) {
        return End::Killed;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: a process not killed must succeed: {out:?}"
    );
    End::Acknowledged(out.stdout)
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Start every command at once and kill each after its own delay (the experiment's
/// input: it places the kill, it waits for nothing). A process that ended before its
/// kill is not killed: the signal finds it exited.
fn run_and_kill(cmds: Vec<Command>, delays: &[Duration], what: &str) -> Vec<End> {
    let start = Instant::now();
    let mut children: Vec<Option<Child>> = cmds.into_iter().map(|c| Some(spawn(c))).collect();
    let mut order: Vec<usize> = (0..children.len()).collect();
    order.sort_by_key(|&i| delays[i]);
    let mut outs: Vec<Option<Output>> = (0..children.len()).map(|_| None).collect();
    for i in order {
        if let Some(left) = delays[i].checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        let mut child = children[i].take().unwrap();
        // An already exited child is a zombie until waited for: the signal is harmless.
        let _ = child.kill();
        outs[i] = Some(child.wait_with_output().unwrap());
    }
    outs.into_iter().map(|o| ended(o.unwrap(), what)).collect()
}

/// How long a run of `make()` lives, unkilled (it must succeed): the median of a few
/// runs, so that a run slowed by the machine's load does not stretch the delays.
fn life(mut make: impl FnMut(usize) -> Command, runs: usize) -> Duration {
    let mut took: Vec<Duration> = (0..runs)
        .map(|i| {
            let start = Instant::now();
            let out = make(i).output().unwrap();
            let took = start.elapsed();
            assert_eq!(out.status.code(), Some(0), "an unkilled run: {out:?}");
            took
        })
        .collect();
    took.sort_unstable();
    took[runs / 2]
}

fn consume(env: &Env) -> Command {
    env.cmd(&["--format", "json", "consume", "export-pdf"])
}

/// The total an acknowledged `lic consume --format json` printed.
fn total(stdout: &[u8]) -> u64 {
    let json: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    assert_eq!(json["recorded"], 1, "{json}");
    json["total"].as_u64().unwrap()
}

#[test]
fn killing_lic_consume_at_random_loses_no_acknowledged_increment_and_counts_none_twice() {
    let (seed, kills) = (seed(), kills());
    let ctx = format!("LIC_CRASH_SEED={seed} LIC_CRASH_KILLS={kills}");
    eprintln!("{ctx}");
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let mut rng = Rng(seed);
    let start = used(&env, "export-pdf");
    // The unkilled runs that measure a process's life are acknowledged increments too.
    let runs = 5;
    let max = life(|_| consume(&env), runs) * 5 / 4;
    let (mut acknowledged, mut killed) = (runs as u64, 0u64);
    // Kills that landed after the write (counted) and before it (not counted).
    let (mut killed_after, mut killed_before) = (0u64, 0u64);
    let mut last = used(&env, "export-pdf");
    assert_eq!(last, start + acknowledged, "{ctx}");
    let mut attempts = 0;
    while killed < kills as u64 {
        attempts += 1;
        assert!(
            attempts <= 4 * kills.max(10),
            "{ctx}: {attempts} attempts for {killed} kills: the delays miss the process"
        );
        let delay = rng.delay(max);
        let end = run_and_kill(vec![consume(&env)], &[delay], &ctx)
            .pop()
            .unwrap();
        // lic itself reads the counter: the total an acknowledged run printed, else `lic
        // status`, which opens and verifies the store.
        let now = match &end {
            End::Acknowledged(out) => total(out),
            End::Killed => used(&env, "export-pdf"),
        };
        let step = format!("{ctx}: attempt {attempts} (delay {delay:?}): {last} → {now}");
        assert!(now == last || now == last + 1, "{step}");
        match end {
            End::Acknowledged(_) => {
                acknowledged += 1;
                assert_eq!(
                    now,
                    last + 1,
                    "{step}: an acknowledged increment is counted"
                );
            }
            End::Killed => {
                killed += 1;
                if now == last {
                    killed_before += 1;
                } else {
                    killed_after += 1;
                }
            }
        }
        let counted = now - start;
        assert!(
            acknowledged <= counted && counted <= acknowledged + killed,
            "{step}: counted {counted}, acknowledged {acknowledged}, killed {killed}"
        );
        last = now;
    }
    eprintln!(
        "{ctx}: {attempts} attempts, {acknowledged} acknowledged, {killed} killed \
         ({killed_after} after the write, {killed_before} before it), delays up to {max:?}"
    );
    if kills >= 100 {
        assert!(
            killed_after > 0 && killed_before > 0,
            "{ctx}: the kills must land on both sides of the write \
             ({killed_after} after, {killed_before} before)"
        );
    }
    // The store works on, and the next write clears what the kills left behind.
    env.ok(&["consume", "export-pdf"]);
    assert_eq!(used(&env, "export-pdf"), last + 1, "{ctx}");
    let leftovers = temp_files(&env.store());
    assert!(leftovers.is_empty(), "{ctx}: {leftovers:?}");
}

#[test]
fn concurrent_lic_consume_processes_killed_at_random_count_each_acknowledged_increment_once() {
    let (seed, kills) = (seed(), kills());
    let ctx = format!("LIC_CRASH_SEED={seed} LIC_CRASH_KILLS={kills}");
    eprintln!("{ctx}");
    let env = Env::new();
    env.activate(&StandIn::new(Utc::now()));
    let mut rng = Rng(seed ^ 0xc0c0);
    let start = used(&env, "export-pdf");
    // The life of one process; a batch of n waits for the lock up to n times as long.
    let runs = 5;
    let one = life(|_| consume(&env), runs) * 5 / 4;
    let (mut acknowledged, mut killed) = (runs as u64, 0u64);
    let mut last = used(&env, "export-pdf");
    assert_eq!(last, start + acknowledged, "{ctx}");
    let (mut batches, mut largest) = (0, 0);
    while killed < kills as u64 {
        batches += 1;
        assert!(
            batches <= 4 * kills.max(10),
            "{ctx}: {batches} batches for {killed} kills: the delays miss the processes"
        );
        let n = 2 + rng.below(3) as usize;
        let max = one * n as u32;
        let delays: Vec<Duration> = (0..n).map(|_| rng.delay(max)).collect();
        let ends = run_and_kill((0..n).map(|_| consume(&env)).collect(), &delays, &ctx);
        let now = used(&env, "export-pdf");
        let step = format!("{ctx}: batch {batches} of {n} (delays {delays:?}): {last} → {now}");
        assert!(now >= last && now - last <= n as u64, "{step}");
        // Each acknowledged process printed its own total, in this batch's range.
        let mut totals: Vec<u64> = Vec::new();
        let mut batch_killed = 0;
        for end in ends {
            match end {
                End::Acknowledged(out) => {
                    acknowledged += 1;
                    totals.push(total(&out));
                }
                End::Killed => {
                    killed += 1;
                    batch_killed += 1;
                }
            }
        }
        let batch_acknowledged = totals.len() as u64;
        totals.sort_unstable();
        totals.dedup();
        assert_eq!(
            totals.len() as u64,
            batch_acknowledged,
            "{step}: two processes were told the same total"
        );
        assert!(
            totals.iter().all(|t| *t > last && *t <= now),
            "{step}: totals {totals:?}"
        );
        assert!(
            now - last >= batch_acknowledged && now - last <= batch_acknowledged + batch_killed,
            "{step}: {batch_acknowledged} acknowledged, {batch_killed} killed"
        );
        let counted = now - start;
        assert!(
            acknowledged <= counted && counted <= acknowledged + killed,
            "{step}: counted {counted}, acknowledged {acknowledged}, killed {killed}"
        );
        largest = largest.max(n);
        last = now;
    }
    eprintln!(
        "{ctx}: {batches} batches of 2–{largest}, {acknowledged} acknowledged, {killed} killed, \
         {} counted",
        last - start
    );
    env.ok(&["consume", "export-pdf"]);
    assert_eq!(used(&env, "export-pdf"), last + 1, "{ctx}");
    let leftovers = temp_files(&env.store());
    assert!(leftovers.is_empty(), "{ctx}: {leftovers:?}");
}

/// The stand-in vendor as it signs serial `serial`: features and validity that differ
/// from every other serial's (a feature of its own, a limit, an expiry).
fn vendor_at(now: DateTime<Utc>, serial: u64) -> StandIn {
    let mut v = StandIn::new(now);
    v.features = expected_features(serial)
        .into_iter()
        .map(|(name, limit)| {
            let feature = Feature {
                limit,
                ..Feature::default()
            };
            (name, feature)
        })
        .collect();
    v.valid_for = Some(chrono::Duration::days(365 + i64::try_from(serial).unwrap()));
    v
}

/// Serial `serial`'s features: name and limit.
fn expected_features(serial: u64) -> BTreeMap<String, Option<u64>> {
    [
        ("export-pdf".to_string(), None),
        ("render-minutes".to_string(), Some(100 + serial)),
        (format!("serial-{serial}"), Some(serial)),
    ]
    .into()
}

fn expected_expiry(now: DateTime<Utc>, serial: u64) -> String {
    (now + chrono::Duration::days(365 + i64::try_from(serial).unwrap()))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The installed serial, after checking that the store opens and that the entitlements
/// are exactly that serial's.
fn installed(env: &Env, now: DateTime<Utc>, ctx: &str) -> u64 {
    let out = env.lic(&["status", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{ctx}: the store must open, verify and hold a valid license: {out:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let serial = json["license"]["serial"].as_u64().unwrap();
    let features: BTreeMap<String, Option<u64>> = json["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["limit"].as_u64()))
        .collect();
    assert_eq!(
        features,
        expected_features(serial),
        "{ctx}: the features of serial {serial}"
    );
    assert_eq!(
        json["license"]["expires"],
        expected_expiry(now, serial).as_str(),
        "{ctx}: the expiry of serial {serial}"
    );
    serial
}

/// The refresh file of `serial` (written once, when first needed).
fn refresh_file(env: &Env, license: &License, now: DateTime<Utc>, serial: u64) -> PathBuf {
    let path = env.path(&format!("refresh-{serial}.lic"));
    if !path.exists() {
        let file = vendor_at(now, serial).refresh_for(license, serial, None);
        std::fs::write(&path, file.armored()).unwrap();
    }
    path
}

fn install(env: &Env, file: &Path) -> Command {
    env.cmd(&["--format", "json", "install", file.to_str().unwrap()])
}

/// The serials an acknowledged `lic install --format json` of one refresh went from and
/// to.
fn applied(stdout: &[u8], step: &str) -> (u64, u64) {
    fn find<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => {
                m.get(key).or_else(|| m.values().find_map(|v| find(v, key)))
            }
            serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, key)),
            _ => None,
        }
    }
    let json: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    assert_eq!(
        find(&json, "result").and_then(|r| r.as_str()),
        Some("refresh-applied"),
        "{step}: {json}"
    );
    let serial = |key| {
        find(&json, key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("{step}: {json}"))
    };
    (serial("from_serial"), serial("to_serial"))
}

#[test]
fn killing_lic_install_leaves_the_old_or_the_new_serial_with_exactly_its_entitlements() {
    let (seed, kills) = (seed(), kills());
    let ctx = format!("LIC_CRASH_SEED={seed} LIC_CRASH_KILLS={kills}");
    eprintln!("{ctx}");
    let env = Env::new();
    let now = Utc::now();
    let license_path = env.activate(&vendor_at(now, 1));
    let license: License = format::open::<License>(
        &std::fs::read(&license_path).unwrap(),
        &vendor_at(now, 1).keys(),
    )
    .unwrap()
    .into_payload();
    assert_eq!(installed(&env, now, &ctx), 1);
    let mut rng = Rng(seed ^ 0x1a57);

    // The unkilled runs that measure a process's life install serials 2 to 6.
    let runs = 5;
    let max = life(
        |i| install(&env, &refresh_file(&env, &license, now, 2 + i as u64)),
        runs,
    ) * 5
        / 4;
    let mut serial = installed(&env, now, &ctx);
    assert_eq!(serial, 1 + runs as u64, "{ctx}");
    let (mut acknowledged, mut killed) = (0u64, 0u64);
    let (mut killed_after, mut killed_before) = (0u64, 0u64);
    let mut attempts = 0;
    while killed < kills as u64 {
        attempts += 1;
        assert!(
            attempts <= 4 * kills.max(10),
            "{ctx}: {attempts} attempts for {killed} kills: the delays miss the process"
        );
        let next = serial + 1;
        let file = refresh_file(&env, &license, now, next);
        let delay = rng.delay(max);
        let end = run_and_kill(vec![install(&env, &file)], &[delay], &ctx)
            .pop()
            .unwrap();
        let step = format!("{ctx}: attempt {attempts} (delay {delay:?}), serial {serial} → {next}");
        // After a kill `lic status` opens the store and reads serial and entitlements (the
        // next kill's check also shows that an acknowledged install stayed); an
        // acknowledged install says what it did.
        let now_serial = match &end {
            End::Acknowledged(out) => {
                let (from, to) = applied(out, &step);
                assert_eq!(from, serial, "{step}: the serial the install found");
                to
            }
            End::Killed => installed(&env, now, &step),
        };
        assert!(
            now_serial == serial || now_serial == next,
            "{step}: installed serial {now_serial}"
        );
        match end {
            End::Acknowledged(_) => {
                acknowledged += 1;
                assert_eq!(now_serial, next, "{step}: an acknowledged install");
            }
            End::Killed => {
                killed += 1;
                if now_serial == next {
                    killed_after += 1;
                } else {
                    killed_before += 1;
                }
            }
        }
        serial = now_serial;
    }
    eprintln!(
        "{ctx}: {attempts} attempts, {acknowledged} acknowledged, {killed} killed \
         ({killed_after} after the write, {killed_before} before it), serial {serial}, \
         delays up to {max:?}"
    );
    if kills >= 100 {
        assert!(
            killed_after > 0 && killed_before > 0,
            "{ctx}: the kills must land on both sides of the write \
             ({killed_after} after, {killed_before} before)"
        );
    }
    // The store works on: the next refresh installs, and nothing is left behind.
    let file = refresh_file(&env, &license, now, serial + 1);
    let out = install(&env, &file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{ctx}: {out:?}");
    assert_eq!(installed(&env, now, &ctx), serial + 1);
    let leftovers = temp_files(&env.store());
    assert!(leftovers.is_empty(), "{ctx}: {leftovers:?}");
}
