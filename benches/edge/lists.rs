//! Zone lists at the size of the Dutch fleet's banned vans: a 1,000,000-entry
//! hit list bundle. Targets: load (verify + parse) < 1 s, lookup < 1 µs, and
//! the loaded list well under 64 MB.
//!
//! Run: `cargo bench --bench lists`. The memory figure is printed first, both
//! computed from the table's sizes and measured as the RSS growth of a load.

use std::hint::black_box;

use chrono::{NaiveDate, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::SigningKey;

use anpr_edge::policy::lists::{self, Decoded, HitList};
use anpr_wire::bundle::{self, BundleMeta, Entries, HitEntry};
use anpr_wire::hash::HmacKey;

const N: usize = 1_000_000;

fn plate(i: usize) -> String {
    // Sidecode 9 style: XX-999-X, unique per i.
    let l = b"BDFGHJKLMNPRSTVWXZ";
    format!(
        "{}{}{:03}{}",
        l[i % 18] as char,
        l[(i / 18) % 18] as char,
        (i / 324) % 1000,
        l[(i / 324_000) % 18] as char
    )
}

fn make_bundle(key: &HmacKey, signing: &SigningKey) -> Vec<u8> {
    let date = NaiveDate::from_ymd_opt(2027, 1, 1).expect("date");
    let entries = (0..N)
        .map(|i| HitEntry {
            hash: key.hash_plate(&plate(i)),
            entry_id: format!("hit-{i:07}"),
            banned_from: date,
            vehicle_class: Some(if i % 3 == 0 { "N2" } else { "N1" }.into()),
        })
        .collect();
    let meta = BundleMeta {
        zone: "ams-ze".into(),
        version: 1,
        created_at: Utc::now(),
        key_id: "k1".into(),
    };
    bundle::encode(&meta, Entries::Hit(entries), signing).expect("encodes")
}

fn load(bytes: &[u8], signing: &SigningKey) -> HitList {
    match lists::decode(bytes, &signing.verifying_key()).expect("valid") {
        (_, Decoded::Hit(list)) => list,
        (_, Decoded::Exemption(_)) => unreachable!("a hit list was built"),
    }
}

/// Hands freed heap back to the kernel, so that RSS growth measures the load
/// and not reuse of the memory the bundle was built in.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn lists(c: &mut Criterion) {
    let key = HmacKey::new("k1", &[42u8; 32]).expect("key");
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let bytes = make_bundle(&key, &signing);

    trim_heap();
    let before = rss_bytes();
    let list = load(&bytes, &signing);
    let after = rss_bytes();
    println!(
        "lists: {N} entries, bundle {:.1} MB; loaded table {:.1} MB by sizes ({} B a row + ids + index); RSS grew {}",
        bytes.len() as f64 / 1e6,
        list.heap_bytes() as f64 / 1e6,
        HitList::ROW_BYTES,
        match (before, after) {
            (Some(b), Some(a)) => format!("{:.1} MB", a.saturating_sub(b) as f64 / 1e6),
            _ => "unknown".into(),
        }
    );

    let mut g = c.benchmark_group("lists");
    g.sample_size(10);
    g.bench_function("load_1m_hit_bundle", |b| {
        b.iter(|| black_box(load(black_box(&bytes), &signing)))
    });
    g.finish();

    let probes: Vec<String> = (0..1024).map(|i| plate(i * 977)).collect();
    let misses: Vec<String> = (0..1024).map(|i| format!("ZZ{i:03}Z")).collect();
    let mut i = 0;
    c.bench_function("lists/lookup_hit_hash_and_find", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let h = key.hash_plate(black_box(&probes[i]));
            black_box(list.get(&h).is_some())
        })
    });
    c.bench_function("lists/lookup_miss_hash_and_find", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let h = key.hash_plate(black_box(&misses[i]));
            black_box(list.get(&h).is_some())
        })
    });
    let hashes: Vec<_> = probes.iter().map(|p| key.hash_plate(p)).collect();
    c.bench_function("lists/find_only", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(list.get(black_box(&hashes[i])).is_some())
        })
    });
}

criterion_group!(benches, lists);
criterion_main!(benches);
