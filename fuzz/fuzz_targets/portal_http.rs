//! The portal's HTTP upload and lease handlers, through its router as a client reaches
//! them: the first byte picks the route (and whether the answer is asked for as text),
//! the rest is the body — as it came, and signed again with the customer's device key.
//! Nothing panics; every answer is a success or a 4xx with the API's JSON error (never a
//! 5xx); the books balance after every upload taken.
#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use axum::Router;
use chrono::Utc;
use common::portal::{World, books_balance, world};
use libfuzzer_sys::fuzz_target;
use lic_core::format::Credential;
use lic_portal::http::{AppState, RateLimiter, router};

const ROUTES: [&str; 8] = [
    "/api/v1/activate",
    "/api/v1/deactivate",
    "/api/v1/usage",
    "/api/v1/leases",
    "/api/v1/leases/renew",
    "/api/v1/leases/release",
    "/api/v1/checkout",
    "/api/v1/checkin",
];

/// The portal's router, made once (as `lic-portal serve` does), without an upload limit.
fn app(w: &'static World) -> Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        router(AppState::new(Arc::clone(&w.portal)).with_limiter(RateLimiter::unlimited()))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, body)) = data.split_first() else {
        return;
    };
    let w = world();
    let route = ROUTES[usize::from(select & 0x7f) % ROUTES.len()];
    let accept = if select & 0x80 != 0 {
        "text/plain"
    } else {
        "application/json"
    };
    let adjust = common::Adjust {
        now: Utc::now(),
        lease_credential: Some(Credential::LicenseKey(w.floating_key.clone())),
    };
    let app = app(w);
    for file in common::variants(body, &adjust) {
        if common::post(&w.rt, &app, route, accept, file).is_success() {
            w.rt.block_on(books_balance(w));
        }
    }
});
