//! STSA's boundary heatmap of a sketch (`sketch2heatmap`): OpenCV's 5x5 chamfer distance transform
//! (a = 1, b = 1.4, c = 2.1969, in 16.16 fixed point as OpenCV computes it) from every pixel to the nearest
//! line pixel, then `exp(-d^2 / 2)` where `d < 3`, else 0.

use super::CANVAS;

const SHIFT: u32 = 16;
const HV: u32 = 65536; // round(1.0 * 2^16)
const DIAG: u32 = 91750; // round(1.4 * 2^16)
const LONG: u32 = 143976; // round(2.1969 * 2^16)
const FAR: u32 = i32::MAX as u32;

/// The chamfer distance (16.16 fixed point) of every pixel to the nearest zero pixel.
pub fn chamfer_distance(sketch: &[u8]) -> Vec<u32> {
    const B: usize = 2; // border of "far" cells around the image
    let (w, h) = (CANVAS, CANVAS);
    let stride = w + 2 * B;
    let mut t = vec![FAR; stride * (h + 2 * B)];
    let at = |y: usize, x: usize| (y + B) * stride + x + B;
    // Forward pass: neighbours above and to the left.
    for y in 0..h {
        for x in 0..w {
            let i = at(y, x);
            if sketch[y * w + x] == 0 {
                t[i] = 0;
                continue;
            }
            let m = [
                t[i - 2 * stride - 1] + LONG,
                t[i - 2 * stride + 1] + LONG,
                t[i - stride - 2] + LONG,
                t[i - stride - 1] + DIAG,
                t[i - stride] + HV,
                t[i - stride + 1] + DIAG,
                t[i - stride + 2] + LONG,
                t[i - 1] + HV,
            ];
            t[i] = m.into_iter().min().expect("non-empty");
        }
    }
    // Backward pass: neighbours below and to the right.
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = at(y, x);
            if t[i] <= HV {
                continue;
            }
            let m = [
                t[i],
                t[i + 2 * stride + 1] + LONG,
                t[i + 2 * stride - 1] + LONG,
                t[i + stride + 2] + LONG,
                t[i + stride + 1] + DIAG,
                t[i + stride] + HV,
                t[i + stride - 1] + DIAG,
                t[i + stride - 2] + LONG,
                t[i + 1] + HV,
            ];
            t[i] = m.into_iter().min().expect("non-empty");
        }
    }
    (0..h).flat_map(|y| (0..w).map(move |x| (y, x))).map(|(y, x)| t[at(y, x)]).collect()
}

/// `exp(-d^2 / 2)` for the distances that occur below 3, bit-exact with the original (numpy float32);
/// others are computed.
fn gaussian(d: u32) -> f32 {
    match d {
        0 => 1.0,
        HV => f32::from_bits(0x3F1B_4598),
        DIAG => f32::from_bits(0x3EC0_28C7),
        131_072 => f32::from_bits(0x3E0A_9555),
        LONG => f32::from_bits(0x3DB7_5B5A),
        183_500 => f32::from_bits(0x3CA2_89CD),
        _ => {
            let d = d as f32 / (1u32 << SHIFT) as f32;
            (-d * d / 2.0).exp()
        }
    }
}

/// The heatmap of a sketch (1 background, 0 lines): 1 on lines, falling to 0 three pixels away.
pub fn heatmap(sketch: &[u8]) -> Vec<f32> {
    chamfer_distance(sketch)
        .into_iter()
        .map(|d| if (d as f32) / ((1u32 << SHIFT) as f32) < 3.0 { gaussian(d) } else { 0.0 })
        .collect()
}
