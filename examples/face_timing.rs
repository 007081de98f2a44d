//! Face tracking time per frame on a video, as `scripts/bench-face-tracking.sh` compares it with
//! MediaPipe's own: the frames decoded first, one warm-up pass, then `PASSES` passes of tracking (the
//! detector where the track is lost, the mesh on every frame) on one thread of the caller.
//!
//! `cargo run --release --example face_timing -- VIDEO [PASSES]` prints `lipsync: N frames, X ms per
//! frame, F with a face`; with `--layers`, where the mesh's time goes instead: per operator kind and the
//! ten slowest operators, averaged over the video's frames; with `--write-frames=FILE`, the decoded frames
//! as raw RGB, for MediaPipe's side to track the very same pixels.

use std::collections::BTreeMap;

use candle_core::Device;
use lipsync::face::crop::RgbView;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, TrackerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let layers = args.iter().any(|a| a == "--layers");
    let mut plain = args.iter().filter(|a| !a.starts_with("--"));
    let path = plain.next().ok_or("usage: face_timing VIDEO [PASSES] [--layers]")?;
    let passes: usize = plain.next().map_or(Ok(3), |p| p.parse())?;
    let frames = lipsync::io::decode_video(path.as_ref(), usize::MAX)?.frames;
    if let Some(out) = args.iter().find_map(|a| a.strip_prefix("--write-frames=")) {
        return write_frames(&frames, out.as_ref());
    }
    // MediaPipe's own settings: no smoothing of the landmarks.
    let config = TrackerConfig { smoothing: None, ..TrackerConfig::default() };
    let mut tracker = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config)?;
    let faces = frames.iter().map(|f| tracker.track(f)).collect::<Result<Vec<_>, _>>()?;
    if layers {
        return print_layers(&tracker, &frames, &faces);
    }
    let (mut found, start) = (0, std::time::Instant::now());
    for _ in 0..passes {
        for frame in &frames {
            found += tracker.track(frame)?.is_some() as usize;
        }
    }
    let n = passes * frames.len();
    println!(
        "lipsync: {n} frames, {:.2} ms per frame, {found} with a face",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    Ok(())
}

/// The decoded frames as MediaPipe's side reads them: a line `WIDTH HEIGHT COUNT`, then the RGB bytes,
/// row after row, frame after frame.
fn write_frames(frames: &[lipsync::VideoFrame], path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let first = frames.first().ok_or("no frames in the video")?;
    let (w, h) = (first.width() as usize, first.height() as usize);
    let mut bytes = format!("{w} {h} {}\n", frames.len()).into_bytes();
    for frame in frames {
        let view = RgbView::new(frame);
        for y in 0..h {
            for x in 0..w {
                bytes.extend_from_slice(&view.get(x, y));
            }
        }
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// The mesh on each frame's tracked region, operator by operator.
fn print_layers(
    tracker: &FaceTracker,
    frames: &[lipsync::VideoFrame],
    faces: &[Option<lipsync::face::Face>],
) -> Result<(), Box<dyn std::error::Error>> {
    let mesh = tracker.mesh();
    let (mut per_step, mut runs): (Vec<(String, u64)>, u64) = (Vec::new(), 0);
    let mut crop_ns = 0u64;
    for (frame, face) in frames.iter().zip(faces) {
        let Some(face) = face else { continue };
        let started = std::time::Instant::now();
        let input = mesh.input(&RgbView::new(frame), &face.roi)?;
        crop_ns += started.elapsed().as_nanos() as u64;
        let times = mesh.profile(&input)?;
        if per_step.is_empty() {
            per_step = times.iter().map(|t| (format!("{:<10} -> {:?}", t.op, t.output), 0)).collect();
        }
        for (total, t) in per_step.iter_mut().zip(&times) {
            total.1 += t.nanos;
        }
        runs += 1;
    }
    if runs == 0 {
        return Err("no face in the video".into());
    }
    let ms = |ns: u64| ns as f64 / runs as f64 / 1e6;
    let total: u64 = per_step.iter().map(|(_, ns)| ns).sum();
    println!("the mesh, {runs} frames: {:.3} ms per frame (and the input crop {:.3} ms)", ms(total), ms(crop_ns));
    let mut kinds: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (name, ns) in &per_step {
        let kind = kinds.entry(name.split_whitespace().next().unwrap_or("")).or_default();
        kind.0 += 1;
        kind.1 += ns;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by_key(|(_, (_, ns))| std::cmp::Reverse(*ns));
    for (kind, (count, ns)) in kinds {
        println!("  {kind:<10} {count:3} ops  {:7.3} ms  {:5.1} %", ms(ns), 100.0 * ns as f64 / total as f64);
    }
    let mut slowest: Vec<(usize, &(String, u64))> = per_step.iter().enumerate().collect();
    slowest.sort_by_key(|(_, (_, ns))| std::cmp::Reverse(*ns));
    println!("  the ten slowest operators:");
    for (k, (name, ns)) in slowest.into_iter().take(10) {
        println!("    #{k:<3} {name:<40} {:7.3} ms", ms(*ns));
    }
    Ok(())
}
