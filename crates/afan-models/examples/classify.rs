//! Classify image files with a model and PyTorch weights, as an application embedding afan
//! would (see docs/embedding.md):
//!
//! ```text
//! cargo run --release -p afan-models --example classify -- resnet50 resnet50.pth photo.jpg
//! ```

use afan_core::SplitModel;
use afan_data::{ImageTransform, top_k};
use afan_models::{ClassifierKind, StateDict};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, weights, images @ ..] = args.as_slice() else {
        return Err("usage: classify MODEL WEIGHTS.pth IMAGE...".into());
    };
    // The weights file fixes the class count (rows of `fc.weight`).
    let dict = StateDict::from_file(Path::new(weights))?;
    let num_classes = dict.get("fc.weight").ok_or("no fc.weight")?.1[0];
    let kind: ClassifierKind = model.parse()?;
    let device = Device::default(); // flex on the CPU; a GPU device works the same way
    let model = kind
        .build(num_classes, &device)
        .load_pytorch(&dict)?
        .valid();

    let size = kind.preprocess();
    let transform = ImageTransform {
        resize: size.resize,
        crop: size.crop,
    };
    let c = size.crop as usize;
    for path in images {
        // RGB in [0, 1]; the model applies the normalization its weights expect.
        let pixels = transform.load(Path::new(path))?;
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, c, c]), &device);
        let logits = model.forward(x).into_data().convert::<f32>();
        let logits = logits.try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        for (class, p) in top_k(&logits, 5) {
            println!("{path}: class {class} with probability {p:.4}");
        }
    }
    Ok(())
}
