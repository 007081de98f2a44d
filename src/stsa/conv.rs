//! STSA's 2-D convolutions. On the CPU they are candle's. On CUDA a convolution is one unfold kernel
//! (`unfold.cu`: the input's taps laid out as (B, C·KH·KW, OH·OW), each output row read from one input
//! plane) and one batched matrix product, the weight (O, C·KH·KW) times that, whose result is already
//! (B, O, OH, OW): candle's own CUDA path lays its columns out pixel-major, with a 64-bit index
//! decomposition per element, and transposes the product back, which left most of a frame's GPU time
//! in the unfolding.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::Conv2dConfig;

/// A 2-D convolution with an optional bias (groups of 1), as `candle_nn::Conv2d`.
#[derive(Clone, Debug)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
}

impl Conv2d {
    pub(crate) fn new(weight: Tensor, bias: Option<Tensor>, config: Conv2dConfig) -> Self {
        Conv2d { weight, bias, config }
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub(crate) fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// The convolution through the unfold kernel's layout and one matrix product, on any device (the
    /// CPU computes the same unfolding in Rust).
    pub(crate) fn forward_unfolded(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (o, _, kh, kw) = self.weight.dims4()?;
        let unfold = Unfold::new(&self.config, (c, h, w), (kh, kw))?;
        let (oh, ow) = unfold.output();
        let col = x.contiguous()?.apply_op1_no_bwd(&unfold)?;
        let weight = self.weight.reshape((1, o, c * kh * kw))?.broadcast_as((b, o, c * kh * kw))?;
        weight.matmul(&col)?.reshape((b, o, oh, ow))
    }

    fn unfolds(&self, x: &Tensor) -> bool {
        x.device().is_cuda() && self.config.groups == 1 && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
    }
}

impl From<candle_nn::Conv2d> for Conv2d {
    fn from(c: candle_nn::Conv2d) -> Self {
        Conv2d::new(c.weight().clone(), c.bias().cloned(), *c.config())
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = if self.unfolds(x) {
            self.forward_unfolded(x)?
        } else {
            let c = &self.config;
            x.conv2d(&self.weight, c.padding, c.stride, c.dilation, c.groups)?
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(&bias.reshape((1, bias.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// The unfolding of `unfold.cu`: x (B, C, H, W), contiguous, to (B, C·KH·KW, OH·OW).
struct Unfold {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl Unfold {
    fn new(
        config: &Conv2dConfig,
        (c, h, w): (usize, usize, usize),
        (kh, kw): (usize, usize),
    ) -> candle_core::Result<Self> {
        let u = Unfold { c, h, w, kh, kw, stride: config.stride, padding: config.padding, dilation: config.dilation };
        let reach = |size: usize, k: usize| size + 2 * u.padding > u.dilation * (k - 1);
        if u.stride == 0 || u.dilation == 0 || kh == 0 || kw == 0 || !reach(h, kh) || !reach(w, kw) {
            candle_core::bail!("convolution of a {h}x{w} input with a {kh}x{kw} kernel and {config:?}: no output");
        }
        Ok(u)
    }

    fn output(&self) -> (usize, usize) {
        let out = |size: usize, k: usize| (size + 2 * self.padding - self.dilation * (k - 1) - 1) / self.stride + 1;
        (out(self.h, self.kh), out(self.w, self.kw))
    }

    fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn shape(&self, b: usize) -> Shape {
        let (oh, ow) = self.output();
        Shape::from((b, self.taps(), oh * ow))
    }

    /// The unfolding on the host: what the kernel computes, element for element.
    fn unfold_host<T: Copy + Default>(&self, x: &[T], b: usize) -> Vec<T> {
        let (oh, ow) = self.output();
        let mut col = vec![T::default(); b * self.taps() * oh * ow];
        for (row, out) in col.chunks_exact_mut(oh * ow).enumerate() {
            let (bi, tap) = (row / self.taps(), row % self.taps());
            let (ch, ky, kx) = (tap / (self.kh * self.kw), tap / self.kw % self.kh, tap % self.kw);
            let plane = &x[(bi * self.c + ch) * self.h * self.w..][..self.h * self.w];
            for (i, v) in out.iter_mut().enumerate() {
                let iy = ((i / ow) * self.stride + ky * self.dilation).checked_sub(self.padding);
                let ix = ((i % ow) * self.stride + kx * self.dilation).checked_sub(self.padding);
                if let (Some(iy), Some(ix)) = (iy, ix)
                    && iy < self.h
                    && ix < self.w
                {
                    *v = plane[iy * self.w + ix];
                }
            }
        }
        col
    }
}

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        "unfold"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, ..) = layout.shape().dims4()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("unfold: the input must be contiguous");
        };
        let out = match storage {
            CpuStorage::F32(x) => CpuStorage::F32(self.unfold_host(&x[start..end], b)),
            CpuStorage::F16(x) => CpuStorage::F16(self.unfold_host(&x[start..end], b)),
            CpuStorage::BF16(x) => CpuStorage::BF16(self.unfold_host(&x[start..end], b)),
            other => candle_core::bail!("unfold: no {:?} kernel", candle_core::backend::BackendStorage::dtype(other)),
        };
        Ok((out, self.shape(b)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::Map1;
        let (b, ..) = layout.shape().dims4()?;
        let slice = self.map(&storage.slice, &storage.device, layout)?;
        Ok((candle_core::CudaStorage { slice, device: storage.device.clone() }, self.shape(b)))
    }
}

/// `unfold.cu`, compiled by build.rs.
#[cfg(feature = "cuda")]
const UNFOLD_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/unfold.ptx"));

#[cfg(feature = "cuda")]
impl candle_core::cuda_backend::Map1 for Unfold {
    fn f<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr + candle_core::WithDType>(
        &self,
        src: &candle_core::cuda_backend::cudarc::driver::CudaSlice<T>,
        dev: &candle_core::cuda_backend::CudaDevice,
        layout: &Layout,
    ) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>> {
        use candle_core::cuda_backend::WrapErr;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        let kernel = match std::mem::size_of::<T>() {
            2 => "unfold_u16",
            4 => "unfold_u32",
            n => candle_core::bail!("unfold: no kernel for {n}-byte elements"),
        };
        let (b, ..) = layout.shape().dims4()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("unfold: the input must be contiguous");
        };
        let (oh, ow) = self.output();
        let rows = b * self.taps();
        let pixels = oh * ow;
        let count = rows * pixels;
        // One block row per (b, c, ky, kx): the grid's y extent bounds them; 32-bit indices inside.
        let u32 = |v: usize| u32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("unfold: {v} too large")));
        if rows > 65_535 || count >= 1 << 31 || self.c * self.h * self.w * b >= 1 << 31 {
            candle_core::bail!("unfold: {rows} rows of {pixels} pixels is beyond the kernel's grid");
        }
        let func = dev.get_or_load_custom_func(kernel, "lipsync_unfold", UNFOLD_PTX)?;
        const THREADS: usize = 256;
        let cfg = LaunchConfig {
            grid_dim: (u32(pixels.div_ceil(THREADS))?, u32(rows)?, 1),
            block_dim: (THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let src = src.slice(start..end);
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<T>(count)? };
        let dims = [self.c, self.h, self.w, self.kh, self.kw, self.stride, self.padding, self.dilation, oh, ow]
            .map(u32)
            .into_iter()
            .collect::<candle_core::Result<Vec<u32>>>()?;
        let mut builder = func.builder();
        builder.arg(&src);
        builder.arg(&out);
        for d in &dims {
            builder.arg(d);
        }
        // SAFETY: the arguments match the kernel's signature; the grid covers `out` exactly.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// The unfolded convolution is candle's, for every stride, padding, dilation, kernel shape and batch
    /// the networks use and some they do not.
    #[test]
    fn unfolded_convolution_is_candles() {
        let dev = Device::Cpu;
        let cases = [
            // (b, c, h, w, o, kh, kw, stride, padding, dilation)
            (1, 3, 16, 16, 8, 3, 3, 1, 1, 1),
            (5, 4, 13, 11, 6, 7, 7, 1, 3, 1),
            (2, 6, 17, 17, 5, 3, 3, 2, 1, 1),
            (1, 8, 12, 12, 4, 3, 3, 3, 1, 1),
            (1, 5, 9, 9, 3, 3, 3, 2, 0, 1),
            (1, 4, 20, 20, 4, 11, 11, 1, 5, 1),
            (3, 2, 10, 14, 3, 3, 3, 1, 2, 2),
            (1, 7, 6, 6, 9, 1, 1, 1, 0, 1),
            (2, 3, 8, 5, 2, 2, 3, 1, 0, 1),
        ];
        for (b, c, h, w, o, kh, kw, stride, padding, dilation) in cases {
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 1.0, (o, c, kh, kw), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, o, &dev).unwrap();
            let config = Conv2dConfig { stride, padding, dilation, ..Default::default() };
            let conv = Conv2d::new(weight.clone(), Some(bias.clone()), config);
            let want = x.conv2d(&weight, padding, stride, dilation, 1).unwrap();
            let got = conv.forward_unfolded(&x).unwrap();
            assert_eq!(got.dims(), want.dims(), "{:?}", (b, c, h, w, kh, kw, stride, padding, dilation));
            assert!(
                max_diff(&got, &want) < 1e-4,
                "{:?}: {}",
                (b, c, h, w, kh, kw, stride, padding),
                max_diff(&got, &want)
            );
            // With its bias, through the module: the CPU takes candle's path, the same numbers.
            let with_bias = (want.broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap())).unwrap();
            assert!(max_diff(&conv.forward(&x).unwrap(), &with_bias) < 1e-4);
        }
    }

    #[test]
    fn unfolding_reads_each_tap_and_pads_with_zeros() {
        // A 1x3x3 ramp, 3x3 kernel, padding 1: the centre tap row is the input; the top-left tap row
        // reads the pixel up and left of each output, 0 outside.
        let x = Tensor::arange(1f32, 10.0, &Device::Cpu).unwrap().reshape((1, 1, 3, 3)).unwrap();
        let config = Conv2dConfig { padding: 1, ..Default::default() };
        let u = Unfold::new(&config, (1, 3, 3), (3, 3)).unwrap();
        let col = x.apply_op1_no_bwd(&u).unwrap();
        assert_eq!(col.dims(), &[1, 9, 9]);
        let rows = col.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows[4], (1..10).map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(rows[0], vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
        assert_eq!(rows[8], vec![5.0, 6.0, 0.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_kernel_larger_than_the_padded_input_is_an_error() {
        let config = Conv2dConfig::default();
        assert!(Unfold::new(&config, (1, 2, 2), (3, 3)).is_err());
    }
}

/// A transposed 2-D convolution (weight (Cin, Cout, K, K), as PyTorch's) in the forms STSA's heatmap
/// decoder uses, each a plain convolution or matrix product so that it runs as fast as those:
/// - kernel 4, stride 2, padding 1 (each step doubling the size): output pixel (2m + p, 2n + q) reads
///   input pixels m−1..m+1, n−1..n+1 through 2x2 of the kernel's taps, so the layer is a 3x3
///   convolution (padding 1) to 4·Cout channels, one per output phase (p, q), then a pixel shuffle;
/// - stride 1, padding 0 on a 1x1 input: out[o, y, x] = Σc in[c]·w[c, o, y, x], one matrix product;
/// - any other: candle's transposed convolution.
pub(crate) struct ConvTranspose2d {
    form: TransposedForm,
    bias: Option<Tensor>,
    /// Cout, K, K.
    out: (usize, usize, usize),
    config: candle_nn::ConvTranspose2dConfig,
}

enum TransposedForm {
    /// The 3x3 convolution to the four phases, its bias repeated per phase.
    Doubling(Conv2d),
    /// The weight as (Cin, Cout·K·K), and as given for inputs larger than 1x1.
    FromPoint(Tensor, Tensor),
    General(Tensor),
}

impl ConvTranspose2d {
    pub(crate) fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        config: candle_nn::ConvTranspose2dConfig,
    ) -> candle_core::Result<Self> {
        let (cin, cout, kh, kw) = weight.dims4()?;
        let c = &config;
        let plain = c.dilation == 1 && c.output_padding == 0;
        let form = if plain && (kh, kw) == (4, 4) && c.stride == 2 && c.padding == 1 {
            // Kernel tap for output phase p and input offset d (−1, 0, 1), where one exists.
            let tap = |p: usize, d: usize| match (p, d) {
                (0, 0) => Some(3),
                (0, 1) => Some(1),
                (1, 1) => Some(2),
                (1, 2) => Some(0),
                _ => None,
            };
            let zeros = Tensor::zeros((cin, cout), weight.dtype(), weight.device())?;
            let mut taps = Vec::with_capacity(4 * 9);
            for (p, q) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                for dy in 0..3 {
                    for dx in 0..3 {
                        taps.push(match (tap(p, dy), tap(q, dx)) {
                            (Some(ky), Some(kx)) => weight.narrow(2, ky, 1)?.narrow(3, kx, 1)?.reshape((cin, cout))?,
                            _ => zeros.clone(),
                        });
                    }
                }
            }
            // (phase, dy, dx, cin, cout) to (cout, phase, cin, dy, dx): output channel o·4 + phase, as
            // the pixel shuffle reads it.
            let conv_weight = Tensor::stack(&taps, 0)?
                .reshape((4, 3, 3, cin, cout))?
                .permute((4, 0, 3, 1, 2))?
                .reshape((4 * cout, cin, 3, 3))?
                .contiguous()?;
            let conv_bias =
                bias.as_ref().map(|b| b.reshape((cout, 1))?.broadcast_as((cout, 4))?.reshape(4 * cout)).transpose()?;
            let conv_config = Conv2dConfig { padding: 1, ..Default::default() };
            TransposedForm::Doubling(Conv2d::new(conv_weight, conv_bias, conv_config))
        } else if plain && c.stride == 1 && c.padding == 0 {
            TransposedForm::FromPoint(weight.reshape((cin, cout * kh * kw))?, weight)
        } else {
            TransposedForm::General(weight)
        };
        Ok(ConvTranspose2d { form, bias, out: (cout, kh, kw), config })
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let (cout, kh, kw) = self.out;
        let c = &self.config;
        let y = match &self.form {
            TransposedForm::Doubling(conv) => {
                return super::ops::pixel_shuffle(&conv.forward(x)?, 2).map_err(candle_core::Error::wrap);
            }
            TransposedForm::FromPoint(matrix, _) if (h, w) == (1, 1) => {
                x.flatten_from(1)?.matmul(matrix)?.reshape((n, cout, kh, kw))?
            }
            TransposedForm::FromPoint(_, weight) | TransposedForm::General(weight) => {
                x.conv_transpose2d(weight, c.padding, c.output_padding, c.stride, c.dilation)?
            }
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(&bias.reshape((1, cout, 1, 1))?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod transposed_tests {
    use super::*;
    use candle_core::Device;

    /// Each form is candle's transposed convolution with its bias.
    #[test]
    fn transposed_forms_are_candles() {
        let dev = Device::Cpu;
        // (n, cin, cout, h, w, k, stride, padding)
        for (n, cin, cout, h, w, k, stride, padding) in
            [(2, 5, 3, 4, 6, 4, 2, 1), (1, 8, 1, 16, 16, 4, 2, 1), (3, 6, 4, 1, 1, 4, 1, 0), (1, 3, 2, 5, 5, 3, 2, 0)]
        {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 1.0, (cin, cout, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let config = candle_nn::ConvTranspose2dConfig { stride, padding, ..Default::default() };
            let want = x
                .conv_transpose2d(&weight, padding, 0, stride, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            let got = ConvTranspose2d::new(weight, Some(bias), config).unwrap().forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "{:?}", (n, cin, cout, h, w, k, stride, padding));
        }
    }
}
