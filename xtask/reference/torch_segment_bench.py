"""PyTorch reference timing for `cargo xtask bench --task segment`: the training steps that
`afan bench --task segment` times (DeepLabV3+, output stride 16, 21 classes, random data at
`--size` x `--size`, batch `--batch`; MobileNetV2 and ResNet-50 backbones, baseline and A-FAN),
built from torchvision parts and timed the same way (median seconds after warm-up), printed as
JSON rows `{"backbone", "method", "step_s", "samples"}`.

The model, as afan's `DeepLabConfig` (the release's VainF/DeepLabV3Plus-Pytorch layout):
- backbones: torchvision `resnet50(replace_stride_with_dilation=[False, False, True])` (low-level
  feature `layer1`, deep `layer4`), or torchvision `mobilenet_v2().features[:18]` with the
  release's output-stride-16 dilation (`features.14` stride 1, the depthwise convs of
  `features.15..17` dilated 2; low-level `features.3`, deep `features.17`);
- head: torchvision's `ASPP` (1x1, rates 6/12/18, image pooling, 1x1 projection; dropout set to the
  release's 0.1 instead of torchvision's 0.5), the low-level feature projected to 48 channels,
  the ASPP output upsampled to it (`align_corners=False`) and concatenated after it, a 3x3 conv to
  256 channels, a 1x1 classifier with bias; logits at stride 4, upsampled to the input for
  `cross_entropy(ignore_index=255)`;
- SGD momentum 0.9, weight decay 1e-4, lr 0.01 for the head and 0.001 for the backbone.

Steps:
- baseline: one forward and backward;
- afan: the step `afan bench --task segment` runs through the engine's task loss
  (`afan_train::segmentation::SegmentationTask::loss` -> `afan_models::segmentation_afan_objective`,
  crates/afan-models/src/deeplab/afan.rs) at the release's VOC preset (`SegmentationAfanConfig::voc`,
  `Segmentation/main_aug_final.py` L160-229), the backbone (`se`) point after stage 3 (`layer3`;
  MobileNetV2 `features.13`) and the decoder (`sd`) point at the ASPP output. Batch norm uses batch
  statistics in every pass (`attack_bn = train`, the release's `model.train()`). The passes, in
  afan's order:
  1. one shared head pass (afan's `SharedHead`, standing for the release's se head pass, sd head
     pass and the clean pass's head): stage 1 (the low-level feature, kept live), stages 2-3 (the
     se feature), their running-statistics updates replayed twice (the release's two other passes
     through them), stage 4 and ASPP without its dropout, then two dropout masks drawn from that
     output: one for the sd feature, one for the clean pass;
  2. the se attack: FGSM of 0.01/255 on the detached se feature through stage 4, ASPP and the
     decoder with the low-level feature detached, `torch.autograd.grad` w.r.t. the feature only;
  3. the sd attack: FGSM of 0.4/255 on the detached sd feature through the decoder, the same way;
  4. the clean pass's tail: the stage-4/ASPP running updates replayed once (the release's clean
     pass moves them again), the decoder on the clean ASPP output and the live low-level feature
     (L0);
  5. the two se strength points (3 points: the half-way and the adversarial feature, both with
     the moments exchanged over channels at each position, mask `11`), built from the detached
     feature, each through stage 4, ASPP and the decoder with the live low-level feature (L1, L2);
  6. the sd point: the adversarial ASPP output through the decoder with the live low-level
     feature (Lsd);
  7. one backward of `0.7 L0 + 0.1 L1 + 0.1 L2 + 0.1 Lsd`, then the SGD step.

Where it differs from afan (none of it changes the work of a step by more than a little):
- the running-statistics replays: afan records each layer's batch statistics and re-applies the
  momentum update; here each layer's move is taken from a copy of its running statistics before
  the pass (`new - (1 - m) old`) and re-applied, a few channel-sized ops per layer either way;
- afan also reads back the per-sample norms of each attack's perturbation and the four point
  losses for its log (a few reductions and scalars); this script does not;
- the attack passes run on the trained model here (the release's way: parameters still require
  gradients, `torch.autograd.grad` computes only the feature's), on afan's attack copy, whose
  parameters take no gradient, there.

`--check` runs both backbones' afan step against the release's seven passes restated here
(`release_losses`), dropout off: the four losses, every gradient and every running statistic
agree to float rounding (1e-4 of each tensor's largest value; the replays stand for the
release's extra passes).

Usage: python torch_segment_bench.py [--size 129] [--batch 2] [--iters 5] [--warmup 2] [--json]
       [--threads N] [--backbones mobilenet_v2,resnet50] [--check] (other `afan bench` flags are
       ignored).
"""
import argparse, copy, json, statistics
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision
from torchvision.models.segmentation.deeplabv3 import ASPP
from bench_timing import timed
from cifar_resnet import moments


