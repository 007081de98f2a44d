//! Checkpoint reading against `../shared/fixtures/loader`: a real `torch.save({"state_dict": ...})` with
//! DataParallel prefixes on some keys, read through candle's pickle reader, equals the expected tensors
//! bit for bit.

use std::path::PathBuf;

use candle_core::Device;
use lipsync::stsa::weights::{check, load_checkpoint};

fn loader(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "../shared/fixtures/loader", name].iter().collect()
}

#[test]
fn a_pth_checkpoint_reads_exactly_without_its_module_prefix() {
    let got = load_checkpoint(&loader("small_checkpoint.pth")).unwrap();
    let want = candle_core::safetensors::load(loader("small_checkpoint_expected.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(got.len(), 19);
    assert_eq!(got.len(), want.len());
    for (k, w) in &want {
        let g = got.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(g.dims(), w.dims(), "{k}");
        assert_eq!(g.dtype(), w.dtype(), "{k}");
        let (g, w) = (
            g.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap(),
            w.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap(),
        );
        assert_eq!(g.to_vec1::<f64>().unwrap(), w.to_vec1::<f64>().unwrap(), "{k}");
    }
    // Safetensors read the same way.
    let again = load_checkpoint(&loader("small_checkpoint_expected.safetensors")).unwrap();
    assert_eq!(again.len(), 19);
}

#[test]
fn a_wrong_or_missing_file_is_named_with_its_offending_keys() {
    let got = load_checkpoint(&loader("small_checkpoint.pth")).unwrap();
    let mut expected: Vec<(String, Vec<usize>)> = got.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect();
    expected.sort();
    assert!(check(&got, &expected).is_ok());
    expected[0].1 = vec![7, 7];
    expected.push(("no.such.key".into(), vec![3]));
    let report = check(&got, &expected);
    assert_eq!(report.missing, ["no.such.key"]);
    assert_eq!(report.misshaped.len(), 1);
    let err = report.into_result("heatmap generator").unwrap_err().to_string();
    assert!(err.contains("no.such.key") && err.contains("want [7, 7]"), "{err}");
    let err = load_checkpoint(&loader("absent.pth")).unwrap_err().to_string();
    assert!(err.contains("absent.pth") && err.contains("models/README.md"), "{err}");
}
