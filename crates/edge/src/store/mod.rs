//! The on-device buffer of candidate violations: one SQLite database that holds
//! each violation's evidence (overview and plate-crop JPEGs, their SHA-256) and
//! metadata until the backend has acknowledged it.
//!
//! A violation counts as recorded only once its transaction has committed with
//! `synchronous=FULL`, so a power cut right after [`Store::record`] returns does
//! not lose it. The uploader reads from a second connection to the same file
//! (WAL lets it read while the pipeline writes).
//!
//! Every record is signed (Ed25519, [`crate::keys`]) over its metadata bytes,
//! which name the previous record's hash: a chain the backend checks. The
//! store also keeps the database within its disk budget and applies retention
//! ([`Store::apply_retention`]): an undelivered record past the maximum
//! retention is replaced by a signed [`Tombstone`] that keeps the chain but
//! nothing personal. Every deletion is counted by reason in the database
//! itself, and deleted content is overwritten (`secure_delete`).
//!
//! This module only ever sees [`Violation`]s: non-hits never reach it, and it
//! never stores anything about a vehicle that was not judged a candidate
//! violation. It never talks to the network.

mod budget;
mod record;
mod retention;
mod schema;
pub mod stage;

use budget::{count_drop, make_room, ROW_OVERHEAD};
pub use schema::SCHEMA_VERSION;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use image::RgbImage;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::{Clocks, RealClocks};
use crate::config::BudgetPolicy;
use crate::keys::EvidenceSigner;
use crate::message::Violation;
pub use crate::metrics::BudgetStatus;
use anpr_wire::chain::{record_sha256, GENESIS_PREV};
pub use anpr_wire::record::{
    format_time, reason, PlateMetadata, RecordMetadata, Tombstone, TombstoneKind, METADATA_FORMAT,
    TOMBSTONE_FORMAT,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder {path} for the violation store: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open violation store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("violation store {path} stayed in journal mode `{mode}`; WAL is required")]
    NotWal { path: PathBuf, mode: String },
    #[error("violation store {path} has schema version {found}, newer than the {supported} this build knows; refusing to touch it")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot migrate violation store {path} to schema version {to}: {source}")]
    Migrate {
        path: PathBuf,
        to: i64,
        source: rusqlite::Error,
    },
    #[error("violation store {path}: {op} failed: {source}")]
    Sql {
        path: PathBuf,
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot encode the {what} JPEG: {source}")]
    Encode {
        what: &'static str,
        source: image::ImageError,
    },
    #[error("cannot serialise record metadata: {source}")]
    Serialise { source: serde_json::Error },
    #[error("violation store {path}: record {id} is damaged: {reason}")]
    Corrupt {
        path: PathBuf,
        id: String,
        reason: String,
    },
    #[error("violation store {path}: no record {id}")]
    NotFound { path: PathBuf, id: Uuid },
    #[error("violation store {path} is at its disk budget ({used} of {max} bytes); violation not recorded (store.on_budget_full = {policy})")]
    BudgetFull {
        path: PathBuf,
        used: u64,
        max: u64,
        policy: &'static str,
    },
    #[error("violation store {path} failed its integrity check: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("cannot move damaged violation store {path} aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who, where and with what a violation was recorded: the parts of a record
/// that come from the configuration, not from the passage.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordContext {
    pub device_id: String,
    pub location: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The free-text facing of the camera that saw the passage.
    pub camera_facing: String,
    /// Versions of the models that produced the read, e.g. `"detector=1.2;reader=0.9"`.
    pub model_versions: String,
    /// JPEG quality (1..=100) for both the overview and the crop.
    pub jpeg_quality: u8,
    /// Signs each record.
    pub signer: EvidenceSigner,
}

/// The disk budget of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of database pages in use; `u64::MAX` for no budget.
    pub max_bytes: u64,
    pub policy: BudgetPolicy,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_bytes: u64::MAX,
            policy: BudgetPolicy::DropNewEvidence,
        }
    }
}

/// What one retention pass deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub acked_evidence_deleted: u64,
    /// Seqs of unacknowledged records that expired and were replaced by
    /// tombstones, lowest first.
    pub unacked_records_expired: Vec<i64>,
    pub acked_rows_deleted: u64,
}

/// A damaged database that was moved aside so the daemon could start afresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedAside {
    pub to: PathBuf,
    pub reason: String,
}

/// The identity a record got when it was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredId {
    pub id: Uuid,
    /// Per-device sequence number: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// Why the images were not stored (disk budget), if they were not.
    pub evidence_dropped: Option<&'static str>,
}

/// What an unacknowledged record carries to the backend.
#[derive(Clone, Debug, PartialEq)]
pub enum PendingContent {
    /// A live record: its metadata, with the images beside it.
    Record(Box<RecordMetadata>),
    /// A record that expired undelivered: only its tombstone is left.
    Tombstone(Tombstone),
}

/// A record the backend has not acknowledged yet.
#[derive(Clone, Debug)]
pub struct PendingRecord {
    pub id: Uuid,
    pub seq: i64,
    pub content: PendingContent,
    /// The signed JSON, byte for byte as stored: the `metadata` part of a
    /// record, or the `tombstone` part of a tombstone. This is what is
    /// uploaded, so the backend sees exactly what the device committed.
    pub signed_json: String,
    /// Empty when the evidence was deleted; see `evidence_dropped`.
    pub overview_jpeg: Vec<u8>,
    pub crop_jpeg: Vec<u8>,
    /// Ed25519 signature of `signed_json`, base64; `None` for format 1 records.
    pub signature: Option<String>,
    /// Why the images were deleted ([`reason`]), if they were.
    pub evidence_dropped: Option<String>,
}

impl PendingRecord {
    /// The record's metadata, unless only its tombstone is left.
    pub fn metadata(&self) -> Option<&RecordMetadata> {
        match &self.content {
            PendingContent::Record(m) => Some(m.as_ref()),
            PendingContent::Tombstone(_) => None,
        }
    }

