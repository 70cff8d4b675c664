//! Policy: decides which passages are candidate violations.
//!
//! A passage is a candidate violation when the zone is in force at its time,
//! its direction enters the zone, it was read confidently enough, its plate is
//! Dutch (unless configured otherwise), the plate's keyed hash is on the hit
//! list with a ban date on or before the passage's local date, and no
//! exemption for it is valid at that time in this zone. Everything else is
//! counted by reason and dropped here: its text, crop and frame go no further
//! — never to the store, a log line or the network.
//!
//! The lists hold only keyed hashes (see [`hash`]) and arrive as signed
//! bundles (see [`bundle`], `docs/design/lists.md`); [`lists::Lists`] swaps new ones
//! in atomically and keeps the last good one when a bundle fails a check.

pub mod fetch;
pub mod lists;
pub mod stage;
pub mod zone;

use std::sync::Arc;

use crate::clock::Clocks;
use crate::config::{Config, ForeignPlates};
use crate::message::{Decision, Passage};

pub use anpr_wire::bundle::ListKind;
use anpr_wire::hash::{self, normalise_plate};
pub use lists::{Lists, ListsSetup, ListsStatus};
pub use zone::ZoneRules;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Key(#[from] hash::KeyError),
    #[error("policy config: {0}")]
    Config(String),
}

/// Shows a plate with its middle hidden, for the rare log line that must name one.
pub fn mask_plate(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < 2 || i + 1 >= n { *c } else { '*' })
        .collect()
}

/// What became of a passage.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Violation(Decision),
    /// Not on the hit list.
    NonHit,
    /// On the hit list, but an exemption is valid.
    Exempt,
    /// Read too uncertainly to act on.
    LowConfidence,
    /// The zone was not in force at the passage's time.
    OutsideHours,
    /// The vehicle was not entering the zone (e.g. leaving it at a cordon).
    NotEntering,
    /// A plate that fits no Dutch sidecode (counted, never recorded).
    Foreign,
    /// On the hit list, but its ban starts after the passage's local date.
    NotYetBanned,
    /// A configured list is not in force (none loaded yet): nothing is acted on.
    ListsUnavailable,
}

impl Outcome {
    /// A short name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Violation(_) => "violation",
            Outcome::NonHit => "non_hit",
            Outcome::Exempt => "exempt",
            Outcome::LowConfidence => "low_confidence",
            Outcome::OutsideHours => "outside_hours",
            Outcome::NotEntering => "not_entering",
            Outcome::Foreign => "foreign",
            Outcome::NotYetBanned => "not_yet_banned",
            Outcome::ListsUnavailable => "lists_unavailable",
        }
    }
}

/// The rule a violation's decision names.
pub const RULE_HIT_NO_EXEMPTION: &str = "hit_list_no_exemption";

pub struct Policy {
    zone: ZoneRules,
    lists: Arc<Lists>,
    min_confidence: f32,
    foreign: ForeignPlates,
}

impl Policy {
    pub fn new(
        zone: ZoneRules,
        lists: Arc<Lists>,
        min_confidence: f32,
        foreign: ForeignPlates,
    ) -> Self {
        Policy {
            zone,
            lists,
            min_confidence,
            foreign,
        }
    }

    /// The zone rules, keys and list files of a config; loads every
    /// configured bundle once (a bundle that fails is logged and stays out of
    /// force, see [`Lists::load_file`]).
    pub fn from_config(cfg: &Config, clocks: Arc<dyn Clocks>) -> Result<Self, PolicyError> {
        let pol = &cfg.policy;
        let zone = ZoneRules::from_config(&cfg.zone, &cfg.cameras).map_err(PolicyError::Config)?;
        let public_key = pol
            .public_key
            .as_deref()
            .map(anpr_wire::bundle::verifying_key_from_base64)
            .transpose()
            .map_err(|e| PolicyError::Config(format!("policy.public_key: {e}")))?;
        let keys = hash::KeyRing::load(&pol.hmac_keys)?;
        let lists = Arc::new(Lists::new(ListsSetup {
            zone: cfg.zone.id.clone(),
            public_key,
            keys,
            hit_list: pol.hit_list.clone(),
            exemptions: pol.exemptions.clone(),
            max_age: (pol.max_list_age_h > 0)
                .then(|| chrono::Duration::hours(pol.max_list_age_h as i64)),
            clocks,
        }));
        lists.reload_if_changed();
        Ok(Policy::new(
            zone,
            lists,
            pol.min_confidence,
            pol.foreign_plates,
        ))
    }

    /// The lists, shared with the reload task and the status page.
    pub fn lists(&self) -> &Arc<Lists> {
        &self.lists
    }

    pub fn zone(&self) -> &ZoneRules {
        &self.zone
    }

    /// Judges a passage at the time of its best frame (the time its record states).
    pub fn decide(&self, passage: &Passage) -> Outcome {
        let at = passage.best.captured.wall;
        if !self.zone.in_force(at) {
            return Outcome::OutsideHours;
        }
        if !self.zone.enters(&passage.camera, passage.direction) {
            return Outcome::NotEntering;
        }
        if passage.plate.confidence < self.min_confidence {
            return Outcome::LowConfidence;
        }
        let plate = normalise_plate(&passage.plate.text);
        if self.foreign == ForeignPlates::Count && !crate::plate::is_dutch(&plate) {
            return Outcome::Foreign;
        }
        let Some(hits) = self.lists.hit_list() else {
            return if self.lists.configured(ListKind::Hit) {
                Outcome::ListsUnavailable
            } else {
                Outcome::NonHit
            };
        };
        let exemptions = self.lists.exemptions();
        if exemptions.is_none() && self.lists.configured(ListKind::Exemption) {
            return Outcome::ListsUnavailable;
        }
        let hash = hits.key.hash_normalised(&plate);
        let Some(hit) = hits.list.get(&hash) else {
            return Outcome::NonHit;
        };
        if self.zone.local_date(at) < hit.banned_from {
            return Outcome::NotYetBanned;
        }
        if let Some(ex) = &exemptions {
            // During a key rotation the two lists may use different keys.
            let ex_hash = if ex.key.id == hits.key.id {
                hash
            } else {
                ex.key.hash_normalised(&plate)
            };
            if ex.list.valid(&ex_hash, at, &self.zone.id).is_some() {
                return Outcome::Exempt;
            }
        }
        Outcome::Violation(Decision {
            rule: RULE_HIT_NO_EXEMPTION.into(),
            hit_list_version: hits.header.version.to_string(),
            exemption_list_version: exemptions
                .as_ref()
                .map(|e| e.header.version.to_string())
                .unwrap_or_default(),
            entry_id: hit.entry_id.to_string(),
            zone_id: self.zone.id.clone(),
            key_id: hits.key.id.clone(),
            banned_from: hit.banned_from.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
