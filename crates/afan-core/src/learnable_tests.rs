//! The learnable variant on a three-layer linear chain cut after its first and second layers:
//! with `loss = sum(output)` every tail is linear, its feature gradient `c_i` is a constant, the
//! attack moves each element by `K gamma sign(c_i)`, and every gradient of the weights follows by
//! hand.

use super::*;
use crate::AttackBatchNorm;
use crate::objective::{attack_copy, materialize};
use crate::test_util::device;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use proptest::prelude::*;

#[derive(Module, Debug)]
struct Chain {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

const F: usize = 8;

impl Chain {
    fn new(device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(3, F).init(device),
            l2: LinearConfig::new(F, F).init(device),
            l3: LinearConfig::new(F, 3).init(device),
        }
    }

    fn host(linear: &Linear) -> Vec<f64> {
        linear
            .weight
            .val()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap()
    }

    /// `d sum(tail_i(f)) / d f` for the points `a` (after `l1`) and `b` (after `l2`).
    fn feature_gradients(&self) -> [Vec<f64>; 2] {
        // Linear weights are `[in, out]`: `d sum(f W) / d f = W 1`.
        let w3 = Self::host(&self.l3);
        let c_b: Vec<f64> = w3.chunks(3).map(|row| row.iter().sum()).collect();
        let w2 = Self::host(&self.l2);
        let c_a: Vec<f64> = w2
            .chunks(F)
            .map(|row| row.iter().zip(&c_b).map(|(w, c)| w * c).sum())
            .collect();
        [c_a, c_b]
    }
}

