//! Mutual TLS, the receiver's checks of signatures and the chain, and backends
//! that answer badly: none of their answers may count as an acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use anpr_edge::keys::{self, EvidenceSigner};
use anpr_edge::metrics::Metrics;
use anpr_edge::store::{PendingRecord, Store};
use anpr_edge::testing::{sample_context, sample_signer, sample_violation};
use anpr_edge::upload::{run_uploader, Backend, HttpsBackend, UploadError, UploaderParams};
use anpr_receiver::{self as receiver, ReceiverOptions, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn store_with(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, Vec<PendingRecord>) {
    let db = dir.join("state").join("anpr.sqlite");
    let mut s = Store::open(&db).expect("store");
    for i in 0..n {
        s.record(&sample_violation(&format!("HB{i:02}")), &sample_context())
            .expect("record");
    }
    let recs = s.pending(100).expect("pending");
    (db, recs)
}

async fn strict_receiver(pki: &TestPki) -> receiver::ReceiverHandle {
    let rx = receiver::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        pki,
        ReceiverOptions {
            require_client_cert: true,
        },
    )
    .await
    .expect("receiver");
    rx.trust_device("cam-post-17", sample_signer().verifying_key());
    rx
}

#[tokio::test]
async fn mutual_tls_admits_the_device_certificate_and_refuses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = strict_receiver(&pki).await;
    let (_db, recs) = store_with(dir.path(), 1);

    let mut anonymous = anpr_edge::testing::upload_config(
        &rx.url(),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    );
    anonymous.client_cert = None;
    anonymous.client_key = None;
    let err = HttpsBackend::new(&anonymous)
        .expect("backend")
        .deliver(&recs[0])
        .await
        .expect_err("no client certificate");
    assert!(
        matches!(err, UploadError::Transport { .. }),
        "a TLS failure, not an answer: {err}"
    );
    assert!(rx.received().is_empty());

    let ack = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &rx.url(),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .expect("backend")
    .deliver(&recs[0])
    .await
    .expect("ack");
    assert_eq!(ack.id, recs[0].id);
    assert_eq!(rx.received().len(), 1);
    rx.shutdown().await;
}

#[tokio::test]
async fn the_provisioned_tls_key_and_evidence_key_are_accepted_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = keys::provision(&keys::ProvisionOptions {
        state_dir: dir.path().join("device"),
        config: None,
        device_id: "cam-post-17".into(),
        force: false,
    })
    .expect("provision");
    let pki =
        receiver::generate_test_pki_for_client(&dir.path().join("pki"), Some(&device.tls_key))
            .expect("pki");
    let rx = receiver::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        &pki,
        ReceiverOptions {
            require_client_cert: true,
        },
    )
    .await
    .expect("receiver");
    rx.trust_device(
        "cam-post-17",
        anpr_wire::chain::verifying_key_from_base64(&device.evidence_public_base64).expect("key"),
    );
    let db = dir.path().join("anpr.sqlite");
    let mut s = Store::open(&db).expect("store");
    let mut ctx = sample_context();
    ctx.signer = EvidenceSigner::load(&device.evidence_key).expect("signer");
    s.record(&sample_violation("PROV1"), &ctx).expect("record");
    let rec = s.pending(1).expect("pending").remove(0);
    let mut cfg = anpr_edge::testing::upload_config(
        &rx.url(),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    );
    cfg.client_key = Some(device.tls_key.clone());
    let ack = HttpsBackend::new(&cfg)
        .expect("backend")
        .deliver(&rec)
        .await
        .expect("ack");
    assert_eq!(ack.id, rec.id);
    // The same record signed by another key is refused.
    let mut s2 = Store::open(&dir.path().join("other.sqlite")).expect("store");
    s2.record(&sample_violation("PROV2"), &sample_context())
        .expect("record");
    let forged = s2.pending(1).expect("pending").remove(0);
    let err = HttpsBackend::new(&cfg)
        .expect("backend")
        .deliver(&forged)
        .await
        .expect_err("wrong key");
    assert!(
        matches!(err, UploadError::Status { status: 422, .. }),
        "{err}"
    );
    rx.shutdown().await;
}

