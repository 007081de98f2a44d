//! The convolution kernels of the face models, on NCHW f32 planes (batch 1), each on one thread: these
//! layers are small (a second thread costs about what it saves, and the tracker shares the machine with
//! the renderer). Depthwise: compiled twice, plainly and with AVX2 + FMA (chosen at run time). Pointwise
//! (1x1, and k x k over an unfolded input): the `gemm` crate's matrix product, candle's own, called
//! without its thread pool and with the bias in the destination.

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
fn depthwise_plane_body<const FMA: bool>(
    src: &[f32],
    dst: &mut [f32],
    wk: &[f32],
    bias: f32,
    s: &DwShape,
    relu: bool,
    split: &mut Vec<f32>,
) {
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
            // With stride 2, the source row split into its even columns, then its odd ones: every tap
            // then reads a contiguous run (a vector loop) instead of every other value.
            if sw == 2 {
                split.clear();
                split.extend(src_row.iter().step_by(2));
                split.extend(src_row.iter().skip(1).step_by(2));
            }
            for kx in 0..s.kw {
                let k = wk[ky * s.kw + kx];
                // Output columns whose input column ox*sw + kx - pad_left lies inside the row.
                let first = s.pad_left.saturating_sub(kx).div_ceil(sw);
                let last = ((s.w + s.pad_left).saturating_sub(kx + 1) / sw + 1).min(s.wo);
                if first >= last {
                    continue;
                }
                let ix0 = first * sw + kx - s.pad_left;
                let n = last - first;
                if sw == 1 {
                    for (o, i) in row[first..last].iter_mut().zip(&src_row[ix0..ix0 + n]) {
                        *o = madd::<FMA>(*o, k, *i);
                    }
                } else if sw == 2 {
                    // Column ix0 + 2j is column ix0 / 2 + j of its parity's half.
                    let start = if ix0.is_multiple_of(2) { 0 } else { s.w.div_ceil(2) } + ix0 / 2;
                    for (o, i) in row[first..last].iter_mut().zip(&split[start..start + n]) {
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
fn depthwise_plane_avx2(
    src: &[f32],
    dst: &mut [f32],
    wk: &[f32],
    bias: f32,
    s: &DwShape,
    relu: bool,
    split: &mut Vec<f32>,
) {
    depthwise_plane_body::<true>(src, dst, wk, bias, s, relu, split)
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

/// `split`: room for one source row, re-used from plane to plane.
fn depthwise_plane(src: &[f32], dst: &mut [f32], wk: &[f32], bias: f32, s: &DwShape, relu: bool, split: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { depthwise_plane_avx2(src, dst, wk, bias, s, relu, split) };
    }
    depthwise_plane_body::<false>(src, dst, wk, bias, s, relu, split)
}

/// Depthwise convolution of `c` planes: `w` is `[C][kh][kw]`, `out` is `[C][ho][wo]`.
pub fn depthwise(src: &[f32], out: &mut [f32], w: &[f32], bias: &[f32], s: &DwShape, relu: bool) {
    let (plane_in, plane_out, k) = (s.h * s.w, s.ho * s.wo, s.kh * s.kw);
    let mut split = Vec::with_capacity(if s.stride.1 == 2 { s.w } else { 0 });
    for (ch, dst) in out.chunks_mut(plane_out).enumerate() {
        let (src, wk) = (&src[ch * plane_in..(ch + 1) * plane_in], &w[ch * k..(ch + 1) * k]);
        depthwise_plane(src, dst, wk, bias[ch], s, relu, &mut split);
    }
}

/// A 1x1 convolution of an NCHW input of `hw` pixels: `out[o][p] = bias[o] + sum_c w[o][c] * src[c][p]`,
/// then ReLU if asked.
pub fn pointwise(src: &[f32], w: &[f32], bias: &[f32], hw: usize, relu: bool) -> Vec<f32> {
    let (o, c) = (bias.len(), w.len() / bias.len());
    assert!(w.len() == o * c && src.len() == c * hw, "pointwise: sizes do not match");
    // The bias, row by row: the matrix product adds to it.
    let mut out: Vec<f32> = bias.iter().flat_map(|&b| std::iter::repeat_n(b, hw)).collect();
    // SAFETY: the three matrices are the slices checked above: `w` is o x c (row stride c), `src` is
    // c x hw (row stride hw) and `out` is o x hw (row stride hw), all contiguous and not overlapping.
    unsafe {
        gemm::gemm(
            o,
            hw,
            c,
            out.as_mut_ptr(),
            1,
            hw as isize,
            true,
            w.as_ptr(),
            1,
            c as isize,
            src.as_ptr(),
            1,
            hw as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointwise_matches_a_plain_sum() {
        let (o, c, hw) = (5, 7, 13);
        let src: Vec<f32> = (0..c * hw).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..o * c).map(|i| (i as f32 * 0.61).cos()).collect();
        let b: Vec<f32> = (0..o).map(|i| i as f32 * 0.25 - 0.5).collect();
        for relu in [false, true] {
            let out = pointwise(&src, &w, &b, hw, relu);
            for oc in 0..o {
                for p in 0..hw {
                    let sum = b[oc] + (0..c).map(|ic| w[oc * c + ic] * src[ic * hw + p]).sum::<f32>();
                    let want = if relu { sum.max(0.0) } else { sum };
                    assert!((out[oc * hw + p] - want).abs() < 1e-5, "{oc} {p}: {} vs {want}", out[oc * hw + p]);
                }
            }
        }
    }

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
