//! `renderer=classic`, the default: real lip-sync with no trained weights, on the CPU, in real time. Per
//! frame, on the engine's render thread:
//!
//! 1. [`articulation`]: the audio window around the frame (100 ms back, 100 ms ahead) becomes a
//!    [`MouthPose`]: the jaw drop and lip parting from the loudness, the lips' shape (spread or rounded,
//!    pressed for /p b m/, the lower lip under the teeth for /f v/, the tongue tip) from the visemes
//!    heard in the audio or given as timed phonemes; coarticulation smoothing; silence closes the mouth.
//! 2. The [`ReferenceBank`] learns the person live: its most closed frame is the neutral face the mouth
//!    is rebuilt from (until enrolment ends, the most closed frame so far), its most open one lends its
//!    teeth and tongue. A lasting change of face or lighting re-enrols.
//! 3. [`shape`]: the neutral mouth is mapped onto the current head, moved to the pose and blended over the
//!    frame's own lower face.
//! 4. [`warp`]: a piecewise-affine warp of the lower face to those targets, with the mouth interior drawn
//!    by [`mouth`], and the dark line where closed lips meet drawn over them; the fixed ring around the
//!    warp mesh makes the patch meet the frame without a seam.
//! 5. With `still_face` (a photo as the face): [`eyes`] draws the eyelids down at a person's rate and
//!    [`sway`] moves the head a little, slowly, the whole drawn frame warped against a fixed ring.

pub mod articulation;
pub mod eyes;
pub mod mouth;
pub mod shape;
pub mod sway;
pub mod warp;

pub use articulation::{Articulator, MouthPose};

use std::sync::Arc;

use crate::audio::AudioWindow;
use crate::error::Result;
use crate::face::Face;
use crate::face::crop::RgbView;
use crate::frame::{Patch, VideoFrame};
use crate::guidance::CANVAS;
use crate::guidance::references::{BankConfig, ReferenceBank, lip_openness};
use crate::render::pixels::{CHEEKS, appearance, luma, mean_colour, snapshot};
use crate::render::{RenderJob, Rendered, Renderer};
use crate::sync::mouth_opening;
use crate::visemes::PhonemeFeed;
use eyes::{Blinker, EyeRig};
use mouth::{Interior, OpenMouth};
use shape::{Affine, OUTER_LIP, Rig};
use sway::{HeadRig, Swayer};

/// Classic renderer settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassicConfig {
    /// How the reference bank enrols the person.
    pub bank: BankConfig,
    /// Scales every mouth movement (1 = natural).
    pub expressiveness: f32,
    /// Brings a face that holds still by itself (a photo as an avatar) to life: blinks and a slow sway
    /// of the head.
    pub still_face: bool,
}

impl Default for ClassicConfig {
    fn default() -> Self {
        ClassicConfig { bank: BankConfig::default(), expressiveness: 1.0, still_face: false }
    }
}

/// The neutral face in use and where it came from.
struct Neutral {
    rig: Rig,
    /// Inner-lip gap of the neutral, in interocular distances (lower is more closed).
    gap: f32,
    /// Bank generation it was taken from; `None` while enrolling (the most closed frame so far).
    generation: Option<u64>,
}

pub struct Classic {
    config: ClassicConfig,
    articulator: Articulator,
    bank: ReferenceBank,
    neutral: Option<Neutral>,
    open_mouth: Option<(u64, Option<OpenMouth>)>,
    /// With `still_face`: the eyes' and the head's meshes (built on the first face), when the eyes blink
    /// and how the head sways.
    eyes: Option<EyeRig>,
    blinker: Blinker,
    head: Option<HeadRig>,
    swayer: Swayer,
}

const UPPER_INNER: [u16; 11] = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308];
const LOWER_INNER: [u16; 11] = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308];
/// The line where closed lips meet: its width (interocular distances), its shade (share of the lips'
/// colour), the opening (interocular distances) at which it has given way to the drawn interior, and its
/// strength for lips at rest (pressed lips: 1).
const SEAM_WIDTH: f32 = 0.012;
const SEAM_SHADE: f32 = 0.5;
const SEAM_OPEN: f32 = 0.02;
const SEAM_AT_REST: f32 = 0.6;
/// A reference whose inner lips are this far apart (interocular distances) shows its teeth.
const OPEN_REFERENCE: f32 = 0.08;

impl Classic {
    pub fn new(config: ClassicConfig) -> Self {
        Classic {
            config,
            articulator: Articulator::new(),
            bank: ReferenceBank::new(config.bank),
            neutral: None,
            open_mouth: None,
            eyes: None,
            blinker: Blinker::default(),
            head: None,
            swayer: Swayer::default(),
        }
    }

