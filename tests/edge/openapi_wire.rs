//! What the device really sends, and what the reference receiver answers,
//! against `docs/ref/upload-api.yaml`: records (one with its images, one
//! without), a tombstone, singly and in a batch through the real HTTPS
//! client; every `metadata` and `tombstone` part the receiver got must
//! validate against the YAML's schemas, and every answer must be a status
//! the YAML documents for that endpoint, with a body its schema accepts.
//! `crates/wire/tests/openapi.rs` holds the same YAML to the anpr-wire types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use reqwest::multipart::{Form, Part};
use rusqlite::params;
use serde_json::{json, Value};

use anpr_edge::keys::EvidenceSigner;
use anpr_edge::store::{format_time, PendingRecord, Store};
use anpr_edge::testing::{sample_context, sample_signer, sample_violation, upload_config};
use anpr_edge::upload::{Backend, HttpsBackend};
use anpr_receiver::{generate_test_pki, start, ReceiverHandle, TestPki};
use anpr_wire::bundle::ListKind;
use anpr_wire::record::reason;

const YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/ref/upload-api.yaml"
);
const DEVICE: &str = "cam-post-17";

fn openapi() -> Value {
    let text = std::fs::read_to_string(YAML).unwrap_or_else(|e| panic!("cannot read {YAML}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{YAML} is not YAML: {e}"))
}

/// A validator for the schema at `reference` (`#/components/...`), its
/// `$ref`s resolved within the document, formats checked.
fn validator(doc: &Value, reference: &str) -> jsonschema::Validator {
    assert!(
        doc.pointer(reference.trim_start_matches('#')).is_some(),
        "{YAML} has nothing at {reference}"
    );
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": reference,
        "components": doc["components"],
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{reference} is not a usable JSON Schema: {e}"))
}

fn schema(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// Fails, saying where, unless `instance` validates against `reference`.
fn assert_valid(doc: &Value, reference: &str, instance: &Value, what: &str) {
    let v = validator(doc, reference);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate against {reference} in {YAML}:\n  {}\n{instance}",
        errors.join("\n  ")
    );
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    pki: TestPki,
    rx: ReceiverHandle,
    db: PathBuf,
}

/// Five pending records: the third expired undelivered and is a tombstone,
/// the fourth lost its images to the disk budget.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    rx.trust_device(DEVICE, sample_signer().verifying_key());
    let db = dir.path().join("anpr.sqlite");
    let mut s = Store::open(&db).expect("store");
    for i in 1..=5 {
        s.record(&sample_violation(&format!("OAS{i}")), &sample_context())
            .expect("record");
    }
    let now = Utc::now();
    let conn = rusqlite::Connection::open(&db).expect("second connection");
    conn.execute(
        "UPDATE violation SET created_at = ?1 WHERE seq = 3",
        params![format_time(now - chrono::Duration::days(40))],
    )
    .expect("backdate");
    // As the store itself drops the images of a record at its disk budget.
    conn.execute(
        "UPDATE violation SET overview_jpeg = x'', crop_jpeg = x'', evidence_dropped = ?1
         WHERE seq = 4",
        params![reason::NEW_EVIDENCE_BUDGET],
    )
    .expect("drop evidence");
    let r = s
        .apply_retention(
            now,
            chrono::Duration::hours(72),
            chrono::Duration::days(30),
            &sample_signer(),
        )
        .expect("retention");
    assert_eq!(r.unacked_records_expired, vec![3]);
    Fixture {
        _dir: dir,
        pki,
        rx,
        db,
    }
}

fn pending(db: &Path) -> Vec<PendingRecord> {
    Store::open(db)
        .expect("store")
        .pending(10)
        .expect("pending")
}

fn backend(f: &Fixture) -> HttpsBackend {
    HttpsBackend::new(&upload_config(
        &f.rx.url(),
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
    ))
    .expect("backend")
}

