//! STSA's heatmap generator (SPEC.md section 2) in candle: wav2vec2 chunks, pose heatmaps and reference
//! heatmaps of a T=5 window go through convolutional encoders and a fusion transformer, and a two-branch
//! decoder draws the lip and jaw heatmaps (the guidance the face renderer follows). Module paths mirror
//! the PyTorch state_dict (`mel_encoder.0.conv_block.0.weight`, ...).

use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2dConfig, LayerNorm, Linear, VarBuilder};

use super::conv::Conv2d;
use super::layers::{
    Act, Block, R, Spec, Stack, block_diagonal_conv2d, conv2d_bn, packed_attention, scaled_rows, stacked_conv2d,
};
use crate::error::Result;

/// The sizes of the released checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub t: usize,
    pub d_model: usize,
    pub nlayers: usize,
    pub nhead: usize,
    pub dim_feedforward: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { t: 5, d_model: 512, nlayers: 8, nhead: 4, dim_feedforward: 1024 }
    }
}

/// `mel_encoder`: (B·T, 768, 10) -> (B·T, 512, 1).
const MEL: [Spec; 13] = [
    (768, 128, 3, 1, 1, false, R),
    (128, 128, 3, 1, 1, false, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 256, 3, 2, 1, false, R),
    (256, 256, 3, 1, 1, true, R),
    (256, 256, 3, 1, 1, true, R),
    (256, 512, 3, 2, 1, false, R),
    (512, 512, 3, 1, 1, true, R),
    (512, 512, 3, 1, 1, true, R),
    (512, 512, 3, 1, 1, false, R),
    (512, 512, 3, 1, 0, false, R),
    (512, 512, 1, 1, 0, false, Act::Tanh),
];

/// The heatmap encoders: (N, 1, 128, 128) -> (N, 512, 1, 1).
const HEATMAP: [Spec; 13] = [
    (1, 32, 3, 2, 1, false, R),
    (32, 32, 3, 1, 1, true, R),
    (32, 32, 3, 1, 1, true, R),
    (32, 64, 3, 3, 1, false, R),
    (64, 64, 3, 1, 1, true, R),
    (64, 64, 3, 1, 1, true, R),
    (64, 128, 3, 3, 1, false, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 256, 3, 3, 1, false, R),
    (256, 256, 3, 1, 1, true, R),
    (256, 512, 3, 1, 0, false, R),
    (512, 512, 1, 1, 0, false, Act::Tanh),
];

/// torch's sinusoid table, every op in f32 (rows `0..rows`).
pub fn positional_table(rows: usize, d: usize, device: &Device) -> Result<Tensor> {
    let step = (-(10000f64.ln()) / d as f64) as f32;
    let div: Vec<f32> = (0..d).step_by(2).map(|i| (i as f32 * step).exp()).collect();
    let mut pe = vec![0f32; rows * d];
    for p in 0..rows {
        for (i, &dv) in div.iter().enumerate() {
            let a = p as f32 * dv;
            pe[p * d + 2 * i] = a.sin();
            pe[p * d + 2 * i + 1] = a.cos();
        }
    }
    Ok(Tensor::from_vec(pe, (rows, d), device)?)
}

/// `nn.TransformerEncoderLayer` (post-norm, ReLU) with a packed `in_proj` (its query rows scaled by
/// 1/√head_dim at load).
struct TransformerLayer {
    in_proj: Linear,
    out_proj: Linear,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    heads: usize,
}

impl TransformerLayer {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (d, ff) = (cfg.d_model, cfg.dim_feedforward);
        let attn = vb.pp("self_attn");
        let in_proj = Linear::new(attn.get((3 * d, d), "in_proj_weight")?, Some(attn.get(3 * d, "in_proj_bias")?));
        let head = (d / cfg.nhead) as f64;
        Ok(TransformerLayer {
            in_proj: scaled_rows(&in_proj, 0..d, 1.0 / head.sqrt())?,
            out_proj: candle_nn::linear(d, d, attn.pp("out_proj"))?,
            linear1: candle_nn::linear(d, ff, vb.pp("linear1"))?,
            linear2: candle_nn::linear(ff, d, vb.pp("linear2"))?,
            norm1: candle_nn::layer_norm(d, 1e-5, vb.pp("norm1"))?,
            norm2: candle_nn::layer_norm(d, 1e-5, vb.pp("norm2"))?,
            heads: cfg.nhead,
        })
    }

    fn attention(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.out_proj.forward(&packed_attention(&self.in_proj.forward(x)?, self.heads)?)?)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm1.forward(&(x + self.attention(x)?)?)?;
        let ff = self.linear2.forward(&self.linear1.forward(&x)?.relu()?)?;
        Ok(self.norm2.forward(&(x + ff)?)?)
    }
}

