//! The `anpr-lab` binary: the demo, eval and the backend-side list tools.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "anpr-lab",
    version,
    about = "anpr-edge's lab: demo, accuracy evaluation, list building"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on generated frames, uploading to a local receiver.
    Demo(cmd::demo::DemoArgs),
    /// Measure detection recall, read accuracy, error rates and speed on labelled images.
    Eval(cmd::eval::EvalArgs),
    /// Build signed zone-list bundles from plain CSVs, and make their keys.
    Lists(cmd::lists::ListsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Lists(args) => cmd::lists::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
