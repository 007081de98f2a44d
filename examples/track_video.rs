//! Tracks the face through a video and prints, per frame, the face box, the mouth opening and whether
//! the detector had to run: the library's face API in a few lines.
//!
//! `cargo run --release --example track_video -- ../shared/media/speakerine.mp4 [--raw]`
//!
//! `--raw`: MediaPipe's landmarks as they are, without the One-Euro smoothing (as `lipsync measure` reads
//! them).

use candle_core::Device;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, TrackerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: track_video VIDEO [--raw]")?;
    let mut config = TrackerConfig::default();
    if std::env::args().any(|a| a == "--raw") {
        config.smoothing = None;
    }
    let video = lipsync::io::decode_video(path.as_ref(), usize::MAX)?;
    let mut tracker = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config)?;
    let start = std::time::Instant::now();
    for (k, frame) in video.frames.iter().enumerate() {
        match tracker.track(frame)? {
            None => println!("{k:4} no face"),
            Some(face) => {
                let (top, bottom) = (face.landmarks[13], face.landmarks[14]);
                let opening = (top[0] - bottom[0]).hypot(top[1] - bottom[1]);
                let [x0, y0, x1, y1] = face.bbox;
                println!(
                    "{k:4} box ({x0:6.1}, {y0:6.1})-({x1:6.1}, {y1:6.1})  mouth {opening:5.2} px{}",
                    if face.detected { "  (detected)" } else { "" }
                );
            }
        }
    }
    let per_frame = start.elapsed().as_secs_f64() * 1e3 / video.frames.len().max(1) as f64;
    eprintln!("{} frames, {per_frame:.2} ms per frame", video.frames.len());
    Ok(())
}
