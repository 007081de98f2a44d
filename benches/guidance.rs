//! Guidance per frame: the full STSA sketch and its heatmap (issue 4 targets sketch + heatmap + smoothing
//! + composite <= 2 ms at 720p; smoothing and compositing are not written yet).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::face::landmarks::CONNECTIONS_FULL;
use lipsync::guidance::{heatmap, sketch};

fn bench(c: &mut Criterion) {
    // A plausible face: landmarks spread over the canvas on a smooth curve.
    let point = |id: u16| -> Option<[f32; 2]> {
        let t = id as f32 * 0.618;
        Some([0.5 + 0.4 * t.sin() * (id % 7) as f32 / 7.0, 0.5 + 0.4 * t.cos() * (id % 5) as f32 / 5.0])
    };
    c.bench_function("sketch_full_131", |b| b.iter(|| black_box(sketch::draw(point, &CONNECTIONS_FULL))));
    let s = sketch::draw(point, &CONNECTIONS_FULL);
    c.bench_function("heatmap_128", |b| b.iter(|| black_box(heatmap::heatmap(&s))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