def conv_bn_relu(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class DeepLabV3Plus(nn.Module):
    """afan's `DeepLabV3Plus` with its four backbone stages (stage 1 includes the stem and ends at
    the low-level feature; afan's split points `layer1`..`layer4`, MobileNetV2 `features.3`,
    `.6`, `.13`, `.17`)."""

    def __init__(self, backbone, classes=21):
        super().__init__()
        if backbone == "resnet50":
            r = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
            stages = [nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1), r.layer2,
                      r.layer3, r.layer4]
            deep, low = 2048, 256
        else:
            f = torchvision.models.mobilenet_v2().features
            for i, d in ((14, 1), (15, 2), (16, 2), (17, 2)):
                dw = f[i].conv[1][0]
                dw.stride, dw.dilation, dw.padding = (1, 1), (d, d), (d, d)
            stages = [f[:4], f[4:7], f[7:14], f[14:18]]
            deep, low = 320, 24
        self.backbone = nn.ModuleList(stages)
        self.aspp = ASPP(deep, [6, 12, 18], 256)
        self.aspp.project[3].p = 0.1
        self.project = conv_bn_relu(low, 48, 1)
        self.fuse = conv_bn_relu(304, 256, 3)
        self.classifier = nn.Conv2d(256, classes, 1)

    def aspp_undropped(self, deep):
        a = self.aspp
        return a.project[:3](torch.cat([conv(deep) for conv in a.convs], 1))

    def dropout(self, a):
        return self.aspp.project[3](a)

    def decoder_input(self, aspp, low):
        a = F.interpolate(aspp, size=low.shape[2:], mode="bilinear", align_corners=False)
        return torch.cat([self.project(low), a], 1)

    def classify(self, d):
        return self.classifier(self.fuse(d))

    def stages(self, x, first, last=4):
        for s in self.backbone[first - 1:last]:
            x = s(x)
        return x

    def forward(self, x):
        low = self.stages(x, 1, 1)
        return self.classify(self.decoder_input(self.aspp(self.stages(low, 2)), low))

    def from_se(self, f, low, se):
        """The tail from the backbone point after stage `se` (afan's `forward_from_parts`)."""
        return self.classify(self.decoder_input(self.aspp(self.stages(f, se + 1)), low))

    def from_sd(self, f, low):
        """The tail from the ASPP output."""
        return self.classify(self.decoder_input(f, low))


def batch_norms(*modules):
    return [m for mod in modules for m in mod.modules() if isinstance(m, nn.BatchNorm2d)]


class RunningUpdates:
    """afan's `record_running_updates` / `RunningUpdates::replay` for `layers`: what the pass
    between `__init__` and `done` moved each running statistic by, re-applied by `replay`."""

    def __init__(self, layers):
        self.layers = layers
        self.before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in layers]

    @torch.no_grad()
    def done(self):
        self.moves = [(bn.running_mean - (1 - bn.momentum) * m0, bn.running_var - (1 - bn.momentum) * v0)
                      for bn, (m0, v0) in zip(self.layers, self.before)]
        del self.before
        return self

    @torch.no_grad()
    def replay(self):
        # Through `.data`: batch norm's backward keeps the running statistics among its saved
        # tensors (unused in training mode), and an in-place op on them would fail its version
        # check; the passes' own updates happen inside batch norm's kernel the same way.
        for bn, (dm, dv) in zip(self.layers, self.moves):
            bn.running_mean.data.mul_(1 - bn.momentum).add_(dm)
            bn.running_var.data.mul_(1 - bn.momentum).add_(dv)
            bn.num_batches_tracked.data.add_(1)


