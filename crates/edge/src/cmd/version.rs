//! `anpr-edge version`: crate, model and runtime versions.

use std::path::Path;
use std::process::ExitCode;

use anpr_edge::config::RuntimeConfig;
use anpr_edge::models::{init_runtime, Manifest};

pub fn run(models_dir: &Path) -> anyhow::Result<ExitCode> {
    println!("anpr-edge {}", env!("CARGO_PKG_VERSION"));
    let manifest = Manifest::embedded()?;
    for a in &manifest.artifact {
        let present = if models_dir.join(&a.file).exists() {
            String::new()
        } else {
            format!(" (not in {}: run `make models`)", models_dir.display())
        };
        println!(
            "{:<10} {} {} ({}){present}",
            format!("{:?}", a.role).to_lowercase(),
            a.package,
            a.version,
            a.file
        );
    }
    let cfg = RuntimeConfig {
        models_dir: models_dir.to_owned(),
        ..RuntimeConfig::default()
    };
    match init_runtime(&cfg, &manifest) {
        Ok(info) => println!(
            "loaded     ONNX Runtime {} from {}",
            info.version,
            info.path.display()
        ),
        Err(e) => println!("loaded     no ONNX Runtime: {e}"),
    }
    println!("ort crate  2.0.0-rc.15 (load-dynamic, API 31)");
    Ok(ExitCode::SUCCESS)
}