#[tokio::test]
async fn what_the_device_sends_validates_against_the_yaml() {
    let doc = openapi();
    let f = fixture().await;
    let recs = pending(&f.db);
    assert_eq!(recs.len(), 5);
    assert!(recs[2].tombstone().is_some(), "seq 3 is a tombstone");
    assert!(recs[3].evidence_dropped.is_some(), "seq 4 has no images");
    let b = backend(&f);
    // One single post (201), then a batch holding a record, the tombstone,
    // the record without images and another record.
    assert_eq!(b.deliver(&recs[0]).await.expect("ack").id, recs[0].id);
    let acked = b.deliver_batch(&recs[1..]).await.expect("batch ack");
    assert_eq!(
        acked,
        recs[1..].iter().map(|r| r.id).collect::<Vec<_>>(),
        "refused: {:?}",
        f.rx.refusals()
    );

    let received = f.rx.received();
    let tombstones = f.rx.tombstones();
    assert_eq!((received.len(), tombstones.len()), (4, 1));
    for r in &received {
        let what = format!("the metadata part of seq {}", r.metadata.seq);
        let sent = recs
            .iter()
            .find(|p| p.id == r.metadata.id)
            .expect("a record of ours");
        assert_eq!(r.metadata_json, sent.signed_json, "{what}: not as stored");
        let body: Value = serde_json::from_str(&r.metadata_json).expect("JSON");
        assert_valid(&doc, &schema("RecordMetadata"), &body, &what);
        assert_valid(&doc, &schema("Signature"), &json!(r.signature), &what);
        // The parts as the receiver got them: one of the documented shapes.
        let mut parts = json!({"metadata": body, "signature": r.signature});
        match &r.evidence_dropped {
            Some(why) => {
                assert!(r.overview_jpeg.is_empty() && r.crop_jpeg.is_empty());
                parts["evidence_dropped"] = json!(why);
            }
            None => {
                parts["overview"] = json!("(jpeg)");
                parts["crop"] = json!("(jpeg)");
            }
        }
        assert_valid(&doc, &schema("ViolationUpload"), &parts, &what);
    }
    let dropped: Vec<_> = received
        .iter()
        .filter_map(|r| r.evidence_dropped.as_deref())
        .collect();
    assert_eq!(dropped, [reason::NEW_EVIDENCE_BUDGET]);
    for t in &tombstones {
        let what = format!("the tombstone part of seq {}", t.tombstone.seq);
        assert_eq!(t.json, recs[2].signed_json, "{what}: not as stored");
        let body: Value = serde_json::from_str(&t.json).expect("JSON");
        assert_valid(&doc, &schema("Tombstone"), &body, &what);
        let parts = json!({"tombstone": body, "signature": t.signature});
        assert_valid(&doc, &schema("ViolationUpload"), &parts, &what);
    }
    assert!(f.rx.refusals().is_empty(), "{:?}", f.rx.refusals());
    f.rx.shutdown().await;
}

/// A record's parts as `HttpsBackend` builds them
/// (`crates/edge/src/upload/https.rs`, `add_parts`).
fn add_parts(form: Form, rec: &PendingRecord, suffix: &str) -> Form {
    let json_part = if rec.tombstone().is_some() {
        "tombstone"
    } else {
        "metadata"
    };
    let mut form = form.part(
        format!("{json_part}{suffix}"),
        Part::text(rec.signed_json.clone())
            .mime_str("application/json")
            .expect("mime"),
    );
    if let Some(sig) = &rec.signature {
        form = form.part(format!("signature{suffix}"), Part::text(sig.clone()));
    }
    if rec.tombstone().is_some() {
        return form;
    }
    match &rec.evidence_dropped {
        Some(why) => form.part(format!("evidence_dropped{suffix}"), Part::text(why.clone())),
        None => form
            .part(
                format!("overview{suffix}"),
                Part::bytes(rec.overview_jpeg.clone())
                    .file_name("overview.jpg")
                    .mime_str("image/jpeg")
                    .expect("mime"),
            )
            .part(
                format!("crop{suffix}"),
                Part::bytes(rec.crop_jpeg.clone())
                    .file_name("crop.jpg")
                    .mime_str("image/jpeg")
                    .expect("mime"),
            ),
    }
}

