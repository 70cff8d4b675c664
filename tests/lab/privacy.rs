//! Non-hits never leave memory: after a run with hits and non-hits, no
//! non-hit plate — as text or as its keyed hash — is in the database files,
//! any temporary file, the log output (at the most verbose level) or any
//! answer of the status page (pages, JSON API, metrics).
//!
//! Needs the models (`make models`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anpr_lab::demo::{self, DemoOptions, DEMO_KEY_ID};
use anpr_lab::synth::Scenario;
use anpr_wire::hash::HmacKey;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_trace_of_a_non_hit_in_database_temp_files_logs_or_status() {
    let Some(models) = anpr_edge::testing::fetched_models() else {
        return;
    };

    // Everything the process writes to temporary files lands here.
    let tmp = tempfile::tempdir().expect("tempdir");
    let private_tmp = tmp.path().join("tmp");
    std::fs::create_dir(&private_tmp).expect("mkdir");
    std::env::set_var("TMPDIR", &private_tmp);
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).expect("mkdir");

    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("anpr_edge=trace,info")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let out = rt
        .block_on(demo::run(DemoOptions {
            dir: dir.clone(),
            models_dir: models,
            scenario: Scenario::small_test(),
            upload_port_override: None,
            upload_grace: Duration::from_secs(60),
            progress: None,
        }))
        .expect("the scene runs");

    let non_hits: Vec<&String> = out
        .scene_plates
        .iter()
        .filter(|p| !out.expected_violations.contains(p))
        .collect();
    assert!(
        !non_hits.is_empty() && !out.expected_violations.is_empty(),
        "the scene has both"
    );
    assert_eq!(
        out.received.len(),
        out.expected_violations.len(),
        "the hits went through"
    );
    assert!(
        out.counters.passages as usize >= out.scene_plates.len(),
        "every vehicle was seen"
    );

    let key = HmacKey::load(DEMO_KEY_ID, &out.hmac_key_path).expect("demo key");
    let mut db = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", out.store_path.display())) {
            db.extend(b);
        }
    }
    let temp_files: Vec<(PathBuf, Vec<u8>)> = files_below(&private_tmp)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect();
    let log_text = logs.0.lock().expect("lock").clone();
    assert!(find(&log_text, b"camera"), "logs were captured at all");
    assert!(
        out.status_json.contains("passages"),
        "status answered: {}",
        out.status_json
    );
    for (path, answer) in &out.status_answers {
        assert!(
            answer.starts_with(['{', '[', '<', '#']) && !answer.contains("log in first"),
            "the status page answered {path} (logged in): {answer}"
        );
    }

    for plate in &non_hits {
        let hash = key.hash_plate(plate);
        let hash_hex = hex::encode(hash);
        let forms: [&[u8]; 3] = [plate.as_bytes(), &hash, hash_hex.as_bytes()];
        for form in forms {
            assert!(
                !find(&db, form),
                "non-hit {plate} found in the database files"
            );
            assert!(!find(&log_text, form), "non-hit {plate} found in the logs");
            for (path, answer) in &out.status_answers {
                assert!(
                    !find(answer.as_bytes(), form),
                    "non-hit {plate} found in the status page's answer to {path}"
                );
            }
            for (p, b) in &temp_files {
                assert!(
                    !find(b, form),
                    "non-hit {plate} found in temporary file {}",
                    p.display()
                );
            }
        }
    }
    // The check can find what it looks for: the violation is in the database.
    let hit = &out.expected_violations[0];
    assert!(find(&db, hit.as_bytes()), "the violation {hit} is recorded");
    rt.block_on(out.receiver.shutdown());
}
