//! Counters that stages bump and the status endpoint reads.
//!
//! Only numbers live here: no plate text, hash or image of any vehicle, so that
//! nothing in a status answer or a metric label can identify a non-hit.

use crate::sync::LockUnpoisoned;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Per-camera counters.
#[derive(Default, Debug)]
pub struct CameraCounters {
    pub frames_captured: AtomicU64,
    /// Frames dropped because detection could not keep up (oldest first).
    pub frames_dropped: AtomicU64,
    pub frames_processed: AtomicU64,
    pub capture_errors: AtomicU64,
    /// Unix milliseconds of the last captured frame (0 = none yet).
    pub last_frame_unix_ms: AtomicI64,
    /// Plates read well enough to count (read stage).
    pub reads: AtomicU64,
    /// Passages judged (policy stage).
    pub passages: AtomicU64,
    pub state: Mutex<CameraState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum CameraState {
    #[default]
    Starting,
    Streaming,
    /// The device is missing or failed; the text says why.
    Absent(String),
    /// A replay source played its last frame.
    Finished,
}

/// Where the store stands against its disk budget, and every deletion so far:
/// what the store publishes here after each record and retention pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BudgetStatus {
    pub used_bytes: u64,
    pub max_bytes: u64,
    /// Set while the last record needed the configured budget policy.
    pub alarm: bool,
    /// Deletions of evidence and records so far, by reason
    /// ([`anpr_wire::record::reason`]).
    pub drops: BTreeMap<String, u64>,
}

/// All counters of the daemon.
#[derive(Default, Debug)]
pub struct Metrics {
    cameras: Mutex<BTreeMap<String, Arc<CameraCounters>>>,
    pub plates_detected: AtomicU64,
    pub plates_read: AtomicU64,
    pub reads_rejected: AtomicU64,
    pub passages: AtomicU64,
    /// Closed tracks not passed on: re-reads of a plate that the same camera
    /// gave out within `track.merge_window_s` (parked or queued vehicles).
    pub duplicates_suppressed: AtomicU64,
    /// Passages that ended at policy for any reason but low confidence; the
    /// reasons are broken down in the counters below.
    pub non_hits: AtomicU64,
    pub low_confidence_passages: AtomicU64,
    /// The zone was not in force at the passage's time.
    pub outside_hours: AtomicU64,
    /// The vehicle did not enter the zone (wrong direction at a cordon).
    pub not_entering: AtomicU64,
    /// Plates that fit no Dutch sidecode.
    pub foreign_plates: AtomicU64,
    /// On the hit list with a valid exemption.
    pub exempt: AtomicU64,
    /// On the hit list, ban not yet in force on the passage's date.
    pub not_yet_banned: AtomicU64,
    /// A configured list was not in force.
    pub lists_unavailable: AtomicU64,
    pub violations_recorded: AtomicU64,
    pub store_errors: AtomicU64,
    pub uploads_acked: AtomicU64,
    pub upload_failures: AtomicU64,
    pub detect_errors: AtomicU64,
    pub read_errors: AtomicU64,
    /// Detection time of the last frame, in microseconds.
    pub last_detect_us: AtomicU64,
    pub last_upload_error: Mutex<Option<String>>,
    /// The last failed upload's time (unix ms) and reason, kept after a success.
    pub last_upload_failure: Mutex<Option<(i64, String)>>,
    /// Unix milliseconds of the last acknowledged upload (0 = none yet).
    pub last_upload_ok_unix_ms: AtomicI64,
    pub pending_uploads: AtomicU64,
    /// Unix milliseconds at which the oldest unacknowledged violation was
    /// committed (0 = none pending).
    pub oldest_pending_unix_ms: AtomicI64,
    /// Violations recorded while the wall clock was not synchronised (their
    /// records say so).
    pub violations_clock_unsynchronised: AtomicU64,
    /// Violations not recorded because the disk budget was reached.
    pub violations_refused: AtomicU64,
    /// Bytes the store uses against its budget, and the budget.
    pub store_used_bytes: AtomicU64,
    pub store_max_bytes: AtomicU64,
    /// Set while the store applies its budget policy (evidence or records lost).
    pub store_budget_alarm: AtomicBool,
    /// Evidence and records deleted, by reason (`store::reason`), since the
    /// database was made.
    pub store_drops: Mutex<BTreeMap<String, u64>>,
    /// The last damaged database moved aside at start: where to, and why.
    pub store_moved_aside: Mutex<Option<String>>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    /// The counters of one camera, made on first use.
    pub fn camera(&self, id: &str) -> Arc<CameraCounters> {
        let mut cams = self.cameras.lock_unpoisoned();
        cams.entry(id.to_string()).or_default().clone()
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let cams = self.cameras.lock_unpoisoned();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            cameras: cams
                .iter()
                .map(|(id, c)| CameraSnapshot {
                    id: id.clone(),
                    state: c.state.lock_unpoisoned().clone(),
                    frames_captured: g(&c.frames_captured),
                    frames_dropped: g(&c.frames_dropped),
                    frames_processed: g(&c.frames_processed),
                    capture_errors: g(&c.capture_errors),
                    last_frame_unix_ms: c.last_frame_unix_ms.load(Ordering::Relaxed),
                    reads: g(&c.reads),
                    passages: g(&c.passages),
                })
                .collect(),
            plates_detected: g(&self.plates_detected),
            plates_read: g(&self.plates_read),
            reads_rejected: g(&self.reads_rejected),
            passages: g(&self.passages),
            duplicates_suppressed: g(&self.duplicates_suppressed),
            non_hits: g(&self.non_hits),
            low_confidence_passages: g(&self.low_confidence_passages),
            outside_hours: g(&self.outside_hours),
            not_entering: g(&self.not_entering),
            foreign_plates: g(&self.foreign_plates),
            exempt: g(&self.exempt),
            not_yet_banned: g(&self.not_yet_banned),
            lists_unavailable: g(&self.lists_unavailable),
            violations_recorded: g(&self.violations_recorded),
            store_errors: g(&self.store_errors),
            uploads_acked: g(&self.uploads_acked),
            upload_failures: g(&self.upload_failures),
            detect_errors: g(&self.detect_errors),
            read_errors: g(&self.read_errors),
            last_detect_us: g(&self.last_detect_us),
            pending_uploads: g(&self.pending_uploads),
            oldest_pending_unix_ms: self.oldest_pending_unix_ms.load(Ordering::Relaxed),
            last_upload_ok_unix_ms: self.last_upload_ok_unix_ms.load(Ordering::Relaxed),
            last_upload_failure: self
                .last_upload_failure
                .lock_unpoisoned()
                .clone()
                .map(|(at_unix_ms, reason)| UploadFailure { at_unix_ms, reason }),
            last_upload_error: self.last_upload_error.lock_unpoisoned().clone(),
            violations_clock_unsynchronised: g(&self.violations_clock_unsynchronised),
            violations_refused: g(&self.violations_refused),
            store_used_bytes: g(&self.store_used_bytes),
            store_max_bytes: g(&self.store_max_bytes),
            store_budget_alarm: self.store_budget_alarm.load(Ordering::Relaxed),
            store_drops: self.store_drops.lock_unpoisoned().clone(),
            store_moved_aside: self.store_moved_aside.lock_unpoisoned().clone(),
        }
    }

    /// Publishes the store's budget state.
    pub fn set_store_budget(&self, b: &BudgetStatus) {
        self.store_used_bytes.store(b.used_bytes, Ordering::Relaxed);
        self.store_max_bytes.store(b.max_bytes, Ordering::Relaxed);
        self.store_budget_alarm.store(b.alarm, Ordering::Relaxed);
        *self.store_drops.lock_unpoisoned() = b.drops.clone();
    }

    /// The uploader's state after an attempt at `at` (the uploader's
    /// clocks): `None` after a success. A failure is also kept, with its
    /// time, past later successes.
    pub fn set_upload_error(&self, e: Option<String>, at: chrono::DateTime<chrono::Utc>) {
        let now = at.timestamp_millis();
        match &e {
            None => self.last_upload_ok_unix_ms.store(now, Ordering::Relaxed),
            Some(reason) => {
                *self.last_upload_failure.lock_unpoisoned() = Some((now, reason.clone()))
            }
        }
        *self.last_upload_error.lock_unpoisoned() = e;
    }
}