def loss_of(logits, y):
    logits = F.interpolate(logits, size=y.shape[1:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, y, ignore_index=255)


def fgsm(loss_fn, feature, step):
    """One sign step of `step` on the detached `feature` that raises `loss_fn`, the gradient
    taken w.r.t. the feature only (afan's `feature_pgd`, `FeaturePgdConfig::fgsm`)."""
    f = feature.detach().requires_grad_(True)
    g, = torch.autograd.grad(loss_fn(f), f)
    return f.detach() + step * g.sign()


# `SegmentationAfanConfig::voc()`: FGSM of 0.01/255 at stage 3, three strength points with mask
# `11`, FGSM of 0.4/255 at the ASPP output, `0.7 L0 + 0.1 L1 + 0.1 L2 + 0.1 Lsd`.
SE_STAGE, SE_STEP, SD_STEP = 3, 0.01 / 255, 0.4 / 255


def afan_losses(m, x, y, se=SE_STAGE):
    """L0, L1, L2, Lsd of afan's step, its passes in afan's order (the docstring's 1-6)."""
    # 1. The shared head pass (afan's `SharedHead::run`).
    to_se = RunningUpdates(batch_norms(*m.backbone[:se]))
    low = m.stages(x, 1, 1)
    feature_se = m.stages(low, 2, se)
    to_se = to_se.done()
    to_se.replay()
    to_se.replay()
    clean_updates = RunningUpdates(batch_norms(*m.backbone[se:], m.aspp))
    undropped = m.aspp_undropped(m.stages(feature_se, se + 1))
    clean_updates = clean_updates.done()
    feature_sd = m.dropout(undropped)
    clean_aspp = m.dropout(undropped)
    # tail_only: the points are built from the detached features.
    base_se, base_sd = feature_se.detach(), feature_sd.detach()
    # 2-3. The se and sd attacks (the low-level feature detached).
    attack_low = low.detach()
    adv_se = fgsm(lambda f: loss_of(m.from_se(f, attack_low, se), y), base_se, SE_STEP)
    adv_sd = fgsm(lambda f: loss_of(m.from_sd(f, attack_low), y), base_sd, SD_STEP)
    # 4. The clean pass's tail.
    clean_updates.replay()
    losses = [loss_of(m.from_sd(clean_aspp, low), y)]
    # 5. The strength points 1 and 2 of 3, both moment-exchanged (mask `11`).
    ma, sa = moments(base_se)
    for t in (0.5, 1.0):
        point = base_se + (adv_se - base_se) * t
        mb, sb = moments(point)
        point = (base_se - ma) / sa * sb + mb
        losses.append(loss_of(m.from_se(point, low, se), y))
    # 6. The sd point.
    losses.append(loss_of(m.from_sd(adv_sd, low), y))
    return losses


def release_losses(m, x, y, se=SE_STAGE):
    """The same losses from the release's seven passes (main_aug_final.py L160-225), for `--check`."""
    low = m.stages(x, 1, 1)
    feature_se = m.stages(low, 2, se).detach()
    low_sd = m.stages(x, 1, 1)
    feature_sd = m.aspp(m.stages(low_sd, 2)).detach()
    adv_se = fgsm(lambda f: loss_of(m.from_se(f, low, se), y), feature_se, SE_STEP)
    adv_sd = fgsm(lambda f: loss_of(m.from_sd(f, low_sd), y), feature_sd, SD_STEP)
    losses = [loss_of(m(x), y)]
    ma, sa = moments(feature_se)
    for t in (0.5, 1.0):
        mb, sb = moments(torch.lerp(feature_se, adv_se, t))
        losses.append(loss_of(m.from_se((feature_se - ma) / sa * sb + mb, low, se), y))
    losses.append(loss_of(m.from_sd(adv_sd, low_sd), y))
    return losses


def combine(losses):
    return 0.7 * losses[0] + 0.1 * losses[1] + 0.1 * losses[2] + 0.1 * losses[3]


def check(backbone, size=33):
    """afan's passes against the release's, dropout off (its masks are the only randomness):
    the same losses, gradients and running statistics up to float rounding."""
    torch.manual_seed(0)
    a = DeepLabV3Plus(backbone)
    a.aspp.project[3].p = 0.0
    a.train()
    r = copy.deepcopy(a)
    x, y = torch.randn(2, 3, size, size), torch.randint(0, 21, (2, size, size))
    la, lr = afan_losses(a, x, y), release_losses(r, x, y)
    combine(la).backward()
    combine(lr).backward()
    # Largest difference over the largest value, per tensor (values under 0.01 count as 0.01).
    rel = lambda u, v: ((u - v).abs().max() / v.abs().max().clamp_min(1e-2)).item()
    out = {"backbone": backbone, "losses": max(rel(u, v) for u, v in zip(la, lr)),
           "gradients": max(rel(p.grad, q.grad) for p, q in zip(a.parameters(), r.parameters())),
           "running_stats": max(rel(u, v) for u, v in zip(a.buffers(), r.buffers())
                                if u.dtype.is_floating_point),
           "counts_equal": all(bool((u == v).all()) for u, v in zip(a.buffers(), r.buffers())
                               if not u.dtype.is_floating_point)}
    print(json.dumps(out))
    assert max(out["losses"], out["gradients"], out["running_stats"]) < 1e-4 and out["counts_equal"], out


def bench(backbone, args):
    torch.manual_seed(0)
    m = DeepLabV3Plus(backbone)
    m.train()
    in_backbone = {id(p) for p in m.backbone.parameters()}
    head = [p for p in m.parameters() if id(p) not in in_backbone]
    opt = torch.optim.SGD([{"params": m.backbone.parameters(), "lr": 0.001},
                           {"params": head, "lr": 0.01}], lr=0.01, momentum=0.9, weight_decay=1e-4)
    s, b = args.size, args.batch
    x = torch.randn(b, 3, s, s)
    y = torch.randint(0, 21, (b, s, s))

    def baseline():
        opt.zero_grad(set_to_none=True)
        loss_of(m(x), y).backward()
        opt.step()

    def afan():
        opt.zero_grad(set_to_none=True)
        # 7. One backward of the weighted losses, then the SGD step.
        combine(afan_losses(m, x, y)).backward()
        opt.step()

    rows = []
    for name, fn in (("baseline", baseline), ("afan", afan)):
        if name not in args.methods.split(","):
            continue
        samples, cpu = timed(fn, args.warmup, args.iters)
        rows.append({"backbone": backbone, "method": name, "step_s": statistics.median(samples),
                     "samples": samples, "cpu_s": statistics.median(cpu)})
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=129)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--backbones", default="mobilenet_v2,resnet50")
    p.add_argument("--json", action="store_true")
    # One row at a time: `cargo xtask bench --rounds` interleaves it with afan's same row.
    p.add_argument("--methods", default="baseline,afan")
    p.add_argument("--check", action="store_true",
                   help="compare afan's passes with the release's (see `check`) and exit")
    args, _ = p.parse_known_args()
    if set(args.methods.split(",")) - {"baseline", "afan"}:
        p.error(f"--methods {args.methods!r}: expected baseline and/or afan, comma-separated")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check:
        for bb in args.backbones.split(","):
            check(bb)
        return
    rows = [r for bb in args.backbones.split(",") for r in bench(bb, args)]
    meta = {"framework": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
            "batch": args.batch, "size": args.size}
    if args.json:
        print(json.dumps({"pytorch": meta, "rows": rows}))
    else:
        print(f"PyTorch {torch.__version__}, {meta['threads']} threads, DeepLabV3+ OS16, batch "
              f"{args.batch} at {args.size}x{args.size}, median of {args.iters} after {args.warmup} warm-up")
        for r in rows:
            print(f"{r['backbone']:<14} {r['method']:<9} {r['step_s']:>10.3f}")


if __name__ == "__main__":
    main()
