//! The on-premise floating server's handlers (`lic-server serve`), through its router as
//! a workstation reaches them: the first byte picks the route, the rest is the body — as
//! it came, and signed again with the customer's device key. Nothing panics; every
//! answer is a success or a 4xx with a JSON error; the server never holds more leases
//! than its pool has seats.
#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use libfuzzer_sys::fuzz_target;
use lic_core::client::Client;
use lic_core::format::{Credential, LicenseType};
use lic_core::lease::{ROUTE_CHECKIN, ROUTE_CHECKOUT, ROUTE_RELEASE, ROUTE_RENEW, ROUTE_TAKE};
use lic_fixtures::stand_in::StandIn;
use lic_server::{Config, Server};

const SEATS: u32 = 3;
const ROUTES: [&str; 5] = [ROUTE_TAKE, ROUTE_RENEW, ROUTE_RELEASE, ROUTE_CHECKOUT, ROUTE_CHECKIN];

struct World {
    rt: tokio::runtime::Runtime,
    server: Arc<Server>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = common::scratch("lic-fuzz-onprem-");
        // The server's store, activated offline for a pool of SEATS on this machine.
        let mut vendor = StandIn::new(Utc::now());
        vendor.license_type = LicenseType::Floating;
        let open = || {
            Client::builder(lic_fixtures::PRODUCT)
                .store(dir.path().join("store"))
                .trust(vendor.keys())
                .open()
                .expect("the server's store")
        };
        let admin = open();
        let request = admin
            .request_pool_activation(
                Credential::LicenseKey(lic_fixtures::LICENSE_KEY.into()),
                SEATS,
            )
            .expect("a pool request");
        let license = vendor.license_for(request.bytes()).expect("a pool license");
        admin
            .install(license.armored().as_bytes())
            .expect("installed");
        let server = Server::open(open(), &dir.path().join("server.db"), Config::default())
            .expect("the server opens");
        World {
            rt: common::runtime(),
            server: Arc::new(server),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, body)) = data.split_first() else {
        return;
    };
    let w = world();
    let route = ROUTES[usize::from(select) % ROUTES.len()];
    let adjust = common::Adjust {
        now: Utc::now(),
        lease_credential: None,
    };
    let app = lic_server::http::router(Arc::clone(&w.server));
    for file in common::variants(body, &adjust) {
        if common::post(&w.rt, &app, route, "application/json", file).is_success() {
            let report = w.server.status().expect("the status");
            assert!(report.held <= report.seats, "{} of {} seats", report.held, report.seats);
        }
    }
});
