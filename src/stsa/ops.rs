//! Tensor operations STSA's face renderer needs that candle lacks (SPEC.md section 4): 2-D `grid_sample`
//! (bilinear, zeros padding, align_corners=False), AdaAT's 5-D trilinear case, instance norm, nearest and
//! bilinear resizing as `F.interpolate` does them, and pixel shuffle.
//!
//! Everything here is a composition of candle operations (arithmetic, floor, comparisons, `gather`,
//! `index_select`), so it runs wherever candle does, CUDA included, without custom kernels; plain loops over the values
//! (in the tests) check them.

use candle_core::{D, DType, Tensor};

use crate::error::Result;

/// `F.instance_norm` without affine parameters: per sample and channel over H×W, biased variance.
pub fn instance_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    // Statistics in f32 whatever the dtype: f16 sums of squares over a plane overflow.
    let (dtype, x) = (x.dtype(), x.to_dtype(DType::F32)?);
    let mean = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    Ok(centred.broadcast_div(&(var + eps)?.sqrt()?)?.to_dtype(dtype)?)
}

/// `F.interpolate(mode="nearest")` of (N, C, H, W) to (h, w): source index `floor(dst * in / out)`.
pub fn nearest(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, ih, iw) = x.dims4()?;
    let rows: Vec<u32> = (0..h).map(|i| ((i * ih) / h) as u32).collect();
    let cols: Vec<u32> = (0..w).map(|j| ((j * iw) / w) as u32).collect();
    let rows = Tensor::new(rows.as_slice(), x.device())?;
    let cols = Tensor::new(cols.as_slice(), x.device())?;
    Ok(x.index_select(&rows, 2)?.index_select(&cols, 3)?)
}

/// `F.interpolate(mode="bilinear", align_corners=False)` of (N, C, H, W) to (h, w), no antialiasing:
/// separable, each axis two `index_select`s blended by fixed weights.
pub fn bilinear(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, ih, iw) = x.dims4()?;
    let axis = |x: &Tensor, dim: usize, out: usize, inp: usize| -> Result<Tensor> {
        let scale = inp as f32 / out as f32;
        let (mut i0, mut i1, mut a) = (Vec::new(), Vec::new(), Vec::new());
        for o in 0..out {
            let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let lo = (s as usize).min(inp - 1);
            i0.push(lo as u32);
            i1.push((lo + 1).min(inp - 1) as u32);
            a.push(s - lo as f32);
        }
        let dev = x.device();
        let mut shape = [1usize; 4];
        shape[dim] = out;
        let a = Tensor::from_vec(a, out, dev)?.reshape(shape.as_slice())?.to_dtype(x.dtype())?;
        let lo = x.index_select(&Tensor::new(i0.as_slice(), dev)?, dim)?;
        let hi = x.index_select(&Tensor::new(i1.as_slice(), dev)?, dim)?;
        Ok((&lo + (hi - &lo)?.broadcast_mul(&a)?)?)
    };
    axis(&axis(x, 2, h, ih)?, 3, w, iw)
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

/// [`unnormalise`] on a tensor: `((g + 1)·size − 1) / 2`.
fn pixels(g: &Tensor, size: usize) -> Result<Tensor> {
    Ok(((g + 1.0)? * size as f64)?.affine(0.5, -0.5)?)
}

/// The bilinear taps of continuous positions `x`, `y` (any shape, pixel units) on a `w`×`h` plane: for each
/// of the four corners, the flat index (u32, clamped into the plane) and the weight (0 outside the plane).
fn bilinear_taps(x: &Tensor, y: &Tensor, w: usize, h: usize) -> Result<Vec<(Tensor, Tensor)>> {
    let (x0, y0) = (x.floor()?, y.floor()?);
    let (ax, ay) = ((x - &x0)?, (y - &y0)?);
    let (bx, by) = (ax.affine(-1.0, 1.0)?, ay.affine(-1.0, 1.0)?);
    let mut taps = Vec::with_capacity(4);
    for (dx, dy, wx, wy) in [(0.0, 0.0, &bx, &by), (1.0, 0.0, &ax, &by), (0.0, 1.0, &bx, &ay), (1.0, 1.0, &ax, &ay)] {
        let (xi, yi) = ((&x0 + dx)?, (&y0 + dy)?);
        let inside = (xi.ge(0.0)?.to_dtype(DType::F32)?
            * xi.le((w - 1) as f64)?.to_dtype(DType::F32)?
            * yi.ge(0.0)?.to_dtype(DType::F32)?
            * yi.le((h - 1) as f64)?.to_dtype(DType::F32)?)?;
        let weight = (wx.mul(wy)? * inside)?;
        let index =
            (yi.clamp(0.0, (h - 1) as f64)? * w as f64 + xi.clamp(0.0, (w - 1) as f64)?)?.to_dtype(DType::U32)?;
        taps.push((index, weight));
    }
    Ok(taps)
}

