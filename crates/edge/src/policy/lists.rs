//! The loaded lists: compact sorted tables of keyed plate hashes, and the
//! store that verifies new bundles and swaps them in atomically.
//!
//! A table is a `Vec` of fixed-size rows sorted by hash (the order the bundle
//! already has, so loading neither hashes nor sorts) plus a 65,537-entry index
//! of where each 16-bit hash prefix starts. A lookup is one index read and a
//! binary search over the ~15 rows of one prefix (for a million entries).
//! Entry ids and vehicle classes live in one shared string arena. A hit row is
//! 28 bytes; a million entries take about 28 MB plus their ids (see
//! [`HitList::heap_bytes`]).

use crate::sync::LockUnpoisoned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

use crate::clock::Clocks;
use chrono::{DateTime, NaiveDate, Utc};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use anpr_wire::bundle::{self, BundleError, BundleHeader, EntrySink, ListKind};
use anpr_wire::hash::{HmacKey, KeyRing, PlateHash};

const BUCKETS: usize = 1 << 16;

fn bucket(hash: &PlateHash) -> usize {
    usize::from(u16::from_be_bytes([hash[0], hash[1]]))
}

/// Strings of a table, stored end to end.
#[derive(Debug, Default)]
struct Arena {
    text: String,
}

impl Arena {
    fn add(&mut self, s: &str) -> u32 {
        let off = self.text.len() as u32;
        self.text.push_str(s);
        off
    }
    fn get(&self, off: u32, len: u8) -> &str {
        &self.text[off as usize..off as usize + usize::from(len)]
    }
}

/// Builds the prefix index of rows sorted by hash.
fn prefix_index<T>(rows: &[T], hash: impl Fn(&T) -> &PlateHash) -> Vec<u32> {
    let mut starts = vec![0u32; BUCKETS + 1];
    for r in rows {
        starts[bucket(hash(r)) + 1] += 1;
    }
    for b in 0..BUCKETS {
        starts[b + 1] += starts[b];
    }
    starts
}

#[derive(Clone, Copy, Debug)]
struct HitRow {
    hash: PlateHash,
    id_off: u32,
    banned_from: NaiveDate,
    id_len: u8,
    /// Index into `classes` plus one; 0 = no class.
    class: u16,
}

/// The 1-based index of `value` in a small table of distinct strings (0 for
/// the empty string), adding it if new; `None` once the table is full. A few
/// vehicle classes or zones shared by a million rows cost two bytes a row.
fn intern(table: &mut Vec<String>, value: &str) -> Option<u16> {
    if value.is_empty() {
        return Some(0);
    }
    match table.iter().position(|v| v == value) {
        Some(i) => Some(i as u16 + 1),
        None if table.len() < usize::from(u16::MAX) - 1 => {
            table.push(value.to_string());
            Some(table.len() as u16)
        }
        None => None,
    }
}

/// A bundle's list, decoded into the compact form the policy looks up in.
#[derive(Debug)]
pub enum Decoded {
    Hit(HitList),
    Exemption(ExemptionList),
}

/// Decodes a bundle ([`bundle::decode_into`]: structure and signature) into
/// the list it carries.
pub fn decode(bytes: &[u8], key: &VerifyingKey) -> Result<(BundleHeader, Decoded), BundleError> {
    let (header, mut decoded) = bundle::decode_into(bytes, key, |h, cap| match h.kind {
        ListKind::Hit => Decoded::Hit(HitList::with_capacity(cap)),
        ListKind::Exemption => Decoded::Exemption(ExemptionList::with_capacity(cap)),
    })?;
    decoded.finish();
    Ok((header, decoded))
}

impl Decoded {
    fn finish(&mut self) {
        match self {
            Decoded::Hit(l) => l.finish(),
            Decoded::Exemption(l) => l.finish(),
        }
    }
}

impl EntrySink for Decoded {
    fn hit(&mut self, hash: PlateHash, id: &str, banned_from: NaiveDate, class: &str) -> bool {
        match self {
            Decoded::Hit(l) => l.push(hash, id, banned_from, class),
            Decoded::Exemption(_) => false,
        }
    }

    fn exemption(
        &mut self,
        hash: PlateHash,
        id: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        zone: &str,
    ) -> bool {
        match self {
            Decoded::Exemption(l) => l.push(hash, id, from, until, zone),
            Decoded::Hit(_) => false,
        }
    }
}

