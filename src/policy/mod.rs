//! Policy: decides which passages are candidate violations.
//!
//! A passage is a candidate violation when its plate is on the hit list and not
//! on the exemption list, and it was read confidently enough. Everything else
//! is a non-hit: it is counted and dropped here, and its text, crop and frame
//! go no further — never to the store, a log line or the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::message::{Decision, Passage};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read list {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("list {path}, line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Upper-case A-Z and 0-9 only: the form in which plates are compared.
pub fn normalise_plate(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
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

/// A list of plates with an entry id each, and a version that names its content.
#[derive(Clone, Debug, Default)]
pub struct PlateList {
    entries: HashMap<String, String>,
    pub version: String,
}

impl PlateList {
    /// Parses `plate,entry_id` lines; blank lines, `#` comments and a header
    /// line starting with `plate` are skipped.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, PolicyError> {
        let mut entries = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || (i == 0 && line.to_ascii_lowercase().starts_with("plate"))
            {
                continue;
            }
            let (plate, id) = line.split_once(',').unwrap_or((line, ""));
            let plate = normalise_plate(plate);
            if plate.is_empty() {
                return Err(PolicyError::Parse {
                    path: origin.to_owned(),
                    line: i + 1,
                    reason: "no plate in this line".into(),
                });
            }
            let id = id.trim();
            let id = if id.is_empty() {
                format!("line-{}", i + 1)
            } else {
                id.to_string()
            };
            entries.insert(plate, id);
        }
        let version = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
        Ok(PlateList { entries, version })
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn entry(&self, plate: &str) -> Option<&str> {
        self.entries.get(plate).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What became of a passage.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Violation(Decision),
    /// Not on the hit list.
    NonHit,
    /// On the hit list, but exempted.
    Exempt,
    /// Read too uncertainly to act on.
    LowConfidence,
}

pub struct Policy {
    hit_list: PlateList,
    exemptions: PlateList,
    min_confidence: f32,
}

impl Policy {
    pub fn new(hit_list: PlateList, exemptions: PlateList, min_confidence: f32) -> Self {
        Policy {
            hit_list,
            exemptions,
            min_confidence,
        }
    }

    pub fn decide(&self, passage: &Passage) -> Outcome {
        let plate = normalise_plate(&passage.text);
        if passage.confidence < self.min_confidence {
            return Outcome::LowConfidence;
        }
        let Some(entry) = self.hit_list.entry(&plate) else {
            return Outcome::NonHit;
        };
        if self.exemptions.entry(&plate).is_some() {
            return Outcome::Exempt;
        }
        Outcome::Violation(Decision {
            rule: "hit_list_no_exemption".into(),
            hit_list_version: self.hit_list.version.clone(),
            exemption_list_version: self.exemptions.version.clone(),
            entry_id: entry.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::Tracker;

    fn passage(text: &str, confidence: f32) -> Passage {
        // Build a real passage through the tracker so the test uses the same type
        // the pipeline does.
        use crate::clock::SyncState;
        use crate::message::*;
        use image::RgbImage;
        use std::sync::Arc;
        use std::time::Duration;
        let mut t = Tracker::new(&crate::config::TrackConfig {
            close_after_ms: 100,
            min_reads: 1,
        });
        let bbox = BoxF {
            x1: 0.0,
            y1: 0.0,
            x2: 100.0,
            y2: 22.0,
        };
        t.push(&ReadFrame {
            frame: Frame {
                camera: "a".into(),
                seq: 0,
                captured: Instant2 {
                    mono: Duration::ZERO,
                    wall: chrono::Utc::now(),
                    sync: SyncState {
                        synchronised: true,
                        max_error_us: 0,
                    },
                },
                image: Arc::new(RgbImage::new(1, 1)),
            },
            reads: vec![PlateRead {
                detection: Detection {
                    bbox,
                    corners: [(0.0, 0.0); 4],
                    score: 0.9,
                },
                text: text.into(),
                char_confidences: vec![confidence; text.len()],
                confidence,
                crop: Arc::new(RgbImage::new(1, 1)),
            }],
        });
        t.flush().pop().expect("one passage")
    }

    fn policy() -> Policy {
        let hits = PlateList::parse(
            "plate,entry_id\nVB-123-X,h1\n12-ABC-3,h2\n",
            Path::new("hits.csv"),
        )
        .expect("valid");
        let ex = PlateList::parse("12ABC3,e1\n", Path::new("ex.csv")).expect("valid");
        Policy::new(hits, ex, 0.8)
    }

    #[test]
    fn hit_without_exemption_is_a_violation_with_its_reason() {
        match policy().decide(&passage("VB123X", 0.95)) {
            Outcome::Violation(d) => {
                assert_eq!(d.entry_id, "h1");
                assert_eq!(d.rule, "hit_list_no_exemption");
                assert_eq!(d.hit_list_version.len(), 16);
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn exempted_hit_and_unknown_plate_are_not_violations() {
        let p = policy();
        assert_eq!(p.decide(&passage("12ABC3", 0.95)), Outcome::Exempt);
        assert_eq!(p.decide(&passage("XX99XX", 0.95)), Outcome::NonHit);
    }

    #[test]
    fn an_uncertain_read_of_a_hit_is_not_acted_on() {
        assert_eq!(
            policy().decide(&passage("VB123X", 0.5)),
            Outcome::LowConfidence
        );
    }

    #[test]
    fn list_errors_name_file_and_line() {
        let err =
            PlateList::parse("AB12CD,x\n--,y\n", Path::new("/etc/hits.csv")).expect_err("bad line");
        assert_eq!(
            err.to_string(),
            "list /etc/hits.csv, line 2: no plate in this line"
        );
        let err = PlateList::load(Path::new("/nonexistent/hits.csv")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/hits.csv"));
    }

    #[test]
    fn masking_keeps_only_the_ends() {
        assert_eq!(mask_plate("VB123X"), "VB***X");
        assert_eq!(normalise_plate(" vb-123-x "), "VB123X");
    }
}
