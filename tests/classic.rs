//! The classic renderer on real faces: its warp mesh, what it changes in a frame, and that the mouth it
//! draws is the mouth the tracker then sees.

mod common;

use candle_core::Device;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, TrackerConfig};
use lipsync::render::classic::shape::Rig;
use lipsync::render::classic::{Classic, MouthPose};
use lipsync::sync::{mouth_opening, mouth_width};
use lipsync::{PixelFormat, VideoFrame};

fn tracker() -> FaceTracker {
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config).unwrap()
}

/// The renderer after seeing `frame` once (its neutral is that frame), and the frame's face.
fn primed(frame: &VideoFrame) -> (Classic, lipsync::face::Face) {
    let face = tracker().track(frame).unwrap().expect("a face");
    let mut classic = Classic::default();
    classic.learn(frame, &face);
    (classic, face)
}

#[test]
fn the_mesh_has_a_mouth_interior_between_the_inner_lips() {
    for name in common::IMAGES {
        let frame = common::frame(&common::golden(name));
        let face = tracker().track(&frame).unwrap().unwrap();
        let rig = Rig::new(&face.landmarks);
        // The inner lip contour has 20 points: a polygon of 20 vertices has 18 triangles.
        assert_eq!(rig.interior.iter().filter(|&&b| b).count(), 18, "{name}");
        assert!(rig.triangles.len() > 150, "{name}: {} triangles", rig.triangles.len());
    }
}

#[test]
fn the_drawn_mouth_opens_as_the_pose_asks_and_the_tracker_sees_it() {
    let frame = common::frame(&common::golden("astronaut"));
    let (classic, face) = primed(&frame);
    let mut openings = Vec::new();
    for k in [0.0, 0.5, 1.0] {
        let pose = MouthPose::open(k, k, 0.0);
        let patch = classic.render_pose(&frame, &face, &pose).expect("a patch");
        let out = VideoFrame::from_vec(PixelFormat::Rgb, 512, 512, frame.composite(&patch), 0).unwrap();
        let seen = tracker().track(&out).unwrap().expect("still a face");
        openings.push(mouth_opening(&seen.landmarks));
    }
    eprintln!("openings measured for poses 0, 0.5, 1: {openings:?}");
    // The photo's own mouth shows its teeth (0.11); the closed pose shuts it.
    assert!(openings[0] < 0.02, "closed: {}", openings[0]);
    assert!(openings[1] > openings[0] + 0.005 && openings[2] > openings[1] + 0.005, "{openings:?}");
    assert!(openings[2] > openings[0] + 0.02, "{openings:?}");
}

#[test]
fn a_smile_that_shows_the_teeth_is_shut_by_its_jaw() {
    let frame = common::frame(&common::golden("astronaut"));
    let face = tracker().track(&frame).unwrap().expect("a face");
    let own: Vec<[f32; 2]> = face.landmarks.iter().map(|p| [p[0], p[1]]).collect();
    let neutral = Rig::new(&face.landmarks).neutral().to_vec();
    let gap = own[14][1] - own[13][1];
    assert!(gap > 5.0, "the photo's teeth show: {gap} px");
    let rise = |id: usize| own[id][1] - neutral[id][1];
    // The lower lip meets the upper one, which stays; the lip keeps its thickness; the chin comes up (the
    // face is turned a little from the frame's axes: 0.05 px).
    assert!((neutral[14][1] - neutral[13][1]).abs() < 0.05 && rise(13).abs() < 0.05);
    assert!((rise(14) - gap).abs() < 0.05 && (rise(17) - gap).abs() < 0.05, "{} {}", rise(14), rise(17));
    assert!(rise(152) > 0.9 * gap && rise(152) <= gap + 0.05, "chin: {} of {gap}", rise(152));
    // The corners stay, and the skin just under them rises no more than the lip beside it.
    for id in [61, 291, 78, 308] {
        assert!(rise(id).abs() < 0.05, "corner {id}");
    }
    const LOWER_LIP_OUTER: [usize; 11] = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291];
    let lip_y = |points: &[[f32; 2]], x: f32| {
        LOWER_LIP_OUTER
            .windows(2)
            .map(|w| (points[w[0]], points[w[1]]))
            .find(|(a, b)| a[0] <= x && x <= b[0])
            .map(|(a, b)| a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0]).max(1e-6))
    };
    let mut under = 0;
    for id in 0..own.len() {
        let Some(y) = lip_y(&own, own[id][0]) else { continue };
        if LOWER_LIP_OUTER.contains(&id) || own[id][1] < y + 1.0 {
            continue;
        }
        under += 1;
        let y = lip_y(&neutral, neutral[id][0]).unwrap();
        assert!(neutral[id][1] > y, "landmark {id} rose past the lower lip: {:?} {y}", neutral[id]);
    }
    assert!(under > 20, "{under} landmarks under the lip");
}

