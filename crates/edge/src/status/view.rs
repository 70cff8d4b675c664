//! What the status page shows, as plain data that both the HTML pages and the
//! JSON API serialise: the overview, each camera's view, and the alarms with
//! what to do about each. Built from counters, device facts and the lists'
//! status only; rates and hourly counts come from a history of counter
//! samples kept here (numbers only).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::clock::SyncState;
use crate::metrics::{CameraSnapshot, CameraState, MetricsSnapshot};
use crate::policy::lists::ListsStatus;

/// The counters of one camera that rates and hourly counts are made of.
#[derive(Clone, Copy, Debug, Default)]
pub struct CamCount {
    pub captured: u64,
    pub processed: u64,
    pub dropped: u64,
    pub reads: u64,
    pub passages: u64,
}

impl CamCount {
    fn of(c: &CameraSnapshot) -> Self {
        CamCount {
            captured: c.frames_captured,
            processed: c.frames_processed,
            dropped: c.frames_dropped,
            reads: c.reads,
            passages: c.passages,
        }
    }
}

/// Counter samples, one a second, for the last hour.
#[derive(Default)]
pub struct History {
    samples: VecDeque<(Duration, BTreeMap<String, CamCount>)>,
}

/// Frames per second over the last few seconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Rates {
    pub frames_in: f64,
    pub frames_processed: f64,
    pub frames_dropped: f64,
}

const HOUR: Duration = Duration::from_secs(3600);
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl History {
    pub fn record(&mut self, now: Duration, s: &MetricsSnapshot) {
        let counts = s
            .cameras
            .iter()
            .map(|c| (c.id.clone(), CamCount::of(c)))
            .collect();
        self.samples.push_back((now, counts));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > HOUR)
        {
            self.samples.pop_front();
        }
    }

    /// Rates of `cam` between the newest sample at least `RATE_WINDOW` old
    /// (or the oldest there is) and `now`.
    pub fn rates(&self, cam: &str, now: Duration, current: CamCount) -> Option<Rates> {
        let (t, base) = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_sub(*t) >= RATE_WINDOW)
            .or_else(|| self.samples.front())?;
        let dt = now.saturating_sub(*t).as_secs_f64();
        if dt < 0.5 {
            return None;
        }
        let base = base.get(cam).copied().unwrap_or_default();
        let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        Some(Rates {
            frames_in: r(current.captured, base.captured),
            frames_processed: r(current.processed, base.processed),
            frames_dropped: r(current.dropped, base.dropped),
        })
    }

    /// Reads and passages of `cam` in the last hour. Counters start at zero
    /// with the process, so a daemon up for less than an hour counts all.
    pub fn last_hour(&self, cam: &str, now: Duration, current: CamCount) -> (u64, u64) {
        let base = if now < HOUR {
            CamCount::default()
        } else {
            self.samples
                .iter()
                .find(|(t, _)| now.saturating_sub(*t) <= HOUR)
                .and_then(|(_, m)| m.get(cam).copied())
                .unwrap_or_default()
        };
        (
            current.reads.saturating_sub(base.reads),
            current.passages.saturating_sub(base.passages),
        )
    }
}

/// One camera as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CameraView {
    #[serde(flatten)]
    pub counters: CameraSnapshot,
    /// `streaming`, `reconnecting` (it delivered before and is gone now),
    /// `absent` (never delivered), `starting` or `finished` (a replay).
    pub condition: &'static str,
    pub facing: String,
    pub rates: Option<Rates>,
    pub last_frame_age_s: Option<f64>,
    pub reads_last_hour: u64,
    pub passages_last_hour: u64,
}

pub fn camera_view(
    c: &CameraSnapshot,
    facing: &str,
    history: &History,
    now_mono: Duration,
    now_unix_ms: i64,
) -> CameraView {
    let condition = match &c.state {
        CameraState::Starting => "starting",
        CameraState::Streaming => "streaming",
        CameraState::Finished => "finished",
        CameraState::Absent(_) if c.frames_captured > 0 => "reconnecting",
        CameraState::Absent(_) => "absent",
    };
    let current = CamCount::of(c);
    let (reads, passages) = history.last_hour(&c.id, now_mono, current);
    CameraView {
        counters: c.clone(),
        condition,
        facing: facing.to_string(),
        rates: history.rates(&c.id, now_mono, current),
        last_frame_age_s: (c.last_frame_unix_ms > 0)
            .then(|| (now_unix_ms - c.last_frame_unix_ms).max(0) as f64 / 1000.0),
        reads_last_hour: reads,
        passages_last_hour: passages,
    }
}

