//! Tensor operations STSA's face renderer needs that candle lacks (SPEC.md section 4): 2-D `grid_sample`
//! (bilinear, zeros padding, align_corners=False), AdaAT's 5-D trilinear case, instance norm, nearest and
//! bilinear resizing as `F.interpolate` does them, and pixel shuffle.
//!
//! Everything here is a composition of candle operations (arithmetic, floor, `index_select`), so it runs
//! wherever candle does, CUDA included, without custom kernels; plain loops over the values (in the tests)
//! check them. They are shaped for a GPU: what depends only on sizes (index tables, base grids) or only on
//! the sampled source (a zero border, a gather-friendly layout) is built once, when the model loads or the
//! references are encoded, so a frame uploads nothing and launches few kernels. A sampler gathers all
//! its taps with one `index_select`: the source gets a zero border wide enough that every tap of a clamped
//! position lies inside it, which is what zeros padding means (a tap outside the source reads zero).

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Rows of a fixed length normalised to zero mean and unit (biased) variance, two passes as PyTorch's
/// norms: the mean, as a matrix product with a column of 1/L (which sums in f32 whatever the dtype), then
/// the centred values divided by their root mean square with candle's fused RMS norm (which also sums in
/// f32). In half precision no sum overflows and nothing is converted.
#[derive(Clone)]
pub struct RowNorm {
    /// (L, 1): 1/L each.
    mean: Tensor,
    /// The RMS norm's per-position gain: ones, (L,).
    ones: Tensor,
    len: usize,
    eps: f32,
}

impl RowNorm {
    pub fn new(len: usize, eps: f32, dtype: DType, device: &Device) -> Result<Self> {
        Ok(RowNorm {
            mean: (Tensor::ones((len, 1), dtype, device)? / len as f64)?,
            ones: Tensor::ones(len, dtype, device)?,
            len,
            eps,
        })
    }

    /// `rows` (R, L) normalised.
    pub fn apply(&self, rows: &Tensor) -> Result<Tensor> {
        let (_, len) = rows.dims2()?;
        if len != self.len {
            return Err(crate::Error::InvalidArgument(format!("a norm over {} values given rows of {len}", self.len)));
        }
        let centred = rows.broadcast_sub(&rows.matmul(&self.mean)?)?;
        Ok(candle_nn::ops::rms_norm(&centred, &self.ones, self.eps)?)
    }
}

/// Instance norm over planes of a fixed size (per sample and channel over H×W, biased variance, no
/// affine of its own, a [`RowNorm`] of each plane) followed by an affine: `IN(x)·scale + shift`, `scale`
/// and `shift` broadcast over `x`.
pub struct InstanceNorm(RowNorm);

impl InstanceNorm {
    pub fn new(h: usize, w: usize, eps: f32, dtype: DType, device: &Device) -> Result<Self> {
        Ok(InstanceNorm(RowNorm::new(h * w, eps, dtype, device)?))
    }

    pub fn apply(&self, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let normed = self.0.apply(&x.reshape((n * c, h * w))?)?.reshape((n, c, h, w))?;
        Ok(normed.broadcast_mul(scale)?.broadcast_add(shift)?)
    }
}

/// `F.interpolate(mode="nearest")` of (N, C, H, W) from one size to another: source index
/// `floor(dst · in / out)` on each axis, the index tables uploaded once.
pub struct Nearest {
    rows: Tensor,
    cols: Tensor,
}

impl Nearest {
    pub fn new(from: (usize, usize), to: (usize, usize), device: &Device) -> Result<Self> {
        let table = |inp: usize, out: usize| -> Result<Tensor> {
            let idx: Vec<u32> = (0..out).map(|i| ((i * inp) / out) as u32).collect();
            Ok(Tensor::new(idx.as_slice(), device)?)
        };
        Ok(Nearest { rows: table(from.0, to.0)?, cols: table(from.1, to.1)? })
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.index_select(&self.rows, 2)?.index_select(&self.cols, 3)?)
    }
}

/// One axis of a bilinear resize: the two source indices and the blend of each output position.
struct LinearAxis {
    lo: Tensor,
    hi: Tensor,
    frac: Tensor,
}

