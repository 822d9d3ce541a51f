//! The COSE envelope and every payload kind, from armored or binary input: nothing
//! panics; a payload that decodes, encoded and decoded again, is the same value, and
//! its encoding is stable (deterministic CBOR).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lic_core::format::{self, FileKind, Payload};
use lic_core::keys::SecretKey;

fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(lic_fixtures::vendor_key)
}

fn round_trip<T: Payload + PartialEq + std::fmt::Debug>(cose: &[u8]) {
    if let Ok(payload) = format::payload_unverified::<T>(cose) {
        // A payload that breaks the kind's rules may decode but is not signed again.
        let Ok(signed) = format::sign(&payload, key()) else {
            return;
        };
        // Fields of a later format version are read past (forward compatibility), so
        // the first encoding may be shorter than the input; from there on the value and
        // its bytes are fixed: decode → encode → the same value and the same bytes.
        let again = format::payload_unverified::<T>(signed.bytes()).expect("decodes");
        assert_eq!(again, payload, "{:?}: value round trip", T::KIND);
        let resigned = format::sign(&again, key()).expect("signs again");
        assert!(
            format::same_payload(signed.bytes(), resigned.bytes()),
            "{:?}: the payload encodes to other bytes",
            T::KIND
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok((_, cose)) = format::unarmor(data) else {
        return;
    };
    // Each file is read as the kind its header names, as every reader does.
    let Ok(kind) = format::kind_of(&cose) else {
        return;
    };
    match kind {
        FileKind::ActivationRequest => round_trip::<format::ActivationRequest>(&cose),
        FileKind::License => round_trip::<format::License>(&cose),
        FileKind::Refresh => round_trip::<format::Refresh>(&cose),
        FileKind::Deactivation => round_trip::<format::Deactivation>(&cose),
        FileKind::UsageReport => round_trip::<format::UsageReport>(&cose),
        FileKind::LeaseRequest => round_trip::<format::LeaseRequest>(&cose),
        FileKind::Lease => round_trip::<format::Lease>(&cose),
        FileKind::CheckIn => round_trip::<format::CheckIn>(&cose),
        FileKind::KeySet => round_trip::<format::KeySet>(&cose),
        FileKind::Receipt => round_trip::<format::Receipt>(&cose),
        _ => {}
    }
});
