//! Landmark sketches as STSA draws them (`draw_landmark.py`): on a 128x128 canvas of ones, every
//! connection whose two ends are valid landmarks becomes a 1-pixel line of zeros, drawn with OpenCV's
//! 8-connected `LineIterator` (what `cv2.line(..., thickness=1)` uses), so sketches equal the original's
//! pixel for pixel.

use super::CANVAS;

/// The pixel of a normalised coordinate, or `None` when the landmark is outside [0, 1] (the original
/// then drops it, and every edge through it).
fn pixel(v: f32) -> Option<i32> {
    (0.0..=1.0).contains(&v).then(|| ((v * CANVAS as f32).floor() as i32).min(CANVAS as i32 - 1))
}

/// Visits the pixels of the segment from `p1` to `p2` in the order OpenCV's 8-connected `LineIterator`
/// does (left to right).
pub fn line8(mut p1: (i32, i32), mut p2: (i32, i32), mut visit: impl FnMut(i32, i32)) {
    if p2.0 < p1.0 {
        std::mem::swap(&mut p1, &mut p2);
    }
    let mut dx = p2.0 - p1.0;
    let mut dy = p2.1 - p1.1;
    // Steps along the major (`minus`) and minor (`plus`) axes.
    let (mut major, mut minor) = ((1, 0), (0, 1));
    if dy < 0 {
        dy = -dy;
        minor = (0, -1);
    }
    if dy > dx {
        std::mem::swap(&mut dx, &mut dy);
        std::mem::swap(&mut major, &mut minor);
    }
    let mut err = dx - 2 * dy;
    let (plus_delta, minus_delta) = (2 * dx, -2 * dy);
    let (mut x, mut y) = p1;
    for _ in 0..=dx {
        visit(x, y);
        let step_minor = err < 0;
        err += minus_delta + if step_minor { plus_delta } else { 0 };
        x += major.0 + if step_minor { minor.0 } else { 0 };
        y += major.1 + if step_minor { minor.1 } else { 0 };
    }
}

/// Draws `connections` (pairs of landmark ids) between the points `point(id)` gives (normalised to the
/// face box): 1 for background, 0 on lines, row-major 128x128.
pub fn draw(point: impl Fn(u16) -> Option<[f32; 2]>, connections: &[[u16; 2]]) -> Vec<u8> {
    let mut canvas = vec![1u8; CANVAS * CANVAS];
    let px = |id: u16| -> Option<(i32, i32)> {
        let [x, y] = point(id)?;
        Some((pixel(x)?, pixel(y)?))
    };
    for &[a, b] in connections {
        let (Some(p), Some(q)) = (px(a), px(b)) else { continue };
        line8(p, q, |x, y| canvas[y as usize * CANVAS + x as usize] = 0);
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(p1: (i32, i32), p2: (i32, i32)) -> Vec<(i32, i32)> {
        let mut v = Vec::new();
        line8(p1, p2, |x, y| v.push((x, y)));
        v
    }

    #[test]
    fn lines_are_8_connected_and_symmetric_in_direction() {
        assert_eq!(points((0, 0), (3, 1)), [(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert_eq!(points((3, 1), (0, 0)), points((0, 0), (3, 1)));
        assert_eq!(points((2, 5), (2, 2)).len(), 4);
        assert_eq!(points((1, 1), (1, 1)), [(1, 1)]);
    }

    #[test]
    fn landmarks_outside_the_box_are_dropped() {
        assert_eq!(pixel(1.0), Some(127));
        assert_eq!(pixel(0.0), Some(0));
        assert_eq!(pixel(-1e-4), None);
        assert_eq!(pixel(1.0 + 1e-4), None);
    }
}
