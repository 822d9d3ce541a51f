//! Faults under the store (issue 14): a full disk and a read-only file system under the
//! license store, with the real `lic` binary. Each is a clear error (a code of its own,
//! a message naming the file, a hint saying what to do), the store reads back exactly as
//! before, no temporary file is left, and the same command succeeds once the fault is
//! gone.
//!
//! The faults are small tmpfs mounts (root on Linux). Where mounting is not permitted
//! the tests skip loudly, or fail with LIC_REQUIRE_FAULTS=1 (as CI sets it).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use common::{Env, error_code, stderr, temp_files, used};
use lic_core::format::{self, License};
use lic_fixtures::faults::{Tmpfs, fill};
use lic_fixtures::stand_in::StandIn;

/// Every file in the store (but the filler) and its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "filler")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A refusal for the store's fault: exit 2, `code`, a message naming the state file and
/// a hint saying `what`.
#[track_caller]
fn refused(out: &std::process::Output, code: &str, what: &str) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(error_code(out).as_deref(), Some(code), "{out:?}");
    let err = stderr(out);
    assert!(
        err.contains(lic_core::store::STATE_FILE),
        "names the file: {err}"
    );
    assert!(err.contains(what), "says {what:?}: {err}");
    assert!(err.contains("nothing was changed"), "{err}");
}

/// The store activated, a refresh for it, on a tmpfs of `size`.
fn activated_on_tmpfs(size: &str) -> Option<(Env, Tmpfs, PathBuf)> {
    let env = Env::new();
    let mount = Tmpfs::mount(&env.store(), size)?;
    let portal = StandIn::new(Utc::now());
    let license = env.activate(&portal);
    let license =
        format::open::<License>(&std::fs::read(license).unwrap(), &portal.keys()).unwrap();
    let refresh = env.path("refresh.lic");
    std::fs::write(
        &refresh,
        portal.refresh_for(license.payload(), 2, None).armored(),
    )
    .unwrap();
    Some((env, mount, refresh))
}

#[test]
fn a_full_disk_under_the_store_is_a_clear_error_changes_nothing_and_passes_once_space_is_freed() {
    let Some((env, _mount, refresh)) = activated_on_tmpfs("1M") else {
        return;
    };
    env.ok(&["consume", "render-minutes", "2"]);
    let filler = fill(&env.store());
    let before = files(&env.store());
    let refresh = refresh.to_str().unwrap();
    for args in [
        &["consume", "render-minutes", "3"][..],
        &["install", refresh][..],
    ] {
        let out = env.lic(args);
        refused(
            &out,
            "store-full",
            "disk that holds the license store is full",
        );
        // The error names the state file, not also the scratch file it was written through.
        let err = stderr(&out);
        assert!(!err.contains(".lic-tmp"), "{err}");
        assert_eq!(files(&env.store()), before, "lic {args:?}");
        assert_eq!(temp_files(&env.store()), Vec::<String>::new());
    }
    // The state reads back as before (status only reads).
    assert_eq!(used(&env, "render-minutes"), 2);
    std::fs::remove_file(filler).unwrap();
    env.ok(&["consume", "render-minutes", "3"]);
    assert_eq!(used(&env, "render-minutes"), 5);
    let out = env.ok(&["install", refresh]);
    assert!(out.contains("applied the refresh"), "{out}");
    assert_eq!(temp_files(&env.store()), Vec::<String>::new());
}

#[test]
fn a_read_only_store_is_a_clear_error_and_changes_nothing() {
    let Some((env, mount, refresh)) = activated_on_tmpfs("1M") else {
        return;
    };
    env.ok(&["consume", "render-minutes", "2"]);
    mount.remount("ro");
    let before = files(&env.store());
    let refresh = refresh.to_str().unwrap();
    for args in [
        &["consume", "render-minutes", "3"][..],
        &["install", refresh][..],
    ] {
        let out = env.lic(args);
        assert_eq!(out.status.code(), Some(2), "lic {args:?}: {out:?}");
        assert_eq!(
            error_code(&out).as_deref(),
            Some("store-read-only"),
            "lic {args:?}: {out:?}"
        );
        let err = stderr(&out);
        assert!(err.contains("read-only file system"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(files(&env.store()), before, "lic {args:?}");
    }
    mount.remount("rw");
    assert_eq!(used(&env, "render-minutes"), 2);
    env.ok(&["consume", "render-minutes", "3"]);
    assert_eq!(used(&env, "render-minutes"), 5);
}
