//! Guidance per frame at 720p: the full STSA sketch, its heatmap, fusing five windows' heatmaps, and
//! pasting a rendered face back (target: sketch + heatmap + smoothing + composite <= 2 ms).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::face::landmarks::{CONNECTIONS_FULL, STSA_131};
use lipsync::guidance::composite::face_patch;
use lipsync::guidance::crop::FaceBox;
use lipsync::guidance::smoothing::HeatmapFuser;
use lipsync::guidance::{CANVAS, heatmap, sketch};
use lipsync::{PixelFormat, VideoFrame};

fn bench(c: &mut Criterion) {
    // A plausible face: landmarks spread over the canvas on a smooth curve.
    let point = |id: u16| -> Option<[f32; 2]> {
        let t = id as f32 * 0.618;
        Some([0.5 + 0.4 * t.sin() * (id % 7) as f32 / 7.0, 0.5 + 0.4 * t.cos() * (id % 5) as f32 / 5.0])
    };
    c.bench_function("sketch_full_131", |b| b.iter(|| black_box(sketch::draw(point, &CONNECTIONS_FULL))));
    let s = sketch::draw(point, &CONNECTIONS_FULL);
    c.bench_function("heatmap_128", |b| b.iter(|| black_box(heatmap::heatmap(&s))));

    // Fusing five windows' predictions for a frame.
    let h = heatmap::heatmap(&s);
    c.bench_function("fuse_5_windows_128", |b| {
        let mut fuser = HeatmapFuser::new(5, 1.5);
        let window = vec![h.clone(); 5];
        let mut k = 0i64;
        b.iter(|| {
            fuser.add_window(k, window.iter().cloned(), 1.0);
            k += 1;
            black_box(fuser.take(k - 3))
        })
    });

    // Pasting a rendered face into a 1280x720 frame: a face of about 300 px.
    let frame = VideoFrame::from_vec(PixelFormat::Rgb, 1280, 720, vec![120; 1280 * 720 * 3], 0).unwrap();
    let mut landmarks = vec![[640.0f32, 360.0, 0.0]; 468];
    for (k, &id) in STSA_131.iter().enumerate() {
        let a = k as f32 / 131.0 * std::f32::consts::TAU;
        landmarks[id as usize] = [640.0 + 150.0 * a.cos(), 360.0 + 170.0 * a.sin(), 0.0];
    }
    let fb = FaceBox::around(&landmarks, 1280, 720);
    let rendered = vec![140u8; CANVAS * CANVAS * 3];
    c.bench_function("face_patch_720p", |b| b.iter(|| black_box(face_patch(&frame, &rendered, &fb, &landmarks))));
    let patch = face_patch(&frame, &rendered, &fb, &landmarks);
    c.bench_function("composite_720p", |b| b.iter(|| black_box(frame.composite(&patch))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
