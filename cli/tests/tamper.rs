//! The tamper matrix, device side (issue 14): for every kind of file `lic` reads, made
//! fresh for this test's store by the stand-in vendor so that the file as made is
//! accepted, every single-bit flip and every truncation (lengths 0..len) of it, in its
//! raw COSE bytes and in its armored text, is refused by `lic install` (`lic inspect`
//! for the kinds install does not take) with an error code, without a panic, and leaves
//! the store byte for byte as it was.
//!
//! The full matrix runs in process, through [`lic_cli::execute`] — what the binary's
//! `main` runs, short of printing the failure — so that each case costs no process. A
//! deterministic sample (every [`BINARY_EVERY`]th mutation of every kind, and every
//! truncation of the key set's raw bytes) runs the real binary too, and must agree with
//! the in-process answer: exit status and error code.
//!
//! The armored text may be damaged outside its signed content where the reader tolerates
//! it by design (a final line end that became a vertical tab, which it trims as white
//! space; the final line end cut off): such a mutation decodes to exactly the signed bytes
//! of the original. The test checks that it does, and that `lic` then answers exactly as
//! it answers the original given twice — already installed, nothing changed. Any other
//! accepted mutation fails the test.
//!
//! `LIC_TAMPER_STRIDE=N` tries every Nth bit flip (truncations are always all tried);
//! the default is 7, `LIC_TAMPER_STRIDE=1` is the full matrix. docs/security.md
//! ("Tamper matrix") has the counts.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Parser as _;
use common::{Env, error_code};
use lic_core::format::{self, License};
use lic_fixtures::stand_in::StandIn;

/// Every this many mutations (and every truncation of the key set's raw bytes), the real
/// binary is run as well.
const BINARY_EVERY: usize = 211;

/// The bit flips tried: every Nth (`LIC_TAMPER_STRIDE`; 1 is all of them). The default,
/// 7, is prime to 8, so every bit position of a byte is tried along the file, and keeps
/// each test within seconds in a debug build (the full matrix is some 150,000 cases).
fn stride() -> usize {
    std::env::var("LIC_TAMPER_STRIDE")
        .ok()
        .map(|s| s.parse::<usize>().expect("LIC_TAMPER_STRIDE is a number"))
        .unwrap_or(7)
        .max(1)
}

/// Every file and directory under `dir`, with the bytes of each file: what must not
/// change when a file is refused.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The form a file is given to `lic` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Cose,
    Armored,
}

/// A mutation of a file: what was done, and the bytes.
struct Mutation {
    what: String,
    bytes: Vec<u8>,
}

/// Every `stride`th single-bit flip and every truncation of `original`.
fn mutations(original: &[u8], stride: usize) -> impl Iterator<Item = Mutation> + '_ {
    let flips = (0..original.len() * 8).step_by(stride).map(|bit| {
        let mut bytes = original.to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        Mutation {
            what: format!("bit {} of byte {} flipped", bit % 8, bit / 8),
            bytes,
        }
    });
    let cuts = (0..original.len()).map(|len| Mutation {
        what: format!("cut to {len} bytes"),
        bytes: original[..len].to_vec(),
    });
    flips.chain(cuts)
}

/// One kind of file, made for a store, and how `lic` is asked to take it.
struct Target {
    /// What the kind is called in messages.
    name: &'static str,
    /// `install` or `inspect`.
    command: &'static str,
    /// The file as armored text (what `lic` writes and the vendor sends).
    armored: Vec<u8>,
    /// The store the mutations are tried on: one where the file as made is accepted.
    base: Env,
    /// The store the file as made was accepted by (for `inspect`, the base itself): a
    /// mutation that decodes to the same signed bytes is tried here, and must be answered
    /// as the file as made is answered a second time.
    after: Env,
}

/// What `lic` said, in process: `Ok(exit status)` or the failure (exit status, code).
type Answer = Result<u8, (u8, String)>;

