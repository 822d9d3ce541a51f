//! The `LIC1:` QR text of activation requests: decodes or is refused without a panic;
//! what decodes encodes to the same text form of the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lic_core::format::qrtext;

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(cose)) = qrtext::decode(data) {
        let text = qrtext::encode(&cose);
        let again = qrtext::decode(text.as_bytes())
            .expect("an encoded text is QR text")
            .expect("and decodes");
        assert_eq!(again, cose, "QR text round trip");
    }
});
