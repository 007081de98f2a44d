//! Face tracking speed on this CPU: detection alone, mesh alone and tracking per frame, on the 256x256
//! clip `../shared/media/speakerine.mp4` and on a 1280x720 frame (the clip scaled up).
//! MediaPipe's Python binding tracks that clip at 2.64 ms per frame on a 2-core machine.

use std::hint::black_box;
use std::path::Path;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, NormRect, TrackerConfig};
use lipsync::io;
use lipsync::{PixelFormat, VideoFrame};

/// The clip frame enlarged into a 1280x720 frame (aspect kept, black bars), nearest neighbour.
fn to_720p(frame: &VideoFrame) -> VideoFrame {
    let view = lipsync::face::crop::RgbView::new(frame);
    let (sw, sh) = (view.width(), view.height());
    let (w, h) = (1280usize, 720usize);
    let side = h; // the square clip becomes 720x720, centred
    let x0 = (w - side) / 2;
    let stride = w * 3;
    let mut data = vec![0u8; stride * h];
    for y in 0..h {
        for x in 0..side {
            let p = view.get(x * sw / side, y * sh / side);
            let o = y * stride + (x0 + x) * 3;
            data[o..o + 3].copy_from_slice(&p);
        }
    }
    VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, data, frame.pts).unwrap()
}

fn bench(c: &mut Criterion) {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media/speakerine.mp4");
    let frames = io::decode_video(&clip, 100).expect("decode the clip").frames;
    let src = ModelSource::default_location();
    let config = TrackerConfig::default();
    for (label, frames) in [("256x256", frames.clone()), ("1280x720", frames.iter().take(25).map(to_720p).collect())] {
        let mut tracker = FaceTracker::new(&src, &Device::Cpu, config).unwrap();
        let mut g = c.benchmark_group(format!("face_{label}"));
        let f0 = &frames[0];
        g.bench_function("detect", |b| b.iter(|| black_box(tracker.detector().detect(f0).unwrap())));
        let roi: NormRect = tracker.track(f0).unwrap().expect("a face").roi;
        g.bench_function("mesh", |b| b.iter(|| black_box(tracker.mesh().landmarks(f0, &roi).unwrap())));
        let view = lipsync::face::crop::RgbView::new(f0);
        g.bench_function("mesh_input_crop", |b| b.iter(|| black_box(tracker.mesh().input(&view, &roi).unwrap())));
        tracker.reset();
        let mut k = 0;
        g.bench_function("track_per_frame", |b| {
            b.iter(|| {
                k = (k + 1) % frames.len();
                black_box(tracker.track(&frames[k]).unwrap())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