/// `heatmap_decoder`: the lip and jaw up-sampling stacks with their message passing.
struct Decoder {
    lip: Vec<Block>,
    jaw: Vec<Block>,
    message_l2j: Block,
    messages_from_pose: PoseMessages,
}

/// `message_p2l` and `message_p2j`: what the pose heatmaps tell the lip and the jaw branch, two conv
/// blocks each (stride 2, ReLU). Both read the pose, so their first blocks run as one convolution and
/// their second blocks as one block-diagonal convolution.
struct PoseMessages {
    first: Conv2d,
    second: Conv2d,
}

impl PoseMessages {
    fn load(vb: &VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig { stride: 2, padding: 1, ..Default::default() };
        let block = |branch: &str, i: usize, cin: usize, cout: usize| -> Result<Conv2d> {
            let vb = vb.pp(branch).pp(i);
            conv2d_bn((cin, cout, 3), cfg, true, vb.pp("conv_block.0"), vb.pp("conv_block.1"))
        };
        Ok(PoseMessages {
            first: stacked_conv2d(&[block("message_p2l", 0, 1, 32)?, block("message_p2j", 0, 1, 32)?])?,
            second: block_diagonal_conv2d(&[block("message_p2l", 1, 32, 64)?, block("message_p2j", 1, 32, 64)?])?,
        })
    }

    /// The messages to the lip and to the jaw branch, (N, 64, 32, 32) each.
    fn forward(&self, pose: &Tensor) -> Result<(Tensor, Tensor)> {
        let y = self.second.forward(&self.first.forward(pose)?.relu()?)?.relu()?;
        Ok((y.narrow(1, 0, 64)?, y.narrow(1, 64, 64)?))
    }
}

impl Decoder {
    fn load(vb: VarBuilder) -> Result<Self> {
        let chans =
            [(512, 512, 1, 0), (512, 256, 2, 1), (256, 128, 2, 1), (128, 64, 2, 1), (64, 32, 2, 1), (32, 1, 2, 1)];
        let stack = |first: usize| -> Result<Vec<Block>> {
            chans
                .iter()
                .enumerate()
                .map(|(i, &(cin, cout, s, p))| Block::conv_t2d(cin, cout, s, p, vb.pp(format!("conv_t{}", first + i))))
                .collect()
        };
        Ok(Decoder {
            lip: stack(1)?,
            jaw: stack(7)?,
            message_l2j: Block::conv2d((256, 256, 3, 1, 1, false, R), vb.pp("message_l2j.0"))?,
            messages_from_pose: PoseMessages::load(&vb)?,
        })
    }

    /// Lip and jaw embeddings (N, 512, 1, 1) and pose heatmaps (N, 1, 128, 128) to the lip and jaw heatmaps.
    fn forward(&self, lip: &Tensor, jaw: &Tensor, pose: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mut x, mut y) = (lip.clone(), jaw.clone());
        for i in 0..6 {
            x = self.lip[i].forward(&x)?;
            y = self.jaw[i].forward(&y)?;
            match i {
                // The same message network both ways, from the values before the update (SPEC quirk): both
                // directions as one batch.
                1 => {
                    let n = x.dim(0)?;
                    let messages = self.message_l2j.forward(&Tensor::cat(&[&y, &x], 0)?)?;
                    (x, y) = ((&x + messages.narrow(0, 0, n)?)?, (&y + messages.narrow(0, n, n)?)?);
                }
                3 => {
                    let (to_lip, to_jaw) = self.messages_from_pose.forward(pose)?;
                    x = (x + to_lip)?;
                    y = (y + to_jaw)?;
                }
                _ => {}
            }
        }
        Ok((x.tanh()?, y.tanh()?))
    }
}

/// What the generator predicts for a window.
pub struct Prediction {
    /// `lip + jaw` heatmaps, (B·T, 1, 128, 128).
    pub content_heatmap: Tensor,
    /// The 57 content landmarks, (B·T, 2, 57).
    pub content_landmark: Tensor,
}

pub struct HeatmapGenerator {
    cfg: Config,
    mel_encoder: Stack,
    pose_encoder: Stack,
    ref_encoder: Stack,
    lip_encoder: Stack,
    jaw_encoder: Stack,
    norm: LayerNorm,
    pe: Tensor,
    modality: Tensor,
    layers: Vec<TransformerLayer>,
    decoder: Decoder,
    mouse_keypoint_map: Linear,
    jaw_keypoint_map: Linear,
}

