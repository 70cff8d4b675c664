//! The `anpr-edge` binary: parses the command line and hands over to `cmd::`.

mod cmd;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Check a config file; prints each problem as FILE:LINE: key `KEY`: message.
    CheckConfig { file: PathBuf },
    /// Verify a signed zone-list bundle (bundles are built by `anpr-lab lists`).
    Lists(cmd::lists::ListsArgs),
    /// Set the status page's technician password (prints or writes its Argon2 hash).
    Passwd(cmd::passwd::PasswdArgs),
    /// Make the device's evidence signing key and TLS client key (with a CSR)
    /// in the state directory, and a config skeleton; prints the public parts.
    Provision(cmd::provision::ProvisionArgs),
    /// Print crate, model and runtime versions.
    Version {
        /// Folder with the models and runtime (default: models/cache).
        #[arg(long, default_value = "models/cache")]
        models_dir: PathBuf,
    },
    /// Print a shell completion script (the packages install them).
    Completions { shell: clap_complete::Shell },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => cmd::run::run(&config),
        Command::CheckConfig { file } => cmd::check_config::run(&file),
        Command::Lists(args) => cmd::lists::run(args),
        Command::Passwd(args) => cmd::passwd::run(args),
        Command::Provision(args) => cmd::provision::run(args),
        Command::Version { models_dir } => cmd::version::run(&models_dir),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "anpr-edge",
                &mut std::io::stdout(),
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
