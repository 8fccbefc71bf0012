//! One training step of the detector as an [`afan_core::SplitModel`]: inputs, losses, and the
//! per-step plan of the sampled anchors, proposals and RoIs.
//!
//! # When samples are drawn ([`Sampling`])
//!
//! The release re-runs the whole detector for every pass of a step (`Detection/model.py`
//! L56-75 for each `model.train().forward` of `train_aug_final.py`), so every pass draws its own
//! anchor sample, its own proposals (from its own, perturbed, RPN output) and its own RoI
//! sample; only the RoI point reuses the sample of the pass that pooled its features
//! (`roi_head` / `roi_tail`, model.py L115-150). That is [`Sampling::PerPass`].
//!
//! [`Sampling::PerStep`] (afan before issue 17) lets the first tail pass of a step decide the
//! RPN sample, the proposals and the RoI sample, and every later pass of the step reuse them:
//! the strength points then differ only in the feature, so their losses are comparable; the
//! attack's gradient is that of one fixed loss (re-sampling makes it a different random
//! function per pass); and proposals, NMS and sampling run once per step instead of once per
//! pass. The perturbation still reaches the RPN losses and the pooled RoI features.
//!
//! A plan can also be handed fixed proposals ([`StepPlan::with_proposals`]): the golden tests
//! feed the release's re-statement and afan the same ones, so that the only randomness left is
//! the balanced sampling, which takes every candidate when there are fewer than its caps.

use super::boxes::BBox;
use super::faster_rcnn::{FasterRcnn, host, training_bounds};
use super::roi_align::Roi;
use super::roi_heads::RoiSample;
use super::rpn::RpnTargets;
use afan_core::{SplitModel, SplitPoint};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};

/// When a step's passes draw their anchor samples, proposals and RoI samples (see the module
/// documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every pass draws its own (the release).
    #[default]
    PerPass,
    /// The first pass draws, the others reuse (afan before issue 17).
    PerStep,
}

/// The ground truth of one image: boxes `[x1, y1, x2, y2]` in pixels and classes `1..=K`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DetectionTarget {
    /// Object boxes.
    pub boxes: Vec<BBox>,
    /// Their classes (1-based; 0 is background).
    pub labels: Vec<usize>,
}

/// A batch for training: padded images, their valid sizes and their objects.
#[derive(Clone, Debug)]
pub struct DetectionInput {
    /// `[B, 3, H, W]`, normalized, each image top-left aligned and zero-padded.
    pub images: Tensor<4>,
    /// `[height, width]` of each image's valid part.
    pub sizes: Vec<[usize; 2]>,
    /// The objects of each image.
    pub targets: Vec<DetectionTarget>,
}

/// Input that does not describe a batch.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DetectionInputError {
    /// Sizes or targets do not have one entry per image.
    #[error("detection batch has {images} images but {sizes} sizes and {targets} target lists")]
    Count {
        /// Images in the tensor.
        images: usize,
        /// Sizes given.
        sizes: usize,
        /// Target lists given.
        targets: usize,
    },
    /// An image size larger than the padded tensor.
    #[error("image {image}: size {size:?} exceeds the padded batch {padded:?}")]
    Size {
        /// Image index.
        image: usize,
        /// Its size.
        size: [usize; 2],
        /// The tensor's `[H, W]`.
        padded: [usize; 2],
    },
    /// A box or label out of range.
    #[error("image {image}, object {object}: {problem}")]
    Object {
        /// Image index.
        image: usize,
        /// Object index.
        object: usize,
        /// What is wrong.
        problem: String,
    },
}

