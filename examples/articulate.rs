//! The classic renderer's first stage on an audio file: the mouth pose of every 25 fps frame and how well
//! its opening follows the speech loudness.
//!
//! `cargo run --release --example articulate -- SPEECH.wav [--print]`

use lipsync::audio::envelope::frame_loudness;
use lipsync::render::classic::Articulator;
use lipsync::render::classic::articulation::WINDOW;
use lipsync::sync::estimate_offset;

fn main() -> lipsync::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: articulate SPEECH.wav [--print]");
        std::process::exit(2);
    };
    let audio = lipsync::io::decode_audio(std::path::Path::new(path))?;
    let loudness = frame_loudness(&audio, 25.0);
    let mut articulator = Articulator::new();
    let (n, before) = (WINDOW.samples(), (WINDOW.before / lipsync::audio::NS_PER_SAMPLE) as i64);
    let mut opening = Vec::with_capacity(loudness.len());
    for (k, &level) in loudness.iter().enumerate() {
        let start = k as i64 * 640 - before;
        let window: Vec<f32> = (start..start + n as i64)
            .map(|i| if i >= 0 && (i as usize) < audio.len() { audio[i as usize] } else { 0.0 })
            .collect();
        let pose = articulator.pose(k as u64 * 40_000_000, &window, 0);
        if args.iter().any(|a| a == "--print") {
            println!(
                "{k:4} loudness {:.4} jaw {:.3} lips {:.3} spread {:+.3}",
                level, pose.jaw, pose.lips, pose.spread
            );
        }
        opening.push(pose.opening());
    }
    let e = estimate_offset(&loudness, &opening, 5);
    println!(
        "{path}: {} frames, offset {} frame(s), correlation {:.3}",
        loudness.len(),
        e.offset_frames,
        e.correlation
    );
    Ok(())
}
