//! The `lic` command: argument definitions and the glue from arguments to `lic-core`.
//! `main` only parses and calls [`run`].
//!
//! Exit status: 0 success; 1 a negative answer (the license may not be used, a feature is
//! not licensed or used up, nothing is activated, the store failed its integrity check);
//! 2 an error (bad arguments, a file refused, the store unreadable) — the message says
//! what is wrong and what to do next.

mod floating;
mod online;
mod output;

use std::borrow::Cow;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use lic_core::client::{Client, ClientError, Forgotten, Installed, Status};
use lic_core::fingerprint::{FingerprintSource as _, SystemSource};
use lic_core::format::{
    self, AnyFile, Credential, FileKind, FormatError, Lease, License, SignedFile,
};
use lic_core::keys::{KeyError, Keyring};
use lic_core::pool::{self, Pool, PoolError};
use lic_core::rules::Violation;
use lic_core::store::{Store, StoreError};
use serde_json::json;

pub use output::OutputFormat;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a negative answer (not licensed, feature not licensed or used up, nothing
/// activated, the store failed its integrity check).
pub const EXIT_NO: u8 = 1;
/// Exit status: an error; the message says what is wrong and what to do next.
pub const EXIT_ERROR: u8 = 2;

/// The trust file looked for in the store and beside the `lic` executable.
pub const TRUST_FILE: &str = "trusted-keys.pem";

/// lic — offline license activation.
///
/// Activate a product on a machine without network: `lic offline-activate` writes a
/// request file for your vendor; `lic install` installs the license file you get back.
/// With a network, `lic activate --server URL` does both in one step.
#[derive(Debug, Parser)]
#[command(name = "lic", version, about, long_about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 not licensed (check, status, and any command on a store that
fails its integrity check); 2 error.
Trusted vendor keys: trusted-keys.pem beside the lic executable, as the vendor installed
it, changed only by key sets the vendor signs (lic install KEYSET-FILE). Nothing in the
store or the environment adds trust; --trust FILE replaces the installed file for one
command (for vendors and tests).
Documentation: docs/user-guide.md";

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The license store directory [default: the per-user data directory, e.g.
    /// ~/.local/share/lic]
    #[arg(long, global = true, env = "LIC_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Trust these vendor public keys (SPKI PEM; several blocks allowed) instead of the
    /// trusted-keys.pem installed beside lic. For vendors and tests: an application that
    /// runs lic must not pass it, and no environment variable sets it.
    #[arg(long, global = true, value_name = "FILE")]
    pub trust: Option<PathBuf>,

    /// The product to act on [default: the only product in the store].
    #[arg(long, global = true, env = "LIC_PRODUCT", value_name = "PRODUCT")]
    pub product: Option<String>,

    /// Output: text for people, or json for scripts (one JSON document on standard
    /// output; errors as JSON on standard error). The shapes are versioned and
    /// documented in docs/json-output.md.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write an activation request for this machine, or install the vendor's response.
    ///
    /// Without --response: writes a signed activation request (default file
    /// PRODUCT.req). Send it to your vendor (upload it at the vendor's portal or mail it);
    /// running it again repeats the same request. With --response FILE: installs the
    /// license file the vendor sent back (same as `lic install FILE`).
    OfflineActivate(ActivateArgs),
    /// Activate over the network in one step: send the activation request to your
    /// vendor's portal and install the license it answers with.
    ///
    /// For a machine with a network. The portal's refusal (no seat left, wrong product…)
    /// is shown as the portal says it. Without a network use `lic offline-activate`.
    Activate(OnlineActivateArgs),
    /// Verify and install license, refresh or key set files, in the order given.
    ///
    /// A key set (the vendor keys to trust from now on, signed by a key trusted now) is
    /// installed for every product of the store; install a vendor's key sets oldest first.
    Install {
        /// The files; `-` reads one file from standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the license status. Exit status 1 if the license may not be used.
    Status,
    /// Check that the license may be used (and a feature, if given): exit status 0 or 1.
    Check {
        /// The product to check (the same as --product) [default: the only product in
        /// the store].
        #[arg(value_name = "PRODUCT", id = "check_product")]
        product: Option<String>,
        /// A feature that must be licensed and not used up.
        #[arg(long)]
        feature: Option<String>,
        /// Print nothing; the exit status is the answer.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Record consumption of a feature.
    Consume {
        feature: String,
        /// Units to record.
        #[arg(default_value_t = 1)]
        amount: u64,
    },
    /// Write a signed usage report with the cumulative consumption counters.
    UsageReport {
        /// Where to write it; `-` for standard output.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Give up this machine's activation over the network in one step: removes the
    /// license, sends the signed deactivation file (with the final counters) to your
    /// vendor's portal, and shows the vendor's confirmation that the seat is free.
    ///
    /// If the portal cannot be reached, the license is removed all the same and the
    /// deactivation file is kept: run the command again, or write it with `lic
    /// offline-deactivate --out FILE` and send it to your vendor.
    Deactivate {
        /// Your vendor's portal, e.g. https://licensing.example.com
        #[arg(long, value_name = "URL")]
        server: String,
    },
    /// Give up this machine's activation: removes the license and writes the signed
    /// deactivation file (with the final counters) for the vendor.
    OfflineDeactivate {
        /// Where to write it; `-` for standard output.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Hold a floating seat while a command runs: take a seat from the license server,
    /// run the command, renew the lease in the background while it runs, and release
    /// the seat when it exits. Exits with the command's status.
    ///
    /// The command sees the lease in the store (LIC_STORE and LIC_PRODUCT are set for
    /// it), so `lic check` and the application's own checks pass while the seat is
    /// held. All seats in use is a refusal, unless --wait queues for one.
    #[command(
        after_help = "Example: lic lease --server https://licensing.example.com \
                            --product photo-pro --key KEY -- photo-pro --batch jobs/"
    )]
    Lease(LeaseArgs),
    /// Check a floating seat out for offline use: the license server answers with a
    /// license that holds until an Offline Expiry Date (OED), without network.
    ///
    /// The seat stays taken until the OED, or until you check it in (`lic checkin`).
    Checkout(CheckoutArgs),
    /// Return a checked-out floating seat before its Offline Expiry Date: removes the
    /// checkout license and sends the signed check-in file to the license server
    /// (--server), or writes it for your vendor (--out FILE).
    ///
    /// If the server cannot be reached, the license is removed all the same and the
    /// check-in file is kept: run the command again, or write it with --out.
    Checkin(CheckinArgs),
    /// Show this machine's fingerprint (component hashes keyed by the device key).
    Fingerprint {
        /// Also compare it with the installed license (or --license FILE).
        #[arg(long)]
        explain: bool,
        /// A license file to compare with.
        #[arg(long, value_name = "FILE")]
        license: Option<PathBuf>,
    },
    /// Verify a lic file of any kind and show what it says.
    Inspect {
        /// The file (armored or binary); `-` reads standard input.
        file: PathBuf,
    },
    /// Set, remove and list device variables: key/value pairs for your vendor.
    ///
    /// Variables (a site, a workstation id…) travel signed by this machine in the
    /// product's activation request, usage reports and deactivation, and your vendor sees
    /// the latest on the activation. They may be set before activating (pass --product).
    #[command(subcommand)]
    Var(VarCommand),
    /// Manage the license store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The license key you received.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["user", "response"])]
    pub key: Option<String>,
    /// Your user id, for user-based licenses.
    #[arg(long, value_name = "USER", conflicts_with = "response")]
    pub user: Option<String>,
    /// Where to write the request; `-` for standard output [default: PRODUCT.req].
    #[arg(long, value_name = "FILE", conflicts_with = "response")]
    pub out: Option<PathBuf>,
    /// Replace an existing request file.
    #[arg(long)]
    pub force: bool,
    /// Also print the request as a QR code, for a phone to scan.
    #[arg(long, conflicts_with = "response")]
    pub qr: bool,
    /// Install the license file your vendor sent back.
    #[arg(long, value_name = "FILE")]
    pub response: Option<PathBuf>,
    /// For an on-premise floating server (`lic-server`): ask for a pool of this many
    /// seats of the floating license, to lease them on your own network. Use the
    /// server's store (--store).
    #[arg(long, value_name = "N", conflicts_with = "response",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pool_seats: Option<u32>,
}

#[derive(Debug, Args)]
pub struct OnlineActivateArgs {
    /// Your vendor's portal, e.g. https://licensing.example.com
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The license key you received.
    #[arg(long, value_name = "KEY", conflicts_with = "user")]
    pub key: Option<String>,
    /// Your user id, for user-based licenses.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// The license server, e.g. https://licensing.example.com
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The license key (needed the first time; remembered for the product).
    #[arg(long, value_name = "KEY", conflicts_with = "user")]
    pub key: Option<String>,
    /// Your user id, for user-based licenses (instead of --key).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Also hold a lease on this floating feature (repeat for several).
    #[arg(long = "feature", value_name = "NAME")]
    pub features: Vec<String>,
    /// When every seat is in use, wait in the server's queue until one frees (progress
    /// on standard error) instead of giving up.
    #[arg(long)]
    pub wait: bool,
    /// The command to run, and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct CheckoutArgs {
    /// The license server, e.g. https://licensing.example.com
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Hours of offline use (the server caps them by the license's policy, and at the
    /// license's expiry).
    #[arg(long, value_name = "H", value_parser = clap::value_parser!(u64).range(1..=MAX_HOURS))]
    pub hours: u64,
    /// The license key (needed the first time; remembered for the product).
    #[arg(long, value_name = "KEY", conflicts_with = "user")]
    pub key: Option<String>,
    /// Your user id, for user-based licenses (instead of --key).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// The most hours a checkout asks for (the format's limit; servers cap lower).
const MAX_HOURS: u64 = format::MAX_CHECKOUT_HOURS;

#[derive(Debug, Args)]
pub struct CheckinArgs {
    /// Send the check-in to the license server, e.g. https://licensing.example.com
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "out",
        conflicts_with = "out"
    )]
    pub server: Option<String>,
    /// Write the check-in file here instead (`-`: standard output), for your vendor.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace an existing file (with --out).
    #[arg(long, requires = "out")]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set a variable (replacing its value). It travels in the next activation request,
    /// usage report or deactivation.
    Set {
        /// 1 to 64 letters, digits, '-', '_' or '.'.
        name: String,
        /// Any text up to 1024 bytes (UTF-8); may be empty.
        value: String,
    },
    /// Remove a variable (nothing changes if it is not set).
    Unset { name: String },
    /// List the product's variables.
    List,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Show where the store is and what it holds.
    Info,
    /// Set aside a store that fails its integrity check (or whose state is missing), so
    /// you can activate again. The device key stays: the vendor gives the same seat back
    /// with the usage it counted so far, and sees the reset.
    Reset {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Forget a product on this machine: a pending activation request (a mistyped
    /// product, a request you will not send) or, with --yes, an installed license.
    ///
    /// Forgetting an installed license does not give its seat back (use `lic
    /// offline-deactivate` for that): the license can never be installed here again,
    /// and the vendor still counts the seat until they deactivate it.
    Forget {
        /// The product to forget.
        product: String,
        /// Confirm forgetting an installed license.
        #[arg(long)]
        yes: bool,
    },
}

/// A failure to report: what is wrong, what to do, a stable code and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: String,
    /// A stable code: lic's own, or the portal's when it refused a file.
    pub code: Cow<'static, str>,
    pub exit: u8,
}

impl Failure {
    fn new(
        message: impl Into<String>,
        hint: impl Into<String>,
        code: impl Into<Cow<'static, str>>,
    ) -> Self {
        Failure {
            message: message.into(),
            hint: hint.into(),
            code: code.into(),
            exit: EXIT_ERROR,
        }
    }
}

impl From<FormatError> for Failure {
    fn from(e: FormatError) -> Self {
        Failure::new(e.to_string(), e.hint(), e.code())
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        Failure::new(e.to_string(), e.hint(), "key")
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        ClientError::from(e).into()
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let exit = match &e {
            ClientError::Violation(_)
            | ClientError::FeatureNotLicensed { .. }
            | ClientError::LimitExceeded { .. } => EXIT_NO,
            _ => EXIT_ERROR,
        };
        Failure {
            message: e.to_string(),
            hint: e.hint().to_string(),
            code: e.code().into(),
            exit,
        }
    }
}

impl From<&Violation> for Failure {
    fn from(v: &Violation) -> Self {
        Failure {
            message: v.to_string(),
            hint: v.hint().to_string(),
            code: v.code().into(),
            exit: EXIT_NO,
        }
    }
}

fn io_failure(what: String, e: io::Error) -> Failure {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => {
            "check the file name and the directory you run lic in (`ls` shows what is there)"
        }
        io::ErrorKind::PermissionDenied => {
            "you may not use this file: check its permissions, or choose another path"
        }
        _ => "check the path and that you may read and write it",
    };
    Failure::new(format!("{what}: {e}"), hint, "io")
}

/// Run `lic` with parsed arguments; returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    match execute(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            report(&failure, cli.global.format);
            ExitCode::from(failure.exit)
        }
    }
}

