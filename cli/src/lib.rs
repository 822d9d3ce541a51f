//! The `lic` command: argument definitions and the glue from arguments to `lic-core`.
//! `main` only parses and calls [`run`].

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lic_core::format::{self, AnyFile, FormatError, Verified};
use lic_core::keys::{KeyError, Keyring};
use serde_json::{Value, json};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a negative answer (e.g. a check that finds no license).
pub const EXIT_NO: u8 = 1;
/// Exit status: an error; the message says what is wrong and what to do next.
pub const EXIT_ERROR: u8 = 2;

/// lic — offline license activation.
#[derive(Debug, Parser)]
#[command(name = "lic", version, about, long_about = None)]
pub struct Cli {
    /// Trusted vendor public keys (SPKI PEM; several blocks allowed). Also LIC_TRUST.
    #[arg(long, global = true, env = "LIC_TRUST", value_name = "FILE")]
    pub trust: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify a lic file of any kind and show what it says.
    ///
    /// Exit status 0 if the file verifies, 2 if it is refused (the message says why).
    Inspect {
        /// The file (armored or binary); `-` reads standard input.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// A failure to report: what is wrong, what to do, and a stable code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: &'static str,
    pub code: &'static str,
}

impl From<FormatError> for Failure {
    fn from(e: FormatError) -> Self {
        Failure {
            message: e.to_string(),
            hint: e.hint(),
            code: e.code(),
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        Failure {
            message: e.to_string(),
            hint: e.hint(),
            code: "key",
        }
    }
}

/// Run `lic` with parsed arguments; returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Inspect { file, format } => inspect(cli.trust.as_deref(), file, *format),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            report(&failure);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn report(failure: &Failure) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "error: {}", failure.message);
    let _ = writeln!(err, "  what to do: {}", failure.hint);
    let _ = writeln!(err, "  (error code: {})", failure.code);
}

fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let limit = format::armor::MAX_FILE_SIZE as u64 + 1;
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| Failure {
        message: format!("cannot read {}: {e}", path.display()),
        hint: "check the path and that you may read the file",
        code: "io",
    })?;
    Ok(bytes)
}

fn keyring(trust: Option<&Path>) -> Result<Keyring, Failure> {
    match trust {
        Some(path) => Ok(Keyring::read(path)?),
        None => Ok(Keyring::new()),
    }
}

fn inspect(trust: Option<&Path>, file: &Path, output: OutputFormat) -> Result<u8, Failure> {
    let keys = keyring(trust)?;
    let input = read_input(file)?;
    let any = format::open_any(&input, &keys)?;
    let (summary, payload) = match &any {
        AnyFile::ActivationRequest(v) => describe(v),
        AnyFile::License(v) => describe(v),
        AnyFile::Refresh(v) => describe(v),
        AnyFile::Deactivation(v) => describe(v),
        AnyFile::UsageReport(v) => describe(v),
        AnyFile::Receipt(v) => describe(v),
        _ => (json!({}), Value::Null),
    };
    let kind = any.kind();
    let signed_by = match kind.signer() {
        format::SignerRole::Vendor => "vendor",
        format::SignerRole::Device => "device",
    };
    let mut out = io::stdout().lock();
    let written = match output {
        OutputFormat::Json => {
            let doc = json!({
                "kind": kind.name(),
                "valid": true,
                "signer": { "role": signed_by, "kid": summary["kid"], "public_key": summary["public_key"] },
                "file_hash": summary["file_hash"],
                "payload": payload,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        OutputFormat::Text => {
            let mut text = format!(
                "{kind} file: signature valid\n  signed by:  {signed_by} key {}\n  file hash:  {}\n",
                summary["kid"].as_str().unwrap_or_default(),
                summary["file_hash"].as_str().unwrap_or_default(),
            );
            if let Value::Object(fields) = &payload {
                for (name, value) in fields {
                    let shown = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    text.push_str(&format!("  {name}: {shown}\n"));
                }
            }
            write!(out, "{text}")
        }
    };
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure {
            message: format!("cannot write the output: {e}"),
            hint: "check where the output goes",
            code: "io",
        }),
        _ => Ok(EXIT_OK),
    }
}

fn describe<T: serde::Serialize>(v: &Verified<T>) -> (Value, Value) {
    let summary = json!({
        "kid": v.signer().kid().to_string(),
        "public_key": format::Bytes32(v.signer().to_bytes()).to_string(),
        "file_hash": v.file_hash().to_string(),
    });
    (
        summary,
        serde_json::to_value(v.payload()).unwrap_or(Value::Null),
    )
}
