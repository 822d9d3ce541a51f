//! `lic-portal`: the vendor's admin command. Glue only: arguments → `lic_portal` → text.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use lic_core::format::{Feature, Features, LicenseType, MatchRule};
use lic_core::keys::KeyError;
use lic_core::text::{escape, escape_json};
use lic_portal::db::{Db, redact};
use lic_portal::ops::{Activation, Applied, LicenseInfo, NewLicense, Policy, RefreshSpec};
use lic_portal::{Actor, Portal, PortalError};

/// lic-portal — the vendor's license portal: database, files, HTTP API.
#[derive(Debug, Parser)]
#[command(name = "lic-portal", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The portal's data directory (SQLite database and vendor keys); created with mode 0700.
    #[arg(
        long,
        global = true,
        env = "LIC_PORTAL_DATA",
        default_value = "lic-portal-data",
        value_name = "DIR"
    )]
    data: PathBuf,
    /// The database [default: sqlite://DATA/portal.db]; postgres://… for several instances.
    #[arg(long, global = true, env = "LIC_PORTAL_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// The directory of vendor private keys [default: DATA/keys]; created with mode 0700.
    #[arg(long, global = true, env = "LIC_PORTAL_KEYS", value_name = "DIR")]
    keys: Option<PathBuf>,
    /// Output format. json: every command prints one JSON document on standard output,
    /// `{"format": 1, …}` (the shape's version, then the command's fields; `serve` prints one
    /// line when listening), and an error as `{"format": 1, "error": {"code", "message",
    /// "hint"}}` on standard error; exit statuses are the same. Shapes: docs/json-output.md.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create (or check) the database and the first vendor signing key.
    Init,
    /// Serve the HTTP API.
    ///
    /// Once listening, prints `listening on http://ADDRESS:PORT` (with --format json,
    /// `{"format":1,"listening":"http://ADDRESS:PORT"}`) as the first line of standard output;
    /// logs go to standard error, coloured only on a terminal and without NO_COLOR.
    Serve {
        /// Address to listen on (port 0: the system chooses; the first line tells which).
        #[arg(long, default_value = "127.0.0.1:8477")]
        listen: std::net::SocketAddr,
        /// Anonymous uploads allowed per client address and minute (0: no limit, e.g.
        /// behind a proxy that limits, or for a load test).
        #[arg(long, default_value_t = 60)]
        uploads_per_minute: u32,
    },
    /// Quick start: a portal on SQLite with a demo product and license; prints what to try.
    ///
    /// Everything lives in the demo's own directory (--dir): the portal's database and
    /// keys, and the demo customer's license store and files. Each run starts it afresh;
    /// a directory the demo did not make is never touched.
    Demo {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8477")]
        listen: std::net::SocketAddr,
        /// The demo's directory, emptied at each start.
        #[arg(long, default_value = "lic-demo", value_name = "DIR")]
        dir: PathBuf,
        /// Set everything up and print the instructions, but do not serve.
        #[arg(long)]
        no_serve: bool,
    },
    /// Products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Policies: how licenses of a product behave.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Licenses.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Activations (devices holding seats).
    #[command(subcommand)]
    Activation(ActivationCommand),
    /// Apply uploaded files (activation requests, deactivations, usage reports).
    ///
    /// Writes each response beside its file (a license as NAME.lic, a receipt as
    /// NAME.receipt) or into --out-dir; prints a line per file (a receipt's with a line
    /// that says what it is for) and a summary. Exit status 0 if every file was applied,
    /// 1 if any was refused. Works with `find … | xargs`.
    Apply {
        /// The files; `-` reads one file from standard input (the response goes to
        /// standard output).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write responses into this directory (created, mode 0755, if missing; if it
        /// cannot be, nothing is applied).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Support: write a refresh file for one activation (serial + 1; the reason is audited).
    Refresh {
        #[arg(long, value_name = "ID")]
        activation: String,
        /// Why (ticket, order); recorded in the audit log.
        #[arg(long)]
        reason: String,
        /// Extend the expiry by this many days (from the current expiry, or from now).
        #[arg(long, value_name = "DAYS")]
        extend_days: Option<i64>,
        /// A new expiry date (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        /// Reset the device's clock floor to this time (`now`, YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "TIME")]
        clock_floor: Option<String>,
        /// Replace the features: NAME, NAME=LIMIT or NAME=LIMIT+ (overage allowed); repeat.
        #[arg(long = "feature", value_name = "SPEC")]
        features: Vec<String>,
        /// Where to write the refresh file.
        #[arg(long, value_name = "FILE", default_value = "license_refresh.lic")]
        out: PathBuf,
    },
    /// Vendor signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Show the audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only entries about this object (license, activation, key…).
        #[arg(long, value_name = "ID")]
        subject: Option<String>,
    },
    /// API tokens for vendor and support staff.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum ProductCommand {
    Create {
        /// The product code clients name (e.g. photo-pro).
        code: String,
        #[arg(long)]
        name: String,
    },
    List,
    Show {
        code: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    Create(PolicyArgs),
    List,
    Show { id: String },
}

#[derive(Debug, Args)]
struct PolicyArgs {
    #[arg(long)]
    product: String,
    #[arg(long)]
    name: String,
    #[arg(long = "type", value_parser = parse_license_type, default_value = "perpetual")]
    license_type: LicenseType,
    #[arg(long, default_value_t = 1)]
    seats: i64,
    /// Days a license is valid from activation (none: no expiry).
    #[arg(long, value_name = "DAYS")]
    validity_days: Option<i64>,
    /// A feature: NAME, NAME=LIMIT or NAME=LIMIT+ (overage allowed); repeat.
    #[arg(long = "feature", value_name = "SPEC")]
    features: Vec<String>,
    /// Refuse offline activation for licenses of this policy (a license may override).
    #[arg(long)]
    no_offline: bool,
    /// Fingerprint components that must match (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "machine-id")]
    match_required: Vec<String>,
    /// How many of the other components may change.
    #[arg(long, default_value_t = 2)]
    match_max_changed: u32,
    /// How far (seconds) a device clock may go back before it is a violation.
    #[arg(long, default_value_t = 86_400)]
    clock_tolerance: i64,
    /// Maximum offline checkout, in days (floating licenses).
    #[arg(long)]
    max_offline_days: Option<i64>,
    /// Inactivity threshold for reclaiming seats, in seconds.
    #[arg(long)]
    inactivity_secs: Option<i64>,
    /// Churn control: at most this many deactivations per period…
    #[arg(long, requires = "deactivation_period_days")]
    max_deactivations: Option<i64>,
    /// …of this many days.
    #[arg(long, requires = "max_deactivations")]
    deactivation_period_days: Option<i64>,
}

