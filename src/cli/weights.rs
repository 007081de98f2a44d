//! `lipsync weights`: what a checkpoint holds and which STSA network it fits (`inspect`), and turning a
//! PyTorch `.pth` into safetensors (`convert`).

use std::path::PathBuf;

use candle_nn::VarBuilder;
use clap::{Args, Subcommand};

use crate::error::{Error, Result};
use crate::stsa::face_renderer::FaceRenderer;
use crate::stsa::heatmap_generator::{self, HeatmapGenerator};
use crate::stsa::wav2vec2::{self, Wav2Vec2};
use crate::stsa::{detw, weights};

#[derive(Args, Debug)]
pub struct WeightsArgs {
    #[command(subcommand)]
    command: WeightsCommand,
}

#[derive(Subcommand, Debug)]
enum WeightsCommand {
    /// List a checkpoint's tensors and check it against each network: missing, unexpected and mis-shaped keys.
    Inspect {
        /// A `.pth` (STSA's `{"state_dict": ...}` or a plain state_dict) or `.safetensors` file.
        file: PathBuf,
        /// Print every key with its shape and dtype.
        #[arg(long)]
        keys: bool,
    },
    /// Write a checkpoint's tensors (`module.` prefixes removed) to a safetensors file.
    Convert {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
}

type Loader = fn(VarBuilder) -> Result<()>;

/// The networks, the prefix their keys may carry in a checkpoint, and how they load.
const NETWORKS: [(&str, Option<&str>, Loader); 3] = [
    ("heatmap-generator", None, |vb| HeatmapGenerator::load(&heatmap_generator::Config::default(), vb).map(|_| ())),
    ("face-renderer", None, |vb| FaceRenderer::load(vb).map(|_| ())),
    ("wav2vec2", Some("wav2vec2"), |vb| Wav2Vec2::load(&wav2vec2::Config::base_960h(), vb).map(|_| ())),
];

pub fn run(args: &WeightsArgs) -> Result<()> {
    match &args.command {
        WeightsCommand::Inspect { file, keys } => inspect(file, *keys),
        WeightsCommand::Convert { file, output } => {
            let tensors = weights::load_checkpoint(file)?;
            candle_core::safetensors::save(&tensors, output)
                .map_err(|e| Error::Model(format!("{}: cannot write: {e}", output.display())))?;
            say!("wrote {} tensors to {}", tensors.len(), output.display());
            Ok(())
        }
    }
}

fn inspect(file: &std::path::Path, list: bool) -> Result<()> {
    let tensors = weights::load_checkpoint(file)?;
    let params: usize = tensors.values().map(|t| t.elem_count()).sum();
    say!("{}: {} tensors, {} values", file.display(), tensors.len(), params);
    if list {
        let mut names: Vec<_> = tensors.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        for (k, t) in names {
            say!("  {k}\t{:?}\t{:?}", t.dims(), t.dtype());
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for (name, prefix, load) in NETWORKS {
        let expected = detw::keys_read_by(load)?;
        let t = match prefix {
            Some(p) => weights::under_prefix(tensors.clone(), p),
            None => tensors.clone(),
        };
        let r = weights::check(&t, &expected);
        say!(
            "{name}: needs {} tensors; {} missing, {} mis-shaped, {} not used",
            expected.len(),
            r.missing.len(),
            r.misshaped.len(),
            r.unexpected.len()
        );
        for k in r.missing.iter().take(8) {
            say!("  missing {k}");
        }
        for (k, want, got) in r.misshaped.iter().take(8) {
            say!("  mis-shaped {k}: {got:?}, want {want:?}");
        }
        let bad = r.missing.len() + r.misshaped.len();
        if best.is_none_or(|(_, b)| bad < b) {
            best = Some((name, bad));
        }
    }
    match best {
        Some((name, 0)) => say!("fits: {name}"),
        _ => say!("fits no network completely"),
    }
    Ok(())
}
