//! Builds a record's wire metadata from a violation: the one place where the
//! daemon's internal types are mapped onto the upload contract's
//! ([`anpr_wire::record`]), so renaming an internal field cannot change the API.
//! It never touches the database or the clock.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use anpr_wire::record::{
    self as wire, format_time, PlateMetadata, RecordMetadata, METADATA_FORMAT,
};

use super::RecordContext;
use crate::clock::SyncState;
use crate::message::{Decision, Direction, Violation};

/// Where the record stands in its chain.
pub(super) struct Link {
    pub id: Uuid,
    pub seq: i64,
    pub chain_id: String,
    pub prev_record_sha256: String,
}

/// The hashes of the images as stored.
pub(super) struct Evidence {
    pub overview_sha256: String,
    pub crop_sha256: String,
}

pub(super) fn metadata(
    v: &Violation,
    ctx: &RecordContext,
    link: Link,
    evidence: Evidence,
    created_at: DateTime<Utc>,
) -> RecordMetadata {
    let p = &v.passage;
    RecordMetadata {
        format: METADATA_FORMAT,
        id: link.id,
        device_id: ctx.device_id.clone(),
        seq: link.seq,
        chain_id: Some(link.chain_id),
        prev_record_sha256: Some(link.prev_record_sha256),
        captured_at: format_time(p.best.captured.wall),
        clock: clock_state(p.best.captured.sync),
        camera: p.camera.to_string(),
        camera_facing: ctx.camera_facing.clone(),
        location: ctx.location.clone(),
        latitude: ctx.latitude,
        longitude: ctx.longitude,
        lane: p.lane,
        direction: direction(p.direction),
        plate: PlateMetadata {
            text: p.plate.text.clone(),
            confidence: p.plate.confidence,
            char_confidences: p.plate.char_confidences.clone(),
            country: p.plate.country.map(str::to_string),
        },
        reads: p.reads,
        frames: p.frames,
        first_seen: format_time(p.first_seen.wall),
        last_seen: format_time(p.last_seen.wall),
        frame_seq: p.best.frame_seq,
        model_versions: ctx.model_versions.clone(),
        decision: decision(&v.decision),
        overview_sha256: evidence.overview_sha256,
        crop_sha256: evidence.crop_sha256,
        created_at: format_time(created_at),
    }
}

fn clock_state(s: SyncState) -> wire::ClockState {
    wire::ClockState {
        synchronised: s.synchronised,
        max_error_us: s.max_error_us,
    }
}

fn direction(d: Direction) -> wire::Direction {
    match d {
        Direction::Towards => wire::Direction::Towards,
        Direction::Away => wire::Direction::Away,
        Direction::Unknown => wire::Direction::Unknown,
    }
}

/// The direction as the `violation.direction` column holds it: the same word
/// as the wire's JSON.
pub(super) fn direction_str(d: wire::Direction) -> &'static str {
    match d {
        wire::Direction::Towards => "towards",
        wire::Direction::Away => "away",
        wire::Direction::Unknown => "unknown",
    }
}

fn decision(d: &Decision) -> wire::Decision {
    wire::Decision {
        rule: d.rule.clone(),
        hit_list_version: d.hit_list_version.clone(),
        exemption_list_version: d.exemption_list_version.clone(),
        entry_id: d.entry_id.clone(),
        zone_id: d.zone_id.clone(),
        key_id: d.key_id.clone(),
        banned_from: d.banned_from.clone(),
    }
}