#[derive(Debug, Subcommand)]
enum LicenseCommand {
    Create {
        #[arg(long)]
        policy: String,
        /// A user-based license for this user id (otherwise a license key is generated).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        seats: Option<i64>,
        /// Override the policy: allow (yes) or refuse (no) offline activation.
        #[arg(long, value_parser = parse_yes_no)]
        offline: Option<bool>,
        /// A fixed expiry date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        expires: Option<String>,
        /// Override the policy's features: NAME, NAME=LIMIT or NAME=LIMIT+; repeat.
        #[arg(long = "feature", value_name = "SPEC")]
        features: Vec<String>,
    },
    List,
    Show {
        id: String,
    },
    /// No new activations for this license.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum ActivationCommand {
    List {
        #[arg(long)]
        license: Option<String>,
    },
    Show {
        id: String,
    },
    /// Deactivate on the server (a lost machine): frees the seat.
    Deactivate {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Sign an activation's license (and last refresh) again with the active key, the
    /// content unchanged: for devices whose files a revoked key signed. Writes
    /// ID.lic (and ID.refresh.lic) into --out-dir; the customer installs them with
    /// `lic install`.
    Resign {
        /// The activation; or --signed-by KID for every active activation whose files that
        /// key signed.
        #[arg(required_unless_present = "signed_by", conflicts_with = "signed_by")]
        id: Option<String>,
        /// Every active activation whose license or refresh this vendor key signed.
        #[arg(long, value_name = "KID")]
        signed_by: Option<String>,
        /// Where to write the files (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print the public keys new installations must trust (SPKI PEM; every key not
    /// revoked, active first).
    Export {
        /// Export the public key of this standalone private key file instead.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Make a new signing key the active one (the old one stays trusted).
    ///
    /// Without --key a new key is made in this instance's key directory. With several
    /// instances, make it first (`key generate --out FILE` prints its KID), copy it into
    /// every other instance's key directory as KID.key.pem, then rotate to it here with
    /// --key FILE: every instance can sign with it from the moment it is active.
    Rotate {
        /// Rotate to this private key file (PKCS#8 PEM) instead of a new one.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// List the vendor keys.
    List,
    /// Revoke a vendor key that leaked: publishes a key set (signed by the active key)
    /// that devices install to stop trusting it. Rotate to a new key first.
    Revoke {
        /// The key id of the key to revoke (`lic-portal key list`).
        kid: String,
        /// Why (recorded in the audit log and shown on devices with every file it signed).
        #[arg(long)]
        reason: String,
        /// Also write the new key set to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a published key set (the newest, or --version N) for devices to install.
    Keyset {
        /// This version instead of the newest (a device that missed some installs them
        /// oldest first).
        #[arg(long)]
        version: Option<i64>,
        /// Write it to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing file with other content.
        #[arg(long)]
        force: bool,
    },
    /// Generate a standalone vendor signing key file (PKCS#8 PEM, mode 0600).
    Generate {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token (shown once; stored only hashed).
    Create {
        #[arg(long)]
        name: String,
        /// admin, support or read-only.
        #[arg(long)]
        role: String,
        /// Limit the token to these products (repeat); default: all products.
        #[arg(long = "product")]
        products: Vec<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

fn parse_license_type(s: &str) -> Result<LicenseType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "one of: perpetual, time-limited, subscription, trial, floating".to_string())
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err("yes or no".into()),
    }
}

/// NAME, NAME=LIMIT, NAME=LIMIT+ (overage allowed).
fn parse_features(specs: &[String]) -> anyhow::Result<Features> {
    let mut out = Features::new();
    for spec in specs {
        let (name, feature) = match spec.split_once('=') {
            None => (spec.as_str(), Feature::default()),
            Some((name, limit)) => {
                let (digits, overage) = match limit.strip_suffix('+') {
                    Some(d) => (d, true),
                    None => (limit, false),
                };
                let limit: u64 = digits.parse().with_context(|| {
                    format!("feature '{spec}': the limit must be a whole number")
                })?;
                (
                    name,
                    Feature {
                        limit: Some(limit),
                        overage,
                    },
                )
            }
        };
        if name.trim().is_empty() {
            bail!("feature '{spec}' has no name");
        }
        out.insert(name.to_string(), feature);
    }
    Ok(out)
}

/// YYYY-MM-DD (midnight UTC), RFC 3339, or `now`.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    if s == "now" {
        return Ok(chrono::Utc::now().timestamp());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("'{s}' is not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    Ok(d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let format = cli.global.format;
    if let Command::Key(KeyCommand::Generate { out, force }) = &cli.command {
        return finish(key_generate(out, *force, format), format);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return finish(Err(e.into()), format),
    };
    finish(runtime.block_on(run(cli)), format)
}

/// Arguments clap refused: its report (status 2), or with `--format json` on the command
/// line a JSON error (code `usage`). `--help` and `--version` print as they always do.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = {
        let args: Vec<String> = std::env::args().collect();
        args.windows(2)
            .any(|w| w[0] == "--format" && w[1] == "json")
            || args.iter().any(|a| a == "--format=json")
    };
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    // clap's report up to its usage line, on one line, without the "error: " prefix.
    let text = e.to_string();
    let message = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    print_json_error(
        "usage",
        &message,
        "see lic-portal --help, or lic-portal COMMAND --help",
    );
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// The version of every JSON document lic-portal prints (docs/json-output.md).
const JSON_VERSION: u32 = 1;

/// A JSON document: the shape's version first, then the command's fields.
#[derive(serde::Serialize)]
struct Doc<T> {
    format: u32,
    #[serde(flatten)]
    body: T,
}

/// `{"format": 1, …fields}` on standard output (pretty-printed; strings escaped as in
/// [`print_json`]).
fn print_doc(body: serde_json::Value) -> anyhow::Result<()> {
    print_json(&Doc {
        format: JSON_VERSION,
        body,
    })
}

/// `{"format": 1, "error": {"code", "message", "hint"}}` on one line of standard error.
fn print_json_error(code: &str, message: &str, hint: &str) {
    let doc = Doc {
        format: JSON_VERSION,
        body: serde_json::json!({
            "error": { "code": code, "message": message, "hint": hint }
        }),
    };
    match serde_json::to_string(&doc) {
        Ok(line) => eprintln!("{}", escape_json(&line)),
        Err(_) => eprintln!("error: {}", escape(message)),
    }
}

/// The code, message and hint of an error, for the text and the JSON report alike.
fn describe(e: &anyhow::Error) -> (&'static str, String, Option<&'static str>) {
    let message = format!("{e:#}");
    if let Some(p) = e.downcast_ref::<PortalError>() {
        (p.code(), message, Some(p.hint()))
    } else if let Some(k) = e.downcast_ref::<KeyError>() {
        ("key", message, Some(k.hint()))
    } else {
        ("error", message, None)
    }
}

/// The exit status; on an error, the report on standard error (a JSON line with
/// `--format json`). A message may quote an uploaded file's strings: control characters
/// and bidi overrides in it are escaped.
fn finish(result: anyhow::Result<ExitCode>, format: Format) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            let (code, message, hint) = describe(&e);
            match format {
                Format::Json => print_json_error(
                    code,
                    &message,
                    hint.unwrap_or("see the message; lic-portal COMMAND --help shows the options"),
                ),
                Format::Text => {
                    eprintln!("error: {}", escape(&message));
                    if let Some(hint) = hint {
                        eprintln!("  what to do: {hint}");
                    }
                    if e.downcast_ref::<PortalError>().is_some() {
                        eprintln!("  (error code: {code})");
                    }
                }
            }
            ExitCode::from(2)
        }
    }
}

fn key_generate(out: &Path, force: bool, format: Format) -> anyhow::Result<ExitCode> {
    let public = lic_portal::vendor::generate(out, force)?;
    match format {
        Format::Json => print_doc(serde_json::json!({
            "kid": public.kid().to_string(),
            "out": out.display().to_string(),
        }))?,
        Format::Text => {
            eprintln!(
                "wrote vendor signing key {} to {}",
                public.kid(),
                out.display()
            );
            eprintln!(
                "keep it secret; give clients its public key: lic-portal key export --key FILE"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Paths {
    url: String,
    keys: PathBuf,
}

fn paths(g: &Global) -> anyhow::Result<Paths> {
    let url = match &g.database {
        Some(url) => url.clone(),
        None => {
            // Private (0700) whatever the umask: it holds the database and the keys.
            lic_core::fsutil::create_dir_all(&g.data, lic_core::fsutil::PRIVATE_DIR_MODE)
                .with_context(|| {
                    format!("cannot create the data directory {}", g.data.display())
                })?;
            format!("sqlite://{}", g.data.join("portal.db").display())
        }
    };
    Ok(Paths {
        url,
        keys: g.keys.clone().unwrap_or_else(|| g.data.join("keys")),
    })
}

async fn connect(g: &Global) -> anyhow::Result<(Db, Paths)> {
    let p = paths(g)?;
    let db = Db::connect(&p.url)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&p.url)))?;
    Ok((db, p))
}

async fn open(g: &Global) -> anyhow::Result<Portal> {
    let (db, p) = connect(g).await?;
    Portal::open(db, &p.keys).await.map_err(|e| match e {
        PortalError::Key(_) => anyhow::Error::from(e).context("run `lic-portal init` first"),
        other => other.into(),
    })
}

/// JSON on standard output; control and bidi characters in strings as `\uXXXX` escapes.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value)?;
    out(&format!("{}\n", escape_json(&json)))
}

/// Standard output; a closed pipe is not an error.
fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn show_license(l: &LicenseInfo) -> String {
    let who = match (&l.key_hint, &l.user_id) {
        (_, Some(u)) => format!("user {u}"),
        (Some(h), None) => format!("key …{h}"),
        _ => "-".into(),
    };
    let usage = l
        .usage
        .iter()
        .map(|(f, n)| format!("{f}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{}  {}  {}  seats {}/{}  {}  expires {}  {}\n",
        l.id,
        l.product,
        who,
        l.seats_used,
        l.seats,
        l.status,
        when(l.expires),
        usage
    )
}

fn show_activation(a: &Activation) -> String {
    let fork = match (a.fork.as_deref(), a.flags.len()) {
        (Some(f), n) if n > 1 => format!("  FLAGGED ({n} flags, latest): {f}"),
        (Some(f), _) => format!("  FLAGGED: {f}"),
        (None, _) => String::new(),
    };
    let state = match a.closed_by.as_deref() {
        Some(by) => format!("{} by {by}", a.state),
        None => a.state.clone(),
    };
    format!(
        "{}  license {}  {state}  device {}  serial {}  last seen {}{}\n",
        a.id,
        a.license,
        a.device_kid,
        a.serial,
        when(Some(a.last_accessed)),
        fork
    )
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    let json = g.format == Format::Json;
    let actor = Actor::cli();
    match cli.command {
        Command::Init => {
            let (db, p) = connect(g).await?;
            let kid = Portal::init(&db, &p.keys).await?;
            if json {
                print_doc(serde_json::json!({
                    "database": redact(&p.url),
                    "vendor_key": kid.to_string(),
                    "keys_dir": p.keys.display().to_string(),
                }))?;
            } else {
                println!("database: {}", redact(&p.url));
                println!("vendor key: {kid} (private key in {})", p.keys.display());
                println!(
                    "give clients the public key: lic-portal key export --out trusted-keys.pem"
                );
            }
        }
        Command::Serve {
            listen,
            uploads_per_minute,
        } => serve(g, listen, uploads_per_minute).await?,
        Command::Demo {
            listen,
            dir,
            no_serve,
        } => demo(g, listen, &dir, no_serve).await?,
        Command::Product(c) => {
            let portal = open(g).await?;
            match c {
                ProductCommand::Create { code, name } => {
                    let p = portal.create_product(&code, &name, &actor).await?;
                    if json {
                        print_doc(serde_json::json!({ "product": p }))?;
                    } else {
                        println!("created product {} ({})", p.code, p.name);
                    }
                }
                ProductCommand::List => {
                    let list = portal.products(None).await?;
                    if json {
                        print_doc(serde_json::json!({ "items": list }))?;
                    } else {
                        out(&list
                            .iter()
                            .map(|p| format!("{}  {}\n", p.code, p.name))
                            .collect::<String>())?;
                    }
                }
                ProductCommand::Show { code } => {
                    let p = portal.product(&code).await?;
                    if json {
                        print_doc(serde_json::json!({ "product": p }))?;
                    } else {
                        print_json(&p)?;
                    }
                }
            }
        }
        Command::Policy(c) => {
            let portal = open(g).await?;
            match c {
                PolicyCommand::Create(a) => {
                    let spec = Policy {
                        id: String::new(),
                        product: a.product,
                        name: a.name,
                        license_type: a.license_type,
                        allow_offline: !a.no_offline,
                        seats: a.seats,
                        validity_days: a.validity_days,
                        features: parse_features(&a.features)?,
                        match_rule: MatchRule {
                            required: a.match_required,
                            max_changed: a.match_max_changed,
                        },
                        clock_tolerance_secs: a.clock_tolerance,
                        max_offline_days: a.max_offline_days,
                        inactivity_secs: a.inactivity_secs,
                        max_deactivations: a.max_deactivations,
                        deactivation_period_days: a.deactivation_period_days,
                        created: 0,
                    };
                    let p = portal.create_policy(spec, &actor).await?;
                    if json {
                        print_doc(serde_json::json!({ "policy": p }))?;
                    } else {
                        println!("created policy {} ({} / {})", p.id, p.product, p.name);
                    }
                }
                PolicyCommand::List => {
                    let list = portal.policies(None).await?;
                    if json {
                        print_doc(serde_json::json!({ "items": list }))?;
                    } else {
                        out(&list
                            .iter()
                            .map(|p| {
                                format!(
                                    "{}  {}  {}  {} seat(s)\n",
                                    p.id, p.product, p.name, p.seats
                                )
                            })
                            .collect::<String>())?;
                    }
                }
                PolicyCommand::Show { id } => {
                    let p = portal.policy(&id).await?;
                    if json {
                        print_doc(serde_json::json!({ "policy": p }))?;
                    } else {
                        print_json(&p)?;
                    }
                }
            }
        }
        Command::License(c) => {
            let portal = open(g).await?;
            match c {
                LicenseCommand::Create {
                    policy,
                    user,
                    seats,
                    offline,
                    expires,
                    features,
                } => {
                    let spec = NewLicense {
                        policy,
                        user_id: user,
                        seats,
                        allow_offline: offline,
                        features: if features.is_empty() {
                            None
                        } else {
                            Some(parse_features(&features)?)
                        },
                        expires: expires.as_deref().map(parse_time).transpose()?,
                    };
                    let created = portal.create_license(spec, &actor).await?;
                    if json {
                        print_doc(serde_json::json!({
                            "license": created.license,
                            "key": created.key,
                        }))?;
                    } else {
                        println!("created license {}", created.license.id);
                        if let Some(key) = &created.key {
                            println!("license key: {key}");
                            println!("(shown only now: the portal stores it hashed)");
                        }
                    }
                }
                LicenseCommand::List => {
                    let list = portal.licenses(None).await?;
                    if json {
                        print_doc(serde_json::json!({ "items": list }))?;
                    } else {
                        out(&list.iter().map(show_license).collect::<String>())?;
                    }
                }
                LicenseCommand::Show { id } => {
                    let l = portal.license(&id).await?;
                    if json {
                        print_doc(serde_json::json!({ "license": l }))?;
                    } else {
                        out(&show_license(&l))?;
                    }
                }
                LicenseCommand::Revoke { id, reason } => {
                    let l = portal.revoke_license(&id, &reason, &actor).await?;
                    if json {
                        print_doc(serde_json::json!({ "license": l }))?;
                    } else {
                        println!("revoked license {id}");
                    }
                }
            }
        }
        Command::Activation(c) => {
            let portal = open(g).await?;
            match c {
                ActivationCommand::List { license } => {
                    let list = portal.activations(license.as_deref(), None).await?;
                    if json {
                        print_doc(serde_json::json!({ "items": list }))?;
                    } else {
                        out(&list.iter().map(show_activation).collect::<String>())?;
                    }
                }
                ActivationCommand::Show { id } => {
                    let a = portal.activation(&id).await?;
                    if json {
                        print_doc(serde_json::json!({ "activation": a }))?;
                    } else {
                        out(&show_activation(&a))?;
                    }
                }
                ActivationCommand::Deactivate { id, reason } => {
                    let a = portal.deactivate(&id, &reason, &actor).await?;
                    if json {
                        print_doc(serde_json::json!({ "activation": a }))?;
                    } else {
                        println!("deactivated {id}: its seat is free");
                    }
                }
                ActivationCommand::Resign {
                    id,
                    signed_by,
                    out_dir,
                } => {
                    return resign(g, &portal, id, signed_by, &out_dir, &actor).await;
                }
            }
        }
        Command::Apply { files, out_dir } => {
            return apply(g, &files, out_dir.as_deref(), &actor).await;
        }
        Command::Refresh {
            activation,
            reason,
            extend_days,
            expires,
            clock_floor,
            features,
            out: path,
        } => {
            let portal = open(g).await?;
            let spec = RefreshSpec {
                reason,
                features: if features.is_empty() {
                    None
                } else {
                    Some(parse_features(&features)?)
                },
                expires: expires.as_deref().map(parse_time).transpose()?,
                extend_days,
                clock_floor: clock_floor.as_deref().map(parse_time).transpose()?,
            };
            // Refuse an existing output file before the refresh is made: making one uses
            // up a serial and is audited.
            let to_stdout = path == Path::new("-");
            if !to_stdout && path.exists() {
                bail!(
                    "{} already exists; choose another file with --out",
                    path.display()
                );
            }
            let refresh = portal.refresh(&activation, &spec, &actor).await?;
            if json {
                // With `--out -` the file goes into the document, not before it.
                if !to_stdout {
                    write_response(&path, &refresh)?;
                }
                print_doc(serde_json::json!({
                    "activation": activation,
                    "out": (!to_stdout).then(|| path.display().to_string()),
                    "refresh": refresh,
                }))?;
            } else {
                write_response(&path, &refresh)?;
                let place = if to_stdout {
                    "standard output".to_string()
                } else {
                    path.display().to_string()
                };
                // Beside the file on standard output, the words go to standard error.
                let say = |line: String| {
                    if to_stdout {
                        eprintln!("{line}");
                    } else {
                        println!("{line}");
                    }
                };
                say(format!(
                    "wrote the refresh for {activation} to {place}; send it to the customer"
                ));
                say(format!(
                    "they install it with: lic install {}",
                    path.display()
                ));
            }
        }
        Command::Key(c) => return key(g, c, &actor).await,
        Command::Audit { limit, subject } => {
            let portal = open(g).await?;
            let entries = portal.audit_log(limit, subject.as_deref()).await?;
            if json {
                print_doc(serde_json::json!({ "items": entries }))?;
            } else {
                out(&entries
                    .iter()
                    .map(|e| {
                        let at = chrono::DateTime::from_timestamp_millis(e.at)
                            .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
                        format!(
                            "{at}  {}  {}  {}{}{}\n",
                            e.actor,
                            e.action,
                            e.subject.as_deref().unwrap_or("-"),
                            e.reason
                                .as_deref()
                                .map_or(String::new(), |r| format!("  reason: {r}")),
                            e.file_hash.as_deref().map_or(String::new(), |h| format!(
                                "  file {}",
                                &h[..16.min(h.len())]
                            )),
                        )
                    })
                    .collect::<String>())?;
            }
        }
        Command::Token(c) => return token(g, c).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `activation resign`: each activation on its own; one that fails is reported and the
/// others go on (signing again is repeatable: the same files come out).
async fn resign(
    g: &Global,
    portal: &Portal,
    id: Option<String>,
    signed_by: Option<String>,
    out_dir: &Path,
    actor: &Actor,
) -> anyhow::Result<ExitCode> {
    let json = g.format == Format::Json;
    let ids = match (id, signed_by) {
        (Some(id), _) => vec![id],
        (None, Some(kid)) => portal.activations_signed_by(&kid).await?,
        (None, None) => bail!("give an activation id or --signed-by KID"),
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for id in &ids {
        let written: anyhow::Result<(String, Vec<String>)> = async {
            let r = portal.resign(id, actor).await?;
            let license = out_dir.join(format!("{id}.lic"));
            write_response(&license, &r.license)?;
            let mut files = vec![license.display().to_string()];
            if let Some(refresh) = &r.refresh {
                let path = out_dir.join(format!("{id}.refresh.lic"));
                write_response(&path, refresh)?;
                files.push(path.display().to_string());
            }
            Ok((r.signed_by, files))
        }
        .await;
        match written {
            Ok((signed_by, files)) => {
                if !json {
                    println!("{id}: signed again by {signed_by} → {}", files.join(", "));
                }
                done.push(serde_json::json!({
                    "activation": id, "signed_by": signed_by, "files": files
                }));
            }
            Err(e) => {
                let (code, message, hint) = describe(&e);
                if !json {
                    eprintln!(
                        "{id}: NOT done: {} (run `lic-portal activation resign {id}` again once \
                         it is sorted out)",
                        escape(&message)
                    );
                }
                failed.push(serde_json::json!({
                    "activation": id,
                    "error": { "code": code, "message": message, "hint": hint },
                }));
            }
        }
    }
    if json {
        print_doc(serde_json::json!({ "items": done, "failed": failed }))?;
    } else if ids.is_empty() {
        println!("no active activation has files signed by that key");
    } else if !done.is_empty() {
        println!(
            "send each customer their files; they install them with: \
             lic install ID.lic [ID.refresh.lic]"
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn key(g: &Global, c: KeyCommand, actor: &Actor) -> anyhow::Result<ExitCode> {
    let json = g.format == Format::Json;
    match c {
        KeyCommand::Export {
            key,
            out: path,
            force,
        } => {
            let (pem, kids) = match key {
                Some(file) => {
                    let public = lic_portal::vendor::export(&file)?;
                    (public.to_pem(), vec![public.kid().to_string()])
                }
                // Every key the portal signed with and did not revoke.
                None => {
                    let (db, _) = connect(g).await?;
                    let ring = lic_portal::vendor::keyring(&db).await?;
                    let kids = ring.iter().map(|k| k.kid().to_string()).collect();
                    (ring.to_pem(), kids)
                }
            };
            if let Some(path) = &path {
                lic_core::fsutil::write_file(
                    path,
                    pem.as_bytes(),
                    lic_core::fsutil::PUBLIC_MODE,
                    force,
                )
                .with_context(|| {
                    format!("cannot write {} (--force replaces it)", path.display())
                })?;
            }
            if json {
                print_doc(serde_json::json!({
                    "keys": kids,
                    "pem": pem,
                    "out": path.as_ref().map(|p| p.display().to_string()),
                }))?;
            } else {
                match &path {
                    Some(path) => {
                        println!("wrote the trusted vendor keys to {}", path.display());
                    }
                    None => out(&pem)?,
                }
            }
        }
        KeyCommand::Rotate { key } => {
            let portal = open(g).await?;
            let key = match key {
                Some(file) => {
                    let secret = lic_core::keys::SecretKey::read(&file)
                        .with_context(|| format!("cannot use {} as the new key", file.display()))?;
                    portal.rotate_key_to(secret, actor).await?
                }
                None => portal.rotate_key(actor).await?,
            };
            if json {
                let kid = key.kid().to_string();
                let (db, _) = connect(g).await?;
                let info = lic_portal::vendor::list(&db)
                    .await?
                    .into_iter()
                    .find(|k| k.kid == kid)
                    .context("the new key is not in the key list")?;
                let set = portal.key_sets().await?.pop();
                print_doc(serde_json::json!({ "key": info, "key_set": set }))?;
            } else {
                println!(
                    "new active vendor key {}; export the keys again for new installations \
                     (lic-portal key export), and give installed ones the key set that adds it \
                     (lic-portal key keyset --out FILE; they install it with lic install FILE)",
                    key.kid()
                );
            }
        }
        KeyCommand::Revoke {
            kid,
            reason,
            out: path,
        } => {
            let portal = open(g).await?;
            let set = portal.revoke_key(&kid, &reason, actor).await?;
            if let Some(path) = &path {
                write_response(path, &set.file)?;
            }
            if json {
                print_doc(serde_json::json!({
                    "revoked": kid,
                    "key_set": set,
                    "out": path.as_ref().map(|p| p.display().to_string()),
                }))?;
            } else {
                println!(
                    "revoked vendor key {kid}; published key set version {} (signed by {})",
                    set.version, set.signed_by
                );
                if let Some(path) = &path {
                    println!("wrote it to {}", path.display());
                }
                println!(
                    "devices stop trusting the key once they install it (lic install FILE; the \
                     portal serves it at /api/v1/keys/keyset). Licenses it signed stop working \
                     there: sign them again with \
                     `lic-portal activation resign --signed-by {kid} --out-dir DIR`"
                );
            }
        }
        KeyCommand::Keyset {
            version,
            out: path,
            force,
        } => {
            let portal = open(g).await?;
            let sets = portal.key_sets().await?;
            let set = match version {
                Some(v) => sets.iter().find(|s| s.version == v),
                None => sets.last(),
            }
            .with_context(|| match version {
                Some(v) => format!("there is no key set version {v}"),
                None => "no key set was published yet: one is published when the vendor key is \
                         rotated or a key is revoked"
                    .to_string(),
            })?;
            if let Some(path) = &path {
                if force {
                    lic_core::fsutil::write_file(
                        path,
                        set.file.as_bytes(),
                        lic_core::fsutil::PUBLIC_MODE,
                        true,
                    )
                    .with_context(|| format!("cannot write {}", path.display()))?;
                } else {
                    // The same key set there already is fine; another is kept.
                    write_response(path, &set.file).context("--force replaces it")?;
                }
            }
            if json {
                print_doc(serde_json::json!({
                    "key_set": set,
                    "out": path.as_ref().map(|p| p.display().to_string()),
                }))?;
            } else {
                match &path {
                    Some(path) => println!(
                        "wrote key set version {} to {}",
                        set.version,
                        path.display()
                    ),
                    None => out(&set.file)?,
                }
            }
        }
        KeyCommand::List => {
            let (db, _) = connect(g).await?;
            let keys = lic_portal::vendor::list(&db).await?;
            if json {
                print_doc(serde_json::json!({ "items": keys }))?;
            } else {
                out(&keys
                    .iter()
                    .map(|k| {
                        let state = match (k.active, &k.revoked_reason) {
                            (true, _) => "active".to_string(),
                            (false, Some(reason)) => {
                                format!("REVOKED {} ({reason})", when(k.revoked))
                            }
                            (false, None) => "retired".to_string(),
                        };
                        format!("{}  {state}  created {}\n", k.kid, when(Some(k.created)))
                    })
                    .collect::<String>())?;
            }
        }
        KeyCommand::Generate { out, force } => return key_generate(&out, force, g.format),
    }
    Ok(ExitCode::SUCCESS)
}

/// Write a response file; an existing file is replaced only if it holds the same text.
fn write_response(path: &Path, text: &str) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return out(text);
    }
    match lic_core::fsutil::write_new(path, text.as_bytes(), lic_core::fsutil::PUBLIC_MODE) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read(path).is_ok_and(|b| b == text.as_bytes()) {
                Ok(())
            } else {
                Err(anyhow::Error::from(e).context(format!(
                    "{} already exists with other content; it was left as it is",
                    path.display()
                )))
            }
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot write {}", path.display()))),
    }
}

/// Write the response to `target`; if another response holds that name already (two
/// requests named alike, `photo-pro.req` from two machines), beside it under a name made
/// unique by the applied file's hash. Returns where it went.
fn place_response(target: PathBuf, applied: &Applied) -> anyhow::Result<PathBuf> {
    match write_response(&target, &applied.response) {
        Ok(()) => Ok(target),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists) =>
        {
            let stem = target
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = target
                .extension()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let short = applied.file_hash.get(..12).unwrap_or(&applied.file_hash);
            let unique = target.with_file_name(format!("{stem}-{short}.{ext}"));
            write_response(&unique, &applied.response)?;
            Ok(unique)
        }
        Err(e) => Err(e),
    }
}

/// How one file of a bulk `apply` went wrong.
enum Outcome {
    /// The file could not be read.
    Read(anyhow::Error),
    /// The portal refused it.
    Refused(PortalError),
    /// Applied, but its response could not be written.
    NotWritten {
        activation: String,
        error: anyhow::Error,
    },
}

async fn apply(
    g: &Global,
    files: &[PathBuf],
    out_dir: Option<&Path>,
    actor: &Actor,
) -> anyhow::Result<ExitCode> {
    let json = g.format == Format::Json;
    let portal = open(g).await?;
    if let Some(dir) = out_dir {
        // Before anything is applied: a file applied whose response has nowhere to go
        // takes a seat for nothing until it is applied again.
        lic_core::fsutil::create_dir_all(dir, lic_core::fsutil::PUBLIC_DIR_MODE).with_context(
            || {
                format!(
                    "cannot create the output directory {}; nothing was applied: create it, \
                     or choose another directory with --out-dir",
                    dir.display()
                )
            },
        )?;
    }
    let bar = if std::io::stderr().is_terminal() && files.len() > 1 {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut ok, mut refused, mut unwritten) = (0usize, 0usize, 0usize);
    let mut items = Vec::new();
    for file in files {
        let result: Result<(Applied, Option<PathBuf>), Outcome> = async {
            let mut bytes = Vec::new();
            let limit = lic_core::format::armor::MAX_FILE_SIZE as u64 + 1;
            if file == Path::new("-") {
                std::io::stdin()
                    .lock()
                    .take(limit)
                    .read_to_end(&mut bytes)
                    .context("cannot read standard input")
                    .map_err(Outcome::Read)?;
            } else {
                std::fs::File::open(file)
                    .and_then(|f| f.take(limit).read_to_end(&mut bytes))
                    .with_context(|| format!("cannot read {}", file.display()))
                    .map_err(Outcome::Read)?;
            }
            let applied = portal
                .apply(&bytes, actor)
                .await
                .map_err(Outcome::Refused)?;
            let ext = if applied.response_kind == "license" {
                "lic"
            } else {
                "receipt"
            };
            if file == Path::new("-") {
                // Standard output: the response itself, or (JSON) in the document.
                if !json {
                    write_response(Path::new("-"), &applied.response).map_err(|e| {
                        Outcome::NotWritten {
                            activation: applied.activation.clone().unwrap_or_default(),
                            error: e,
                        }
                    })?;
                }
                return Ok((applied, None));
            }
            let name = format!(
                "{}.{ext}",
                file.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "response".into())
            );
            let target = out_dir.map_or_else(|| file.with_file_name(&name), |d| d.join(&name));
            let target = place_response(target, &applied).map_err(|e| Outcome::NotWritten {
                activation: applied.activation.clone().unwrap_or_default(),
                error: e,
            })?;
            Ok((applied, Some(target)))
        }
        .await;
        // A line may quote the file's strings (a product name, an activation id) and
        // its file name: control characters and bidi overrides are escaped.
        let mut notes = Vec::new();
        let (line, item) = match result {
            Ok((applied, target)) => {
                ok += 1;
                let activation = applied.activation.as_deref().unwrap_or("-");
                let replay = if applied.replay {
                    " (applied before: same response)"
                } else {
                    ""
                };
                let place = target
                    .as_ref()
                    .map_or("-".into(), |t| t.display().to_string());
                let line = format!(
                    "ok       {}  {activation} → {} {place}{replay}",
                    file.display(),
                    applied.response_kind,
                );
                notes.extend(applied.flags.iter().map(|f| format!("FLAGGED: {f}")));
                // A receipt is kept, not installed: say what it is.
                if applied.response_kind == "receipt" {
                    notes.push(applied.note.clone());
                }
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "ok",
                    "kind": applied.kind,
                    "activation": applied.activation,
                    "response_kind": applied.response_kind,
                    "response_file": target.map(|t| t.display().to_string()),
                    "response": if file == Path::new("-") { Some(&applied.response) } else { None },
                    "replay": applied.replay,
                    "file_hash": applied.file_hash,
                    "flags": applied.flags,
                    "note": applied.note,
                });
                (line, item)
            }
            Err(Outcome::NotWritten { activation, error }) => {
                // Applied: the database has it. Applying the file again gives the same
                // response, so the operator can fetch it once the path is sorted out.
                unwritten += 1;
                let (code, message, hint) = describe(&error);
                let line = format!(
                    "APPLIED  {}  {activation}, but the response was not written: {message} \
                     (apply the file again for the same response)",
                    file.display()
                );
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "not-written",
                    "activation": activation,
                    "error": { "code": code, "message": message, "hint": hint },
                });
                (line, item)
            }
            Err(Outcome::Read(e)) => {
                refused += 1;
                let (code, message, hint) = describe(&e);
                let line = format!("REFUSED  {}  error: {message}", file.display());
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "refused",
                    "error": { "code": code, "message": message, "hint": hint },
                });
                (line, item)
            }
            Err(Outcome::Refused(e)) => {
                refused += 1;
                let line = format!("REFUSED  {}  {}: {e}", file.display(), e.code());
                let item = serde_json::json!({
                    "file": file.display().to_string(),
                    "status": "refused",
                    "error": { "code": e.code(), "message": e.to_string(), "hint": e.hint() },
                });
                (line, item)
            }
        };
        if json {
            items.push(item);
        } else {
            // Each line escaped on its own: a note under an applied file keeps its line,
            // and nothing from a file can start a line of its own.
            let mut text = format!("{}\n", escape(&line));
            for note in &notes {
                text.push_str(&format!("         {}\n", escape(note)));
            }
            bar.suspend(|| print!("{text}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        print_doc(serde_json::json!({
            "items": items,
            "applied": ok,
            "refused": refused,
            "not_written": unwritten,
        }))?;
    } else {
        let unwritten_note = if unwritten > 0 {
            format!(" ({unwritten} more applied without their response written)")
        } else {
            String::new()
        };
        eprintln!(
            "{} file(s): {ok} applied, {refused} refused{unwritten_note}",
            files.len()
        );
    }
    Ok(if refused == 0 && unwritten == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn token(g: &Global, c: TokenCommand) -> anyhow::Result<ExitCode> {
    use lic_portal::auth;
    let (db, _) = connect(g).await?;
    match c {
        TokenCommand::Create {
            name,
            role,
            products,
        } => {
            let role: auth::Role = role.parse().map_err(|_| {
                anyhow::anyhow!("unknown role '{role}': use admin, support or read-only")
            })?;
            let scope = if products.is_empty() {
                None
            } else {
                Some(products)
            };
            let (id, secret) =
                auth::create_token(&db, &name, role, scope, chrono::Utc::now().timestamp()).await?;
            match g.format {
                Format::Json => {
                    let info = auth::list_tokens(&db)
                        .await?
                        .into_iter()
                        .find(|t| t.id == id)
                        .context("the new token is not in the token list")?;
                    print_doc(serde_json::json!({ "token": info, "secret": secret }))?;
                }
                Format::Text => {
                    println!("created token {id} ({role}) for {name}");
                    println!("token: {secret}");
                    println!(
                        "(shown only now: the portal stores it hashed; send it as 'Authorization: Bearer TOKEN')"
                    );
                }
            }
        }
        TokenCommand::List => {
            let list = auth::list_tokens(&db).await?;
            match g.format {
                Format::Json => print_doc(serde_json::json!({ "items": list }))?,
                Format::Text => out(&list
                    .iter()
                    .map(|t| {
                        format!(
                            "{}  {}  {}  {}{}\n",
                            t.id,
                            t.name,
                            t.role,
                            t.products
                                .as_ref()
                                .map_or("all products".to_string(), |p| p.join(",")),
                            if t.revoked.is_some() { "  REVOKED" } else { "" }
                        )
                    })
                    .collect::<String>())?,
            }
        }
        TokenCommand::Revoke { id } => {
            let info = auth::revoke_token(&db, &id, chrono::Utc::now().timestamp()).await?;
            match g.format {
                Format::Json => print_doc(serde_json::json!({ "token": info }))?,
                Format::Text => println!("revoked token {id}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Log lines on standard error (`LIC_LOG` filters, default `info`), coloured only on a
/// terminal and never with `NO_COLOR` set (https://no-color.org).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Whether log lines get ANSI colours: on a terminal, unless `NO_COLOR` is set and not
/// empty.
fn log_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Ctrl-C or SIGTERM (service managers): stop accepting, finish the requests under way.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

async fn serve(
    g: &Global,
    listen: std::net::SocketAddr,
    uploads_per_minute: u32,
) -> anyhow::Result<()> {
    init_logging();
    let portal = std::sync::Arc::new(open(g).await?);
    let limiter = if uploads_per_minute == 0 {
        lic_portal::http::RateLimiter::unlimited()
    } else {
        lic_portal::http::RateLimiter::new(
            uploads_per_minute,
            uploads_per_minute.div_ceil(3).max(1),
        )
    };
    let state = lic_portal::http::AppState::new(portal).with_limiter(limiter);
    let bound = lic_portal::http::Bound::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen} (is another portal running? --listen chooses another \
                 address; port 0 lets the system choose)"
            )
        })?;
    // The first line of standard output, before any request is taken: scripts and tests
    // that asked for port 0 learn the port here.
    let url = bound.url();
    match g.format {
        Format::Json => out(&format!(
            "{}\n",
            serde_json::to_string(&Doc {
                format: JSON_VERSION,
                body: serde_json::json!({ "listening": url }),
            })?
        ))?,
        Format::Text => out(&format!("listening on {url}\n"))?,
    }
    std::io::stdout()
        .flush()
        .context("cannot write to standard output")?;
    bound
        .serve(state, shutdown_signal())
        .await
        .with_context(|| format!("cannot serve on {url}"))
}

/// The quick start: a portal with a demo product, policy and license; prints what to try.
/// The file that marks a directory as the demo's own: only such a directory is emptied.
const DEMO_MARK: &str = ".lic-demo";

/// Empty the demo's directory for a fresh run (it must be the demo's own, or empty, or
/// absent) and mark it.
fn fresh_demo_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty {
                if !dir.join(DEMO_MARK).is_file() {
                    bail!(
                        "{} exists and was not made by the demo, so the demo does not empty \
                         it: choose another directory with --dir",
                        dir.display()
                    );
                }
                std::fs::remove_dir_all(dir).with_context(|| {
                    format!("cannot empty the demo directory {}", dir.display())
                })?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context(format!("cannot read the demo directory {}", dir.display())));
        }
    }
    lic_core::fsutil::create_dir_all(dir, 0o755)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    lic_core::fsutil::write_file(
        &dir.join(DEMO_MARK),
        b"made by lic-portal demo: emptied at each demo start\n",
        lic_core::fsutil::PUBLIC_MODE,
        true,
    )?;
    Ok(())
}