impl DetectionInput {
    /// Checks that the parts describe one batch of `num_classes`-class objects.
    pub fn new(
        images: Tensor<4>,
        sizes: Vec<[usize; 2]>,
        targets: Vec<DetectionTarget>,
        num_classes: usize,
    ) -> Result<Self, DetectionInputError> {
        let [b, _, h, w] = images.dims();
        if sizes.len() != b || targets.len() != b {
            return Err(DetectionInputError::Count {
                images: b,
                sizes: sizes.len(),
                targets: targets.len(),
            });
        }
        for (image, (size, target)) in sizes.iter().zip(&targets).enumerate() {
            if size[0] > h || size[1] > w || size[0] == 0 || size[1] == 0 {
                return Err(DetectionInputError::Size {
                    image,
                    size: *size,
                    padded: [h, w],
                });
            }
            let object = |object, problem: String| DetectionInputError::Object {
                image,
                object,
                problem,
            };
            if target.boxes.len() != target.labels.len() {
                let problem = format!(
                    "{} boxes but {} labels",
                    target.boxes.len(),
                    target.labels.len()
                );
                return Err(object(0, problem));
            }
            for (k, (b, &l)) in target.boxes.iter().zip(&target.labels).enumerate() {
                if !b.iter().all(|v| v.is_finite()) || b[2] <= b[0] || b[3] <= b[1] {
                    return Err(object(k, format!("box {b:?} needs x2 > x1 and y2 > y1")));
                }
                if !(1..=num_classes).contains(&l) {
                    return Err(object(k, format!("label {l} outside 1..={num_classes}")));
                }
            }
        }
        Ok(Self {
            images,
            sizes,
            targets,
        })
    }
}

/// The four training losses. At the RoI split points (`roi`, `roi_pooled`) the RPN terms are
/// zero: a perturbation of the RoI features cannot change them, and the release's attack at
/// that point uses the RoI terms only (`--only_roi_sd`); its L5 adds the RPN terms of the clean
/// pass (see [`super::afan`]).
#[derive(Clone, Debug)]
pub struct DetectionLosses {
    /// RPN objectness (cross-entropy).
    pub rpn_objectness: Tensor<1>,
    /// RPN box regression (smooth L1).
    pub rpn_box: Tensor<1>,
    /// RoI classification (cross-entropy).
    pub roi_class: Tensor<1>,
    /// RoI class-specific box regression (smooth L1).
    pub roi_box: Tensor<1>,
}

impl DetectionLosses {
    /// The sum of the four terms: the training loss, and the attack loss of every point
    /// (`attack_algo.py` L21-27, `compute_loss`).
    pub fn total(&self) -> Tensor<1> {
        self.rpn_objectness.clone()
            + self.rpn_box.clone()
            + self.roi_class.clone()
            + self.roi_box.clone()
    }

    /// The four values, in field order.
    pub fn values(&self) -> [f32; 4] {
        [
            &self.rpn_objectness,
            &self.rpn_box,
            &self.roi_class,
            &self.roi_box,
        ]
        .map(|t| host(t.clone())[0])
    }
}

/// What one pass through the RPN and the RoI pooling produced, kept for the RoI point.
#[derive(Clone, Debug)]
pub struct RoiPass {
    /// The pass's RPN objectness and box losses (live: they train the backbone and the RPN).
    pub rpn_losses: [Tensor<1>; 2],
    /// The pooled regions `[R, C, P, P]` (the `roi_pooled` point's feature).
    pub pooled: Tensor<4>,
    /// The regions' vectors after `layer4` and the head pool, `[R, C, 1, 1]` (the `roi`
    /// point's feature).
    pub vector: Tensor<4>,
    /// The regions sampled, with their targets.
    pub samples: Vec<RoiSample>,
}

#[derive(Debug)]
struct PlanState {
    rng: ChaCha8Rng,
    sampling: Sampling,
    sizes: Vec<[usize; 2]>,
    padded: [usize; 2],
    targets: Vec<DetectionTarget>,
    fixed_proposals: Option<Vec<Vec<BBox>>>,
    rpn: Option<Vec<RpnTargets>>,
    rois: Option<Vec<RoiSample>>,
    roi_point: Option<Vec<RoiSample>>,
    recorded: Option<RoiPass>,
}

/// What one training step samples, shared by the training and the attack passes of the step.
/// Make a new one per step.
#[derive(Debug)]
pub struct StepPlan(RefCell<PlanState>);

