//! Behaviour of the policy with signed bundles, zone rules and key rotation.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use ed25519_dalek::SigningKey;
use image::RgbImage;

use super::lists::{ListError, Lists, ListsSetup};
use super::*;
use crate::clock::{RealClocks, SyncState, Timestamp};
use crate::config::{Entering, ForeignPlates, ZoneConfig};
use crate::message::*;
use anpr_wire::bundle::{self, BundleError, BundleMeta, ListKind};
use anpr_wire::hash::{HmacKey, KeyRing};

const ZONE: &str = "ams-ze";

fn signer() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn key(id: &str) -> HmacKey {
    let secret: Vec<u8> = id.bytes().cycle().take(32).collect();
    HmacKey::new(id, &secret).expect("key")
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").to_utc()
}

fn meta(version: u64, key_id: &str) -> BundleMeta {
    BundleMeta {
        zone: ZONE.into(),
        version,
        created_at: utc("2026-06-01T00:00:00Z"),
        key_id: key_id.into(),
    }
}

fn hit_bundle(version: u64, key_id: &str, csv: &str) -> Vec<u8> {
    anpr_wire::build::build_from_csv(
        ListKind::Hit,
        &meta(version, key_id),
        csv,
        &key(key_id),
        &signer(),
    )
    .expect("builds")
}

fn exemption_bundle(version: u64, key_id: &str, csv: &str) -> Vec<u8> {
    anpr_wire::build::build_from_csv(
        ListKind::Exemption,
        &meta(version, key_id),
        csv,
        &key(key_id),
        &signer(),
    )
    .expect("builds")
}

const HITS: &str = "plate,entry_id,banned_from,vehicle_class\n\
VB-123-X,h1,2025-01-01,N1\n\
12-BDF-3,h2,2025-01-01\n\
GH-066-X,h3,2027-01-01,N1\n";

fn lists(key_ids: &[&str]) -> Arc<Lists> {
    Arc::new(Lists::new(ListsSetup {
        zone: ZONE.into(),
        public_key: Some(signer().verifying_key()),
        keys: KeyRing::new(key_ids.iter().map(|k| key(k))),
        hit_list: None,
        exemptions: None,
        max_age: Some(chrono::Duration::hours(48)),
        clocks: Arc::new(RealClocks::new()),
    }))
}

fn policy_with(l: Arc<Lists>, zone: ZoneRules) -> Policy {
    Policy::new(zone, l, 0.8, ForeignPlates::Count)
}

fn policy() -> Policy {
    let l = lists(&["k1"]);
    l.install(&hit_bundle(1, "k1", HITS), Some(ListKind::Hit))
        .expect("installs");
    policy_with(l, ZoneRules::always(ZONE))
}

fn instant(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        mono: Duration::ZERO,
        wall: at,
        sync: SyncState {
            synchronised: true,
            max_error_us: 0,
        },
    }
}

fn passage_at(text: &str, confidence: f32, at: &str, direction: Direction) -> Passage {
    let t = instant(utc(at));
    Passage {
        camera: Arc::from("north"),
        first_seen: t,
        last_seen: t,
        frames: 5,
        reads: 5,
        plate: PlateText {
            text: text.into(),
            char_confidences: vec![confidence; text.len()],
            confidence,
            country: None,
        },
        alternatives: vec![],
        direction,
        lane: None,
        best: BestFrame {
            captured: t,
            frame_seq: 1,
            image: Arc::new(RgbImage::new(1, 1)),
            plate_box: BoxF {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
            },
            crop: Arc::new(RgbImage::new(1, 1)),
        },
    }
}

fn passage(text: &str, confidence: f32) -> Passage {
    passage_at(text, confidence, "2027-03-10T10:00:00Z", Direction::Towards)
}

