//! The convolution kernels of the face models, on NCHW f32 planes (batch 1), each on one thread: these
//! layers are small (a second thread costs about what it saves, and the tracker shares the machine with
//! the renderer). Depthwise: compiled twice, plainly and with AVX2 + FMA (chosen at run time); 3x3 SAME
//! ones with stride 1 take each source row's three taps in one pass. Pointwise (1x1, and k x k over an
//! unfolded input): the `gemm` crate's matrix product, candle's own, called without its thread pool, with
//! the bias and a residual in the destination and the activation applied while the output is in cache.
//! Max pooling without padding.

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
    // Three taps across, stride 1, one column of padding each side (SAME): each source row is read once per
    // output row, its three taps in one pass (the sums in the same order as the general loop below).
    if s.kw == 3 && s.stride == (1, 1) && s.pad_left == 1 && s.wo == s.w && s.w >= 2 {
        let w = s.w;
        for oy in 0..s.ho {
            let row = &mut dst[oy * w..(oy + 1) * w];
            for ky in 0..s.kh {
                let iy = (oy + ky) as isize - s.pad_top as isize;
                if iy < 0 || iy >= s.h as isize {
                    continue;
                }
                let r = &src[iy as usize * w..(iy as usize + 1) * w];
                let (k0, k1, k2) = (wk[ky * 3], wk[ky * 3 + 1], wk[ky * 3 + 2]);
                row[0] = madd::<FMA>(madd::<FMA>(row[0], k1, r[0]), k2, r[1]);
                for (o, ((a, b), c)) in row[1..w - 1].iter_mut().zip(r.iter().zip(&r[1..]).zip(&r[2..])) {
                    *o = madd::<FMA>(madd::<FMA>(madd::<FMA>(*o, k0, *a), k1, *b), k2, *c);
                }
                row[w - 1] = madd::<FMA>(madd::<FMA>(row[w - 1], k0, r[w - 2]), k1, r[w - 1]);
            }
            if relu {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        return;
    }
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
                let half = s.w.div_ceil(2);
                split.resize(s.w, 0.0);
                let (even, odd) = split.split_at_mut(half);
                // By pairs, so the loop vectorises.
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(src_row.chunks_exact(2)) {
                    *e = pair[0];
                    *o = pair[1];
                }
                if s.w % 2 == 1 {
                    even[half - 1] = src_row[s.w - 1];
                }
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

/// What follows a convolution in the same pass over its output.
#[derive(Clone, Debug, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// Per-channel slopes for the negative side.
    Prelu(std::sync::Arc<Vec<f32>>),
}

impl Activation {
    /// Applies the activation to `out`, planes of `hw` values, one per channel.
    pub fn apply(&self, out: &mut [f32], hw: usize) {
        match self {
            Activation::None => {}
            Activation::Relu => out.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Prelu(alpha) => {
                for (plane, &a) in out.chunks_mut(hw).zip(alpha.iter()) {
                    plane.iter_mut().for_each(|v| *v = if *v >= 0.0 { *v } else { a * *v });
                }
            }
        }
    }
}

/// A 1x1 convolution of an NCHW input of `hw` pixels, `out[o][p] = bias[o] + residual[o][p] + sum_c
/// w[o][c] * src[c][p]` (the residual, when given, an NCHW tensor of the output's shape), then the
/// activation: a residual block's convolution, add and activation in one pass over the output.
pub fn pointwise(
    src: &[f32],
    w: &[f32],
    bias: &[f32],
    hw: usize,
    residual: Option<&[f32]>,
    activation: &Activation,
) -> Vec<f32> {
    let (o, c) = (bias.len(), w.len() / bias.len());
    assert!(w.len() == o * c && src.len() == c * hw, "pointwise: sizes do not match");
    assert!(residual.is_none_or(|r| r.len() == o * hw), "pointwise: the residual's size does not match");
    // The bias (and the residual), row by row: the matrix product adds to it.
    let mut out = Vec::with_capacity(o * hw);
    for (k, &b) in bias.iter().enumerate() {
        match residual {
            Some(r) => out.extend(r[k * hw..(k + 1) * hw].iter().map(|v| v + b)),
            None => out.resize((k + 1) * hw, b),
        }
    }
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
    activation.apply(&mut out, hw);
    out
}

/// Max pooling of `c` NCHW planes of `h x w` without padding; returns the output and its height and width.
pub fn max_pool(
    src: &[f32],
    c: usize,
    (h, w): (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
) -> (Vec<f32>, usize, usize) {
    let (ho, wo) = ((h - kernel.0) / stride.0 + 1, (w - kernel.1) / stride.1 + 1);
    let mut out = Vec::with_capacity(c * ho * wo);
    for plane in src.chunks_exact(h * w).take(c) {
        for oy in 0..ho {
            let rows = &plane[oy * stride.0 * w..(oy * stride.0 + kernel.0) * w];
            if kernel == (2, 2) && stride == (2, 2) {
                let (a, b) = rows.split_at(w);
                out.extend(
                    a.chunks_exact(2).zip(b.chunks_exact(2)).take(wo).map(|(a, b)| a[0].max(a[1]).max(b[0].max(b[1]))),
                );
            } else {
                out.extend((0..wo).map(|ox| {
                    rows.chunks_exact(w)
                        .flat_map(|row| &row[ox * stride.1..ox * stride.1 + kernel.1])
                        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
                }));
            }
        }
    }
    (out, ho, wo)
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
        let residual: Vec<f32> = (0..o * hw).map(|i| (i as f32 * 0.13).cos()).collect();
        let alpha: Vec<f32> = (0..o).map(|i| 0.1 * i as f32).collect();
        let activations = [Activation::None, Activation::Relu, Activation::Prelu(std::sync::Arc::new(alpha.clone()))];
        for (act, r) in activations.iter().flat_map(|a| [(a, None), (a, Some(&residual[..]))]) {
            let out = pointwise(&src, &w, &b, hw, r, act);
            for oc in 0..o {
                for p in 0..hw {
                    let sum = b[oc]
                        + r.map_or(0.0, |r| r[oc * hw + p])
                        + (0..c).map(|ic| w[oc * c + ic] * src[ic * hw + p]).sum::<f32>();
                    let want = match act {
                        Activation::None => sum,
                        Activation::Relu => sum.max(0.0),
                        Activation::Prelu(_) if sum < 0.0 => alpha[oc] * sum,
                        Activation::Prelu(_) => sum,
                    };
                    assert!((out[oc * hw + p] - want).abs() < 1e-5, "{oc} {p}: {} vs {want}", out[oc * hw + p]);
                }
            }
        }
    }

    #[test]
    fn max_pool_takes_the_largest_of_each_window() {
        let (c, h, w) = (2, 5, 7);
        let src: Vec<f32> = (0..c * h * w).map(|i| (i as f32 * 0.77).sin()).collect();
        for (kernel, stride) in [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((2, 2), (1, 1))] {
            let (out, ho, wo) = max_pool(&src, c, (h, w), kernel, stride);
            assert_eq!(out.len(), c * ho * wo);
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut want = f32::NEG_INFINITY;
                        for ky in 0..kernel.0 {
                            for kx in 0..kernel.1 {
                                want = want.max(src[(ch * h + oy * stride.0 + ky) * w + ox * stride.1 + kx]);
                            }
                        }
                        assert_eq!(out[(ch * ho + oy) * wo + ox], want, "{kernel:?} {stride:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn depthwise_matches_a_plain_convolution() {
        let shapes = [
            // Stride 2, no padding; stride 1 and 2 with SAME padding (one each side, or the extra at the
            // bottom/right); a 5x5 kernel.
            DwShape { h: 9, w: 11, ho: 5, wo: 6, kh: 3, kw: 3, stride: (2, 2), pad_top: 0, pad_left: 0 },
            DwShape { h: 7, w: 10, ho: 7, wo: 10, kh: 3, kw: 3, stride: (1, 1), pad_top: 1, pad_left: 1 },
            DwShape { h: 8, w: 8, ho: 4, wo: 4, kh: 3, kw: 3, stride: (2, 2), pad_top: 0, pad_left: 0 },
            DwShape { h: 6, w: 9, ho: 6, wo: 9, kh: 5, kw: 5, stride: (1, 1), pad_top: 2, pad_left: 2 },
        ];
        for s in shapes {
            let (c, k) = (3, s.kh * s.kw);
            let src: Vec<f32> = (0..c * s.h * s.w).map(|i| (i as f32 * 0.3).sin()).collect();
            let w: Vec<f32> = (0..c * k).map(|i| (i as f32 * 0.7).cos()).collect();
            let b = vec![0.5, -0.5, 0.0];
            for relu in [false, true] {
                let mut out = vec![0.0; c * s.ho * s.wo];
                depthwise(&src, &mut out, &w, &b, &s, relu);
                for ch in 0..c {
                    for oy in 0..s.ho {
                        for ox in 0..s.wo {
                            let mut want = b[ch];
                            for ky in 0..s.kh {
                                for kx in 0..s.kw {
                                    let iy = (oy * s.stride.0 + ky) as isize - s.pad_top as isize;
                                    let ix = (ox * s.stride.1 + kx) as isize - s.pad_left as isize;
                                    if (0..s.h as isize).contains(&iy) && (0..s.w as isize).contains(&ix) {
                                        let at = ch * s.h * s.w + iy as usize * s.w + ix as usize;
                                        want += w[ch * k + ky * s.kw + kx] * src[at];
                                    }
                                }
                            }
                            let want = if relu { want.max(0.0) } else { want };
                            let got = out[(ch * s.ho + oy) * s.wo + ox];
                            assert!((got - want).abs() < 1e-5, "{s:?} {ch} {oy} {ox}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
