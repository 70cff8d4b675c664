//! The daemon under a fake service manager: `anpr-edge run` with
//! `NOTIFY_SOCKET` pointing at a datagram socket this test binds, as systemd
//! does for `Type=notify`. A healthy daemon says READY and then keeps pinging
//! the watchdog; one whose detect stage hangs (the debug-build-only fault
//! switch `ANPR_EDGE_FAULT=hang-detect`) says which stage is stuck and stops
//! pinging, which is what makes systemd restart it.
//!
//! Needs the runtime and models in `models/cache` (`make models`).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// WATCHDOG_USEC handed to the daemon: it pings every half of this.
const WATCHDOG_USEC: u64 = 400_000;

/// A replay camera looping over a few plain frames, no lists (count only),
/// an upload link to a closed port, and a 2 s stuck limit.
fn write_config(dir: &Path, models: &Path) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).expect("frames dir");
    for i in 0..3u8 {
        let img = image::RgbImage::from_pixel(320, 240, image::Rgb([90 + 20 * i, 90, 90]));
        img.save(frames.join(format!("{i:03}.png")))
            .expect("write frame");
    }
    let pki = anpr_receiver::generate_test_pki(&dir.join("pki")).expect("pki");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[device]
id = "watchdog-test"
location = "test"

[runtime]
models_dir = "{models}"
threads = 1

[[camera]]
id = "cam"
source = "replay"
path = "{frames}"
fps = 10.0
looped = true

[pipeline]
stuck_after_s = 2

[store]
path = "{dir}/violations.sqlite"

[upload]
url = "https://127.0.0.1:9"
ca_cert = "{ca}"

[status]
listen = "127.0.0.1:0"

[log]
level = "warn"
"#,
            models = models.display(),
            frames = frames.display(),
            dir = dir.display(),
            ca = pki.ca_cert.display(),
        ),
    )
    .expect("write config");
    cfg
}

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the daemon for `watch` after READY (or until `READY` is overdue) and
/// returns each notify message with the time it arrived, and its stderr.
fn run_daemon(fault: Option<&str>, watch: Duration) -> Option<(Vec<(Instant, String)>, String)> {
    let models = anpr_edge::testing::fetched_models()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), &models);
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anpr-edge"));
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .env_remove("ANPR_EDGE_FAULT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    if let Some(f) = fault {
        cmd.env("ANPR_EDGE_FAULT", f);
    }
    let daemon = Daemon(cmd.spawn().expect("start anpr-edge run"));

    // Loading the models takes a while on a loaded machine; a minute is far
    // beyond it and still ends a test whose daemon never gets ready.
    let mut deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                if text == "READY=1" && !ready {
                    ready = true;
                    deadline = Instant::now() + watch;
                }
                messages.push((Instant::now(), text));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
    drop(daemon);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    Some((messages, stderr))
}

fn pings_after(messages: &[(Instant, String)], after: Instant) -> Vec<Instant> {
    messages
        .iter()
        .filter(|(at, m)| *at > after && m == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect()
}

fn ready_at(messages: &[(Instant, String)], stderr: &str) -> Instant {
    messages
        .iter()
        .find(|(_, m)| m == "READY=1")
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("no READY=1 in {messages:?}\nstderr:\n{stderr}"))
}

#[test]
fn a_healthy_daemon_says_ready_then_keeps_pinging_the_watchdog() {
    let Some((messages, stderr)) = run_daemon(None, Duration::from_secs(6)) else {
        return;
    };
    let ready = ready_at(&messages, &stderr);
    let texts: Vec<&str> = messages.iter().map(|(_, m)| m.as_str()).collect();
    let ready_index = texts.iter().position(|m| *m == "READY=1").unwrap_or(0);
    assert!(
        !texts[..ready_index].contains(&"WATCHDOG=1"),
        "no ping before READY: {texts:?}"
    );
    assert!(
        !texts.iter().any(|m| m.contains("stuck")),
        "nothing stuck: {texts:?}\n{stderr}"
    );
    let pings = pings_after(&messages, ready);
    // Pings every 0.2 s over 6 s: well over ten, even on a loaded machine.
    assert!(pings.len() >= 10, "{} pings: {texts:?}", pings.len());
    let last = messages.last().map(|(at, _)| *at).unwrap_or(ready);
    assert!(
        pings
            .last()
            .is_some_and(|p| last.duration_since(*p) < Duration::from_secs(2)),
        "pings go on to the end: {texts:?}"
    );
}

#[test]
fn a_hung_detect_stage_stops_the_watchdog_pings() {
    let Some((messages, stderr)) = run_daemon(Some("hang-detect"), Duration::from_secs(8)) else {
        return;
    };
    let texts: Vec<&str> = messages.iter().map(|(_, m)| m.as_str()).collect();
    let ready = ready_at(&messages, &stderr);
    let (stuck_at, _) = messages
        .iter()
        .find(|(_, m)| m.starts_with("STATUS=detect stuck on one message"))
        .unwrap_or_else(|| panic!("no stuck status: {texts:?}\nstderr:\n{stderr}"));
    assert!(*stuck_at > ready);
    let after = pings_after(&messages, *stuck_at);
    assert!(
        after.is_empty(),
        "no ping once detect is stuck, got {}: {texts:?}",
        after.len()
    );
    // The watch ends 8 s after READY; the stall is seen about 2 s (the stuck
    // limit) after the first frame, so the silence lasted several watchdog
    // periods (0.4 s), which is what systemd acts on.
    assert!(
        stuck_at.duration_since(ready) < Duration::from_secs(5),
        "stall seen {:?} after READY",
        stuck_at.duration_since(ready)
    );
    assert!(stderr.contains("stage stuck"), "{stderr}");
}