#[test]
fn hit_without_exemption_is_a_violation_with_its_reason() {
    match policy().decide(&passage("VB123X", 0.95)) {
        Outcome::Violation(d) => {
            assert_eq!(d.entry_id, "h1");
            assert_eq!(d.rule, "hit_list_no_exemption");
            assert_eq!(d.hit_list_version, "1");
            assert_eq!(d.exemption_list_version, "");
            assert_eq!(d.zone_id, ZONE);
            assert_eq!(d.key_id, "k1");
            assert_eq!(d.banned_from, "2025-01-01");
        }
        other => panic!("expected a violation, got {other:?}"),
    }
    assert_eq!(
        policy().decide(&passage("XX99XX", 0.95)),
        Outcome::NonHit,
        "unknown plate"
    );
}

#[test]
fn an_uncertain_read_of_a_hit_is_not_acted_on() {
    assert_eq!(
        policy().decide(&passage("VB123X", 0.5)),
        Outcome::LowConfidence
    );
}

#[test]
fn masking_keeps_only_the_ends() {
    assert_eq!(mask_plate("VB123X"), "VB***X");
    assert_eq!(normalise_plate(" vb-123-x "), "VB123X");
}

#[test]
fn hit_banned_from_2027_is_not_a_violation_in_2026() {
    let p = policy();
    assert_eq!(
        p.decide(&passage_at(
            "GH066X",
            0.95,
            "2026-12-31T22:59:59Z",
            Direction::Towards
        )),
        Outcome::NotYetBanned,
        "23:59:59 local on 31 December 2026"
    );
    // 23:00 UTC on 31 December is already 1 January in Amsterdam.
    assert!(matches!(
        p.decide(&passage_at(
            "GH066X",
            0.95,
            "2026-12-31T23:00:00Z",
            Direction::Towards
        )),
        Outcome::Violation(_)
    ));
}

#[test]
fn exiting_vehicle_is_not_a_violation() {
    let l = policy().lists().clone();
    let p = policy_with(
        l,
        ZoneRules::always(ZONE).with_camera("north", Entering::Towards),
    );
    let at = "2027-03-10T10:00:00Z";
    assert_eq!(
        p.decide(&passage_at("VB123X", 0.95, at, Direction::Away)),
        Outcome::NotEntering
    );
    assert_eq!(
        p.decide(&passage_at("VB123X", 0.95, at, Direction::Unknown)),
        Outcome::NotEntering,
        "an unknown direction is not proof of entering"
    );
    assert!(matches!(
        p.decide(&passage_at("VB123X", 0.95, at, Direction::Towards)),
        Outcome::Violation(_)
    ));
}

#[test]
fn outside_operating_hours_is_not_a_violation() {
    let l = policy().lists().clone();
    let z = ZoneConfig {
        id: ZONE.into(),
        time_zone: "Europe/Amsterdam".into(),
        days: ["mon", "tue", "wed", "thu", "fri"]
            .map(String::from)
            .to_vec(),
        from: "07:00".into(),
        until: "19:00".into(),
    };
    let p = policy_with(l, ZoneRules::from_config(&z, &[]).expect("valid"));
    // Wednesday 10 March 2027, 19:30 local (UTC+1).
    assert_eq!(
        p.decide(&passage_at(
            "VB123X",
            0.95,
            "2027-03-10T18:30:00Z",
            Direction::Towards
        )),
        Outcome::OutsideHours
    );
    // Saturday.
    assert_eq!(
        p.decide(&passage_at(
            "VB123X",
            0.95,
            "2027-03-13T10:00:00Z",
            Direction::Towards
        )),
        Outcome::OutsideHours
    );
    assert!(matches!(
        p.decide(&passage_at(
            "VB123X",
            0.95,
            "2027-03-10T17:59:00Z",
            Direction::Towards
        )),
        Outcome::Violation(_)
    ));
}

#[test]
fn the_policy_calls_a_plate_dutch_by_the_readers_rule() {
    // One rule (`plate::dutch_sidecode`): a Belgian plate that has a Dutch
    // shape but a letter the RDW never issues is foreign, and a plate of the
    // 1951-1978 series, vowels and all, is Dutch and acted on.
    let l = lists(&["k1"]);
    l.install(
        &hit_bundle(
            1,
            "k1",
            "1CMV33,h1,2025-01-01
NA-12-34,h2,2025-01-01
",
        ),
        None,
    )
    .expect("installs");
    let p = policy_with(l, ZoneRules::always(ZONE));
    assert_eq!(p.decide(&passage("1CMV33", 0.95)), Outcome::Foreign);
    assert!(matches!(
        p.decide(&passage("NA1234", 0.95)),
        Outcome::Violation(_)
    ));
}

