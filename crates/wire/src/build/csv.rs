//! Plain-plate CSV input for `lists build`: what a backend (or a test) starts
//! from. These files hold plate numbers and never belong on a device.
//!
//! Hit list: `plate,entry_id,banned_from[,vehicle_class]`, `banned_from` a
//! date `YYYY-MM-DD`. Exemptions: `plate,entry_id,valid_from,valid_until[,zone]`,
//! the times in RFC 3339 with their offset (`2026-03-28T00:00:00+01:00`).
//! Blank lines, `#` comments and a first line starting with `plate` are skipped.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};

use crate::hash::normalise_plate;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitRow {
    pub plate: String,
    pub entry_id: String,
    pub banned_from: NaiveDate,
    pub vehicle_class: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExemptionRow {
    pub plate: String,
    pub entry_id: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub zone: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct CsvError {
    pub line: usize,
    pub reason: String,
}

fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || (i == 0 && line.to_ascii_lowercase().starts_with("plate"))
        {
            return None;
        }
        Some((i + 1, line.split(',').map(str::trim).collect()))
    })
}

fn plate_and_id(line: usize, f: &[&str]) -> Result<(String, String), CsvError> {
    let plate = normalise_plate(f[0]);
    if plate.is_empty() {
        return Err(CsvError {
            line,
            reason: "no plate".into(),
        });
    }
    if f[1].is_empty() {
        return Err(CsvError {
            line,
            reason: "no entry id".into(),
        });
    }
    Ok((plate, f[1].to_string()))
}

fn optional(f: &[&str], i: usize) -> Option<String> {
    f.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string())
}

pub fn parse_hits(text: &str) -> Result<Vec<HitRow>, CsvError> {
    rows(text)
        .map(|(line, f)| {
            if !(3..=4).contains(&f.len()) {
                return Err(CsvError {
                    line,
                    reason: format!(
                        "{} fields; want plate,entry_id,banned_from[,vehicle_class]",
                        f.len()
                    ),
                });
            }
            let (plate, entry_id) = plate_and_id(line, &f)?;
            let banned_from =
                NaiveDate::parse_from_str(f[2], "%Y-%m-%d").map_err(|e| CsvError {
                    line,
                    reason: format!("banned_from `{}` is not YYYY-MM-DD: {e}", f[2]),
                })?;
            Ok(HitRow {
                plate,
                entry_id,
                banned_from,
                vehicle_class: optional(&f, 3),
            })
        })
        .collect()
}

pub fn parse_exemptions(text: &str) -> Result<Vec<ExemptionRow>, CsvError> {
    rows(text)
        .map(|(line, f)| {
            if !(4..=5).contains(&f.len()) {
                return Err(CsvError {
                    line,
                    reason: format!(
                        "{} fields; want plate,entry_id,valid_from,valid_until[,zone]",
                        f.len()
                    ),
                });
            }
            let (plate, entry_id) = plate_and_id(line, &f)?;
            let time = |s: &str, what: &str| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| CsvError {
                        line,
                        reason: format!("{what} `{s}` is not an RFC 3339 time: {e}"),
                    })
            };
            let valid_from = time(f[2], "valid_from")?;
            let valid_until = time(f[3], "valid_until")?;
            if valid_until <= valid_from {
                return Err(CsvError {
                    line,
                    reason: "valid_until is not after valid_from".into(),
                });
            }
            Ok(ExemptionRow {
                plate,
                entry_id,
                valid_from,
                valid_until,
                zone: optional(&f, 4),
            })
        })
        .collect()
}

/// A Dutch day permit for `date`: from 00:00 that day to 06:00 the next day,
/// local time in `tz`, whatever the clocks do in between (a DST change makes
/// the night an hour shorter or longer).
pub fn day_permit<Tz: TimeZone>(date: NaiveDate, tz: &Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = |d: NaiveDate, h: u32| {
        let naive = d.and_time(NaiveTime::from_hms_opt(h, 0, 0).expect("valid hour"));
        // 00:00 and 06:00 never fall in a European DST gap or overlap; take the
        // earliest reading if some other zone makes them ambiguous.
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap_or_else(|| tz.from_utc_datetime(&naive))
            .with_timezone(&Utc)
    };
    let next = date.succ_opt().unwrap_or(date);
    (local(date, 0), local(next, 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_parse_and_errors_name_the_line() {
        let hits = parse_hits("plate,entry_id,banned_from,vehicle_class\nvb-123-x,h1,2027-01-01,N1\n12ABC3,h2,2025-01-01\n").expect("valid");
        assert_eq!(hits[0].plate, "VB123X");
        assert_eq!(hits[0].vehicle_class.as_deref(), Some("N1"));
        assert_eq!(hits[1].vehicle_class, None);
        let err = parse_hits("AB12CD,x,2027-13-01\n").expect_err("bad date");
        assert_eq!(err.line, 1);
        assert!(err.reason.contains("banned_from"), "{err}");
        let ex =
            parse_exemptions("AB12CD,e1,2026-03-28T00:00:00+01:00,2026-03-29T06:00:00+02:00,ams\n")
                .expect("valid");
        assert_eq!(ex[0].zone.as_deref(), Some("ams"));
        assert_eq!(
            (ex[0].valid_until - ex[0].valid_from).num_hours(),
            29,
            "the DST night is an hour short"
        );
    }
}
