//! `lipsync measure`: how well a video's mouth follows its own audio. The face is tracked on every frame
//! and the mouth opening cross-correlated with the speech loudness; given the speech's timed phonemes
//! (`--phonemes`), also whether the lips close, open, spread and round when they should (see
//! [`crate::sync`]).

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use crate::error::{Error, Result};
use crate::face::models::ModelSource;
use crate::face::{FaceTracker, TrackerConfig};
use crate::io;
use crate::sync::{measure, viseme_scores};
use crate::visemes::PhonemeTrack;

#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// A video with an audio track (or see --audio).
    video: PathBuf,
    /// Take the audio from this file instead of the video's own track.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// The speech's timed phonemes (a festival segment file or JSON, see `lipsync dub --phonemes`): also
    /// score the lip shapes against them.
    #[arg(long)]
    phonemes: Option<PathBuf>,
    /// Largest offset searched, in frames either way.
    #[arg(long, default_value_t = 10)]
    max_lag: i32,
    /// Print JSON: {"frames", "faces", "offset_frames", "correlation", "jitter", "jitter_smoothed",
    /// "mean_opening"} and, with --phonemes, "closures", "closure_hit_rate", "round_spread_auc",
    /// "open_closed_auc".
    #[arg(long)]
    json: bool,
    /// The mediapipe 0.10.21 wheel or a folder with its face .tflite files.
    #[arg(long)]
    face_models: Option<PathBuf>,
}

pub fn run(args: &MeasureArgs) -> Result<()> {
    let track = args.phonemes.as_deref().map(PhonemeTrack::load).transpose()?;
    let audio = io::decode_audio(args.audio.as_ref().unwrap_or(&args.video))?;
    // Frames are decoded as they are tracked, never held.
    let mut video = io::VideoReader::open(&args.video, None)?;
    let models = args.face_models.as_deref().map_or_else(ModelSource::default_location, ModelSource::from_path);
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    let mut tracker = FaceTracker::new(&models, &Device::Cpu, config)?;
    let frames = std::iter::from_fn(|| video.next_frame().transpose());
    let report = measure(frames, &audio, &mut tracker, args.max_lag)?;
    if report.faces == 0 {
        return Err(Error::InvalidArgument(format!("no face found in {}", args.video.display())));
    }
    let mean = report.opening.iter().sum::<f32>() / report.opening.len().max(1) as f32;
    let e = report.estimate;
    let scores = track.as_ref().map(|t| viseme_scores(&report.opening, &report.width, io::FPS as f32, t));
    let json = |j: Option<f32>| j.map_or("null".to_string(), |j| format!("{j}"));
    if args.json {
        let (jitter, smoothed) = (json(report.jitter), json(report.jitter_smoothed));
        let visemes = scores.map_or(String::new(), |s| {
            format!(
                ", \"closures\": {}, \"closure_hit_rate\": {}, \"round_spread_auc\": {}, \"open_closed_auc\": {}",
                s.closures,
                json(s.closure_hit_rate),
                json(s.round_spread_auc),
                json(s.open_closed_auc)
            )
        });
        say!(
            "{{\"frames\": {}, \"faces\": {}, \"offset_frames\": {}, \"correlation\": {}, \"jitter\": {jitter}, \
             \"jitter_smoothed\": {smoothed}, \"mean_opening\": {mean}{visemes}}}",
            report.frames,
            report.faces,
            e.offset_frames,
            e.correlation
        );
    } else {
        say!(
            "{}: {} frames, face in {}; mouth {} the audio by {} frame(s) ({} ms), correlation {:.3}; mouth jitter {} \
             (One-Euro smoothed {}); mean opening {mean:.3}",
            args.video.display(),
            report.frames,
            report.faces,
            if e.offset_frames >= 0 { "lags" } else { "leads" },
            e.offset_frames.abs(),
            e.offset_frames.abs() * 40,
            e.correlation,
            report.jitter.map_or("n/a".into(), |j| format!("{j:.5}")),
            report.jitter_smoothed.map_or("n/a".into(), |j| format!("{j:.5}")),
        );
        if let Some(s) = scores {
            let f = |v: Option<f32>| v.map_or("n/a".into(), |v| format!("{v:.3}"));
            say!(
                "visemes: lips closed for {} of {} /p b m/ (hit rate {}); round/spread AUC {}; open/closed AUC {}",
                s.closure_hit_rate.map_or(0, |r| (r * s.closures as f32).round() as usize),
                s.closures,
                f(s.closure_hit_rate),
                f(s.round_spread_auc),
                f(s.open_closed_auc)
            );
        }
    }
    Ok(())
}
