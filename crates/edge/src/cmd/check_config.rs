//! `anpr-edge check-config FILE`: validates a config without starting anything.

use std::path::Path;
use std::process::ExitCode;

use anpr_edge::config::Config;

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
        // Every config error already names the file (and line and key).
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