/// Checks an answer against what the YAML documents for `method path`:
/// the status is listed (not only covered by `default`), its required
/// headers are there and fit their schemas, and a JSON body fits its
/// schema. Returns the body.
async fn check_answer(
    doc: &Value,
    method: &str,
    path: &str,
    resp: reqwest::Response,
    what: &str,
) -> (u16, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    let op = &doc["paths"][path][method];
    let documented = op["responses"].get(status.to_string()).unwrap_or_else(|| {
        panic!("{what}: {method} {path} answered {status}, which {YAML} does not list")
    });
    let documented = resolve(doc, documented);
    for (name, h) in documented["headers"].as_object().into_iter().flatten() {
        let h = resolve(doc, h);
        if h["required"] != json!(true) {
            continue;
        }
        let value = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: {status} without the header {name}"));
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        let v = jsonschema::validator_for(&h["schema"]).expect("an inline header schema");
        assert!(v.is_valid(&value), "{what}: header {name} = {value}");
    }
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
    let Some(content) = documented["content"].as_object() else {
        assert!(body.is_empty(), "{what}: {status} has an undocumented body");
        return (status, Value::Null);
    };
    let content_type = content_type.unwrap_or_else(|| panic!("{what}: no Content-Type"));
    let media = content.get(&content_type).unwrap_or_else(|| {
        panic!(
            "{what}: {status} came as {content_type}, documented: {:?}",
            content.keys().collect::<Vec<_>>()
        )
    });
    if content_type != "application/json" {
        return (status, Value::Null);
    }
    let value: Value = serde_json::from_slice(&body).expect("a JSON body");
    let at = media["schema"]["$ref"].as_str().expect("a named schema");
    assert_valid(doc, at, &value, &format!("{what}: the {status} body"));
    (status, value)
}