impl StepPlan {
    /// An empty plan whose random draws (anchor and RoI sampling) come from `seed`, drawn once
    /// per step ([`Sampling::PerStep`]; [`Self::set_sampling`] changes it).
    pub fn new(seed: u64) -> Self {
        Self(RefCell::new(PlanState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            sampling: Sampling::PerStep,
            sizes: Vec::new(),
            padded: [0, 0],
            targets: Vec::new(),
            fixed_proposals: None,
            rpn: None,
            rois: None,
            roi_point: None,
            recorded: None,
        }))
    }

    /// A plan whose proposals are `proposals` (per image) instead of the RPN's, in every pass.
    pub fn with_proposals(seed: u64, proposals: Vec<Vec<BBox>>) -> Self {
        let plan = Self::new(seed);
        plan.0.borrow_mut().fixed_proposals = Some(proposals);
        plan
    }

    /// When the passes of the step draw.
    pub fn set_sampling(&self, sampling: Sampling) {
        self.0.borrow_mut().sampling = sampling;
    }

    /// The latest RoI sample drawn.
    pub fn roi_samples(&self) -> Option<Vec<RoiSample>> {
        self.0.borrow().rois.clone()
    }

    /// The latest anchor sample drawn.
    pub fn rpn_targets(&self) -> Option<Vec<RpnTargets>> {
        self.0.borrow().rpn.clone()
    }

    fn remember(&self, input: &DetectionInput) {
        let mut s = self.0.borrow_mut();
        if s.sizes.is_empty() {
            let [_, _, h, w] = input.images.dims();
            s.sizes = input.sizes.clone();
            s.padded = [h, w];
            s.targets = input.targets.clone();
        }
    }
}

/// A detector bound to one step's plan. Bind the trained model and its attack copy
/// ([`afan_core::attack_copy`]) to the same plan and hand both to the A-FAN objective.
///
/// Split points: `layer1`, `layer2`, `layer3` (backbone stages, `[B, C, H, W]`), `roi_pooled`
/// (the pooled regions before `layer4`, `[R, C, P, P]`; afan's RoI point before issue 17) and
/// `roi` (each region's vector after `layer4` and its max-pool, `[R, C, 1, 1]`: the release's
/// RoI point, `model.py` L298-335). Input is a [`DetectionInput`], output the
/// [`DetectionLosses`]; `forward_from(forward_to(x, p), p)` equals `forward(x)` exactly for the
/// backbone points and in the RoI terms for the RoI points (whose RPN terms are zero, see
/// [`DetectionLosses`]), the tail using the sample of the pass that made the feature.
pub struct DetectorStep<'a> {
    /// The network.
    pub model: &'a FasterRcnn,
    /// The step's shared samples.
    pub plan: &'a StepPlan,
    /// Keep what the next tail pass pools (see [`Self::record_next_roi`]).
    record_roi: Cell<bool>,
}

const ROI_POOLED: usize = 3;
const ROI: usize = 4;

impl<'a> DetectorStep<'a> {
    /// Binds `model` to `plan`.
    pub fn new(model: &'a FasterRcnn, plan: &'a StepPlan) -> Self {
        Self {
            model,
            plan,
            record_roi: Cell::new(false),
        }
    }

    /// Keeps the RPN losses, pooled regions, RoI vectors and RoI sample of this step's next pass
    /// through the RPN, for [`Self::take_recorded_roi`]. A-FAN's clean pass computes exactly
    /// what its RoI point starts from; keeping them saves a second pass (forward and backward)
    /// of the backbone, the RPN, the pooling and `layer4`.
    pub fn record_next_roi(&self) {
        self.record_roi.set(true);
    }

    /// What [`Self::record_next_roi`] or the last `forward_to` a RoI point kept, once.
    pub fn take_recorded_roi(&self) -> Option<RoiPass> {
        self.plan.0.borrow_mut().recorded.take()
    }

