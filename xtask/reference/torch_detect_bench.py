"""PyTorch reference timing for `cargo xtask bench --task detect`: the training steps that
`afan bench --task detect` times (Faster R-CNN C4, ResNet-18, VOC preset, batch 1, one random
image at `--det-image HxW`), built from torchvision parts and timed the same way (median seconds
after warm-up), printed as JSON rows `{"method", "step_s", "samples"}`.

The model, as afan's `FasterRcnnConfig::voc()` with `backbone = "resnet18"`:
- torchvision `resnet18(norm_layer=FrozenBatchNorm2d)`: stem .. `layer3` (stride 16) are the
  backbone, `layer4` + global average pool the RoI head; the stem and `layer1` take no gradient.
- RPN: 3x3 conv 256 -> 512 + ReLU, 1x1 convs to 9 logits and 36 deltas (scales 128/256/512,
  ratios 0.5/1/2), 256 anchors sampled per image (half foreground at most, IoU 0.7 / 0.3),
  12000 / 2000 proposals before / after NMS 0.7, smooth-L1 beta 1/9 over the sampled count.
- RoIs: 128 per image, a quarter foreground at most (IoU 0.5), ground truth added to the
  proposals, `torchvision.ops.roi_align` 7x7 at 1/16, adaptive sampling, `aligned=False`;
  class logits and class-specific deltas (box weights 10/10/5/5), `fastrcnn_loss`.
- SGD lr 0.008, momentum 0.9, weight decay 1e-4.

Where it differs from afan (none of it changes the work of a step by more than a little):
- objects: three random boxes of 64-400 pixels drawn by torch's generator (afan draws its own
  with Rust's; both fixed for the run);
- anchors: torchvision's `AnchorGenerator` (centred, rounded shapes) instead of the release's
  py-faster-rcnn anchors, and cross-boundary anchors are kept (afan drops them, as the release);
- proposal filtering: torchvision's `filter_proposals` (top-k per level, batched NMS, small boxes
  dropped) where afan sorts, decodes, clips and runs NMS on the host.

Steps (the plan -- anchor sample, proposals, RoI sample -- is drawn by the first tail pass and kept
for every pass of the step, as afan's `StepPlan` does):
- baseline: one forward and backward of the whole detector;
- afan: afan's A-FAN step as it is now (`detection_afan_objective`): the feature after `layer2`,
  one FGSM pass on it (`torch.autograd.grad` w.r.t. the feature only: no parameter gradients),
  five strength points with the moments exchanged at the two strongest (`0011`), each through
  `layer3`, the RPN, RoIAlign and the RoI head; then FGSM on the pooled RoI features of the clean
  point (feature gradient only) and the RoI-point loss; one backward of
  `(L0 + .. + L4) * 0.7 / 3 + L5 * 0.1`.

Usage: python torch_detect_bench.py [--det-image 600x800] [--batch 1] [--iters 5] [--warmup 2]
       [--json] [--threads N] (other `afan bench` flags are accepted and ignored).
"""
import argparse, json, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision
from torchvision.ops import FrozenBatchNorm2d, roi_align, boxes as box_ops
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, concat_box_prediction_layers
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.image_list import ImageList
from cifar_resnet import moments


class RpnHead(nn.Module):
    """The release's C4 RPN head: a 512-channel 3x3 conv (torchvision's `RPNHead` keeps the
    input width), N(0, 0.01) weights, zero biases."""

    def __init__(self, cin, mid, anchors):
        super().__init__()
        self.conv = nn.Conv2d(cin, mid, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid, anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, 4 * anchors, 1)
        for m in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, feats):
        x = F.relu(self.conv(feats[0]))
        return [self.cls_logits(x)], [self.bbox_pred(x)]


class Detector(nn.Module):
    def __init__(self, classes=20):
        super().__init__()
        r = torchvision.models.resnet18(norm_layer=FrozenBatchNorm2d)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        for p in list(self.stem.parameters()) + list(self.layer1.parameters()):
            p.requires_grad_(False)
        anchors = AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
        self.rpn = RegionProposalNetwork(
            anchors, RpnHead(256, 512, 9), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
            batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n=dict(training=12000, testing=6000),
            post_nms_top_n=dict(training=2000, testing=300), nms_thresh=0.7)
        self.cls_score = nn.Linear(512, classes + 1)
        self.bbox_pred = nn.Linear(512, 4 * (classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        # Only its sampler, matcher and box coder are used (the plan below).
        self.roi_heads = RoIHeads(None, None, None, 0.5, 0.5, 128, 0.25, (10.0, 10.0, 5.0, 5.0),
                                  0.05, 0.3, 100)

    def to_layer2(self, x):
        return self.layer2(self.layer1(self.stem(x)))


class Plan:
    """What the first tail pass of a step draws and every later pass reuses (afan's StepPlan)."""
    rpn = None
    rois = None


def rpn_and_pool(m, images, feat, targets, plan):
    rpn = m.rpn
    objectness, deltas = rpn.head([feat])
    if plan.rpn is None:
        anchors = rpn.anchor_generator(images, [feat])
        labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
        reg = rpn.box_coder.encode(matched, anchors)
        pos, neg = rpn.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos, 0))[0]
        neg = torch.where(torch.cat(neg, 0))[0]
        plan.rpn = (anchors, torch.cat(labels, 0), torch.cat(reg, 0), pos, torch.cat([pos, neg]))
    anchors, labels, reg, pos, sampled = plan.rpn
    per_level = [o[0].numel() for o in objectness]
    obj, dlt = concat_box_prediction_layers(objectness, deltas)
    if plan.rois is None:
        proposals = rpn.box_coder.decode(dlt.detach(), anchors).view(len(anchors), -1, 4)
        boxes, _ = rpn.filter_proposals(proposals, obj.detach(), images.image_sizes, per_level)
        props, _, roi_labels, roi_reg = m.roi_heads.select_training_samples(boxes, targets)
        plan.rois = (props, torch.cat(roi_labels, 0), torch.cat(roi_reg, 0))
    obj = obj.flatten()
    obj_loss = F.binary_cross_entropy_with_logits(obj[sampled], labels[sampled])
    box_loss = F.smooth_l1_loss(dlt[pos], reg[pos], beta=1 / 9, reduction="sum") / sampled.numel()
    pooled = roi_align(feat, plan.rois[0], (7, 7), 1 / 16, 0, False)
    return obj_loss + box_loss, pooled


