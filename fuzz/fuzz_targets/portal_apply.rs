//! The portal's apply entry point (`lic-portal apply`, `POST /api/v1/apply`, the console's
//! uploads): any bytes, and the same signed again with the customer's device key. Nothing
//! panics, and after every file the portal takes, its books balance: a license's seats
//! used are its active activations, never more than its seats.
#![no_main]

mod common;

use chrono::Utc;
use common::portal::{books_balance, world};
use libfuzzer_sys::fuzz_target;
use lic_core::format::Credential;
use lic_portal::Actor;

fuzz_target!(|data: &[u8]| {
    let w = world();
    let adjust = common::Adjust {
        now: Utc::now(),
        lease_credential: Some(Credential::LicenseKey(w.floating_key.clone())),
    };
    let actor = Actor::anonymous("fuzz");
    for file in common::variants(data, &adjust) {
        if w.rt.block_on(w.portal.apply(&file, &actor)).is_ok() {
            w.rt.block_on(books_balance(w));
        }
    }
});