    /// Takes the visemes from `feed` wherever it has phonemes ([`Articulator::with_phonemes`]).
    pub fn with_phonemes(mut self, feed: Option<PhonemeFeed>) -> Self {
        self.articulator = self.articulator.with_phonemes(feed);
        self
    }

    /// Feeds the bank and picks the neutral face: the bank's most closed reference once enrolled, the
    /// most closed frame so far until then.
    pub fn learn(&mut self, frame: &VideoFrame, face: &Face) {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        self.bank
            .offer(frame.pts, lip_openness(&face.landmarks, w, h), appearance(frame, face), || snapshot(frame, face));
        let generation = self.bank.generation();
        match self.bank.references() {
            Some(refs) => {
                if self.neutral.as_ref().is_none_or(|n| n.generation != Some(generation)) {
                    let closed = &refs[0];
                    let lm: Vec<[f32; 3]> = closed.landmarks.iter().map(|p| [p[0], p[1], 0.0]).collect();
                    self.neutral = Some(Neutral {
                        rig: Rig::new(&lm),
                        gap: mouth_opening(&closed.landmarks),
                        generation: Some(generation),
                    });
                }
                if self.open_mouth.as_ref().is_none_or(|(g, _)| *g != generation) {
                    let open = refs.last().filter(|r| mouth_opening(&r.landmarks) >= OPEN_REFERENCE).map(|r| {
                        let line = |ids: &[u16]| ids.iter().map(|&i| r.landmarks[i as usize]).collect();
                        let lum =
                            r.crop.chunks_exact(3).map(|c| luma([c[0] as f32, c[1] as f32, c[2] as f32])).sum::<f32>()
                                / (CANVAS * CANVAS) as f32;
                        OpenMouth {
                            rgb: r.crop.clone(),
                            width: CANVAS,
                            height: CANVAS,
                            upper: line(&UPPER_INNER),
                            lower: line(&LOWER_INNER),
                            luma: lum,
                        }
                    });
                    // Only a reference whose opening is dark (teeth and cavity, not just tongue or lips).
                    let open = open.filter(OpenMouth::looks_open);
                    self.open_mouth = Some((generation, open));
                }
            }
            None => {
                let gap = mouth_opening(&face.landmarks);
                let stale = self.neutral.as_ref().is_none_or(|n| n.generation.is_some() || gap < n.gap - 0.005);
                if stale {
                    self.neutral = Some(Neutral { rig: Rig::new(&face.landmarks), gap, generation: None });
                }
                self.open_mouth = None;
            }
        }
    }

    /// The pose for a frame, scaled by the configured expressiveness.
    pub fn pose(&mut self, job: &RenderJob<'_>) -> MouthPose {
        let p = self.articulator.pose(job.frame.pts, job.audio, job.audio_missing);
        let k = self.config.expressiveness;
        MouthPose { jaw: (p.jaw * k).min(1.5), lips: (p.lips * k).min(1.5), ..p }
    }

    /// Renders the lower face of `frame` for `pose`, the neutral placed on the head as the landmarks say
    /// (no smoothing over time: see [`Renderer::render`]).
    pub fn render_pose(&self, frame: &VideoFrame, face: &Face, pose: &MouthPose) -> Option<Patch> {
        let head = self.neutral.as_ref()?.rig.head(&face.landmarks)?;
        self.render_with_head(frame, face, &head, pose)
    }

    fn render_with_head(&self, frame: &VideoFrame, face: &Face, head: &Affine, pose: &MouthPose) -> Option<Patch> {
        let rig = &self.neutral.as_ref()?.rig;
        // The head is placed from the smoothed landmarks (steady); the pixels are taken where they are in
        // this frame (the smoothing lags a moving mouth, and the lips would be sampled off their edges).
        let t = rig.targets(face.raw_landmarks(), head, pose);
        let view = RgbView::new(frame);
        let lip = mean_colour(&view, &face.landmarks, &OUTER_LIP);
        let skin = luma(mean_colour(&view, &face.landmarks, &CHEEKS));
        let shader = Interior {
            lip,
            luma: skin,
            // Lower lip under the upper teeth (/f v/): the teeth fill what shows of the opening.
            teeth: Interior::teeth_share(t.gap, t.scale).max(pose.tuck.min(1.0)) * (1.0 - pose.press.min(1.0)),
            tongue: pose.tongue.min(1.0),
            // Lips pressed, or an opening of a few pixels: the line where the lips meet.
            contact: pose.press.max(1.0 - smoothstep(0.03 * t.scale, 0.06 * t.scale, t.gap)),
            feather: [1.5 / t.width.max(1.0), 1.5 / t.gap.max(1.0)],
            reference: self.open_mouth.as_ref().and_then(|(_, m)| m.as_ref()),
        };
        let drawn = warp::DrawnInterior { triangles: &rig.interior, uv: &rig.mouth_uv, shader: &shader };
        let mut patch = warp::warp(frame, &t.source, &t.target, &rig.triangles, Some(drawn))?;
        // Lips that meet show the dark line between them: pressed lips a deep one, lips at rest a lighter one.
        let resting = SEAM_AT_REST * (1.0 - smoothstep(0.0, SEAM_OPEN * t.scale, t.gap));
        let closed = smoothstep(0.2, 0.8, pose.press).max(resting);
        let width = SEAM_WIDTH * t.scale;
        mouth::draw_seam(&mut patch, &t.seam, width, lip.map(|c| c * SEAM_SHADE), closed);
        Some(patch)
    }
}

