//! AudioRing throughput: pushing 20 ms blocks (producer) and reading STSA-sized windows (consumer).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lipsync::audio::{AudioRing, AudioWindow, RingConfig, samples_to_ns};

fn bench(c: &mut Criterion) {
    let block = vec![0.25f32; 320]; // 20 ms
    let mut g = c.benchmark_group("audio_ring");
    g.throughput(Throughput::Elements(block.len() as u64));
    g.bench_function("push_drain_20ms_block", |b| {
        let (mut producer, mut ring) = AudioRing::new(&RingConfig::default());
        ring.protect_from(u64::MAX);
        let mut t = 0u64;
        b.iter(|| {
            producer.push(Some(t), black_box(&block)).unwrap();
            ring.drain();
            t += samples_to_ns(block.len() as u64);
        })
    });
    let window = AudioWindow::STSA;
    g.throughput(Throughput::Elements(window.samples() as u64));
    g.bench_function("read_stsa_window_365ms", |b| {
        b.iter_batched_ref(
            || {
                let (mut producer, mut ring) = AudioRing::new(&RingConfig::default());
                for k in 0..50u64 {
                    producer.push(Some(k * 20_000_000), &block).unwrap();
                }
                ring.drain();
                (producer, ring, vec![0.0f32; window.samples()])
            },
            |(_, ring, out)| black_box(ring.read(200_000_000, out, true)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