/// Disk use of the store's file system and of the store itself.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Storage {
    /// The database with its WAL and shared-memory files.
    pub store_bytes: u64,
    pub fs_total_bytes: u64,
    pub fs_free_bytes: u64,
    pub fs_used_percent: f64,
    /// The store's own account against its budget (`store.max_bytes`; 0 =
    /// no budget).
    pub budget_used_bytes: u64,
    pub budget_bytes: u64,
}

pub fn storage(store_path: &Path) -> Storage {
    let mut store_bytes = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = store_path.as_os_str().to_owned();
        p.push(suffix);
        store_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    let (total, free) = fs_space(store_path.parent().unwrap_or(Path::new("/")));
    Storage {
        store_bytes,
        fs_total_bytes: total,
        fs_free_bytes: free,
        fs_used_percent: if total == 0 {
            0.0
        } else {
            100.0 * (total - free.min(total)) as f64 / total as f64
        },
        ..Storage::default()
    }
}

#[cfg(unix)]
fn fs_space(dir: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    // SAFETY: statvfs fills a plain struct from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0);
    }
    let frsize = st.f_frsize as u64;
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

#[cfg(not(unix))]
fn fs_space(_: &Path) -> (u64, u64) {
    (0, 0)
}

/// Upload state: queue, last success and last failure.
#[derive(Clone, Debug, Serialize)]
pub struct Uploads {
    pub pending: u64,
    pub oldest_pending_age_s: Option<i64>,
    pub last_success_age_s: Option<i64>,
    pub last_failure_age_s: Option<i64>,
    pub last_failure_reason: Option<String>,
    /// The error of the latest attempt, if it failed (None once one succeeds).
    pub failing_now: Option<String>,
}

pub fn uploads(s: &MetricsSnapshot, now_unix_ms: i64) -> Uploads {
    let age = |ms: i64| (ms > 0).then(|| (now_unix_ms - ms).max(0) / 1000);
    Uploads {
        pending: s.pending_uploads,
        oldest_pending_age_s: if s.pending_uploads > 0 {
            age(s.oldest_pending_unix_ms)
        } else {
            None
        },
        last_success_age_s: age(s.last_upload_ok_unix_ms),
        last_failure_age_s: s
            .last_upload_failure
            .as_ref()
            .and_then(|f| age(f.at_unix_ms)),
        last_failure_reason: s.last_upload_failure.as_ref().map(|f| f.reason.clone()),
        failing_now: s.last_upload_error.clone(),
    }
}

fn human_bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", b as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}

/// Something a technician must act on.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Alarm {
    /// Stable key, e.g. `camera_absent`.
    pub id: &'static str,
    /// What is wrong, in words.
    pub what: String,
    /// What to do about it.
    pub todo: &'static str,
}

/// Clock error above which times in evidence are doubtful.
pub const CLOCK_ERROR_LIMIT_US: i64 = 1_000_000;
/// A streaming camera that has sent nothing for this long is stuck.
const FRAME_STALL_S: f64 = 10.0;
const PENDING_TOO_OLD_S: i64 = 3600;
const DISK_NEARLY_FULL_PERCENT: f64 = 90.0;

pub struct AlarmInput<'a> {
    pub counters: &'a MetricsSnapshot,
    pub cameras: &'a [CameraView],
    pub clock: SyncState,
    pub lists: Option<&'a ListsStatus>,
    pub storage: &'a Storage,
    pub uploads: &'a Uploads,
}

