//! "detw": deterministic test weights (`../shared/stsa/DETW.md`). Every tensor of a model is filled from
//! its state_dict key alone (FNV-1a seed, splitmix64 stream, uniform in `[base - amp, base + amp)` by a
//! key-only rule), so the parity tests against the original implementations need only small fixtures,
//! and `examples/stsa_forward.rs` can run any network without its real weights.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Output number `i + 1` of the splitmix64 stream seeded with `seed`.
pub fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a tensor is filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Uniform in `[base - amp, base + amp)`.
    Uniform { base: f64, amp: f64 },
    /// `num_batches_tracked`: int64 zero.
    Zero,
    /// Not generated (the `pe` sinusoid tables, computed as torch does).
    Computed,
}

/// The values of a tensor of `n` elements under key `key` with `(base, amp)`.
pub fn values(key: &str, n: usize, base: f64, amp: f64) -> Vec<f32> {
    let seed = fnv1a64(key.as_bytes());
    (0..n as u64)
        .map(|i| {
            let u = (splitmix64(seed, i) >> 40) as f64 / (1u64 << 24) as f64;
            let r = 2.0 * u - 1.0;
            (base + amp * r) as f32
        })
        .collect()
}

/// torch's fan-in: everything but dimension 0.
fn fan_in(shape: &[usize]) -> usize {
    shape.iter().skip(1).product::<usize>().max(1)
}

/// The key-only classification of DETW.md section 2.1, over a model's whole key set.
pub struct Rules<'a> {
    shapes: HashMap<&'a str, &'a [usize]>,
    keys: HashSet<&'a str>,
}

impl<'a> Rules<'a> {
    pub fn new(keys: &'a [(String, Vec<usize>)]) -> Self {
        Rules {
            shapes: keys.iter().map(|(k, s)| (k.as_str(), s.as_slice())).collect(),
            keys: keys.iter().map(|(k, _)| k.as_str()).collect(),
        }
    }

    pub fn rule(&self, key: &str) -> Rule {
        let shape = self.shapes.get(key).copied().unwrap_or(&[]);
        let (prefix, name) = key.rsplit_once('.').unwrap_or(("", key));
        let join = |n: &str| if prefix.is_empty() { n.to_string() } else { format!("{prefix}.{n}") };
        let u = |base, amp| Rule::Uniform { base, amp };
        if name == "num_batches_tracked" {
            return Rule::Zero;
        }
        if name == "pe" {
            return Rule::Computed;
        }
        if self.keys.contains(join("running_mean").as_str()) {
            return match name {
                "weight" => u(1.0, 0.25),
                "running_var" => u(1.0, 0.5),
                _ => u(0.0, 0.1), // bias, running_mean
            };
        }
        if name == "weight_g" {
            return u(1.0, 0.1);
        }
        if key == "fusion_transformer.modality.weight" {
            return u(0.0, 0.5);
        }
        if shape.len() == 1 && name == "weight" {
            return u(1.0, 0.1);
        }
        if shape.len() == 1 && name == "bias" && self.shapes.get(join("weight").as_str()).is_some_and(|s| s.len() == 1)
        {
            return u(0.0, 0.05);
        }
        if shape.len() <= 1 {
            return u(0.0, 0.02);
        }
        u(0.0, (3.0 / fan_in(shape) as f64).sqrt())
    }
}

/// Records the tensors a network reads while it loads: every `get` answers zeros of the asked shape.
/// Keys and shapes in the order they were read.
type ReadKeys = std::sync::Arc<parking_lot::Mutex<Vec<(String, Vec<usize>)>>>;

