//! Reading checkpoints: the original STSA `.pth` files (`{"state_dict": ...}`, with or without the
//! DataParallel `module.` prefix) through candle's pickle reader, safetensors, and the Hugging Face
//! wav2vec2 checkpoint (`wav2vec2.` prefix of `Wav2Vec2ForCTC`). [`check`] compares what a file holds with
//! what a network expects, so a wrong file is reported by its offending keys.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::error::{Error, Result};

/// Every tensor of a checkpoint, `module.` prefixes removed.
pub fn load_checkpoint(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::Model(format!(
            "{}: no such file (see models/README.md for where to get it)",
            path.display()
        )));
    }
    let named = if path.extension().is_some_and(|e| e == "safetensors") {
        candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| Error::Model(format!("{}: not a readable safetensors file: {e}", path.display())))?
            .into_iter()
            .collect::<Vec<_>>()
    } else {
        // STSA saves {"state_dict": ...}; HF's pytorch_model.bin is the state_dict itself.
        match candle_core::pickle::read_all_with_key(path, Some("state_dict")) {
            Ok(t) if !t.is_empty() => t,
            _ => candle_core::pickle::read_all(path)
                .map_err(|e| Error::Model(format!("{}: not a readable PyTorch checkpoint: {e}", path.display())))?,
        }
    };
    Ok(named.into_iter().map(|(k, t)| (k.strip_prefix("module.").map(str::to_owned).unwrap_or(k), t)).collect())
}

/// The tensors under `prefix.` (e.g. `wav2vec2` of a `Wav2Vec2ForCTC` checkpoint), renamed without it;
/// the map unchanged if no key has the prefix.
pub fn under_prefix(tensors: HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    let p = format!("{prefix}.");
    if !tensors.keys().any(|k| k.starts_with(&p)) {
        return tensors;
    }
    tensors.into_iter().filter_map(|(k, t)| k.strip_prefix(&p).map(|s| (s.to_owned(), t))).collect()
}

/// How a checkpoint differs from what a network expects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// key, expected shape, shape in the file
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl KeyReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.misshaped.is_empty()
    }

    /// An error listing the offending keys (at most 10 of each kind), or `Ok` when the file fits.
    pub fn into_result(self, what: &str) -> Result<()> {
        if self.is_ok() {
            return Ok(());
        }
        let list = |v: &[String]| {
            let more = if v.len() > 10 { format!(" and {} more", v.len() - 10) } else { String::new() };
            format!("{}{more}", v.iter().take(10).cloned().collect::<Vec<_>>().join(", "))
        };
        let shapes: Vec<String> =
            self.misshaped.iter().map(|(k, want, got)| format!("{k} {got:?} (want {want:?})")).collect();
        Err(Error::Model(format!(
            "{what}: {} missing [{}], {} mis-shaped [{}]",
            self.missing.len(),
            list(&self.missing),
            self.misshaped.len(),
            list(&shapes)
        )))
    }
}

/// Compares `tensors` with the keys and shapes a network expects.
pub fn check(tensors: &HashMap<String, Tensor>, expected: &[(String, Vec<usize>)]) -> KeyReport {
    let mut r = KeyReport::default();
    for (key, shape) in expected {
        match tensors.get(key) {
            None => r.missing.push(key.clone()),
            Some(t) if t.dims() != shape.as_slice() => {
                r.misshaped.push((key.clone(), shape.clone(), t.dims().to_vec()))
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    r.unexpected = tensors.keys().filter(|k| !known.contains(k.as_str())).cloned().collect();
    r.unexpected.sort();
    r
}