#[test]
fn only_the_lower_face_changes() {
    let frame = common::frame(&common::golden("speakerine_f000"));
    let (classic, face) = primed(&frame);
    let pose = MouthPose::open(1.0, 1.0, 0.5);
    let patch = classic.render_pose(&frame, &face, &pose).unwrap();
    let out = frame.composite(&patch);
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.layout().strides[0];
    let nose_y = face.landmarks[1][1];
    let (mut changed, mut seam, mut seam_sum, mut seam_n) = (0, 0i32, 0i64, 0);
    let (pw, ph) = (patch.width as i32, patch.height as i32);
    let alpha = |x: i32, y: i32| {
        let (px, py) = (x - patch.x, y - patch.y);
        if px < 0 || py < 0 || px >= pw || py >= ph { 0 } else { patch.rgba[((py * pw + px) * 4 + 3) as usize] }
    };
    for y in 0..h {
        for x in 0..w {
            let o = y * stride + x * 3;
            let d = (0..3).map(|c| (out[o + c] as i32 - frame.data()[o + c] as i32).abs()).max().unwrap();
            if d > 0 {
                changed += 1;
                assert!(y as f32 > nose_y - 0.25 * (face.bbox[3] - face.bbox[1]), "({x}, {y}) above the nose changed");
            }
            // Where the warped region meets the untouched frame, the warp is the identity: no seam.
            let (xi, yi) = (x as i32, y as i32);
            let in_frame = |x: i32, y: i32| x >= 0 && y >= 0 && x < w as i32 && y < h as i32;
            let edge = alpha(xi, yi) > 0
                && [(1, 0), (-1, 0), (0, 1), (0, -1)]
                    .iter()
                    .any(|(dx, dy)| in_frame(xi + dx, yi + dy) && alpha(xi + dx, yi + dy) == 0);
            if edge {
                seam = seam.max(d);
                seam_sum += d as i64;
                seam_n += 1;
            }
        }
    }
    assert!(changed > 1000, "{changed}");
    let mean = seam_sum as f64 / seam_n as f64;
    eprintln!("edge of the warped region: {seam_n} pixels, mean change {mean:.2}, max {seam}");
    // Continuous: at most the sub-pixel resampling of a pixel next to an unmoved mesh edge (the jaw's full
    // drop moves the mesh just inside it by several pixels on this 256-pixel clip).
    assert!(seam_n > 100 && mean < 0.5 && seam <= 8, "a seam: mean {mean}, max {seam}");
}

#[test]
fn every_pixel_format_gets_the_same_mouth() {
    let frame = common::frame(&common::golden("astronaut"));
    let (classic, face) = primed(&frame);
    let pose = MouthPose::open(0.8, 0.8, 0.0);
    let rgb = classic.render_pose(&frame, &face, &pose).unwrap();
    // The same image as BGRx: the patch is RGBA whatever the frame's format, so it must be the same.
    let bgrx: Vec<u8> = frame
        .data()
        .chunks(frame.layout().strides[0])
        .flat_map(|row| row[..512 * 3].chunks(3).flat_map(|p| [p[2], p[1], p[0], 0]).collect::<Vec<_>>())
        .collect();
    let frame2 = VideoFrame::from_vec(PixelFormat::Bgrx, 512, 512, bgrx, 0).unwrap();
    let other = classic.render_pose(&frame2, &face, &pose).unwrap();
    assert_eq!((rgb.x, rgb.y, rgb.width, rgb.height), (other.x, other.y, other.width, other.height));
    assert_eq!(rgb.rgba, other.rgba);
}