pub fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Debug, Serialize)]
pub struct CameraSnapshot {
    pub id: String,
    pub state: CameraState,
    pub frames_captured: u64,
    pub frames_dropped: u64,
    pub frames_processed: u64,
    pub capture_errors: u64,
    pub last_frame_unix_ms: i64,
    pub reads: u64,
    pub passages: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UploadFailure {
    pub at_unix_ms: i64,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricsSnapshot {
    pub cameras: Vec<CameraSnapshot>,
    pub plates_detected: u64,
    pub plates_read: u64,
    pub reads_rejected: u64,
    pub passages: u64,
    pub duplicates_suppressed: u64,
    pub non_hits: u64,
    pub low_confidence_passages: u64,
    pub outside_hours: u64,
    pub not_entering: u64,
    pub foreign_plates: u64,
    pub exempt: u64,
    pub not_yet_banned: u64,
    pub lists_unavailable: u64,
    pub violations_recorded: u64,
    pub store_errors: u64,
    pub uploads_acked: u64,
    pub upload_failures: u64,
    pub detect_errors: u64,
    pub read_errors: u64,
    pub last_detect_us: u64,
    pub pending_uploads: u64,
    pub oldest_pending_unix_ms: i64,
    pub last_upload_ok_unix_ms: i64,
    pub last_upload_failure: Option<UploadFailure>,
    pub last_upload_error: Option<String>,
    pub violations_clock_unsynchronised: u64,
    pub violations_refused: u64,
    pub store_used_bytes: u64,
    pub store_max_bytes: u64,
    pub store_budget_alarm: bool,
    pub store_drops: BTreeMap<String, u64>,
    pub store_moved_aside: Option<String>,
}
