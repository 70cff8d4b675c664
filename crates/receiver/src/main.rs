//! `anpr-receiver`: the reference backend as a program, for backend developers
//! who want to see real uploads from a device (or from `anpr-lab demo`).
//!
//! It serves the upload API over TLS with the PKI it is given (or a throw-away
//! one it makes), trusts the devices named on the command line, and prints one
//! line per record, tombstone or refusal. Everything stays in memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use anpr_receiver::{generate_test_pki, start_with, ReceiverOptions, TestPki};

#[derive(Parser)]
#[command(
    name = "anpr-receiver",
    version,
    about = "Reference backend for anpr-edge uploads"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The CA certificate (PEM) that signed the devices' client certificates;
    /// with it, clients without one are refused. Needs --cert and --key.
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// The server certificate (PEM).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Without --cert: where to write a throw-away PKI (CA, server and client
    /// certificates) for a test device.
    #[arg(long, default_value = "receiver-pki")]
    pki_dir: PathBuf,
    /// A device to trust: `DEVICE_ID=PUBLIC_KEY`, the key as base64 (what
    /// `anpr-edge provision` prints) or a file holding it. Repeatable.
    #[arg(long = "device", value_name = "ID=KEY")]
    devices: Vec<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_target(false).init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Checked first, so that a bad argument writes no PKI.
    let mut trusted = Vec::new();
    for d in &cli.devices {
        let (id, key) = d
            .split_once('=')
            .with_context(|| format!("--device {d:?}: expected DEVICE_ID=PUBLIC_KEY"))?;
        let text = std::fs::read_to_string(key).unwrap_or_else(|_| key.to_string());
        let key = anpr_wire::chain::verifying_key_from_base64(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--device {id}: public key"))?;
        trusted.push((id.to_string(), key));
    }
    let (pki, require_client_cert) = match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => (
            TestPki {
                ca_cert: cli.ca.clone().unwrap_or_default(),
                server_cert: cert.clone(),
                server_key: key.clone(),
                client_cert: PathBuf::new(),
                client_key: PathBuf::new(),
            },
            cli.ca.is_some(),
        ),
        _ => {
            let pki = generate_test_pki(&cli.pki_dir)
                .with_context(|| format!("making a test PKI in {}", cli.pki_dir.display()))?;
            println!(
                "test PKI in {}: CA {}, client certificate {} and key {}",
                cli.pki_dir.display(),
                pki.ca_cert.display(),
                pki.client_cert.display(),
                pki.client_key.display()
            );
            (pki, true)
        }
    };
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async {
        let rx = start_with(
            cli.listen,
            &pki,
            ReceiverOptions {
                require_client_cert,
            },
        )
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
        for (id, key) in trusted {
            rx.trust_device(&id, key);
        }
        println!("listening on {}", rx.url());
        let (mut seen, mut refused, mut tombs) = (0, 0, 0);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {}
            }
            let received = rx.received();
            for r in &received[seen..] {
                println!(
                    "record {} seq {} from {}",
                    r.metadata.id, r.metadata.seq, r.metadata.device_id
                );
            }
            seen = received.len();
            let t = rx.tombstones();
            for r in &t[tombs..] {
                println!(
                    "tombstone {} seq {} from {}",
                    r.tombstone.id, r.tombstone.seq, r.tombstone.device_id
                );
            }
            tombs = t.len();
            let refusals = rx.refusals();
            for (status, why) in &refusals[refused..] {
                println!("refused {status}: {why}");
            }
            refused = refusals.len();
        }
        rx.shutdown().await;
        anyhow::Ok(())
    })
}