fn in_process(env: &Env, command: &str, file: &Path) -> Answer {
    let trust = lic_fixtures::dir().join("keys/vendor.pub.pem");
    let cli = lic_cli::Cli::try_parse_from([
        "lic".as_ref(),
        "--store".as_ref(),
        env.store().as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
        command.as_ref(),
        file.as_os_str(),
    ])
    .unwrap();
    lic_cli::execute(&cli).map_err(|f| {
        assert!(
            !f.message.is_empty() && !f.hint.is_empty(),
            "a failure says what is wrong and what to do: {f:?}"
        );
        (f.exit, f.code.into_owned())
    })
}

fn binary(env: &Env, command: &str, file: &Path) -> (std::process::Output, Answer) {
    let out = env.lic(&[command, file.to_str().unwrap()]);
    let exit = u8::try_from(out.status.code().expect("lic exits, not killed")).unwrap();
    let answer = match (exit, error_code(&out)) {
        (0, None) => Ok(0),
        (exit, Some(code)) => Err((exit, code)),
        (exit, None) => panic!("exit {exit} without an error code: {out:?}"),
    };
    (out, answer)
}

/// What the matrix of one target found.
#[derive(Default)]
struct Tally {
    refused: usize,
    same_content: usize,
    binary_runs: usize,
    codes: BTreeMap<String, usize>,
}

impl Target {
    /// Run the matrix on both forms; `all_cuts_by_binary` runs the binary on every
    /// truncation of the raw bytes too.
    fn run(&self, all_cuts_by_binary: bool) {
        let file = self.base.path("mutated");
        let original = self.base.path("original");
        std::fs::write(&original, &self.armored).unwrap();
        // The file as made is accepted, on a copy of the base store.
        let copy = Env::new();
        copy_dir(&self.base.store(), &copy.store());
        assert_eq!(
            in_process(&copy, self.command, &original),
            Ok(0),
            "the {} as made is accepted",
            self.name
        );
        // A second time (on the store that took it): the answer a mutation that changes
        // nothing signed must get.
        let (again, answer) = binary(&self.after, self.command, &original);
        assert_eq!(answer, Ok(0), "{again:?}");
        let again_stdout = again.stdout;

        let (kind, cose) = format::unarmor(&self.armored).unwrap();
        assert!(kind.is_some(), "{} is armored", self.name);
        let base_before = snapshot(&self.base.store());
        let after_before = snapshot(&self.after.store());
        let stride = stride();
        let mut tally = Tally::default();
        let mut index = 0usize;
        for (form, original_bytes) in [(Form::Cose, &cose), (Form::Armored, &self.armored)] {
            for m in mutations(original_bytes, stride) {
                index += 1;
                let what = format!("{} ({form:?}): {}", self.name, m.what);
                std::fs::write(&file, &m.bytes).unwrap();
                let decoded = format::unarmor(&m.bytes).ok();
                let same_content = form == Form::Armored
                    && decoded
                        .as_ref()
                        .is_some_and(|(k, bytes)| *k == kind && *bytes == cose);
                let env = if same_content {
                    &self.after
                } else {
                    &self.base
                };
                let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    in_process(env, self.command, &file)
                }))
                .unwrap_or_else(|_| panic!("{what}: lic panicked"));
                if same_content {
                    // Nothing signed was altered: lic answers as to the original given
                    // again (checked against the binary's own output below).
                    assert_eq!(answer, Ok(0), "{what}: the same signed bytes");
                    let (out, by_binary) = binary(env, self.command, &file);
                    tally.binary_runs += 1;
                    assert_eq!(by_binary, Ok(0), "{what}: {out:?}");
                    assert_eq!(out.stdout, again_stdout, "{what}: the same answer");
                    tally.same_content += 1;
                } else {
                    let Err((exit, code)) = &answer else {
                        panic!("{what}: accepted ({answer:?}), decoded as {decoded:?}");
                    };
                    assert_eq!(*exit, 2, "{what}: refused as an error, {code}");
                    assert!(
                        !code.is_empty() && code != "io" && code != "internal",
                        "{what}: a clear code, not {code:?}"
                    );
                    tally.refused += 1;
                    *tally.codes.entry(code.clone()).or_default() += 1;
                    let by_binary = (index.is_multiple_of(BINARY_EVERY)
                        || (all_cuts_by_binary && form == Form::Cose && m.what.starts_with("cut")))
                    .then(|| binary(env, self.command, &file));
                    if let Some((out, by_binary)) = by_binary {
                        tally.binary_runs += 1;
                        assert_eq!(by_binary, answer, "{what}: the binary agrees: {out:?}");
                    }
                }
                let before = if same_content {
                    &after_before
                } else {
                    &base_before
                };
                assert!(
                    snapshot(&env.store()) == *before,
                    "{what}: the store changed"
                );
            }
        }
        assert_eq!(snapshot(&self.base.store()), base_before);
        assert_eq!(snapshot(&self.after.store()), after_before);
        eprintln!(
            "tamper matrix, {} ({} bytes raw, {} armored; every {}flip): {} refused, {} \
             armored damage outside the signed bytes answered as the file itself, {} also \
             by the binary; codes: {:?}",
            self.name,
            cose.len(),
            self.armored.len(),
            ordinal(stride),
            tally.refused,
            tally.same_content,
            tally.binary_runs,
            tally.codes
        );
        assert!(tally.refused > 0);
    }
}