#[test]
fn a_face_at_the_frame_edge_is_rendered_inside_the_frame() {
    // The astronaut shifted so her chin leaves the frame: the patch is clipped, nothing panics.
    let src = common::frame(&common::golden("astronaut"));
    let (w, h) = (512usize, 190usize);
    let stride = src.layout().strides[0];
    let cut = VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, src.data()[..h * stride].to_vec(), 0).unwrap();
    let face = tracker().track(&cut).unwrap().expect("the face, its chin at the edge");
    let chin = face.landmarks[152][1];
    let mut classic = Classic::default();
    classic.learn(&cut, &face);
    let pose = MouthPose::open(1.0, 1.0, 0.0);
    let p = classic.render_pose(&cut, &face, &pose).expect("a patch");
    assert!(p.x >= 0 && p.y >= 0);
    assert!(p.x as u32 + p.width <= w as u32 && p.y as u32 + p.height <= h as u32);
    assert!(p.y as u32 + p.height == h as u32, "the warp reaches the frame's edge (chin at {chin})");
    assert_ne!(cut.composite(&p), cut.data(), "the mouth was drawn");
}

#[test]
fn pressed_lips_stay_sealed_to_their_corners_over_a_dropped_jaw() {
    let frame = common::frame(&common::golden("astronaut"));
    let (classic, face) = primed(&frame);
    // The darkest luma near each mouth corner: an opening there shows the dark of the mouth.
    let darkest_at_corners = |jaw: f32| -> [f32; 2] {
        let pose = MouthPose { press: 1.0, jaw, ..MouthPose::CLOSED };
        let patch = classic.render_pose(&frame, &face, &pose).expect("a patch");
        let out = frame.composite(&patch);
        [61usize, 291].map(|id| {
            let [x, y] = [face.landmarks[id][0].round() as usize, face.landmarks[id][1].round() as usize];
            let mut darkest = f32::MAX;
            for v in y - 3..=y + 3 {
                for u in x - 4..=x + 4 {
                    let p = &out[(v * 512 + u) * 3..][..3];
                    darkest = darkest.min(0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32);
                }
            }
            darkest
        })
    };
    let (shut, dropped) = (darkest_at_corners(0.0), darkest_at_corners(0.8));
    eprintln!("darkest luma at the corners, jaw shut {shut:?}, jaw dropped {dropped:?}");
    for k in 0..2 {
        assert!(dropped[k] > shut[k] - 15.0, "a corner opens over the dropped jaw: {dropped:?} against {shut:?}");
    }
}

#[test]
fn rounded_and_spread_lips_read_narrower_and_wider_to_the_tracker() {
    // On the smiling photo, lips narrowed over a still face are read by the tracker as barely narrower
    // (the cheeks beside them still say where the corners are); the skin around them must follow.
    let frame = common::frame(&common::golden("astronaut"));
    let (classic, face) = primed(&frame);
    let width = |spread: f32| {
        let pose = MouthPose::open(0.25, 0.3, spread);
        let patch = classic.render_pose(&frame, &face, &pose).expect("a patch");
        let out = VideoFrame::from_vec(PixelFormat::Rgb, 512, 512, frame.composite(&patch), 0).unwrap();
        let mut tracker = tracker();
        // The tracker's own region, from the landmarks of the frame before, as in a video.
        let seen: Vec<_> = (0..3).map(|_| tracker.track(&out).unwrap().expect("a face").landmarks).collect();
        mouth_width(&seen[2])
    };
    let (round, neutral, spread) = (width(-0.5), width(0.0), width(0.5));
    eprintln!("mouth width rounded {round:.4}, neutral {neutral:.4}, spread {spread:.4}");
    // 9 % of the width between them (4 % when the skin stays still).
    assert!(round < neutral && spread > neutral && spread - round > 0.07 * neutral, "{round} {neutral} {spread}");
}
