//! Renderers: given a frame and its audio window, produce the re-rendered mouth as a [`Patch`] (or nothing).
//! The engine runs one renderer on its worker thread: [`Classic`] (the default, no trained weights),
//! [`Stsa`] (STSA's networks, with the user's weights) or [`Passthrough`].

pub mod classic;
mod passthrough;
pub mod pixels;
pub mod stsa;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use classic::{Classic, ClassicConfig};
pub use passthrough::Passthrough;
pub use stsa::{Stsa, StsaConfig};

use crate::audio::AudioWindow;
use crate::error::{Error, Result};
use crate::face::Face;
use crate::frame::{Patch, VideoFrame};
use crate::stsa::models::{ComputeDevice, Precision};
use crate::visemes::PhonemeFeed;

/// The compute time a renderer's default latency allows for: one frame at 25 fps.
pub const ONE_FRAME_OF_COMPUTE: u64 = 40_000_000;

/// Everything a renderer gets for one frame.
#[derive(Debug)]
pub struct RenderJob<'a> {
    pub frame: &'a VideoFrame,
    /// `window().samples()` samples at 16 kHz, starting at `frame.pts - window().before`.
    pub audio: &'a [f32],
    /// How many of `audio` were missing and are silence.
    pub audio_missing: usize,
    /// The face tracked in this frame, when the engine tracks faces.
    pub face: Option<&'a Face>,
    /// The frames around this one that the renderer asked for ([`Renderer::frame_context`]):
    /// `before` frames, this one, then `after` frames, in order. A slot is `None` where the stream has
    /// no such frame (before its start, after its end, across a flush). Empty when no context was asked.
    pub context: &'a [Option<Neighbour>],
}

/// A frame near the one rendered, as a renderer with a frame context sees it.
#[derive(Clone, Debug)]
pub struct Neighbour {
    pub pts: u64,
    /// Its tracked face (`None`: no face was found in it).
    pub face: Option<Face>,
}

/// How many frames around the rendered one a renderer looks at. A frame's render waits until the
/// `after` frames following it have arrived (or the stream ends), so `after` frame periods add to the
/// latency the renderer needs, as its audio look-ahead does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameContext {
    pub before: usize,
    pub after: usize,
}

impl FrameContext {
    /// Slots in [`RenderJob::context`].
    pub fn len(&self) -> usize {
        self.before + 1 + self.after
    }

    pub fn is_empty(&self) -> bool {
        *self == FrameContext::default()
    }
}

/// What a renderer made of a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Rendered {
    /// Nothing to change: the input frame goes out as it is (no copy).
    Unchanged,
    /// Blend this patch into the frame.
    Patch(Patch),
}

/// A per-frame renderer run on the engine's worker thread.
pub trait Renderer: Send {
    /// Short name, used in logs and errors.
    fn name(&self) -> &'static str;

    /// The audio this renderer needs around each frame.
    fn window(&self) -> AudioWindow;

    /// The latency this renderer should be given by default: its look-ahead plus a frame of compute.
    fn recommended_latency(&self) -> u64 {
        self.window().after + ONE_FRAME_OF_COMPUTE
    }

    /// Renders one frame.
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered>;

    /// Whether the renderer needs the tracked face: the engine then tracks every frame and passes frames
    /// without a face through untouched.
    fn needs_face(&self) -> bool {
        false
    }

    /// The frames around each rendered one whose faces the job carries (none by default). Only
    /// meaningful with [`Renderer::needs_face`].
    fn frame_context(&self) -> FrameContext {
        FrameContext::default()
    }

    /// Forgets any state carried from frame to frame (flush, seek, new stream).
    fn reset(&mut self) {}
}

/// The renderers users can choose (the element's `renderer` property, the CLI's `--renderer`).
#[cfg_attr(feature = "gst", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RendererKind {
    /// Lip-sync from the audio's loudness and spectrum by warping the tracked face: no trained weights.
    #[default]
    Classic,
    /// Frames go through unchanged; the engine's timing still applies.
    Passthrough,
    /// STSA's networks (wav2vec2, heatmap generator, face renderer): needs the weights files.
    Stsa,
}

/// What some renderers need to be built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RendererOptions {
    /// `stsa`: the folder holding the weights (models/README.md), or `detw` for the deterministic test
    /// weights (the networks run but draw noise: for tests and timing).
    pub weights: Option<PathBuf>,
    /// `stsa`: where its networks run.
    pub device: ComputeDevice,
    /// `stsa`: its networks' precision.
    pub precision: Precision,
    /// `classic`: timed phonemes of the speech (from a TTS, a file), which it takes the visemes from
    /// wherever they have phonemes, instead of hearing them from the audio.
    pub phonemes: Option<PhonemeFeed>,
    /// `classic`: the face is a still (a photo): draw blinks and a slow head sway.
    pub still_face: bool,
}