/// What [`run`] does short of reporting a failure: the command's exit status, or the
/// failure [`run`] prints (with the hint it prints). For tests that drive many commands
/// in one process and look at the failure's code.
pub fn execute(cli: &Cli) -> Result<u8, Failure> {
    dispatch(cli).map_err(|mut failure| {
        if failure.code == "unknown-key" {
            failure.hint = trust_hint(&cli.global);
        }
        failure
    })
}

/// The error report on standard error. A message may quote a file's strings (a product,
/// an activation id): control characters and bidi overrides in it are escaped. With
/// `--format json`, one JSON document: `{"format": 1, "error": {code, message, hint}}`.
fn report(failure: &Failure, fmt: OutputFormat) {
    use lic_core::text::escape;
    if fmt == OutputFormat::Json {
        output::json_err(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "error": {
                "code": failure.code,
                "message": failure.message,
                "hint": failure.hint,
                "exit": failure.exit,
            },
        }));
        return;
    }
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "error: {}", escape(&failure.message));
    let _ = writeln!(err, "  what to do: {}", escape(&failure.hint));
    let _ = writeln!(err, "  (error code: {})", escape(&failure.code));
}

/// What to do about a file signed by a vendor key lic does not trust: where lic looks
/// for trusted keys, and what it found there.
fn trust_hint(g: &Global) -> String {
    if let Some(path) = &g.trust {
        return format!(
            "the file's key is not in {} (given with --trust): use your vendor's current \
             public key file, or install the key set they sent (lic install KEYSET-FILE)",
            path.display()
        );
    }
    match installed_trust_file() {
        Some(path) if path.is_file() => format!(
            "the file's key is not among the vendor keys in {}: if your vendor changed \
             keys, install the key set they sent (lic install KEYSET-FILE); otherwise ask \
             your vendor whether this file is theirs",
            path.display()
        ),
        Some(path) => format!(
            "no vendor key is trusted: there is no {} (the vendor's public key file, \
             installed beside lic). Put your vendor's trusted-keys.pem there, or pass \
             --trust FILE for one command",
            path.display()
        ),
        None => "no vendor key is trusted: put your vendor's trusted-keys.pem beside the \
                 lic executable, or pass --trust FILE for one command"
            .to_string(),
    }
}

