"""PyTorch reference timing for `cargo xtask bench --task detect`: the training steps that
`afan bench --task detect` times (Faster R-CNN C4, ResNet-18, VOC preset, batch 1, one random
image at `--det-image HxW`), built from torchvision parts and timed the same way (median seconds
after warm-up), printed as JSON rows `{"method", "step_s", "samples"}`.

The model, as afan's `FasterRcnnConfig::voc()` with `backbone = "resnet18"` (the release's C4
detector, `afan_train::detection::config::release()`):
- torchvision `resnet18(norm_layer=FrozenBatchNorm2d)`: stem .. `layer3` (stride 16) are the
  backbone, `layer4` the RoI head; the stem and `layer1` take no gradient; every batch norm frozen.
- RPN: 3x3 conv 256 -> 512 + ReLU, 1x1 convs to 2 x 9 objectness logits (background, object;
  softmax cross-entropy, the release's) and 36 deltas (scales 128/256/512, ratios 0.5/1/2);
  anchors reaching outside the image take no part in the sample; 256 anchors sampled per image
  (half foreground at most, IoU 0.7 / 0.3, the best anchor of each object), losses over the
  sampled anchors, smooth-L1 beta 1 summed over the foreground and divided by the sampled count;
  proposals ranked by the object logit, 12000 / 2000 before / after NMS 0.7.
- RoIs: 128 per image among the proposals only (no ground truth added, as the release), a quarter
  foreground at most (IoU 0.5, background below); `torchvision.ops.roi_align` 14x14 at 1/16,
  adaptive sampling, `aligned=False`, then a 2x2 max-pool; `layer4` and a global max-pool to one
  512-vector per region (the release's RoI point); class logits and class-specific deltas (box
  weights 10/10/5/5), cross-entropy plus smooth-L1 (beta 1) over the sampled count.
- the RPN and the predictors keep PyTorch's default initialisation (afan's `head_init = pytorch`);
  SGD lr 0.008, momentum 0.9, weight decay 5e-4 (the release's VOC run).

Where it differs from afan (none of it changes the work of a step by more than a little):
- objects: three random boxes of 64-400 pixels drawn by torch's generator (afan draws its own
  with Rust's; both fixed for the run);
- anchors: torchvision's `AnchorGenerator` (centred, rounded shapes) instead of the release's
  py-faster-rcnn layout (the same 9 per position);
- proposals: torchvision's `filter_proposals` (decode every anchor, top 12000 by the object
  logit, clip, batched NMS, top 2000) where afan sorts the scores on the host and decodes, clips
  and runs NMS there for the 12000 best; afan also copies each pass's RPN output to the host;
- sampling draws from torch's generator, afan's from its own (ChaCha8), so the sampled sets
  differ; their sizes and the work on them do not; afan samples anchors and RoIs over the batch
  and normalises the losses per image, this script per image (the same at the bench's batch 1);
- the attack passes run on the trained model with `torch.autograd.grad` w.r.t. the feature (the
  release's way; no parameter gradient is computed), on afan's attack copy, whose parameters
  take no gradient, there; afan also reads back the perturbation norms and the losses for its
  log (a few scalars).

Steps (every tail pass draws its own anchor sample, proposals from its own RPN output and RoI
sample, as afan's `Sampling::PerPass`, the VOC preset, and the release's separate
`model.train().forward` calls):
- baseline: one forward and backward of the whole detector (one draw);
- afan: afan's A-FAN step (`afan_models::detection_afan_objective` at `DetectionAfanConfig::voc`,
  through `afan_train::detection::objective::detection_loss`, `Detection/train_aug_final.py`
  L78-156), in afan's order:
  1. the clean head pass to `layer2` (stem and `layer1` frozen, `layer2` live);
  2. FGSM of 1/255 on the detached `layer2` feature through `layer3`, the RPN, RoIAlign,
     `layer4` and the predictors, the sum of the four losses, `torch.autograd.grad` w.r.t. the
     feature only (frozen batch norm: no second head pass, the attack starts from the clean
     pass's feature);
  3. the clean pass's tail on the live feature (L0), keeping its RPN losses, RoI vectors and
     RoI sample for the RoI point;
  4. the strength points 1..4 of 5 (a quarter to all of the perturbation) built from the
     detached feature, the moments exchanged (over channels at each position) at the two
     strongest (mask `0011`), each through the tail (L1..L4);
  5. the RoI point: FGSM of 0.1/255 on the clean pass's detached RoI vectors through the two
     predictors with the clean pass's RoI sample (the RoI terms; feature gradient only), then
     the RoI terms at the adversarial vectors plus the clean pass's RPN losses (L5);
  6. one backward of `(L0 + .. + L4) * 0.7 / 3 + L5 * 0.1`, then the SGD step.

Usage: python torch_detect_bench.py [--det-image|--size 600x800] [--batch 1] [--iters 5] [--warmup 2]
       [--json] [--threads N] (other `afan bench` flags are accepted and ignored).
"""
import argparse, json, statistics
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision
from torchvision.ops import FrozenBatchNorm2d, roi_align
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, concat_box_prediction_layers
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.image_list import ImageList
from bench_timing import timed
from cifar_resnet import moments


