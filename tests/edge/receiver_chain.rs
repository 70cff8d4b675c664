//! Tombstones end to end: the store replaces an expired record, the real
//! HTTPS client sends it, this receiver checks it and keeps the chain.

use std::sync::Arc;

use chrono::Utc;
use rusqlite::params;

use std::path::PathBuf;
use std::time::Duration;

use anpr_wire::chain::record_sha256;
use tokio_util::sync::CancellationToken;

use anpr_edge::keys::EvidenceSigner;
use anpr_edge::metrics::Metrics;
use anpr_edge::store::{format_time, PendingRecord, Store};
use anpr_edge::testing::{sample_context, sample_signer, sample_violation};
use anpr_edge::upload::{run_uploader, Backend, HttpsBackend, UploadError, UploaderParams};
use anpr_receiver::*;

struct Fixture {
    _dir: tempfile::TempDir,
    pki: TestPki,
    rx: ReceiverHandle,
    db: PathBuf,
}

/// Five pending records, of which the third expired undelivered and is
/// now a tombstone.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    rx.trust_device("cam-post-17", sample_signer().verifying_key());
    let db = dir.path().join("anpr.sqlite");
    let mut s = Store::open(&db).expect("store");
    for i in 1..=5 {
        s.record(&sample_violation(&format!("TOMB{i}")), &sample_context())
            .expect("record");
    }
    let now = Utc::now();
    rusqlite::Connection::open(&db)
        .expect("second connection")
        .execute(
            "UPDATE violation SET created_at = ?1 WHERE seq = 3",
            params![format_time(now - chrono::Duration::days(40))],
        )
        .expect("backdate");
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

fn pending(f: &Fixture) -> Vec<PendingRecord> {
    Store::open(&f.db)
        .expect("store")
        .pending(10)
        .expect("pending")
}

fn backend(f: &Fixture) -> HttpsBackend {
    HttpsBackend::new(&anpr_edge::testing::upload_config(
        &f.rx.url(),
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
    ))
    .expect("backend")
}

/// The receiver holds 1, 2, 4, 5 whole and 3 as a tombstone, in one
/// unbroken chain whose head is the last record's hash.
fn assert_whole_chain(f: &Fixture, recs: &[PendingRecord]) {
    assert_eq!(f.rx.accepted_seqs("cam-post-17"), [1, 2, 3, 4, 5]);
    let whole: Vec<i64> = f.rx.received().iter().map(|r| r.metadata.seq).collect();
    assert_eq!(whole, [1, 2, 4, 5]);
    let t = f.rx.tombstones();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].tombstone.seq, 3);
    assert_eq!(t[0].json, recs[2].signed_json);
    assert!(!t[0].json.contains("TOMB3"), "no plate in a tombstone");
    let chain = recs[0].metadata().expect("record").chain_id.clone();
    let head =
        f.rx.chain_head("cam-post-17", chain.as_deref().expect("chained"))
            .expect("head");
    assert_eq!(head, (5, record_sha256(recs[4].signed_json.as_bytes())));
    assert!(f.rx.refusals().is_empty(), "{:?}", f.rx.refusals());
}

#[tokio::test]
async fn a_tombstone_is_delivered_in_its_place_and_the_chain_goes_on() {
    let f = fixture().await;
    let recs = pending(&f);
    assert!(recs[2].tombstone().is_some());
    let b = backend(&f);
    for rec in &recs {
        assert_eq!(b.deliver(rec).await.expect("ack").id, rec.id);
    }
    // A repeat (an ack that did not reach the device) is answered again
    // and stored once.
    assert_eq!(b.deliver(&recs[2]).await.expect("again").id, recs[2].id);
    assert_eq!(f.rx.tombstones()[0].deliveries, 2);
    assert_whole_chain(&f, &recs);
    f.rx.shutdown().await;
}

#[tokio::test]
async fn the_uploader_sends_a_tombstone_within_a_batch() {
    let f = fixture().await;
    let recs = pending(&f);
    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_uploader(
        f.db.clone(),
        Arc::new(backend(&f)),
        Arc::new(tokio::sync::Notify::new()),
        metrics.clone(),
        UploaderParams::from_config(&anpr_edge::testing::upload_config(
            &f.rx.url(),
            &f.pki.ca_cert,
            Some((&f.pki.client_cert, &f.pki.client_key)),
        )),
        stop.clone(),
    ));
    // Done when the device has marked everything delivered.
    let store = Store::open(&f.db).expect("store");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.pending_count().expect("n") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.expect("join").expect("uploader");
    assert_eq!(f.rx.requests(), 1, "one batch request");
    assert_whole_chain(&f, &recs);
    f.rx.shutdown().await;
}

fn is_status(err: &UploadError, want: u16) -> bool {
    matches!(err, UploadError::Status { status, .. } if *status == want)
}

