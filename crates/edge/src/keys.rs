//! The device's own keys: the Ed25519 key that signs every stored record, and
//! the TLS client key (with its certificate signing request) of the upload link.
//!
//! `anpr-edge provision` makes them here, in the state directory, with mode
//! 0600 (the folder 0700), and never replaces an existing key unless forced.
//! The record signature itself is the wire's ([`anpr_wire::chain`]). It never talks to the network and
//! never sees plate text except as the opaque record bytes it signs.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// File names inside the state directory.
pub const EVIDENCE_KEY_FILE: &str = "evidence.key";
pub const EVIDENCE_PUB_FILE: &str = "evidence.pub";
pub const TLS_KEY_FILE: &str = "tls-client.key";
pub const TLS_CSR_FILE: &str = "tls-client.csr";
/// Where the operator puts the certificate the backend's CA issued for the CSR.
pub const TLS_CERT_FILE: &str = "tls-client.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key {path} is not usable: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("key {path} can be read by others (mode {mode:o}); it must be 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot make the TLS key or request: {0}")]
    Tls(#[from] rcgen::Error),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The key that signs records. Debug prints the public key only.
#[derive(Clone)]
pub struct EvidenceSigner {
    key: SigningKey,
}

impl std::fmt::Debug for EvidenceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EvidenceSigner(public {})", self.public_base64())
    }
}

impl PartialEq for EvidenceSigner {
    fn eq(&self, other: &Self) -> bool {
        self.key.verifying_key() == other.key.verifying_key()
    }
}

impl EvidenceSigner {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        EvidenceSigner {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// Reads a key file: the seed in base64, as [`provision`] writes it.
    /// Refuses a file that others may read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let bytes = b64()
            .decode(text.trim())
            .map_err(|e| invalid(format!("not base64: {e}")))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| invalid(format!("{} bytes, not 32", b.len())))?;
        Ok(Self::from_seed(seed))
    }

    /// Loads the key at `path`, or makes one there (mode 0600) if there is none.
    /// The daemon does this so that it never records unsigned; `provision`
    /// normally made the key before.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let signer = Self::generate();
        write_private(path, &signer.seed_base64(), false)?;
        Ok((signer, true))
    }

    fn seed_base64(&self) -> String {
        b64().encode(self.key.to_bytes())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key, base64 of its 32 bytes: what the backend is given.
    pub fn public_base64(&self) -> String {
        b64().encode(self.key.verifying_key().as_bytes())
    }

    /// The Ed25519 signature of `message`, base64 of its 64 bytes.
    pub fn sign(&self, message: &[u8]) -> String {
        anpr_wire::chain::sign(&self.key, message)
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Creates `dir` (and parents) and sets it to 0700.
fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Writes a secret with mode 0600 from the start (never briefly readable).
/// Without `replace` an existing file is an error, so a race cannot clobber a key.
fn write_private(path: &Path, text: &str, replace: bool) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let target = if replace {
        path.with_extension("new")
    } else {
        path.to_owned()
    };
    let mut opts = OpenOptions::new();
    opts.write(true);
    if replace {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&target).map_err(err)?;
    writeln!(f, "{text}").map_err(err)?;
    f.sync_all().map_err(err)?;
    if replace {
        std::fs::rename(&target, path).map_err(err)?;
    }
    Ok(())
}

fn write_public(path: &Path, text: &str) -> Result<(), KeyError> {
    std::fs::write(path, text).map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

/// What `anpr-edge provision` is asked to do.
#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// Where the keys go (the daemon's state directory).
    pub state_dir: PathBuf,
    /// The config file to write a skeleton to, if it does not exist.
    pub config: Option<PathBuf>,
    /// The device id for the CSR's common name and the skeleton.
    pub device_id: String,
    /// Replace existing keys.
    pub force: bool,
}

/// What provisioning left behind.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub evidence_key: PathBuf,
    /// The evidence public key, base64: give it to the backend.
    pub evidence_public_base64: String,
    pub tls_key: PathBuf,
    pub csr: PathBuf,
    /// The certificate signing request for the upload link's client certificate.
    pub csr_pem: String,
    /// Keys made in this run (the others existed and were kept).
    pub created: Vec<PathBuf>,
    /// The config skeleton, if one was written.
    pub config_written: Option<PathBuf>,
}

