//! `anpr-lab lists keygen|build`: the backend's list tools as a backend
//! developer runs them, checked by decoding what they wrote.

use std::process::Command;

use anpr_wire::bundle::{self, Entries};

fn anpr_lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anpr-lab"))
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
fn keygen_and_build_make_a_signed_bundle_of_keyed_hashes_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ok, out) = run(anpr_lab()
        .args(["lists", "keygen", "--out"])
        .arg(d.join("keys")));
    assert!(ok, "{out}");
    std::fs::write(
        d.join("hits.csv"),
        "plate,entry_id,banned_from,vehicle_class\nVB-123-X,h1,2027-01-01,N1\n12BDF3,h2,2025-01-01\n",
    )
    .expect("write");
    let build = |input: &str| {
        run(anpr_lab()
            .args(["lists", "build", "--kind", "hit", "--zone", "ams-ze"])
            .args(["--version", "7", "--key-id", "k1", "--hmac-key-file"])
            .arg(d.join("keys/hmac.key"))
            .arg("--signing-key-file")
            .arg(d.join("keys/signing.key"))
            .arg("--in")
            .arg(d.join(input))
            .arg("--out")
            .arg(d.join("hits.bundle")))
    };
    let (ok, out) = build("hits.csv");
    assert!(ok, "{out}");
    assert!(out.contains("2 entries"), "{out}");
    let bytes = std::fs::read(d.join("hits.bundle")).expect("bundle");
    assert!(
        !bytes.windows(6).any(|w| w == b"VB123X"),
        "no plain plate in the bundle"
    );
    let public = std::fs::read_to_string(d.join("keys/signing.pub")).expect("public key");
    let key = bundle::verifying_key_from_base64(public.trim()).expect("key");
    let (header, entries) = bundle::decode(&bytes, &key).expect("a valid bundle");
    assert_eq!((header.version, header.entries), (7, 2));
    let Entries::Hit(hits) = entries else {
        panic!("a hit list was built");
    };
    let hmac = anpr_wire::hash::HmacKey::load("k1", &d.join("keys/hmac.key")).expect("hmac");
    assert!(hits.iter().any(|h| h.hash == hmac.hash_plate("VB-123-X")));
    // A bad row names its line; nothing is written over the good bundle.
    std::fs::write(d.join("bad.csv"), "VB-123-X,h1,not-a-date\n").expect("write");
    let (ok, out) = build("bad.csv");
    assert!(!ok);
    assert!(out.contains("bad.csv") && out.contains("line 1"), "{out}");
    assert_eq!(std::fs::read(d.join("hits.bundle")).expect("kept"), bytes);
}
