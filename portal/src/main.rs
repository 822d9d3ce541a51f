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
use lic_portal::ops::{
    Activation, ActivationFilter, Applied, AuditFilter, LicenseEdit, LicenseFilter, LicenseInfo,
    NewLicense, Outdated, Page, PageRequest, Policy, PolicyFilter, RefreshSpec,
};
use lic_portal::{Actor, Portal, PortalError};

mod admin;

use admin::accounts::*;
use admin::activations::*;
use admin::apply::*;
use admin::audit::*;
use admin::catalog::*;
use admin::demo::*;
use admin::keys::*;
use admin::output::*;
use admin::serve::*;
use admin::tokens::*;

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
    /// The portal's data directory (SQLite database and vendor keys); `init` creates it
    /// (mode 0700), other commands refuse one that is not there.
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
        /// The vendor's name on the self-service pages (`/`, `/activate`).
        #[arg(long, env = "LIC_PORTAL_BRAND_NAME", default_value = "License portal")]
        brand_name: String,
        /// The vendor's logo on the self-service pages (.png, .svg, .jpg, .gif or .webp,
        /// at most 512 KiB), served by the portal at `/static/logo`.
        #[arg(long, env = "LIC_PORTAL_BRAND_LOGO", value_name = "FILE")]
        brand_logo: Option<PathBuf>,
        /// Mark the pages' CSRF cookie `Secure`: set it when clients reach the portal over
        /// HTTPS (behind a TLS proxy). Off by default, for plain HTTP on loopback.
        #[arg(long, env = "LIC_PORTAL_SECURE_COOKIES")]
        secure_cookies: bool,
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
    /// Support: write a refresh file for one activation (serial + 1; the reason is audited)
    /// — new features or expiry, a clock-floor reset, an on-premise floating server's pool
    /// seats (--seats) — or with --license L --all-outdated one for each of the license's
    /// devices that is out of date after an edit, into --out-dir.
    Refresh(RefreshArgs),
    /// Vendor signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Show the audit log, newest first.
    Audit(AuditArgs),
    /// Reclaim the seats of floating licenses inactive for longer than their policy's
    /// --inactivity-secs (policies with --reclaim): the same as the timer of `serve` does.
    /// Checked-out seats are kept until their Offline Expiry Date; each reclaimed seat is
    /// audited (actor `reclaimer`, action `seat.reclaimed`).
    Reclaim {
        /// Show the seats it would reclaim, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// API tokens for vendor and support staff.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Staff accounts for the console (/console): name, password, role, products.
    #[command(subcommand)]
    Staff(StaffCommand),
    /// End users of user-based licenses: the password they sign in with (/signin)
    /// before a request naming them may take a seat.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum StaffCommand {
    /// Create a staff account; its password is typed twice at a terminal (not shown), or
    /// read from standard input.
    Add {
        /// The name they sign in with.
        #[arg(long)]
        name: String,
        /// admin, support or read-only.
        #[arg(long)]
        role: String,
        /// Limit the account to these products (repeat); default: all products.
        #[arg(long = "product")]
        products: Vec<String>,
    },
    /// Set a new password (typed twice at a terminal, or read from standard input),
    /// enabling a disabled account; the account's sessions end.
    Password {
        #[arg(long)]
        name: String,
    },
    /// Disable an account: it cannot sign in, and its sessions end.
    Disable {
        #[arg(long)]
        name: String,
    },
    /// List the staff accounts.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Set or reset an end user's password (typed twice at a terminal, or read from standard
    /// input); their sessions end.
    SetPassword {
        /// The user id their licenses carry.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RefreshArgs {
    /// The activation to refresh.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "license",
        conflicts_with = "license"
    )]
    pub(crate) activation: Option<String>,
    /// Refresh the devices of this license that are out of date (with --all-outdated):
    /// each gets the features and expiry the license grants now.
    #[arg(long, value_name = "ID", requires_all = ["all_outdated", "out_dir"])]
    pub(crate) license: Option<String>,
    /// Every active device of --license whose features or expiry differ from the license's
    /// (`lic-portal license outdated ID` lists them).
    #[arg(long, requires = "license")]
    pub(crate) all_outdated: bool,
    /// Where to write the refresh files of --license, one per device, named
    /// ACTIVATION.refresh.lic (created if missing; an existing file is never replaced).
    #[arg(long, value_name = "DIR", requires = "license")]
    pub(crate) out_dir: Option<PathBuf>,
    /// Why (ticket, order); recorded in the audit log.
    #[arg(long)]
    pub(crate) reason: String,
    /// Extend the expiry by this many days (from the current expiry, or from now).
    #[arg(long, value_name = "DAYS", conflicts_with = "license")]
    pub(crate) extend_days: Option<i64>,
    /// A new expiry date (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE", conflicts_with = "license")]
    pub(crate) expires: Option<String>,
    /// Reset the device's clock floor to this time (`now`, YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "TIME", conflicts_with = "license")]
    pub(crate) clock_floor: Option<String>,
    /// Replace the features: NAME, NAME=LIMIT, NAME=LIMIT+ (overage allowed) or
    /// NAME=LIMIT+CAP (overage up to CAP beyond the limit); repeat.
    #[arg(long = "feature", value_name = "SPEC", conflicts_with = "license")]
    pub(crate) features: Vec<String>,
    /// An on-premise floating server's pool: its new number of seats, taken from the
    /// license's free seats (or given back). Refused for an activation that is not a pool
    /// (`not-a-pool`) and when too few seats are free (`no-seat`). Every refresh of a pool
    /// carries its number of seats, changed or not.
    #[arg(long, value_name = "N", conflicts_with = "license")]
    pub(crate) seats: Option<u32>,
    /// Where to write the refresh file.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "license_refresh.lic",
        conflicts_with = "license"
    )]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only entries about this object (license, activation, key…).
    #[arg(long, value_name = "ID")]
    pub(crate) subject: Option<String>,
    #[command(flatten)]
    pub(crate) page: PageArgs,
}

