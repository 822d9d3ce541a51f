//! The strict CBOR reader: only deterministic encodings are accepted, so whatever it
//! accepts encodes back to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lic_core::format::cbor;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = cbor::decode_strict(data, "fuzz") {
        assert_eq!(cbor::encode_value(&value), data, "CBOR round trip");
    }
});