class RpnHead(nn.Module):
    """The release's C4 RPN head: a 512-channel 3x3 conv (torchvision's `RPNHead` keeps the
    input width), two objectness logits and four deltas per anchor."""

    def __init__(self, cin, mid, anchors):
        super().__init__()
        self.conv = nn.Conv2d(cin, mid, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid, 2 * anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, 4 * anchors, 1)

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
        # Only its anchors, matcher, sampler, box coder and proposal filter are used (`draw`).
        self.rpn = RegionProposalNetwork(
            anchors, RpnHead(256, 512, 9), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
            batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n=dict(training=12000, testing=6000),
            post_nms_top_n=dict(training=2000, testing=300), nms_thresh=0.7)
        self.cls_score = nn.Linear(512, classes + 1)
        self.bbox_pred = nn.Linear(512, 4 * (classes + 1))
        # Only its matcher, sampler and box coder are used (`draw`).
        self.roi_heads = RoIHeads(None, None, None, 0.5, 0.5, 128, 0.25, (10.0, 10.0, 5.0, 5.0),
                                  0.05, 0.3, 100)

    def to_layer2(self, x):
        return self.layer2(self.layer1(self.stem(x)))


def draw(m, images, feat, obj, dlt, targets):
    """One pass's draws (afan's `DetectorStep::rpn_and_pool` under `Sampling::PerPass`): the
    anchor sample among the anchors inside the image, the proposals from this pass's RPN
    output, the RoI sample among them."""
    rpn, rh = m.rpn, m.roi_heads
    anchors = rpn.anchor_generator(images, [feat])
    n = anchors[0].shape[0]
    pos_all, sampled_all, labels_all, reg_all = [], [], [], []
    for i, (a, t, (h, w)) in enumerate(zip(anchors, targets, images.image_sizes)):
        inside = torch.where((a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= w) & (a[:, 3] <= h))[0]
        labels, matched = rpn.assign_targets_to_anchors([a[inside]], [t])
        pos, neg = rpn.fg_bg_sampler(labels)
        pos, neg = torch.where(pos[0])[0], torch.where(neg[0])[0]
        reg_all.append(rpn.box_coder.encode_single(matched[0][pos], a[inside][pos]))
        pos_all.append(i * n + inside[pos])
        sampled_all.append(i * n + inside[torch.cat([pos, neg])])
        labels_all.append(torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]))
    proposals = rpn.box_coder.decode(dlt.detach(), anchors).view(len(anchors), -1, 4)
    # The object logit ranks the proposals (the release's softmax is monotone in it).
    boxes, _ = rpn.filter_proposals(proposals, obj[:, 1].detach(), images.image_sizes, [n])
    gt_boxes = [t["boxes"] for t in targets]
    matched, labels = rh.assign_targets_to_proposals(boxes, gt_boxes, [t["labels"] for t in targets])
    keep = rh.subsample(labels)
    props = [b[k] for b, k in zip(boxes, keep)]
    roi_labels = torch.cat([l[k] for l, k in zip(labels, keep)])
    roi_reg = torch.cat(rh.box_coder.encode([g[mi[k]] for g, mi, k in zip(gt_boxes, matched, keep)], props))
    return ((torch.cat(pos_all), torch.cat(sampled_all), torch.cat(labels_all), torch.cat(reg_all)),
            (props, roi_labels, roi_reg))


