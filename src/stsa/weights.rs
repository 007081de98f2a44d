//! Reading checkpoints: the original STSA `.pth` files (`{"state_dict": ...}`, with or without the
//! DataParallel `module.` prefix) through candle's pickle reader, safetensors, and the Hugging Face
//! wav2vec2 checkpoint (`wav2vec2.` prefix of `Wav2Vec2ForCTC`). [`check`] compares what a file holds with
//! what a network expects, so a wrong file is reported by its offending keys.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::error::{Error, Result, candle_message};

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
            .map_err(|e| {
                Error::Model(format!("{}: not a readable safetensors file: {}", path.display(), candle_message(&e)))
            })?
            .into_iter()
            .collect::<Vec<_>>()
    } else {
        // STSA saves {"state_dict": ...}; HF's pytorch_model.bin is the state_dict itself.
        match read_pth(path, Some("state_dict")) {
            Ok(t) if !t.is_empty() => t,
            _ => read_pth(path, None)
                .map_err(|e| Error::Model(format!("{}: not a readable PyTorch checkpoint: {e}", path.display())))?,
        }
    };
    Ok(named.into_iter().map(|(k, t)| (k.strip_prefix("module.").map(str::to_owned).unwrap_or(k), t)).collect())
}

/// The tensors of a PyTorch checkpoint (a zip of a pickle and one entry per storage), under `key` of its
/// top-level dict. Each tensor's extent is checked against the bytes its entry holds before it is read, so
/// a corrupt file cannot make the reader allocate for data it does not have.
fn read_pth(path: &Path, key: Option<&str>) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let names = zip.file_names().map(|f| f.map(|f| f.into_owned())).collect::<std::result::Result<Vec<_>, _>>();
    let pickles: Vec<String> =
        names.map_err(|e| e.to_string())?.into_iter().filter(|f| f.ends_with("data.pkl")).collect();
    for name in pickles {
        let entry = zip.by_name(&name).map_err(|e| e.to_string())?;
        let mut pickle = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(entry, MAX_PICKLE + 1), &mut pickle)
            .map_err(|e| format!("{name}: {e}"))?;
        if pickle.len() as u64 > MAX_PICKLE {
            return Err(format!("{name} is over {} MB: not a checkpoint's pickle", MAX_PICKLE >> 20));
        }
        check_pickle(&pickle).map_err(|e| format!("{name}: {e}"))?;
    }
    let pth = candle_core::pickle::PthTensors::new(path, key).map_err(|e| candle_message(&e))?;
    for (name, info) in pth.tensor_infos() {
        let elements = info.layout.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let needed = elements
            .and_then(|n| n.checked_mul(info.dtype.size_in_bytes()))
            .and_then(|n| n.checked_add(info.layout.start_offset()));
        let held = zip.by_name(&info.path).map_err(|e| format!("tensor `{name}`: {e}"))?.size();
        if needed.is_none_or(|n| n as u64 > held) {
            return Err(format!(
                "tensor `{name}` {:?} needs more data than its entry `{}` holds ({held} bytes)",
                info.layout.dims(),
                info.path
            ));
        }
    }
    let mut tensors = Vec::with_capacity(pth.tensor_infos().len());
    for name in pth.tensor_infos().keys() {
        if let Some(tensor) = pth.get(name).map_err(|e| candle_message(&e))? {
            tensors.push((name.clone(), tensor));
        }
    }
    Ok(tensors)
}

/// The largest pickle a checkpoint may hold (STSA's hold under 200 kB: names, shapes and storage keys).
const MAX_PICKLE: u64 = 64 << 20;

/// Walks a pickle's opcodes (those candle's reader takes) and checks that every length it gives fits in
/// what follows: a corrupt length must not make the reader allocate gigabytes for a string.
fn check_pickle(pickle: &[u8]) -> std::result::Result<(), String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<(), String> {
        if n > pickle.len() - *at {
            return Err(format!("an argument of {n} bytes at byte {} runs past the end ({} bytes)", *at, pickle.len()));
        }
        *at += n;
        Ok(())
    };
    while at < pickle.len() {
        let op = pickle[at];
        at += 1;
        match op {
            b'.' => return Ok(()),
            // PROTO, BINPUT, BINGET, BININT1
            0x80 | b'q' | b'h' | b'K' => take(&mut at, 1)?,
            b'M' => take(&mut at, 2)?,
            b'J' | b'r' | b'j' => take(&mut at, 4)?,
            b'G' => take(&mut at, 8)?,
            // BINUNICODE: a 4-byte length, then the text.
            b'X' => {
                take(&mut at, 4)?;
                let n = u32::from_le_bytes([pickle[at - 4], pickle[at - 3], pickle[at - 2], pickle[at - 1]]) as usize;
                take(&mut at, n)?;
            }
            // LONG1: a 1-byte length, then the number.
            0x8a => {
                take(&mut at, 1)?;
                let n = pickle[at - 1] as usize;
                take(&mut at, n)?;
            }
            // GLOBAL: module and class names, each to the end of its line.
            b'c' => {
                for _ in 0..2 {
                    let line = pickle[at..].iter().position(|&b| b == b'\n').ok_or("a name runs past the end")?;
                    at += line + 1;
                }
            }
            b')' | b'R' | b'(' | b't' | b'Q' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's' | b'u' | b'}' | b'd'
            | b'b' | 0x81 | b']' | b'a' | b'e' => {}
            other => return Err(format!("unknown opcode {other:#04x} at byte {}", at - 1)),
        }
    }
    Err("no STOP opcode: the pickle is cut short".into())
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
