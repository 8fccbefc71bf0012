//! Deterministic, non-default values for every float tensor of a model — parameters and running
//! statistics — so that an export check sees each tensor's own values, not PyTorch's initial
//! ones (a running mean of zeros exported under the wrong key would go unnoticed). Shared by the
//! export tests and `examples/export_models.rs` (which includes this file by path).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `model` with every float tensor scaled by up to ±10% and moved by up to ±0.005 (zeros move
/// too; a fixed ±0.05 doubled the variance of small conv weights and blew deep ResNets' logits
/// up to 1e16), and every running variance drawn from [0.5, 1.5) (positive, as a variance must
/// be), seeded by `seed`.
pub fn perturb<M: Module>(model: M, seed: u64) -> M {
    let mut mapper = Perturb {
        rng: ChaCha8Rng::seed_from_u64(seed),
        path: Vec::new(),
    };
    model.map(&mut mapper)
}

struct Perturb {
    rng: ChaCha8Rng,
    path: Vec<String>,
}

impl ModuleMapper for Perturb {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let variance = self.path.last().is_some_and(|n| n == "running_var");
        let rng = &mut self.rng;
        param.map(|t| {
            let (shape, device) = (t.shape(), t.device());
            let old: Vec<f32> = t
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec()
                .expect("f32 values");
            let new: Vec<f32> = old
                .iter()
                .map(|&v| {
                    let (u, w): (f32, f32) = (rng.random(), rng.random());
                    if variance {
                        0.5 + u
                    } else {
                        v * (1.0 + 0.2 * (u - 0.5)) + 0.01 * (w - 0.5)
                    }
                })
                .collect();
            Tensor::<D>::from_data(TensorData::new(new, shape), &device)
                .set_require_grad(t.is_require_grad())
        })
    }
}
