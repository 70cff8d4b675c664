//! `anpr-edge version`: crate, model and runtime versions.

use std::path::Path;
use std::process::ExitCode;

use anpr_edge::models::Manifest;

pub fn run(models_dir: &Path) -> anyhow::Result<ExitCode> {
    println!("anpr-edge {}", env!("CARGO_PKG_VERSION"));
    let manifest = Manifest::embedded()?;
    for a in &manifest.artifacts {
        let present = if models_dir.join(&a.file).exists() {
            ""
        } else {
            " (not fetched: run `make models`)"
        };
        println!(
            "{:<12} {} {} ({}){}",
            format!("{:?}", a.role).to_lowercase(),
            a.package,
            a.version,
            a.file,
            present
        );
    }
    println!("ort crate    2.0.0-rc.15 (ONNX Runtime API 31)");
    Ok(ExitCode::SUCCESS)
}