/// `F.grid_sample(input, grid)` with the defaults: bilinear, zeros padding, align_corners=False.
/// `input` (N, C, H, W), `grid` (N, Ho, Wo, 2) holding (x, y) in [-1, 1]; returns (N, C, Ho, Wo).
pub fn grid_sample(input: &Tensor, grid: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = input.dims4()?;
    let (gn, ho, wo, two) = grid.dims4()?;
    if gn != n || two != 2 {
        return Err(crate::Error::InvalidArgument(format!(
            "grid_sample: grid {:?} for input {:?}",
            grid.dims(),
            input.dims()
        )));
    }
    let dtype = input.dtype();
    let input = input.to_dtype(DType::F32)?;
    let g = grid.to_dtype(DType::F32)?.reshape((n, ho * wo, 2))?;
    let x = pixels(&g.narrow(2, 0, 1)?.squeeze(2)?, w)?;
    let y = pixels(&g.narrow(2, 1, 1)?.squeeze(2)?, h)?;
    let flat = input.reshape((n, c, h * w))?;
    let mut out: Option<Tensor> = None;
    for (index, weight) in bilinear_taps(&x, &y, w, h)? {
        let index = index.unsqueeze(1)?.broadcast_as((n, c, ho * wo))?.contiguous()?;
        let term = flat.gather(&index, 2)?.broadcast_mul(&weight.unsqueeze(1)?)?;
        out = Some(match out {
            Some(o) => (o + term)?,
            None => term,
        });
    }
    Ok(out.expect("four taps").reshape((n, c, ho, wo))?.to_dtype(dtype)?)
}

/// AdaAT's sampling: `F.grid_sample(feat.unsqueeze(1), grid)` in 5-D (trilinear, zeros, align_corners=False)
/// where output channel `c` at (i, j) samples (x, y) = `scale[c]·R(angle[c])·(gx, gy) + t[c]` on the
/// align_corners=True grid `gx = 2j/(W−1)−1`, `gy = 2i/(H−1)−1`, at depth `gz = 2c/(C−1)−1`.
/// `feat` (B, C, H, W); `scale`, `angle` (B, C); `translation` (B, C, 2).
pub fn adaat_sample(feat: &Tensor, scale: &Tensor, angle: &Tensor, translation: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = feat.dims4()?;
    let dev = feat.device();
    let lin = |n: usize| -> Vec<f32> { (0..n).map(|i| 2.0 * (i as f32 / (n - 1) as f32) - 1.0).collect() };
    let gx = Tensor::from_vec(lin(w), (1, 1, 1, w), dev)?;
    let gy = Tensor::from_vec(lin(h), (1, 1, h, 1), dev)?;
    let per_channel = |t: &Tensor| t.to_dtype(DType::F32)?.reshape((b, c, 1, 1));
    let (s, a) = (per_channel(scale)?, per_channel(angle)?);
    let (cos, sin) = (a.cos()?, a.sin()?);
    let t = translation.to_dtype(DType::F32)?;
    let (tx, ty) = (t.narrow(2, 0, 1)?.reshape((b, c, 1, 1))?, t.narrow(2, 1, 1)?.reshape((b, c, 1, 1))?);
    // The sampled grid, then in pixels (align_corners=False).
    let gxs = cos.broadcast_mul(&gx)?.broadcast_sub(&sin.broadcast_mul(&gy)?)?.broadcast_mul(&s)?.broadcast_add(&tx)?;
    let gys = sin.broadcast_mul(&gx)?.broadcast_add(&cos.broadcast_mul(&gy)?)?.broadcast_mul(&s)?.broadcast_add(&ty)?;
    let (x, y) = (pixels(&gxs, w)?, pixels(&gys, h)?);
    // Depth: fixed per output channel, two taps (the channel blend quirk).
    let mut planes = Vec::with_capacity(2);
    for tap in 0..2 {
        let (mut idx, mut wt) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for ch in 0..c {
            let z = unnormalise(lin(c)[ch], c);
            let z0 = z.floor();
            let (zz, wz) = if tap == 0 { (z0, 1.0 - (z - z0)) } else { (z0 + 1.0, z - z0) };
            let inside = zz >= 0.0 && zz < c as f32;
            idx.push(zz.clamp(0.0, (c - 1) as f32));
            wt.push(if inside { wz } else { 0.0 });
        }
        planes.push((Tensor::from_vec(idx, (1, c, 1, 1), dev)?, Tensor::from_vec(wt, (1, c, 1, 1), dev)?));
    }
    let flat = feat.to_dtype(DType::F32)?.reshape((b, c * h * w))?;
    let mut out: Option<Tensor> = None;
    for (index, weight) in bilinear_taps(&x, &y, w, h)? {
        for (z, wz) in &planes {
            let full = (index.to_dtype(DType::F32)?.broadcast_add(&(z * (h * w) as f64)?)?).to_dtype(DType::U32)?;
            let vals = flat.gather(&full.reshape((b, c * h * w))?.contiguous()?, 1)?.reshape((b, c, h, w))?;
            let term = vals.mul(&weight.broadcast_mul(wz)?)?;
            out = Some(match out {
                Some(o) => (o + term)?,
                None => term,
            });
        }
    }
    Ok(out.expect("eight taps").to_dtype(feat.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
        let a = (Tensor::from_vec(rnd(n * c, 4), (n, c), &dev).unwrap() * 3.14159).unwrap();
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
        assert_eq!(flat(nearest(&x, 1, 2).unwrap()), [0., 2.]);
        assert_eq!(flat(bilinear(&x, 1, 2).unwrap()), [0.5, 2.5]);
        // Up-sampling 2 -> 4: positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped at the edge).
        let x = Tensor::new(&[[[[0f32, 4.]]]], &dev).unwrap();
        assert_eq!(flat(bilinear(&x, 1, 4).unwrap()), [0., 1., 3., 4.]);
        // Instance norm: zero mean, unit (biased) variance per channel.
        let x = Tensor::new(&[[[[1f32, 3.], [5., 7.]]]], &dev).unwrap();
        let n = flat(instance_norm(&x, 0.0).unwrap());
        let expected = [-3f32, -1., 1., 3.].map(|v| v / 5f32.sqrt());
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
