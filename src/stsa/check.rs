//! The STSA device check: the three networks against the original's outputs on a device, and the
//! `stsa` renderer's throughput there. The `stsa-check` program (the GPU bundle's, `scripts/gpu-bundle.sh`)
//! runs it; the benchmark and tests use its [`Scene`].

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::face::Face;
use crate::face::tracker::roi_from_landmarks;
use crate::frame::{PixelFormat, VideoFrame};

/// The fixture files the check reads, in its fixtures folder.
pub const FIXTURES: [&str; 4] = [
    "wav2vec2_base_detw.safetensors",
    "heatmap_generator_detw.safetensors",
    "face_renderer_detw_io.safetensors",
    "astronaut.golden.safetensors",
];

/// Reads a fixture, naming the file when it cannot.
fn load(path: &Path, device: &Device) -> Result<std::collections::HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| Error::Model(format!("fixture {}: {e}", path.display())))
}

/// A tracked face in a 1280x720 frame: the astronaut portrait (512x512, scaled to 720x720 by nearest
/// neighbour) in the middle of a grey frame, with MediaPipe's own 468 landmarks of it.
pub struct Scene {
    pub frame: VideoFrame,
    pub face: Face,
}

impl Scene {
    pub const WIDTH: usize = 1280;
    pub const HEIGHT: usize = 720;
    /// Where the portrait's left edge lies.
    const LEFT: usize = 280;

    /// From `astronaut.golden.safetensors` (its `image_rgb_u8` and `mp_mesh468`).
    pub fn load(golden: &Path) -> Result<Scene> {
        let g = load(golden, &Device::Cpu)?;
        let get = |k: &str| g.get(k).ok_or_else(|| Error::Model(format!("{}: no `{k}`", golden.display())));
        let image = get("image_rgb_u8")?;
        let (side, _, _) = image.dims3()?;
        let rgb = image.flatten_all()?.to_vec1::<u8>()?;
        let (w, h, x0) = (Self::WIDTH, Self::HEIGHT, Self::LEFT);
        let mut canvas = vec![128u8; w * h * 3];
        for y in 0..h {
            for x in 0..h {
                let s = ((y * side / h) * side + x * side / h) * 3;
                let d = (y * w + x0 + x) * 3;
                canvas[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
            }
        }
        let frame = VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, canvas, 0)?;
        // MediaPipe's landmarks are normalised to the portrait: into the frame, normalised and in pixels.
        let mesh = get("mp_mesh468")?.to_vec2::<f32>()?;
        let scale = h as f32;
        let normalised: Vec<[f32; 3]> =
            mesh.iter().map(|p| [(p[0] * scale + x0 as f32) / w as f32, p[1], p[2] * scale / w as f32]).collect();
        let pixels = normalised.iter().map(|p| [p[0] * w as f32, p[1] * h as f32, p[2] * w as f32]).collect();
        let face = Face::new(pixels, 1.0, 1.0, roi_from_landmarks(&normalised, (w, h)), true);
        Ok(Scene { frame, face })
    }

    /// Frame `k` of a stream of this scene at 25 fps.
    pub fn frame_at(&self, k: u64) -> VideoFrame {
        self.frame.with_pts(k * 40_000_000, Some(40_000_000))
    }
}