/// The trust file the vendor installs beside the `lic` executable.
fn installed_trust_file() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|dir| dir.join(TRUST_FILE)))
}

fn dispatch(cli: &Cli) -> Result<u8, Failure> {
    let g = &cli.global;
    match &cli.command {
        Command::OfflineActivate(args) => match &args.response {
            Some(file) => install_all(g, std::slice::from_ref(file)),
            None => activate(g, args),
        },
        Command::Activate(args) => activate_online(g, args),
        Command::Install { files } => install_all(g, files),
        Command::Status => status(g),
        Command::Check {
            product,
            feature,
            quiet,
        } => {
            let g = with_product(g, product.as_deref())?;
            check(&g, feature.as_deref(), *quiet)
        }
        Command::Consume { feature, amount } => consume(g, feature, *amount),
        Command::UsageReport { out, force } => usage_report(g, out, *force),
        Command::OfflineDeactivate { out, force } => deactivate(g, out, *force),
        Command::Deactivate { server } => deactivate_online(g, server),
        Command::Lease(args) => floating::lease(g, args),
        Command::Checkout(args) => floating::checkout(g, args),
        Command::Checkin(args) => floating::checkin(g, args),
        Command::Fingerprint { explain, license } => fingerprint(g, *explain, license.as_deref()),
        Command::Inspect { file } => inspect(g, file),
        Command::Var(VarCommand::Set { name, value }) => var_set(g, name, value),
        Command::Var(VarCommand::Unset { name }) => var_unset(g, name),
        Command::Var(VarCommand::List) => var_list(g),
        Command::Store(StoreCommand::Info) => store_info(g),
        Command::Store(StoreCommand::Reset { yes }) => store_reset(g, *yes),
        Command::Store(StoreCommand::Forget { product, yes }) => store_forget(g, product, *yes),
        Command::Completions { shell } => {
            let mut out = io::stdout().lock();
            clap_complete::generate(*shell, &mut Cli::command(), "lic", &mut out);
            Ok(EXIT_OK)
        }
    }
}

/// The global options with the product a command names in its own argument (`lic check
/// photo-pro`); it must agree with --product when both are given.
fn with_product(g: &Global, positional: Option<&str>) -> Result<Global, Failure> {
    let product = match (positional, g.product.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return Err(Failure::new(
                format!("two products are named: '{a}' and --product '{b}'"),
                "name the product once",
                "usage",
            ));
        }
        (Some(p), _) => Some(p.to_string()),
        (None, p) => p.map(str::to_string),
    };
    Ok(Global {
        product,
        ..g.clone()
    })
}

fn store_dir(g: &Global) -> Result<PathBuf, Failure> {
    match &g.store {
        Some(dir) => Ok(dir.clone()),
        None => Store::default_dir().ok_or_else(|| {
            Failure::new(
                "this system has no per-user data directory for the license store",
                "choose a store directory with --store DIR or LIC_STORE",
                "store-io",
            )
        }),
    }
}

/// The trust anchors: `--trust FILE`, else the trust file the vendor installed beside the
/// executable, else none. Never the store, never the environment: whoever can write
/// those is the customer, who must not choose which vendor keys are trusted. Later
/// changes of trust arrive as vendor-signed key sets (see [`effective_keyring`]).
fn keyring(g: &Global) -> Result<Keyring, Failure> {
    if let Some(path) = &g.trust {
        return Ok(Keyring::read(path)?);
    }
    match installed_trust_file() {
        Some(path) if path.is_file() => Ok(Keyring::read(&path)?),
        _ => Ok(Keyring::new()),
    }
}