#[tokio::test]
async fn the_receiver_refuses_tampered_unsigned_missing_and_reordered_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = strict_receiver(&pki).await;
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &rx.url(),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .expect("backend");
    let (_db, recs) = store_with(dir.path(), 3);

    // Tampered: one character of the plate changed after signing.
    let mut tampered = recs[0].clone();
    tampered.signed_json = tampered.signed_json.replacen("HB00", "HB08", 1);
    let err = backend.deliver(&tampered).await.expect_err("tampered");
    assert!(
        matches!(&err, UploadError::Status { status: 422, snippet, .. } if snippet.contains("signature")),
        "{err}"
    );
    // Unsigned.
    let mut unsigned = recs[0].clone();
    unsigned.signature = None;
    let err = backend.deliver(&unsigned).await.expect_err("unsigned");
    assert!(
        matches!(err, UploadError::Status { status: 422, .. }),
        "{err}"
    );
    // The second before the first: its predecessor is missing.
    let err = backend.deliver(&recs[1]).await.expect_err("missing");
    assert!(
        matches!(err, UploadError::Status { status: 409, .. }),
        "{err}"
    );
    backend.deliver(&recs[0]).await.expect("first");
    // The third before the second: reordered.
    let err = backend.deliver(&recs[2]).await.expect_err("reordered");
    assert!(
        matches!(&err, UploadError::Status { status: 409, snippet, .. } if snippet.contains("expected seq 2")),
        "{err}"
    );
    backend.deliver(&recs[1]).await.expect("second");
    backend.deliver(&recs[2]).await.expect("third");
    // A repeat is answered again and stored once.
    backend.deliver(&recs[1]).await.expect("repeat");
    let got = rx.received();
    assert_eq!(
        got.iter().map(|r| r.metadata.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(got[1].deliveries, 2);
    assert_eq!(rx.refusals().len(), 4);
    rx.shutdown().await;
}

#[tokio::test]
async fn an_altered_predecessor_breaks_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = strict_receiver(&pki).await;
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &rx.url(),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .expect("backend");
    // Two copies of one fresh database (one chain id) whose first records differ.
    let a = dir.path().join("a.sqlite");
    drop(Store::open(&a).expect("store"));
    let b = dir.path().join("b.sqlite");
    std::fs::copy(&a, &b).expect("copy");
    let record2 = |path: &std::path::Path, first: &str| {
        let mut s = Store::open(path).expect("store");
        s.record(&sample_violation(first), &sample_context())
            .expect("record");
        s.record(&sample_violation("SAME2"), &sample_context())
            .expect("record");
        s.pending(2).expect("pending")
    };
    let from_a = record2(&a, "AAA1");
    let from_b = record2(&b, "BBB1");
    assert_eq!(
        from_a[0].metadata().expect("record").chain_id,
        from_b[0].metadata().expect("record").chain_id
    );
    backend.deliver(&from_a[0]).await.expect("first");
    let err = backend.deliver(&from_b[1]).await.expect_err("broken chain");
    assert!(
        matches!(&err, UploadError::Status { status: 422, snippet, .. } if snippet.contains("chain broken")),
        "{err}"
    );
    backend.deliver(&from_a[1]).await.expect("the true second");
    rx.shutdown().await;
}

