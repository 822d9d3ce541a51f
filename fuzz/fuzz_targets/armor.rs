//! The armor reader: any bytes decode or are refused without a panic; what decodes
//! encodes to text that decodes to the same kind and bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lic_core::format::armor;

fuzz_target!(|data: &[u8]| {
    if let Ok((kind, bytes)) = armor::decode(data) {
        let text = armor::encode(kind, &bytes);
        let again = armor::decode(text.as_bytes()).expect("an encoded file decodes");
        assert_eq!(again, (kind, bytes), "armor round trip");
    }
});