/// Makes the device's keys in `opts.state_dir`; keeps existing ones unless
/// `opts.force`. The CSR is (re)made from the TLS key on every run.
pub fn provision(opts: &ProvisionOptions) -> Result<Provisioned, KeyError> {
    create_private_dir(&opts.state_dir)?;
    let mut created = Vec::new();

    let evidence_key = opts.state_dir.join(EVIDENCE_KEY_FILE);
    let signer = if evidence_key.exists() && !opts.force {
        EvidenceSigner::load(&evidence_key)?
    } else {
        let s = EvidenceSigner::generate();
        write_private(&evidence_key, &s.seed_base64(), opts.force)?;
        created.push(evidence_key.clone());
        s
    };
    let evidence_public_base64 = signer.public_base64();
    write_public(
        &opts.state_dir.join(EVIDENCE_PUB_FILE),
        &format!("{evidence_public_base64}\n"),
    )?;

    let tls_key = opts.state_dir.join(TLS_KEY_FILE);
    let key_pair = if tls_key.exists() && !opts.force {
        check_private(&tls_key)?;
        let pem = std::fs::read_to_string(&tls_key).map_err(|source| KeyError::Read {
            path: tls_key.clone(),
            source,
        })?;
        rcgen::KeyPair::from_pem(&pem).map_err(|e| KeyError::Invalid {
            path: tls_key.clone(),
            reason: e.to_string(),
        })?
    } else {
        let kp = rcgen::KeyPair::generate()?;
        write_private(&tls_key, kp.serialize_pem().trim_end(), opts.force)?;
        created.push(tls_key.clone());
        kp
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, opts.device_id.clone());
    let csr_pem = params.serialize_request(&key_pair)?.pem()?;
    let csr = opts.state_dir.join(TLS_CSR_FILE);
    write_public(&csr, &csr_pem)?;

    let config_written = match &opts.config {
        Some(path) if !path.exists() => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            write_public(path, &config_skeleton(&opts.device_id, &opts.state_dir))?;
            Some(path.clone())
        }
        _ => None,
    };

    Ok(Provisioned {
        evidence_key,
        evidence_public_base64,
        tls_key,
        csr,
        csr_pem,
        created,
        config_written,
    })
}

/// A config that names the provisioned keys and parses as it is; the
/// installer fills in the camera, the backend URL and its CA.
pub fn config_skeleton(device_id: &str, state_dir: &Path) -> String {
    let d = state_dir.display();
    format!(
        r#"# anpr-edge configuration, written by `anpr-edge provision`.
# Every key and its default: config.example.toml. Check with `anpr-edge check-config FILE`.

[device]
id = "{device_id}"
location = ""                           # TODO: where the controller stands, stated in every record

[[camera]]
id = "cam-1"
source = "v4l2"
device = "/dev/video0"
facing = ""                             # TODO: which way the camera looks

[store]
path = "{d}/violations.sqlite"
signing_key = "{d}/{EVIDENCE_KEY_FILE}"

[upload]
url = "https://backend.example.nl"      # TODO: the backend
ca_cert = "/etc/anpr-edge/backend-ca.pem"   # TODO: the backend's CA
client_key = "{d}/{TLS_KEY_FILE}"
client_cert = "{d}/{TLS_CERT_FILE}"     # the certificate the backend issued for {d}/{TLS_CSR_FILE}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpr_wire::chain::{verify_record, verifying_key_from_base64};

    fn opts(dir: &Path, force: bool) -> ProvisionOptions {
        ProvisionOptions {
            state_dir: dir.join("state"),
            config: Some(dir.join("etc").join("config.toml")),
            device_id: "ams-ze-0001".into(),
            force,
        }
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    #[cfg(unix)]
    fn provision_writes_private_keys_and_a_csr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = provision(&opts(dir.path(), false)).expect("provision");
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(&p.evidence_key), 0o600);
        assert_eq!(mode(&p.tls_key), 0o600);
        assert_eq!(p.created.len(), 2);
        assert!(p.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let signer = EvidenceSigner::load(&p.evidence_key).expect("load");
        assert_eq!(signer.public_base64(), p.evidence_public_base64);
        let key = verifying_key_from_base64(&p.evidence_public_base64).expect("pub");
        let sig = signer.sign(b"record");
        verify_record(&key, b"record", &sig).expect("verifies");
        assert!(verify_record(&key, b"recorD", &sig).is_err());
    }

    #[test]
    fn a_second_run_keeps_the_keys_and_force_replaces_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = provision(&opts(dir.path(), false)).expect("first");
        let tls_before = std::fs::read(&first.tls_key).expect("read");
        let second = provision(&opts(dir.path(), false)).expect("second");
        assert!(second.created.is_empty());
        assert_eq!(second.evidence_public_base64, first.evidence_public_base64);
        assert_eq!(std::fs::read(&second.tls_key).expect("read"), tls_before);
        assert!(second.config_written.is_none(), "config is written once");
        let forced = provision(&opts(dir.path(), true)).expect("forced");
        assert_eq!(forced.created.len(), 2);
        assert_ne!(forced.evidence_public_base64, first.evidence_public_base64);
        assert_ne!(std::fs::read(&forced.tls_key).expect("read"), tls_before);
    }

    #[test]
    fn the_config_skeleton_parses_and_names_the_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = provision(&opts(dir.path(), false)).expect("provision");
        let path = p.config_written.expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let cfg = crate::config::Config::parse(&text).expect("skeleton parses");
        assert_eq!(cfg.device.id, "ams-ze-0001");
        assert_eq!(
            cfg.store.signing_key.as_deref(),
            Some(p.evidence_key.as_path())
        );
        assert_eq!(cfg.upload.client_key.as_deref(), Some(p.tls_key.as_path()));
    }

    #[test]
    #[cfg(unix)]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        let (_, made) = EvidenceSigner::load_or_create(&path).expect("create");
        assert!(made);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            EvidenceSigner::load(&path),
            Err(KeyError::Permissions { .. })
        ));
    }
}