#[tokio::test]
async fn a_large_backlog_goes_in_batches_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = strict_receiver(&pki).await;
    let (db, _) = store_with(dir.path(), 40);
    let backend: Arc<dyn Backend> = Arc::new(
        HttpsBackend::new(&anpr_edge::testing::upload_config(
            &rx.url(),
            &pki.ca_cert,
            Some((&pki.client_cert, &pki.client_key)),
        ))
        .expect("backend"),
    );
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_uploader(
        db.clone(),
        backend,
        Arc::new(tokio::sync::Notify::new()),
        metrics.clone(),
        UploaderParams {
            batch: 16,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            idle_poll: Duration::from_secs(60),
            clocks: Arc::new(anpr_edge::clock::RealClocks::new()),
        },
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metrics.snapshot().uploads_acked < 40 {
        assert!(tokio::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.expect("join").expect("uploader");
    let seqs: Vec<i64> = rx.received().iter().map(|r| r.metadata.seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<i64>>());
    assert!(
        rx.requests() <= 4,
        "40 records in batches of 16: {} requests",
        rx.requests()
    );
    rx.shutdown().await;
}

/// A TLS server with the PKI's server certificate that answers every request
/// with `answer(request_number, record_id)` and can drip its bytes slowly.
async fn hostile_server(
    pki: &TestPki,
    answer: impl Fn(usize) -> (Vec<u8>, Option<Duration>) + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let cert_pem = std::fs::read(&pki.server_cert).expect("cert");
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key_pem = std::fs::read(&pki.server_key).expect("key");
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .expect("pem")
        .expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            let i = n;
            n += 1;
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                read_request(&mut tls).await;
                let (bytes, drip) = answer(i);
                match drip {
                    None => {
                        let _ = tls.write_all(&bytes).await;
                    }
                    Some(every) => {
                        for b in bytes {
                            if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            tokio::time::sleep(every).await;
                        }
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// Reads one HTTP/1.1 request (headers, then a Content-Length or chunked body).
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let body = &buf[header_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if done {
            return;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn hostile_answers_are_errors_never_acknowledgements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let (db, recs) = store_with(dir.path(), 1);
    let id = recs[0].id;
    let huge = {
        let mut b = format!("{{\"id\":\"{id}\",\"pad\":\"").into_bytes();
        b.extend(std::iter::repeat_n(b'x', 200_000));
        b.extend_from_slice(b"\"}");
        b
    };
    let other = uuid::Uuid::new_v4();
    let answers: Vec<(Vec<u8>, Option<Duration>)> = vec![
        // A redirect to elsewhere, with an ack-looking body.
        (
            http(
                "307 Temporary Redirect",
                "Location: https://evil.example/api/v1/violations\r\n",
                format!("{{\"id\":\"{id}\"}}").as_bytes(),
            ),
            None,
        ),
        // A huge body that starts with the right id.
        (http("200 OK", "", &huge), None),
        // Garbage with a 200.
        (http("200 OK", "", b"{\"id\": 12, \"ok\": tru"), None),
        // Another record's id.
        (
            http(
                "201 Created",
                "",
                format!("{{\"id\":\"{other}\"}}").as_bytes(),
            ),
            None,
        ),
        // The right ack, dripped one byte per 300 ms: slower than the timeout.
        (
            http("201 Created", "", format!("{{\"id\":\"{id}\"}}").as_bytes()),
            Some(Duration::from_millis(300)),
        ),
    ];
    let kinds = answers.len();
    let answers = Arc::new(answers);
    let a2 = answers.clone();
    let addr = hostile_server(&pki, move |i| a2[i % kinds].clone()).await;
    let mut cfg = anpr_edge::testing::upload_config(
        &format!("https://{addr}"),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    );
    cfg.timeout_s = 2;
    let backend = HttpsBackend::new(&cfg).expect("backend");

    let mut seen = Vec::new();
    for _ in 0..kinds {
        let err = backend.deliver(&recs[0]).await.expect_err("never an ack");
        seen.push(err.to_string());
        match seen.len() {
            1 => assert!(
                matches!(err, UploadError::Status { status: 307, .. }),
                "{err}"
            ),
            2 | 3 => assert!(matches!(err, UploadError::BadAck { .. }), "{err}"),
            4 => assert!(matches!(err, UploadError::WrongId { .. }), "{err}"),
            _ => assert!(
                matches!(
                    err,
                    UploadError::Timeout { .. } | UploadError::Transport { .. }
                ),
                "{err}"
            ),
        }
    }
    eprintln!("as reported: {seen:#?}");

    // The uploader, against the same server for a while, acknowledges nothing.
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_uploader(
        db.clone(),
        Arc::new(backend),
        Arc::new(tokio::sync::Notify::new()),
        metrics.clone(),
        UploaderParams {
            batch: 16,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            idle_poll: Duration::from_secs(60),
            clocks: Arc::new(anpr_edge::clock::RealClocks::new()),
        },
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metrics.snapshot().upload_failures < kinds as u64 {
        assert!(tokio::time::Instant::now() < deadline, "too few attempts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.expect("join").expect("uploader");
    assert_eq!(metrics.snapshot().uploads_acked, 0);
    assert_eq!(
        Store::open(&db).expect("store").pending_count().expect("n"),
        1
    );
}

#[tokio::test]
async fn a_batch_answer_naming_a_stranger_acknowledges_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let (_db, recs) = store_with(dir.path(), 3);
    let (a, b) = (recs[0].id, uuid::Uuid::new_v4());
    let addr = hostile_server(&pki, move |_| {
        let body = format!("{{\"acked\":[\"{a}\",\"{b}\"],\"error\":null}}");
        (http("200 OK", "", body.as_bytes()), None)
    })
    .await;
    let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
        &format!("https://{addr}"),
        &pki.ca_cert,
        Some((&pki.client_cert, &pki.client_key)),
    ))
    .expect("b");
    let err = backend.deliver_batch(&recs).await.expect_err("stranger");
    assert!(matches!(err, UploadError::WrongId { .. }), "{err}");
}
