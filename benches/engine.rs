//! Engine overhead per 1280x720 frame with the passthrough renderer (target < 1 ms, no frame copy), and
//! the cost of the one copy a rendered frame takes (a 128x128 patch composited into the frame).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lipsync::audio::AudioWindow;
use lipsync::render::{Passthrough, RenderJob, Rendered, Renderer};
use lipsync::{Engine, EngineConfig, Mode, Patch, PixelFormat, VideoFrame};

const FRAME: u64 = 40_000_000;

fn frame_720p() -> VideoFrame {
    VideoFrame::from_vec(PixelFormat::Rgba, 1280, 720, vec![128; 1280 * 720 * 4], 0).unwrap()
}

/// Pushes `n` frames through the engine and waits for each: the per-frame round trip through the worker.
fn run_frames(engine: &mut Engine<u64>, template: &VideoFrame, start: u64, n: u64) -> Duration {
    let t = Instant::now();
    for k in start..start + n {
        engine.push_video(template.with_pts(k * FRAME, Some(FRAME)), k);
        loop {
            let out = engine.process(None);
            if !out.is_empty() {
                black_box(out);
                break;
            }
            engine.wait(Duration::from_secs(1));
        }
    }
    t.elapsed()
}

struct PatchRenderer;
impl Renderer for PatchRenderer {
    fn name(&self) -> &'static str {
        "patch"
    }
    fn window(&self) -> AudioWindow {
        AudioWindow::default()
    }
    fn render(&mut self, _job: &RenderJob<'_>) -> lipsync::Result<Rendered> {
        Ok(Rendered::Patch(Patch::solid(576, 296, 128, 128, [200, 100, 50, 255])))
    }
}

fn bench(c: &mut Criterion) {
    let template = frame_720p();
    let mut g = c.benchmark_group("engine_720p");
    g.throughput(Throughput::Elements(1));
    for (name, renderer) in [
        ("passthrough", Box::new(Passthrough) as Box<dyn Renderer>),
        ("patch_composite", Box::new(PatchRenderer) as Box<dyn Renderer>),
    ] {
        let config = EngineConfig { mode: Mode::Offline, ..Default::default() };
        let (mut engine, _audio) = Engine::<u64>::new(renderer, config).unwrap();
        engine.audio_eos();
        let mut next = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let d = run_frames(&mut engine, &template, next, iters);
                next += iters;
                d
            })
        });
    }
    g.finish();
    c.bench_function("composite_128_patch_into_720p_rgba", |b| {
        let patch = Patch::solid(576, 296, 128, 128, [200, 100, 50, 200]);
        b.iter(|| black_box(template.composite(&patch)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
