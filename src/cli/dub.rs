//! `lipsync dub`: a face (photo or video) and an audio file in, an MP4 out, through the offline engine.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{RendererArgs, TrackingArgs, print_summary, stop_signals};
use crate::audio::ns_to_samples;
use crate::engine::{Engine, EngineConfig, Mode, OutputFrame};
use crate::error::{Error, Result};
use crate::frame::{FrameLayout, PixelFormat, VideoFrame};
use crate::io::{self, FPS, FRAME_NS, FaceLoop, Fit, Mp4Writer, PendingFile};
use crate::visemes::{PhonemeFeed, PhonemeTrack};

#[derive(Args, Debug)]
pub struct DubArgs {
    /// The face: a photo (png, jpg, ...) or a video.
    #[arg(long)]
    face: PathBuf,
    /// The speech: any audio or video file GStreamer can decode.
    #[arg(long)]
    audio: PathBuf,
    /// The MP4 file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// The speech's timed phonemes, when they are known (a TTS spoke them): the classic renderer then
    /// shapes the lips from them instead of hearing the visemes. A festival segment file
    /// (`utt.save.segs`) or a JSON array of {"phoneme": "p", "start": 0.12, "end": 0.2}, seconds from the
    /// audio's start; phonemes in ARPAbet, eSpeak NG or IPA (README, "Visemes").
    #[arg(long)]
    phonemes: Option<PathBuf>,
    /// The largest width or height of the output: a larger face (a photo from a camera, a 4K video) is
    /// scaled down to fit, keeping its aspect, before anything else. 0 keeps the face's size.
    #[arg(long, default_value_t = 1920)]
    max_size: u32,
    /// How a face video and speech of different lengths make the dub: `bounce` (as long as the speech,
    /// the video forward then backward, as STSA does), `loop` (as long as the speech, the video from its
    /// start again), `cut` (as long as the shorter), `pad` (as long as the longer: the video's last frame
    /// held, or silence after the speech). A photo lasts as long as the speech whatever the fit.
    #[arg(long, value_enum, default_value_t = Fit::Bounce)]
    fit: Fit,
    #[command(flatten)]
    renderer: RendererArgs,
    #[command(flatten)]
    tracking: TrackingArgs,
}