/// The anchors with the key sets installed in the store (if there is a store that can be
/// read): what files are verified against outside a product's client (`inspect`, finding
/// the product of a file to install).
fn effective_keyring(g: &Global) -> Result<Keyring, Failure> {
    let anchors = keyring(g)?;
    if missing_store(g)?.is_some() {
        return Ok(anchors);
    }
    let state = Store::open(store_dir(g)?)
        .and_then(|store| store.device_key().and_then(|key| store.load(&key)));
    Ok(match state {
        Ok(state) => lic_core::trust::effective(&anchors, &state.key_sets).keys,
        // A store that cannot be read adds nothing; the commands that use it say why.
        Err(_) => anchors,
    })
}

/// The store directory, if it does not exist. Commands that would only find that
/// nothing is activated there do not create it: a mistyped `--store` leaves no trace.
fn missing_store(g: &Global) -> Result<Option<PathBuf>, Failure> {
    let dir = store_dir(g)?;
    // An error (a directory on the way that cannot be read) is left to the store to
    // report.
    Ok(matches!(dir.try_exists(), Ok(false)).then_some(dir))
}

fn no_store(dir: &Path) -> Failure {
    Failure {
        exit: EXIT_NO,
        ..Failure::new(
            format!(
                "no product is activated: there is no license store at {}",
                dir.display()
            ),
            "if the license is in another store, pass --store DIR or set LIC_STORE (the \
             application and lic must use the same store); otherwise activate first: \
             `lic offline-activate --key KEY --product PRODUCT`",
            "not-activated",
        )
    }
}

/// The product to act on: --product, else the only product the store knows.
fn product(g: &Global) -> Result<String, Failure> {
    if let Some(p) = &g.product {
        return Ok(p.clone());
    }
    if let Some(dir) = missing_store(g)? {
        return Err(no_store(&dir));
    }
    let store = Store::open(store_dir(g)?)?;
    // The common case, one product, costs no key and no authentication here: the client
    // authenticates the state at once (and reports a tampered one). Anything else is
    // answered from the authenticated state.
    if let Some([one]) = store.peek_products().as_deref() {
        return Ok(one.clone());
    }
    let key = store.device_key()?;
    let state = store.load(&key)?;
    // A product with a license or a pending request is the one meant; a product only
    // deactivated here is meant only when there is nothing else.
    let live: Vec<String> = state
        .installations
        .keys()
        .chain(state.pending.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let products = if live.is_empty() {
        state.products()
    } else {
        live
    };
    match products.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure {
            exit: EXIT_NO,
            ..Failure::new(
                "no product is activated in this license store",
                Violation::NotActivated {
                    product: String::new(),
                }
                .hint(),
                "not-activated",
            )
        }),
        several => {
            let described: Vec<String> = several
                .iter()
                .map(|p| {
                    if state.installations.contains_key(p) {
                        format!("{p} (installed)")
                    } else if state.pending.contains_key(p) {
                        format!("{p} (activation request pending)")
                    } else {
                        format!("{p} (deactivated)")
                    }
                })
                .collect();
            let hint = match state.pending.keys().next() {
                Some(pending) => format!(
                    "pass --product PRODUCT (or set LIC_PRODUCT); a request made by mistake \
                     (a mistyped product) is dropped with `lic store forget {pending}`"
                ),
                None => "pass --product PRODUCT (or set LIC_PRODUCT)".to_string(),
            };
            Err(Failure::new(
                format!(
                    "the license store holds several products: {}; say which one",
                    described.join(", ")
                ),
                hint,
                "product-ambiguous",
            ))
        }
    }
}

fn client(g: &Global, product_name: Option<String>) -> Result<Client, Failure> {
    let product_name = match product_name {
        Some(p) => p,
        None => product(g)?,
    };
    Ok(Client::builder(product_name)
        .store(store_dir(g)?)
        .trust(keyring(g)?)
        .open()?)
}

fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let limit = format::armor::MAX_FILE_SIZE as u64 + 1;
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| io_failure(format!("cannot read {}", path.display()), e))?;
    Ok(bytes)
}

/// Refuse early when `out` exists (and `force` is not given), before anything is made.
fn check_writable(out: &Path, force: bool) -> Result<(), Failure> {
    if out != Path::new("-") && !force && out.exists() {
        return Err(Failure::new(
            format!("{} already exists; it was left as it is", out.display()),
            "choose another file with --out, or pass --force to replace it",
            "exists",
        ));
    }
    Ok(())
}

/// How to name `out` in a message.
fn describe_out(out: &Path) -> String {
    if out == Path::new("-") {
        "standard output".to_string()
    } else {
        out.display().to_string()
    }
}

/// Write a signed file armored to `out` (`-`: standard output). An existing file is
/// kept unless `force`, or unless it already holds exactly this content.
fn write_file(file: &SignedFile, out: &Path, force: bool) -> Result<(), Failure> {
    let text = file.armored();
    if out == Path::new("-") {
        return output::stdout(text.as_bytes());
    }
    match lic_core::fsutil::write_file(out, text.as_bytes(), lic_core::fsutil::PUBLIC_MODE, force) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if std::fs::read(out).is_ok_and(|existing| existing == text.as_bytes()) {
                return Ok(());
            }
            Err(Failure::new(
                format!("{} already exists; it was left as it is", out.display()),
                "choose another file with --out, or pass --force to replace it",
                "exists",
            ))
        }
        Err(e) => Err(io_failure(format!("cannot write {}", out.display()), e)),
    }
}

/// The credential named on the command line: a license key or a user id.
fn credential(key: Option<&str>, user: Option<&str>) -> Result<Credential, Failure> {
    match (key, user) {
        (Some(k), None) => {
            // A typo is caught here, before a request travels to the vendor and back.
            lic_core::license_key::check(k).map_err(|e| {
                Failure::new(
                    format!("the license key {}: {e}", k.trim()),
                    e.hint(),
                    e.code(),
                )
            })?;
            Ok(Credential::LicenseKey(k.trim().to_string()))
        }
        (None, Some(u)) => Ok(Credential::User(u.trim().to_string())),
        _ => Err(Failure::new(
            "give either the license key (--key KEY) or your user id (--user USER)",
            "the license key is in the mail or on the receipt you got with the product",
            "usage",
        )),
    }
}

