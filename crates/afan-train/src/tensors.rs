//! Small conversions between host buffers and tensors that every task needs.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// A tensor's values on the host as `f32`, whatever the backend's float type.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("data converted to f32 reads back as f32")
}

/// A one-element tensor's value as `f64`.
pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f64>()
}

/// Whether every float tensor of `model` (parameters and running statistics) is finite: one
/// reduction per tensor and a single read-back for the whole model.
pub fn all_finite<M: Module>(model: &M) -> bool {
    struct Finite(Option<Tensor<1>>);
    impl ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // The sum of |x| * 0 is NaN exactly when some x is NaN or infinite.
            let bad = param.val().abs().mul_scalar(0.0).sum();
            self.0 = Some(match self.0.take() {
                Some(t) => t + bad.cast(burn::tensor::FloatDType::F32),
                None => bad.cast(burn::tensor::FloatDType::F32),
            });
        }
    }
    let mut v = Finite(None);
    model.valid().visit(&mut v);
    v.0.is_none_or(|t| t.into_scalar::<f64>().is_finite())
}
