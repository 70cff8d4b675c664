//! The on-device buffer of candidate violations: one SQLite database that holds
//! each violation's evidence (overview and plate-crop JPEGs, their SHA-256) and
//! metadata until the backend has acknowledged it.
//!
//! A violation counts as recorded only once its transaction has committed with
//! `synchronous=FULL`, so a power cut right after [`Store::record`] returns does
//! not lose it. The uploader reads from a second connection to the same file
//! (WAL lets it read while the pipeline writes).
//!
//! This module only ever sees [`Violation`]s: non-hits never reach it, and it
//! never stores anything about a vehicle that was not judged a candidate
//! violation. It never talks to the network and never deletes evidence (a
//! retention job, elsewhere, will).

pub mod testing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use image::RgbImage;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::SyncState;
use crate::message::{Decision, Direction, Violation};

/// Version of the layout of [`RecordMetadata`], stated in every record so the
/// backend can tell formats apart.
pub const METADATA_FORMAT: u32 = 1;

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
}

/// The identity a record got when it was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredId {
    pub id: Uuid,
    /// Per-device sequence number: 1, 2, 3, ... without gaps.
    pub seq: i64,
}

/// The plate as read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlateMetadata {
    /// Upper-case A-Z and 0-9 only, separators stripped.
    pub text: String,
    /// Confidence of the whole plate, 0..=1.
    pub confidence: f32,
    /// One confidence per character of `text`, 0..=1.
    pub char_confidences: Vec<f32>,
}

/// Everything about one record except the images: exactly what is uploaded as
/// the `metadata` part, serialised once at record time and stored verbatim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordMetadata {
    /// Layout version of this struct ([`METADATA_FORMAT`]).
    pub format: u32,
    /// Random UUID v4 of the record; also the upload's `Idempotency-Key`.
    pub id: Uuid,
    /// The controller that recorded it (`device.id`).
    pub device_id: String,
    /// Per-device sequence number without gaps; a missing number at the backend
    /// means a record has not arrived (yet).
    pub seq: i64,
    /// UTC wall-clock time of the overview (best) frame, RFC 3339 with milliseconds.
    pub captured_at: String,
    /// Whether the wall clock was synchronised when the overview was captured, and
    /// the kernel's maximum error estimate at that moment.
    pub clock: SyncState,
    /// Camera id from the configuration.
    pub camera: String,
    /// Which way the camera looks (free text from the configuration).
    pub camera_facing: String,
    /// Where the controller stands (free text from the configuration).
    pub location: String,
    /// WGS84 position of the controller, when configured.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Lane number; not determined yet, always `null`.
    pub lane: Option<u32>,
    /// Direction of travel relative to the camera.
    pub direction: Direction,
    pub plate: PlateMetadata,
    /// Frames of the passage in which the plate was read.
    pub reads: u32,
    /// Frames the passage spanned.
    pub frames: u32,
    /// UTC wall-clock times of the first and last frame of the passage, RFC 3339 ms.
    pub first_seen: String,
    pub last_seen: String,
    /// Sequence number of the overview frame at its camera.
    pub frame_seq: u64,
    /// Versions of the models that produced the read.
    pub model_versions: String,
    /// Why the passage is a candidate violation.
    pub decision: Decision,
    /// Lower-case hex SHA-256 of the `overview` part (the best frame, JPEG).
    pub overview_sha256: String,
    /// Lower-case hex SHA-256 of the `crop` part (the rectified plate, JPEG).
    pub crop_sha256: String,
    /// UTC time the record was committed on the device, RFC 3339 ms.
    pub created_at: String,
}

/// A record the backend has not acknowledged yet.
#[derive(Clone, Debug)]
pub struct PendingRecord {
    pub id: Uuid,
    pub seq: i64,
    pub metadata: RecordMetadata,
    /// The canonical JSON of `metadata`, byte for byte as stored; this is what is
    /// uploaded, so the backend sees exactly what the device committed.
    pub metadata_json: String,
    pub overview_jpeg: Vec<u8>,
    pub crop_jpeg: Vec<u8>,
}

/// Delivery state of one record, for diagnostics and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordStatus {
    pub seq: i64,
    pub acked_at: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The numbered schema steps. Step `i` (0-based) takes the database from
