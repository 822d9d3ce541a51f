//! The key files: a device or vendor private key (PKCS#8 PEM), a public key and a trust
//! file (SPKI PEM blocks). Nothing panics; what is read writes back to PEM that reads as
//! the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lic_core::keys::{Keyring, PublicKey, SecretKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = SecretKey::from_pem(text) {
        let again = SecretKey::from_pem(&key.to_pem()).expect("its own PEM reads");
        assert_eq!(again.kid(), key.kid(), "private key round trip");
    }
    if let Ok(key) = PublicKey::from_pem(text) {
        let pem = key.to_pem();
        assert_eq!(PublicKey::from_pem(&pem).expect("reads").kid(), key.kid());
    }
    if let Ok(ring) = Keyring::from_pem(text) {
        let again = Keyring::from_pem(&ring.to_pem()).expect("its own PEM reads");
        let kids = |r: &Keyring| r.iter().map(|k| k.kid()).collect::<Vec<_>>();
        assert_eq!(kids(&again), kids(&ring), "trust file round trip");
    }
});
