//! The list fetcher against the reference receiver: conditional GETs, a bad
//! bundle keeps the list in force, the status page shows what happened.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use anpr_edge::clock::RealClocks;
use anpr_edge::policy::fetch::*;
use anpr_edge::policy::lists::ListsSetup;
use anpr_edge::policy::Lists;
use anpr_wire::bundle::BundleMeta;
use anpr_wire::bundle::ListKind;
use anpr_wire::hash::{HmacKey, KeyRing};
use ed25519_dalek::SigningKey;

const ZONE: &str = "ams-ze";
const HITS: &str = "plate,entry_id,banned_from,vehicle_class\nVB-123-X,h1,2025-01-01,N1\n";
const HITS2: &str =
    "plate,entry_id,banned_from,vehicle_class\nVB-123-X,h1,2025-01-01,N1\n12-ABC-3,h2,2025-01-01\n";

fn signer() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn key() -> HmacKey {
    HmacKey::new("k1", &[9u8; 32]).expect("key")
}

fn hit_bundle(version: u64, created_at: &str, csv: &str) -> Vec<u8> {
    let meta = BundleMeta {
        zone: ZONE.into(),
        version,
        created_at: chrono::DateTime::parse_from_rfc3339(created_at)
            .expect("time")
            .to_utc(),
        key_id: "k1".into(),
    };
    anpr_wire::build::build_from_csv(ListKind::Hit, &meta, csv, &key(), &signer()).expect("builds")
}

fn lists(path: &Path) -> Arc<Lists> {
    Arc::new(Lists::new(ListsSetup {
        zone: ZONE.into(),
        public_key: Some(signer().verifying_key()),
        keys: KeyRing::new([key()]),
        hit_list: Some(path.to_owned()),
        exemptions: None,
        max_age: Some(chrono::Duration::hours(48)),
        clocks: Arc::new(RealClocks::new()),
    }))
}

