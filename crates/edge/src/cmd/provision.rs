//! `anpr-edge provision`: makes the device's keys in the state directory and
//! prints what the backend needs (the evidence public key and the CSR).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use anpr_edge::keys::{self, ProvisionOptions};

#[derive(clap::Args)]
pub struct ProvisionArgs {
    /// The daemon's state directory; keys go here (mode 0600, folder 0700).
    #[arg(long, default_value = "/var/lib/anpr-edge")]
    pub state_dir: PathBuf,
    /// Config file to write a skeleton to when none exists.
    #[arg(long, default_value = "/etc/anpr-edge/config.toml")]
    pub config: PathBuf,
    /// Device id for the certificate request and the skeleton (default: the host name).
    #[arg(long)]
    pub device_id: Option<String>,
    /// Replace existing keys (the backend must then be given the new public parts).
    #[arg(long)]
    pub force: bool,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "anpr-edge".into())
}

pub fn run(args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    let opts = ProvisionOptions {
        state_dir: args.state_dir.clone(),
        config: Some(args.config.clone()),
        device_id: args.device_id.unwrap_or_else(host_name),
        force: args.force,
    };
    let p = keys::provision(&opts)
        .with_context(|| format!("cannot provision keys in {}", args.state_dir.display()))?;
    for path in [&p.evidence_key, &p.tls_key] {
        let what = if p.created.contains(path) {
            "created"
        } else {
            "kept (use --force to replace)"
        };
        eprintln!("{}: {what}", path.display());
    }
    if let Some(c) = &p.config_written {
        eprintln!(
            "{}: config skeleton written; fill in the TODOs",
            c.display()
        );
    }
    println!("evidence_public_key = \"{}\"", p.evidence_public_base64);
    println!(
        "# Certificate signing request for the upload link ({}); have the backend's CA\n# sign it and put the certificate at {}",
        p.csr.display(),
        args.state_dir.join(keys::TLS_CERT_FILE).display()
    );
    print!("{}", p.csr_pem);
    Ok(ExitCode::SUCCESS)
}
