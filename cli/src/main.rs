use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    lic_cli::run(lic_cli::Cli::parse())
}
