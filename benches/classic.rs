//! The classic renderer's speed on this CPU at 1280x720 (the real talking-head clip scaled up, so the
//! face is about 500 pixels wide: a close-up, the costliest case): the audio-to-pose stage, render plus
//! composite per frame (target: >= 60 fps, i.e. <= 16.7 ms; also with a still face's blinks and head
//! sway drawn), and the whole live path with face
//! tracking (target >= 30 fps, <= 33 ms).

use std::hint::black_box;
use std::path::Path;

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::audio::AudioWindow;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, TrackerConfig};
use lipsync::render::classic::{Articulator, Classic, ClassicConfig};
use lipsync::render::{RenderJob, Rendered, Renderer};
use lipsync::visemes::VisemeEstimator;
use lipsync::{PixelFormat, VideoFrame, io};

/// The clip frame enlarged to 720x720 in the middle of a 1280x720 frame, nearest neighbour.
fn to_720p(frame: &VideoFrame) -> VideoFrame {
    let view = lipsync::face::crop::RgbView::new(frame);
    let (sw, sh) = (view.width(), view.height());
    let (w, h) = (1280usize, 720usize);
    let x0 = (w - h) / 2;
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..h {
            let o = (y * w + x0 + x) * 3;
            data[o..o + 3].copy_from_slice(&view.get(x * sw / h, y * sh / h));
        }
    }
    VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, data, frame.pts).unwrap()
}

fn bench(c: &mut Criterion) {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media");
    let frames: Vec<VideoFrame> = io::decode_video(&media.join("speakerine.mp4"), 50)
        .expect("decode the clip")
        .frames
        .iter()
        .map(to_720p)
        .collect();
    let speech = io::decode_audio(&media.join("speech_16k.wav")).expect("decode the speech");
    let mut tracker =
        FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, TrackerConfig::default()).unwrap();
    let faces: Vec<_> = frames.iter().map(|f| tracker.track(f).unwrap().expect("a face")).collect();
    let window = Classic::default().window();
    let audio_of = |k: usize| -> Vec<f32> {
        let start = k * 640 + 16_000; // one second in: speech
        speech[start..start + AudioWindow::samples(&window)].to_vec()
    };
    let audio: Vec<Vec<f32>> = (0..frames.len()).map(audio_of).collect();

    let mut g = c.benchmark_group("classic_1280x720");
    let mut articulator = Articulator::new();
    let mut k = 0usize;
    g.bench_function("audio_to_pose", |b| {
        b.iter(|| {
            k = (k + 1) % audio.len();
            black_box(articulator.pose(k as u64 * 40_000_000, &audio[k], 0))
        })
    });

    // The viseme estimator alone, as the articulator runs it: the slices a frame's window adds (four at
    // 25 fps), analysed and classified.
    let mut estimator = VisemeEstimator::default();
    let mut k = 0usize;
    g.bench_function("visemes_per_frame", |b| {
        b.iter(|| {
            k = (k + 1) % audio.len();
            estimator.update(k as i64 * 40_000_000 - window.before as i64, &audio[k]);
            black_box(estimator.newest())
        })
    });

    // Render and composite, with the reference bank enrolled (as after the first seconds of a stream).
    let mut classic = Classic::default();
    let render = |classic: &mut Classic, k: usize, face: &lipsync::face::Face| {
        let job = RenderJob { frame: &frames[k], audio: &audio[k], audio_missing: 0, face: Some(face), context: &[] };
        match classic.render(&job).unwrap() {
            Rendered::Patch(p) => frames[k].composite(&p),
            Rendered::Unchanged => panic!("a face was given: expected a patch"),
        }
    };
    for i in 0..100 {
        render(&mut classic, i % frames.len(), &faces[i % frames.len()]);
    }
    g.bench_function("render_and_composite", |b| {
        b.iter(|| {
            k = (k + 1) % frames.len();
            black_box(render(&mut classic, k, &faces[k]))
        })
    });
    // A photo as the face (`still_face`): blinks and the head's sway drawn too, on a stream that goes on.
    let mut still = Classic::new(ClassicConfig { still_face: true, ..ClassicConfig::default() });
    let mut n = 0u64;
    let mut render_still = |k: usize| {
        n += 1;
        let frame = frames[k].with_pts(n * 40_000_000, None);
        let job = RenderJob { frame: &frame, audio: &audio[k], audio_missing: 0, face: Some(&faces[k]), context: &[] };
        match still.render(&job).unwrap() {
            Rendered::Patch(p) => frame.composite(&p),
            Rendered::Unchanged => panic!("a face was given: expected a patch"),
        }
    };
    for i in 0..100 {
        render_still(i % frames.len());
    }
    g.bench_function("render_and_composite_still_face", |b| {
        b.iter(|| {
            k = (k + 1) % frames.len();
            black_box(render_still(k))
        })
    });
    tracker.reset();
    g.bench_function("track_render_and_composite", |b| {
        b.iter(|| {
            k = (k + 1) % frames.len();
            let face = tracker.track(&frames[k]).unwrap().expect("a face");
            black_box(render(&mut classic, k, &face))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
