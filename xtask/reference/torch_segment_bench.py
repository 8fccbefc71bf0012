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
- afan: afan's A-FAN step as it is now (`afan-cli/src/segment/objective.rs`): the backbone point
  after `layer2` / `features.6`, handed over as afan's packed feature (the deep feature repeated
  to the stride-4 grid, concatenated in front of the low-level feature); one FGSM pass through
  the tail (`torch.autograd.grad` w.r.t. the feature only); three strength points, the moments
  exchanged at the strongest (mask `01`), each through the tail; a second clean pass of the
  backbone and ASPP to the decoder input (afan's split-model contract gives one cut per pass);
  FGSM at the decoder input through the 3x3 conv and classifier, and its loss; one backward of
  `0.7 L0 + 0.1 L1 + 0.1 L2 + 0.1 Ld`. Batch norm uses batch statistics in every pass (the attack
  passes too, as afan's `attack_bn = train`).

Usage: python torch_segment_bench.py [--size 129] [--batch 2] [--iters 5] [--warmup 2] [--json]
       [--threads N] [--backbones mobilenet_v2,resnet50] (other `afan bench` flags are ignored).
"""
import argparse, json, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision
from torchvision.models.segmentation.deeplabv3 import ASPP
from cifar_resnet import moments


def conv_bn_relu(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class DeepLabV3Plus(nn.Module):
    def __init__(self, backbone, classes=21):
        super().__init__()
        if backbone == "resnet50":
            r = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
            self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
            self.stage2, self.stage34 = r.layer2, nn.Sequential(r.layer3, r.layer4)
            deep, low, self.r2 = 2048, 256, 2
        else:
            f = torchvision.models.mobilenet_v2().features
            for i, d in ((14, 1), (15, 2), (16, 2), (17, 2)):
                dw = f[i].conv[1][0]
                dw.stride, dw.dilation, dw.padding = (1, 1), (d, d), (d, d)
            self.stage1, self.stage2, self.stage34 = f[:4], f[4:7], f[7:18]
            deep, low, self.r2 = 320, 24, 2
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage34])
        self.aspp = ASPP(deep, [6, 12, 18], 256)
        self.aspp.project[3].p = 0.1
        self.project = conv_bn_relu(low, 48, 1)
        self.fuse = conv_bn_relu(304, 256, 3)
        self.classifier = nn.Conv2d(256, classes, 1)

    def decoder_input(self, deep, low):
        a = self.aspp(deep)
        a = F.interpolate(a, size=low.shape[2:], mode="bilinear", align_corners=False)
        return torch.cat([self.project(low), a], 1)

    def classify(self, d):
        return self.classifier(self.fuse(d))

    def forward(self, x):
        low = self.stage1(x)
        return self.classify(self.decoder_input(self.stage34(self.stage2(low)), low))

    # afan's split point after stage 2: one packed tensor.
    def to_point(self, x):
        low = self.stage1(x)
        deep = self.stage2(low)
        self.deep_channels = deep.shape[1]
        r, (h, w) = self.r2, low.shape[2:]
        rep = deep.repeat_interleave(r, 2).repeat_interleave(r, 3)[:, :, :h, :w]
        return torch.cat([rep, low], 1)

    def from_point(self, f):
        c, r = self.deep_channels, self.r2
        deep, low = f[:, :c, ::r, ::r], f[:, c:]
        return self.classify(self.decoder_input(self.stage34(deep), low))

    def to_decoder(self, x):
        low = self.stage1(x)
        return self.decoder_input(self.stage34(self.stage2(low)), low)


def loss_of(logits, y):
    logits = F.interpolate(logits, size=y.shape[1:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, y, ignore_index=255)


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
        feat = m.to_point(x)
        f = feat.detach().requires_grad_(True)
        g, = torch.autograd.grad(loss_of(m.from_point(f), y), f)
        adv = feat.detach() + g.sign() / 255
        losses = []
        for i in range(3):
            point = feat + (adv - feat.detach()) * (i / 2)
            if i == 2:
                ma, sa = moments(feat)
                mb, sb = moments(point)
                point = (feat - ma) / sa * sb + mb
            losses.append(loss_of(m.from_point(point), y))
        d = m.to_decoder(x)
        dd = d.detach().requires_grad_(True)
        g, = torch.autograd.grad(loss_of(m.classify(dd), y), dd)
        ld = loss_of(m.classify(d + 0.1 / 255 * g.sign()), y)
        loss = 0.7 * losses[0] + 0.1 * losses[1] + 0.1 * losses[2] + 0.1 * ld
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
        samples = timed(fn)
        rows.append({"backbone": backbone, "method": name, "step_s": statistics.median(samples),
                     "samples": samples})
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
    args, _ = p.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