#[test]
fn foreign_plate_is_counted_not_uploaded() {
    // A German plate on the hit list (as a backend might list it) still ends
    // here by default: it fits no Dutch sidecode.
    let l = lists(&["k1"]);
    l.install(
        &hit_bundle(1, "k1", "BAB1234,h9,2025-01-01\nVB123X,h1,2025-01-01\n"),
        None,
    )
    .expect("installs");
    let counting = policy_with(l.clone(), ZoneRules::always(ZONE));
    assert_eq!(counting.decide(&passage("BAB1234", 0.95)), Outcome::Foreign);
    assert!(matches!(
        counting.decide(&passage("VB123X", 0.95)),
        Outcome::Violation(_)
    ));
    let checking = Policy::new(ZoneRules::always(ZONE), l, 0.8, ForeignPlates::Check);
    assert!(matches!(
        checking.decide(&passage("BAB1234", 0.95)),
        Outcome::Violation(_)
    ));
}

#[test]
fn day_permit_covers_0600_next_day_across_dst() {
    // Clocks go forward at 02:00 on Sunday 29 March 2026: the permit for
    // Saturday 28 March runs 00:00 CET to 06:00 CEST, 29 hours, not 30.
    let (from, until) = anpr_wire::build::csv::day_permit(
        NaiveDate::from_ymd_opt(2026, 3, 28).expect("date"),
        &chrono_tz::Europe::Amsterdam,
    );
    assert_eq!(from, utc("2026-03-27T23:00:00Z"));
    assert_eq!(until, utc("2026-03-29T04:00:00Z"));
    let l = lists(&["k1"]);
    l.install(&hit_bundle(1, "k1", HITS), None).expect("hits");
    let csv = format!(
        "VB123X,permit-1,{},{},{ZONE}\n",
        from.to_rfc3339(),
        until.to_rfc3339()
    );
    l.install(&exemption_bundle(1, "k1", &csv), None)
        .expect("exemptions");
    let p = policy_with(l, ZoneRules::always(ZONE));
    let at = |t: &str| p.decide(&passage_at("VB123X", 0.95, t, Direction::Towards));
    assert!(
        matches!(at("2026-03-27T22:59:00Z"), Outcome::Violation(_)),
        "23:59 Friday"
    );
    assert_eq!(
        at("2026-03-27T23:00:00Z"),
        Outcome::Exempt,
        "00:00 Saturday"
    );
    assert_eq!(
        at("2026-03-29T00:59:00Z"),
        Outcome::Exempt,
        "01:59 CET, before the change"
    );
    assert_eq!(
        at("2026-03-29T01:00:00Z"),
        Outcome::Exempt,
        "03:00 CEST, after it"
    );
    assert_eq!(at("2026-03-29T03:59:00Z"), Outcome::Exempt, "05:59 CEST");
    assert!(
        matches!(at("2026-03-29T04:00:00Z"), Outcome::Violation(_)),
        "06:00 CEST: the permit has ended (a fixed +01:00 would run to 07:00)"
    );
}

#[test]
fn an_exemption_for_another_zone_does_not_apply() {
    let l = lists(&["k1"]);
    l.install(&hit_bundle(1, "k1", HITS), None).expect("hits");
    l.install(
        &exemption_bundle(
            1,
            "k1",
            "VB123X,e1,2027-01-01T00:00:00Z,2028-01-01T00:00:00Z,rtm-ze\n\
             12BDF3,e2,2027-01-01T00:00:00Z,2028-01-01T00:00:00Z\n",
        ),
        None,
    )
    .expect("exemptions");
    let p = policy_with(l, ZoneRules::always(ZONE));
    assert!(matches!(
        p.decide(&passage("VB123X", 0.95)),
        Outcome::Violation(_)
    ));
    assert_eq!(p.decide(&passage("12BDF3", 0.95)), Outcome::Exempt);
}