/// A hit list: which vehicles are banned from the zone, from which date.
#[derive(Debug, Default)]
pub struct HitList {
    rows: Vec<HitRow>,
    starts: Vec<u32>,
    ids: Arena,
    classes: Vec<String>,
}

/// One hit-list entry, borrowed from its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    pub entry_id: &'a str,
    pub banned_from: NaiveDate,
    pub vehicle_class: Option<&'a str>,
}

impl HitList {
    pub fn with_capacity(n: usize) -> Self {
        HitList {
            rows: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    /// Appends an entry; false when its hash does not ascend strictly.
    pub(crate) fn push(
        &mut self,
        hash: PlateHash,
        id: &str,
        banned_from: NaiveDate,
        class: &str,
    ) -> bool {
        if self.rows.last().is_some_and(|r| r.hash >= hash) || id.len() > 255 {
            return false;
        }
        let Some(class) = intern(&mut self.classes, class) else {
            return false;
        };
        let id_off = self.ids.add(id);
        self.rows.push(HitRow {
            hash,
            id_off,
            banned_from,
            id_len: id.len() as u8,
            class,
        });
        true
    }

    pub(crate) fn finish(&mut self) {
        self.rows.shrink_to_fit();
        self.ids.text.shrink_to_fit();
        self.starts = prefix_index(&self.rows, |r| &r.hash);
    }

    pub fn get(&self, hash: &PlateHash) -> Option<Hit<'_>> {
        if self.starts.is_empty() {
            return None;
        }
        let b = bucket(hash);
        let rows = &self.rows[self.starts[b] as usize..self.starts[b + 1] as usize];
        let i = rows.binary_search_by(|r| r.hash.cmp(hash)).ok()?;
        let r = &rows[i];
        Some(Hit {
            entry_id: self.ids.get(r.id_off, r.id_len),
            banned_from: r.banned_from,
            vehicle_class: (r.class > 0).then(|| self.classes[usize::from(r.class - 1)].as_str()),
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes this list holds on the heap (rows, index, strings).
    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<HitRow>()
            + self.starts.capacity() * 4
            + self.ids.text.capacity()
            + self
                .classes
                .iter()
                .map(|c| c.capacity() + 24)
                .sum::<usize>()
    }

    /// Size of one row, for reports.
    pub const ROW_BYTES: usize = std::mem::size_of::<HitRow>();
}

#[derive(Clone, Copy, Debug)]
struct ExemptionRow {
    hash: PlateHash,
    id_off: u32,
    id_len: u8,
    /// Index into `zones` plus one; 0 = every zone.
    zone: u16,
    valid_from: i64,
    valid_until: i64,
}

/// An exemption list: which vehicles may enter, when, and where.
#[derive(Debug, Default)]
pub struct ExemptionList {
    rows: Vec<ExemptionRow>,
    starts: Vec<u32>,
    ids: Arena,
    zones: Vec<String>,
}

impl ExemptionList {
    pub fn with_capacity(n: usize) -> Self {
        ExemptionList {
            rows: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    /// Appends an entry; false when hashes descend. One vehicle may have many
    /// entries (a day permit for each day).
    pub(crate) fn push(
        &mut self,
        hash: PlateHash,
        id: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        zone: &str,
    ) -> bool {
        if self.rows.last().is_some_and(|r| r.hash > hash) || id.len() > 255 {
            return false;
        }
        let Some(zone) = intern(&mut self.zones, zone) else {
            return false;
        };
        let id_off = self.ids.add(id);
        self.rows.push(ExemptionRow {
            hash,
            id_off,
            id_len: id.len() as u8,
            zone,
            valid_from: from.timestamp(),
            valid_until: until.timestamp(),
        });
        true
    }

    pub(crate) fn finish(&mut self) {
        self.rows.shrink_to_fit();
        self.ids.text.shrink_to_fit();
        self.starts = prefix_index(&self.rows, |r| &r.hash);
    }

    /// The id of an exemption of this vehicle valid at `at` in `zone`, if any.
    pub fn valid(&self, hash: &PlateHash, at: DateTime<Utc>, zone: &str) -> Option<&str> {
        if self.starts.is_empty() {
            return None;
        }
        let b = bucket(hash);
        let rows = &self.rows[self.starts[b] as usize..self.starts[b + 1] as usize];
        let first = rows.partition_point(|r| r.hash < *hash);
        let t = at.timestamp();
        rows[first..]
            .iter()
            .take_while(|r| r.hash == *hash)
            .find(|r| {
                r.valid_from <= t
                    && t < r.valid_until
                    && (r.zone == 0 || self.zones[usize::from(r.zone - 1)] == zone)
            })
            .map(|r| self.ids.get(r.id_off, r.id_len))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<ExemptionRow>()
            + self.starts.capacity() * 4
            + self.ids.text.capacity()
    }
}

/// A list in force, with what its bundle said and the key to look it up with.
#[derive(Debug)]
pub struct Loaded<T> {
    pub header: BundleHeader,
    pub list: T,
    pub key: HmacKey,
    pub loaded_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle is for zone `{got}`, this device enforces `{want}`")]
    WrongZone { want: String, got: String },
    #[error("bundle holds a {got} list where a {want} list was expected")]
    WrongKind { want: ListKind, got: ListKind },
    #[error("bundle version {got} is older than the current version {current}")]
    OlderVersion { current: u64, got: u64 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no public key is pinned (policy.public_key)")]
    NoPublicKey,
    #[error("bundle entries are hashed with key id `{0}`, which this device does not hold")]
    UnknownKeyId(String),
}

/// Where the lists come from and how old they may get.
#[derive(Clone, Debug)]
pub struct ListsSetup {
    pub zone: String,
    /// The backend's key; `None` when no list is configured (nothing installs).
    pub public_key: Option<VerifyingKey>,
    pub keys: KeyRing,
    pub hit_list: Option<PathBuf>,
    pub exemptions: Option<PathBuf>,
    /// A list whose bundle was made longer ago than this raises the alarm.
    pub max_age: Option<chrono::Duration>,
    /// Whose wall time a list's load is stamped with and its age measured by.
    pub clocks: Arc<dyn Clocks>,
}

/// The age of one list in force, for the status page.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ListState {
    pub kind: &'static str,
    pub version: u64,
    pub key_id: String,
    pub entries: usize,
    pub created_at: DateTime<Utc>,
    pub age_s: i64,
}

/// What the status module shows about the lists.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ListsStatus {
    pub zone: String,
    pub hit_list: Option<ListState>,
    pub exemptions: Option<ListState>,
    /// True when a configured list is missing or older than the maximum age.
    pub alarm: bool,
    pub alarm_reasons: Vec<String>,
    /// Bundles rejected since start.
    pub rejected: u64,
    /// List downloads that failed (network, HTTP status, size) since start.
    pub fetch_errors: u64,
    pub last_error: Option<String>,
}

/// The lists in force. Readers (`Policy::decide`) take a snapshot with one
/// atomic load; a new bundle is verified aside and swapped in whole.
pub struct Lists {
    setup: ListsSetup,
    hit: ArcSwapOption<Loaded<HitList>>,
    exemptions: ArcSwapOption<Loaded<ExemptionList>>,
    seen: Mutex<BTreeMap<PathBuf, (SystemTime, u64)>>,
    last_error: Mutex<Option<String>>,
    rejected: AtomicU64,
    fetch_errors: AtomicU64,
}

impl std::fmt::Debug for Lists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lists")
            .field("zone", &self.setup.zone)
            .finish()
    }
}

impl Lists {
    /// No lists in force yet; call [`Lists::reload_if_changed`] to load them.
    pub fn new(setup: ListsSetup) -> Self {
        Lists {
            setup,
            hit: ArcSwapOption::empty(),
            exemptions: ArcSwapOption::empty(),
            seen: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
            rejected: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
        }
    }

    pub fn zone(&self) -> &str {
        &self.setup.zone
    }

    pub fn hit_list(&self) -> Option<Arc<Loaded<HitList>>> {
        self.hit.load_full()
    }

    pub fn exemptions(&self) -> Option<Arc<Loaded<ExemptionList>>> {
        self.exemptions.load_full()
    }

    /// Whether a list is configured; a configured list that is not in force
    /// stops all decisions (see `Outcome::ListsUnavailable`).
    pub fn configured(&self, kind: ListKind) -> bool {
        match kind {
            ListKind::Hit => self.setup.hit_list.is_some(),
            ListKind::Exemption => self.setup.exemptions.is_some(),
        }
    }

    /// Verifies a bundle and, if every check passes, puts it in force. On
    /// failure the list in force stays as it was.
    pub fn install(
        &self,
        bytes: &[u8],
        expected: Option<ListKind>,
    ) -> Result<BundleHeader, ListError> {
        let key = self
            .setup
            .public_key
            .as_ref()
            .ok_or(ListError::NoPublicKey)?;
        let (header, decoded) = decode(bytes, key)?;
        if let Some(want) = expected {
            if header.kind != want {
                return Err(ListError::WrongKind {
                    want,
                    got: header.kind,
                });
            }
        }
        if header.zone != self.setup.zone {
            return Err(ListError::WrongZone {
                want: self.setup.zone.clone(),
                got: header.zone,
            });
        }
        let key = self
            .setup
            .keys
            .get(&header.key_id)
            .ok_or_else(|| ListError::UnknownKeyId(header.key_id.clone()))?
            .clone();
        let current = match header.kind {
            ListKind::Hit => self.hit.load().as_ref().map(|l| l.header.version),
            ListKind::Exemption => self.exemptions.load().as_ref().map(|l| l.header.version),
        };
        if let Some(current) = current {
            if header.version < current {
                return Err(ListError::OlderVersion {
                    current,
                    got: header.version,
                });
            }
        }
        let loaded_at = self.setup.clocks.wall();
        match decoded {
            Decoded::Hit(list) => self.hit.store(Some(Arc::new(Loaded {
                header: header.clone(),
                list,
                key,
                loaded_at,
            }))),
            Decoded::Exemption(list) => self.exemptions.store(Some(Arc::new(Loaded {
                header: header.clone(),
                list,
                key,
                loaded_at,
            }))),
        }
        Ok(header)
    }

    /// Reads and installs a bundle file, logging one line either way.
    pub fn load_file(&self, path: &Path, kind: ListKind) -> Result<BundleHeader, ListError> {
        let result = std::fs::read(path)
            .map_err(|source| ListError::Read {
                path: path.to_owned(),
                source,
            })
            .and_then(|bytes| self.install(&bytes, Some(kind)));
        match &result {
            Ok(h) => {
                tracing::info!(
                    list = kind.as_str(),
                    path = %path.display(),
                    zone = %h.zone,
                    version = h.version,
                    key_id = %h.key_id,
                    entries = h.entries,
                    created_at = %h.created_at,
                    "list bundle in force"
                );
                *self.last_error.lock_unpoisoned() = None;
            }
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let kept = match kind {
                    ListKind::Hit => self.hit.load().as_ref().map(|l| l.header.version),
                    ListKind::Exemption => {
                        self.exemptions.load().as_ref().map(|l| l.header.version)
                    }
                };
                let kept = kept.map_or("none".to_string(), |v| format!("version {v}"));
                let line = format!(
                    "{kind} list bundle {} rejected: {e}; keeping the last good list ({kept})",
                    path.display()
                );
                tracing::error!("{line}");
                *self.last_error.lock_unpoisoned() = Some(line);
            }
        }
        result
    }

    /// The configured bundle file of a list kind.
    pub fn path_of(&self, kind: ListKind) -> Option<&Path> {
        match kind {
            ListKind::Hit => self.setup.hit_list.as_deref(),
            ListKind::Exemption => self.setup.exemptions.as_deref(),
        }
    }

    fn version_in_force(&self, kind: ListKind) -> Option<u64> {
        match kind {
            ListKind::Hit => self.hit.load().as_ref().map(|l| l.header.version),
            ListKind::Exemption => self.exemptions.load().as_ref().map(|l| l.header.version),
        }
    }

    /// Records a failed download (logged by the caller) for the status page.
    pub fn note_fetch_error(&self, line: String) {
        self.fetch_errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock_unpoisoned() = Some(line);
    }

    /// Verifies a downloaded bundle exactly as a file is verified and, if it
    /// passes, puts it in force and writes it atomically (temporary file in the
    /// same folder, fsync, rename) to the configured file, so that it survives
    /// a restart. A bundle that fails is logged in one line naming `url` and
    /// the cause; the list in force stays.
    pub fn install_fetched(
        &self,
        bytes: &[u8],
        kind: ListKind,
        url: &str,
    ) -> Result<BundleHeader, ListError> {
        let result = self.install(bytes, Some(kind)).and_then(|h| {
            if let Some(path) = self.path_of(kind) {
                write_atomically(path, bytes).map_err(|source| ListError::Write {
                    path: path.to_owned(),
                    source,
                })?;
                // The reload task need not load what is already in force.
                if let Ok(m) = std::fs::metadata(path) {
                    let stamp = (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len());
                    self.seen.lock_unpoisoned().insert(path.to_owned(), stamp);
                }
            }
            Ok(h)
        });
        match &result {
            Ok(h) => {
                tracing::info!(
                    list = kind.as_str(),
                    url,
                    zone = %h.zone,
                    version = h.version,
                    key_id = %h.key_id,
                    entries = h.entries,
                    created_at = %h.created_at,
                    "downloaded list bundle in force"
                );
                *self.last_error.lock_unpoisoned() = None;
            }
            Err(e) => {
                let kept = self
                    .version_in_force(kind)
                    .map_or("none".to_string(), |v| format!("version {v}"));
                let line = if matches!(e, ListError::Write { .. }) {
                    format!("{kind} list bundle from {url} is in force but not saved: {e}")
                } else {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "{kind} list bundle from {url} rejected: {e}; keeping the last good list ({kept})"
                    )
                };
                tracing::error!("{line}");
                *self.last_error.lock_unpoisoned() = Some(line);
            }
        }
        result
    }

