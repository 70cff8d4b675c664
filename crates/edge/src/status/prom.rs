//! `/metrics` in the Prometheus text format (version 0.0.4). Labels carry
//! camera ids and fixed words only: never plate data.

use std::fmt::Write;

use super::view::{CameraView, Storage, Uploads};
use crate::clock::SyncState;
use crate::metrics::MetricsSnapshot;
use crate::policy::lists::ListsStatus;

/// Escapes a label value as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP anpr_{name} {help}\n# TYPE anpr_{name} {kind}"
        );
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "anpr_{name} {v}");
    }
    fn per_camera(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        cams: &[CameraView],
        v: impl Fn(&CameraView) -> f64,
    ) {
        self.head(name, kind, help);
        for c in cams {
            let _ = writeln!(
                self.0,
                "anpr_{name}{{camera=\"{}\"}} {}",
                label(&c.counters.id),
                v(c)
            );
        }
    }
}

pub struct Input<'a> {
    pub counters: &'a MetricsSnapshot,
    pub cameras: &'a [CameraView],
    pub uptime_s: u64,
    pub clock: SyncState,
    pub storage: &'a Storage,
    pub uploads: &'a Uploads,
    pub lists: Option<&'a ListsStatus>,
    pub alarms: usize,
}

pub fn render(i: &Input<'_>) -> String {
    let mut o = Out(String::new());
    let s = i.counters;
    let cams = i.cameras;
    o.per_camera(
        "frames_captured_total",
        "counter",
        "Frames captured.",
        cams,
        |c| c.counters.frames_captured as f64,
    );
    o.per_camera(
        "frames_processed_total",
        "counter",
        "Frames detected and read.",
        cams,
        |c| c.counters.frames_processed as f64,
    );
    o.per_camera(
        "frames_dropped_total",
        "counter",
        "Frames dropped because detection could not keep up.",
        cams,
        |c| c.counters.frames_dropped as f64,
    );
    o.per_camera(
        "capture_errors_total",
        "counter",
        "Capture errors.",
        cams,
        |c| c.counters.capture_errors as f64,
    );
    o.per_camera(
        "camera_reads_total",
        "counter",
        "Plates read per camera.",
        cams,
        |c| c.counters.reads as f64,
    );
    o.per_camera(
        "camera_passages_total",
        "counter",
        "Passages per camera.",
        cams,
        |c| c.counters.passages as f64,
    );
    o.per_camera(
        "camera_streaming",
        "gauge",
        "1 while the camera delivers frames.",
        cams,
        |c| f64::from(u8::from(c.condition == "streaming")),
    );
    o.per_camera(
        "camera_last_frame_age_seconds",
        "gauge",
        "Age of the camera's last frame (-1: none yet).",
        cams,
        |c| c.last_frame_age_s.unwrap_or(-1.0),
    );
    for (name, help, v) in [
        (
            "plates_detected_total",
            "Plates detected.",
            s.plates_detected,
        ),
        ("plates_read_total", "Plates read.", s.plates_read),
        (
            "reads_rejected_total",
            "Reads below the confidence or length limits.",
            s.reads_rejected,
        ),
        ("passages_total", "Passages judged.", s.passages),
        (
            "non_hits_total",
            "Passages that were not violations.",
            s.non_hits,
        ),
        (
            "low_confidence_passages_total",
            "Passages read too poorly to judge.",
            s.low_confidence_passages,
        ),
        (
            "violations_recorded_total",
            "Violations committed to the store.",
            s.violations_recorded,
        ),
        ("store_errors_total", "Store errors.", s.store_errors),
        (
            "uploads_acked_total",
            "Violations acknowledged by the backend.",
            s.uploads_acked,
        ),
        (
            "upload_failures_total",
            "Failed upload attempts.",
            s.upload_failures,
        ),
        ("detect_errors_total", "Detection errors.", s.detect_errors),
        ("read_errors_total", "Reading errors.", s.read_errors),
    ] {
        o.one(name, "counter", help, v);
    }
    o.one(
        "pending_uploads",
        "gauge",
        "Violations waiting for upload.",
        s.pending_uploads,
    );
    o.one(
        "oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest unacknowledged violation (0: none).",
        i.uploads.oldest_pending_age_s.unwrap_or(0),
    );
    o.one(
        "detect_last_seconds",
        "gauge",
        "Detection time of the last frame.",
        s.last_detect_us as f64 / 1e6,
    );
    o.one(
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        i.uptime_s,
    );
    o.one(
        "clock_synchronised",
        "gauge",
        "1 while the kernel reports the clock synchronised.",
        u8::from(i.clock.synchronised),
    );
    o.one(
        "clock_max_error_seconds",
        "gauge",
        "The kernel's maximum clock error estimate.",
        i.clock.max_error_us as f64 / 1e6,
    );
    o.one(
        "store_bytes",
        "gauge",
        "Size of the store's files.",
        i.storage.store_bytes,
    );
    o.one(
        "disk_free_bytes",
        "gauge",
        "Free space on the store's file system.",
        i.storage.fs_free_bytes,
    );
    o.one(
        "disk_total_bytes",
        "gauge",
        "Size of the store's file system.",
        i.storage.fs_total_bytes,
    );
    if let Some(l) = i.lists {
        o.head("list_version", "gauge", "Version of each list in force.");
        for (kind, st) in [("hit", &l.hit_list), ("exemption", &l.exemptions)] {
            if let Some(st) = st {
                let _ = writeln!(o.0, "anpr_list_version{{list=\"{kind}\"}} {}", st.version);
            }
        }
        o.head("list_age_seconds", "gauge", "Age of each list in force.");
        for (kind, st) in [("hit", &l.hit_list), ("exemption", &l.exemptions)] {
            if let Some(st) = st {
                let _ = writeln!(o.0, "anpr_list_age_seconds{{list=\"{kind}\"}} {}", st.age_s);
            }
        }
        o.one(
            "list_alarm",
            "gauge",
            "1 while a list is missing or too old.",
            u8::from(l.alarm),
        );
    }
    o.one(
        "alarms",
        "gauge",
        "Active alarms on the status page.",
        i.alarms,
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
