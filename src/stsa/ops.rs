//! Tensor operations STSA's face renderer needs that candle lacks (SPEC.md section 4): 2-D `grid_sample`
//! (bilinear, zeros padding, align_corners=False), AdaAT's 5-D trilinear case, instance norm, nearest and
//! bilinear resizing as `F.interpolate` does them, and pixel shuffle.
//!
//! The two `grid_sample`s run on the CPU over the tensors' values (they move them to the CPU and back):
//! correct on any device, fast only on the CPU. CUDA kernels for them are not written yet (issue 6).

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;

/// `F.instance_norm` without affine parameters: per sample and channel over H×W, biased variance.
pub fn instance_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    Ok(centred.broadcast_div(&(var + eps)?.sqrt()?)?)
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

/// `F.interpolate(mode="bilinear", align_corners=False)` of (N, C, H, W) to (h, w), no antialiasing.
pub fn bilinear(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (n, c, ih, iw) = x.dims4()?;
    let src = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let taps = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(h, ih), taps(w, iw));
    let mut out = vec![0f32; n * c * h * w];
    for p in 0..n * c {
        let plane = &src[p * ih * iw..(p + 1) * ih * iw];
        for (y, &(y0, y1, ay)) in ty.iter().enumerate() {
            for (xx, &(x0, x1, ax)) in tx.iter().enumerate() {
                let top = plane[y0 * iw + x0] * (1.0 - ax) + plane[y0 * iw + x1] * ax;
                let bot = plane[y1 * iw + x0] * (1.0 - ax) + plane[y1 * iw + x1] * ax;
                out[p * h * w + y * w + xx] = top * (1.0 - ay) + bot * ay;
            }
        }
    }
    Ok(Tensor::from_vec(out, (n, c, h, w), &Device::Cpu)?.to_device(x.device())?.to_dtype(x.dtype())?)
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

/// `F.grid_sample(input, grid)` with the defaults: bilinear, zeros padding, align_corners=False.
/// `input` (N, C, H, W), `grid` (N, Ho, Wo, 2) holding (x, y) in [-1, 1]; returns (N, C, Ho, Wo).
pub fn grid_sample(input: &Tensor, grid: &Tensor) -> Result<Tensor> {
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

/// AdaAT's sampling: `F.grid_sample(feat.unsqueeze(1), grid)` in 5-D (trilinear, zeros, align_corners=False)
/// where output channel `c` at (i, j) samples (x, y) = `scale[c]·R(angle[c])·(gx, gy) + t[c]` on the
/// align_corners=True grid `gx = 2j/(W−1)−1`, `gy = 2i/(H−1)−1`, at depth `gz = 2c/(C−1)−1`.
/// `feat` (B, C, H, W); `scale`, `angle` (B, C); `translation` (B, C, 2).
pub fn adaat_sample(feat: &Tensor, scale: &Tensor, angle: &Tensor, translation: &Tensor) -> Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let y = grid_sample(&x, &grid).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in y.iter().zip(x.flatten_all().unwrap().to_vec1::<f32>().unwrap()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Outside the input: zeros padding.
        let far = Tensor::from_vec(vec![3.0f32, 3.0], (1, 1, 1, 2), &Device::Cpu).unwrap();
        assert_eq!(grid_sample(&x, &far).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0]);
    }
}