struct Recorder(ReadKeys);

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.lock().push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros(s, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: the shape is needed to record it")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The keys and shapes a network reads when `load` builds it (loaded once against zeros), in order.
pub fn keys_read_by(load: impl FnOnce(candle_nn::VarBuilder) -> Result<()>) -> Result<Vec<(String, Vec<usize>)>> {
    let seen_keys = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    load(candle_nn::VarBuilder::from_backend(Box::new(Recorder(seen_keys.clone())), DType::F32, Device::Cpu))?;
    let mut keys = seen_keys.lock().clone();
    let mut seen = HashSet::new();
    keys.retain(|(k, _)| seen.insert(k.clone()));
    Ok(keys)
}

/// Every generated tensor of a model (keys and shapes in state_dict form) as f32 tensors; `Computed`
/// entries are left out, `Zero` ones are int64 scalars.
pub fn generate(keys: &[(String, Vec<usize>)], device: &Device) -> Result<HashMap<String, Tensor>> {
    let rules = Rules::new(keys);
    let mut out = HashMap::new();
    for (key, shape) in keys {
        let n = shape.iter().product::<usize>().max(1);
        let t = match rules.rule(key) {
            Rule::Uniform { base, amp } => Tensor::from_vec(values(key, n, base, amp), shape.as_slice(), device)?,
            Rule::Zero => Tensor::zeros(shape.as_slice(), DType::I64, device)?,
            Rule::Computed => continue,
        };
        out.insert(key.clone(), t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_streams_match_the_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"mel_encoder.0.conv_block.0.weight"), 0x025a2b1c3474533e);
        assert_eq!(fnv1a64(b"encoder.pos_conv_embed.conv.weight_g"), 0xf2a2e5f74d4b7d80);
        let s: Vec<u64> = (0..3).map(|i| splitmix64(0, i)).collect();
        assert_eq!(s, [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f]);
        let s: Vec<u64> = (0..3).map(|i| splitmix64(fnv1a64(b"a"), i)).collect();
        assert_eq!(s, [0x5f29c2aadd9b8527, 0xff84f1bdb6d3884f, 0xfdfab147e960346e]);
    }

    #[test]
    fn tensors_match_the_test_vectors() {
        // (key, shape, base, amp, first three f32 bits, last f32 bits, exact sum)
        type Case = (&'static str, Vec<usize>, f64, f64, [u32; 3], u32, f64);
        let cases: [Case; 4] = [
            (
                "mel_encoder.0.conv_block.0.weight",
                vec![128, 768, 3],
                0.0,
                (3.0f64 / 2304.0).sqrt(),
                [0x3C0AD810, 0x3AB03924, 0xBCD0131F],
                0x3D0F2653,
                -4.946445799653951,
            ),
            (
                "mel_encoder.0.conv_block.1.running_var",
                vec![128],
                1.0,
                0.5,
                [0x3FA8A332, 0x3F85CC5A, 0x3F8DC790],
                0x3F385F06,
                124.17526662349701,
            ),
            (
                "encoder.pos_conv_embed.conv.weight_g",
                vec![1, 1, 128],
                1.0,
                0.1,
                [0x3F853BD4, 0x3F67EFBF, 0x3F7AB836],
                0x3F7BE175,
                127.68578737974167,
            ),
            (
                "encoder.pos_conv_embed.conv.weight_v",
                vec![768, 48, 128],
                0.0,
                (3.0f64 / 6144.0).sqrt(),
                [0xBB34483E, 0xBC58FE88, 0xBB28E745],
                0x3CAA20D1,
                0.15414441085663166,
            ),
        ];
        for (key, shape, base, amp, first, last, sum) in cases {
            let v = values(key, shape.iter().product(), base, amp);
            assert_eq!([v[0].to_bits(), v[1].to_bits(), v[2].to_bits()], first, "{key}");
            assert_eq!(v.last().unwrap().to_bits(), last, "{key}");
            let s: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((s - sum).abs() <= 1e-9 * v.iter().map(|x| x.abs() as f64).sum::<f64>(), "{key}: {s} vs {sum}");
        }
    }

    #[test]
    fn the_key_only_rules() {
        let keys: Vec<(String, Vec<usize>)> = [
            ("a.bn.weight", vec![4]),
            ("a.bn.bias", vec![4]),
            ("a.bn.running_mean", vec![4]),
            ("a.bn.running_var", vec![4]),
            ("a.bn.num_batches_tracked", vec![]),
            ("ln.weight", vec![8]),
            ("ln.bias", vec![8]),
            ("lin.weight", vec![8, 16]),
            ("lin.bias", vec![8]),
            ("conv.weight_g", vec![1, 1, 3]),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        let r = Rules::new(&keys);
        let u = |base, amp| Rule::Uniform { base, amp };
        assert_eq!(r.rule("a.bn.weight"), u(1.0, 0.25));
        assert_eq!(r.rule("a.bn.running_var"), u(1.0, 0.5));
        assert_eq!(r.rule("a.bn.bias"), u(0.0, 0.1));
        assert_eq!(r.rule("a.bn.num_batches_tracked"), Rule::Zero);
        assert_eq!(r.rule("ln.weight"), u(1.0, 0.1));
        assert_eq!(r.rule("ln.bias"), u(0.0, 0.05));
        assert_eq!(r.rule("lin.weight"), u(0.0, (3.0f64 / 16.0).sqrt()));
        assert_eq!(r.rule("lin.bias"), u(0.0, 0.02));
        assert_eq!(r.rule("conv.weight_g"), u(1.0, 0.1));
    }
}