    /// The tombstone, if the record expired undelivered.
    pub fn tombstone(&self) -> Option<&Tombstone> {
        match &self.content {
            PendingContent::Tombstone(t) => Some(t),
            PendingContent::Record(_) => None,
        }
    }
}

/// Delivery state of one record, for diagnostics and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordStatus {
    pub seq: i64,
    pub acked_at: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How long a statement waits for the other connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn encode_jpeg(img: &RgbImage, quality: u8, what: &'static str) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
    img.write_with_encoder(enc)
        .map_err(|source| StoreError::Encode { what, source })?;
    Ok(out)
}

/// How a store is opened: given at construction, never changed after.
#[derive(Clone)]
pub struct StoreOptions {
    /// The disk budget that [`Store::record`] keeps to.
    pub limits: StoreLimits,
    /// Whose wall time stamps each record's `created_at` and names a damaged
    /// file set aside.
    pub clocks: Arc<dyn Clocks>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            limits: StoreLimits::default(),
            clocks: Arc::new(RealClocks::new()),
        }
    }
}

/// One connection to the violation database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    chain_id: String,
    limits: StoreLimits,
    alarm: bool,
    /// Stamps each record's `created_at`; the daemon's own clocks, so that a
    /// simulated day stamps simulated times.
    clocks: Arc<dyn Clocks>,
}

/// The file beside `path` with `suffix` appended (`-wal`, `-shm`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What a record's row holds beside its metadata's own fields.
struct Row<'a> {
    json: &'a str,
    char_confidences: &'a str,
    record_sha256: &'a str,
    signature: &'a str,
    overview: Vec<u8>,
    crop: Vec<u8>,
    evidence_dropped: Option<&'static str>,
}

/// Inserts one record's row: its metadata's fields as columns (for queries
/// and retention), the metadata bytes as signed, and the images.
fn insert_row(tx: &Connection, meta: &RecordMetadata, row: Row<'_>) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO violation (
            id, device_id, seq, captured_at, clock_synchronised, clock_max_error_us,
            camera, camera_facing, location, latitude, longitude, lane, direction,
            plate_text, plate_confidence, char_confidences, reads, frames,
            first_seen, last_seen, frame_seq, model_versions,
            decision_rule, hit_list_version, exemption_list_version, hit_entry_id,
            overview_jpeg, overview_sha256, crop_jpeg, crop_sha256, metadata, created_at,
            record_sha256, signature, evidence_dropped
        ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                  ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30,
                  ?31, ?32, ?33, ?34, ?35)",
        params![
            meta.id.to_string(),
            meta.device_id,
            meta.seq,
            meta.captured_at,
            meta.clock.synchronised,
            meta.clock.max_error_us,
            meta.camera,
            meta.camera_facing,
            meta.location,
            meta.latitude,
            meta.longitude,
            meta.lane,
            record::direction_str(meta.direction),
            meta.plate.text,
            meta.plate.confidence as f64,
            row.char_confidences,
            meta.reads,
            meta.frames,
            meta.first_seen,
            meta.last_seen,
            // SQLite integers are i64; a frame counter never gets near 2^63.
            i64::try_from(meta.frame_seq).unwrap_or(i64::MAX),
            meta.model_versions,
            meta.decision.rule,
            meta.decision.hit_list_version,
            meta.decision.exemption_list_version,
            meta.decision.entry_id,
            row.overview,
            meta.overview_sha256,
            row.crop,
            meta.crop_sha256,
            row.json,
            meta.created_at,
            row.record_sha256,
            row.signature,
            row.evidence_dropped,
        ],
    )
}

