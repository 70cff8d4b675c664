//! `anpr-edge lists verify`: checks a signed list bundle against the
//! backend's public key and prints its header (format in docs/ref/lists.md).
//! Bundles are made on the backend (`anpr-lab lists build`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use anpr_wire::bundle;

#[derive(clap::Args)]
pub struct ListsArgs {
    #[command(subcommand)]
    command: ListsCommand,
}

#[derive(clap::Subcommand)]
enum ListsCommand {
    /// Check a bundle's structure and signature; print its header.
    Verify {
        /// The backend's public key: a file of base64 (as keygen writes) or the base64 itself.
        #[arg(long)]
        public_key: String,
        bundle: PathBuf,
    },
}

pub fn run(args: ListsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ListsCommand::Verify {
            public_key,
            bundle: path,
        } => {
            let text = if Path::new(&public_key).is_file() {
                std::fs::read_to_string(&public_key)
                    .with_context(|| format!("cannot read {public_key}"))?
            } else {
                public_key.clone()
            };
            let key = bundle::verifying_key_from_base64(&text)
                .map_err(|e| anyhow::anyhow!("public key {public_key}: {e}"))?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            match bundle::decode(&bytes, &key) {
                Ok((h, _)) => {
                    println!("{}: OK", path.display());
                    println!("  kind        {}", h.kind);
                    println!("  zone        {}", h.zone);
                    println!("  version     {}", h.version);
                    println!("  created_at  {}", h.created_at.to_rfc3339());
                    println!("  key id      {}", h.key_id);
                    println!("  entries     {}", h.entries);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => bail!("{}: bad bundle: {e}", path.display()),
            }
        }
    }
}
