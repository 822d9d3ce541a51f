//! `open_any`, the entry point of `lic inspect`, `lic install` and the portal's apply:
//! verify against the fixtures' trusted keys and decode, whatever the bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lic_core::format;
use lic_core::keys::Keyring;

fn keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(lic_fixtures::trusted_keys)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = format::open_any(data, keys()) {
        // What verified is one of the kinds, and opens again the same.
        let kind = file.kind();
        let again = format::open_any(data, keys()).expect("opens again");
        assert_eq!(again.kind(), kind);
    }
});