    /// Loads each configured bundle whose file changed (mtime or size) since
    /// the last look, or was never loaded. Returns how many were put in force.
    /// A file that fails is not tried again until it changes.
    pub fn reload_if_changed(&self) -> usize {
        let mut installed = 0;
        let configured = [
            (ListKind::Hit, self.setup.hit_list.clone()),
            (ListKind::Exemption, self.setup.exemptions.clone()),
        ];
        for (kind, path) in configured {
            let Some(path) = path else { continue };
            // A missing file has its own stamp, so that it is reported once.
            let stamp = std::fs::metadata(&path).map_or((SystemTime::UNIX_EPOCH, u64::MAX), |m| {
                (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())
            });
            {
                let mut seen = self.seen.lock_unpoisoned();
                if seen.get(&path) == Some(&stamp) {
                    continue;
                }
                seen.insert(path.clone(), stamp);
            }
            if self.load_file(&path, kind).is_ok() {
                installed += 1;
            }
        }
        installed
    }

    /// [`Lists::status`] now, by the lists' own clocks.
    pub fn status_now(&self) -> ListsStatus {
        self.status(self.setup.clocks.wall())
    }

    /// Versions, ages and the alarm, as of `now`.
    pub fn status(&self, now: DateTime<Utc>) -> ListsStatus {
        fn state<T>(
            kind: &'static str,
            l: &Loaded<T>,
            len: usize,
            now: DateTime<Utc>,
        ) -> ListState {
            ListState {
                kind,
                version: l.header.version,
                key_id: l.header.key_id.clone(),
                entries: len,
                created_at: l.header.created_at,
                age_s: (now - l.header.created_at).num_seconds(),
            }
        }
        let hit = self
            .hit
            .load()
            .as_ref()
            .map(|l| state("hit", l, l.list.len(), now));
        let ex = self
            .exemptions
            .load()
            .as_ref()
            .map(|l| state("exemption", l, l.list.len(), now));
        let mut reasons = Vec::new();
        for (kind, configured, st) in [
            ("hit", self.setup.hit_list.is_some(), &hit),
            ("exemption", self.setup.exemptions.is_some(), &ex),
        ] {
            match st {
                None if configured => reasons.push(format!("no {kind} list in force")),
                Some(s) => {
                    if let Some(max) = self.setup.max_age {
                        if s.age_s > max.num_seconds() {
                            reasons.push(format!(
                                "{kind} list version {} is {} h old (maximum {} h)",
                                s.version,
                                s.age_s / 3600,
                                max.num_hours()
                            ));
                        }
                    }
                }
                None => {}
            }
        }
        ListsStatus {
            zone: self.setup.zone.clone(),
            hit_list: hit,
            exemptions: ex,
            alarm: !reasons.is_empty(),
            alarm_reasons: reasons,
            rejected: self.rejected.load(Ordering::Relaxed),
            fetch_errors: self.fetch_errors.load(Ordering::Relaxed),
            last_error: self.last_error.lock_unpoisoned().clone(),
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over
/// `path` and syncs the folder: a crash leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
