//! The store's state file, as a customer who edits it would leave it: read with the
//! store's device key, it is refused as tampered or read; what is read is saved and
//! read back the same. (A store in a directory of this process, in memory where
//! /dev/shm exists.)
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lic_core::keys::SecretKey;
use lic_core::store::{STATE_FILE, Store};

fn setup() -> &'static (PathBuf, SecretKey) {
    static SETUP: OnceLock<(PathBuf, SecretKey)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let base = if let Some(tmp) = std::env::var_os("LIC_FUZZ_TMP") {
            PathBuf::from(tmp)
        } else if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("lic-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).expect("a store");
        // The device key, made with the store's empty state on first use.
        let key = store.device_key().expect("a device key");
        (dir, key)
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, key) = setup();
    let store = Store::open(dir).expect("opens");
    std::fs::write(dir.join(STATE_FILE), data).expect("writes the state");
    if let Ok(state) = store.load(key) {
        let lock = store.lock().expect("locks");
        store.save(&lock, key, &state).expect("saves");
        let again = store.load(key).expect("reads what it saved");
        assert_eq!(again, state, "state round trip");
    }
});