def head_loss(m, pooled, plan):
    x = m.layer4(pooled).mean((2, 3))
    _, labels, reg = plan.rois
    cls, box = fastrcnn_loss(m.cls_score(x), m.bbox_pred(x), [labels], [reg])
    return cls + box


def tail_loss(m, images, f2, targets, plan, keep=None):
    rpn_loss, pooled = rpn_and_pool(m, images, m.layer3(f2), targets, plan)
    if keep is not None:
        keep.append(pooled)
    return rpn_loss + head_loss(m, pooled, plan)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--det-image", default="600x800")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args, _ = p.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.det_image.split("x"))
    torch.manual_seed(0)
    m = Detector()
    m.train()
    opt = torch.optim.SGD([q for q in m.parameters() if q.requires_grad], lr=0.008,
                          momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, h, w)
    images = ImageList(x, [(h, w)] * args.batch)
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(args.batch):
        side = lambda lim: float(torch.randint(64, min(400, lim) + 1, (1,), generator=g))
        bs = []
        for _ in range(3):
            bw, bh = side(w), side(h)
            x0 = float(torch.rand(1, generator=g)) * (w - bw)
            y0 = float(torch.rand(1, generator=g)) * (h - bh)
            bs.append([x0, y0, x0 + bw, y0 + bh])
        targets.append({"boxes": torch.tensor(bs), "labels": torch.randint(1, 21, (3,), generator=g)})
    t_boxes = [t["boxes"] for t in targets]
    # `select_training_samples` wants the targets as the RoI head sees them.
    roi_targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]

    def baseline():
        opt.zero_grad(set_to_none=True)
        plan = Plan()
        tail_loss(m, images, m.to_layer2(x), roi_targets, plan).backward()
        opt.step()

    fgsm, fgsm_roi, weights = 1.0 / 255, 0.1 / 255, [0.7 / 3] * 5

    def afan():
        opt.zero_grad(set_to_none=True)
        plan = Plan()
        feat = m.to_layer2(x)
        f = feat.detach().requires_grad_(True)
        g, = torch.autograd.grad(tail_loss(m, images, f, roi_targets, plan), f)
        delta = fgsm * g.sign()
        losses, keep = [], []
        ma, sa = moments(feat)
        for i in range(5):
            point = feat + delta * (i / 4)
            if i >= 3:  # mask 0011 over points 1..4: the two strongest
                mb, sb = moments(point)
                point = (feat - ma) / sa * sb + mb
            losses.append(tail_loss(m, images, point, roi_targets, plan, keep if i == 0 else None))
        pooled = keep[0]
        p_ = pooled.detach().requires_grad_(True)
        g, = torch.autograd.grad(head_loss(m, p_, plan), p_)
        l5 = head_loss(m, pooled + fgsm_roi * g.sign(), plan)
        loss = sum(wi * li for wi, li in zip(weights, losses)) + 0.1 * l5
        loss.backward()
        opt.step()

    def timed(fn):
        for _ in range(args.warmup):
            fn()
        out = []
        for _ in range(args.iters):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    rows = []
    for name, fn in (("baseline", baseline), ("afan", afan)):
        s = timed(fn)
        rows.append({"method": name, "step_s": statistics.median(s), "samples": s})
    meta = {"framework": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
            "batch": args.batch, "image": [h, w]}
    if args.json:
        print(json.dumps({"pytorch": meta, "rows": rows}))
    else:
        print(f"PyTorch {torch.__version__}, {meta['threads']} threads, Faster R-CNN C4 R-18, "
              f"batch {args.batch} at {h}x{w}, median of {args.iters} after {args.warmup} warm-up")
        for r in rows:
            print(f"{r['method']:<9} {r['step_s']:>10.3f} {r['step_s'] / rows[0]['step_s']:>9.2f}")


if __name__ == "__main__":
    main()