impl LinearAxis {
    fn new(inp: usize, out: usize, dim: usize, device: &Device) -> Result<Self> {
        let scale = inp as f32 / out as f32;
        let (mut lo, mut hi, mut frac) = (Vec::new(), Vec::new(), Vec::new());
        for o in 0..out {
            let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let l = (s as usize).min(inp - 1);
            lo.push(l as u32);
            hi.push((l + 1).min(inp - 1) as u32);
            frac.push(s - l as f32);
        }
        let mut shape = [1usize; 4];
        shape[dim] = out;
        Ok(LinearAxis {
            lo: Tensor::new(lo.as_slice(), device)?,
            hi: Tensor::new(hi.as_slice(), device)?,
            frac: Tensor::from_vec(frac, shape.as_slice(), device)?,
        })
    }

    fn apply(&self, x: &Tensor, dim: usize) -> Result<Tensor> {
        let lo = x.index_select(&self.lo, dim)?;
        let hi = x.index_select(&self.hi, dim)?;
        let frac = self.frac.to_dtype(x.dtype())?;
        Ok((&lo + (hi - &lo)?.broadcast_mul(&frac)?)?)
    }
}

/// `F.interpolate(mode="bilinear", align_corners=False)` of (N, C, H, W) from one size to another, no
/// antialiasing: separable, each axis two `index_select`s blended by fixed weights (uploaded once).
pub struct Bilinear {
    rows: LinearAxis,
    cols: LinearAxis,
}

impl Bilinear {
    pub fn new(from: (usize, usize), to: (usize, usize), device: &Device) -> Result<Self> {
        Ok(Bilinear {
            rows: LinearAxis::new(from.0, to.0, 2, device)?,
            cols: LinearAxis::new(from.1, to.1, 3, device)?,
        })
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        self.cols.apply(&self.rows.apply(x, 2)?, 3)
    }
}

/// `nn.PixelShuffle(r)`: (N, C·r², H, W) to (N, C, H·r, W·r).
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let c = c / (r * r);
    Ok(x.reshape((n, c, r, r, h, w))?.permute((0, 1, 4, 2, 5, 3))?.reshape((n, c, h * r, w * r))?)
}

/// Unnormalises a grid coordinate for align_corners=False.
#[inline]
fn unnormalise(g: f32, size: usize) -> f32 {
    ((g + 1.0) * size as f32 - 1.0) * 0.5
}

/// The zero border around a sampled plane: one pixel before, two after, so that both taps of any position
/// clamped into [-1, size] fall inside the bordered plane.
const BORDER: (usize, usize) = (1, 2);

/// A sampled plane of `h`×`w` pixels with its border, and the constants positions are mapped with.
struct Plane {
    h: usize,
    w: usize,
    /// (W, H): grid units to pixels, and the upper clamp bound of each axis, f32 (2,).
    size: Tensor,
    /// -1 as an f32 scalar on the device (a scalar operand would be uploaded each time).
    lo: Tensor,
}

impl Plane {
    fn new(h: usize, w: usize, device: &Device) -> Result<Self> {
        Ok(Plane { h, w, size: Tensor::new(&[w as f32, h as f32], device)?, lo: Tensor::new(-1f32, device)? })
    }

    /// The bordered width and height.
    fn padded(&self) -> (usize, usize) {
        (self.w + BORDER.0 + BORDER.1, self.h + BORDER.0 + BORDER.1)
    }

    /// A source (N, C, H, W) with its zero border, as f32.
    fn border(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        Ok(x.pad_with_zeros(2, BORDER.0, BORDER.1)?.pad_with_zeros(3, BORDER.0, BORDER.1)?)
    }

    /// Grid coordinates `g` (2, ...: x then y, f32, in [-1, 1] for the plane) to the bordered plane's
    /// flat index of each position's top-left tap (before any batch or plane offset), and the bilinear
    /// weights of its four taps stacked in tap order (top-left, top-right, bottom-left, bottom-right) on a
    /// new first dimension.
    fn taps(&self, g: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut axes = vec![1; g.rank()];
        axes[0] = 2;
        let size = self.size.reshape(axes)?;
        // `((g + 1)·size − 1) / 2` (align_corners=False) in PyTorch's order of operations.
        let pixels = (g + 1.0)?.broadcast_mul(&size)?.affine(0.5, -0.5)?;
        // Outside [-1, size] every tap is in the border, as every tap of the unclamped position is
        // outside the plane: the result is zero either way.
        let clamped = pixels.broadcast_maximum(&self.lo)?.broadcast_minimum(&size)?;
        let corner = clamped.floor()?;
        let frac = (clamped - &corner)?;
        let (wp, _) = self.padded();
        let index = (corner.get(1)?.affine(wp as f64, (BORDER.0 * wp + BORDER.0) as f64)? + corner.get(0)?)?;
        // Per axis the weights of the lower and the upper tap, then their products.
        let weights = Tensor::stack(&[&frac.affine(-1.0, 1.0)?, &frac], 0)?;
        let (wx, wy) = (weights.narrow(1, 0, 1)?, weights.narrow(1, 1, 1)?);
        let mut dims = g.dims().to_vec();
        dims[0] = 4;
        Ok((index, wy.broadcast_mul(&wx.transpose(0, 1)?)?.reshape(dims)?))
    }

