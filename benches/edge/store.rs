//! The store: committed (fsynced, signed, chained) violations per second with
//! their evidence. Target: >= 2,000/s on the reference machine.
//!
//! Run: `cargo bench --bench store`; criterion prints the median time per
//! record and records per second. `small` uses a 64x48 overview (the cost of
//! the commit itself); `vga` a 640x480 overview (JPEG encoding included).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use anpr_edge::store::Store;
use anpr_edge::testing::{sample_context, sample_violation, sized_violation};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("bench.sqlite")).expect("store");
    let ctx = sample_context();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    let small = sample_violation("BE12NC");
    g.bench_function("record_small", |b| {
        b.iter(|| store.record(&small, &ctx).expect("record"))
    });
    let vga = sized_violation("BE34NC", 640, 480, 7);
    g.sample_size(20);
    g.bench_function("record_vga", |b| {
        b.iter(|| store.record(&vga, &ctx).expect("record"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
