//! `anpr-lab lists build|keygen`: make signed list bundles and their keys
//! (format in docs/ref/lists.md). `build` reads plain plates and is for
//! backends and tests; its input never belongs on a device.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use anpr_wire::build as lists;
use anpr_wire::bundle::{self, BundleMeta, ListKind};
use anpr_wire::hash::HmacKey;

#[derive(clap::Args)]
pub struct ListsArgs {
    #[command(subcommand)]
    command: ListsCommand,
}

#[derive(clap::Subcommand)]
enum ListsCommand {
    /// Hash a CSV of plain plates and sign it into a bundle.
    Build {
        /// `hit` (plate,entry_id,banned_from[,vehicle_class]) or
        /// `exemption` (plate,entry_id,valid_from,valid_until[,zone]).
        #[arg(long)]
        kind: ListKind,
        #[arg(long)]
        zone: String,
        #[arg(long)]
        version: u64,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        hmac_key_file: PathBuf,
        #[arg(long)]
        signing_key_file: PathBuf,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a test signing key pair and an HMAC key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: ListsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ListsCommand::Build {
            kind,
            zone,
            version,
            key_id,
            hmac_key_file,
            signing_key_file,
            input,
            out,
        } => {
            let hmac = HmacKey::load(&key_id, &hmac_key_file)?;
            let signing = lists::load_signing_key(&signing_key_file)?;
            let csv = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let meta = BundleMeta {
                zone,
                version,
                created_at: chrono::Utc::now(),
                key_id,
            };
            let bytes = lists::build_from_csv(kind, &meta, &csv, &hmac, &signing)
                .with_context(|| format!("{}", input.display()))?;
            write_atomically(&out, &bytes)?;
            let h = bundle::decode_header(&bytes)?;
            println!(
                "{}: {} list, zone {}, version {}, key id {}, {} entries, {} bytes",
                out.display(),
                h.kind,
                h.zone,
                h.version,
                h.key_id,
                h.entries,
                bytes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ListsCommand::Keygen { out } => {
            let files = lists::generate_keys(&out)
                .with_context(|| format!("cannot write keys to {}", out.display()))?;
            println!(
                "signing key (backend only)   {}",
                files.signing_key.display()
            );
            println!(
                "public key (policy.public_key) {}",
                files.public_key.display()
            );
            println!("HMAC key (policy.hmac_keys)  {}", files.hmac_key.display());
            println!("public_key = \"{}\"", files.public_key_base64);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes next to the target and renames, so a daemon polling the file never
/// reads half a bundle.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
