//! The `anpr-edge` binary: parses the command line and hands over to `cmd::`.

mod cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "anpr-edge",
    version,
    about = "Roadside ANPR for zero-emission-zone enforcement"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the whole pipeline on generated frames, uploading to a local receiver.
    Demo(cmd::demo::DemoArgs),
    /// Measure detection recall, read accuracy, error rates and speed on labelled images.
    Eval(cmd::eval::EvalArgs),
    /// Check a config file; prints each problem as FILE:LINE: key `KEY`: message.
    CheckConfig { file: PathBuf },
    /// Build, verify and make keys for signed zone-list bundles.
    Lists(cmd::lists::ListsArgs),
    /// Make the device's evidence signing key and TLS client key (with a CSR)
    /// in the state directory, and a config skeleton; prints the public parts.
    Provision(cmd::provision::ProvisionArgs),
    /// Print crate, model and runtime versions.
    Version {
        /// Folder with the models and runtime (default: models/cache).
        #[arg(long, default_value = "models/cache")]
        models_dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => cmd::run::run(&config),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::CheckConfig { file } => cmd::check_config::run(&file),
        Command::Lists(args) => cmd::lists::run(args),
        Command::Provision(args) => cmd::provision::run(args),
        Command::Version { models_dir } => cmd::version::run(&models_dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