/// The product to activate: only --product (a request names one product, and the store
/// may not know it yet).
fn product_to_activate(g: &Global) -> Result<String, Failure> {
    g.product.clone().ok_or_else(|| {
        Failure::new(
            "which product should be activated?",
            "pass --product PRODUCT (the product code your vendor gave you)",
            "usage",
        )
    })
}

fn activate(g: &Global, args: &ActivateArgs) -> Result<u8, Failure> {
    let product_name = product_to_activate(g)?;
    let credential = credential(args.key.as_deref(), args.user.as_deref())?;
    let client = client(g, Some(product_name.clone()))?;
    let file = match args.pool_seats {
        Some(seats) => client.request_pool_activation(credential, seats)?,
        None => client.request_activation(credential)?,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{product_name}.{}",
            FileKind::ActivationRequest.extension()
        ))
    });
    write_file(&file, &out, args.force)?;
    if args.qr {
        output::qr(file.bytes())?;
    }
    eprintln!(
        "wrote the activation request for '{product_name}' to {}",
        describe_out(&out)
    );
    eprintln!("next: send this file to your vendor (upload it at their portal, or mail it).");
    eprintln!("when the license file comes back, install it with: lic install FILE");
    // With `--out -` the request itself is the output.
    if g.format == OutputFormat::Json && out != Path::new("-") {
        output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product_name,
            "request": out,
            "file_hash": file.hash().to_string(),
            "pool_seats": args.pool_seats,
        }))?;
    }
    Ok(EXIT_OK)
}

/// `lic activate --server URL`: the request goes to the portal, the license it answers
/// with is installed, and the portal's refusal is shown as it is.
fn activate_online(g: &Global, args: &OnlineActivateArgs) -> Result<u8, Failure> {
    let product_name = product_to_activate(g)?;
    let credential = credential(args.key.as_deref(), args.user.as_deref())?;
    let client = client(g, Some(product_name.clone()))?;
    let had_pending = client.has_pending_request()?;
    let request = client.request_activation(credential)?;
    let answer = match online::upload(&args.server, "/api/v1/activate", &request.armored()) {
        Ok(answer) => answer,
        Err(refused) => {
            // A request the portal refused (a mistyped product or key) is not left
            // pending to confuse the next command — unless it was there before (an
            // offline request may be on its way to the vendor) or the portal was not
            // reached at all (running the command again sends the same request).
            let reached = !matches!(&*refused.code, "portal-unreachable" | "portal-answer");
            if reached && !had_pending {
                let _ = client.forget(false);
            }
            return Err(refused);
        }
    };
    let installed = client
        .install(answer.response.as_bytes())
        .map_err(install_failure)?;
    report_installed(
        g,
        &[(PathBuf::from(&args.server), product_name.clone(), installed)],
    )?;
    for flag in &answer.flags {
        eprintln!("note: the vendor noted on this activation: {flag}");
    }
    Ok(EXIT_OK)
}

/// Install each file in turn; the first one refused stops the rest (those installed
/// before it stay installed, and are reported).
fn install_all(g: &Global, files: &[PathBuf]) -> Result<u8, Failure> {
    if files
        .iter()
        .filter(|f| f.as_path() == Path::new("-"))
        .count()
        > 1
    {
        return Err(Failure::new(
            "standard input (`-`) can be read once",
            "give `-` at most once",
            "usage",
        ));
    }
    let mut done = Vec::new();
    for file in files {
        match install(g, file) {
            Ok((product, installed)) => done.push((file.clone(), product, installed)),
            Err(f) => {
                if !done.is_empty() && g.format == OutputFormat::Text {
                    report_installed(g, &done)?;
                }
                return Err(if files.len() > 1 {
                    Failure {
                        message: format!("{}: {}", file.display(), f.message),
                        ..f
                    }
                } else {
                    f
                });
            }
        }
    }
    report_installed(g, &done)?;
    Ok(EXIT_OK)
}

/// A refused file is an error (exit 2), whatever the reason, unlike a negative check; a
/// store that fails its integrity check is the same answer (1) in every command.
fn install_failure(e: ClientError) -> Failure {
    let tampered = matches!(e, ClientError::Violation(Violation::StoreTampered { .. }));
    Failure {
        exit: if tampered { EXIT_NO } else { EXIT_ERROR },
        ..Failure::from(e)
    }
}

/// Install one file; the product it was installed for and what happened.
fn install(g: &Global, file: &Path) -> Result<(String, Installed), Failure> {
    let input = read_input(file)?;
    // A file that holds the portal's refusal (curl wrote the error body where the
    // license should be) says so, with the portal's own words.
    if let Some(refusal) = online::refusal_in(&input) {
        return Err(refusal);
    }
    // A key set is for every product of the store, and the client checks it against the
    // keys in force (and says which earlier key sets to install first): it is not read
    // here. A license or refresh names its product; --product, when given, must agree
    // (the client checks).
    let (armor_kind, bytes) = format::unarmor(&input)?;
    let key_set = match armor_kind {
        Some(kind) => kind == FileKind::KeySet,
        None => format::kind_of(&bytes)? == FileKind::KeySet,
    };
    let product_name = match &g.product {
        Some(p) => p.clone(),
        None if key_set => "*".into(),
        None => match format::open_any(&input, &effective_keyring(g)?)? {
            AnyFile::License(l) => l.payload().product.clone(),
            AnyFile::Refresh(r) => r.payload().product.clone(),
            other => {
                return Err(FormatError::WrongKind {
                    expected: FileKind::License,
                    found: other.kind(),
                }
                .into());
            }
        },
    };
    // A license is bound to the device key of the store that made its request: where
    // there is no store, it cannot be this machine's (and no store is made for it).
    if let Some(dir) = missing_store(g)? {
        let why = if key_set {
            "a key set is kept in the license store it changes the trust of"
        } else {
            "a license belongs to the store that made its activation request"
        };
        return Err(Failure::new(
            format!(
                "there is no license store at {}, so this file cannot be installed there: {why}",
                dir.display()
            ),
            "install it with the store you ran `lic offline-activate` with (--store DIR or \
             LIC_STORE)",
            "not-activated",
        ));
    }
    let client = client(g, Some(product_name.clone()))?;
    let installed = client.install(&input).map_err(install_failure)?;
    Ok((product_name, installed))
}

