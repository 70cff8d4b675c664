//! Zone rules: when the zone is in force, and which passages enter it.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::config::{parse_hhmm, parse_weekday, CameraConfig, Entering, ZoneConfig};
use crate::message::Direction;

#[derive(Clone, Debug)]
pub struct ZoneRules {
    pub id: String,
    pub tz: Tz,
    /// Indexed by `Weekday::num_days_from_monday`.
    days: [bool; 7],
    /// Minutes after local midnight, `from` inclusive, `until` exclusive.
    from: u32,
    until: u32,
    entering: HashMap<String, Entering>,
}

impl ZoneRules {
    /// Rules from a validated config (errors here mean validation was skipped).
    pub fn from_config(zone: &ZoneConfig, cameras: &[CameraConfig]) -> Result<Self, String> {
        let tz: Tz = zone
            .time_zone
            .parse()
            .map_err(|_| format!("zone.time_zone `{}` is unknown", zone.time_zone))?;
        let mut days = [false; 7];
        for d in &zone.days {
            let w = parse_weekday(d).ok_or_else(|| format!("zone.days: `{d}`"))?;
            days[w.num_days_from_monday() as usize] = true;
        }
        let from = parse_hhmm(&zone.from).ok_or("zone.from")?;
        let until = parse_hhmm(&zone.until).ok_or("zone.until")?;
        Ok(ZoneRules {
            id: zone.id.clone(),
            tz,
            days,
            from,
            until,
            entering: cameras.iter().map(|c| (c.id.clone(), c.entering)).collect(),
        })
    }

    /// A zone in force every day, all day, where every camera's passages count.
    pub fn always(id: &str) -> Self {
        ZoneRules {
            id: id.to_string(),
            tz: chrono_tz::Europe::Amsterdam,
            days: [true; 7],
            from: 0,
            until: 1440,
            entering: HashMap::new(),
        }
    }

    /// Sets which direction enters the zone at a camera.
    pub fn with_camera(mut self, camera: &str, entering: Entering) -> Self {
        self.entering.insert(camera.to_string(), entering);
        self
    }

    /// The local date of an instant, in the zone's time zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    fn day_on(&self, d: Weekday) -> bool {
        self.days[d.num_days_from_monday() as usize]
    }

    /// Whether the zone is in force at `t` (local wall time, DST-safe: the
    /// local clock reading is what counts, whatever the UTC offset).
    pub fn in_force(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz);
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday();
        if self.from < self.until {
            self.day_on(today) && self.from <= minute && minute < self.until
        } else {
            // Overnight: the window that started today, or the one that
            // started yesterday and runs on until `until`.
            (self.day_on(today) && minute >= self.from)
                || (self.day_on(today.pred()) && minute < self.until)
        }
    }

    /// Whether a passage at `camera` in direction `d` enters the zone. A camera
    /// the rules do not know counts every passage (`Entering::Any`).
    pub fn enters(&self, camera: &str, d: Direction) -> bool {
        self.entering
            .get(camera)
            .copied()
            .unwrap_or_default()
            .admits(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(from: &str, until: &str, days: &[&str]) -> ZoneRules {
        let z = ZoneConfig {
            id: "z".into(),
            time_zone: "Europe/Amsterdam".into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            from: from.into(),
            until: until.into(),
        };
        ZoneRules::from_config(&z, &[]).expect("valid")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    #[test]
    fn hours_are_local_wall_time_in_winter_and_summer() {
        let r = rules("07:00", "19:00", &["mon", "tue", "wed", "thu", "fri"]);
        // Winter (UTC+1): 06:30 UTC is 07:30 local.
        assert!(r.in_force(utc("2026-01-05T06:30:00Z")));
        assert!(!r.in_force(utc("2026-01-05T05:59:00Z")));
        // Summer (UTC+2): 05:30 UTC is 07:30 local.
        assert!(r.in_force(utc("2026-07-06T05:30:00Z")));
        assert!(!r.in_force(utc("2026-07-06T17:00:00Z")), "19:00 local");
        // Saturday.
        assert!(!r.in_force(utc("2026-01-10T10:00:00Z")));
    }

    #[test]
    fn an_overnight_window_belongs_to_the_day_it_starts() {
        let r = rules("22:00", "06:00", &["fri"]);
        assert!(r.in_force(utc("2026-01-09T22:30:00Z")), "Fri 23:30");
        assert!(r.in_force(utc("2026-01-10T04:00:00Z")), "Sat 05:00");
        assert!(!r.in_force(utc("2026-01-10T22:30:00Z")), "Sat 23:30");
    }
}
