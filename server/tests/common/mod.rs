//! A site on loopback: the vendor (a stand-in that signs with the fixture vendor key),
//! the on-premise floating server (its store, its database, its routes on 127.0.0.1) and
//! workstations, all on one [`ManualClock`] so that time passes only when a test says.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lic_core::client::{Client, new_instance};
use lic_core::clock::ManualClock;
use lic_core::fingerprint::{RawComponents, StaticSource, component};
use lic_core::format::{self, Credential, License, LicenseType, Nonce, Refresh, SignedFile};
use lic_core::lease::{self, Granted, HttpTransport, LeaseError};
use lic_fixtures::stand_in::StandIn;
use lic_server::{Config, Server, ServerError, StatusReport, http};

pub const PRODUCT: &str = "photo-pro";
pub const KEY: &str = "PHPRO-7Q2M-K4XD-9WBT";

pub fn t0() -> DateTime<Utc> {
    lic_fixtures::at(2027, 3, 1, 9)
}

/// A machine's fingerprint components.
pub fn machine(name: &str) -> StaticSource {
    let mut c = RawComponents::new();
    c.insert(component::MACHINE_ID, format!("id-{name}"));
    c.insert(component::HOSTNAME, name);
    StaticSource(c)
}

/// The vendor's stand-in: floating licenses valid a year from `now`.
pub fn vendor(now: DateTime<Utc>) -> StandIn {
    let mut v = StandIn::new(now);
    v.license_type = LicenseType::Floating;
    v
}

/// A workstation: its lic store and the application instance that holds the lease.
pub struct Workstation {
    pub name: String,
    pub client: Client,
    pub instance: Nonce,
}

pub struct Site {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub vendor: StandIn,
    /// The pool license as the vendor issued it.
    pub pool_license: SignedFile,
    rt: tokio::runtime::Runtime,
    running: Option<(Arc<Server>, tokio::task::JoinHandle<()>)>,
    pub url: String,
}

impl Site {
    /// A server activated offline for a pool of `seats`, not yet serving.
    pub fn activated(seats: u32) -> Site {
        let clock = ManualClock::new(t0());
        let vendor = vendor(t0());
        let dir = tempfile::tempdir().unwrap();
        let admin = admin_client(
            &dir.path().join("server"),
            &vendor,
            &clock,
            machine("server"),
        );
        let request = admin
            .request_pool_activation(Credential::LicenseKey(KEY.into()), seats)
            .unwrap();
        let pool_license = vendor.license_for(request.bytes()).unwrap();
        admin.install(pool_license.armored().as_bytes()).unwrap();
        Site {
            dir,
            clock,
            vendor,
            pool_license,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            running: None,
            url: String::new(),
        }
    }

    /// Serving on loopback.
    pub fn serving(seats: u32, config: Config) -> Site {
        let mut site = Site::activated(seats);
        site.start(config).unwrap();
        site
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    pub fn db(&self) -> PathBuf {
        self.store().join("lic-server.db")
    }

    /// The server's store as its administrator's `lic --store` sees it.
    pub fn server_client(&self) -> Client {
        self.server_client_on(machine("server"))
    }

    pub fn server_client_on(&self, source: StaticSource) -> Client {
        admin_client(&self.store(), &self.vendor, &self.clock, source)
    }

    /// Start the server (again) on its store and database.
    pub fn start(&mut self, config: Config) -> Result<(), ServerError> {
        let server = Arc::new(Server::open(self.server_client(), &self.db(), config)?);
        let (listener, addr) = self
            .rt
            .block_on(http::bind("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let app = http::router(server.clone());
        let task = self.rt.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        self.url = format!("http://{addr}");
        self.running = Some((server, task));
        Ok(())
    }

    /// Stop the server as a kill would: the task is dropped wherever it is.
    pub fn kill(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
            let _ = self.rt.block_on(task);
        }
    }

    pub fn server(&self) -> &Server {
        &self.running.as_ref().expect("the server is running").0
    }

    pub fn status(&self) -> StatusReport {
        self.server().status().unwrap()
    }

    pub fn transport(&self) -> HttpTransport {
        HttpTransport::new(&self.url).unwrap()
    }

    pub fn workstation(&self, name: &str) -> Workstation {
        let client = Client::builder(PRODUCT)
            .store(self.dir.path().join(name))
            .trust(self.vendor.keys())
            .clock(self.clock.clone())
            .fingerprint_source(machine(name))
            .open()
            .unwrap();
        Workstation {
            name: name.into(),
            client,
            instance: new_instance(),
        }
    }

    pub fn take(&self, w: &Workstation, wait: bool) -> Result<Granted, LeaseError> {
        lease::take(
            &w.client,
            &self.transport(),
            Some(Credential::LicenseKey(KEY.into())),
            w.instance,
            None,
            wait,
        )
    }

    pub fn renew(&self, w: &Workstation) -> Result<Granted, LeaseError> {
        lease::renew(&w.client, &self.transport(), w.instance, None)
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// A refresh of the pool from the vendor: `seats`, valid a year from now.
    pub fn pool_refresh(&self, serial: u64, seats: u32) -> SignedFile {
        let l = format::payload_unverified::<License>(self.pool_license.bytes()).unwrap();
        let refresh = Refresh {
            license_id: l.license_id.clone(),
            activation_id: l.activation_id.clone(),
            product: l.product.clone(),
            device_key: l.device_key,
            serial,
            features: l.features.clone(),
            license_type: l.license_type,
            expires: Some(self.clock_now() + Duration::days(365)),
            offline_expiry: None,
            clock_tolerance: l.clock_tolerance,
            clock_floor: None,
            reason: "more seats".into(),
            issued: self.clock_now(),
            pool_seats: Some(seats),
        };
        format::sign(&refresh, &self.vendor.vendor).unwrap()
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use lic_core::clock::Clock as _;
        self.clock.now()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.kill();
    }
}

fn admin_client(
    store: &Path,
    vendor: &StandIn,
    clock: &ManualClock,
    source: StaticSource,
) -> Client {
    Client::builder(PRODUCT)
        .store(store)
        .trust(vendor.keys())
        .clock(clock.clone())
        .fingerprint_source(source)
        .open()
        .unwrap()
}

/// Copy a directory tree (a backup of a store).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
