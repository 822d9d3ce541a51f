//! The baseline of the `lic check` process benchmark (`cli/benches/process.rs`): the
//! least a process can do to read and verify one license file. It reads the armored
//! license named on its command line with `std::fs` and verifies it with
//! `lic_core::format::open::<License>` against the fixture vendor key, compiled in.
//! Nothing else: no argument parser, no store, no fingerprint.
//!
//! Built for the benchmark only; it is not a tool for users (exit status 0 if the file
//! verifies, 1 if not, 2 without an argument).

use std::process::ExitCode;

use lic_core::format::{self, License};
use lic_core::keys::Keyring;

/// The fixture vendor key (test key; its private half is public).
const VENDOR_KEY: &str = include_str!("../../../fixtures/keys/vendor.pub.pem");

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: lic-bench-minimal LICENSE-FILE");
        return ExitCode::from(2);
    };
    let verified = Keyring::from_pem(VENDOR_KEY)
        .map_err(|e| e.to_string())
        .and_then(|keys| {
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            format::open::<License>(&bytes, &keys).map_err(|e| e.to_string())
        });
    match verified {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
