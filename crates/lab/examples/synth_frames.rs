//! Writes synthetic frames as PNG plus `truth.json` (ground truth per frame) so the
//! plate detector and reader can be scored on them outside the daemon.
//!
//! Usage: `cargo run --example synth_frames -- [demo|small] [OUT_DIR]`
//! (default: `small /tmp/synth_frames`). Writes only into OUT_DIR.

use std::path::PathBuf;
use std::time::Instant;

use anpr_lab::synth::{frame_truth, render_frame, Scenario};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "small".into());
    let out = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/synth_frames".into()));
    let s = match which.as_str() {
        "demo" => Scenario::demo(),
        "small" => Scenario::small_test(),
        other => anyhow::bail!("unknown scenario {other:?}: use demo or small"),
    };
    s.validate()?;
    std::fs::create_dir_all(&out)?;
    let mut truth = Vec::new();
    let mut render_ms = Vec::new();
    for i in 0..s.frames {
        let t0 = Instant::now();
        let img = render_frame(&s, i);
        render_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        img.save(out.join(format!("frame_{i:05}.png")))?;
        truth.push(frame_truth(&s, i));
    }
    std::fs::write(
        out.join("truth.json"),
        serde_json::to_string_pretty(&truth)?,
    )?;
    render_ms.sort_by(f64::total_cmp);
    println!(
        "{} frames {}x{} into {}; render ms median {:.0} max {:.0}",
        s.frames,
        s.width,
        s.height,
        out.display(),
        render_ms[render_ms.len() / 2],
        render_ms[render_ms.len() - 1]
    );
    Ok(())
}