fn ordinal(n: usize) -> String {
    match n {
        1 => String::new(),
        n => format!("{n}th "),
    }
}

// ----- the stores and files -----------------------------------------------------------------

/// A store with a pending activation request for `photo-pro` (`pool_seats`: an
/// on-premise server's request), and the stand-in's license for it.
fn requested(portal: &StandIn, pool_seats: Option<&str>) -> (Env, Vec<u8>) {
    let env = Env::new();
    let mut args = vec![
        "offline-activate",
        "--key",
        "PHPRO-7Q2M",
        "--product",
        "photo-pro",
    ];
    if let Some(seats) = pool_seats {
        args.extend(["--pool-seats", seats]);
    }
    env.ok(&args);
    let request = std::fs::read(env.path("photo-pro.req")).unwrap();
    let license = portal.license_for(&request).unwrap().armored().into_bytes();
    (env, license)
}

/// A copy of `env`'s store that has installed `file`.
fn installed(env: &Env, file: &[u8]) -> Env {
    let after = Env::new();
    copy_dir(&env.store(), &after.store());
    let path = after.path("file");
    std::fs::write(&path, file).unwrap();
    after.ok(&["install", path.to_str().unwrap()]);
    after
}

/// A store with the stand-in's license installed; the license.
fn activated() -> (Env, Vec<u8>) {
    let portal = StandIn::new(Utc::now());
    let (env, license) = requested(&portal, None);
    let path = env.path("photo-pro.lic");
    std::fs::write(&path, &license).unwrap();
    env.ok(&["install", path.to_str().unwrap()]);
    (env, license)
}

fn install_target(name: &'static str, base: Env, file: Vec<u8>) -> Target {
    let after = installed(&base, &file);
    Target {
        name,
        command: "install",
        armored: file,
        base,
        after,
    }
}

/// A file for `lic inspect`, tried on a store with a license installed.
fn inspect_target(name: &'static str, make: impl FnOnce(&Env) -> Vec<u8>) -> Target {
    let (base, _) = activated();
    let file = make(&base);
    let after = Env::new();
    copy_dir(&base.store(), &after.store());
    Target {
        name,
        command: "inspect",
        armored: file,
        base,
        after,
    }
}

fn signed_by_vendor<T: format::Payload>(payload: &T) -> Vec<u8> {
    format::sign(payload, &lic_fixtures::vendor_key())
        .unwrap()
        .armored()
        .into_bytes()
}

fn signed_by_device<T: format::Payload>(payload: &T) -> Vec<u8> {
    format::sign(payload, &lic_fixtures::device_key())
        .unwrap()
        .armored()
        .into_bytes()
}

