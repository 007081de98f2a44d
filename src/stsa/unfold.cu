// Unfolding for 2-D convolutions on CUDA (src/stsa/conv.rs): x (B, C, H, W), contiguous, becomes
// col (B, C·KH·KW, OH·OW), row (c, ky, kx) holding the input pixel each output pixel's tap (ky, kx) of
// channel c reads, 0 in the padding. A convolution is then the weight (O, C·KH·KW) times col: one
// matrix product per batch, its result already (B, O, OH, OW).
//
// One block row per (b, c, ky, kx) (grid.y), threads along the output pixels: neighbouring threads
// read neighbouring input pixels and write neighbouring outputs. The values are only copied, so one
// kernel serves every element size (u16: f16 and bf16; u32: f32); zero bits are 0.0 in each.

template <typename T>
__device__ void unfold(const T *x, T *col, unsigned c, unsigned h, unsigned w, unsigned kh, unsigned kw,
                       unsigned stride, unsigned pad, unsigned dil, unsigned oh, unsigned ow) {
    const unsigned row = blockIdx.y;
    const unsigned taps = c * kh * kw;
    const unsigned b = row / taps;
    const unsigned tap = row - b * taps;
    const unsigned kx = tap % kw;
    const unsigned ky = (tap / kw) % kh;
    const unsigned ch = tap / (kw * kh);
    const T *plane = x + ((size_t)b * c + ch) * h * w;
    T *out = col + (size_t)row * oh * ow;
    const int dy = (int)(ky * dil) - (int)pad;
    const int dx = (int)(kx * dil) - (int)pad;
    const unsigned m = oh * ow;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < m; i += blockDim.x * gridDim.x) {
        const unsigned oy = i / ow;
        const unsigned ox = i - oy * ow;
        const int iy = (int)(oy * stride) + dy;
        const int ix = (int)(ox * stride) + dx;
        const bool inside = iy >= 0 && iy < (int)h && ix >= 0 && ix < (int)w;
        out[i] = inside ? plane[iy * (int)w + ix] : (T)0;
    }
}

#define UNFOLD(NAME, T)                                                                                   \
    extern "C" __global__ void NAME(const T *x, T *col, unsigned c, unsigned h, unsigned w, unsigned kh,  \
                                    unsigned kw, unsigned stride, unsigned pad, unsigned dil, unsigned oh, \
                                    unsigned ow) {                                                        \
        unfold<T>(x, col, c, h, w, kh, kw, stride, pad, dil, oh, ow);                                     \
    }

UNFOLD(unfold_u16, unsigned short)
UNFOLD(unfold_u32, unsigned int)
