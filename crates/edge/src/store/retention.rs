//! Retention: images of delivered records go after their retention, delivered
//! rows after the maximum, and an undelivered record past the maximum is
//! replaced by a signed tombstone that keeps the chain and nothing personal.

use chrono::{DateTime, Utc};
use rusqlite::{params, TransactionBehavior};
use uuid::Uuid;

use anpr_wire::chain::record_sha256;

use super::budget::count_drop;
use super::{
    format_time, reason, RetentionReport, Store, StoreError, Tombstone, TombstoneKind,
    TOMBSTONE_FORMAT,
};
use crate::keys::EvidenceSigner;

/// An unacknowledged record that retention is about to replace.
struct ExpiringRow {
    id: String,
    seq: i64,
    device_id: String,
    metadata: String,
    created_at: String,
    evidence_dropped: Option<String>,
}

/// The tombstone of `row`. Its chain fields come from the stored metadata;
/// metadata that no longer parses (a damaged row) still loses its content,
/// and its tombstone says nothing about the chain.
fn tombstone_of(row: &ExpiringRow, expired_at: &str) -> Tombstone {
    let meta: Option<serde_json::Value> = serde_json::from_str(&row.metadata).ok();
    let field = |name: &str| {
        meta.as_ref()
            .and_then(|m| m.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Tombstone {
        format: TOMBSTONE_FORMAT,
        kind: TombstoneKind::Expired,
        // A row whose id does not parse is reported as damaged by `pending`
        // either way; its content must still go.
        id: Uuid::parse_str(&row.id).unwrap_or_default(),
        device_id: row.device_id.clone(),
        seq: row.seq,
        chain_id: field("chain_id"),
        record_sha256: record_sha256(row.metadata.as_bytes()),
        prev_record_sha256: field("prev_record_sha256"),
        reason: reason::UNACKED_EXPIRED.to_string(),
        created_at: row.created_at.clone(),
        expired_at: expired_at.to_string(),
    }
}

impl Store {
    /// Applies retention at `now`: deletes the images of records acknowledged
    /// more than `acked_evidence` ago; replaces each unacknowledged record made
    /// more than `max_age` ago by a [`Tombstone`] signed with `signer` (its
    /// metadata, plate, signature and images deleted; each logged by seq); and
    /// deletes acknowledged rows older than `max_age`. Every deletion is
    /// counted by reason.
    pub fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        acked_evidence: chrono::Duration,
        max_age: chrono::Duration,
        signer: &EvidenceSigner,
    ) -> Result<RetentionReport, StoreError> {
        let path = self.path.clone();
        let sql = |op: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sql { path, op, source }
        };
        let acked_cut = format_time(now - acked_evidence);
        let age_cut = format_time(now - max_age);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin retention"))?;
        let acked_evidence_deleted =
            tx.execute(
                "UPDATE violation SET overview_jpeg = x'', crop_jpeg = x'', evidence_dropped = ?1
                 WHERE acked_at IS NOT NULL AND acked_at < ?2 AND evidence_dropped IS NULL",
                params![reason::ACKED_EVIDENCE_RETENTION, acked_cut],
            )
            .map_err(sql("delete acknowledged evidence"))? as u64;
        let expired: Vec<ExpiringRow> = tx
            .prepare(
                "SELECT id, seq, device_id, metadata, created_at, evidence_dropped FROM violation
                 WHERE acked_at IS NULL AND created_at < ?1 AND tombstone IS NULL
                 ORDER BY seq",
            )
            .and_then(|mut st| {
                st.query_map(params![age_cut], |r| {
                    Ok(ExpiringRow {
                        id: r.get(0)?,
                        seq: r.get(1)?,
                        device_id: r.get(2)?,
                        metadata: r.get(3)?,
                        created_at: r.get(4)?,
                        evidence_dropped: r.get(5)?,
                    })
                })?
                .collect()
            })
            .map_err(sql("find expired records"))?;
        let expired_at = format_time(now);
        let mut unacked_records_expired = Vec::with_capacity(expired.len());
        // Rows whose images an older build already deleted under this reason
        // were counted then; count only what is deleted now.
        let mut newly_counted = 0u64;
        for row in &expired {
            let tombstone = tombstone_of(row, &expired_at);
            let json = serde_json::to_string(&tombstone)
                .map_err(|source| StoreError::Serialise { source })?;
            let signature = signer.sign(json.as_bytes());
            tx.execute(
                "UPDATE violation SET
                    captured_at = '', clock_synchronised = 0, clock_max_error_us = 0,
                    camera = '', camera_facing = '', location = '', latitude = NULL,
                    longitude = NULL, lane = NULL, direction = 'unknown', plate_text = '',
                    plate_confidence = 0, char_confidences = '[]', reads = 0, frames = 0,
                    first_seen = '', last_seen = '', frame_seq = 0, model_versions = '',
                    decision_rule = '', hit_list_version = '', exemption_list_version = '',
                    hit_entry_id = '', overview_jpeg = x'', overview_sha256 = '',
                    crop_jpeg = x'', crop_sha256 = '', metadata = '', last_error = NULL,
                    record_sha256 = ?2, signature = ?3, evidence_dropped = ?4, tombstone = ?5
                 WHERE id = ?1",
                params![
                    row.id,
                    tombstone.record_sha256,
                    signature,
                    reason::UNACKED_EXPIRED,
                    json
                ],
            )
            .map_err(sql("replace expired record by its tombstone"))?;
            if row.evidence_dropped.as_deref() != Some(reason::UNACKED_EXPIRED) {
                newly_counted += 1;
            }
            unacked_records_expired.push(row.seq);
        }
        let acked_rows_deleted = tx
            .execute(
                "DELETE FROM violation WHERE acked_at IS NOT NULL AND created_at < ?1",
                params![age_cut],
            )
            .map_err(sql("delete expired records"))? as u64;
        count_drop(
            &tx,
            reason::ACKED_EVIDENCE_RETENTION,
            acked_evidence_deleted,
        )
        .and_then(|_| count_drop(&tx, reason::UNACKED_EXPIRED, newly_counted))
        .and_then(|_| count_drop(&tx, reason::ACKED_ROW_EXPIRED, acked_rows_deleted))
        .map_err(sql("count drops"))?;
        tx.commit().map_err(sql("commit retention"))?;
        if !unacked_records_expired.is_empty() {
            tracing::warn!(
                seqs = ?unacked_records_expired,
                reason = reason::UNACKED_EXPIRED,
                "undelivered violations older than store.max_retention_days deleted; \
                 signed tombstones take their place in the upload queue"
            );
        }
        if unacked_records_expired.len() as u64 + acked_rows_deleted > 0 {
            self.flush_wal();
        }
        Ok(RetentionReport {
            acked_evidence_deleted,
            unacked_records_expired,
            acked_rows_deleted,
        })
    }

    /// Copies the WAL into the database and empties it, so the old page images
    /// of deleted records do not stay in the WAL file (secure_delete zeroes
    /// them in the database itself). Best effort: while the other connection
    /// reads, part of the WAL may stay until a later pass.
    fn flush_wal(&self) {
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        match done {
            Ok(0) => {}
            Ok(_) => tracing::info!(
                "WAL not emptied after retention (the uploader was reading); next pass retries"
            ),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint after retention failed"),
        }
    }
}
