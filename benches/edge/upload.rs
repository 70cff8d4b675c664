//! Upload: violations per second delivered to the reference receiver over
//! loopback mutual TLS, signatures and chain verified. Target: >= 300/s.
//!
//! Run: `cargo bench --bench upload`. Each iteration delivers 64 records to a
//! fresh receiver (its start is not timed): one POST per record, and in
//! batches of 32 as the uploader does with a backlog.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use anpr_edge::store::Store;
use anpr_edge::testing::{sample_context, sample_signer, sample_violation};
use anpr_edge::upload::{Backend, HttpsBackend};
use anpr_receiver::{self as receiver, ReceiverOptions};

const N: usize = 64;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let mut store = Store::open(&dir.path().join("bench.sqlite")).expect("store");
    for i in 0..N {
        store
            .record(&sample_violation(&format!("UP{i:03}")), &sample_context())
            .expect("record");
    }
    let recs = store.pending(N).expect("pending");
    let mut g = c.benchmark_group("upload");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for (name, batch) in [("single", 1usize), ("batch32", 32)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let rx = receiver::start_with(
                            "127.0.0.1:0".parse().expect("addr"),
                            &pki,
                            ReceiverOptions {
                                require_client_cert: true,
                            },
                        )
                        .await
                        .expect("receiver");
                        rx.trust_device("cam-post-17", sample_signer().verifying_key());
                        let backend = HttpsBackend::new(&anpr_edge::testing::upload_config(
                            &rx.url(),
                            &pki.ca_cert,
                            Some((&pki.client_cert, &pki.client_key)),
                        ))
                        .expect("backend");
                        let t = Instant::now();
                        if batch == 1 {
                            for r in &recs {
                                backend.deliver(r).await.expect("ack");
                            }
                        } else {
                            for chunk in recs.chunks(batch) {
                                let acked = backend.deliver_batch(chunk).await.expect("acks");
                                assert_eq!(acked.len(), chunk.len());
                            }
                        }
                        total += t.elapsed();
                        rx.shutdown().await;
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