/// The `lic` binary for the printed commands: beside this executable. Run from the
/// source tree (`cargo run`), it is built first — its progress shown — so the printed
/// commands start at once instead of compiling in silence.
fn demo_lic_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let lic = exe
        .parent()?
        .join(format!("lic{}", std::env::consts::EXE_SUFFIX));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    if let (Some(cargo), true) = (std::env::var_os("CARGO"), manifest.is_file()) {
        eprintln!("building lic for the commands below (cargo build -p lic)…");
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "-p", "lic", "--bin", "lic", "--manifest-path"])
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        match build.status() {
            Ok(status) if status.success() => {}
            _ => eprintln!("warning: building lic failed; the commands below need it"),
        }
    }
    lic.is_file().then_some(lic)
}

async fn demo(
    g: &Global,
    listen: std::net::SocketAddr,
    dir: &Path,
    no_serve: bool,
) -> anyhow::Result<()> {
    if g.database.is_some() {
        bail!(
            "the demo runs on its own SQLite database in its directory (--dir): drop \
             --database (and LIC_PORTAL_DATABASE)"
        );
    }
    fresh_demo_dir(dir)?;
    // Absolute paths: the commands are for another terminal, maybe in another directory.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let customer = dir.join("customer");
    lic_core::fsutil::create_dir_all(&customer, 0o755)
        .with_context(|| format!("cannot create {}", customer.display()))?;
    let portal_data = dir.join("portal");
    let g = Global {
        data: portal_data.clone(),
        database: None,
        keys: None,
        format: g.format,
    };
    let (db, p) = connect(&g).await?;
    Portal::init(&db, &p.keys).await?;
    let portal = Portal::open(db, &p.keys).await?;
    let actor = Actor::cli();
    portal
        .create_product("photo-pro", "Photo Pro (demo)", &actor)
        .await?;
    let policy = Policy {
        id: String::new(),
        product: "photo-pro".into(),
        name: "demo".into(),
        license_type: LicenseType::TimeLimited,
        allow_offline: true,
        seats: 3,
        validity_days: Some(365),
        features: parse_features(&[
            "export-pdf".into(),
            "render-minutes=600".into(),
            "batch-jobs=100+".into(),
        ])?,
        match_rule: MatchRule {
            required: vec!["machine-id".into()],
            max_changed: 2,
        },
        clock_tolerance_secs: 86_400,
        max_offline_days: None,
        inactivity_secs: None,
        max_deactivations: Some(5),
        deactivation_period_days: Some(30),
        created: 0,
    };
    let policy = portal.create_policy(policy, &actor).await?;
    let created = portal
        .create_license(
            NewLicense {
                policy: policy.id,
                ..Default::default()
            },
            &actor,
        )
        .await?;
    let key = created.key.context("a key-based demo license has a key")?;
    let trust = dir.join("trusted-keys.pem");
    lic_core::fsutil::write_file(
        &trust,
        portal.trusted_keys().await?.to_pem().as_bytes(),
        lic_core::fsutil::PUBLIC_MODE,
        true,
    )?;
    let lic = demo_lic_binary();
    // Bound before anything is printed: the printed address is the one served (port 0
    // included).
    let listener = if no_serve {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot serve on {listen} (is another portal or demo running? --listen \
                 chooses another address)"
                    )
                })?,
        )
    };
    let addr = match &listener {
        Some(l) => l.local_addr()?,
        None => listen,
    };
    let url = format!("http://{addr}");
    let vendor = std::env::current_exe()
        .map_or_else(|_| "lic-portal".to_string(), |e| e.display().to_string());
    let lic_cmd = lic.map_or_else(|| "lic".to_string(), |l| l.display().to_string());
    let (dir, trust, customer, portal_data) = (
        dir.display(),
        trust.display(),
        customer.display(),
        portal_data.display(),
    );
    let text = format!(
        "\
lic portal demo — everything in {dir}/ (made afresh at each start), API at {url}/

  product:      photo-pro   (3 seats; features export-pdf, render-minutes 600,
                             batch-jobs 100+ = 100 and more allowed, counted as overage)
  license key:  {key}
  vendor keys:  {trust}   (what the lic command trusts)

Try it in another terminal. First the demo customer's machine: a directory and a license
store of its own, and a lic that trusts this portal's keys (an installed lic trusts the
trusted-keys.pem the vendor puts beside it, and nothing a user can add):

  cd {customer} && export LIC_STORE={customer}/store
  lic() {{ {lic_cmd} --trust {trust} \"$@\"; }}

Online, in one step each way (lic sends the files and installs the answer):

  lic activate --server {url} --product photo-pro --key {key}
  lic status
  lic consume render-minutes 42
  lic deactivate --server {url}

Offline, as on a machine without network (the files travel by USB stick or mail; curl
stands in for the vendor's upload page and prints the portal's refusal if there is one):

  lic offline-activate --product photo-pro --key {key} --out demo.req
  curl -sS --fail-with-body -H 'Accept: text/plain' --data-binary @demo.req -o demo.lic {url}/api/v1/activate
  lic install demo.lic
  lic consume batch-jobs 120
  lic status
  lic offline-deactivate --out demo.deact
  curl -sS --fail-with-body -H 'Accept: text/plain' --data-binary @demo.deact -o demo.receipt {url}/api/v1/deactivate
  lic inspect demo.receipt
      (the receipt is the vendor's signed confirmation that the seat is free and the usage
       counted: keep it; there is nothing to install)

The vendor's side, from any directory:

  {vendor} --data {portal_data} license list
  {vendor} --data {portal_data} activation list

Run the demo again to start over: it empties {dir}/ first.
"
    );
    if g.format == Format::Json {
        print_doc(serde_json::json!({
            "dir": dir.to_string(),
            "url": url,
            "serving": listener.is_some(),
            "product": "photo-pro",
            "license_key": key,
            "trusted_keys": trust.to_string(),
            "customer_dir": customer.to_string(),
            "portal_data": portal_data.to_string(),
            "lic": lic_cmd,
        }))?;
    } else {
        out(&text)?;
    }
    let Some(listener) = listener else {
        return Ok(());
    };
    if g.format == Format::Text {
        println!("serving on {url}/ — Ctrl-C stops it");
    }
    let _ = std::io::stdout().flush();
    init_logging();
    let state = lic_portal::http::AppState::new(std::sync::Arc::new(portal));
    lic_portal::http::serve_on(listener, state, shutdown_signal())
        .await
        .context("the demo portal stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new("1"))));
    }
}