    /// RPN losses and pooled regions from the `layer3` feature, drawing the plan if needed.
    fn rpn_and_pool(&self, feature: Tensor<4>) -> ([Tensor<1>; 2], Tensor<4>, Vec<RoiSample>) {
        let cfg = &self.model.config;
        let [_, _, h, w] = feature.dims();
        let (logits, deltas) = self.model.rpn.forward(feature.clone());
        let mut guard = self.plan.0.borrow_mut();
        let s = &mut *guard;
        let redraw = s.sampling == Sampling::PerPass;
        let bounds = training_bounds(cfg.rpn.bounds, &s.sizes, s.padded);
        if s.rpn.is_none() || redraw {
            let anchors = cfg.rpn.anchors_for([h, w], s.padded);
            let gts: Vec<&[BBox]> = s.targets.iter().map(|t| t.boxes.as_slice()).collect();
            s.rpn = Some(cfg.rpn.targets(&anchors, &bounds, &gts, &mut s.rng));
        }
        if s.rois.is_none() || redraw {
            let proposals = match &s.fixed_proposals {
                Some(p) => p.clone(),
                None => self.model.proposals_from(
                    &host(logits.clone()),
                    logits.dims()[2],
                    &host(deltas.clone()),
                    [[h, w], s.padded],
                    &bounds,
                    true,
                ),
            };
            let gts: Vec<&[BBox]> = s.targets.iter().map(|t| t.boxes.as_slice()).collect();
            let labels: Vec<&[usize]> = s.targets.iter().map(|t| t.labels.as_slice()).collect();
            s.rois = Some(cfg.roi.sample(&proposals, &gts, &labels, &mut s.rng));
        }
        let (objectness, rpn_box) =
            cfg.rpn
                .losses(logits, deltas, s.rpn.as_ref().expect("drawn above"));
        let samples = s.rois.clone().expect("drawn above");
        drop(guard);
        let rois: Vec<Roi> = samples
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.boxes.iter().map(move |b| (i, *b)))
            .collect();
        let pooled = cfg.roi.pool_regions(feature, &rois);
        ([objectness, rpn_box], pooled, samples)
    }

    fn vector(&self, pooled: Tensor<4>) -> Tensor<4> {
        let head_pool = self.model.config.roi.head_pool;
        self.model.roi_head.vector(pooled, head_pool)
    }

    fn roi_losses(&self, vector: Tensor<4>, samples: &[RoiSample]) -> (Tensor<1>, Tensor<1>) {
        let (logits, deltas) = self.model.roi_head.predict(vector);
        self.model.config.roi.losses(logits, deltas, samples)
    }

    /// The losses of the RoI point's tail: RoI terms from `vector`, zero RPN terms.
    fn roi_point_losses(&self, vector: Tensor<4>) -> DetectionLosses {
        let samples = self
            .plan
            .0
            .borrow()
            .roi_point
            .clone()
            .expect("the RoI point's feature comes from forward_to");
        let (roi_class, roi_box) = self.roi_losses(vector, &samples);
        let zero = Tensor::<1>::zeros([1], &roi_class.device());
        DetectionLosses {
            rpn_objectness: zero.clone(),
            rpn_box: zero,
            roi_class,
            roi_box,
        }
    }
}

impl SplitModel for DetectorStep<'_> {
    type Input = DetectionInput;
    type Output = DetectionLosses;

    fn model_name(&self) -> String {
        format!("faster_rcnn_c4_{}", self.model.config.backbone)
    }

    fn split_points(&self) -> Vec<String> {
        ["layer1", "layer2", "layer3", "roi_pooled", "roi"]
            .map(String::from)
            .to_vec()
    }

    fn forward(&self, input: DetectionInput) -> DetectionLosses {
        let first = SplitPoint {
            index: 0,
            name: "layer1".into(),
        };
        self.forward_from(self.forward_to(input, &first), &first)
    }

    fn forward_to(&self, input: DetectionInput, point: &SplitPoint) -> Tensor<4> {
        self.plan.remember(&input);
        if point.index < ROI_POOLED {
            return self.model.features_to(input.images, point.index + 1);
        }
        let feature = self.model.features_to(input.images, 3);
        let (rpn_losses, pooled, samples) = self.rpn_and_pool(feature);
        let vector = self.vector(pooled.clone());
        let out = if point.index == ROI {
            vector.clone()
        } else {
            pooled.clone()
        };
        let mut s = self.plan.0.borrow_mut();
        s.roi_point = Some(samples.clone());
        s.recorded = Some(RoiPass {
            rpn_losses,
            pooled,
            vector,
            samples,
        });
        out
    }

    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> DetectionLosses {
        match point.index {
            ROI => return self.roi_point_losses(feature),
            ROI_POOLED => return self.roi_point_losses(self.vector(feature)),
            _ => {}
        }
        let layer3 = self.model.features_from(feature, point.index + 1);
        let (rpn_losses, pooled, samples) = self.rpn_and_pool(layer3);
        let vector = self.vector(pooled.clone());
        let (roi_class, roi_box) = self.roi_losses(vector.clone(), &samples);
        let [rpn_objectness, rpn_box] = rpn_losses.clone();
        if self.record_roi.replace(false) {
            let mut s = self.plan.0.borrow_mut();
            s.roi_point = Some(samples.clone());
            s.recorded = Some(RoiPass {
                rpn_losses,
                pooled,
                vector,
                samples,
            });
        }
        DetectionLosses {
            rpn_objectness,
            rpn_box,
            roi_class,
            roi_box,
        }
    }
}
