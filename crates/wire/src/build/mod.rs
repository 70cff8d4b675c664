//! The backend's side of the list bundles: plain-plate CSVs hashed with an HMAC
//! key and signed into bundles, and the keys to do it with.
//!
//! A plain plate list never belongs on a device, so this module is only
//! compiled with the `build` feature, which the daemon's own dependencies
//! never turn on (its tests do; the controller's binary is built alone,
//! `cargo build -p anpr-edge`, so no other package's features reach it). `anpr-lab lists build|keygen`, the demo and the
//! tests use it.

pub mod csv;

use crate::bundle::{encode, BundleError, BundleMeta, Entries, ExemptionEntry, HitEntry, ListKind};
use crate::hash::{self, HmacKey};
use ed25519_dalek::SigningKey;

/// Hashes plain rows with `key` and encodes them (see [`encode`]).
pub fn hash_hits(key: &HmacKey, rows: &[csv::HitRow]) -> Entries {
    Entries::Hit(
        rows.iter()
            .map(|r| HitEntry {
                hash: key.hash_plate(&r.plate),
                entry_id: r.entry_id.clone(),
                banned_from: r.banned_from,
                vehicle_class: r.vehicle_class.clone(),
            })
            .collect(),
    )
}

/// Hashes plain exemption rows with `key`.
pub fn hash_exemptions(key: &HmacKey, rows: &[csv::ExemptionRow]) -> Entries {
    Entries::Exemption(
        rows.iter()
            .map(|r| ExemptionEntry {
                hash: key.hash_plate(&r.plate),
                entry_id: r.entry_id.clone(),
                valid_from: r.valid_from,
                valid_until: r.valid_until,
                zone: r.zone.clone(),
            })
            .collect(),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("entries: {0}")]
    Csv(#[from] csv::CsvError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Builds a signed bundle from a plain-plate CSV (see [`super::csv`]): what
/// `anpr-edge lists build` does, and what the demo and tests use.
pub fn build_from_csv(
    kind: ListKind,
    meta: &BundleMeta,
    csv_text: &str,
    hmac: &HmacKey,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, BuildError> {
    let entries = match kind {
        ListKind::Hit => hash_hits(hmac, &csv::parse_hits(csv_text)?),
        ListKind::Exemption => hash_exemptions(hmac, &csv::parse_exemptions(csv_text)?),
    };
    Ok(encode(meta, entries, signing_key)?)
}

/// The files `anpr-edge lists keygen` writes.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// Ed25519 signing key seed, base64 (the backend's secret).
    pub signing_key: std::path::PathBuf,
    /// Ed25519 public key, base64: what `policy.public_key` pins.
    pub public_key: std::path::PathBuf,
    /// 32 random bytes, base64: an HMAC key for `policy.hmac_keys`.
    pub hmac_key: std::path::PathBuf,
    /// The public key's base64, to paste into a config.
    pub public_key_base64: String,
}

/// Makes a fresh signing key pair and HMAC key in `dir` (secret files mode 0600).
pub fn generate_keys(dir: &std::path::Path) -> std::io::Result<KeyFiles> {
    use rand::RngCore;
    std::fs::create_dir_all(dir)?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let signing = SigningKey::from_bytes(&seed);
    let mut hmac = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut hmac);
    let public_key_base64 = hash::to_base64(signing.verifying_key().as_bytes());
    let files = KeyFiles {
        signing_key: dir.join("signing.key"),
        public_key: dir.join("signing.pub"),
        hmac_key: dir.join("hmac.key"),
        public_key_base64: public_key_base64.clone(),
    };
    write_secret(&files.signing_key, &hash::to_base64(&seed))?;
    write_secret(&files.hmac_key, &hash::to_base64(&hmac))?;
    std::fs::write(&files.public_key, format!("{public_key_base64}\n"))?;
    Ok(files)
}

fn write_secret(path: &std::path::Path, base64: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{base64}")
}

/// Reads a signing key file written by [`generate_keys`].
pub fn load_signing_key(path: &std::path::Path) -> Result<SigningKey, hash::KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| hash::KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    crate::bundle::signing_key_from_base64(&text).map_err(|reason| hash::KeyError::Invalid {
        path: path.to_owned(),
        reason,
    })
}