pub fn alarms(i: &AlarmInput<'_>) -> Vec<Alarm> {
    let mut out = Vec::new();
    for c in i.cameras {
        match (&c.counters.state, c.condition) {
            (CameraState::Absent(why), cond) => out.push(Alarm {
                id: if cond == "reconnecting" {
                    "camera_reconnecting"
                } else {
                    "camera_absent"
                },
                what: format!("camera {}: {why}", c.counters.id),
                todo: "Check the camera's power and cable (or the device node in the config); the daemon retries on its own and the other cameras go on.",
            }),
            (CameraState::Streaming, _)
                if c.last_frame_age_s.is_some_and(|a| a > FRAME_STALL_S) =>
            {
                out.push(Alarm {
                    id: "camera_stalled",
                    what: format!(
                        "camera {} has sent no frame for {:.0} s",
                        c.counters.id,
                        c.last_frame_age_s.unwrap_or_default()
                    ),
                    todo: "Check the camera's stream; restart the service (systemctl restart anpr-edge) if it stays silent.",
                })
            }
            _ => {}
        }
        if let Some(r) = c.rates {
            if r.frames_in > 0.0 && r.frames_dropped > 0.1 * r.frames_in {
                out.push(Alarm {
                    id: "frames_dropped",
                    what: format!(
                        "camera {} drops {:.1} of {:.1} frames/s: detection cannot keep up",
                        c.counters.id, r.frames_dropped, r.frames_in
                    ),
                    todo: "Lower the camera's fps or resolution in the config, or check for another process using the CPU.",
                });
            }
        }
    }
    if !i.clock.synchronised || i.clock.max_error_us > CLOCK_ERROR_LIMIT_US {
        out.push(Alarm {
            id: "clock_unsynchronised",
            what: format!(
                "clock {} (maximum error {})",
                if i.clock.synchronised {
                    "synchronised but imprecise"
                } else {
                    "not synchronised"
                },
                human_us(i.clock.max_error_us)
            ),
            todo: "Check that chrony/NTP reaches its time server (`chronyc tracking`); records state the sync state, but a backend may reject them.",
        });
    }
    if let Some(l) = i.lists.filter(|l| l.alarm) {
        out.push(Alarm {
            id: "lists",
            what: format!("zone lists: {}", l.alarm_reasons.join("; ")),
            todo: "Check the list download (policy.lists_url, network, certificate) or copy a freshly signed bundle; until then the device records nothing it cannot check.",
        });
    }
    if let Some(e) = &i.uploads.failing_now {
        if i.uploads.pending > 0 {
            out.push(Alarm {
                id: "upload_failing",
                what: format!("uploads fail: {e}"),
                todo: "Check the network route to the backend, its certificate and the device's clock; violations wait safely in the store.",
            });
        }
    }
    if i.uploads
        .oldest_pending_age_s
        .is_some_and(|a| a > PENDING_TOO_OLD_S)
    {
        out.push(Alarm {
            id: "queue_old",
            what: format!(
                "the oldest unacknowledged violation waits for {}",
                human_s(i.uploads.oldest_pending_age_s.unwrap_or_default())
            ),
            todo: "Find why uploads do not go through (see the last failure); the store keeps them meanwhile.",
        });
    }
    if i.storage.fs_used_percent > DISK_NEARLY_FULL_PERCENT {
        out.push(Alarm {
            id: "disk_nearly_full",
            what: format!("disk {:.0}% full", i.storage.fs_used_percent),
            todo: "Free space on the data partition (old logs, core dumps); once the disk is full new violations are held in memory only.",
        });
    }
    if i.counters.store_budget_alarm || i.counters.violations_refused > 0 {
        let drops: u64 = i.counters.store_drops.values().sum();
        out.push(Alarm {
            id: "store_budget_full",
            what: format!(
                "store at its budget: {} of {} used; {} violations refused, {} evidence or records dropped",
                human_bytes(i.counters.store_used_bytes),
                human_bytes(i.counters.store_max_bytes),
                i.counters.violations_refused,
                drops
            ),
            todo: "Restore the upload link so that delivered records free space (see the last failure), or raise store.max_bytes if the partition allows; store.on_budget_full says what is given up meanwhile.",
        });
    }
    if let Some(where_to) = &i.counters.store_moved_aside {
        out.push(Alarm {
            id: "store_moved_aside",
            what: format!("a damaged database was moved aside at start: {where_to}"),
            todo: "Copy the moved file off the device for the backend's operator (it may hold undelivered violations); recording goes on in a fresh database.",
        });
    }
    if i.counters.store_errors > 0 {
        out.push(Alarm {
            id: "store_errors",
            what: format!("{} store errors since start", i.counters.store_errors),
            todo: "Check the data partition (full, read-only, failing card) in the log (journalctl -u anpr-edge).",
        });
    }
    if i.counters.detect_errors + i.counters.read_errors > 0 {
        out.push(Alarm {
            id: "inference_errors",
            what: format!(
                "{} detection and {} reading errors since start",
                i.counters.detect_errors, i.counters.read_errors
            ),
            todo: "Check the models and runtime (`anpr-edge version`) and the log; reinstall the package if files are damaged.",
        });
    }
    out
}