    /// The four taps' offsets from the top-left one in the bordered plane.
    fn tap_offsets(&self) -> [f32; 4] {
        let (wp, _) = self.padded();
        [0.0, 1.0, wp as f32, wp as f32 + 1.0]
    }
}

/// `F.grid_sample(source, grid)` with the defaults (bilinear, zeros padding, align_corners=False) for a
/// source sampled many times: the source (N, C, H, W) is laid out once, bordered and channels last.
pub struct GridSampler {
    plane: Plane,
    n: usize,
    c: usize,
    /// (N·Hp·Wp, C), f32.
    source: Tensor,
    /// Each tap's flat offset per sample, (4, N, 1): `n·Hp·Wp` plus the tap's offset.
    offsets: Tensor,
}

impl GridSampler {
    pub fn new(source: &Tensor) -> Result<Self> {
        let (n, c, h, w) = source.dims4()?;
        let plane = Plane::new(h, w, source.device())?;
        let (wp, hp) = plane.padded();
        let laid_out = plane.border(source)?.permute((0, 2, 3, 1))?.contiguous()?.reshape((n * hp * wp, c))?;
        let offsets: Vec<f32> =
            plane.tap_offsets().iter().flat_map(|&t| (0..n).map(move |b| (b * hp * wp) as f32 + t)).collect();
        let offsets = Tensor::from_vec(offsets, (4, n, 1), source.device())?;
        Ok(GridSampler { plane, n, c, source: laid_out, offsets })
    }

    /// Samples at `grid`, (N, 2, Ho, Wo) holding (x, y) in [-1, 1] on dimension 1 (channels first, as a
    /// flow is): returns (N, C, Ho, Wo) in f32.
    pub fn sample(&self, grid: &Tensor) -> Result<Tensor> {
        let (gn, two, ho, wo) = grid.dims4()?;
        if gn != self.n || two != 2 {
            return Err(crate::Error::InvalidArgument(format!(
                "grid_sample: grid {:?} for a source of {} samples",
                grid.dims(),
                self.n
            )));
        }
        let g = grid.to_dtype(DType::F32)?.reshape((gn, 2, ho * wo))?.transpose(0, 1)?;
        let (corner, weights) = self.plane.taps(&g)?;
        let index = corner.unsqueeze(0)?.broadcast_add(&self.offsets)?.to_dtype(DType::U32)?.flatten_all()?;
        let values = self.source.index_select(&index, 0)?.reshape((4, gn, ho * wo, self.c))?;
        let out = values.broadcast_mul(&weights.unsqueeze(3)?)?.sum(0)?;
        Ok(out.transpose(1, 2)?.reshape((gn, self.c, ho, wo))?)
    }
}

/// The align_corners=True coordinate of pixel `i` of `n`: `2i/(n−1) − 1`.
pub(crate) fn corner_aligned(i: usize, n: usize) -> f32 {
    2.0 * (i as f32 / (n - 1) as f32) - 1.0
}

/// AdaAT's sampling of a fixed feature map (B, C, H, W): `F.grid_sample(feat.unsqueeze(1), grid)` in 5-D
/// (trilinear, zeros, align_corners=False) where output channel `c` at (i, j) samples
/// (x, y) = `scale[c]·R(angle[c])·(gx, gy) + t[c]` on the align_corners=True grid `gx = 2j/(W−1)−1`,
/// `gy = 2i/(H−1)−1`, at depth `gz = 2c/(C−1)−1`. The depth of each output channel is fixed, so its two
/// planes and their weights are tables made once with the bordered, flattened source.
pub struct ChannelSampler {
    plane: Plane,
    b: usize,
    c: usize,
    /// (B·C·Hp·Wp, 1), f32.
    source: Tensor,
    /// Flat offsets of the eight taps (two planes × four corners) per batch and channel, (2, 4, B, C, 1).
    offsets: Tensor,
    /// The two planes' weights per channel (zero for a plane outside the volume), (2, 1, 1, C, 1).
    depth: Tensor,
    gx: Tensor,
    gy: Tensor,
}