struct Rig {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    receiver: anpr_receiver::ReceiverHandle,
    lists: Arc<Lists>,
    fetcher: ListFetcher,
    ca: std::path::PathBuf,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("dir");
    let pki = anpr_receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let receiver = anpr_receiver::start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    let path = dir.path().join("hits.bundle");
    let lists = lists(&path);
    let fetcher = ListFetcher::new(
        &receiver.url(),
        &pki.ca_cert,
        Duration::from_secs(10),
        MAX_BUNDLE_BYTES,
        lists.clone(),
    )
    .expect("fetcher");
    Rig {
        _dir: dir,
        path,
        receiver,
        lists,
        fetcher,
        ca: pki.ca_cert.clone(),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}

#[tokio::test]
async fn fetch_installs_and_persists_then_304_changes_nothing() {
    let r = rig().await;
    assert!(r.fetcher.urls()[0].1.ends_with("/api/v1/lists/ams-ze/hit"));
    let v1 = hit_bundle(1, &now_rfc3339(), HITS);
    r.receiver.set_list(ListKind::Hit, ZONE, v1.clone());
    let out = r.fetcher.fetch_all().await;
    assert_eq!(
        out,
        [(ListKind::Hit, FetchOutcome::Installed { version: 1 })]
    );
    assert_eq!(std::fs::read(&r.path).expect("saved"), v1);

    // Unchanged on the server: 304, nothing counted.
    let out = r.fetcher.fetch_all().await;
    assert_eq!(out, [(ListKind::Hit, FetchOutcome::NotModified)]);
    assert_eq!(r.receiver.list_requests(), (2, 1));
    let st = r.lists.status(chrono::Utc::now());
    assert_eq!(st.hit_list.as_ref().map(|l| l.version), Some(1));
    assert_eq!((st.rejected, st.fetch_errors), (0, 0));
    assert_eq!(st.last_error, None);

    // A new version is installed and saved; a restart loads it from disk.
    let v2 = hit_bundle(2, &now_rfc3339(), HITS2);
    r.receiver.set_list(ListKind::Hit, ZONE, v2.clone());
    let out = r.fetcher.fetch_all().await;
    assert_eq!(
        out,
        [(ListKind::Hit, FetchOutcome::Installed { version: 2 })]
    );
    assert_eq!(r.lists.hit_list().expect("in force").list.len(), 2);
    assert_eq!(std::fs::read(&r.path).expect("saved"), v2);
    // The reload task does not load what the fetch already put in force.
    assert_eq!(r.lists.reload_if_changed(), 0);
    let restarted = lists(&r.path);
    assert_eq!(restarted.reload_if_changed(), 1);
    assert_eq!(restarted.hit_list().expect("loaded").header.version, 2);
    r.receiver.shutdown().await;
}

#[tokio::test]
async fn a_bad_signature_is_rejected_and_the_last_good_list_stays() {
    let r = rig().await;
    let v1 = hit_bundle(1, &now_rfc3339(), HITS);
    r.receiver.set_list(ListKind::Hit, ZONE, v1.clone());
    r.fetcher.fetch_all().await;
    let mut bad = hit_bundle(2, &now_rfc3339(), HITS2);
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    r.receiver.set_list(ListKind::Hit, ZONE, bad);
    let out = r.fetcher.fetch_all().await;
    assert_eq!(out, [(ListKind::Hit, FetchOutcome::Rejected)]);
    assert_eq!(r.lists.hit_list().expect("kept").header.version, 1);
    assert_eq!(std::fs::read(&r.path).expect("kept"), v1);
    let st = r.lists.status(chrono::Utc::now());
    assert_eq!(st.rejected, 1);
    let err = st.last_error.expect("error shown");
    assert!(err.contains(&r.fetcher.urls()[0].1), "{err}");
    assert!(
        err.contains("keeping the last good list (version 1)"),
        "{err}"
    );
    // The same bad bundle is not downloaded again (its ETag is sent).
    let out = r.fetcher.fetch_all().await;
    assert_eq!(out, [(ListKind::Hit, FetchOutcome::NotModified)]);
    r.receiver.shutdown().await;
}

#[tokio::test]
async fn network_errors_and_oversized_bodies_are_counted_not_fatal() {
    let r = rig().await;
    // Nothing served yet: 404.
    let out = r.fetcher.fetch_all().await;
    assert_eq!(out, [(ListKind::Hit, FetchOutcome::Failed)]);
    r.receiver
        .set_list(ListKind::Hit, ZONE, hit_bundle(1, &now_rfc3339(), HITS));
    let small = ListFetcher::new(
        &r.receiver.url(),
        &r.ca,
        Duration::from_secs(10),
        10,
        r.lists.clone(),
    )
    .expect("fetcher");
    let out = small.fetch_all().await;
    assert_eq!(out, [(ListKind::Hit, FetchOutcome::Failed)]);
    let st = r.lists.status(chrono::Utc::now());
    assert_eq!(st.fetch_errors, 2);
    assert!(st.last_error.expect("shown").contains("over 10 bytes"));
    assert!(r.lists.hit_list().is_none());
    r.receiver.shutdown().await;
}

#[tokio::test]
async fn status_json_shows_versions_and_the_age_alarm() {
    let r = rig().await;
    // Made long before the 48 h maximum age.
    r.receiver.set_list(
        ListKind::Hit,
        ZONE,
        hit_bundle(7, "2020-01-01T00:00:00Z", HITS),
    );
    r.fetcher.fetch_all().await;
    let lists = r.lists.clone();
    let probe: anpr_edge::status::ListsProbe = Arc::new(move || lists.status(chrono::Utc::now()));
    let stop = CancellationToken::new();
    let cfg = anpr_edge::config::StatusConfig {
        listen: "127.0.0.1:0".into(),
        password_hash: Some(anpr_edge::status::auth::hash_password("pw-123456").expect("hash")),
        ..Default::default()
    };
    let served = anpr_edge::status::serve(
        &cfg,
        anpr_edge::status::StatusContext {
            facts: anpr_edge::status::DeviceFacts {
                device_id: "dev-1".into(),
                software_version: "0".into(),
                model_versions: "m".into(),
                runtime_version: "r".into(),
            },
            metrics: anpr_edge::metrics::Metrics::new(),
            time: anpr_edge::clock::TimeSource::real(),
            lists: Some(probe),
            frames: Default::default(),
            cameras: Vec::new(),
            store_path: std::env::temp_dir().join("none.sqlite"),
        },
        stop.clone(),
    )
    .await
    .expect("bind");
    let (addr, task) = (served.addrs[0], served.task);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // HTTP Basic with "t:pw-123456".
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dDpwdy0xMjM0NTY=\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let body = buf.split_once("\r\n\r\n").expect("body").1;
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("json");
    let alarms = v["alarms"].as_array().expect("alarms");
    assert!(
        alarms.iter().any(|a| a["id"] == "lists"),
        "the age alarm is on the page: {alarms:?}"
    );
    let l = &v["lists"];
    assert_eq!(l["zone"], ZONE);
    assert_eq!(l["hit_list"]["version"], 7);
    assert_eq!(l["hit_list"]["entries"], 1);
    assert!(l["hit_list"]["age_s"].as_i64().expect("age") > 48 * 3600);
    assert_eq!(l["alarm"], true);
    assert!(l["alarm_reasons"][0]
        .as_str()
        .expect("reason")
        .contains("version 7"));
    assert!(l["last_error"].is_null());
    stop.cancel();
    task.await.expect("stops");
    r.receiver.shutdown().await;
}
