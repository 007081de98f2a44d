//! Sketches and heatmaps against the original STSA drawing (`../shared/fixtures/stsa/sketch_heatmap.npz`):
//! sketches exactly, heatmaps to float rounding, for every case, edge values included.

mod common;

use std::collections::HashMap;
use std::io::Read;

use lipsync::face::landmarks::{CONNECTIONS_FULL, CONNECTIONS_POSE, FULL_FACE_SEQUENCE, STSA_131};
use lipsync::guidance::{CANVAS, heatmap, sketch};

/// A numpy array: shape and raw little-endian bytes.
struct Npy {
    shape: Vec<usize>,
    descr: String,
    data: Vec<u8>,
}

fn load_npz(path: &str) -> HashMap<String, Npy> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().trim_end_matches(".npy").to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let (len, start) = if bytes[6] == 1 {
            (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
        } else {
            (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12)
        };
        let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
        let descr = header.split("'descr': '").nth(1).unwrap().split('\'').next().unwrap().to_owned();
        assert!(header.contains("'fortran_order': False"));
        let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
        let shape = shape.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
        out.insert(name, Npy { shape, descr, data: bytes[start + len..].to_vec() });
    }
    out
}

impl Npy {
    fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4");
        self.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }
    fn u8s(&self) -> &[u8] {
        assert_eq!(self.descr, "|u1");
        &self.data
    }
}

#[test]
fn sketches_and_heatmaps_equal_the_originals() {
    let npz = load_npz(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/stsa/sketch_heatmap.npz"));
    let lm = npz["landmarks_full_2x131"].f32s();
    let n = npz["landmarks_full_2x131"].shape[0];
    let plane = CANVAS * CANVAS;
    let (sk_full, hm_full) = (npz["sketch_full_u8"].u8s(), npz["heatmap_full"].f32s());
    let (sk_pose, hm_pose) = (npz["sketch_pose_u8"].u8s(), npz["heatmap_pose"].f32s());
    // Column j holds the landmark STSA_131[FULL_FACE_SEQUENCE[j]]: pose76 first, then content55.
    let column = |id: u16| FULL_FACE_SEQUENCE.iter().position(|&p| STSA_131[p as usize] == id);
    for case in 0..n {
        let point = |id: u16, max_col: usize| -> Option<[f32; 2]> {
            let j = column(id).filter(|&j| j < max_col)?;
            Some([lm[case * 262 + j], lm[case * 262 + 131 + j]])
        };
        let full = sketch::draw(|id| point(id, 131), &CONNECTIONS_FULL);
        assert_eq!(full, &sk_full[case * plane..(case + 1) * plane], "full sketch, case {case}");
        let pose = sketch::draw(|id| point(id, 76), &CONNECTIONS_POSE);
        assert_eq!(pose, &sk_pose[case * plane..(case + 1) * plane], "pose sketch, case {case}");
        for (ours, theirs, what) in [
            (heatmap::heatmap(&full), &hm_full[case * plane..(case + 1) * plane], "full"),
            (heatmap::heatmap(&pose), &hm_pose[case * plane..(case + 1) * plane], "pose"),
        ] {
            let worst = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst == 0.0, "{what} heatmap, case {case}: not bit-exact (max |diff| {worst})");
        }
    }
}

#[test]
fn an_empty_sketch_has_an_empty_heatmap() {
    let blank = vec![1u8; CANVAS * CANVAS];
    assert!(heatmap::heatmap(&blank).iter().all(|&v| v == 0.0));
}

#[test]
fn compositing_changes_only_the_face_and_leaves_no_seam() {
    use candle_core::Device;
    use lipsync::face::crop::RgbView;
    use lipsync::face::models::ModelSource;
    use lipsync::face::{FaceTracker, TrackerConfig};
    use lipsync::guidance::composite::face_patch;
    use lipsync::guidance::crop::FaceBox;

    let frame = common::frame(&common::golden("astronaut"));
    let rgb = frame.data().to_vec(); // 512 * 3 is a multiple of 4: no row padding
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    let mut tracker = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config).unwrap();
    let face = tracker.track(&frame).unwrap().expect("a face");
    let fb = FaceBox::around(&face.landmarks, 512, 512);
    // A "rendered" face: the frame's own face, resampled to 128x128, 40 levels too red.
    let view = RgbView::new(&frame);
    let (bw, bh) = (fb.x2 - fb.x1, fb.y2 - fb.y1);
    let mut rendered = Vec::with_capacity(CANVAS * CANVAS * 3);
    for y in 0..CANVAS {
        for x in 0..CANVAS {
            let p = view.get(fb.x1 + x * bw / CANVAS, fb.y1 + y * bh / CANVAS);
            rendered.extend_from_slice(&[p[0].saturating_add(40), p[1], p[2]]);
        }
    }
    let patch = face_patch(&frame, &rendered, &fb, &face.landmarks);
    let out = frame.composite(&patch);
    // The contour polygon (the face oval) bounds every change.
    let oval: Vec<[f32; 2]> =
        STSA_131[..25].iter().map(|&id| [face.landmarks[id as usize][0], face.landmarks[id as usize][1]]).collect();
    let inside = |x: f32, y: f32| {
        let mut c = false;
        for i in 0..oval.len() {
            let (a, b) = (oval[i], oval[(i + 1) % oval.len()]);
            if (a[1] <= y) != (b[1] <= y) && x < a[0] + (y - a[1]) / (b[1] - a[1]) * (b[0] - a[0]) {
                c = !c;
            }
        }
        c
    };
    let stride = 512 * 3; // 512 * 3 is a multiple of 4: no row padding
    let (mut changed, mut red_shift) = (0usize, 0i64);
    for y in 0..512usize {
        for x in 0..512usize {
            let o = y * stride + x * 3;
            if out[o..o + 3] != rgb[o..o + 3] {
                changed += 1;
                red_shift += out[o] as i64 - rgb[o] as i64;
                assert!(inside(x as f32 + 0.5, y as f32 + 0.5), "pixel ({x}, {y}) outside the face changed");
            }
        }
    }
    assert!(changed > 2000, "the face was pasted ({changed} pixels changed)");
    // Colour match removed the 40-level red cast.
    let mean_shift = red_shift as f64 / changed as f64;
    assert!(mean_shift.abs() < 8.0, "red cast left: {mean_shift}");
    // No seam: alpha rises gradually from the contour (no step over a quarter of the range).
    let (pw, ph) = (patch.width as usize, patch.height as usize);
    let alpha = |x: usize, y: usize| patch.rgba[(y * pw + x) * 4 + 3] as i32;
    let mut worst = 0;
    for y in 0..ph {
        for x in 0..pw {
            if x + 1 < pw {
                worst = worst.max((alpha(x + 1, y) - alpha(x, y)).abs());
            }
            if y + 1 < ph {
                worst = worst.max((alpha(x, y + 1) - alpha(x, y)).abs());
            }
        }
    }
    assert!(worst <= 64, "the mask steps by {worst}/255 between neighbours: a visible seam");
}
