//! The fetched runtime and models, for tests that need them: found, or the
//! test is skipped with a line saying what is missing and how to fetch it.
//! `make test` sets [`REQUIRE_MODELS`], which turns every such skip into a
//! failure, so CI can never pass on tests that did not run.

use std::path::{Path, PathBuf};

use crate::config::RuntimeConfig;
use crate::models::ModelSet;

/// Set (to anything) to make missing models a test failure instead of a skip.
pub const REQUIRE_MODELS: &str = "ANPR_EDGE_REQUIRE_MODELS";

/// Where `make models` (scripts/fetch-models.sh) puts the runtime and models.
pub fn models_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("models/cache")
}

/// The models folder when the runtime and every model are in it. Otherwise
/// prints `SKIPPED: ...` and gives `None`, or panics under [`REQUIRE_MODELS`].
pub fn fetched_models() -> Option<PathBuf> {
    let dir = models_dir();
    let manifest = match crate::models::Manifest::embedded() {
        Ok(m) => m,
        Err(e) => panic!("the embedded model manifest does not parse: {e}"),
    };
    let missing: Vec<String> = manifest
        .artifact
        .iter()
        .filter_map(|a| {
            let p = dir.join(&a.file);
            (!p.exists()).then(|| p.display().to_string())
        })
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let why = format!(
        "model files missing ({}): run `make models` (scripts/fetch-models.sh)",
        missing.join(", ")
    );
    if std::env::var_os(REQUIRE_MODELS).is_some() {
        panic!("{why}; {REQUIRE_MODELS} is set, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// The runtime config pointing at the fetched cache ([`fetched_models`]).
pub fn runtime_config() -> Option<RuntimeConfig> {
    Some(RuntimeConfig {
        onnxruntime: None,
        models_dir: fetched_models()?,
        threads: 2,
    })
}

/// The fetched models, loaded ([`fetched_models`]); a model that is there
/// but does not load is a failure, never a skip.
pub fn model_set() -> Option<ModelSet> {
    let cfg = runtime_config()?;
    match ModelSet::new(&cfg) {
        Ok(m) => Some(m),
        Err(e) => panic!("{e}"),
    }
}

/// Folder of real Dutch plate photos, shared outside the repo; `None` (with
/// a printed note) when this checkout has none.
pub fn plate_photos() -> Option<Vec<PathBuf>> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("../shared/data/plates/rfjhendriks-kentekenherkenning-nl/images");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIPPED: no plate photos at {} (not part of the repo)",
            dir.display()
        );
        return None;
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    v.sort();
    Some(v)
}