/// Which page of a list (docs/vendor-guide.md, "Lists: paging and filters").
#[derive(Debug, Clone, Args)]
pub(crate) struct PageArgs {
    /// At most this many items (1 to 1000; default 100, the audit log 50).
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<i64>,
    /// The page after this cursor: the `--after` value the page before printed (its
    /// `next` in JSON). Give the same filters again.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) after: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ProductCommand {
    Create {
        /// The product code clients name (e.g. photo-pro).
        code: String,
        #[arg(long)]
        name: String,
    },
    /// Products, by code.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    Show {
        code: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    Create(Box<PolicyArgs>),
    /// Policies, by product and name.
    List {
        /// Only this product's policies.
        #[arg(long)]
        product: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    Show {
        id: String,
    },
    /// Change a floating policy's reclamation (the reason is audited). Enabling it counts
    /// inactivity from now: seats whose last heartbeat predates it are not reclaimed at once.
    Edit {
        id: String,
        /// Enable (true) or disable (false) reclamation of inactive seats.
        #[arg(long, value_name = "true|false", value_parser = parse_yes_no)]
        reclaim: Option<bool>,
        /// The inactivity threshold, in seconds.
        #[arg(long, value_name = "SECS")]
        inactivity_secs: Option<i64>,
        /// How often `serve` runs reclamation, in seconds.
        #[arg(long, value_name = "SECS")]
        reclaim_every_secs: Option<i64>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
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
    /// A feature: NAME, NAME=LIMIT, NAME=LIMIT+ (overage allowed) or NAME=LIMIT+CAP
    /// (overage up to CAP beyond the limit), optionally with `:floating=N` (at most N
    /// machines of a license use it at once, each leasing it); repeat.
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
    /// Recorded on the policy only, not enforced: floating checkouts are capped by
    /// --max-checkout-hours.
    #[arg(long)]
    max_offline_days: Option<i64>,
    /// Floating, with --reclaim: how long a seat may go without a heartbeat before it is
    /// reclaimed, in seconds.
    #[arg(long)]
    inactivity_secs: Option<i64>,
    /// Churn control: at most this many deactivations per period…
    #[arg(long, requires = "deactivation_period_days")]
    max_deactivations: Option<i64>,
    /// …of this many days.
    #[arg(long, requires = "max_deactivations")]
    deactivation_period_days: Option<i64>,
    /// A license-level consumption limit: NAME=LIMIT, the most all devices of one license
    /// may report in total for feature NAME; repeat.
    #[arg(long = "total", value_name = "NAME=LIMIT")]
    totals: Vec<String>,
    /// A license that reached a --total limit refuses new seats and reissues (without
    /// this, the reports that pass it are only flagged).
    #[arg(long, requires = "totals")]
    refuse_over_total: bool,
    #[command(flatten)]
    floating: FloatingArgs,
}

/// A policy's floating terms (docs/vendor-guide.md, "Floating licenses").
#[derive(Debug, Args)]
pub(crate) struct FloatingArgs {
    /// Floating: the license's seats are a pool leased online (`lic lease`) and checked
    /// out for offline use (`lic checkout`), whatever --type (`--type floating` is a
    /// floating perpetual policy).
    #[arg(long)]
    pub(crate) floating: bool,
    /// Floating: how long a lease lasts unless renewed, in seconds (10 to 2592000).
    #[arg(long, value_name = "SECS", requires = "floating")]
    pub(crate) lease_secs: Option<u64>,
    /// Floating: when clients renew, in percent of the lease period (1 to 100).
    #[arg(long, value_name = "PERCENT", requires = "floating")]
    pub(crate) renew_percent: Option<u8>,
    /// Floating: the most application instances sharing one machine's seat (default: no cap).
    #[arg(long, value_name = "N", requires = "floating")]
    pub(crate) max_processes: Option<u32>,
    /// Floating: a machine whose lease lapsed gets its own seat back, ahead of the
    /// machines waiting, within this many seconds (default 0: no revival).
    #[arg(long, value_name = "SECS", requires = "floating")]
    pub(crate) revival_secs: Option<u64>,
    /// Floating: the longest offline checkout, in hours (default: checkouts refused).
    #[arg(long, value_name = "HOURS", requires = "floating")]
    pub(crate) max_checkout_hours: Option<u64>,
    /// Floating: "always set an OED" — every lease keeps its seat this many hours after its
    /// last renewal, even offline; staff cannot deactivate or reclaim it before then.
    #[arg(long, value_name = "HOURS", requires = "floating")]
    pub(crate) lease_oed_hours: Option<u64>,
    /// Floating: reclaim seats whose last heartbeat is older than --inactivity-secs (on a
    /// timer in `serve`, and by `lic-portal reclaim`); counted from now for existing seats.
    #[arg(long, requires_all = ["floating", "inactivity_secs"])]
    pub(crate) reclaim: bool,
    /// Floating: how often `serve` runs reclamation, in seconds (default 3600).
    #[arg(long, value_name = "SECS", requires = "reclaim")]
    pub(crate) reclaim_every_secs: Option<i64>,
}

#[derive(Debug, Subcommand)]
enum LicenseCommand {
    Create {
        #[arg(long)]
        policy: String,
        /// A user-based license for this user id (otherwise a license key is generated).
        #[arg(long)]
        user: Option<String>,
        /// Who the license is for, in your words (an account or order-system id); lists
        /// filter by it.
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        seats: Option<i64>,
        /// Override the policy: allow (yes) or refuse (no) offline activation.
        #[arg(long, value_parser = parse_yes_no)]
        offline: Option<bool>,
        /// A fixed expiry date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        expires: Option<String>,
        /// Override the policy's features: NAME, NAME=LIMIT, NAME=LIMIT+ or NAME=LIMIT+CAP; repeat.
        #[arg(long = "feature", value_name = "SPEC")]
        features: Vec<String>,
        /// Override the policy's license-level consumption limits: NAME=LIMIT; repeat.
        #[arg(long = "total", value_name = "NAME=LIMIT")]
        totals: Vec<String>,
    },
    /// Licenses, oldest first.
    List {
        /// Only this product's licenses.
        #[arg(long)]
        product: Option<String>,
        /// Only licenses of this status.
        #[arg(long, value_parser = ["active", "suspended", "revoked"])]
        status: Option<String>,
        /// Only this customer's licenses (exactly as given at creation).
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    Show {
        id: String,
    },
    /// Change a license: seats, expiry, features, offline use, status (the reason is
    /// audited, with every field before and after). Devices already activated learn of it
    /// from a refresh: `lic-portal refresh --license ID --all-outdated --out-dir DIR`.
    Edit(LicenseEditArgs),
    /// List the license's active devices whose features or expiry differ from what the
    /// license grants now (after an edit): they need a refresh.
    Outdated {
        id: String,
    },
    /// No new activations for this license, for good.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LicenseEditArgs {
    pub(crate) id: String,
    /// Seats (at least 1, and no fewer than the devices holding one now).
    #[arg(long)]
    pub(crate) seats: Option<i64>,
    /// A fixed expiry date (YYYY-MM-DD or RFC 3339), or `never` (no expiry: not for a
    /// license whose policy has --validity-days).
    #[arg(long, value_name = "DATE|never")]
    pub(crate) expires: Option<String>,
    /// The features, replacing the license's (or its policy's) list as a whole: NAME,
    /// NAME=LIMIT, NAME=LIMIT+ or NAME=LIMIT+CAP; repeat.
    #[arg(long = "feature", value_name = "SPEC")]
    pub(crate) features: Vec<String>,
    /// Allow (true) or refuse (false) offline activation, whatever the policy says.
    #[arg(long, value_name = "true|false", value_parser = parse_yes_no)]
    pub(crate) allow_offline: Option<bool>,
    /// active, or suspended (no new activations, reissues or refreshes until it is active
    /// again). To revoke for good: `lic-portal license revoke`.
    #[arg(long, value_name = "active|suspended")]
    pub(crate) status: Option<String>,
    /// The license-level consumption limits, replacing the license's as a whole:
    /// NAME=LIMIT; repeat.
    #[arg(
        long = "total",
        value_name = "NAME=LIMIT",
        conflicts_with = "no_totals"
    )]
    pub(crate) totals: Vec<String>,
    /// Remove every license-level consumption limit.
    #[arg(long)]
    pub(crate) no_totals: bool,
    /// Whether a license whose total reached a limit refuses new seats and reissues.
    #[arg(long, value_name = "true|false", value_parser = parse_yes_no)]
    pub(crate) refuse_over_total: Option<bool>,
    /// Why (ticket, order); recorded in the audit log.
    #[arg(long)]
    pub(crate) reason: String,
}

#[derive(Debug, Subcommand)]
enum ActivationCommand {
    /// Activations, newest first.
    List {
        /// Only this license's activations.
        #[arg(long)]
        license: Option<String>,
        /// Only this product's activations.
        #[arg(long)]
        product: Option<String>,
        /// Only active or only deactivated ones.
        #[arg(long, value_parser = ["active", "deactivated"])]
        state: Option<String>,
        /// Only the activations of this customer's licenses.
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        page: PageArgs,
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

/// NAME, NAME=LIMIT, NAME=LIMIT+ (overage allowed), NAME=LIMIT+CAP (overage allowed up
/// to CAP units beyond the limit), each optionally followed by `:floating=N` (a floating
/// feature: at most N devices use it at once).
fn parse_features(specs: &[String]) -> anyhow::Result<Features> {
    let mut out = Features::new();
    let number = |digits: &str, spec: &str, what: &str| -> anyhow::Result<u64> {
        digits.parse().with_context(|| {
            format!(
                "feature '{spec}': {what} must be a whole number (NAME, NAME=LIMIT, \
                 NAME=LIMIT+ or NAME=LIMIT+CAP)"
            )
        })
    };
    for spec in specs {
        // A floating feature: `…:floating=N` (N concurrent uses across the devices).
        let (base, floating) = match spec.split_once(":floating=") {
            Some((base, n)) => (base, Some(number(n, spec, "the floating uses")?)),
            None => (spec.as_str(), None),
        };
        let spec = &base.to_string();
        let (name, mut feature) = match spec.split_once('=') {
            None => (spec.as_str(), Feature::default()),
            Some((name, limit)) => {
                let (digits, overage, cap) = match limit.split_once('+') {
                    Some((d, "")) => (d, true, None),
                    Some((d, cap)) => (d, true, Some(number(cap, spec, "the overage cap")?)),
                    None => (limit, false, None),
                };
                (
                    name,
                    Feature {
                        limit: Some(number(digits, spec, "the limit")?),
                        overage,
                        max_overage: cap,
                        floating: None,
                    },
                )
            }
        };
        if name.trim().is_empty() {
            bail!("feature '{spec}' has no name");
        }
        feature.floating = floating;
        out.insert(name.to_string(), feature);
    }
    Ok(out)
}

/// `never` (no expiry), or a date as [`parse_time`] reads it.
fn parse_expiry(s: &str) -> anyhow::Result<Option<i64>> {
    if s == "never" {
        return Ok(None);
    }
    parse_time(s)
        .map(Some)
        .with_context(|| format!("--expires '{s}': give a date, or never"))
}

/// NAME=LIMIT, repeated: license-level consumption limits.
fn parse_totals(specs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for spec in specs {
        let (name, limit) = spec
            .split_once('=')
            .with_context(|| format!("total '{spec}': give NAME=LIMIT"))?;
        let limit: u64 = limit
            .parse()
            .with_context(|| format!("total '{spec}': the limit must be a whole number"))?;
        if name.trim().is_empty() {
            bail!("total '{spec}' has no feature name");
        }
        if out.insert(name.to_string(), limit).is_some() {
            bail!("total '{name}' is given twice");
        }
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

/// The code, message and hint of an error, for the text and the JSON report alike.
fn describe(e: &anyhow::Error) -> (&'static str, String, Option<String>) {
    let message = format!("{e:#}");
    if let Some(p) = e.downcast_ref::<PortalError>() {
        (p.code(), message, Some(p.hint().into_owned()))
    } else if let Some(k) = e.downcast_ref::<KeyError>() {
        ("key", message, Some(k.hint().to_string()))
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
                    hint.as_deref()
                        .unwrap_or("see the message; lic-portal COMMAND --help shows the options"),
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

struct Paths {
    url: String,
    keys: PathBuf,
}

/// Where the database and the keys are. Only `init` (`create`) makes the data directory:
/// any other command on a directory that is not there says to run `init`, and leaves
/// nothing behind (a mistyped `--data` must not become an empty portal).
fn paths(g: &Global, create: bool) -> anyhow::Result<Paths> {
    let url = match &g.database {
        Some(url) => url.clone(),
        None if !create && !g.data.exists() => anyhow::bail!(
            "there is no portal data directory at {} (nothing was created): run `lic-portal \
             --data {} init` first to create the database and the first vendor key, or pass \
             the --data DIR (LIC_PORTAL_DATA) the portal was set up with",
            g.data.display(),
            g.data.display()
        ),
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

async fn connect(g: &Global, create: bool) -> anyhow::Result<(Db, Paths)> {
    let p = paths(g, create)?;
    let db = Db::connect(&p.url)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&p.url)))?;
    Ok((db, p))
}

async fn open(g: &Global) -> anyhow::Result<Portal> {
    let (db, p) = connect(g, false).await?;
    Portal::open(db, &p.keys).await.map_err(|e| match e {
        PortalError::Key(_) => anyhow::Error::from(e).context("run `lic-portal init` first"),
        other => other.into(),
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    let json = g.format == Format::Json;
    let actor = Actor::cli();
    match cli.command {
        Command::Init => {
            let (db, p) = connect(g, true).await?;
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
            brand_name,
            brand_logo,
            secure_cookies,
        } => {
            let web = lic_portal::web::WebConfig {
                brand_name,
                brand_logo: brand_logo
                    .map(|path| lic_portal::web::Logo::read(&path))
                    .transpose()?,
                secure_cookies,
            };
            serve(g, listen, uploads_per_minute, web).await?
        }
        Command::Demo {
            listen,
            dir,
            no_serve,
        } => demo(g, listen, &dir, no_serve).await?,
        Command::Product(c) => return product(g, c, &actor, json).await,
        Command::Policy(c) => return policy(g, c, &actor, json).await,
        Command::License(c) => return license(g, c, &actor, json).await,
        Command::Activation(c) => return activation(g, c, &actor, json).await,
        Command::Apply { files, out_dir } => {
            return apply(g, &files, out_dir.as_deref(), &actor).await;
        }
        Command::Refresh(args) => return refresh(g, args, &actor, json).await,
        Command::Key(c) => return key(g, c, &actor).await,
        Command::Audit(args) => return audit(g, args, json).await,
        Command::Reclaim { dry_run } => return reclaim(g, dry_run, &actor, json).await,
        Command::Token(c) => return token(g, c).await,
        Command::Staff(c) => return staff(g, c, &actor).await,
        Command::User(c) => return user(g, c, &actor).await,
    }
    Ok(ExitCode::SUCCESS)
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

    #[test]
    fn totals_are_name_equals_limit_each_once() {
        let t = parse_totals(&["minutes=100".to_string(), "jobs=5".to_string()]).unwrap();
        assert_eq!((t["minutes"], t["jobs"]), (100, 5));
        for bad in [
            &["minutes"][..],
            &["minutes=many"],
            &["=5"],
            &["jobs=1", "jobs=2"],
        ] {
            let specs: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            let e = parse_totals(&specs).unwrap_err().to_string();
            assert!(e.contains("total"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn features_are_a_name_a_limit_overage_and_an_overage_cap() {
        let specs: Vec<String> = ["pdf", "jobs=100", "minutes=1000+", "renders=50+10"]
            .map(String::from)
            .to_vec();
        let f = parse_features(&specs).unwrap();
        assert_eq!(f["pdf"], Feature::default());
        assert_eq!((f["jobs"].limit, f["jobs"].overage), (Some(100), false));
        assert_eq!(
            (f["minutes"].overage, f["minutes"].max_overage),
            (true, None)
        );
        assert_eq!(
            (
                f["renders"].limit,
                f["renders"].overage,
                f["renders"].max_overage
            ),
            (Some(50), true, Some(10))
        );
        let floating =
            parse_features(&["render:floating=2".into(), "jobs=5:floating=1".into()]).unwrap();
        assert_eq!(floating["render"].floating, Some(2));
        assert_eq!(
            (floating["jobs"].limit, floating["jobs"].floating),
            (Some(5), Some(1))
        );
        for bad in ["x=ten", "x=10+many", "x=+5", "=5", "x:floating=many"] {
            let e = parse_features(&[bad.to_string()]).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
