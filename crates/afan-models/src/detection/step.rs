//! One training step of the detector as an [`afan_core::SplitModel`]: inputs, losses, and the
//! per-step plan that keeps the sampled anchors, proposals and RoIs fixed across passes.
//!
//! # Why the plan is fixed within a step
//!
//! The release re-runs the whole detector for every perturbed pass, so each pass draws its own
//! proposals and RoI sample from its own (perturbed) RPN output. Here the first tail pass of a
//! step — the clean feature, since [`afan_core::afan_objective`]'s attack starts from it when
//! random start is off, as in the release — decides the RPN sample, the proposals and the RoI
//! sample, and every later pass of the step (attack steps, strength points, the RoI point)
//! reuses them. Three reasons: the strength points then differ only in the feature, so their
//! losses are comparable and the moment exchange is the only other change; the attack's
//! gradient is that of one fixed loss (re-sampling makes it a different random function per
//! pass); and proposals, NMS and sampling run once per step instead of once per pass. The
//! perturbation still reaches the RPN losses (its outputs are recomputed from the perturbed
//! feature) and the pooled RoI features (pooled from the perturbed `layer3`).

use super::boxes::BBox;
use super::faster_rcnn::{FasterRcnn, host};
use super::roi_align::Roi;
use super::roi_heads::RoiSample;
use super::rpn::RpnTargets;
use afan_core::{SplitModel, SplitPoint};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::{Cell, RefCell};

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

/// The four training losses. At the `roi` split point the RPN terms are zero: a perturbation of
/// the pooled RoI features cannot change them, and the release's RoI-point loss is the RoI
/// terms only.
#[derive(Clone, Debug)]
pub struct DetectionLosses {
    /// RPN objectness (binary cross-entropy).
    pub rpn_objectness: Tensor<1>,
    /// RPN box regression (smooth L1).
    pub rpn_box: Tensor<1>,
    /// RoI classification (cross-entropy).
    pub roi_class: Tensor<1>,
    /// RoI class-specific box regression (smooth L1).
    pub roi_box: Tensor<1>,
}

impl DetectionLosses {
    /// The sum of the four terms: the training loss, and the attack loss of every point.
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

#[derive(Debug)]
struct PlanState {
    rng: ChaCha8Rng,
    sizes: Vec<[usize; 2]>,
    targets: Vec<DetectionTarget>,
    rpn: Option<Vec<RpnTargets>>,
    rois: Option<Vec<RoiSample>>,
    recorded_roi: Option<Tensor<4>>,
}

/// What one training step samples, shared by the training and the attack passes of the step.
/// Make a new one per step.
#[derive(Debug)]
pub struct StepPlan(RefCell<PlanState>);

impl StepPlan {
    /// An empty plan whose random draws (anchor and RoI sampling) come from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(RefCell::new(PlanState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            sizes: Vec::new(),
            targets: Vec::new(),
            rpn: None,
            rois: None,
            recorded_roi: None,
        }))
    }

    /// The sampled RoIs, once a tail pass has drawn them.
    pub fn roi_samples(&self) -> Option<Vec<RoiSample>> {
        self.0.borrow().rois.clone()
    }

    /// The sampled anchors, once a tail pass has drawn them.
    pub fn rpn_targets(&self) -> Option<Vec<RpnTargets>> {
        self.0.borrow().rpn.clone()
    }

    fn remember(&self, input: &DetectionInput) {
        let mut s = self.0.borrow_mut();
        if s.sizes.is_empty() {
            s.sizes = input.sizes.clone();
            s.targets = input.targets.clone();
        }
    }
}

/// A detector bound to one step's plan. Bind the trained model and its attack copy
/// ([`afan_core::attack_copy`]) to the same plan and hand both to the A-FAN objective.
///
/// Split points: `layer1`, `layer2`, `layer3` (backbone stages, `[B, C, H, W]`) and `roi` (the
/// pooled regions before `layer4`, `[R, C, P, P]`). Input is a [`DetectionInput`], output the
/// [`DetectionLosses`]; `forward_from(forward_to(x, p), p)` equals `forward(x)` exactly for the
/// backbone points and in the RoI terms for `roi` (whose RPN terms are zero, see
/// [`DetectionLosses`]).
pub struct DetectorStep<'a> {
    /// The network.
    pub model: &'a FasterRcnn,
    /// The step's shared samples.
    pub plan: &'a StepPlan,
    /// Keep the pooled regions of the next tail pass (see [`Self::record_next_roi`]).
    record_roi: Cell<bool>,
}