/// `user_version` i to i+1; later versions only ever append steps.
const MIGRATIONS: &[&str] = &[
    // 1: the violation table.
    r#"
    CREATE TABLE violation (
        id                      TEXT PRIMARY KEY NOT NULL,
        device_id               TEXT NOT NULL,
        seq                     INTEGER NOT NULL,
        captured_at             TEXT NOT NULL,
        clock_synchronised      INTEGER NOT NULL,
        clock_max_error_us      INTEGER NOT NULL,
        camera                  TEXT NOT NULL,
        camera_facing           TEXT NOT NULL,
        location                TEXT NOT NULL,
        latitude                REAL,
        longitude               REAL,
        lane                    INTEGER,
        direction               TEXT NOT NULL,
        plate_text              TEXT NOT NULL,
        plate_confidence        REAL NOT NULL,
        char_confidences        TEXT NOT NULL,
        reads                   INTEGER NOT NULL,
        frames                  INTEGER NOT NULL,
        first_seen              TEXT NOT NULL,
        last_seen               TEXT NOT NULL,
        frame_seq               INTEGER NOT NULL,
        model_versions          TEXT NOT NULL,
        decision_rule           TEXT NOT NULL,
        hit_list_version        TEXT NOT NULL,
        exemption_list_version  TEXT NOT NULL,
        hit_entry_id            TEXT NOT NULL,
        overview_jpeg           BLOB NOT NULL,
        overview_sha256         TEXT NOT NULL,
        crop_jpeg               BLOB NOT NULL,
        crop_sha256             TEXT NOT NULL,
        metadata                TEXT NOT NULL,
        created_at              TEXT NOT NULL,
        acked_at                TEXT,
        attempts                INTEGER NOT NULL DEFAULT 0,
        last_error              TEXT,
        UNIQUE (device_id, seq)
    );
    CREATE INDEX violation_pending ON violation (seq) WHERE acked_at IS NULL;
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for the other connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// RFC 3339 UTC with milliseconds, the one time format of records.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

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

/// One connection to the violation database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, with its parent folder,
    /// and brings its schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        let mut store = Store {
            conn,
            path: path_buf,
        };
        store.migrate()?;
        Ok(store)
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

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| self.sql("read schema version", source))
    }

    fn sql(&self, op: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let found = self.schema_version().map_err(|e| match e {
            // Reading the version is the first real read: report it as an open error.
            StoreError::Sql { path, source, .. } => StoreError::Open { path, source },
            other => other,
        })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let to = i as i64 + 1;
            let path = self.path.clone();
            let err = |source| StoreError::Migrate {
                path: path.clone(),
                to,
                source,
            };
            // IMMEDIATE takes the write lock first, so the pipeline and the
            // uploader opening at the same moment cannot both run a step.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let now: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(err)?;
            if now >= to {
                continue;
            }
            tx.execute_batch(step).map_err(err)?;
            tx.pragma_update(None, "user_version", to).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
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
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM violation WHERE device_id = ?1",
                params![ctx.device_id],
                |r| r.get(0),
            )
            .map_err(sql("next sequence number"))?;
        let meta = RecordMetadata {
            format: METADATA_FORMAT,
            id,
            device_id: ctx.device_id.clone(),
            seq,
            captured_at: format_time(p.best.captured.wall),
            clock: p.best.captured.sync,
            camera: p.camera.to_string(),
            camera_facing: ctx.camera_facing.clone(),
            location: ctx.location.clone(),
            latitude: ctx.latitude,
            longitude: ctx.longitude,
            lane: p.lane,
            direction: p.direction,
            plate: PlateMetadata {
                text: p.text.clone(),
                confidence: p.confidence,
                char_confidences: p.char_confidences.clone(),
            },
            reads: p.reads,
            frames: p.frames,
            first_seen: format_time(p.first_seen.wall),
            last_seen: format_time(p.last_seen.wall),
            frame_seq: p.best.frame_seq,
            model_versions: ctx.model_versions.clone(),
            decision: v.decision.clone(),
            overview_sha256: sha256_hex(&overview),
            crop_sha256: sha256_hex(&crop),
            created_at: format_time(Utc::now()),
        };
        let json =
            serde_json::to_string(&meta).map_err(|source| StoreError::Serialise { source })?;
        let char_conf = serde_json::to_string(&meta.plate.char_confidences)
            .map_err(|source| StoreError::Serialise { source })?;
        tx.execute(
            "INSERT INTO violation (
                id, device_id, seq, captured_at, clock_synchronised, clock_max_error_us,
                camera, camera_facing, location, latitude, longitude, lane, direction,
                plate_text, plate_confidence, char_confidences, reads, frames,
                first_seen, last_seen, frame_seq, model_versions,
                decision_rule, hit_list_version, exemption_list_version, hit_entry_id,
                overview_jpeg, overview_sha256, crop_jpeg, crop_sha256, metadata, created_at
            ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                      ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30,
                      ?31, ?32)",
            params![
                id.to_string(),
                meta.device_id,
                seq,
                meta.captured_at,
                meta.clock.synchronised,
                meta.clock.max_error_us,
                meta.camera,
                meta.camera_facing,
                meta.location,
                meta.latitude,
                meta.longitude,
                meta.lane,
                meta.direction.as_str(),
                meta.plate.text,
                meta.plate.confidence as f64,
                char_conf,
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
                overview,
                meta.overview_sha256,
                crop,
                meta.crop_sha256,
                json,
                meta.created_at,
            ],
        )
        .map_err(sql("insert record"))?;
        tx.commit().map_err(sql("commit record"))?;
        Ok(StoredId { id, seq })
    }

    /// Up to `limit` unacknowledged records, oldest (lowest seq) first.
    pub fn pending(&self, limit: usize) -> Result<Vec<PendingRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, seq, metadata, overview_jpeg, crop_jpeg FROM violation
                 WHERE acked_at IS NULL ORDER BY seq, created_at LIMIT ?1",
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
                ))
            })
            .map_err(|e| self.sql("query pending", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id_text, seq, metadata_json, overview_jpeg, crop_jpeg) =
                row.map_err(|e| self.sql("read pending row", e))?;
            let corrupt = |reason: String| StoreError::Corrupt {
                path: self.path.clone(),
                id: id_text.clone(),
                reason,
            };
            let id = Uuid::parse_str(&id_text).map_err(|e| corrupt(format!("bad id: {e}")))?;
            let metadata: RecordMetadata = serde_json::from_str(&metadata_json)
                .map_err(|e| corrupt(format!("metadata is not valid JSON: {e}")))?;
            if metadata.id != id || metadata.seq != seq {
                return Err(corrupt("metadata id/seq differ from the row's".into()));
            }
            out.push(PendingRecord {
                id,
                seq,
                metadata,
                metadata_json,
                overview_jpeg,
                crop_jpeg,
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

    /// How long the oldest unacknowledged record has waited at `now`, if any.
    pub fn oldest_pending_age(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<chrono::Duration>, StoreError> {
        Ok(self.oldest_pending_created_at()?.map(|t| now - t))
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
    use super::testing::{sample_context, sample_violation};
    use super::*;

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
        assert_eq!(pending[0].metadata.plate.text, "AB123C");
        assert_eq!(pending[0].metadata.device_id, "cam-post-17");
        assert_eq!(pending[0].metadata.decision.entry_id, "entry-42");
        assert!(pending[0].overview_jpeg.starts_with(&[0xFF, 0xD8]));
        assert!(pending[0].crop_jpeg.starts_with(&[0xFF, 0xD8]));
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
        let again = serde_json::to_string(&p.metadata).expect("serialise");
        assert_eq!(again, p.metadata_json);
        assert_eq!(p.metadata.format, METADATA_FORMAT);
        assert!(p.metadata.captured_at.ends_with('Z'));
        assert_eq!(p.metadata.lane, None);
    }

    #[test]
    fn a_record_states_the_passage_lane() {
        let (_dir, path) = temp_db();
        let mut s = Store::open(&path).expect("open");
        let mut v = sample_violation("LANE2X");
        v.passage.lane = Some(2);
        s.record(&v, &sample_context()).expect("record");
        let p = s.pending(1).expect("pending").remove(0);
        assert_eq!(p.metadata.lane, Some(2));
        assert!(
            p.metadata_json.contains("\"lane\":2"),
            "{}",
            p.metadata_json
        );
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
        assert_eq!(p.metadata.overview_sha256, ov_hash);
        assert_eq!(p.metadata.crop_sha256, crop_hash);
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
        assert!(s.oldest_pending_age(Utc::now()).expect("age").is_some());
    }

    #[test]
    fn schema_version_is_set() {
        let (_dir, path) = temp_db();
        let s = Store::open(&path).expect("open");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 1);
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