impl SplitModel for Chain {
    type Input = Tensor<2>;
    type Output = Tensor<2>;
    fn model_name(&self) -> String {
        "chain".into()
    }
    fn split_points(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l3.forward(self.l2.forward(self.l1.forward(x)))
    }
    fn forward_to(&self, x: Tensor<2>, p: &SplitPoint) -> Tensor<4> {
        let b = x.dims()[0];
        let f = self.l1.forward(x);
        let f = if p.index == 0 { f } else { self.l2.forward(f) };
        f.reshape([b, 2, 2, 2])
    }
    fn forward_from(&self, f: Tensor<4>, p: &SplitPoint) -> Tensor<2> {
        let b = f.dims()[0];
        let f = f.reshape([b, F]);
        let f = if p.index == 0 { self.l2.forward(f) } else { f };
        self.l3.forward(f)
    }
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn plane_projection_is_sum_project() {
    // sum = 1.3, mu = 0.1 (main_learnable.py L369-378).
    let mut w = [0.2, 0.3, 0.8];
    project_plane(&mut w);
    close(&w, &[0.1, 0.2, 0.7], 1e-12);
    // It keeps no sign: a weight can leave [0, 1].
    let mut w = [1.5, 0.0, 0.0];
    project_plane(&mut w);
    close(&w, &[1.3333333333333333, -1.0 / 6.0, -1.0 / 6.0], 1e-12);
}

#[test]
fn simplex_projection_hand_cases() {
    let cases: [([f64; 3], [f64; 3]); 4] = [
        ([0.5, 0.5, 0.5], [1.0 / 3.0; 3]),
        ([2.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
        // Sorted 0.6, 0.5, -0.3: the threshold is (0.6 + 0.5 - 1) / 2 = 0.05.
        ([0.6, -0.3, 0.5], [0.55, 0.0, 0.45]),
        ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]),
    ];
    for (mut w, want) in cases {
        project_simplex(&mut w);
        close(&w, &want, 1e-12);
    }
}

proptest! {
    /// The projection is `max(v - theta, 0)` for one `theta` with the result summing to one:
    /// the KKT conditions of `min |w - v|^2` on the simplex, which characterise it.
    #[test]
    fn simplex_projection_is_feasible_and_optimal(v in prop::collection::vec(-3.0f64..3.0, 1..12)) {
        let mut w = v.clone();
        project_simplex(&mut w);
        prop_assert!(w.iter().all(|&x| x >= 0.0));
        prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let theta = v.iter().zip(&w).find(|(_, w)| **w > 0.0).map(|(v, w)| v - w).unwrap();
        for (vi, wi) in v.iter().zip(&w) {
            if *wi > 0.0 {
                prop_assert!((vi - wi - theta).abs() < 1e-9);
            } else {
                prop_assert!(*vi <= theta + 1e-9);
            }
        }
        let mut again = w.clone();
        project_simplex(&mut again);
        prop_assert!(again.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn plane_projection_lands_on_the_plane(v in prop::collection::vec(-3.0f64..3.0, 1..12)) {
        let mut w = v.clone();
        project_plane(&mut w);
        prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // The same shift for every weight: the orthogonal projection onto the plane.
        let shift = v[0] - w[0];
        prop_assert!(v.iter().zip(&w).all(|(v, w)| (v - w - shift).abs() < 1e-9));
    }
}

#[test]
fn sgd_with_momentum_is_pytorchs() {
    let config = LearnableConfig {
        splits: vec!["a".into(), "b".into()],
        lr: 0.5,
        projection: WeightProjection::Plane,
        ..LearnableConfig::default()
    };
    let mut w = PointWeights {
        values: vec![0.5, 0.5],
        velocity: None,
    };
    // Step 1: buf = g = (0.2, -0.2); w = (0.4, 0.6), on the plane already.
    w.step(&[0.2, -0.2], &config);
    close(&w.values, &[0.4, 0.6], 1e-12);
    // Step 2: buf = 0.9 (0.2, -0.2) + (0.1, 0.3) = (0.28, 0.12); w = (0.26, 0.54), sum 0.8,
    // shifted by -0.1 each.
    w.step(&[0.1, 0.3], &config);
    close(w.velocity.as_ref().unwrap(), &[0.28, 0.12], 1e-12);
    close(&w.values, &[0.36, 0.64], 1e-12);
}

/// One step of the variant, checked against the hand derivation: each point's loss is
/// `sum(tail_i(f_i)) + w_i B K gamma |c_i|_1`, so `dL/dw_i = B K gamma |c_i|_1 / (2 P) + l1 sign(w_i)`.
#[test]
fn weights_get_the_hand_derived_gradient_and_move_feasibly() {
    let dev = device().autodiff();
    let model = materialize(Chain::new(&dev));
    let attacker = attack_copy(&model, AttackBatchNorm::Train);
    let x = Tensor::<2>::from_floats([[0.1, -0.2, 0.3], [1.0, 0.5, -1.0]], &dev);
    let points: Vec<SplitPoint> = ["a", "b"]
        .iter()
        .map(|n| model.split_point(n).unwrap())
        .collect();
    for projection in [WeightProjection::Plane, WeightProjection::Simplex] {
        let config = LearnableConfig {
            splits: vec!["a".into(), "b".into()],
            init_weight: Some(0.3),
            l1_coef: 0.5,
            lr: 0.1,
            projection,
            ..LearnableConfig::default()
        };
        config.validate().unwrap();
        let mut weights = config.initial_weights();
        let leaf = weights.leaf(&dev);
        let out = learnable_objective(&model, &attacker, x.clone(), &points, &leaf, &config, |o| {
            o.clone().sum()
        });
        let (b, k, gamma, p) = (2.0, 3.0, 1.0 / 255.0, 2.0);
        let grad_w: Vec<f64> = model
            .feature_gradients()
            .iter()
            .map(|c| b * k * gamma * c.iter().map(|v| v.abs()).sum::<f64>() / (2.0 * p) + 0.5)
            .collect();
        // The loss: (clean + mean of the points) / 2 + l1 |w|.
        let clean: f64 = model.forward(x.clone()).sum().into_scalar::<f32>() as f64;
        let gains: Vec<f64> = grad_w.iter().map(|g| (g - 0.5) * 2.0 * p * 0.3).collect();
        let want_loss = (clean + (2.0 * clean + gains[0] + gains[1]) / p) / 2.0 + 0.5 * 0.6;
        let loss = out.loss.clone().into_scalar::<f32>() as f64;
        assert!(
            (loss - want_loss).abs() < 1e-4 * (1.0 + want_loss.abs()),
            "{loss} {want_loss}"
        );

        let grads = out.loss.backward();
        let got: Vec<f64> = leaf
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        close(&got, &grad_w, 1e-4);

        weights.step_from(&leaf, &grads, &config);
        let mut want: Vec<f64> = grad_w.iter().map(|g| 0.3 - 0.1 * g).collect();
        projection.apply(&mut want);
        close(&weights.values, &want, 1e-5);
        assert!(
            weights.values.iter().all(|&w| (w - 0.3).abs() > 1e-3),
            "the weights move"
        );
        assert!((weights.values.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        if projection == WeightProjection::Simplex {
            assert!(weights.values.iter().all(|&w| w >= 0.0));
        }
    }
}

#[test]
fn invalid_settings_are_named() {
    let mut c = LearnableConfig {
        splits: vec![],
        ..LearnableConfig::default()
    };
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("at least one")
    );
    c.splits = vec!["a".into(), "a".into()];
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("each point once")
    );
    c.splits = vec!["a".into()];
    c.lr = -1.0;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("learnable.lr = -1"), "{e}");
    LearnableConfig::default().validate().unwrap();
    assert_eq!(
        LearnableConfig::default().initial_weights().values,
        vec![1.0 / 9.0; 9]
    );
}

#[test]
fn reads_from_toml_with_release_defaults() {
    let c: LearnableConfig =
        toml::from_str("splits = [\"stem\", \"layer2.2\"]\nprojection = \"simplex\"\n").unwrap();
    assert_eq!(c.splits, ["stem", "layer2.2"]);
    assert_eq!(c.projection, WeightProjection::Simplex);
    assert_eq!((c.pgd.steps, c.pgd.step_size), (3, 1.0));
    assert_eq!((c.lr, c.momentum, c.l1_coef), (0.01, 0.9, 1.0));
    let e = toml::from_str::<LearnableConfig>("projecton = \"plane\"").unwrap_err();
    assert!(e.to_string().contains("projecton"), "{e}");
}
