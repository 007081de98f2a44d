//! The depthwise convolution kernel of the face models, on NCHW f32 planes (batch 1): compiled twice,
//! plainly and with AVX2 + FMA (chosen at run time), with its channels spread over rayon's threads when
//! the layer is big enough to pay for it. (A hand-written pointwise kernel was tried and lost to candle's
//! gemm, which the 1x1 convolutions keep using.)

use rayon::prelude::*;

/// Work (multiply-adds) below which a layer stays on one thread.
const PARALLEL_MIN_MACS: usize = 200_000;

/// Geometry of a depthwise convolution.
#[derive(Clone, Copy, Debug)]
pub struct DwShape {
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    /// Top and left zero padding (the bottom/right follow from the output size).
    pub pad_top: usize,
    pub pad_left: usize,
}

#[inline(always)]
fn madd<const FMA: bool>(acc: f32, k: f32, x: f32) -> f32 {
    if FMA { k.mul_add(x, acc) } else { acc + k * x }
}

#[inline(always)]
fn depthwise_plane_body<const FMA: bool>(src: &[f32], dst: &mut [f32], wk: &[f32], bias: f32, s: &DwShape, relu: bool) {
    let (sh, sw) = s.stride;
    dst.fill(bias);
    for oy in 0..s.ho {
        let row = &mut dst[oy * s.wo..(oy + 1) * s.wo];
        for ky in 0..s.kh {
            let iy = (oy * sh + ky) as isize - s.pad_top as isize;
            if iy < 0 || iy >= s.h as isize {
                continue;
            }
            let src_row = &src[iy as usize * s.w..(iy as usize + 1) * s.w];
            for kx in 0..s.kw {
                let k = wk[ky * s.kw + kx];
                // Output columns whose input column ox*sw + kx - pad_left lies inside the row.
                let first = s.pad_left.saturating_sub(kx).div_ceil(sw);
                let last = ((s.w + s.pad_left).saturating_sub(kx + 1) / sw + 1).min(s.wo);
                if first >= last {
                    continue;
                }
                let ix0 = first * sw + kx - s.pad_left;
                if sw == 1 {
                    let n = last - first;
                    for (o, i) in row[first..last].iter_mut().zip(&src_row[ix0..ix0 + n]) {
                        *o = madd::<FMA>(*o, k, *i);
                    }
                } else {
                    for (j, o) in row[first..last].iter_mut().enumerate() {
                        *o = madd::<FMA>(*o, k, src_row[ix0 + j * sw]);
                    }
                }
            }
        }
        if relu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn depthwise_plane_avx2(src: &[f32], dst: &mut [f32], wk: &[f32], bias: f32, s: &DwShape, relu: bool) {
    depthwise_plane_body::<true>(src, dst, wk, bias, s, relu)
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn depthwise_plane(src: &[f32], dst: &mut [f32], wk: &[f32], bias: f32, s: &DwShape, relu: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { depthwise_plane_avx2(src, dst, wk, bias, s, relu) };
    }
    depthwise_plane_body::<false>(src, dst, wk, bias, s, relu)
}

/// Depthwise convolution of `c` planes: `w` is `[C][kh][kw]`, `out` is `[C][ho][wo]`.
pub fn depthwise(src: &[f32], out: &mut [f32], w: &[f32], bias: &[f32], s: &DwShape, relu: bool) {
    let (plane_in, plane_out, k) = (s.h * s.w, s.ho * s.wo, s.kh * s.kw);
    let work = |(ch, dst): (usize, &mut [f32])| {
        depthwise_plane(&src[ch * plane_in..(ch + 1) * plane_in], dst, &w[ch * k..(ch + 1) * k], bias[ch], s, relu)
    };
    if bias.len() * plane_out * k >= PARALLEL_MIN_MACS {
        out.par_chunks_mut(plane_out).enumerate().for_each(work);
    } else {
        out.chunks_mut(plane_out).enumerate().for_each(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depthwise_matches_a_plain_convolution() {
        let s = DwShape { h: 9, w: 11, ho: 5, wo: 6, kh: 3, kw: 3, stride: (2, 2), pad_top: 0, pad_left: 0 };
        let c = 3;
        let src: Vec<f32> = (0..c * s.h * s.w).map(|i| (i as f32 * 0.3).sin()).collect();
        let w: Vec<f32> = (0..c * 9).map(|i| (i as f32 * 0.7).cos()).collect();
        let b = vec![0.5, -0.5, 0.0];
        let mut out = vec![0.0; c * s.ho * s.wo];
        depthwise(&src, &mut out, &w, &b, &s, false);
        for ch in 0..c {
            for oy in 0..s.ho {
                for ox in 0..s.wo {
                    let mut want = b[ch];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (oy * 2 + ky, ox * 2 + kx);
                            if iy < s.h && ix < s.w {
                                want += w[ch * 9 + ky * 3 + kx] * src[ch * s.h * s.w + iy * s.w + ix];
                            }
                        }
                    }
                    assert!((out[(ch * s.ho + oy) * s.wo + ox] - want).abs() < 1e-5);
                }
            }
        }
    }
}