/// What installing files did, as text or one JSON document.
fn report_installed(g: &Global, done: &[(PathBuf, String, Installed)]) -> Result<(), Failure> {
    let mut text = String::new();
    let mut items = Vec::new();
    for (file, product_name, installed) in done {
        let (line, doc) = match installed {
            Installed::License { activation_id } => (
                format!("installed the license for '{product_name}' (activation {activation_id})"),
                json!({ "result": "license-installed", "activation_id": activation_id }),
            ),
            Installed::Refresh {
                from_serial,
                to_serial,
            } => (
                format!(
                    "applied the refresh for '{product_name}' (serial {from_serial} → {to_serial})"
                ),
                json!({ "result": "refresh-applied", "from_serial": from_serial, "to_serial": to_serial }),
            ),
            Installed::LicenseAlreadyInstalled { activation_id } => (
                format!(
                    "this license is already installed (activation {activation_id}); nothing changed"
                ),
                json!({ "result": "license-already-installed", "activation_id": activation_id }),
            ),
            Installed::RefreshAlreadyApplied { serial } => (
                format!("this refresh (serial {serial}) is already applied; nothing changed"),
                json!({ "result": "refresh-already-applied", "serial": serial }),
            ),
            Installed::Resigned { file } => (
                format!(
                    "replaced the installed {file} of '{product_name}' with the same {file} \
                     signed by the vendor's current key; nothing else changed"
                ),
                json!({ "result": "resigned", "file_kind": file.to_string() }),
            ),
            Installed::KeySet {
                from_version,
                to_version,
            } => (
                format!(
                    "installed the vendor's key set version {to_version} (was {from_version}): \
                     the trusted vendor keys changed"
                ),
                json!({ "result": "key-set-installed", "from_version": from_version, "to_version": to_version }),
            ),
            Installed::KeySetAlreadyInstalled { version } => (
                format!("this key set (version {version}) is already installed; nothing changed"),
                json!({ "result": "key-set-already-installed", "version": version }),
            ),
            _ => (String::new(), json!({ "result": "installed" })),
        };
        if !line.is_empty() {
            text.push_str(&line);
            text.push('\n');
        }
        let mut doc = doc;
        doc["file"] = json!(file);
        doc["product"] = json!(if product_name == "*" {
            None
        } else {
            Some(product_name)
        });
        items.push(doc);
    }
    match g.format {
        OutputFormat::Text => output::text(&text),
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "installed": items,
        })),
    }
}

fn status(g: &Global) -> Result<u8, Failure> {
    if let (Some(dir), Some(product)) = (missing_store(g)?, &g.product) {
        // Nothing is activated where there is no store; say so in the usual form (a
        // script reads the JSON), without creating the store.
        eprintln!(
            "note: there is no license store at {}; nothing was created there (pass --store \
             DIR or set LIC_STORE if the license is in another store)",
            dir.display()
        );
        let status = Status {
            product: product.clone(),
            now: chrono::Utc::now(),
            entitlements: None,
            features: Vec::new(),
            violations: vec![Violation::NotActivated {
                product: product.clone(),
            }],
            last_seen: None,
            fingerprint: None,
            device_kid: None,
            lease: None,
            leases: Vec::new(),
        };
        output::status(&status, g.format)?;
        return Ok(EXIT_NO);
    }
    let client = client(g, None)?;
    let status = client.status()?;
    output::status(&status, g.format)?;
    Ok(if status.is_valid() { EXIT_OK } else { EXIT_NO })
}

fn check(g: &Global, feature: Option<&str>, quiet: bool) -> Result<u8, Failure> {
    let opened = match missing_store(g)? {
        Some(dir) => Err(no_store(&dir)),
        None => client(g, None),
    };
    let client = match opened {
        Err(f) if quiet && f.exit == EXIT_NO => return Ok(EXIT_NO),
        other => other?,
    };
    match client.check(feature) {
        Ok(()) => {
            if quiet {
                return Ok(EXIT_OK);
            }
            match g.format {
                OutputFormat::Json => output::json(&json!({
                    "format": output::JSON_FORMAT_VERSION,
                    "product": client.product(),
                    "feature": feature,
                    "ok": true,
                }))?,
                OutputFormat::Text => {
                    let line = match feature {
                        Some(f) => format!("ok: '{}' may use feature '{f}'\n", client.product()),
                        None => format!("ok: '{}' is licensed\n", client.product()),
                    };
                    output::text(&line)?;
                }
            }
            Ok(EXIT_OK)
        }
        Err(e) if quiet && is_negative(&e) => Ok(EXIT_NO),
        Err(e) => Err(e.into()),
    }
}

fn is_negative(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Violation(_)
            | ClientError::FeatureNotLicensed { .. }
            | ClientError::LimitExceeded { .. }
    )
}

fn consume(g: &Global, feature: &str, amount: u64) -> Result<u8, Failure> {
    let client = client(g, None)?;
    let consumed = client.consume(feature, amount)?;
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": client.product(),
            "feature": feature,
            "recorded": amount,
            "total": consumed.total,
            "overage": consumed.overage,
        }))?,
        OutputFormat::Text => {
            let line = if consumed.overage > 0 {
                format!(
                    "recorded {amount} of '{feature}': {} in total, {} beyond the limit (overage)\n",
                    consumed.total, consumed.overage
                )
            } else {
                format!(
                    "recorded {amount} of '{feature}': {} in total\n",
                    consumed.total
                )
            };
            output::text(&line)?;
        }
    }
    Ok(EXIT_OK)
}

/// The JSON document of a device file written to `out` (none when `out` is standard
/// output: the file itself is the output there).
fn wrote_json(
    g: &Global,
    product_name: &str,
    what: &str,
    out: &Path,
    file: &SignedFile,
) -> Result<(), Failure> {
    if g.format == OutputFormat::Json && out != Path::new("-") {
        output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product_name,
            what: out,
            "file_hash": file.hash().to_string(),
        }))?;
    }
    Ok(())
}

fn usage_report(g: &Global, out: &Path, force: bool) -> Result<u8, Failure> {
    let client = client(g, None)?;
    // Check the destination before the report is made: making one advances the device
    // journal, and a report that cannot be written would be lost.
    check_writable(out, force)?;
    let file = client.usage_report()?;
    write_file(&file, out, force)?;
    eprintln!(
        "wrote the usage report to {}; send it to your vendor (upload it at their portal)",
        describe_out(out)
    );
    wrote_json(g, client.product(), "usage_report", out, &file)?;
    Ok(EXIT_OK)
}