const ROI: usize = 3;

impl<'a> DetectorStep<'a> {
    /// Binds `model` to `plan`.
    pub fn new(model: &'a FasterRcnn, plan: &'a StepPlan) -> Self {
        Self {
            model,
            plan,
            record_roi: Cell::new(false),
        }
    }

    /// Keeps the pooled RoI features of this step's next pass through the RPN and pooling, for
    /// [`Self::take_recorded_roi`]. A-FAN's clean strength point computes exactly the features
    /// its RoI point starts from; keeping them saves a second pass (forward and backward) of the
    /// backbone, the RPN and the pooling, with the same values and gradients.
    pub fn record_next_roi(&self) {
        self.record_roi.set(true);
    }

    /// The pooled features kept by [`Self::record_next_roi`], once.
    pub fn take_recorded_roi(&self) -> Option<Tensor<4>> {
        self.plan.0.borrow_mut().recorded_roi.take()
    }

    /// RPN losses and pooled regions from the `layer3` feature, drawing the plan if needed.
    fn rpn_and_pool(&self, feature: Tensor<4>) -> (Tensor<1>, Tensor<1>, Tensor<4>) {
        let cfg = &self.model.config;
        let [_, _, h, w] = feature.dims();
        let (logits, deltas) = self.model.rpn.forward(feature.clone());
        let mut guard = self.plan.0.borrow_mut();
        let s = &mut *guard;
        if s.rpn.is_none() {
            let anchors = cfg.rpn.anchors.grid_anchors([h, w]);
            let rpn = s
                .sizes
                .iter()
                .zip(&s.targets)
                .map(|(size, t)| cfg.rpn.targets(&anchors, *size, &t.boxes, &mut s.rng))
                .collect();
            s.rpn = Some(rpn);
        }
        if s.rois.is_none() {
            let proposals = self.model.proposals_from(
                &host(logits.clone()),
                &host(deltas.clone()),
                [h, w],
                &s.sizes,
                true,
            );
            let rois = proposals
                .iter()
                .zip(&s.targets)
                .map(|(p, t)| cfg.roi.sample(p, &t.boxes, &t.labels, &mut s.rng))
                .collect();
            s.rois = Some(rois);
        }
        let (objectness, rpn_box) =
            cfg.rpn
                .losses(logits, deltas, s.rpn.as_ref().expect("drawn above"));
        let rois: Vec<Roi> = s
            .rois
            .as_ref()
            .expect("drawn above")
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.boxes.iter().map(move |b| (i, *b)))
            .collect();
        let pooled = super::roi_heads::pool_f32(&cfg.roi.pool, feature, &rois);
        if self.record_roi.replace(false) {
            s.recorded_roi = Some(pooled.clone());
        }
        drop(guard);
        (objectness, rpn_box, pooled)
    }

    fn head_losses(&self, pooled: Tensor<4>) -> (Tensor<1>, Tensor<1>) {
        let (logits, deltas) = self.model.roi_head.forward(pooled);
        let s = self.plan.0.borrow();
        let samples = s
            .rois
            .as_ref()
            .expect("the RoI point is reached through forward_to");
        self.model.config.roi.losses(logits, deltas, samples)
    }
}

impl SplitModel for DetectorStep<'_> {
    type Input = DetectionInput;
    type Output = DetectionLosses;

    fn model_name(&self) -> String {
        format!("faster_rcnn_c4_{}", self.model.config.backbone)
    }

    fn split_points(&self) -> Vec<String> {
        ["layer1", "layer2", "layer3", "roi"]
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
        if point.index == ROI {
            let feature = self.model.features_to(input.images, 3);
            self.rpn_and_pool(feature).2
        } else {
            self.model.features_to(input.images, point.index + 1)
        }
    }

    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> DetectionLosses {
        if point.index == ROI {
            let (roi_class, roi_box) = self.head_losses(feature);
            let zero = Tensor::<1>::zeros([1], &roi_class.device())
                .cast(burn::tensor::FloatDType::from(roi_class.dtype()));
            return DetectionLosses {
                rpn_objectness: zero.clone(),
                rpn_box: zero,
                roi_class,
                roi_box,
            };
        }
        let layer3 = self.model.features_from(feature, point.index + 1);
        let (rpn_objectness, rpn_box, pooled) = self.rpn_and_pool(layer3);
        let (roi_class, roi_box) = self.head_losses(pooled);
        DetectionLosses {
            rpn_objectness,
            rpn_box,
            roi_class,
            roi_box,
        }
    }
}
