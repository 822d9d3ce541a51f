//! Support for the tests that drive the real `lic` binary: a store in a temporary
//! directory, files signed with the fixture vendor key, and the helpers that read what
//! `lic` printed.

#![allow(dead_code, clippy::unwrap_used)] // helpers of the test files, not product code

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lic_fixtures::stand_in::StandIn;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lic --trust FIXTURE-VENDOR-KEY ARGS` on this store (more arguments may follow).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let trust = lic_fixtures::dir().join("keys/vendor.pub.pem");
        let trust = trust.to_string_lossy();
        let with_trust: Vec<&str> = ["--trust", trust.as_ref()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        self.bare(&with_trust)
    }

    /// `lic ARGS` on this store, with the trust of a `lic` installed without a trust file.
    pub fn bare(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
        cmd.args(args)
            .env("LIC_STORE", self.store())
            .env_remove("LIC_PRODUCT")
            .env_remove("LIC_DEVICE_ID")
            .env_remove(lic_core::store::CRASH_ENV)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn lic(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.lic(args);
        assert_eq!(out.status.code(), Some(0), "lic {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Activate `photo-pro`: request, the stand-in's license, install.
    pub fn activate(&self, portal: &StandIn) -> PathBuf {
        self.activate_as(portal, None)
    }

    /// Activate `photo-pro` with `LIC_DEVICE_ID` set to `device_id` (or unset).
    pub fn activate_as(&self, portal: &StandIn, device_id: Option<&str>) -> PathBuf {
        let run = |args: &[&str]| {
            let mut cmd = self.cmd(args);
            if let Some(id) = device_id {
                cmd.env("LIC_DEVICE_ID", id);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(0), "lic {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        run(&[
            "offline-activate",
            "--key",
            "PHPRO-7Q2M",
            "--product",
            "photo-pro",
        ]);
        let request = std::fs::read(self.path("photo-pro.req")).unwrap();
        let license = portal.license_for(&request).unwrap();
        let path = self.path("photo-pro.lic");
        std::fs::write(&path, license.armored()).unwrap();
        let out = run(&["install", path.to_str().unwrap()]);
        assert!(
            out.starts_with("installed the license for 'photo-pro'"),
            "{out}"
        );
        path
    }

    /// Run with `input` on standard input.
    pub fn lic_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn state(&self) -> Vec<u8> {
        std::fs::read(self.store().join(lic_core::store::STATE_FILE)).unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `(error code: …)` line of a failure.
pub fn error_code(out: &Output) -> Option<String> {
    let err = stderr(out);
    let at = err.find("(error code: ")? + "(error code: ".len();
    err[at..].split(')').next().map(str::to_string)
}

pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(lic_core::fsutil::TEMP_PREFIX))
        .collect()
}

pub fn used(env: &Env, feature: &str) -> u64 {
    let out = env.lic(&["status", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the store must open and verify: {out:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == feature)
        .map_or(0, |f| f["used"].as_u64().unwrap())
}