#[test]
fn two_key_ids_in_force_during_rotation() {
    // The new hit list is hashed with k2 while the exemptions still use k1.
    let l = lists(&["k1", "k2"]);
    l.install(&hit_bundle(2, "k2", HITS), None)
        .expect("hits, k2");
    l.install(
        &exemption_bundle(
            1,
            "k1",
            "12BDF3,e1,2027-01-01T00:00:00Z,2028-01-01T00:00:00Z\n",
        ),
        None,
    )
    .expect("exemptions, k1");
    let p = policy_with(l.clone(), ZoneRules::always(ZONE));
    match p.decide(&passage("VB123X", 0.95)) {
        Outcome::Violation(d) => assert_eq!(d.key_id, "k2"),
        other => panic!("expected a violation, got {other:?}"),
    }
    assert_eq!(p.decide(&passage("12BDF3", 0.95)), Outcome::Exempt);
    // A bundle under a key the device does not hold is refused.
    let err = l
        .install(&hit_bundle(3, "k3", HITS), None)
        .expect_err("unknown key");
    assert!(
        matches!(err, ListError::UnknownKeyId(ref k) if k == "k3"),
        "{err}"
    );
    assert_eq!(l.hit_list().expect("in force").header.version, 2);
}

#[test]
fn bad_signature_keeps_last_good_list() {
    let p = policy();
    let mut bad = hit_bundle(2, "k1", "VB123X,changed,2025-01-01\n");
    let n = bad.len();
    bad[n - 1] ^= 1;
    let err = p.lists().install(&bad, None).expect_err("bad signature");
    assert!(
        matches!(err, ListError::Bundle(BundleError::BadSignature)),
        "{err}"
    );
    // Flipping a byte of an entry is caught the same way.
    let mut bad = hit_bundle(2, "k1", "VB123X,changed,2025-01-01\n");
    bad[60] ^= 0x40;
    assert!(p.lists().install(&bad, None).is_err());
    // Signed by someone else.
    let other = anpr_wire::build::build_from_csv(
        ListKind::Hit,
        &meta(2, "k1"),
        "VB123X,changed,2025-01-01\n",
        &key("k1"),
        &SigningKey::from_bytes(&[9u8; 32]),
    )
    .expect("builds");
    assert!(p.lists().install(&other, None).is_err());
    let in_force = p.lists().hit_list().expect("in force");
    assert_eq!(in_force.header.version, 1);
    match p.decide(&passage("VB123X", 0.95)) {
        Outcome::Violation(d) => assert_eq!(d.entry_id, "h1"),
        other => panic!("the last good list still decides, got {other:?}"),
    }
}

#[test]
fn truncated_bundle_is_rejected() {
    let p = policy();
    let good = hit_bundle(2, "k1", HITS);
    for cut in [10, 40, good.len() - 70, good.len() - 64, good.len() - 1] {
        let err = p
            .lists()
            .install(&good[..cut], None)
            .expect_err("truncated");
        assert!(
            matches!(err, ListError::Bundle(BundleError::Truncated(_))),
            "cut at {cut}: {err}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        p.lists().install(&longer, None),
        Err(ListError::Bundle(BundleError::TrailingBytes(1)))
    ));
    assert_eq!(p.lists().hit_list().expect("kept").header.version, 1);
    p.lists()
        .install(&good, None)
        .expect("the whole bundle installs");
}

#[test]
fn older_version_is_rejected() {
    let l = lists(&["k1"]);
    l.install(&hit_bundle(5, "k1", HITS), None).expect("v5");
    let err = l
        .install(&hit_bundle(4, "k1", "VB123X,old,2025-01-01\n"), None)
        .expect_err("older");
    assert_eq!(
        err.to_string(),
        "bundle version 4 is older than the current version 5"
    );
    l.install(&hit_bundle(5, "k1", HITS), None)
        .expect("the same version again is fine");
    l.install(&hit_bundle(6, "k1", HITS), None).expect("newer");
}