#[tokio::test]
async fn a_forged_or_altered_tombstone_is_refused() {
    let f = fixture().await;
    let recs = pending(&f);
    let b = backend(&f);
    for rec in &recs[..2] {
        b.deliver(rec).await.expect("ack");
    }
    let genuine = &recs[2];
    let t = genuine.tombstone().expect("tombstone").clone();

    // Signed by another key.
    let mut forged = genuine.clone();
    forged.signature = Some(EvidenceSigner::from_seed([9; 32]).sign(forged.signed_json.as_bytes()));
    let err = b.deliver(&forged).await.expect_err("forged");
    assert!(is_status(&err, 422), "{err}");

    // Altered after signing: it claims another hash for the deleted record.
    let mut altered = genuine.clone();
    altered.signed_json = altered
        .signed_json
        .replace(&t.record_sha256, &"ab".repeat(32));
    let err = b.deliver(&altered).await.expect_err("altered");
    assert!(is_status(&err, 422), "{err}");

    // Unsigned.
    let mut unsigned = genuine.clone();
    unsigned.signature = None;
    let err = b.deliver(&unsigned).await.expect_err("unsigned");
    assert!(is_status(&err, 422), "{err}");

    // Signed by the device but not continuing the chain.
    let mut bent = t.clone();
    bent.prev_record_sha256 = Some("cd".repeat(32));
    let mut off_chain = genuine.clone();
    off_chain.signed_json = serde_json::to_string(&bent).expect("json");
    off_chain.signature = Some(sample_signer().sign(off_chain.signed_json.as_bytes()));
    let err = b.deliver(&off_chain).await.expect_err("off chain");
    assert!(is_status(&err, 422), "{err}");

    assert!(f.rx.tombstones().is_empty());
    assert_eq!(f.rx.refusals().len(), 4);
    // None of them moved the chain: the genuine one still fits, and the rest follow.
    for rec in &recs[2..] {
        b.deliver(rec).await.expect("ack");
    }
    assert_eq!(f.rx.accepted_seqs("cam-post-17"), [1, 2, 3, 4, 5]);
    f.rx.shutdown().await;
}

#[tokio::test]
async fn a_sender_that_dies_mid_body_is_not_taken_for_a_malformed_request() {
    let f = fixture().await;
    let client = anpr_edge::net::pinned_client_with_identity(
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
        Duration::from_secs(10),
        false,
    )
    .expect("client");
    use futures_util::StreamExt as _;
    // The first half goes out and is read; then the device dies.
    let half_a_crop =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
            0xFF;
            64 * 1024
        ]))])
        .chain(futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err(std::io::Error::other("power cut"))
        }));
    let form = reqwest::multipart::Form::new().text("metadata", "{}").part(
        "crop",
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(half_a_crop)),
    );
    let sent = client
        .post(format!("{}/api/v1/violations", f.rx.url()))
        .multipart(form)
        .send()
        .await;
    assert!(sent.is_err(), "the body never finished: {sent:?}");

    // The receiver reads what arrived until the connection closes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.rx.cut_short().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never noticed: {} requests, refused {:?}",
            f.rx.requests(),
            f.rx.refusals()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f.rx.refusals().is_empty(), "{:?}", f.rx.refusals());
    assert!(f.rx.received().is_empty());

    // A body that arrived whole but never closes its multipart is refused.
    let answer = client
        .post(format!("{}/api/v1/violations", f.rx.url()))
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 400);
    assert_eq!(f.rx.refusals().len(), 1, "{:?}", f.rx.refusals());
    assert_eq!(f.rx.cut_short().len(), 1);
    f.rx.shutdown().await;
}

#[tokio::test]
async fn a_tombstone_for_a_record_held_whole_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    rx.trust_device("cam-post-17", sample_signer().verifying_key());
    let b = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &rx.url(),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .expect("backend");
    let db = dir.path().join("anpr.sqlite");
    let mut s = Store::open(&db).expect("store");
    s.record(&sample_violation("LOST1"), &sample_context())
        .expect("record");
    // Delivered, but the ack never reached the device; then it expired.
    b.deliver(&s.pending(1).expect("pending")[0])
        .await
        .expect("ack");
    s.apply_retention(
        Utc::now() + chrono::Duration::days(40),
        chrono::Duration::hours(1),
        chrono::Duration::days(30),
        &sample_signer(),
    )
    .expect("retention");
    let t = s.pending(1).expect("pending").remove(0);
    assert!(t.tombstone().is_some());
    assert_eq!(b.deliver(&t).await.expect("ack").id, t.id);
    assert_eq!(rx.received().len(), 1);
    assert_eq!(rx.received()[0].deliveries, 2);
    assert!(rx.tombstones().is_empty());
    rx.shutdown().await;
}
