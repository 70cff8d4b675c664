//! Signed list bundles: the compact binary format in which the backend ships a
//! zone's hit list or exemption list. Byte layout in `docs/ref/lists.md`.
//!
//! Decoding checks structure (magic, lengths, entry count, sort order) and the
//! Ed25519 signature, and nothing else; version, zone and key checks against the
//! device's current state are the device's. [`decode_into`] hands each entry
//! to an [`EntrySink`], so the device builds its compact lists without a copy
//! of every entry in between; [`decode`] collects them into [`Entries`].

use chrono::{DateTime, NaiveDate, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::hash::{PlateHash, HASH_LEN};

/// First 8 bytes of every bundle: "ANPRLST" and format number 1.
pub const MAGIC: [u8; 8] = *b"ANPRLST\x01";
pub const SIGNATURE_LEN: usize = 64;
pub const MAX_ZONE_LEN: usize = 64;
pub const MAX_KEY_ID_LEN: usize = 32;
pub const MAX_CLASS_LEN: usize = 32;

/// Which list a bundle holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    Hit,
    Exemption,
}

impl ListKind {
    pub fn code(self) -> u8 {
        match self {
            ListKind::Hit => 1,
            ListKind::Exemption => 2,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(ListKind::Hit),
            2 => Some(ListKind::Exemption),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Hit => "hit",
            ListKind::Exemption => "exemption",
        }
    }
}

impl std::str::FromStr for ListKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hit" => Ok(ListKind::Hit),
            "exemption" => Ok(ListKind::Exemption),
            other => Err(format!("`{other}` is not a list kind (hit or exemption)")),
        }
    }
}

impl std::fmt::Display for ListKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a bundle says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleHeader {
    pub kind: ListKind,
    pub zone: String,
    /// Monotonic per zone and kind; a device never goes back to a lower one.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    /// The HMAC key the entries' hashes were made with.
    pub key_id: String,
    pub entries: u32,
}

/// A hit-list entry before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitEntry {
    pub hash: PlateHash,
    pub entry_id: String,
    /// First local date (in the zone's time zone) on which the vehicle is banned.
    pub banned_from: NaiveDate,
    pub vehicle_class: Option<String>,
}

/// An exemption entry before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExemptionEntry {
    pub hash: PlateHash,
    pub entry_id: String,
    /// Valid from this instant (inclusive) ...
    pub valid_from: DateTime<Utc>,
    /// ... until this one (exclusive).
    pub valid_until: DateTime<Utc>,
    /// Valid in this zone only; `None` = every zone.
    pub zone: Option<String>,
}

/// The entries of a bundle.
#[derive(Clone, Debug)]
pub enum Entries {
    Hit(Vec<HitEntry>),
    Exemption(Vec<ExemptionEntry>),
}

/// Where [`decode_into`] puts each entry, in bundle order. Returning false
/// refuses the entry (out of order for the sink, or more than it can hold) and
/// fails the decode with [`BundleError::Unsorted`].
pub trait EntrySink {
    fn hit(&mut self, hash: PlateHash, entry_id: &str, banned_from: NaiveDate, class: &str)
        -> bool;
    fn exemption(
        &mut self,
        hash: PlateHash,
        entry_id: &str,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
        zone: &str,
    ) -> bool;
}

/// Collects entries as they are; checks the canonical order that [`encode`] writes.
impl EntrySink for Entries {
    fn hit(
        &mut self,
        hash: PlateHash,
        entry_id: &str,
        banned_from: NaiveDate,
        class: &str,
    ) -> bool {
        let Entries::Hit(list) = self else {
            return false;
        };
        if list.last().is_some_and(|e| e.hash >= hash) {
            return false;
        }
        list.push(HitEntry {
            hash,
            entry_id: entry_id.to_string(),
            banned_from,
            vehicle_class: (!class.is_empty()).then(|| class.to_string()),
        });
        true
    }

    fn exemption(
        &mut self,
        hash: PlateHash,
        entry_id: &str,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
        zone: &str,
    ) -> bool {
        let Entries::Exemption(list) = self else {
            return false;
        };
        if list.last().is_some_and(|e| e.hash > hash) {
            return false;
        }
        list.push(ExemptionEntry {
            hash,
            entry_id: entry_id.to_string(),
            valid_from,
            valid_until,
            zone: (!zone.is_empty()).then(|| zone.to_string()),
        });
        true
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not a list bundle (bad magic bytes)")]
    BadMagic,
    #[error("unsupported list kind code {0}")]
    BadKind(u8),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("{0} bytes after the signature")]
    TrailingBytes(usize),
    #[error("bad field: {0}")]
    BadField(String),
    #[error("entries out of order at entry {0} (must ascend by hash)")]
    Unsorted(u32),
    #[error("signature does not verify with the pinned public key")]
    BadSignature,
    #[error("cannot encode: {0}")]
    Encode(String),
}

// ---------------------------------------------------------------- encoding

