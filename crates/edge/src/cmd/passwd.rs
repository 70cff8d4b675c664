//! `anpr-edge passwd`: sets the technician password of the status page.
//!
//! Reads the password from the terminal (twice, without echo) or, when stdin
//! is not a terminal, from its first line; prints the `password_hash` line for
//! the config's `[status]` table, or writes it there with `--config`,
//! keeping the file's comments and layout.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

/// Shorter passwords are refused: the page shows where cameras point.
const MIN_LEN: usize = 8;

#[derive(clap::Args)]
pub struct PasswdArgs {
    /// Write the hash into this config file's `[status]` table instead of printing it.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New technician password: ")
            .context("cannot read the password")?;
        let again =
            rpassword::prompt_password("Repeat it: ").context("cannot read the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

pub fn run(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let password = read_password()?;
    if password.chars().count() < MIN_LEN {
        bail!("the password needs at least {MIN_LEN} characters");
    }
    let hash = anpr_edge::status::auth::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    match args.config {
        None => println!("password_hash = \"{hash}\""),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut doc = text
                .parse::<toml_edit::DocumentMut>()
                .with_context(|| format!("{} is not TOML", path.display()))?;
            let status = doc
                .entry("status")
                .or_insert_with(toml_edit::table)
                .as_table_mut()
                .with_context(|| format!("{}: `status` is not a table", path.display()))?;
            status["password_hash"] = toml_edit::value(hash);
            std::fs::write(&path, doc.to_string())
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "technician password set in {} (restart the daemon to use it)",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