pub fn run(args: &DubArgs) -> Result<()> {
    let started = Instant::now();
    let audio = io::decode_audio(&args.audio)?;
    // The speech's frames; `cut` and `pad` learn the video's as it ends.
    let n_frames = (audio.len() as u64 * FPS as u64).div_ceil(crate::audio::SAMPLE_RATE as u64) as usize;
    let fit = if io::is_image(&args.face) { Fit::Bounce } else { args.fit };
    // The face is decoded as the frames go out, never held whole (see `FaceLoop`).
    let mut face = FaceLoop::open(&args.face, (args.max_size > 0).then_some(args.max_size), fit)?;
    eprintln!(
        "face {}: {}x{}; audio {}: {:.2} s -> {n_frames} frames at {FPS} fps{}",
        args.face.display(),
        face.width(),
        face.height(),
        args.audio.display(),
        audio.len() as f64 / crate::audio::SAMPLE_RATE as f64,
        if fit.repeats() { String::new() } else { format!(" (fit {fit:?}: the video decides)").to_lowercase() }
    );
    let config = EngineConfig { mode: Mode::Offline, tracking: args.tracking.config(), ..Default::default() };
    let phonemes = match &args.phonemes {
        Some(path) => Some(PhonemeFeed::from_track(&PhonemeTrack::load(path)?, 0)),
        None => None,
    };
    let (mut engine, mut producer) =
        Engine::<usize>::new(args.renderer.create(phonemes, io::is_image(&args.face))?, config)?;
    // Written beside the target and renamed onto it once whole (see `PendingFile`).
    let output = PendingFile::new(&args.output)?;
    let layout = FrameLayout::new(PixelFormat::Rgb, face.width(), face.height());
    let writer = Mp4Writer::create(output.path(), &layout, FPS as i32)?;

    let bar = ProgressBar::new(n_frames as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} frames ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // The audio goes into the file with the frames, up to the end of each: a dub stopped early is as long
    // in sound as in picture (an MP4 player, and GStreamer's demuxer, may skip a track far shorter than
    // the other).
    let audio_written = std::cell::Cell::new(0usize);
    let samples_per_frame = crate::audio::SAMPLE_RATE as usize / FPS as usize;
    let write = |out: OutputFrame<usize>| -> Result<()> {
        // Past the speech's end (`pad` with a longer video), silence.
        let (from, to) = (audio_written.get(), (out.payload + 1) * samples_per_frame);
        if to > from {
            let speech = &audio[from.min(audio.len())..to.min(audio.len())];
            let samples = if speech.len() == to - from {
                std::borrow::Cow::Borrowed(speech)
            } else {
                let mut padded = speech.to_vec();
                padded.resize(to - from, 0.0);
                std::borrow::Cow::Owned(padded)
            };
            writer.push_audio(&samples, crate::audio::samples_to_ns(from as u64))?;
            audio_written.set(to);
        }
        writer.push_frame(&out.frame, out.image, FRAME_NS)?;
        bar.inc(1);
        Ok(())
    };
    let window = engine.window();
    let mut fed = 0usize;
    let mut feed = |engine: &mut Engine<usize>, upto: usize| -> Result<()> {
        if fed < upto {
            engine.push_audio(&mut producer, (fed == 0).then_some(0), &audio[fed..upto])?;
            fed = upto;
        }
        Ok(())
    };
    // SIGINT (Ctrl-C) and SIGTERM stop the dub early: the frames rendered so far are written, the file is
    // completed and kept, and the command says so and fails. A second signal ends it at once.
    let interrupted = stop_signals(true)?;
    let mut pushed = 0;
    let mut held: Option<VideoFrame> = None;
    let mut stopped = false;
    loop {
        let k = pushed;
        // Past the speech only `pad` goes on, while the video lasts.
        if k >= n_frames && fit != Fit::Pad {
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            stopped = true;
            break;
        }
        let frame = match face.next_frame()? {
            Some(frame) => frame,
            // The video ended: `pad` holds its last frame while the speech lasts; `cut` stops.
            None if k < n_frames && fit == Fit::Pad => held
                .clone()
                .ok_or_else(|| Error::Media(format!("{}: the face video has no frame", args.face.display())))?,
            None => break,
        };
        if k >= n_frames {
            bar.set_length(k as u64 + 1);
        }
        held = Some(frame.clone());
        let pts = k as u64 * FRAME_NS;
        // Audio up to this frame's window end, and one frame more so the worker never starves.
        feed(&mut engine, (ns_to_samples(window.end(pts) + FRAME_NS) as usize).min(audio.len()))?;
        engine.push_video(frame.with_pts(pts, Some(FRAME_NS)), k);
        pushed += 1;
        // Two renders and a frame being tracked at most: the face video is never held ahead.
        for out in engine.pump(3, false) {
            write(out)?;
        }
        report(&mut engine);
    }
    if !stopped {
        feed(&mut engine, audio.len())?;
    }
    engine.audio_eos();
    for out in engine.finish(None) {
        write(out)?;
    }
    report(&mut engine);
    bar.finish_and_clear();
    writer.finish()?;
    let stats = engine.stats().snapshot();
    if stats.frames_in as usize != pushed {
        return Err(Error::Media(format!("wrote {} of {pushed} frames", stats.frames_in)));
    }
    output.commit()?;
    print_summary(&stats, started.elapsed(), Some(&args.output));
    if stopped {
        return Err(Error::Interrupted(format!(
            "wrote the first {pushed} of {n_frames} frames, with their audio, to {}",
            args.output.display()
        )));
    }
    Ok(())
}

fn report(engine: &mut Engine<usize>) {
    for e in engine.take_events() {
        eprintln!("warning: {e}");
    }
}
