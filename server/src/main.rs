//! `lic-server`: the on-premise floating license server (docs/on-premise.md).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lic_core::client::Client;
use lic_core::floating::Terms;
use lic_core::keys::Keyring;
use lic_server::{Config, Server, ServerError, StatusReport, http};

/// The trusted vendor keys installed beside the executable (as for `lic`).
const TRUST_FILE: &str = "trusted-keys.pem";

/// lic-server — lease the seats of a pool license on a network with no route to the
/// vendor.
///
/// Set up once, with lic and the server's store: `lic offline-activate --pool-seats N
/// --store DIR --product P --key KEY` writes the request for the vendor; `lic install
/// FILE --store DIR` installs the pool license that comes back. Then `lic-server serve`
/// leases those seats to `lic lease/checkout/checkin --server URL` and applications on the
/// site's network. Usage reports and the deactivation of the server are made with lic on
/// the same store (`lic usage-report`, `lic offline-deactivate`).
#[derive(Debug, Parser)]
#[command(version, after_help = "Documentation: docs/on-premise.md")]
struct Cli {
    /// The server's lic store (its device key and pool license).
    #[arg(long, global = true, env = "LIC_SERVER_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// The product the pool is for.
    #[arg(
        long,
        global = true,
        env = "LIC_SERVER_PRODUCT",
        value_name = "PRODUCT"
    )]
    product: Option<String>,
    /// The server's database [default: lic-server.db in the store directory].
    #[arg(long, global = true, env = "LIC_SERVER_DB", value_name = "FILE")]
    db: Option<PathBuf>,
    /// Trust these vendor public keys instead of the trusted-keys.pem installed beside
    /// lic-server (for vendors and tests).
    #[arg(long, global = true, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the lease routes.
    ///
    /// Once listening, prints `listening on http://ADDRESS:PORT` (with --format json,
    /// `{"format":1,"listening":"http://ADDRESS:PORT"}`) as the first line of standard
    /// output; the log (every lease granted or refused) goes to standard error.
    Serve {
        /// Address to listen on (port 0: the system chooses; the first line tells which).
        #[arg(long, default_value = "0.0.0.0:8478")]
        listen: SocketAddr,
        #[command(flatten)]
        terms: TermArgs,
    },
    /// Show the pool, the seats held with their lease expiry and OED, and whether the
    /// server may lease (exit status 1 if not).
    Status,
    /// Reclaim seats with no heartbeat for longer than --reclaim-after-secs.
    Reclaim {
        /// Only list what would be reclaimed.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        terms: TermArgs,
    },
}

#[derive(Debug, clap::Args)]
struct TermArgs {
    /// How long a lease lasts unless renewed (seconds).
    #[arg(long, default_value_t = 600)]
    lease_secs: u64,
    /// When clients renew, in percent of the lease period.
    #[arg(long, default_value_t = 50)]
    renew_percent: u8,
    /// The most application instances per seat (default: no cap).
    #[arg(long)]
    max_processes: Option<u32>,
    /// How long after its lease lapsed a device gets its seat back ahead of the queue
    /// (seconds).
    #[arg(long, default_value_t = 0)]
    revival_secs: u64,
    /// The longest offline checkout in hours (0: no checkouts). Never past the pool
    /// license's expiry.
    #[arg(long, default_value_t = 168)]
    max_checkout_hours: u64,
    /// Keep every lease's seat for this many hours after its last renewal, even offline.
    #[arg(long)]
    lease_oed_hours: Option<u64>,
    /// Reclaim seats with no heartbeat for this long (seconds; default: never).
    #[arg(long)]
    reclaim_after_secs: Option<u64>,
}

impl TermArgs {
    fn config(&self) -> Config {
        Config {
            terms: Terms {
                lease_secs: self.lease_secs,
                renew_percent: self.renew_percent,
                max_processes: self.max_processes,
                revival_secs: self.revival_secs,
                max_checkout_hours: (self.max_checkout_hours > 0)
                    .then_some(self.max_checkout_hours),
                lease_oed_hours: self.lease_oed_hours,
            },
            reclaim_after_secs: self.reclaim_after_secs,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(&cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            report(cli.format, &e);
            std::process::ExitCode::from(2)
        }
    }
}

/// An error on standard error: the server's code and hint when it has them (text, or
/// one JSON line with `--format json`).
fn report(format: Format, e: &anyhow::Error) {
    let (code, hint) = match e.downcast_ref::<ServerError>() {
        Some(s) => (s.code().to_owned(), s.hint()),
        None => ("server-setup".to_owned(), String::new()),
    };
    if format == Format::Json {
        let error = serde_json::json!({
            "format": 1,
            "error": {"code": code, "message": format!("{e:#}"), "hint": hint, "exit": 2},
        });
        eprintln!("{error}");
    } else {
        eprintln!("error: {e:#} ({code})");
        if !hint.is_empty() {
            eprintln!("hint: {hint}");
        }
    }
}

fn keyring(cli: &Cli) -> Result<Keyring> {
    let path = match &cli.trust {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join(TRUST_FILE)))
            .filter(|p| p.is_file())
            .context(
                "no trusted vendor keys: install the vendor's trusted-keys.pem beside \
                 lic-server, or pass --trust FILE",
            )?,
    };
    Keyring::read(&path).with_context(|| format!("reading the vendor keys in {}", path.display()))
}

