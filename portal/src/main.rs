use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lic_core::keys::KeyError;

/// lic-portal — the vendor's license portal.
#[derive(Debug, Parser)]
#[command(name = "lic-portal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage vendor signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a vendor signing key (PKCS#8 PEM, mode 0600).
    Generate {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing key file (the old key is lost).
        #[arg(long)]
        force: bool,
    },
    /// Print the public key (SPKI PEM) that clients trust, for a vendor signing key.
    Export {
        /// The vendor private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(key_error) = e.downcast_ref::<KeyError>() {
                eprintln!("  what to do: {}", key_error.hint());
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Key(KeyCommand::Generate { out, force }) => {
            let public = lic_portal::vendor::generate(&out, force)?;
            eprintln!(
                "wrote vendor signing key {} to {}",
                public.kid(),
                out.display()
            );
            eprintln!(
                "keep it secret; give clients its public key: lic-portal key export --key {}",
                out.display()
            );
        }
        Command::Key(KeyCommand::Export { key, out, force }) => {
            let public = lic_portal::vendor::export(&key)?;
            match out {
                Some(path) => public.write(&path, force)?,
                None => {
                    let mut stdout = std::io::stdout().lock();
                    if let Err(e) = stdout.write_all(public.to_pem().as_bytes())
                        && e.kind() != std::io::ErrorKind::BrokenPipe
                    {
                        return Err(e.into());
                    }
                }
            }
        }
    }
    Ok(())
}