impl ChannelSampler {
    pub fn new(feat: &Tensor) -> Result<Self> {
        let (b, c, h, w) = feat.dims4()?;
        let dev = feat.device();
        let plane = Plane::new(h, w, dev)?;
        let (wp, hp) = plane.padded();
        let source = plane.border(feat)?.reshape((b * c * hp * wp, 1))?;
        let (mut offsets, mut depth) = (Vec::with_capacity(8 * b * c), Vec::with_capacity(2 * c));
        for tap in 0..2 {
            let per_channel: Vec<(usize, f32)> = (0..c)
                .map(|ch| {
                    let z = unnormalise(corner_aligned(ch, c), c);
                    let z0 = z.floor();
                    let (zz, wz) = if tap == 0 { (z0, 1.0 - (z - z0)) } else { (z0 + 1.0, z - z0) };
                    let inside = zz >= 0.0 && zz < c as f32;
                    (zz.clamp(0.0, (c - 1) as f32) as usize, if inside { wz } else { 0.0 })
                })
                .collect();
            depth.extend(per_channel.iter().map(|&(_, wz)| wz));
            for corner in plane.tap_offsets() {
                for batch in 0..b {
                    offsets.extend(per_channel.iter().map(|&(z, _)| ((batch * c + z) * hp * wp) as f32 + corner));
                }
            }
        }
        let line = |n: usize, shape: (usize, usize, usize, usize)| -> Result<Tensor> {
            Ok(Tensor::from_vec((0..n).map(|i| corner_aligned(i, n)).collect::<Vec<_>>(), shape, dev)?)
        };
        Ok(ChannelSampler {
            b,
            c,
            source,
            offsets: Tensor::from_vec(offsets, (2, 4, b, c, 1), dev)?,
            depth: Tensor::from_vec(depth, (2, 1, 1, c, 1), dev)?,
            gx: line(w, (1, 1, 1, w))?,
            gy: line(h, (1, 1, h, 1))?,
            plane,
        })
    }