fn put_str(out: &mut Vec<u8>, s: &str, max: usize, what: &str) -> Result<(), BundleError> {
    if s.len() > max {
        return Err(BundleError::Encode(format!(
            "{what} `{s}` is longer than {max} bytes"
        )));
    }
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn date_code(d: NaiveDate) -> u32 {
    use chrono::Datelike;
    (d.year() as u32) * 10_000 + d.month() * 100 + d.day()
}

/// The header fields a bundle's maker chooses (kind and count follow from the entries).
#[derive(Clone, Debug)]
pub struct BundleMeta {
    pub zone: String,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub key_id: String,
}

/// Sorts the entries into canonical order, encodes and signs them.
pub fn encode(
    meta: &BundleMeta,
    mut entries: Entries,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, BundleError> {
    let (zone, version, created_at, key_id) = (
        meta.zone.as_str(),
        meta.version,
        meta.created_at,
        meta.key_id.as_str(),
    );
    let (kind, n) = match &entries {
        Entries::Hit(e) => (ListKind::Hit, e.len()),
        Entries::Exemption(e) => (ListKind::Exemption, e.len()),
    };
    let n = u32::try_from(n).map_err(|_| BundleError::Encode("too many entries".into()))?;
    if zone.is_empty() || key_id.is_empty() {
        return Err(BundleError::Encode(
            "zone and key id must not be empty".into(),
        ));
    }
    let mut out = Vec::with_capacity(64 + n as usize * 48);
    out.extend_from_slice(&MAGIC);
    out.push(kind.code());
    put_str(&mut out, zone, MAX_ZONE_LEN, "zone id")?;
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&created_at.timestamp().to_le_bytes());
    put_str(&mut out, key_id, MAX_KEY_ID_LEN, "key id")?;
    out.extend_from_slice(&n.to_le_bytes());
    match &mut entries {
        Entries::Hit(list) => {
            list.sort_by_key(|e| e.hash);
            for w in list.windows(2) {
                if w[0].hash == w[1].hash {
                    return Err(BundleError::Encode(format!(
                        "entries {} and {} are the same vehicle",
                        w[0].entry_id, w[1].entry_id
                    )));
                }
            }
            for e in list.iter() {
                out.extend_from_slice(&e.hash);
                put_entry_id(&mut out, &e.entry_id)?;
                out.extend_from_slice(&date_code(e.banned_from).to_le_bytes());
                put_str(
                    &mut out,
                    e.vehicle_class.as_deref().unwrap_or(""),
                    MAX_CLASS_LEN,
                    "vehicle class",
                )?;
            }
        }
        Entries::Exemption(list) => {
            list.sort_by(|a, b| {
                a.hash
                    .cmp(&b.hash)
                    .then(a.valid_from.cmp(&b.valid_from))
                    .then_with(|| a.entry_id.cmp(&b.entry_id))
            });
            for e in list.iter() {
                if e.valid_until <= e.valid_from {
                    return Err(BundleError::Encode(format!(
                        "exemption {}: valid_until is not after valid_from",
                        e.entry_id
                    )));
                }
                out.extend_from_slice(&e.hash);
                put_entry_id(&mut out, &e.entry_id)?;
                out.extend_from_slice(&e.valid_from.timestamp().to_le_bytes());
                out.extend_from_slice(&e.valid_until.timestamp().to_le_bytes());
                put_str(
                    &mut out,
                    e.zone.as_deref().unwrap_or(""),
                    MAX_ZONE_LEN,
                    "zone id",
                )?;
            }
        }
    }
    let sig = signing_key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    Ok(out)
}

fn put_entry_id(out: &mut Vec<u8>, id: &str) -> Result<(), BundleError> {
    if id.is_empty() {
        return Err(BundleError::Encode("an entry id must not be empty".into()));
    }
    put_str(out, id, 255, "entry id")
}

// ---------------------------------------------------------------- decoding

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where we are, for "truncated" messages.
    context: String,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BundleError> {
        if self.buf.len() - self.pos < n {
            return Err(BundleError::Truncated(format!(
                "{} needs {n} more bytes at offset {}, the bundle ends at {}",
                self.context,
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, BundleError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, BundleError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, BundleError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, BundleError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes8(&mut self) -> Result<&'a [u8], BundleError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn string(&mut self, what: &str, max: usize) -> Result<&'a str, BundleError> {
        let b = self.bytes8()?;
        if b.len() > max {
            return Err(BundleError::BadField(format!(
                "{what} is {} bytes, at most {max} allowed",
                b.len()
            )));
        }
        std::str::from_utf8(b)
            .map_err(|_| BundleError::BadField(format!("{what} is not UTF-8 ({})", self.context)))
    }
    fn hash(&mut self) -> Result<PlateHash, BundleError> {
        Ok(self.take(HASH_LEN)?.try_into().expect("16 bytes"))
    }
}

fn timestamp(secs: i64, what: &str) -> Result<DateTime<Utc>, BundleError> {
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| BundleError::BadField(format!("{what} {secs} is out of range")))
}

fn date_from_code(code: u32, entry: u32) -> Result<NaiveDate, BundleError> {
    NaiveDate::from_ymd_opt((code / 10_000) as i32, code / 100 % 100, code % 100).ok_or_else(|| {
        BundleError::BadField(format!("entry {entry}: banned_from {code} is not a date"))
    })
}

/// Decodes the header alone (no signature check): for tools that only show it.
pub fn decode_header(bytes: &[u8]) -> Result<BundleHeader, BundleError> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        context: "header".into(),
    };
    read_header(&mut r)
}

fn read_header(r: &mut Reader<'_>) -> Result<BundleHeader, BundleError> {
    if r.take(MAGIC.len())? != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let code = r.u8()?;
    let kind = ListKind::from_code(code).ok_or(BundleError::BadKind(code))?;
    let zone = r.string("zone id", MAX_ZONE_LEN)?.to_string();
    if zone.is_empty() {
        return Err(BundleError::BadField("empty zone id".into()));
    }
    let version = r.u64()?;
    let created_at = timestamp(r.i64()?, "created_at")?;
    let key_id = r.string("key id", MAX_KEY_ID_LEN)?.to_string();
    if key_id.is_empty() {
        return Err(BundleError::BadField("empty key id".into()));
    }
    let entries = r.u32()?;
    Ok(BundleHeader {
        kind,
        zone,
        version,
        created_at,
        key_id,
        entries,
    })
}

/// Decodes a bundle and checks its structure and its signature against `key`,
/// collecting the entries.
pub fn decode(bytes: &[u8], key: &VerifyingKey) -> Result<(BundleHeader, Entries), BundleError> {
    decode_into(bytes, key, |header, cap| match header.kind {
        ListKind::Hit => Entries::Hit(Vec::with_capacity(cap)),
        ListKind::Exemption => Entries::Exemption(Vec::with_capacity(cap)),
    })
}

/// Decodes a bundle and checks its structure and its signature against `key`,
/// handing each entry to the sink that `make` builds from the header and a
/// capacity bounded by the bundle's size (never by its stated count).
pub fn decode_into<S: EntrySink>(
    bytes: &[u8],
    key: &VerifyingKey,
    make: impl FnOnce(&BundleHeader, usize) -> S,
) -> Result<(BundleHeader, S), BundleError> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        context: "header".into(),
    };
    let header = read_header(&mut r)?;
    let n = header.entries;
    // Never trust the count for allocation: at most what the bytes can hold.
    let cap = (n as usize).min(bytes.len() / (HASH_LEN + 2));
    let mut sink = make(&header, cap);
    for i in 0..n {
        r.context = format!("entry {} of {n}", i + 1);
        let hash = r.hash()?;
        let id = r.string("entry id", 255)?;
        let pushed = match header.kind {
            ListKind::Hit => {
                let banned_from = date_from_code(r.u32()?, i)?;
                let class = r.string("vehicle class", MAX_CLASS_LEN)?;
                if id.is_empty() {
                    return Err(BundleError::BadField(format!("entry {i}: empty entry id")));
                }
                sink.hit(hash, id, banned_from, class)
            }
            ListKind::Exemption => {
                let from = timestamp(r.i64()?, "valid_from")?;
                let until = timestamp(r.i64()?, "valid_until")?;
                let zone = r.string("zone id", MAX_ZONE_LEN)?;
                if id.is_empty() {
                    return Err(BundleError::BadField(format!("entry {i}: empty entry id")));
                }
                sink.exemption(hash, id, from, until, zone)
            }
        };
        if !pushed {
            return Err(BundleError::Unsorted(i));
        }
    }
    let signed_len = r.pos;
    r.context = "the signature".into();
    let sig = r.take(SIGNATURE_LEN)?;
    if r.pos != bytes.len() {
        return Err(BundleError::TrailingBytes(bytes.len() - r.pos));
    }
    let sig = Signature::from_bytes(sig.try_into().map_err(|_| BundleError::BadSignature)?);
    key.verify(&bytes[..signed_len], &sig)
        .map_err(|_| BundleError::BadSignature)?;
    Ok((header, sink))
}

/// A verifying key from its 32 bytes in base64 (as pinned in the config).
pub fn verifying_key_from_base64(text: &str) -> Result<VerifyingKey, String> {
    let bytes = crate::hash::from_base64(text)?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("an Ed25519 public key is 32 bytes, not {}", bytes.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// A signing key from its 32-byte seed in base64 (as `lists keygen` writes it).
pub fn signing_key_from_base64(text: &str) -> Result<SigningKey, String> {
    let bytes = crate::hash::from_base64(text)?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "an Ed25519 signing key seed is 32 bytes, not {}",
            bytes.len()
        )
    })?;
    Ok(SigningKey::from_bytes(&arr))
}
