//! The disk budget: how much room a record needs, what the configured policy
//! deletes or refuses to make it, and the deletions counted by reason in the
//! database itself.

use std::path::Path;

use rusqlite::{params, Connection};

use super::{reason, BudgetStatus, Store, StoreError, StoreLimits};
use crate::config::BudgetPolicy;

/// Room a record's row takes beyond its images and metadata (columns, index
/// entries, page slack): an over- rather than an under-estimate.
pub(super) const ROW_OVERHEAD: u64 = 2048;

/// One part in this many of the budget is kept for records without images.
pub(super) const RESERVE_FOR_METADATA: u64 = 10;

/// Makes room within `limits` for a record of `need` bytes (`meta_need`
/// without its images): first by deleting acknowledged records, oldest first,
/// then as the policy says. Returns the reason the new record's images are not
/// to be stored, if so; `BudgetFull` if the record is not to be stored at all.
pub(super) fn make_room(
    conn: &Connection,
    path: &Path,
    limits: StoreLimits,
    need: u64,
    meta_need: u64,
) -> Result<Option<&'static str>, StoreError> {
    if limits.max_bytes == u64::MAX {
        return Ok(None);
    }
    let sql = |op: &'static str| {
        move |source| StoreError::Sql {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let used = || used_page_bytes(conn);
    // Images may fill the budget up to this: the rest is kept for records that
    // have to go without them, so those are not refused for want of room.
    let image_limit = limits.max_bytes - limits.max_bytes / RESERVE_FOR_METADATA;
    let fits = |n: u64| used().map(|u| u.saturating_add(n) <= image_limit);
    let fits_meta = |n: u64| used().map(|u| u.saturating_add(n) <= limits.max_bytes);
    if fits(need).map_err(sql("measure size"))? {
        return Ok(None);
    }
    // Delivered records first: the backend holds them already.
    loop {
        let n = conn
            .execute(
                "DELETE FROM violation WHERE id IN (SELECT id FROM violation
                 WHERE acked_at IS NOT NULL ORDER BY seq LIMIT 16)",
                [],
            )
            .map_err(sql("delete acknowledged records for room"))? as u64;
        count_drop(conn, reason::ACKED_RECORD_BUDGET, n).map_err(sql("count drop"))?;
        if fits(need).map_err(sql("measure size"))? {
            return Ok(None);
        }
        if n == 0 {
            break;
        }
    }
    if limits.policy == BudgetPolicy::DropOldestEvidence {
        loop {
            let seqs: Vec<i64> = conn
                .prepare_cached(
                    "UPDATE violation SET overview_jpeg = x'', crop_jpeg = x'', evidence_dropped = ?1
                     WHERE id IN (SELECT id FROM violation WHERE acked_at IS NULL
                                  AND evidence_dropped IS NULL ORDER BY seq LIMIT 4)
                     RETURNING seq",
                )
                .and_then(|mut st| {
                    st.query_map(params![reason::OLDEST_EVIDENCE_BUDGET], |r| r.get(0))?
                        .collect()
                })
                .map_err(sql("delete oldest evidence for room"))?;
            if !seqs.is_empty() {
                tracing::warn!(
                    ?seqs,
                    reason = reason::OLDEST_EVIDENCE_BUDGET,
                    "disk budget reached: deleted the images of the oldest unacknowledged records"
                );
            }
            count_drop(conn, reason::OLDEST_EVIDENCE_BUDGET, seqs.len() as u64)
                .map_err(sql("count drop"))?;
            if fits(need).map_err(sql("measure size"))? {
                return Ok(None);
            }
            if seqs.is_empty() {
                break;
            }
        }
    }
    let full = || StoreError::BudgetFull {
        path: path.to_path_buf(),
        used: used().unwrap_or(0),
        max: limits.max_bytes,
        policy: limits.policy.as_str(),
    };
    match limits.policy {
        BudgetPolicy::RefuseNew => Err(full()),
        _ if fits_meta(meta_need).map_err(sql("measure size"))? => {
            Ok(Some(reason::NEW_EVIDENCE_BUDGET))
        }
        _ => Err(full()),
    }
}

pub(super) fn count_drop(conn: &Connection, reason: &str, n: u64) -> rusqlite::Result<()> {
    if n == 0 {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO drops (reason, count) VALUES (?1, ?2)
         ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
        params![reason, n as i64],
    )?;
    Ok(())
}

/// Bytes of pages in use (not on the free list).
pub(super) fn used_page_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size.max(0)) as u64)
}

impl Store {
    /// Bytes the store takes against its budget: its pages in use. (The WAL
    /// beside it adds at most a few MiB: it is checkpointed every 1000 pages
    /// and cut back to 16 MiB.)
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        used_page_bytes(&self.conn).map_err(|e| self.sql("measure size", e))
    }

    /// The budget, the alarm and the drop counters.
    pub fn budget_status(&self) -> Result<BudgetStatus, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT reason, count FROM drops ORDER BY reason")
            .map_err(|e| self.sql("read drops", e))?;
        let drops = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(|e| self.sql("read drops", e))?;
        Ok(BudgetStatus {
            used_bytes: self.used_bytes()?,
            max_bytes: self.limits.max_bytes,
            alarm: self.alarm,
            drops,
        })
    }
}
