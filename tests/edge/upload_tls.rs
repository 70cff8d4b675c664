//! The real HTTPS client against the reference receiver, over TLS on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use anpr_edge::metrics::Metrics;
use anpr_edge::store::{PendingRecord, Store};
use anpr_edge::testing::{sample_context, sample_signer, sample_violation};
use anpr_edge::upload::{run_uploader, Backend, HttpsBackend, UploadError, UploaderParams};
use anpr_receiver::{self as receiver, ReceiverHandle, TestPki};
use tokio_util::sync::CancellationToken;

struct Fixture {
    _dir: tempfile::TempDir,
    pki: TestPki,
    rx: ReceiverHandle,
    db: std::path::PathBuf,
}

async fn fixture(records: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = receiver::start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    rx.trust_device("cam-post-17", sample_signer().verifying_key());
    let db = dir.path().join("state").join("anpr.sqlite");
    let mut s = Store::open(&db).expect("store");
    for i in 0..records {
        s.record(&sample_violation(&format!("TLS{i:02}")), &sample_context())
            .expect("record");
    }
    Fixture {
        _dir: dir,
        pki,
        rx,
        db,
    }
}

fn first_pending(f: &Fixture) -> PendingRecord {
    Store::open(&f.db)
        .expect("store")
        .pending(1)
        .expect("pending")
        .remove(0)
}

#[tokio::test]
async fn tls_round_trip_acks_and_a_repeat_is_stored_once() {
    let f = fixture(1).await;
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &f.rx.url(),
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
    ))
    .expect("backend");
    let rec = first_pending(&f);
    let ack = backend.deliver(&rec).await.expect("ack");
    assert_eq!(ack.id, rec.id);
    let again = backend.deliver(&rec).await.expect("second ack");
    assert_eq!(again.id, rec.id);
    let got = f.rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].deliveries, 2);
    assert_eq!(got[0].metadata_json, rec.signed_json);
    assert_eq!(got[0].overview_jpeg, rec.overview_jpeg);
    assert_eq!(got[0].crop_jpeg, rec.crop_jpeg);
    f.rx.shutdown().await;
}

#[tokio::test]
async fn client_trusting_another_ca_gets_a_tls_error_not_an_ack() {
    let f = fixture(1).await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = receiver::generate_test_pki(other_dir.path()).expect("other pki");
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &f.rx.url(),
        &other.ca_cert,
        Some((&other.client_cert, &other.client_key)),
    ))
    .expect("backend");
    let err = backend
        .deliver(&first_pending(&f))
        .await
        .expect_err("must fail");
    eprintln!("as reported: {err}");
    match &err {
        UploadError::Transport { detail, .. } => {
            assert!(detail.to_lowercase().contains("certificate"), "{err}")
        }
        other => panic!("expected a TLS transport error, got {other}"),
    }
    assert!(f.rx.received().is_empty());
    f.rx.shutdown().await;
}

#[tokio::test]
async fn tampered_image_is_rejected_with_422() {
    let f = fixture(1).await;
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &f.rx.url(),
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
    ))
    .expect("backend");
    let mut rec = first_pending(&f);
    let mid = rec.overview_jpeg.len() / 2;
    rec.overview_jpeg[mid] ^= 0x01;
    let err = backend.deliver(&rec).await.expect_err("must fail");
    match &err {
        UploadError::Status {
            status, snippet, ..
        } => {
            assert_eq!(*status, 422);
            assert!(snippet.contains("sha256"), "{err}");
        }
        other => panic!("expected 422, got {other}"),
    }
    assert!(f.rx.received().is_empty());
    f.rx.shutdown().await;
}

#[tokio::test]
async fn garbage_wrong_id_and_503_are_errors_never_acks() {
    let f = fixture(1).await;
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &f.rx.url(),
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
    ))
    .expect("backend");
    let rec = first_pending(&f);

    f.rx.answer_garbage_next(1);
    let err = backend.deliver(&rec).await.expect_err("garbage");
    assert!(
        matches!(err, UploadError::BadAck { status: 200, .. }),
        "{err}"
    );

    f.rx.answer_wrong_id_next(1);
    let err = backend.deliver(&rec).await.expect_err("wrong id");
    assert!(matches!(err, UploadError::WrongId { .. }), "{err}");

    f.rx.fail_next(1, Duration::from_secs(7));
    let err = backend.deliver(&rec).await.expect_err("503");
    assert!(
        matches!(err, UploadError::Status { status: 503, .. }),
        "{err}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    backend.deliver(&rec).await.expect("finally acked");
    assert_eq!(f.rx.received().len(), 1);
    f.rx.shutdown().await;
}

#[tokio::test]
async fn uploader_delivers_all_records_in_order_through_a_flaky_receiver() {
    let f = fixture(5).await;
    let backend: Arc<dyn Backend> = Arc::new(
        HttpsBackend::new(&anpr_edge::testing::upload_config(
            &f.rx.url(),
            &f.pki.ca_cert,
            Some((&f.pki.client_cert, &f.pki.client_key)),
        ))
        .expect("backend"),
    );
    f.rx.fail_next(2, Duration::ZERO);
    f.rx.answer_garbage_next(1);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let params = UploaderParams {
        batch: 2,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        idle_poll: Duration::from_secs(60),
        clocks: Arc::new(anpr_edge::clock::RealClocks::new()),
    };
    let task = tokio::spawn(run_uploader(
        f.db.clone(),
        backend,
        Arc::new(tokio::sync::Notify::new()),
        metrics.clone(),
        params,
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metrics.snapshot().uploads_acked < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.expect("join").expect("uploader");
    let got = f.rx.received();
    let seqs: Vec<i64> = got.iter().map(|r| r.metadata.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let m = metrics.snapshot();
    assert_eq!(m.upload_failures, 3);
    assert_eq!(m.pending_uploads, 0);
    assert_eq!(
        Store::open(&f.db)
            .expect("store")
            .pending_count()
            .expect("n"),
        0
    );
    f.rx.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_never_answers_is_a_timeout_not_an_ack() {
    let f = fixture(1).await;
    // Accepts TCP connections and then says nothing, not even a TLS hello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = anpr_edge::testing::upload_config(
        &format!("https://{addr}"),
        &f.pki.ca_cert,
        Some((&f.pki.client_cert, &f.pki.client_key)),
    );
    cfg.timeout_s = 1;
    let backend = HttpsBackend::new(&cfg).expect("backend");
    let started = std::time::Instant::now();
    let err = backend
        .deliver(&first_pending(&f))
        .await
        .expect_err("must fail");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            err,
            UploadError::Timeout { .. } | UploadError::Transport { .. }
        ),
        "{err}"
    );
    eprintln!("as reported: {err}");
    hold.abort();
    f.rx.shutdown().await;
}
