//! The record and tombstone bodies the device uploads, byte for byte.
//!
//! These types are the API: the device serialises a [`RecordMetadata`] once at
//! record time, signs those bytes and uploads them verbatim. They are the wire's
//! own, never re-exports of the daemon's internal types, so renaming something
//! inside the daemon cannot change what a backend receives.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the layout of [`RecordMetadata`], stated in every record so the
/// backend can tell formats apart. 2 added `chain_id` and `prev_record_sha256`.
pub const METADATA_FORMAT: u32 = 2;

/// RFC 3339 UTC with milliseconds, the one time format of records.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reasons under which evidence or records are deleted, as counted in the
/// `drops` table and stated to the backend in `evidence_dropped`.
pub mod reason {
    /// Images of a new record not stored: disk budget reached (`drop_new_evidence`).
    pub const NEW_EVIDENCE_BUDGET: &str = "disk_budget_new_evidence";
    /// Images of the oldest unacknowledged record deleted for room (`drop_oldest_evidence`).
    pub const OLDEST_EVIDENCE_BUDGET: &str = "disk_budget_oldest_evidence";
    /// A new violation not recorded at all (`refuse_new`, or no room even for its metadata).
    pub const REFUSED_BUDGET: &str = "disk_budget_refused";
    /// An acknowledged record (already delivered) deleted early for room.
    pub const ACKED_RECORD_BUDGET: &str = "disk_budget_acked_record";
    /// Images of an acknowledged record deleted after `acked_evidence_retention_h`.
    pub const ACKED_EVIDENCE_RETENTION: &str = "retention_acked_evidence";
    /// An unacknowledged record older than `max_retention_days`: its metadata,
    /// signature and images deleted, a signed [`Tombstone`] left in its
    /// place. (Builds before schema 3 deleted only the images under this name.)
    pub const UNACKED_EXPIRED: &str = "retention_unacked_expired";
    /// An acknowledged row older than `max_retention_days`, deleted whole.
    pub const ACKED_ROW_EXPIRED: &str = "retention_acked_row";
}

/// The plate as read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlateMetadata {
    /// Upper-case A-Z and 0-9 only, separators stripped.
    pub text: String,
    /// Confidence of the whole plate, 0..=1.
    pub confidence: f32,
    /// One confidence per character of `text`, 0..=1.
    pub char_confidences: Vec<f32>,
    /// ISO 3166 alpha-2 code of the country the plate was recognised as
    /// (`NL` where it fits a Dutch sidecode), `null` when unknown. Absent in
    /// records made before this field existed.
    #[serde(default)]
    pub country: Option<String>,
}

/// Everything about one record except the images: exactly what is uploaded as
/// the `metadata` part, serialised once at record time and stored verbatim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// The chain this record belongs to: 32 hex digits, made when the database
    /// was created. A database that had to be replaced starts a new chain.
    /// Absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    /// Lower-case hex SHA-256 of the previous record's `metadata` bytes in this
    /// chain; 64 zeros for the first. Absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_record_sha256: Option<String>,
    /// UTC wall-clock time of the overview (best) frame, RFC 3339 with milliseconds.
    pub captured_at: String,
    /// Whether the wall clock was synchronised when the overview was captured, and
    /// the kernel's maximum error estimate at that moment.
    pub clock: ClockState,
    /// Camera id from the configuration.
    pub camera: String,
    /// Which way the camera looks (free text from the configuration).
    pub camera_facing: String,
    /// Where the controller stands (free text from the configuration).
    pub location: String,
    /// WGS84 position of the controller, when configured.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The lane holding the plate in the overview frame, where the camera has
    /// lanes configured; `null` otherwise.
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

/// Version of the layout of [`Tombstone`].
pub const TOMBSTONE_FORMAT: u32 = 2;

/// Why a record was replaced by a tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TombstoneKind {
    /// Not delivered within `store.max_retention_days`.
    Expired,
}

/// What is left of a record that expired undelivered: just enough for the
/// backend to see which record is gone and why, and to keep checking the hash
/// chain across it. No plate, no time of passage, no images. Serialised once,
/// signed with the evidence key and stored; uploaded as the `tombstone` part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    /// Layout version ([`TOMBSTONE_FORMAT`]).
    pub format: u32,
    pub kind: TombstoneKind,
    /// The record's id; also the upload's `Idempotency-Key`.
    pub id: Uuid,
    pub device_id: String,
    /// The record's seq: the tombstone takes its place in the sequence.
    pub seq: i64,
    /// The record's chain; absent for a format-1 (unchained) record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    /// H(M): lower-case hex SHA-256 of the record's metadata bytes as signed,
    /// which the next record names as its `prev_record_sha256`.
    pub record_sha256: String,
    /// The record's own `prev_record_sha256`; absent for a format-1 record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_record_sha256: Option<String>,
    /// Why the record was deleted ([`reason`]).
    pub reason: String,
    /// When the record was committed on the device, RFC 3339 ms.
    pub created_at: String,
    /// When retention replaced it, RFC 3339 ms (device wall clock).
    pub expired_at: String,
}

/// Whether the device's wall clock was synchronised when a frame was captured,
/// and the kernel's maximum error estimate at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClockState {
    pub synchronised: bool,
    /// The kernel's maximum error estimate, in microseconds.
    pub max_error_us: i64,
}

/// Direction of travel relative to the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Towards,
    Away,
    Unknown,
}

/// Why the passage is a candidate violation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Decision {
    /// The rule that applied, e.g. `"hit_list_no_exemption"`.
    pub rule: String,
    /// Version number of the hit-list bundle in force.
    pub hit_list_version: String,
    /// Version number of the exemption-list bundle in force (empty: none configured).
    pub exemption_list_version: String,
    /// The hit-list entry the plate matched.
    pub entry_id: String,
    /// The zone the decision was made for.
    #[serde(default)]
    pub zone_id: String,
    /// The HMAC key id the plate was looked up with.
    #[serde(default)]
    pub key_id: String,
    /// The entry's first banned date (`YYYY-MM-DD`, local to the zone).
    #[serde(default)]
    pub banned_from: String,
}