#[tokio::test]
async fn what_the_receiver_answers_is_documented_in_the_yaml() {
    let doc = openapi();
    let f = fixture().await;
    let recs = pending(&f.db);
    let client = anpr_edge::net::pinned_client_with_identity(
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
        Duration::from_secs(10),
        false,
    )
    .expect("client");
    let single = format!("{}/api/v1/violations", f.rx.url());
    let batch = format!("{}/api/v1/violations/batch", f.rx.url());
    let post = |rec: &PendingRecord| {
        client
            .post(&single)
            .header("Idempotency-Key", rec.id.to_string())
            .multipart(add_parts(Form::new(), rec, ""))
            .send()
    };
    let post_batch = |recs: &[PendingRecord]| {
        let form = recs.iter().enumerate().fold(Form::new(), |form, (i, r)| {
            add_parts(form, r, &format!(".{i}"))
        });
        client.post(&batch).multipart(form).send()
    };
    let one = "/api/v1/violations";
    let many = "/api/v1/violations/batch";

    // New, then a repeat: 201 and 200, each an AckBody naming the record.
    let resp = post(&recs[0]).await.expect("answered");
    let (status, body) = check_answer(&doc, "post", one, resp, "a new record").await;
    assert_eq!((status, &body["id"]), (201, &json!(recs[0].id.to_string())));
    let resp = post(&recs[0]).await.expect("answered");
    let (status, body) = check_answer(&doc, "post", one, resp, "a repeat").await;
    assert_eq!((status, &body["id"]), (200, &json!(recs[0].id.to_string())));
    // ... which the device takes as an acknowledgement.
    assert_eq!(
        backend(&f).deliver(&recs[0]).await.expect("ack").id,
        recs[0].id
    );

    // A batch with a tombstone and a record without images; then again.
    let ids: Vec<Value> = recs[1..].iter().map(|r| json!(r.id.to_string())).collect();
    for what in ["a batch", "a repeated batch"] {
        let resp = post_batch(&recs[1..]).await.expect("answered");
        let (status, body) = check_answer(&doc, "post", many, resp, what).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"acked": ids, "error": null}), "{what}");
    }

    // Refusals: each status documented, each body an ErrorBody.
    let mut s = Store::open(&f.db).expect("store");
    let stored = s
        .record(&sample_violation("OAS6"), &sample_context())
        .expect("record");
    let mut sixth = pending(&f.db)
        .into_iter()
        .find(|r| r.id == stored.id)
        .expect("pending");
    assert_eq!(sixth.seq, 6);
    let genuine = sixth.clone();
    sixth.signature = Some(EvidenceSigner::from_seed([9; 32]).sign(sixth.signed_json.as_bytes()));
    let resp = post(&sixth).await.expect("answered");
    let (status, _) = check_answer(&doc, "post", one, resp, "a forged signature").await;
    assert_eq!(status, 422);
    // In a batch the same refusal is a 200 that acknowledges nothing.
    let resp = post_batch(std::slice::from_ref(&sixth))
        .await
        .expect("answered");
    let (status, body) = check_answer(&doc, "post", many, resp, "a refused batch").await;
    assert_eq!((status, &body["acked"]), (200, &json!([])));
    assert!(body["error"].is_string(), "{body}");

    let mut altered = recs[0].clone();
    altered.signed_json = altered.signed_json.replace("OAS1", "OAS9");
    let resp = post(&altered).await.expect("answered");
    let (status, _) = check_answer(&doc, "post", one, resp, "other bytes under a held id").await;
    assert_eq!(status, 409);

    let resp = client
        .post(&single)
        .multipart(add_parts(Form::new(), &genuine, ""))
        .send()
        .await
        .expect("answered");
    let (status, _) = check_answer(&doc, "post", one, resp, "no Idempotency-Key").await;
    assert_eq!(status, 400);

    let mut ctx = sample_context();
    ctx.device_id = "cam-nobody-knows".into();
    let other_db = f._dir.path().join("other.sqlite");
    Store::open(&other_db)
        .expect("store")
        .record(&sample_violation("OAS7"), &ctx)
        .expect("record");
    let stranger = pending(&other_db).remove(0);
    let resp = post(&stranger).await.expect("answered");
    let (status, _) = check_answer(&doc, "post", one, resp, "an unknown device").await;
    assert_eq!(status, 403);

    // Busy: 503 with Retry-After, on both endpoints.
    f.rx.fail_next(2, Duration::from_secs(7));
    let resp = post(&genuine).await.expect("answered");
    let (status, _) = check_answer(&doc, "post", one, resp, "a busy backend").await;
    assert_eq!(status, 503);
    let resp = post_batch(std::slice::from_ref(&genuine))
        .await
        .expect("answered");
    let (status, _) = check_answer(&doc, "post", many, resp, "a busy backend").await;
    assert_eq!(status, 503);
    // The genuine one still goes in.
    let resp = post(&genuine).await.expect("answered");
    let (status, _) = check_answer(&doc, "post", one, resp, "the sixth record").await;
    assert_eq!(status, 201);

    // The lists, fetched as the device does: no client certificate.
    let lists_client =
        anpr_edge::net::pinned_client(&f.pki.ca_cert, Duration::from_secs(10), false)
            .expect("client");
    let lists = "/api/v1/lists/{zone}/{kind}";
    f.rx.set_list(
        ListKind::Hit,
        "ams-ze",
        b"ANPRLST\x01 not checked here".to_vec(),
    );
    let url = |kind: ListKind| format!("{}/api/v1/lists/ams-ze/{}", f.rx.url(), kind.as_str());
    let resp = lists_client
        .get(url(ListKind::Hit))
        .send()
        .await
        .expect("answered");
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_string();
    let (status, _) = check_answer(&doc, "get", lists, resp, "a list").await;
    assert_eq!(status, 200);
    let resp = lists_client
        .get(url(ListKind::Hit))
        .header(reqwest::header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("answered");
    let (status, _) = check_answer(&doc, "get", lists, resp, "an unchanged list").await;
    assert_eq!(status, 304);
    let resp = lists_client
        .get(url(ListKind::Exemption))
        .send()
        .await
        .expect("answered");
    let (status, _) = check_answer(&doc, "get", lists, resp, "a list nobody set").await;
    assert_eq!(status, 404);
    f.rx.shutdown().await;
}