    /// Samples with per-channel `scale`, `angle` (B, C) and `translation` (B, C, 2): (B, C, H, W) in f32.
    pub fn sample(&self, scale: &Tensor, angle: &Tensor, translation: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = (self.b, self.c, self.plane.h, self.plane.w);
        let per_channel = |t: &Tensor| t.to_dtype(DType::F32)?.reshape((b, c, 1, 1));
        let (s, a) = (per_channel(scale)?, per_channel(angle)?);
        let (cos, sin) = (a.cos()?, a.sin()?);
        let t = translation.to_dtype(DType::F32)?;
        let (tx, ty) = (t.narrow(2, 0, 1)?.reshape((b, c, 1, 1))?, t.narrow(2, 1, 1)?.reshape((b, c, 1, 1))?);
        let (gx, gy) = (&self.gx, &self.gy);
        // The sampled grid.
        let gxs =
            cos.broadcast_mul(gx)?.broadcast_sub(&sin.broadcast_mul(gy)?)?.broadcast_mul(&s)?.broadcast_add(&tx)?;
        let gys =
            sin.broadcast_mul(gx)?.broadcast_add(&cos.broadcast_mul(gy)?)?.broadcast_mul(&s)?.broadcast_add(&ty)?;
        let (corner, weights) = self.plane.taps(&Tensor::stack(&[gxs, gys], 0)?.reshape((2, b, c, h * w))?)?;
        let index = corner.unsqueeze(0)?.unsqueeze(0)?.broadcast_add(&self.offsets)?;
        let index = index.to_dtype(DType::U32)?.flatten_all()?;
        let values = self.source.index_select(&index, 0)?.reshape((2, 4, b, c, h * w))?;
        let weights = weights.unsqueeze(0)?.broadcast_mul(&self.depth)?;
        Ok(values.mul(&weights)?.reshape((8, b, c, h * w))?.sum(0)?.reshape((b, c, h, w))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `F.grid_sample(input, grid)` once: `input` (N, C, H, W), `grid` (N, Ho, Wo, 2) as PyTorch lays it
    /// out; returns (N, C, Ho, Wo).
    fn grid_sample(input: &Tensor, grid: &Tensor) -> Result<Tensor> {
        GridSampler::new(input)?.sample(&grid.permute((0, 3, 1, 2))?)
    }

    /// AdaAT's sampling once (see [`ChannelSampler`]).
    fn adaat_sample(feat: &Tensor, scale: &Tensor, angle: &Tensor, translation: &Tensor) -> Result<Tensor> {
        ChannelSampler::new(feat)?.sample(scale, angle, translation)
    }

    /// [`grid_sample`] as plain loops over the values (the reference the tensor version is tested against).
    fn grid_sample_reference(input: &Tensor, grid: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = input.dims4()?;
        let (gn, ho, wo, two) = grid.dims4()?;
        assert!(gn == n && two == 2, "grid_sample: grid {:?} for input {:?}", grid.dims(), input.dims());
        let src = input.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let g = grid.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; n * c * ho * wo];
        for b in 0..n {
            for p in 0..ho * wo {
                let gi = (b * ho * wo + p) * 2;
                let (x, y) = (unnormalise(g[gi], w), unnormalise(g[gi + 1], h));
                let (x0, y0) = (x.floor(), y.floor());
                let (ax, ay) = (x - x0, y - y0);
                let taps = [
                    (x0, y0, (1.0 - ax) * (1.0 - ay)),
                    (x0 + 1.0, y0, ax * (1.0 - ay)),
                    (x0, y0 + 1.0, (1.0 - ax) * ay),
                    (x0 + 1.0, y0 + 1.0, ax * ay),
                ];
                for (tx, ty, wt) in taps {
                    if tx < 0.0 || ty < 0.0 || tx >= w as f32 || ty >= h as f32 || wt == 0.0 {
                        continue;
                    }
                    let o = ty as usize * w + tx as usize;
                    for ch in 0..c {
                        out[((b * c + ch) * ho * wo) + p] += wt * src[(b * c + ch) * h * w + o];
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, c, ho, wo), &Device::Cpu)?.to_device(input.device())?.to_dtype(input.dtype())?)
    }

    /// [`adaat_sample`] as plain loops over the values (the reference the tensor version is tested against).
    fn adaat_sample_reference(feat: &Tensor, scale: &Tensor, angle: &Tensor, translation: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = feat.dims4()?;
        let cpu = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (src, s, a, t) = (cpu(feat)?, cpu(scale)?, cpu(angle)?, cpu(translation)?);
        let grid = |i: usize, n: usize| 2.0 * (i as f32 / (n - 1) as f32) - 1.0;
        let mut out = vec![0f32; b * c * h * w];
        for bi in 0..b {
            let plane = |z: usize| &src[(bi * c + z) * h * w..(bi * c + z + 1) * h * w];
            for ch in 0..c {
                let k = bi * c + ch;
                let (sc, (sin, cos)) = (s[k], a[k].sin_cos());
                let (tx, ty) = (t[k * 2], t[k * 2 + 1]);
                let z = unnormalise(grid(ch, c), c);
                let z0 = z.floor();
                let az = z - z0;
                let depths = [(z0, 1.0 - az), (z0 + 1.0, az)];
                for i in 0..h {
                    let gy = grid(i, h);
                    for j in 0..w {
                        let gx = grid(j, w);
                        let x = unnormalise((cos * gx - sin * gy) * sc + tx, w);
                        let y = unnormalise((sin * gx + cos * gy) * sc + ty, h);
                        let (x0, y0) = (x.floor(), y.floor());
                        let (ax, ay) = (x - x0, y - y0);
                        let mut v = 0.0;
                        for &(zz, wz) in &depths {
                            if zz < 0.0 || zz >= c as f32 || wz == 0.0 {
                                continue;
                            }
                            let pl = plane(zz as usize);
                            for (px, py, wt) in [
                                (x0, y0, (1.0 - ax) * (1.0 - ay)),
                                (x0 + 1.0, y0, ax * (1.0 - ay)),
                                (x0, y0 + 1.0, (1.0 - ax) * ay),
                                (x0 + 1.0, y0 + 1.0, ax * ay),
                            ] {
                                if px < 0.0 || py < 0.0 || px >= w as f32 || py >= h as f32 {
                                    continue;
                                }
                                v += wz * wt * pl[py as usize * w + px as usize];
                            }
                        }
                        out[(k * h + i) * w + j] = v;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (b, c, h, w), &Device::Cpu)?.to_device(feat.device())?.to_dtype(feat.dtype())?)
    }

    fn rnd(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn tensor_samplers_equal_the_loops() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2usize, 3usize, 9usize, 7usize);
        let x = Tensor::from_vec(rnd(n * c * h * w, 1), (n, c, h, w), &dev).unwrap();
        // Positions in and around the frame (some outside: zeros padding).
        let grid = (Tensor::from_vec(rnd(n * 5 * 6 * 2, 2), (n, 5, 6, 2), &dev).unwrap() * 1.3).unwrap();
        assert!(max_diff(&grid_sample(&x, &grid).unwrap(), &grid_sample_reference(&x, &grid).unwrap()) < 1e-5);
        let s = (Tensor::from_vec(rnd(n * c, 3), (n, c), &dev).unwrap().abs().unwrap() * 2.0).unwrap();
        let a = (Tensor::from_vec(rnd(n * c, 4), (n, c), &dev).unwrap() * std::f64::consts::PI).unwrap();
        let t = Tensor::from_vec(rnd(n * c * 2, 5), (n, c, 2), &dev).unwrap();
        let (got, want) = (adaat_sample(&x, &s, &a, &t).unwrap(), adaat_sample_reference(&x, &s, &a, &t).unwrap());
        assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
    }

    #[test]
    fn resizes_follow_torch_interpolate() {
        let dev = Device::Cpu;
        // 1x4 row [0, 1, 2, 3] to 1x2: nearest picks 0 and 2; bilinear (align_corners=False) samples at
        // 0.5 and 2.5.
        let x = Tensor::new(&[[[[0f32, 1., 2., 3.]]]], &dev).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let resize = |x: &Tensor, to: (usize, usize)| {
            let from = (x.dim(2).unwrap(), x.dim(3).unwrap());
            let (n, b) = (Nearest::new(from, to, &dev).unwrap(), Bilinear::new(from, to, &dev).unwrap());
            (flat(n.apply(x).unwrap()), flat(b.apply(x).unwrap()))
        };
        assert_eq!(resize(&x, (1, 2)), (vec![0., 2.], vec![0.5, 2.5]));
        // Up-sampling 2 -> 4: positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped at the edge).
        let x = Tensor::new(&[[[[0f32, 4.]]]], &dev).unwrap();
        assert_eq!(resize(&x, (1, 4)).1, [0., 1., 3., 4.]);
        // Instance norm: zero mean, unit (biased) variance per channel, then the affine.
        let x = Tensor::new(&[[[[1f32, 3.], [5., 7.]]]], &dev).unwrap();
        let (scale, shift) = (Tensor::new(&[[[[2f32]]]], &dev).unwrap(), Tensor::new(&[[[[0.5f32]]]], &dev).unwrap());
        let n = flat(InstanceNorm::new(2, 2, 0.0, DType::F32, &dev).unwrap().apply(&x, &scale, &shift).unwrap());
        let expected = [-3f32, -1., 1., 3.].map(|v| 2.0 * v / 5f32.sqrt() + 0.5);
        assert!(n.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6), "{n:?}");
    }

    #[test]
    fn pixel_shuffle_interleaves_channels() {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap().reshape((1, 4, 1, 2)).unwrap();
        let y = pixel_shuffle(&x, 2).unwrap();
        assert_eq!(y.dims(), [1, 1, 2, 4]);
        // out[2h+i, 2w+j] = in[i*2+j, h, w]
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0., 2., 1., 3., 4., 6., 5., 7.]);
    }

    #[test]
    fn the_identity_grid_samples_pixel_centres() {
        // align_corners=False: grid points at pixel centres, (2j+1)/W - 1, reproduce the input.
        let (h, w) = (3usize, 4usize);
        let x = Tensor::arange(0f32, (h * w) as f32, &Device::Cpu).unwrap().reshape((1, 1, h, w)).unwrap();
        let g: Vec<f32> = (0..h)
            .flat_map(|i| {
                (0..w).flat_map(move |j| [(2 * j + 1) as f32 / w as f32 - 1.0, (2 * i + 1) as f32 / h as f32 - 1.0])
            })
            .collect();
        let grid = Tensor::from_vec(g, (1, h, w, 2), &Device::Cpu).unwrap();
        let y = grid_sample_reference(&x, &grid).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in y.iter().zip(x.flatten_all().unwrap().to_vec1::<f32>().unwrap()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Outside the input: zeros padding.
        let far = Tensor::from_vec(vec![3.0f32, 3.0], (1, 1, 1, 2), &Device::Cpu).unwrap();
        assert_eq!(grid_sample(&x, &far).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0]);
    }
}