fn deactivate(g: &Global, out: &Path, force: bool) -> Result<u8, Failure> {
    let client = client(g, None)?;
    check_writable(out, force)?;
    let file = client.deactivate()?;
    write_file(&file, out, force)?;
    eprintln!(
        "'{}' is deactivated on this machine; the deactivation file is {}",
        client.product(),
        if out == Path::new("-") {
            "on standard output".to_string()
        } else {
            out.display().to_string()
        }
    );
    eprintln!(
        "next: send it to your vendor (upload it at their portal) to free the seat; then \
         activate the other machine"
    );
    wrote_json(g, client.product(), "deactivation", out, &file)?;
    Ok(EXIT_OK)
}

/// `lic deactivate --server URL`: deactivate here, send the deactivation file, show the
/// vendor's confirmation. The file stays in the store (a tombstone) if sending fails.
fn deactivate_online(g: &Global, server: &str) -> Result<u8, Failure> {
    let client = client(g, None)?;
    let file = client.deactivate()?;
    let answer =
        online::upload(server, "/api/v1/deactivate", &file.armored()).map_err(|f| Failure {
            hint: format!(
                "{} — the license is removed from this machine and its deactivation file is \
                 kept: run this command again later, or write the file with `lic \
                 offline-deactivate --out FILE` and send it to your vendor",
                f.hint
            ),
            ..f
        })?;
    let activation = answer.activation.clone().unwrap_or_default();
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": client.product(),
            "activation_id": answer.activation,
            "seat_freed": true,
            "replay": answer.replay,
            "receipt": answer.response,
            "flags": answer.flags,
        }))?,
        OutputFormat::Text => {
            let mut t = format!(
                "'{}' is deactivated: the vendor confirmed that the seat of activation {activation} \
                 is free{}\n",
                client.product(),
                if answer.replay {
                    " (it had already)"
                } else {
                    ""
                }
            );
            for flag in &answer.flags {
                t.push_str(&format!(
                    "note: the vendor noted on this activation: {flag}\n"
                ));
            }
            t.push_str("you can now activate the product on another machine\n");
            output::text(&t)?;
        }
    }
    Ok(EXIT_OK)
}

fn fingerprint(g: &Global, explain: bool, license: Option<&Path>) -> Result<u8, Failure> {
    let keys = effective_keyring(g)?;
    let given: Option<License> = match license {
        Some(path) => Some(format::open::<License>(&read_input(path)?, &keys)?.into_payload()),
        None => None,
    };
    let product_name = match (&given, &g.product) {
        (Some(l), _) => l.product.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => product(g)?,
    };
    if let Some(dir) = missing_store(g)? {
        // The hashes are keyed by the store's device key: without a store there are none
        // to show (and none is made for it), only which components this machine has.
        eprintln!(
            "note: there is no license store at {}; the component hashes are keyed by a \
             store's device key, so only the components' names are shown (pass --store DIR \
             or set LIC_STORE for the store you activate with)",
            dir.display()
        );
        let raw = SystemSource::from_env().collect();
        let names: Vec<&str> = raw.names().collect();
        output::fingerprint_names(&product_name, &names, explain, g.format)?;
        return Ok(EXIT_OK);
    }
    let client = client(g, Some(product_name))?;
    let report = if explain || given.is_some() {
        client.explain_fingerprint(given.as_ref())?
    } else {
        None
    };
    output::fingerprint(
        client.product(),
        &client.fingerprint()?,
        report.as_ref(),
        explain,
        g.format,
    )?;
    Ok(EXIT_OK)
}

fn inspect(g: &Global, file: &Path) -> Result<u8, Failure> {
    let keys = effective_keyring(g)?;
    let input = read_input(file)?;
    if let Some(refusal) = online::refusal_in(&input) {
        return Err(refusal);
    }
    let (any, pool) = open_inspected(&input, &keys)?;
    output::inspect(&any, pool.as_ref(), g.format)?;
    Ok(EXIT_OK)
}

/// Read and verify a file of any kind for `inspect`. Licenses and leases are read as a
/// client reads them (`lic_core::pool::open`): signed by a vendor key, or by an
/// on-premise floating server whose pool chain they carry, refused with the pool's code
/// (`pool-untrusted`, …) when that chain does not hold. A file that carries no pool is
/// refused with the format's error, as by every other reader.
fn open_inspected(input: &[u8], keys: &Keyring) -> Result<(AnyFile, Option<Pool>), Failure> {
    let (armor_kind, bytes) = format::unarmor(input)?;
    // The kind the armor names, else (binary, QR text) the signed content type; a file
    // whose content type cannot be read is left to `open_any`, for its exact error.
    let kind = armor_kind.or_else(|| format::kind_of(&bytes).ok());
    Ok(match kind {
        Some(FileKind::License) => {
            let (file, pool) = pool::open::<License>(input, keys).map_err(pool_failure)?;
            (AnyFile::License(file), pool)
        }
        Some(FileKind::Lease) => {
            let (file, pool) = pool::open::<Lease>(input, keys).map_err(pool_failure)?;
            (AnyFile::Lease(file), pool)
        }
        _ => (format::open_any(input, keys)?, None),
    })
}

/// A refusal by the pool chain: the format's own error when the file is simply not
/// signed by a trusted key (or not a lic file at all), else the pool's code.
fn pool_failure(e: PoolError) -> Failure {
    match e {
        PoolError::Untrusted(e) | PoolError::Format(e) => e.into(),
        e => Failure::new(e.to_string(), e.hint(), e.code()),
    }
}

fn store_info(g: &Global) -> Result<u8, Failure> {
    use std::fmt::Write as _;
    let store = Store::open(store_dir(g)?)?;
    let key = store.device_key()?;
    let state = store.load(&key)?;
    let key_sets = lic_core::trust::effective(&keyring(g)?, &state.key_sets).version;
    if g.format == OutputFormat::Json {
        output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "store": store.dir(),
            "device_kid": key.kid().to_string(),
            "installed": state.installations.keys().collect::<Vec<_>>(),
            "pending": state.pending.keys().collect::<Vec<_>>(),
            "deactivated": state.tombstones.len(),
            "key_set_version": key_sets,
        }))?;
        return Ok(EXIT_OK);
    }
    let mut t = String::new();
    let _ = writeln!(t, "store:      {}", store.dir().display());
    let _ = writeln!(t, "device key: {}", key.kid());
    for p in state.installations.keys() {
        let _ = writeln!(t, "installed:  {p}");
    }
    for p in state.pending.keys() {
        let _ = writeln!(
            t,
            "pending:    {p} (activation request waiting for its license; `lic store forget \
             {p}` drops it)"
        );
    }
    let _ = writeln!(t, "deactivated activations: {}", state.tombstones.len());
    let _ = match key_sets {
        0 => writeln!(t, "vendor key sets: none installed"),
        v => writeln!(t, "vendor key sets: version {v} in force"),
    };
    // Through the writer that takes a closed pipe (`lic store info | head -2`) calmly.
    output::text(&t)?;
    Ok(EXIT_OK)
}