impl Store {
    /// Opens (creating if needed) the database at `path` with the default
    /// options (no disk budget, the operating system's clocks): for tools and
    /// readers. The daemon opens with [`Store::open_with`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the database at `path`, with its parent folder,
    /// and brings its schema up to [`SCHEMA_VERSION`].
    pub fn open_with(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let path_buf = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path_buf.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // SQLite opens lazily: this is the first statement that reads the file,
        // so a file that is not a database fails here, with its path.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal {
                path: path_buf,
                mode,
            });
        }
        // FULL: a commit is on disk (WAL fsynced) before record() returns.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        // After a checkpoint the WAL shrinks back to this, so it cannot keep
        // the disk space of a burst (it counts against the budget).
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)
            .map_err(open_err)?;
        // Deleted content (an expired record's plate, a deleted row) is
        // overwritten with zeros instead of lingering in free space.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(open_err)?;
        let mut store = Store {
            conn,
            path: path_buf,
            chain_id: String::new(),
            limits: opts.limits,
            alarm: false,
            clocks: opts.clocks,
        };
        store.migrate()?;
        store.chain_id = store
            .conn
            .query_row(
                "SELECT value FROM store_info WHERE key = 'chain_id'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| store.sql("read chain id", e))?;
        Ok(store)
    }

    /// Opens the database at `path` and checks it (`PRAGMA quick_check`). A
    /// file that cannot be opened as a database, or fails the check, is renamed
    /// to `<path>.damaged-<UTC time>` (with its WAL) and a fresh database is
    /// made, so the daemon keeps recording; the move is returned for reporting.
    /// A database from a newer build is refused, never moved.
    pub fn open_checked(
        path: &Path,
        opts: StoreOptions,
    ) -> Result<(Store, Option<MovedAside>), StoreError> {
        let failure = match Store::open_with(path, opts.clone()) {
            Ok(store) => match store.quick_check() {
                Ok(()) => return Ok((store, None)),
                Err(e) => e,
            },
            Err(e @ (StoreError::NewerSchema { .. } | StoreError::CreateDir { .. })) => {
                return Err(e)
            }
            Err(e) => e,
        };
        let stamp = opts.clocks.wall().format("%Y%m%dT%H%M%SZ");
        let to = sibling(path, &format!(".damaged-{stamp}"));
        for suffix in ["", "-wal", "-shm"] {
            let from = sibling(path, suffix);
            if from.exists() {
                std::fs::rename(&from, sibling(&to, suffix)).map_err(|source| {
                    StoreError::MoveAside {
                        path: from.clone(),
                        source,
                    }
                })?;
            }
        }
        let store = Store::open_with(path, opts)?;
        Ok((
            store,
            Some(MovedAside {
                to,
                reason: failure.to_string(),
            }),
        ))
    }

    /// `PRAGMA quick_check`: `Ok` when SQLite finds the file consistent.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(|e| self.integrity(e.to_string()))?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.integrity(e.to_string()))?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(())
        } else {
            Err(self.integrity(lines.join("; ")))
        }
    }

    fn integrity(&self, detail: String) -> StoreError {
        StoreError::Integrity {
            path: self.path.clone(),
            detail,
        }
    }

    /// The chain id of this database (see [`RecordMetadata::chain_id`]).
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The raw connection, for tests that inspect columns directly.
    #[cfg(test)]
    pub(crate) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, op: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Records a candidate violation: encodes its images, assigns a UUID and the
    /// next sequence number, and commits. Returns once the record is durable.
    pub fn record(&mut self, v: &Violation, ctx: &RecordContext) -> Result<StoredId, StoreError> {
        let p = &v.passage;
        // Encode before taking the write lock: it is the slow part.
        let overview = encode_jpeg(&p.best.image, ctx.jpeg_quality, "overview")?;
        let crop = encode_jpeg(&p.best.crop, ctx.jpeg_quality, "plate crop")?;
        let id = Uuid::new_v4();
        let path = self.path.clone();
        let sql = |op: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sql { path, op, source }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin record"))?;
        // max+1 inside the write transaction: no gaps, no duplicates, even with
        // another connection writing.
        // The chain head outlives deleted rows, so a number is never reused.
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, record_sha256 FROM chain_head WHERE device_id = ?1",
                params![ctx.device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("read chain head"))?;
        let max_seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM violation WHERE device_id = ?1",
                params![ctx.device_id],
                |r| r.get(0),
            )
            .map_err(sql("next sequence number"))?;
        let seq = head.as_ref().map_or(0, |h| h.0).max(max_seq) + 1;
        // Records made before format 2 are unsigned: the chain starts after them.
        let prev = head.map_or_else(|| GENESIS_PREV.to_string(), |h| h.1);
        let meta = record::metadata(
            v,
            ctx,
            record::Link {
                id,
                seq,
                chain_id: self.chain_id.clone(),
                prev_record_sha256: prev,
            },
            record::Evidence {
                overview_sha256: sha256_hex(&overview),
                crop_sha256: sha256_hex(&crop),
            },
            self.clocks.wall(),
        );
        let json =
            serde_json::to_string(&meta).map_err(|source| StoreError::Serialise { source })?;
        let char_conf = serde_json::to_string(&meta.plate.char_confidences)
            .map_err(|source| StoreError::Serialise { source })?;
        let hash = record_sha256(json.as_bytes());
        let signature = ctx.signer.sign(json.as_bytes());

        let need = (overview.len() + crop.len() + json.len()) as u64 + ROW_OVERHEAD;
        let limits = self.limits;
        let dropped = match make_room(&tx, &path, limits, need, json.len() as u64 + ROW_OVERHEAD) {
            Ok(d) => d,
            Err(e) => {
                drop(tx);
                if let StoreError::BudgetFull { .. } = e {
                    self.alarm = true;
                    let _ = count_drop(&self.conn, reason::REFUSED_BUDGET, 1);
                }
                return Err(e);
            }
        };
        self.alarm = dropped.is_some();
        let (overview, crop) = if dropped.is_some() {
            (Vec::new(), Vec::new())
        } else {
            (overview, crop)
        };
        insert_row(
            &tx,
            &meta,
            Row {
                json: &json,
                char_confidences: &char_conf,
                record_sha256: &hash,
                signature: &signature,
                overview,
                crop,
                evidence_dropped: dropped,
            },
        )
        .map_err(sql("insert record"))?;
        tx.execute(
            "INSERT INTO chain_head (device_id, seq, record_sha256) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq,
                                                   record_sha256 = excluded.record_sha256",
            params![meta.device_id, seq, hash],
        )
        .map_err(sql("move chain head"))?;
        if let Some(r) = dropped {
            count_drop(&tx, r, 1).map_err(sql("count drop"))?;
        }
        tx.commit().map_err(sql("commit record"))?;
        Ok(StoredId {
            id,
            seq,
            evidence_dropped: dropped,
        })
    }

    /// Up to `limit` unacknowledged records, oldest (lowest seq) first, live
    /// records and tombstones alike.
    pub fn pending(&self, limit: usize) -> Result<Vec<PendingRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, seq, metadata, overview_jpeg, crop_jpeg, signature, evidence_dropped,
                        tombstone
                 FROM violation WHERE acked_at IS NULL ORDER BY seq, created_at LIMIT ?1",
            )
            .map_err(|e| self.sql("prepare pending", e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .map_err(|e| self.sql("query pending", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id_text,
                seq,
                metadata_json,
                overview_jpeg,
                crop_jpeg,
                signature,
                evidence_dropped,
                tombstone_json,
            ) = row.map_err(|e| self.sql("read pending row", e))?;
            let corrupt = |reason: String| StoreError::Corrupt {
                path: self.path.clone(),
                id: id_text.clone(),
                reason,
            };
            let id = Uuid::parse_str(&id_text).map_err(|e| corrupt(format!("bad id: {e}")))?;
            let (content, signed_json) = match tombstone_json {
                Some(json) => {
                    let t: Tombstone = serde_json::from_str(&json)
                        .map_err(|e| corrupt(format!("tombstone is not valid JSON: {e}")))?;
                    if t.id != id || t.seq != seq {
                        return Err(corrupt("tombstone id/seq differ from the row's".into()));
                    }
                    (PendingContent::Tombstone(t), json)
                }
                None => {
                    let m: RecordMetadata = serde_json::from_str(&metadata_json)
                        .map_err(|e| corrupt(format!("metadata is not valid JSON: {e}")))?;
                    if m.id != id || m.seq != seq {
                        return Err(corrupt("metadata id/seq differ from the row's".into()));
                    }
                    (PendingContent::Record(Box::new(m)), metadata_json)
                }
            };
            out.push(PendingRecord {
                id,
                seq,
                content,
                signed_json,
                overview_jpeg,
                crop_jpeg,
                signature,
                evidence_dropped,
            });
        }
        Ok(out)
    }

    /// Marks a record acknowledged by the backend at `at`. Acknowledging twice
    /// keeps the first time. The row and its evidence stay.
    pub fn mark_acked(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE violation SET acked_at = COALESCE(acked_at, ?2), last_error = NULL
                 WHERE id = ?1",
                params![id.to_string(), format_time(at)],
            )
            .map_err(|e| self.sql("mark acked", e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                path: self.path.clone(),
                id,
            });
        }
        Ok(())
    }

    /// Marks several records acknowledged in one transaction (one fsync).
    pub fn mark_acked_many(&mut self, ids: &[Uuid], at: DateTime<Utc>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sql {
            path: path.clone(),
            op: "mark acked",
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE violation SET acked_at = COALESCE(acked_at, ?2), last_error = NULL
                     WHERE id = ?1",
                )
                .map_err(err)?;
            let at = format_time(at);
            for id in ids {
                st.execute(params![id.to_string(), at]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Counts a failed delivery attempt and keeps its error text.
    pub fn record_attempt(&self, id: Uuid, error: &str) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE violation SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id.to_string(), error],
            )
            .map_err(|e| self.sql("record attempt", e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                path: self.path.clone(),
                id,
            });
        }
        Ok(())
    }

    /// How many records wait for acknowledgement.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM violation WHERE acked_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.sql("count pending", e))
    }

    /// When the oldest unacknowledged record was committed, if any.
    pub fn oldest_pending_created_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT created_at FROM violation WHERE acked_at IS NULL ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql("oldest pending", e))?;
        text.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    id: "?".into(),
                    reason: format!("created_at `{t}` is not RFC 3339: {e}"),
                })
        })
        .transpose()
    }

    /// Delivery state of one record, or `None` if there is no such record.
    pub fn status(&self, id: Uuid) -> Result<Option<RecordStatus>, StoreError> {
        self.conn
            .query_row(
                "SELECT seq, acked_at, attempts, last_error FROM violation WHERE id = ?1",
                params![id.to_string()],
                |r| {
                    Ok(RecordStatus {
                        seq: r.get(0)?,
                        acked_at: r.get(1)?,
                        attempts: r.get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32,
                        last_error: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql("record status", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{sample_context, sample_violation};
    use budget::RESERVE_FOR_METADATA;
    use schema::MIGRATIONS;

    /// The metadata of a live pending record.
    fn meta(p: &PendingRecord) -> &RecordMetadata {
        p.metadata().expect("a live record, not a tombstone")
    }

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state").join("anpr.sqlite");
        (dir, path)
    }

    #[test]
    fn recorded_violation_survives_reopen() {
        let (_dir, path) = temp_db();
        let stored = {
            let mut s = Store::open(&path).expect("open");
            s.record(&sample_violation("AB123C"), &sample_context())
                .expect("record")
        };
        let s = Store::open(&path).expect("reopen");
        let pending = s.pending(10).expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, stored.id);
        assert_eq!(meta(&pending[0]).plate.text, "AB123C");
        assert_eq!(meta(&pending[0]).plate.country.as_deref(), Some("NL"));
        assert!(pending[0].signed_json.contains(r#""country":"NL""#));
        assert_eq!(meta(&pending[0]).device_id, "cam-post-17");
        assert_eq!(meta(&pending[0]).decision.entry_id, "entry-42");
        assert!(pending[0].overview_jpeg.starts_with(&[0xFF, 0xD8]));
        assert!(pending[0].crop_jpeg.starts_with(&[0xFF, 0xD8]));
    }

    #[test]
    fn records_are_stamped_by_the_stores_clocks_and_expire_by_them() {
        let (_dir, path) = temp_db();
        let start = DateTime::parse_from_rfc3339("2026-03-01T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let clocks = Arc::new(crate::clock::SimulatedClocks::new(start));
        let mut s = Store::open_with(
            &path,
            StoreOptions {
                clocks: clocks.clone(),
                ..StoreOptions::default()
            },
        )
        .expect("open");
        s.record(&sample_violation("AB123C"), &sample_context())
            .expect("record");
        let first = s.pending(10).expect("pending").remove(0);
        assert_eq!(meta(&first).created_at, "2026-03-01T08:00:00.000Z");
        // A simulated month offline: the record is past 28 days of retention
        // by the store's own stamp, with no editing of the database.
        clocks.advance(Duration::from_secs(29 * 24 * 3600));
        let r = s
            .apply_retention(
                clocks.wall(),
                chrono::Duration::hours(72),
                chrono::Duration::days(28),
                &crate::testing::sample_signer(),
            )
            .expect("retention");
        assert_eq!(r.unacked_records_expired, vec![first.seq]);
    }

    #[test]
    fn sequence_numbers_have_no_gaps_across_reopen() {
        let (_dir, path) = temp_db();
        let mut seqs = Vec::new();
        for round in 0..3 {
            let mut s = Store::open(&path).expect("open");
            for i in 0..3 {
                let v = sample_violation(&format!("X{round}{i}"));
                seqs.push(s.record(&v, &sample_context()).expect("record").seq);
            }
        }
        assert_eq!(seqs, (1..=9).collect::<Vec<i64>>());
    }

    #[test]
    fn pending_is_oldest_first_and_excludes_acked() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let ids: Vec<StoredId> = (0..4)
            .map(|i| {
                s.record(&sample_violation(&format!("P{i}")), &sample_context())
                    .expect("record")
            })
            .collect();
        s.mark_acked(ids[1].id, Utc::now()).expect("ack");
        let pending = s.pending(10).expect("pending");
        let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![1, 3, 4]);
        assert_eq!(s.pending(2).expect("pending").len(), 2);
        assert_eq!(s.pending_count().expect("count"), 3);
        // The acked row is kept, with its evidence.
        let st = s.status(ids[1].id).expect("status").expect("present");
        assert!(st.acked_at.is_some());
    }

    #[test]
    fn metadata_json_round_trips_exactly() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        s.record(&sample_violation("ZZ99ZZ"), &sample_context())
            .expect("record");
        let p = s.pending(1).expect("pending").remove(0);
        let again = serde_json::to_string(meta(&p)).expect("serialise");
        assert_eq!(again, p.signed_json);
        assert_eq!(meta(&p).format, METADATA_FORMAT);
        assert!(meta(&p).captured_at.ends_with('Z'));
        assert_eq!(meta(&p).lane, None);
    }

    #[test]
    fn a_record_made_before_the_country_field_still_reads() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        s.record(&sample_violation("ZZ99ZZ"), &sample_context())
            .expect("record");
        let p = s.pending(1).expect("pending").remove(0);
        let older = p.signed_json.replace(r#","country":"NL""#, "");
        assert_ne!(older, p.signed_json);
        let m: RecordMetadata = serde_json::from_str(&older).expect("parses");
        assert_eq!(m.plate.country, None);
        assert_eq!(m.plate.text, "ZZ99ZZ");
    }

    #[test]
    fn a_record_states_the_passage_lane() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let mut v = sample_violation("LANE2X");
        v.passage.lane = Some(2);
        s.record(&v, &sample_context()).expect("record");
        let p = s.pending(1).expect("pending").remove(0);
        assert_eq!(meta(&p).lane, Some(2));
        assert!(p.signed_json.contains("\"lane\":2"), "{}", p.signed_json);
    }

    #[test]
    fn sha256_columns_match_stored_jpeg_bytes() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let id = s
            .record(&sample_violation("HASH1"), &sample_context())
            .expect("record")
            .id;
        let (ov, ov_hash, crop, crop_hash): (Vec<u8>, String, Vec<u8>, String) = s
            .conn
            .query_row(
                "SELECT overview_jpeg, overview_sha256, crop_jpeg, crop_sha256
                 FROM violation WHERE id = ?1",
                params![id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("row");
        assert_eq!(sha256_hex(&ov), ov_hash);
        assert_eq!(sha256_hex(&crop), crop_hash);
        let p = s.pending(1).expect("pending").remove(0);
        assert_eq!(meta(&p).overview_sha256, ov_hash);
        assert_eq!(meta(&p).crop_sha256, crop_hash);
    }

    #[test]
    fn attempts_and_last_error_are_counted() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let id = s
            .record(&sample_violation("ERR1"), &sample_context())
            .expect("record")
            .id;
        s.record_attempt(id, "503 Service Unavailable").expect("a1");
        s.record_attempt(id, "timeout").expect("a2");
        let st = s.status(id).expect("status").expect("present");
        assert_eq!(st.attempts, 2);
        assert_eq!(st.last_error.as_deref(), Some("timeout"));
        let missing = Uuid::new_v4();
        assert!(matches!(
            s.record_attempt(missing, "x"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.oldest_pending_created_at().expect("age").is_some());
    }

    #[test]
    fn schema_version_is_set() {
        let (_dir, path) = temp_db();
        let s = Store::open(&path).expect("open");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 3);
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn newer_schema_is_refused() {
        let (_dir, path) = temp_db();
        {
            let s = Store::open(&path).expect("open");
            s.conn
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump");
        }
        let err = Store::open(&path).err().expect("refused");
        assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn open_under_a_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let path = file.join("sub").join("anpr.sqlite");
        let err = Store::open(&path).err().expect("error");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn open_of_a_non_database_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("garbage.sqlite");
        std::fs::write(&path, vec![0x5Au8; 8192]).expect("write");
        let err = Store::open(&path).err().expect("error");
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn each_record_is_signed_and_names_its_predecessor() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        for i in 0..3 {
            s.record(&sample_violation(&format!("CH{i}")), &sample_context())
                .expect("record");
        }
        let key = crate::testing::sample_signer().verifying_key();
        let recs = s.pending(10).expect("pending");
        let mut prev = GENESIS_PREV.to_string();
        for r in &recs {
            let sig = r.signature.as_deref().expect("signed");
            anpr_wire::chain::verify_record(&key, r.signed_json.as_bytes(), sig).expect("valid");
            assert_eq!(meta(r).prev_record_sha256.as_deref(), Some(prev.as_str()));
            assert_eq!(meta(r).chain_id.as_deref(), Some(s.chain_id()));
            assert_eq!(meta(r).format, METADATA_FORMAT);
            prev = record_sha256(r.signed_json.as_bytes());
        }
        assert_eq!(s.chain_id().len(), 32);
        // Another database is another chain.
        let (_d2, p2) = temp_db();
        assert_ne!(Store::open(&p2).expect("open").chain_id(), s.chain_id());
    }

    #[test]
    fn a_version_1_database_is_migrated_and_its_records_kept() {
        let (_dir, path) = temp_db();
        // A record made by this build, copied into a database at version 1 with
        // the format-1 metadata a version-1 build wrote.
        let donor_path = path.with_file_name("donor.sqlite");
        {
            let mut d = Store::open(&donor_path).expect("donor");
            d.record(&sample_violation("OLD1"), &sample_context())
                .expect("record");
        }
        {
            let old = Connection::open(&path).expect("old");
            old.execute_batch(MIGRATIONS[0]).expect("v1 schema");
            old.pragma_update(None, "user_version", 1).expect("version");
            let cols: Vec<String> = old
                .prepare("SELECT name FROM pragma_table_info('violation')")
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .expect("columns");
            let cols = cols.join(", ");
            old.execute(
                "ATTACH DATABASE ?1 AS donor",
                params![donor_path.display().to_string()],
            )
            .expect("attach");
            old.execute_batch(&format!(
                "INSERT INTO violation ({cols}) SELECT {cols} FROM donor.violation;
                 UPDATE violation SET metadata = json_set(
                     json_remove(metadata, '$.chain_id', '$.prev_record_sha256'), '$.format', 1);"
            ))
            .expect("copy");
        }
        let mut s = Store::open(&path).expect("migrate");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        let old = s.pending(10).expect("pending").remove(0);
        assert_eq!(meta(&old).format, 1);
        assert_eq!(meta(&old).plate.text, "OLD1");
        assert_eq!(meta(&old).chain_id, None);
        assert_eq!(old.signature, None, "a version-1 record stays unsigned");
        assert!(!old.overview_jpeg.is_empty());
        // The first signed record continues the numbering and starts the chain.
        let new = s
            .record(&sample_violation("NEW1"), &sample_context())
            .expect("record");
        assert_eq!(new.seq, 2);
        let p = s.pending(10).expect("pending").remove(1);
        assert_eq!(meta(&p).prev_record_sha256.as_deref(), Some(GENESIS_PREV));
        assert!(p.signature.is_some());
        // Expired, the unchained record leaves a signed tombstone that claims
        // no chain.
        s.conn
            .execute(
                "UPDATE violation SET created_at = '2020-01-01T00:00:00.000Z' WHERE seq = 1",
                [],
            )
            .expect("backdate");
        let r = s
            .apply_retention(
                Utc::now(),
                chrono::Duration::hours(1),
                chrono::Duration::days(30),
                &crate::testing::sample_signer(),
            )
            .expect("retention");
        assert_eq!(r.unacked_records_expired, vec![1]);
        let t = s.pending(10).expect("pending").remove(0);
        let tomb = t.tombstone().expect("tombstone");
        assert_eq!(
            (tomb.chain_id.as_ref(), tomb.prev_record_sha256.as_ref()),
            (None, None)
        );
        assert_eq!(
            tomb.record_sha256,
            record_sha256(old.signed_json.as_bytes())
        );
        assert!(
            t.signature.is_some(),
            "signed, unlike the record it replaces"
        );
    }

    fn big(i: u64) -> Violation {
        crate::testing::sized_violation(&format!("BIG{i}"), 160, 120, i)
    }

    /// A store holding four large records, whose budget leaves no room for a fifth.
    fn full_store(policy: BudgetPolicy) -> (tempfile::TempDir, Store) {
        let (dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        for i in 0..4 {
            s.record(&big(i), &sample_context()).expect("record");
        }
        let used = s.used_bytes().expect("used");
        drop(s);
        // Room for no more images, but for records without them.
        let limits = StoreLimits {
            max_bytes: (used + 8 * 1024) * RESERVE_FOR_METADATA / (RESERVE_FOR_METADATA - 1),
            policy,
        };
        let s = Store::open_with(
            &path,
            StoreOptions {
                limits,
                ..StoreOptions::default()
            },
        )
        .expect("reopen");
        (dir, s)
    }

    #[test]
    fn at_the_budget_a_new_record_keeps_its_signed_metadata_without_images() {
        let (_dir, mut s) = full_store(BudgetPolicy::DropNewEvidence);
        let id = s.record(&big(4), &sample_context()).expect("record");
        assert_eq!(id.evidence_dropped, Some(reason::NEW_EVIDENCE_BUDGET));
        let st = s.budget_status().expect("status");
        assert!(st.alarm);
        assert!(st.used_bytes <= st.max_bytes, "{st:?}");
        assert_eq!(st.drops.get(reason::NEW_EVIDENCE_BUDGET), Some(&1));
        let p = s.pending(10).expect("pending").remove(4);
        assert!(p.overview_jpeg.is_empty() && p.crop_jpeg.is_empty());
        assert_eq!(
            p.evidence_dropped.as_deref(),
            Some(reason::NEW_EVIDENCE_BUDGET)
        );
        assert_eq!(meta(&p).overview_sha256.len(), 64, "the hashes are kept");
        let key = crate::testing::sample_signer().verifying_key();
        anpr_wire::chain::verify_record(&key, p.signed_json.as_bytes(), &p.signature.expect("sig"))
            .expect("still signed");

        // Delivered records make room before anything else is dropped.
        let ids: Vec<Uuid> = s.pending(2).expect("p").iter().map(|p| p.id).collect();
        s.mark_acked_many(&ids, Utc::now()).expect("ack");
        let id = s.record(&big(5), &sample_context()).expect("record");
        assert_eq!(id.evidence_dropped, None);
        let st = s.budget_status().expect("status");
        assert!(!st.alarm);
        assert!(
            st.drops
                .get(reason::ACKED_RECORD_BUDGET)
                .copied()
                .unwrap_or(0)
                >= 1
        );
        assert!(st.used_bytes <= st.max_bytes);
    }

    #[test]
    fn refuse_new_refuses_counts_and_uses_no_sequence_number() {
        let (_dir, mut s) = full_store(BudgetPolicy::RefuseNew);
        let err = s.record(&big(4), &sample_context()).expect_err("refused");
        assert!(matches!(err, StoreError::BudgetFull { .. }), "{err}");
        assert!(err.to_string().contains("refuse_new"), "{err}");
        let st = s.budget_status().expect("status");
        assert!(st.alarm);
        assert_eq!(st.drops.get(reason::REFUSED_BUDGET), Some(&1));
        assert_eq!(s.pending_count().expect("n"), 4);
        let first = s.pending(1).expect("p").remove(0).id;
        s.mark_acked(first, Utc::now()).expect("ack");
        assert_eq!(s.record(&big(5), &sample_context()).expect("room").seq, 5);
    }

    #[test]
    fn drop_oldest_evidence_keeps_the_newest_images() {
        let (_dir, mut s) = full_store(BudgetPolicy::DropOldestEvidence);
        let id = s.record(&big(4), &sample_context()).expect("record");
        assert_eq!(id.evidence_dropped, None);
        let p = s.pending(10).expect("pending");
        assert_eq!(p.len(), 5);
        assert_eq!(
            p[0].evidence_dropped.as_deref(),
            Some(reason::OLDEST_EVIDENCE_BUDGET)
        );
        assert!(p[0].overview_jpeg.is_empty());
        assert!(!p[4].overview_jpeg.is_empty());
        let st = s.budget_status().expect("status");
        assert!(
            st.drops
                .get(reason::OLDEST_EVIDENCE_BUDGET)
                .copied()
                .unwrap_or(0)
                >= 1
        );
        assert!(st.used_bytes <= st.max_bytes);
    }

    #[test]
    fn retention_deletes_old_evidence_and_counts_each_reason() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let ids: Vec<StoredId> = (0..3)
            .map(|i| {
                s.record(&sample_violation(&format!("RET{i}")), &sample_context())
                    .expect("record")
            })
            .collect();
        let now = Utc::now();
        s.mark_acked(ids[0].id, now).expect("ack");
        let hour = chrono::Duration::hours(1);
        let days = chrono::Duration::days;
        let signer = crate::testing::sample_signer();
        // Ten days on: the delivered record's images go, the rest stays.
        let r = s
            .apply_retention(now + days(10), hour, days(30), &signer)
            .expect("retention");
        assert_eq!(r.acked_evidence_deleted, 1);
        assert!(r.unacked_records_expired.is_empty());
        assert_eq!(r.acked_rows_deleted, 0);
        assert!(s
            .pending(10)
            .expect("p")
            .iter()
            .all(|p| !p.overview_jpeg.is_empty() && p.metadata().is_some()));
        // Forty days on: the undelivered records are replaced by tombstones
        // (still to be delivered, in their place) and the delivered row goes.
        let r = s
            .apply_retention(now + days(40), hour, days(30), &signer)
            .expect("retention");
        assert_eq!(r.unacked_records_expired, vec![2, 3]);
        assert_eq!(r.acked_rows_deleted, 1);
        let p = s.pending(10).expect("pending");
        assert_eq!(p.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(p.iter().all(|p| p.overview_jpeg.is_empty()
            && p.tombstone().is_some()
            && p.evidence_dropped.as_deref() == Some(reason::UNACKED_EXPIRED)));
        let st = s.budget_status().expect("status");
        assert_eq!(st.drops.get(reason::ACKED_EVIDENCE_RETENTION), Some(&1));
        assert_eq!(st.drops.get(reason::UNACKED_EXPIRED), Some(&2));
        assert_eq!(st.drops.get(reason::ACKED_ROW_EXPIRED), Some(&1));
        // A second pass finds nothing more to do: tombstones do not expire again.
        let again = s
            .apply_retention(now + days(41), hour, days(30), &signer)
            .expect("retention");
        assert_eq!(again, RetentionReport::default());
        assert_eq!(
            s.pending(10).expect("pending")[0].signed_json,
            p[0].signed_json
        );
        // A deleted row's number is never given again, and the chain goes on.
        let next = s
            .record(&sample_violation("RET3"), &sample_context())
            .expect("record");
        assert_eq!(next.seq, 4);
    }

    /// Sets a row's commit time, as if it had been recorded `age` before `now`.
    fn backdate(s: &Store, seq: i64, now: DateTime<Utc>, age: chrono::Duration) {
        s.conn
            .execute(
                "UPDATE violation SET created_at = ?2 WHERE seq = ?1",
                params![seq, format_time(now - age)],
            )
            .expect("backdate");
    }

    /// The database file and its WAL, as a thief with the SD card would read them.
    fn file_bytes(path: &Path) -> Vec<u8> {
        let mut bytes = std::fs::read(path).expect("db");
        bytes.extend(std::fs::read(sibling(path, "-wal")).unwrap_or_default());
        bytes
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn an_expired_undelivered_record_becomes_a_signed_tombstone_without_its_plate() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        for plate in ["KEEP1A", "GONE2B", "KEEP3C", "ACKD4D"] {
            s.record(&sample_violation(plate), &sample_context())
                .expect("record");
        }
        let before = s.pending(10).expect("pending");
        let now = Utc::now();
        let days = chrono::Duration::days;
        // Record 2 is 40 days old and undelivered; record 4 is as old but was
        // delivered within its retention (acknowledged rows go as before).
        backdate(&s, 2, now, days(40));
        s.mark_acked(before[3].id, now - days(20)).expect("ack");
        backdate(&s, 4, now, days(25));
        let signer = crate::testing::sample_signer();
        let r = s
            .apply_retention(now, chrono::Duration::hours(72), days(30), &signer)
            .expect("retention");
        assert_eq!(r.unacked_records_expired, vec![2]);
        assert_eq!(r.acked_rows_deleted, 0);
        assert_eq!(r.acked_evidence_deleted, 1);

        let after = s.pending(10).expect("pending");
        assert_eq!(after.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(after[0].signed_json, before[0].signed_json);
        assert_eq!(after[2].signed_json, before[2].signed_json);
        let t = after[1].tombstone().expect("a tombstone");
        assert_eq!(t.kind, TombstoneKind::Expired);
        assert_eq!((t.id, t.seq), (before[1].id, 2));
        assert_eq!(t.device_id, "cam-post-17");
        assert_eq!(t.chain_id.as_deref(), Some(s.chain_id()));
        assert_eq!(
            t.record_sha256,
            record_sha256(before[1].signed_json.as_bytes())
        );
        assert_eq!(
            t.prev_record_sha256.as_deref(),
            Some(record_sha256(before[0].signed_json.as_bytes()).as_str())
        );
        assert_eq!(
            meta(&after[2]).prev_record_sha256.as_deref(),
            Some(t.record_sha256.as_str()),
            "the next record chains on the tombstone's hash"
        );
        assert_eq!(t.reason, reason::UNACKED_EXPIRED);
        assert_eq!(t.expired_at, format_time(now));
        assert!(after[1].overview_jpeg.is_empty() && after[1].crop_jpeg.is_empty());
        assert!(!after[1].signed_json.contains("GONE2B"));
        let sig = after[1].signature.as_deref().expect("signed");
        assert_ne!(Some(sig), before[1].signature.as_deref());
        anpr_wire::chain::verify_record(
            &signer.verifying_key(),
            after[1].signed_json.as_bytes(),
            sig,
        )
        .expect("the tombstone is signed by the evidence key");
        assert_eq!(
            s.budget_status()
                .expect("status")
                .drops
                .get(reason::UNACKED_EXPIRED),
            Some(&1)
        );
        // The delivered record keeps its metadata (its images went after 72 h).
        let acked_plate: String = s
            .conn
            .query_row("SELECT plate_text FROM violation WHERE seq = 4", [], |r| {
                r.get(0)
            })
            .expect("row 4");
        assert_eq!(acked_plate, "ACKD4D");

        // Nothing of the expired record's plate is left in the files, WAL
        // included, while the store is still open; the others' plates are, so
        // the search itself works.
        let bytes = file_bytes(&path);
        assert!(!contains(&bytes, "GONE2B"), "the expired plate is gone");
        for kept in ["KEEP1A", "KEEP3C", "ACKD4D"] {
            assert!(contains(&bytes, kept), "{kept} is still there");
        }
    }

    #[test]
    fn a_version_2_database_is_migrated_and_its_records_kept() {
        let (_dir, path) = temp_db();
        {
            let mut s = Store::open(&path).expect("open");
            s.record(&sample_violation("V2REC"), &sample_context())
                .expect("record");
            // Back to what a version-2 build left.
            s.conn
                .execute_batch(
                    "ALTER TABLE violation DROP COLUMN tombstone; PRAGMA user_version = 2;",
                )
                .expect("downgrade");
        }
        let mut s = Store::open(&path).expect("migrate");
        assert_eq!(s.schema_version().expect("version"), 3);
        let p = s.pending(10).expect("pending").remove(0);
        assert_eq!(meta(&p).plate.text, "V2REC");
        let r = s
            .apply_retention(
                Utc::now() + chrono::Duration::days(40),
                chrono::Duration::hours(1),
                chrono::Duration::days(30),
                &crate::testing::sample_signer(),
            )
            .expect("retention");
        assert_eq!(r.unacked_records_expired, vec![1]);
    }

    #[test]
    fn a_deleted_last_record_does_not_reuse_its_number() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let a = s
            .record(&sample_violation("L1"), &sample_context())
            .expect("r");
        let first_hash = record_sha256(s.pending(1).expect("p")[0].signed_json.as_bytes());
        s.mark_acked(a.id, Utc::now()).expect("ack");
        let r = s
            .apply_retention(
                Utc::now() + chrono::Duration::days(2),
                chrono::Duration::hours(1),
                chrono::Duration::days(1),
                &crate::testing::sample_signer(),
            )
            .expect("retention");
        assert_eq!(r.acked_rows_deleted, 1);
        let b = s
            .record(&sample_violation("L2"), &sample_context())
            .expect("r");
        assert_eq!(b.seq, 2);
        let p = s.pending(1).expect("p").remove(0);
        assert_eq!(meta(&p).prev_record_sha256, Some(first_hash));
    }

    #[test]
    fn a_damaged_database_is_moved_aside_and_a_fresh_one_opened() {
        let (_dir, path) = temp_db();
        {
            let mut s = Store::open(&path).expect("open");
            for i in 0..40 {
                s.record(&big(i), &sample_context()).expect("record");
            }
        }
        // Scribble over the violation table's root page (page 2).
        let mut bytes = std::fs::read(&path).expect("read");
        let page: usize = 4096;
        for b in &mut bytes[page..page + 64] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).expect("write");
        let (mut s, moved) = Store::open_checked(&path, StoreOptions::default()).expect("recovers");
        let moved = moved.expect("moved aside");
        assert!(moved.to.exists(), "{moved:?}");
        assert!(moved.to.display().to_string().contains(".damaged-"));
        assert_eq!(s.pending_count().expect("n"), 0);
        let id = s
            .record(&sample_violation("FRESH"), &sample_context())
            .expect("records");
        assert_eq!(id.seq, 1);
        // A healthy database is left where it is.
        drop(s);
        let (_s, moved) = Store::open_checked(&path, StoreOptions::default()).expect("open");
        assert_eq!(moved, None);
        // So is one from a newer build.
        let (_d2, p2) = temp_db();
        {
            let s = Store::open(&p2).expect("open");
            s.conn
                .pragma_update(None, "user_version", 99)
                .expect("bump");
        }
        assert!(matches!(
            Store::open_checked(&p2, StoreOptions::default()),
            Err(StoreError::NewerSchema { .. })
        ));
        assert!(p2.exists());
    }

    /// Run with `cargo test --lib store -- --ignored --nocapture` to see what one
    /// durable record of a 1080p overview costs on this machine.
    #[test]
    #[ignore = "timing, not a check"]
    fn record_latency_of_a_1080p_overview() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let mut v = sample_violation("TIME1");
        v.passage.best.image = std::sync::Arc::new(RgbImage::from_fn(1920, 1080, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
        }));
        let n = 20;
        let t = std::time::Instant::now();
        for _ in 0..n {
            s.record(&v, &sample_context()).expect("record");
        }
        let per = t.elapsed() / n;
        let p = s.pending(1).expect("pending").remove(0);
        eprintln!(
            "record(): {per:?} per violation, overview {} bytes, crop {} bytes",
            p.overview_jpeg.len(),
            p.crop_jpeg.len()
        );
    }
}
