//! Release checkpoints of the ResNet DeepLabV3+: VainF/DeepLabV3Plus-Pytorch's `model_state` has
//! no `backbone.fc` (its backbone is an `IntermediateLayerGetter`), and must still load strictly.

use super::*;
use crate::import::load_state_dict;
use crate::state_dict::StateDict;
use burn::module::{ModuleVisitor, Param};

/// Every float tensor of a model under its release key, as a release `model_state` holds it
/// (no linear layer is visited, so no transposition is needed).
struct ReleaseDict {
    path: Vec<String>,
    dict: StateDict,
}

impl ModuleVisitor for ReleaseDict {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = release_key(&self.path.join("."));
        if key.starts_with("backbone.fc.") {
            return; // what the release lacks
        }
        let shape = param.lazy_shape().to_vec();
        let values = param.val().into_data().try_to_vec::<f32>().unwrap();
        self.dict.insert(key, values, shape, "float32");
    }
}

fn resnet50(device: &Device) -> DeepLabV3Plus {
    DeepLabConfig {
        backbone: DeepLabBackbone::Resnet50,
        num_classes: 3,
        output_stride: 16,
        aspp_channels: 16,
    }
    .init(device)
}

#[test]
fn resnet_release_checkpoint_without_fc_loads_strictly() {
    let device = afan_core::device::test_device();
    device.seed(1);
    let source = resnet50(&device);
    let mut visitor = ReleaseDict {
        path: Vec::new(),
        dict: StateDict::default(),
    };
    source.visit(&mut visitor);
    let dict = visitor.dict;
    assert!(dict.get("backbone.layer4.2.conv3.weight").is_some());
    assert!(dict.get("classifier.classifier.3.weight").is_some());

    device.seed(2);
    // The plain strict import names the missing fc: the failure this loader exists for.
    let e = load_state_dict(resnet50(&device), "deeplabv3plus", &dict, release_key)
        .expect_err("plain strict import wants backbone.fc")
        .to_string();
    assert!(e.contains("backbone.fc.weight"), "{e}");

    let loaded = resnet50(&device).load_release(&dict).unwrap();
    let weight = |m: &DeepLabV3Plus| {
        let block = &m.resnet.as_ref().unwrap().layer4[2];
        block.conv3.as_ref().unwrap().weight.val().into_data()
    };
    assert_eq!(weight(&loaded), weight(&source));
    let x = Tensor::<4>::ones([1, 3, 33, 33], &device);
    assert_eq!(
        loaded.valid().predict(x.clone()).into_data(),
        source.valid().predict(x).into_data()
    );

    // Only fc is excused: any other missing key is still refused by name.
    let mut partial = StateDict::default();
    for key in dict
        .keys()
        .filter(|k| *k != "backbone.layer1.0.conv1.weight")
    {
        let (v, s) = dict.get(key).unwrap();
        partial.insert(key.to_string(), v.to_vec(), s.to_vec(), "float32");
    }
    let e = resnet50(&device)
        .load_release(&partial)
        .expect_err("a missing conv is an error")
        .to_string();
    assert!(e.contains("backbone.layer1.0.conv1.weight"), "{e}");
}