def roi_loss(m, vector, rois):
    """The RoI terms from the regions' vectors `[R, 512, 1, 1]`."""
    _, labels, reg = rois
    x = vector.flatten(1)
    cls, box = m.cls_score(x), m.bbox_pred(x).reshape(x.shape[0], -1, 4)
    fg = torch.where(labels > 0)[0]
    box_loss = F.smooth_l1_loss(box[fg, labels[fg]], reg[fg], beta=1.0, reduction="sum")
    return F.cross_entropy(cls, labels) + box_loss / labels.numel()


def tail(m, images, f2, targets):
    """One tail pass from the `layer2` feature, drawing its own samples: the four-term loss, the
    RPN terms, the RoI vectors and the RoI sample."""
    feat = m.layer3(f2)
    objectness, deltas = m.rpn.head([feat])
    obj, dlt = concat_box_prediction_layers(objectness, deltas)
    (pos, sampled, labels, reg), rois = draw(m, images, feat, obj, dlt, targets)
    rpn_loss = (F.cross_entropy(obj[sampled], labels)
                + F.smooth_l1_loss(dlt[pos], reg, beta=1.0, reduction="sum") / sampled.numel())
    pooled = F.max_pool2d(roi_align(feat, rois[0], (14, 14), 1 / 16, 0, False), 2)
    vector = F.adaptive_max_pool2d(m.layer4(pooled), 1)
    return {"loss": rpn_loss + roi_loss(m, vector, rois), "rpn": rpn_loss, "vector": vector,
            "rois": rois}


def main():
    p = argparse.ArgumentParser()
    # `afan bench` takes `--size` and `--det-image` as one flag: so does this script.
    p.add_argument("--det-image", "--size", dest="det_image", default="600x800")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true")
    # One row at a time: `cargo xtask bench --rounds` interleaves it with afan's same row.
    p.add_argument("--methods", default="baseline,afan")
    args, _ = p.parse_known_args()
    if set(args.methods.split(",")) - {"baseline", "afan"}:
        p.error(f"--methods {args.methods!r}: expected baseline and/or afan, comma-separated")
    if args.threads:
        torch.set_num_threads(args.threads)
    h, _, w = args.det_image.partition("x")
    h, w = int(h), int(w or h)
    torch.manual_seed(0)
    m = Detector()
    m.train()
    opt = torch.optim.SGD([q for q in m.parameters() if q.requires_grad], lr=0.008,
                          momentum=0.9, weight_decay=5e-4)
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

    def baseline():
        opt.zero_grad(set_to_none=True)
        tail(m, images, m.to_layer2(x), targets)["loss"].backward()
        opt.step()

    # `DetectionAfanConfig::voc()`: FGSM of 1/255 at `layer2`, 5 strength points, mask `0011`,
    # FGSM of 0.1/255 at the RoI vectors, weights 0.7/3 per point and 0.3/3 for L5.
    fgsm, fgsm_roi, w_point, w_roi = 1.0 / 255, 0.1 / 255, 0.7 / 3, 0.1

    def afan():
        opt.zero_grad(set_to_none=True)
        feat = m.to_layer2(x)
        base = feat.detach()
        f = base.clone().requires_grad_(True)
        g, = torch.autograd.grad(tail(m, images, f, targets)["loss"], f)
        adv = base + fgsm * g.sign()
        clean = tail(m, images, feat, targets)
        losses = [clean["loss"]]
        ma, sa = moments(base)
        for i in range(1, 5):
            point = base + (adv - base) * (i / 4)
            if i >= 3:  # mask 0011 over points 1..4: the two strongest
                mb, sb = moments(point)
                point = (base - ma) / sa * sb + mb
            losses.append(tail(m, images, point, targets)["loss"])
        v = clean["vector"].detach().requires_grad_(True)
        g, = torch.autograd.grad(roi_loss(m, v, clean["rois"]), v)
        l5 = roi_loss(m, v.detach() + fgsm_roi * g.sign(), clean["rois"]) + clean["rpn"]
        loss = w_point * sum(losses) + w_roi * l5
        loss.backward()
        opt.step()

    rows = []
    for name, fn in (("baseline", baseline), ("afan", afan)):
        if name not in args.methods.split(","):
            continue
        s, cpu = timed(fn, args.warmup, args.iters)
        rows.append({"method": name, "step_s": statistics.median(s), "samples": s,
                     "cpu_s": statistics.median(cpu)})
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