fn store_reset(g: &Global, yes: bool) -> Result<u8, Failure> {
    let store = Store::open(store_dir(g)?)?;
    // What is wrong? Only a store that fails its integrity check (or whose device key is
    // missing or damaged) is reset; an intact store, or one from a newer lic, is not.
    let problem = match store.device_key() {
        Ok(key) => match store.load(&key) {
            Ok(_) => None,
            Err(StoreError::Tampered { reason }) => Some(reason),
            Err(e) => return Err(e.into()),
        },
        Err(StoreError::Tampered { reason }) => Some(reason),
        Err(StoreError::Key(e)) => Some(format!("the device key is unusable: {e}")),
        Err(e) => return Err(e.into()),
    };
    let Some(problem) = problem else {
        return Err(Failure::new(
            "the license store is intact; there is nothing to reset",
            "to move a license to another machine use `lic offline-deactivate`; to drop a \
             pending request use `lic store forget PRODUCT`",
            "store-intact",
        ));
    };
    if !yes {
        return Err(Failure::new(
            format!(
                "the license store cannot be used ({problem}); resetting sets its state aside: \
                 installed licenses, usage counters and pending requests are no longer used"
            ),
            "run again with --yes to confirm; then activate again and tell your vendor",
            "confirm",
        ));
    }
    let lock = store.lock()?;
    let now = chrono::Utc::now().timestamp();
    let moved = store.quarantine(&lock, now)?;
    // The device key stays when it is intact: the next request from it takes its seat
    // again at the vendor, who carries over the consumption counted so far.
    if let Ok(key) = store.device_key_locked(&lock) {
        store.start_over(&lock, &key)?;
    }
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "reset": true,
            "moved_aside": moved,
        }))?,
        OutputFormat::Text => {
            let mut t = String::new();
            for m in &moved {
                t.push_str(&format!("moved {} aside\n", m.display()));
            }
            t.push_str("the store is reset; activate again with lic offline-activate\n");
            output::text(&t)?;
        }
    }
    Ok(EXIT_OK)
}

/// The product whose variables a `lic var` command acts on: --product, else the only
/// product the store knows. Variables may be set before activation, when the store knows
/// no product yet: then the product must be named.
fn var_product(g: &Global) -> Result<String, Failure> {
    product(g).map_err(|f| {
        if f.code == "not-activated" {
            Failure::new(
                "no product is named, and the license store knows none yet",
                "name the product with --product PRODUCT (or LIC_PRODUCT): variables can be \
                 set before the product is activated",
                "product-needed",
            )
        } else {
            f
        }
    })
}

fn var_set(g: &Global, name: &str, value: &str) -> Result<u8, Failure> {
    let product_name = var_product(g)?;
    let client = client(g, Some(product_name))?;
    client.set_variable(name, value)?;
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": client.product(),
            "name": name,
            "value": value,
        }))?,
        OutputFormat::Text => output::text(&format!(
            "set '{name}' for '{}'; it goes to your vendor with the next activation request, \
             usage report or deactivation\n",
            client.product()
        ))?,
    }
    Ok(EXIT_OK)
}

fn var_unset(g: &Global, name: &str) -> Result<u8, Failure> {
    let product_name = var_product(g)?;
    // A store that does not exist has no variables: it is not made for this.
    let removed = if missing_store(g)?.is_some() {
        None
    } else {
        client(g, Some(product_name.clone()))?.remove_variable(name)?
    };
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product_name,
            "name": name,
            "removed": removed.is_some(),
        }))?,
        OutputFormat::Text => output::text(&if removed.is_some() {
            format!("removed '{name}' from '{product_name}'\n")
        } else {
            format!(
                "'{name}' is not set for '{product_name}'; nothing changed (`lic var list` \
                 shows what is set)\n"
            )
        })?,
    }
    Ok(EXIT_OK)
}

fn var_list(g: &Global) -> Result<u8, Failure> {
    let product_name = var_product(g)?;
    let variables = if missing_store(g)?.is_some() {
        Default::default()
    } else {
        client(g, Some(product_name.clone()))?.variables()?
    };
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product_name,
            "variables": variables,
        }))?,
        OutputFormat::Text if variables.is_empty() => output::text(&format!(
            "no variables are set for '{product_name}' (`lic var set NAME VALUE` sets one)\n"
        ))?,
        OutputFormat::Text => output::text(
            &variables
                .iter()
                // (A line feed in a value shows as `\u{a}`: one line per variable.)
                .map(|(name, value)| format!("{name} = {}\n", lic_core::text::escape(value)))
                .collect::<String>(),
        )?,
    }
    Ok(EXIT_OK)
}

fn store_forget(g: &Global, product_name: &str, yes: bool) -> Result<u8, Failure> {
    let client = client(g, Some(product_name.to_string()))?;
    let forgotten = client.forget(yes).map_err(|e| match e {
        ClientError::ConfirmForget { .. } => Failure {
            code: "confirm".into(),
            ..Failure::from(e)
        },
        other => other.into(),
    })?;
    let what = match forgotten {
        Forgotten::Pending => "pending",
        Forgotten::Installed { .. } => "installed",
        _ => "forgotten",
    };
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "forgotten": product_name,
            "was": what,
        }))?,
        OutputFormat::Text => {
            let line = match forgotten {
                Forgotten::Installed { activation_id } => format!(
                    "forgot the license of '{product_name}' (activation {activation_id}); its \
                     seat stays taken at your vendor until they deactivate it\n"
                ),
                _ => format!(
                    "forgot the pending activation request for '{product_name}'; nothing was \
                     sent to your vendor\n"
                ),
            };
            output::text(&line)?;
        }
    }
    Ok(EXIT_OK)
}
