//! `lipsync landmarks`: the face and its 468 FaceMesh landmarks in an image, as text or JSON, and
//! optionally a picture with them drawn.

use std::fmt::Write as _;
use std::path::PathBuf;

use candle_core::Device;
use clap::Args;

use crate::error::{Error, Result};
use crate::face::crop::RgbView;
use crate::face::landmarks::CONNECTIONS_FULL;
use crate::face::models::ModelSource;
use crate::face::{Face, FaceTracker, TrackerConfig};
use crate::guidance::sketch::line8;
use crate::io;

#[derive(Args, Debug)]
#[command(after_long_help = JSON_SCHEMA)]
pub struct LandmarksArgs {
    /// An image (png, jpg, ...) or a video (its first frame).
    image: PathBuf,
    /// Print JSON instead of text (schema below).
    #[arg(long)]
    json: bool,
    /// Write a PNG with the box, the landmarks and STSA's sketch connections drawn.
    #[arg(long, value_name = "OUT.png")]
    draw: Option<PathBuf>,
    /// The mediapipe 0.10.21 wheel or a folder with its face .tflite files
    /// (default: $LIPSYNC_MEDIAPIPE, else ~/.cache/lipsync/mediapipe-0.10.21-...whl).
    #[arg(long)]
    face_models: Option<PathBuf>,
}

const JSON_SCHEMA: &str = "JSON output (--json), all coordinates in image pixels:
{
  \"image\": \"path\", \"width\": W, \"height\": H,
  \"face\": null | {
    \"box\": [x0, y0, x1, y1],        bounding box of the landmarks
    \"score\": s,                    detector score (0..1)
    \"presence\": p,                 FaceMesh face presence (0..1)
    \"landmarks\": [[x, y, z], ...]  468 MediaPipe FaceMesh points; z is relative depth in pixels
  }
}";

pub fn run(args: &LandmarksArgs) -> Result<()> {
    let frame = io::decode_video(&args.image, 1)?.frames.remove(0);
    let models = args.face_models.as_deref().map_or_else(ModelSource::default_location, ModelSource::from_path);
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    let mut tracker = FaceTracker::new(&models, &Device::Cpu, config)?;
    let face = tracker.track(&frame)?;
    let (w, h) = (frame.width(), frame.height());
    let mut text = String::new();
    if args.json {
        text = to_json(&args.image.display().to_string(), w, h, face.as_ref());
        text.push('\n');
    } else {
        match &face {
            None => {
                let _ = writeln!(text, "{}: no face", args.image.display());
            }
            Some(f) => {
                let _ = writeln!(
                    text,
                    "{}: face at ({:.1}, {:.1})-({:.1}, {:.1}), score {:.3}, presence {:.3}",
                    args.image.display(),
                    f.bbox[0],
                    f.bbox[1],
                    f.bbox[2],
                    f.bbox[3],
                    f.score,
                    f.presence
                );
                for (i, p) in f.landmarks.iter().enumerate() {
                    let _ = writeln!(text, "{i:3} {:8.2} {:8.2} {:8.2}", p[0], p[1], p[2]);
                }
            }
        }
    }
    // A closed pipe (`| head`) ends the command quietly; any other failure to write (a full disk) says so.
    say!("{}", text.trim_end_matches('\n'));
    if let Some(out) = &args.draw {
        let view = RgbView::new(&frame);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h as usize {
            for x in 0..w as usize {
                rgb.extend_from_slice(&view.get(x, y));
            }
        }
        if let Some(f) = &face {
            draw(&mut rgb, w as usize, h as usize, f);
        }
        io::write_png(out, w, h, rgb)?;
        eprintln!("wrote {}", out.display());
    }
    if face.is_none() && !args.json {
        return Err(Error::InvalidArgument(format!("{}: no face found", args.image.display())));
    }
    Ok(())
}

fn to_json(image: &str, w: u32, h: u32, face: Option<&Face>) -> String {
    let mut s = String::new();
    let esc = image.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = write!(s, "{{\"image\":\"{esc}\",\"width\":{w},\"height\":{h},\"face\":");
    match face {
        None => s.push_str("null"),
        Some(f) => {
            let _ = write!(
                s,
                "{{\"box\":[{:.3},{:.3},{:.3},{:.3}],\"score\":{:.5},\"presence\":{:.5},\"landmarks\":[",
                f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3], f.score, f.presence
            );
            for (i, p) in f.landmarks.iter().enumerate() {
                let _ = write!(s, "{}[{:.3},{:.3},{:.3}]", if i > 0 { "," } else { "" }, p[0], p[1], p[2]);
            }
            s.push_str("]}");
        }
    }
    s.push('}');
    s
}

fn draw(rgb: &mut [u8], w: usize, h: usize, face: &Face) {
    let mut put = |x: i64, y: i64, c: [u8; 3]| {
        if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
            let o = (y as usize * w + x as usize) * 3;
            rgb[o..o + 3].copy_from_slice(&c);
        }
    };
    let line = |a: [f32; 2], b: [f32; 2], c: [u8; 3], put: &mut dyn FnMut(i64, i64, [u8; 3])| {
        let p = |v: [f32; 2]| (v[0].round() as i32, v[1].round() as i32);
        line8(p(a), p(b), |x, y| put(x as i64, y as i64, c));
    };
    let [x0, y0, x1, y1] = face.bbox;
    for (a, b) in [([x0, y0], [x1, y0]), ([x1, y0], [x1, y1]), ([x1, y1], [x0, y1]), ([x0, y1], [x0, y0])] {
        line(a, b, [255, 200, 0], &mut put);
    }
    for [i, j] in CONNECTIONS_FULL {
        let (p, q) = (face.landmarks[i as usize], face.landmarks[j as usize]);
        line([p[0], p[1]], [q[0], q[1]], [0, 255, 120], &mut put);
    }
    for p in &face.landmarks {
        put(p[0].round() as i64, p[1].round() as i64, [255, 40, 40]);
    }
}