/// Hermite interpolation from 0 at `lo` to 1 at `hi`: the classic renderer's soft thresholds and edges.
pub(crate) fn smoothstep(lo: f32, hi: f32, x: f32) -> f32 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Default for Classic {
    fn default() -> Self {
        Self::new(ClassicConfig::default())
    }
}

impl Renderer for Classic {
    fn name(&self) -> &'static str {
        "classic"
    }

    fn window(&self) -> AudioWindow {
        articulation::WINDOW
    }

    /// The 95 ms look-ahead plus 25 ms to render: 120 ms. The face is tracked while the frame waits for its
    /// look-ahead (the engine's tracking thread), so only the render counts: 4.1 ms on average for a
    /// 720-pixel face in 1280x720 on a 2-core CPU, composite included, 8.4 ms with a still face's blinks
    /// and head sway (`cargo bench --bench classic`). Live at 25 fps a still 720-pixel face's p99 is 17 ms;
    /// a file dub, where the encoder takes both cores as fast as they go, sees 22 to 33 ms, late for no
    /// frame since a file is not live.
    fn recommended_latency(&self) -> u64 {
        articulation::WINDOW.after + 25_000_000
    }

    fn needs_face(&self) -> bool {
        true
    }

    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        let _span = tracing::debug_span!("classic", pts = job.frame.pts).entered();
        let Some(face) = job.face else {
            return Ok(Rendered::Unchanged);
        };
        let pose = self.pose(job);
        self.learn(job.frame, face);
        let Some(head) = self.neutral.as_ref().and_then(|n| n.rig.head(&face.landmarks)) else {
            return Ok(Rendered::Unchanged);
        };
        // The head placement is not smoothed over time beyond the tracker's own One-Euro filter: the mouth
        // must ride on the head exactly (smoothing it here measurably added tremble relative to the face).
        let mouth = self.render_with_head(job.frame, face, &head, &pose);
        if !self.config.still_face {
            return Ok(mouth.map_or(Rendered::Unchanged, Rendered::Patch));
        }
        let amount = self.blinker.amount(job.frame.pts);
        let eyes = self.eyes.get_or_insert_with(|| EyeRig::new(&face.landmarks)).blink(job.frame, face, amount);
        let drawn = match (mouth, eyes) {
            (Some(mouth), Some(eyes)) => Some(mouth.under(&eyes)),
            (one, other) => one.or(other),
        };
        // The head sways with the mouth and eyes as drawn: the mesh warps the frame they are blended into.
        let pose = self.swayer.pose(job.frame.pts);
        let head = self.head.get_or_insert_with(|| HeadRig::new(&face.landmarks));
        let swayed = match &drawn {
            Some(patch) => {
                let layout = *job.frame.layout();
                let drawn_frame = VideoFrame::new(layout, Arc::new(job.frame.composite(patch)), job.frame.pts, None)?;
                head.sway(&drawn_frame, face, pose)
            }
            None => head.sway(job.frame, face, pose),
        };
        Ok(match (drawn, swayed) {
            (Some(drawn), Some(swayed)) => Rendered::Patch(drawn.under(&swayed)),
            (one, other) => one.or(other).map_or(Rendered::Unchanged, Rendered::Patch),
        })
    }

    fn reset(&mut self) {
        self.articulator.reset();
        self.bank.reset();
        self.neutral = None;
        self.open_mouth = None;
        self.eyes = None;
        self.blinker = Blinker::default();
        self.head = None;
        self.swayer = Swayer::default();
    }
}