impl HeatmapGenerator {
    pub fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let ft = vb.pp("fusion_transformer");
        Ok(HeatmapGenerator {
            cfg: cfg.clone(),
            mel_encoder: Stack::load(&MEL, false, vb.pp("mel_encoder"))?,
            pose_encoder: Stack::load(&HEATMAP, true, vb.pp("pose_encoder"))?,
            ref_encoder: Stack::load(&HEATMAP, true, vb.pp("ref_encoder"))?,
            lip_encoder: Stack::load(&HEATMAP, true, vb.pp("lip_encoder"))?,
            jaw_encoder: Stack::load(&HEATMAP, true, vb.pp("jaw_encoder"))?,
            norm: candle_nn::layer_norm(d, 1e-5, vb.pp("Norm"))?,
            pe: positional_table(cfg.t, d, vb.device())?.to_dtype(vb.dtype())?,
            modality: ft.get((4, d), "modality.weight")?,
            layers: (0..cfg.nlayers)
                .map(|i| TransformerLayer::load(cfg, ft.pp(format!("transformer_encoder.layers.{i}"))))
                .collect::<Result<_>>()?,
            decoder: Decoder::load(vb.pp("heatmap_decoder"))?,
            mouse_keypoint_map: candle_nn::linear(d, 80, vb.pp("mouse_keypoint_map"))?,
            jaw_keypoint_map: candle_nn::linear(d, 34, vb.pp("jaw_keypoint_map"))?,
        })
    }

    /// The reference tokens of `Nl_whole_heatmap` (1, Nl, 1, 128, 128): encoded, normalised and tagged,
    /// (1, Nl, d). They depend only on the references, so a stream computes them once per reference set.
    pub fn reference_tokens(&self, refs: &Tensor) -> Result<Tensor> {
        let (b, nl) = (refs.dim(0)?, refs.dim(1)?);
        let normed = self.normalise(&self.encode_references(refs)?)?;
        Ok(normed.reshape((b, nl, self.cfg.d_model))?.broadcast_add(&self.modality.get(3)?)?)
    }

    /// Normalised embeddings of wav2vec2 chunks (N, 768, 10) → (N, d). Each depends on its own frame only,
    /// so a sliding window reuses those of the frames it shares with the previous window.
    pub fn embed_audio(&self, w2v: &Tensor) -> Result<Tensor> {
        self.normalise(&self.encode_audio(w2v)?)
    }

    /// Normalised embeddings of pose heatmaps (N, 1, 128, 128) → (N, d).
    pub fn embed_pose(&self, pose: &Tensor) -> Result<Tensor> {
        self.normalise(&self.encode_pose(pose)?)
    }

    /// `mel_encoder`: wav2vec2 chunks (N, 768, 10) → (N, d, 1).
    pub fn encode_audio(&self, w2v: &Tensor) -> Result<Tensor> {
        Ok(self.mel_encoder.forward(w2v)?)
    }

    /// `pose_encoder`: pose heatmaps (N, 1, 128, 128) → (N, d, 1, 1).
    pub fn encode_pose(&self, pose: &Tensor) -> Result<Tensor> {
        Ok(self.pose_encoder.forward(pose)?)
    }

    /// `ref_encoder`: reference heatmaps (B, Nl, 1, 128, 128) → (B·Nl, d, 1, 1).
    pub fn encode_references(&self, refs: &Tensor) -> Result<Tensor> {
        let (b, nl) = (refs.dim(0)?, refs.dim(1)?);
        Ok(self.ref_encoder.forward(&refs.reshape((b * nl, 1, 128, 128))?)?)
    }

    /// `Norm`: an encoding (N, d, ...) flattened and normalised, (N, d).
    pub fn normalise(&self, encoded: &Tensor) -> Result<Tensor> {
        Ok(self.norm.forward(&encoded.flatten_from(1)?)?)
    }

    /// The lip + jaw heatmaps of the window frames `decode` (a range of 0..T), from the window's audio
    /// and pose embeddings (T, d), the pose heatmaps of the decoded frames (decode.len(), 1, 128, 128)
    /// and the reference tokens; the landmark heads (unused for rendering) are skipped. Returns
    /// (decode.len(), 1, 128, 128).
    pub fn heatmaps(
        &self,
        ref_tokens: &Tensor,
        audio: &Tensor,
        pose_emb: &Tensor,
        pose: &Tensor,
        decode: std::ops::Range<usize>,
    ) -> Result<Tensor> {
        let _span = tracing::debug_span!("heatmap_generator", frames = decode.len()).entered();
        let (nl, t, d) = (ref_tokens.dim(1)?, self.cfg.t, self.cfg.d_model);
        let n = decode.len();
        if pose.dim(0)? != n || decode.end > t {
            return Err(crate::Error::InvalidArgument(format!(
                "heatmaps of window frames {decode:?} with {} pose heatmaps",
                pose.dim(0)?
            )));
        }
        let x = self.transformer(ref_tokens, audio, pose_emb)?;
        let lip_emb = x.narrow(1, nl + decode.start, n)?.reshape((n, d, 1, 1))?;
        let jaw_emb = x.narrow(1, nl + t + decode.start, n)?.reshape((n, d, 1, 1))?;
        let (lip, jaw) = self.decoder.forward(&lip_emb, &jaw_emb, pose)?;
        Ok((lip + jaw)?)
    }

    /// The fusion transformer over the reference tokens (B, Nl, d) and the window's audio and pose
    /// embeddings (B·T, d): (B, Nl + 2T, d) (`fusion_transformer`).
    pub fn transformer(&self, ref_tokens: &Tensor, audio: &Tensor, pose_emb: &Tensor) -> Result<Tensor> {
        let (b, t, d) = (ref_tokens.dim(0)?, self.cfg.t, self.cfg.d_model);
        let pe = self.pe.unsqueeze(0)?;
        let audio = audio.reshape((b, t, d))?.broadcast_add(&pe)?.broadcast_add(&self.modality.get(2)?)?;
        let pose_tok = pose_emb.reshape((b, t, d))?.broadcast_add(&pe)?.broadcast_add(&self.modality.get(1)?)?;
        let mut x = Tensor::cat(&[ref_tokens, &audio, &pose_tok], 1)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// The whole model, as the original's forward: `T_w2vs` (B, T, 768, 10), `T_pose_heatmap` (B, T, 1,
    /// 128, 128), `Nl_whole_heatmap` (B, Nl, 1, 128, 128) to every window frame's heatmap and landmarks.
    pub fn forward(&self, w2v: &Tensor, pose: &Tensor, refs: &Tensor) -> Result<Prediction> {
        let _span = tracing::debug_span!("heatmap_generator").entered();
        let (b, t, c, w) = w2v.dims4()?;
        let nl = refs.dim(1)?;
        let d = self.cfg.d_model;
        let audio = self.embed_audio(&w2v.reshape((b * t, c, w))?)?;
        let pose = pose.reshape((b * t, 1, 128, 128))?;
        let pose_emb = self.embed_pose(&pose)?;
        let ref_tok = self.reference_tokens(refs)?;
        let x = self.transformer(&ref_tok, &audio, &pose_emb)?;
        let lip_emb = x.narrow(1, nl, t)?.reshape((b * t, d, 1, 1))?;
        let jaw_emb = x.narrow(1, nl + t, t)?.reshape((b * t, d, 1, 1))?;
        let (lip, jaw) = self.decode(&lip_emb, &jaw_emb, &pose)?;
        let content_heatmap = (&lip + &jaw)?;
        let content_landmark = self.landmarks(&self.landmark_codes(&lip, &jaw)?, (&lip_emb, &jaw_emb))?;
        Ok(Prediction { content_heatmap, content_landmark })
    }

    /// `heatmap_decoder`: the lip and jaw embeddings (N, d, 1, 1) and the pose heatmaps (N, 1, 128, 128)
    /// to the lip and jaw heatmaps, each (N, 1, 128, 128).
    pub fn decode(&self, lip_emb: &Tensor, jaw_emb: &Tensor, pose: &Tensor) -> Result<(Tensor, Tensor)> {
        self.decoder.forward(lip_emb, jaw_emb, pose)
    }

    /// `lip_encoder`, `jaw_encoder`: the landmark branch's codes of the lip and jaw heatmaps (its output is
    /// not used for rendering, but it is part of the model).
    pub fn landmark_codes(&self, lip: &Tensor, jaw: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.lip_encoder.forward(lip)?, self.jaw_encoder.forward(jaw)?))
    }

    /// The landmarks (N, 2, 57) from the landmark codes and the lip and jaw embeddings.
    pub fn landmarks(
        &self,
        (lip_code, jaw_code): &(Tensor, Tensor),
        (lip_emb, jaw_emb): (&Tensor, &Tensor),
    ) -> Result<Tensor> {
        let n = lip_emb.dim(0)?;
        let lip_pts = self.mouse_keypoint_map.forward(&(lip_code + lip_emb)?.flatten_from(1)?)?;
        let jaw_pts = self.jaw_keypoint_map.forward(&(jaw_code + jaw_emb)?.flatten_from(1)?)?;
        Ok(Tensor::cat(&[jaw_pts, lip_pts], 1)?.reshape((n, 57, 2))?.permute((0, 2, 1))?)
    }
}
