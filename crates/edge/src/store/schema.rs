//! The schema: one migration per step, run in order inside one transaction
//! each, so a controller that skipped many releases catches up from any
//! earlier version. A database from a newer build is refused, never changed.

use rusqlite::TransactionBehavior;

use super::{Store, StoreError};

/// The numbered schema steps. Step `i` (0-based) takes the database from
/// `user_version` i to i+1; later versions only ever append steps.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: signatures, the hash chain, dropped evidence, drop counters.
    r#"
    ALTER TABLE violation ADD COLUMN record_sha256 TEXT;
    ALTER TABLE violation ADD COLUMN signature TEXT;
    ALTER TABLE violation ADD COLUMN evidence_dropped TEXT;
    CREATE INDEX violation_acked ON violation (acked_at) WHERE acked_at IS NOT NULL;
    CREATE TABLE store_info (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    INSERT INTO store_info (key, value) VALUES ('chain_id', lower(hex(randomblob(16))));
    CREATE TABLE chain_head (
        device_id     TEXT PRIMARY KEY NOT NULL,
        seq           INTEGER NOT NULL,
        record_sha256 TEXT NOT NULL
    );
    CREATE TABLE drops (
        reason TEXT PRIMARY KEY NOT NULL,
        count  INTEGER NOT NULL
    );
    "#,
    // 3: tombstones of records that expired undelivered.
    r#"
    ALTER TABLE violation ADD COLUMN tombstone TEXT;
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

impl Store {
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
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

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| self.sql("read schema version", source))
    }
}
