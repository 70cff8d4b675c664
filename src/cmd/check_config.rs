//! `anpr-edge check-config FILE`: validates a config without starting anything.

use std::path::Path;
use std::process::ExitCode;

use anpr_edge::config::{Config, ConfigError};

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(file) {
        Ok(cfg) => {
            let missing = cfg.missing_files();
            if missing.is_empty() {
                println!("{}: OK ({} camera(s))", file.display(), cfg.cameras.len());
                Ok(ExitCode::SUCCESS)
            } else {
                for (key, path) in missing {
                    eprintln!(
                        "{}: key `{key}`: {} does not exist",
                        file.display(),
                        path.display()
                    );
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Err(e @ ConfigError::Invalid { .. }) | Err(e @ ConfigError::Read { .. }) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