// ----- the kinds `lic install` takes --------------------------------------------------------

#[test]
fn every_flip_and_cut_of_a_license_is_refused_and_changes_nothing() {
    let (base, license) = requested(&StandIn::new(Utc::now()), None);
    install_target("license", base, license).run(false);
}

#[test]
fn every_flip_and_cut_of_a_pool_license_is_refused_and_changes_nothing() {
    let (base, license) = requested(&StandIn::new(Utc::now()), Some("3"));
    install_target("pool license", base, license).run(false);
}

#[test]
fn every_flip_and_cut_of_a_refresh_is_refused_and_changes_nothing() {
    let portal = StandIn::new(Utc::now());
    let (base, license) = activated();
    let license = format::open::<License>(&license, &portal.keys()).unwrap();
    let refresh = portal.refresh_for(license.payload(), 2, None);
    install_target("refresh", base, refresh.armored().into_bytes()).run(false);
}

#[test]
fn every_flip_and_cut_of_a_key_set_is_refused_and_changes_nothing() {
    let (base, _) = activated();
    let key_set = signed_by_vendor(&lic_fixtures::key_set());
    install_target("key set", base, key_set).run(true);
}

// ----- the kinds `lic inspect` reads --------------------------------------------------------

#[test]
fn every_flip_and_cut_of_an_activation_request_is_refused_by_inspect() {
    inspect_target("activation request", |_| {
        let (env, _) = requested(&StandIn::new(Utc::now()), None);
        std::fs::read(env.path("photo-pro.req")).unwrap()
    })
    .run(false);
}

#[test]
fn every_flip_and_cut_of_a_usage_report_is_refused_by_inspect() {
    inspect_target("usage report", |env| {
        env.ok(&["consume", "render-minutes", "3"]);
        let out = env.path("report.usage");
        env.ok(&["usage-report", "--out", out.to_str().unwrap()]);
        std::fs::read(out).unwrap()
    })
    .run(false);
}

#[test]
fn every_flip_and_cut_of_a_deactivation_is_refused_by_inspect() {
    inspect_target("deactivation", |_| {
        let (env, _) = activated();
        let out = env.path("photo-pro.deact");
        env.ok(&["offline-deactivate", "--out", out.to_str().unwrap()]);
        std::fs::read(out).unwrap()
    })
    .run(false);
}

#[test]
fn every_flip_and_cut_of_a_receipt_is_refused_by_inspect() {
    inspect_target("receipt", |_| signed_by_vendor(&lic_fixtures::receipt())).run(false);
}

#[test]
fn every_flip_and_cut_of_a_lease_is_refused_by_inspect() {
    inspect_target("lease", |_| signed_by_vendor(&lic_fixtures::lease())).run(false);
}

#[test]
fn every_flip_and_cut_of_a_lease_request_is_refused_by_inspect() {
    inspect_target("lease request", |_| {
        signed_by_device(&lic_fixtures::lease_request())
    })
    .run(false);
}

#[test]
fn every_flip_and_cut_of_a_check_in_is_refused_by_inspect() {
    inspect_target("check-in", |_| signed_by_device(&lic_fixtures::check_in())).run(false);
}

#[test]
fn every_flip_and_cut_of_a_pool_lease_is_refused_by_inspect() {
    // Signed by the on-premise server's key, with the vendor-signed pool license in it.
    inspect_target("pool lease", |_| {
        std::fs::read(lic_fixtures::dir().join("valid/pool-lease.lease")).unwrap()
    })
    .run(false);
}

#[test]
fn every_flip_and_cut_of_an_on_premise_checkout_license_is_refused_by_inspect() {
    // A license for offline use until its Offline Expiry Date, signed by the on-premise
    // floating server's key, with the vendor-signed pool license in it.
    inspect_target("on-premise checkout license", |_| {
        std::fs::read(lic_fixtures::dir().join("valid/pool-license-checkout.lic")).unwrap()
    })
    .run(false);
}