fn open(cli: &Cli, config: Config) -> Result<Server> {
    open_with(cli, config, Server::open)
}

type Opener = fn(Client, &Path, Config) -> Result<Server, ServerError>;

fn open_with(cli: &Cli, config: Config, opener: Opener) -> Result<Server> {
    let Some(store) = &cli.store else {
        bail!("which store? pass --store DIR (the store the pool license was installed in)");
    };
    let Some(product) = &cli.product else {
        bail!("which product? pass --product PRODUCT (the product of the pool license)");
    };
    if !store.is_dir() {
        bail!(
            "there is no store at {}: activate the server first with `lic offline-activate \
             --pool-seats N --store {0} --product {product} --key KEY`",
            store.display()
        );
    }
    let client = Client::builder(product.clone())
        .store(store)
        .trust(keyring(cli)?)
        .open()
        .with_context(|| format!("opening the store {}", store.display()))?;
    let db = cli
        .db
        .clone()
        .unwrap_or_else(|| Path::new(store).join("lic-server.db"));
    Ok(opener(client, &db, config)?)
}

fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Serve { listen, terms } => serve(cli, *listen, terms),
        Command::Status => {
            let server = open_for_status(cli)?;
            let report = server.status()?;
            print_status(cli.format, &report)?;
            Ok(if report.problems.is_empty() { 0 } else { 1 })
        }
        Command::Reclaim { dry_run, terms } => {
            let server = open(cli, terms.config())?;
            let reclaimed = server.reclaim(*dry_run)?;
            if cli.format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"format": 1, "dry_run": dry_run, "reclaimed": reclaimed})
                );
            } else if reclaimed.is_empty() {
                println!("no seat to reclaim");
            } else {
                for a in &reclaimed {
                    println!(
                        "{} {a}",
                        if *dry_run {
                            "would reclaim"
                        } else {
                            "reclaimed"
                        }
                    );
                }
            }
            Ok(0)
        }
    }
}

/// Status opens the server even when its license cannot be used, to say why.
fn open_for_status(cli: &Cli) -> Result<Server> {
    open_with(cli, Config::default(), Server::open_for_status)
}

fn print_status(format: Format, r: &StatusReport) -> Result<()> {
    if format == Format::Json {
        let mut value = serde_json::to_value(r)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("format".into(), 1.into());
        }
        println!("{value}");
        return Ok(());
    }
    println!("product:  {}", r.product);
    println!(
        "license:  {} (pool activation {}, serial {})",
        r.license, r.activation, r.serial
    );
    println!("seats:    {} held of {}", r.held, r.seats);
    println!("expires:  {}", r.expires.as_deref().unwrap_or("never"));
    for p in &r.problems {
        println!("problem:  {p}");
    }
    for h in &r.holders {
        println!(
            "  {} {} {} lease until {} OED {} last seen {} ({})",
            h.device.get(..12).unwrap_or(&h.device),
            h.activation,
            if h.holds { "holds" } else { "free " },
            h.lease_expires.as_deref().unwrap_or("-"),
            h.offline_expiry.as_deref().unwrap_or("-"),
            h.last_access,
            h.client
        );
    }
    Ok(())
}

fn serve(cli: &Cli, listen: SocketAddr, terms: &TermArgs) -> Result<u8> {
    let config = terms.config();
    let server = Arc::new(open(cli, config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (listener, bound) = http::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        if cli.format == Format::Json {
            println!(
                "{}",
                serde_json::json!({"format": 1, "listening": format!("http://{bound}")})
            );
        } else {
            println!("listening on http://{bound}");
        }
        tracing::info!(product = server.product(), address = %bound, "floating server started");
        if let Some(secs) = config.reclaim_after_secs {
            let s = server.clone();
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(std::time::Duration::from_secs(secs.clamp(10, 3600)));
                loop {
                    tick.tick().await;
                    let s = s.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.reclaim(false)).await
                    {
                        tracing::error!(error = %e, "reclamation failed");
                    }
                }
            });
        }
        axum::serve(listener, http::router(server))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")?;
        Ok(0)
    })
}
