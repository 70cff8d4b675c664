//! The floors of `crates/edge/src` (docs/design/workspace.md), held by a test:
//! a stage never names a later stage, and the floors below the stages never
//! name a stage, `status`, `pipeline` or the test kit. Test modules are
//! exempt (a test may reach wherever it must).

use std::path::{Path, PathBuf};

const STAGES: [&str; 7] = [
    "capture", "detect", "read", "track", "policy", "store", "upload",
];
const BELOW_THE_STAGES: [&str; 10] = [
    "clock", "plate", "message", "config", "models", "sync", "metrics", "net", "keys", "watchdog",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source folder").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file names as `crate::X`, outside comments and
/// its test module.
fn names(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("source file");
    let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or("");
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// The top-level module `file` belongs to.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

#[test]
fn no_stage_names_a_later_stage_and_no_lower_floor_names_a_higher_one() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 40, "found only {} source files", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let m = module_of(f);
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        for n in names(f) {
            if let Some(at) = STAGES.iter().position(|s| *s == m) {
                if STAGES[at + 1..].contains(&n.as_str()) {
                    bad.push(format!(
                        "{}: stage {m} names the later stage {n}",
                        f.display()
                    ));
                }
            }
            let higher = STAGES.contains(&n.as_str())
                || ["status", "pipeline", "testing"].contains(&n.as_str());
            if BELOW_THE_STAGES.contains(&m.as_str()) && higher {
                bad.push(format!(
                    "{}: {m} names {n}, which stands above it",
                    f.display()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