impl RendererKind {
    pub const ALL: [RendererKind; 3] = [RendererKind::Classic, RendererKind::Passthrough, RendererKind::Stsa];

    pub fn name(self) -> &'static str {
        match self {
            RendererKind::Classic => "classic",
            RendererKind::Passthrough => "passthrough",
            RendererKind::Stsa => "stsa",
        }
    }

    /// The renderer's audio window and recommended latency, without building it (`stsa` would load
    /// its networks): what an element shows before it starts.
    pub fn timing(self) -> Result<(AudioWindow, u64)> {
        match self {
            RendererKind::Stsa => {
                let window = stsa::DEFAULT_WINDOW;
                Ok((window, window.after + ONE_FRAME_OF_COMPUTE))
            }
            _ => {
                let r = self.create(&RendererOptions::default())?;
                Ok((r.window(), r.recommended_latency()))
            }
        }
    }

    /// Builds the renderer; `stsa` loads its networks here, and fails naming a missing file.
    pub fn create(self, options: &RendererOptions) -> Result<Box<dyn Renderer>> {
        Ok(match self {
            RendererKind::Classic => {
                let config = ClassicConfig { still_face: options.still_face, ..ClassicConfig::default() };
                Box::new(Classic::new(config).with_phonemes(options.phonemes.clone()))
            }
            RendererKind::Passthrough => Box::new(Passthrough),
            RendererKind::Stsa => {
                let weights = match options.weights.as_deref() {
                    None => {
                        return Err(Error::InvalidArgument(
                            "renderer `stsa` needs its weights: set `weights` to a folder holding \
                             heatmap_weight.pth, face_weight.pth and wav2vec2-base-960h's pytorch_model.bin \
                             (models/README.md says where to get them)"
                                .into(),
                        ));
                    }
                    Some(p) if p.as_os_str() == "detw" => crate::stsa::models::WeightSource::Detw,
                    Some(p) => crate::stsa::models::WeightSource::Folder(p.to_path_buf()),
                };
                let mut config = StsaConfig::new(weights);
                config.device = options.device;
                config.precision = options.precision;
                Box::new(Stsa::new(config)?)
            }
        })
    }
}

impl fmt::Display for RendererKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RendererKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
            Error::InvalidArgument(format!("unknown renderer `{s}`; available: {}", names.join(", ")))
        })
    }
}

/// Wraps a renderer to behave like a heavier one: `delay` more compute per frame and a look-ahead of at
/// least `lookahead`. Users check a pipeline's latency budget with it before they have a slow renderer;
/// tests use it to exercise deadlines and audio windows.
pub struct Simulated {
    pub inner: Box<dyn Renderer>,
    pub delay: Duration,
    pub lookahead: u64,
}

impl Simulated {
    /// `inner` unchanged when there is nothing to simulate.
    pub fn wrap(inner: Box<dyn Renderer>, delay: Duration, lookahead: u64) -> Box<dyn Renderer> {
        if delay.is_zero() && lookahead <= inner.window().after {
            inner
        } else {
            Box::new(Simulated { inner, delay, lookahead })
        }
    }
}

impl Simulated {
    /// The latency a renderer with `window` and `recommended` latency needs once simulated.
    pub fn recommended(window: AudioWindow, recommended: u64, delay: Duration, lookahead: u64) -> u64 {
        recommended + lookahead.saturating_sub(window.after) + delay.as_nanos() as u64
    }
}

impl Renderer for Simulated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn window(&self) -> AudioWindow {
        let w = self.inner.window();
        AudioWindow { before: w.before, after: w.after.max(self.lookahead) }
    }
    fn recommended_latency(&self) -> u64 {
        Self::recommended(self.inner.window(), self.inner.recommended_latency(), self.delay, self.lookahead)
    }
    fn needs_face(&self) -> bool {
        self.inner.needs_face()
    }
    fn frame_context(&self) -> FrameContext {
        self.inner.frame_context()
    }
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        std::thread::sleep(self.delay);
        // The inner renderer gets the window it asked for: the head of the simulated one.
        let w = self.inner.window();
        let n = w.samples().min(job.audio.len());
        let inner_job = RenderJob {
            frame: job.frame,
            audio: &job.audio[..n],
            audio_missing: job.audio_missing.min(n),
            face: job.face,
            context: job.context,
        };
        self.inner.render(&inner_job)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}