#[test]
fn wrong_zone_is_rejected() {
    let l = lists(&["k1"]);
    let mut m = meta(1, "k1");
    m.zone = "rtm-ze".into();
    let b = anpr_wire::build::build_from_csv(ListKind::Hit, &m, HITS, &key("k1"), &signer())
        .expect("b");
    let err = l.install(&b, None).expect_err("wrong zone");
    assert_eq!(
        err.to_string(),
        "bundle is for zone `rtm-ze`, this device enforces `ams-ze`"
    );
    assert!(l.hit_list().is_none());
    // And a list of the wrong kind for its slot.
    let ex = exemption_bundle(1, "k1", "");
    assert!(matches!(
        l.install(&ex, Some(ListKind::Hit)),
        Err(ListError::WrongKind { .. })
    ));
}

#[test]
fn bundle_files_reload_when_changed_and_a_bad_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hits.bundle");
    std::fs::write(&path, hit_bundle(1, "k1", HITS)).expect("write");
    let l = Lists::new(ListsSetup {
        zone: ZONE.into(),
        public_key: Some(signer().verifying_key()),
        keys: KeyRing::new([key("k1")]),
        hit_list: Some(path.clone()),
        exemptions: None,
        max_age: Some(chrono::Duration::hours(48)),
        clocks: Arc::new(RealClocks::new()),
    });
    assert_eq!(l.reload_if_changed(), 1);
    assert_eq!(l.reload_if_changed(), 0, "unchanged");
    let mut bad = hit_bundle(2, "k1", HITS);
    bad.truncate(bad.len() - 3);
    std::fs::write(&path, &bad).expect("write");
    assert_eq!(l.reload_if_changed(), 0);
    let st = l.status(utc("2026-06-01T12:00:00Z"));
    assert_eq!(st.hit_list.as_ref().expect("kept").version, 1);
    assert_eq!(st.rejected, 1);
    let why = st.last_error.expect("the cause is kept");
    assert!(
        why.contains("truncated") && why.contains("keeping the last good list (version 1)"),
        "{why}"
    );
    assert!(!st.alarm);
    std::fs::write(&path, hit_bundle(2, "k1", HITS)).expect("write");
    assert_eq!(l.reload_if_changed(), 1);
    // Three days after the bundle was made, it is too old.
    let st = l.status(utc("2026-06-04T00:00:00Z"));
    assert!(st.alarm, "{st:?}");
    assert!(st.alarm_reasons[0].contains("72 h old"), "{st:?}");
}

#[test]
fn a_configured_list_not_in_force_stops_decisions() {
    let l = Arc::new(Lists::new(ListsSetup {
        zone: ZONE.into(),
        public_key: Some(signer().verifying_key()),
        keys: KeyRing::new([key("k1")]),
        hit_list: Some("/nonexistent/hits.bundle".into()),
        exemptions: None,
        max_age: None,
        clocks: Arc::new(RealClocks::new()),
    }));
    assert_eq!(l.reload_if_changed(), 0);
    let p = policy_with(l.clone(), ZoneRules::always(ZONE));
    assert_eq!(
        p.decide(&passage("VB123X", 0.95)),
        Outcome::ListsUnavailable
    );
    let st = l.status(Utc::now());
    assert!(st.alarm && st.alarm_reasons == ["no hit list in force"]);
}

#[test]
fn the_decoded_header_is_what_was_built() {
    let b = hit_bundle(42, "k1", HITS);
    let h = bundle::decode_header(&b).expect("header");
    assert_eq!(h.kind, ListKind::Hit);
    assert_eq!(h.zone, ZONE);
    assert_eq!(h.version, 42);
    assert_eq!(h.entries, 3);
    assert_eq!(h.created_at, utc("2026-06-01T00:00:00Z"));
    // Building is canonical: the same input in another order gives the same bytes.
    let mut lines: Vec<&str> = HITS.lines().skip(1).collect();
    lines.reverse();
    let shuffled: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(hit_bundle(42, "k1", &shuffled), b);
}