pub fn human_s(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub fn human_us(us: i64) -> String {
    match us {
        i64::MAX => "unknown".into(),
        us if us < 1000 => format!("{us} µs"),
        us if us < 1_000_000 => format!("{:.1} ms", us as f64 / 1000.0),
        us => format!("{:.1} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::atomic::Ordering;

    fn snap(m: &Metrics) -> MetricsSnapshot {
        m.snapshot()
    }

    #[test]
    fn rates_and_hourly_counts_come_from_the_sample_history() {
        let m = Metrics::new();
        let c = m.camera("a");
        let mut h = History::default();
        let t0 = Duration::from_secs(4000);
        h.record(t0, &snap(&m));
        c.frames_captured.store(100, Ordering::Relaxed);
        c.frames_processed.store(90, Ordering::Relaxed);
        c.frames_dropped.store(10, Ordering::Relaxed);
        c.reads.store(7, Ordering::Relaxed);
        let now = t0 + Duration::from_secs(10);
        let cur = CamCount::of(&snap(&m).cameras[0]);
        let r = h.rates("a", now, cur).expect("a window");
        assert_eq!(
            r,
            Rates {
                frames_in: 10.0,
                frames_processed: 9.0,
                frames_dropped: 1.0
            }
        );
        assert_eq!(h.last_hour("a", now, cur), (7, 0));
        // An hour later the old sample has left the window: only what came since counts.
        h.record(now, &snap(&m));
        c.reads.store(9, Ordering::Relaxed);
        let later = now + HOUR - Duration::from_secs(1);
        let cur = CamCount::of(&snap(&m).cameras[0]);
        h.record(later, &snap(&m));
        assert_eq!(h.last_hour("a", later, cur), (2, 0));
    }

    #[test]
    fn a_camera_that_delivered_before_is_reconnecting_and_alarms_say_what_to_do() {
        let m = Metrics::new();
        let c = m.camera("pole");
        *c.state.lock().expect("lock") = CameraState::Absent("/dev/video0: gone".into());
        let s = snap(&m);
        let h = History::default();
        let v = camera_view(&s.cameras[0], "north", &h, Duration::ZERO, 0);
        assert_eq!(v.condition, "absent");
        c.frames_captured.store(5, Ordering::Relaxed);
        let s = snap(&m);
        let v = camera_view(&s.cameras[0], "north", &h, Duration::ZERO, 0);
        assert_eq!(v.condition, "reconnecting");
        m.set_upload_error(Some("connection refused".into()), chrono::Utc::now());
        m.pending_uploads.store(3, Ordering::Relaxed);
        let s = snap(&m);
        let up = uploads(&s, chrono::Utc::now().timestamp_millis());
        let a = alarms(&AlarmInput {
            counters: &s,
            cameras: &[v],
            clock: SyncState {
                synchronised: false,
                max_error_us: 16_000_000,
            },
            lists: None,
            storage: &Storage::default(),
            uploads: &up,
        });
        let ids: Vec<&str> = a.iter().map(|a| a.id).collect();
        assert_eq!(
            ids,
            [
                "camera_reconnecting",
                "clock_unsynchronised",
                "upload_failing"
            ]
        );
        assert!(a[0].what.contains("/dev/video0"));
        assert!(a[1].what.contains("16.0 s"));
        assert!(a.iter().all(|a| !a.todo.is_empty()));
    }

    #[test]
    fn a_full_store_budget_and_a_moved_database_raise_alarms() {
        let m = Metrics::new();
        let clock = SyncState {
            synchronised: true,
            max_error_us: 1000,
        };
        let quiet = |s: &MetricsSnapshot| {
            let up = uploads(s, chrono::Utc::now().timestamp_millis());
            alarms(&AlarmInput {
                counters: s,
                cameras: &[],
                clock,
                lists: None,
                storage: &Storage::default(),
                uploads: &up,
            })
        };
        assert!(quiet(&snap(&m)).is_empty());
        m.store_used_bytes.store(512 << 20, Ordering::Relaxed);
        m.store_max_bytes.store(512 << 20, Ordering::Relaxed);
        m.store_budget_alarm.store(true, Ordering::Relaxed);
        m.violations_refused.store(2, Ordering::Relaxed);
        *m.store_moved_aside.lock().expect("lock") = Some("/var/lib/anpr-edge/x.damaged".into());
        let a = quiet(&snap(&m));
        let ids: Vec<&str> = a.iter().map(|a| a.id).collect();
        assert_eq!(ids, ["store_budget_full", "store_moved_aside"]);
        assert!(
            a[0].what.contains("512.0 MiB of 512.0 MiB"),
            "{}",
            a[0].what
        );
        assert!(a[0].what.contains("2 violations refused"));
        assert!(a[1].what.contains("x.damaged"));
    }
}
