"""PyTorch's time for the ops of `cargo run --release -p afan-models --example detseg_kernels_bench`
(same shapes, same families, median of ITERS after a warm-up): the convolutions' forward, input
gradient and weight gradient (`aten.convolution_backward` with one output mask each, what autograd
runs), torchvision's `roi_align` forward and backward, and `F.interpolate` forward and backward.

Usage: python torch_kernels_bench.py [FAMILY] [ITERS] [--threads N]
"""
import sys, time
import torch, torch.nn.functional as F
from torchvision.ops import roi_align

FAMILIES = {
    "detect-backbone": [
        ("conv1 7x7 s2 3->64 (fwd only)", (1, 3, 64, (600, 800), 7, 2, 3, 1, 1)),
        ("layer1 64 @150x200 (x4, fwd only)", (1, 64, 64, (150, 200), 3, 1, 1, 1, 1)),
        ("layer2.0.conv1 64->128 s2", (1, 64, 128, (150, 200), 3, 2, 1, 1, 1)),
        ("layer2.0.downsample 1x1 s2", (1, 64, 128, (150, 200), 1, 2, 0, 1, 1)),
        ("layer2 128 @75x100 (x3)", (1, 128, 128, (75, 100), 3, 1, 1, 1, 1)),
        ("layer3.0.conv1 128->256 s2", (1, 128, 256, (75, 100), 3, 2, 1, 1, 1)),
        ("layer3.0.downsample 1x1 s2", (1, 128, 256, (75, 100), 1, 2, 0, 1, 1)),
        ("layer3 256 @38x50 (x3)", (1, 256, 256, (38, 50), 3, 1, 1, 1, 1)),
    ],
    "roi-head": [
        ("layer4.0.conv1 256->512 7x7 s2", (128, 256, 512, (7, 7), 3, 2, 1, 1, 1)),
        ("layer4.0.downsample 1x1 s2", (128, 256, 512, (7, 7), 1, 2, 0, 1, 1)),
        ("layer4.*.conv 512->512 4x4 (x3)", (128, 512, 512, (4, 4), 3, 1, 1, 1, 1)),
        ("rpn.conv 256->512 38x50", (1, 256, 512, (38, 50), 3, 1, 1, 1, 1)),
    ],
    "depthwise": [
        ("features.1 32 @65", (2, 32, 32, (65, 65), 3, 1, 1, 1, 32)),
        ("features.2 96 @65 s2", (2, 96, 96, (65, 65), 3, 2, 1, 1, 96)),
        ("features.3 144 @33", (2, 144, 144, (33, 33), 3, 1, 1, 1, 144)),
        ("features.7 192 @17 s2", (2, 192, 192, (17, 17), 3, 2, 1, 1, 192)),
        ("features.8 384 @9", (2, 384, 384, (9, 9), 3, 1, 1, 1, 384)),
        ("features.15 960 @9 d2", (2, 960, 960, (9, 9), 3, 1, 2, 2, 960)),
    ],
    "dilated": [
        ("aspp rate 6 2048->256 @9", (2, 2048, 256, (9, 9), 3, 1, 6, 6, 1)),
        ("aspp rate 12 2048->256 @9", (2, 2048, 256, (9, 9), 3, 1, 12, 12, 1)),
        ("aspp rate 18 2048->256 @9", (2, 2048, 256, (9, 9), 3, 1, 18, 18, 1)),
        ("layer4.*.conv2 512 @9 d2", (2, 512, 512, (9, 9), 3, 1, 2, 2, 1)),
        ("decoder fuse 304->256 @33", (2, 304, 256, (33, 33), 3, 1, 1, 1, 1)),
    ],
}


def timed(iters, f):
    f()
    t = []
    for _ in range(iters):
        s = time.perf_counter()
        f()
        t.append(time.perf_counter() - s)
    t.sort()
    return t[len(t) // 2]


def ms(t):
    return f"{t * 1e3:>9.2f}ms"


def convs(name, iters):
    print(f"{name:<34} | {'torch fwd':>11} {'torch dx':>11} {'torch dw':>11}")
    for label, (n, c, k, (h, w), ks, s, p, d, g) in FAMILIES[name]:
        x = torch.randn(n, c, h, w)
        wt = torch.randn(k, c // g, ks, ks)
        y = F.conv2d(x, wt, None, s, p, d, g)
        dy = torch.randn_like(y)
        bwd = lambda mask: torch.ops.aten.convolution_backward(
            dy, x, wt, None, [s, s], [p, p], [d, d], False, [0, 0], g, mask)
        fwd = timed(iters, lambda: F.conv2d(x, wt, None, s, p, d, g))
        dx = timed(iters, lambda: bwd([True, False, False]))
        dw = timed(iters, lambda: bwd([False, True, False]))
        print(f"{label:<34} | {ms(fwd)} {ms(dx)} {ms(dw)}")
    print()


def regions():
    g = torch.Generator().manual_seed(7)
    r = torch.rand(128, 4, generator=g)
    bw, bh = 64 + r[:, 0] * 448, 64 + r[:, 1] * 448
    x0, y0 = r[:, 2] * (800 - bw), r[:, 3] * (600 - bh)
    return torch.stack([torch.zeros(128), x0, y0, x0 + bw, y0 + bh], 1)


def roi(iters):
    print(f"{'RoIAlign 128 regions, 256x38x50':<34} | {'torch fwd':>11} {'torch bwd':>11}")
    x = torch.randn(1, 256, 38, 50, requires_grad=True)
    rois = regions()
    for size in (7, 14):
        y = roi_align(x, rois, (size, size), 1 / 16, 0, False)
        dy = torch.randn_like(y)
        fwd = timed(iters, lambda: roi_align(x.detach(), rois, (size, size), 1 / 16, 0, False))
        bwd = timed(iters, lambda: torch.autograd.grad(
            roi_align(x, rois, (size, size), 1 / 16, 0, False), x, dy))
        print(f"{f'{size}x{size}, adaptive sampling':<34} | {ms(fwd)} {ms(bwd - fwd)}")
    print()


def upsample(iters):
    print(f"{'bilinear, align_corners=False':<34} | {'torch fwd':>11} {'torch bwd':>11}")
    for label, planes, i, o in [("ASPP out 256ch 9->33, b2", 512, 9, 33),
                                ("logits 21ch 33->129, b2", 42, 33, 129),
                                ("logits 21ch 129->513, b2", 42, 129, 513)]:
        x = torch.randn(1, planes, i, i, requires_grad=True)
        y = F.interpolate(x, size=(o, o), mode="bilinear", align_corners=False)
        dy = torch.randn_like(y)
        fwd = timed(iters, lambda: F.interpolate(x.detach(), size=(o, o), mode="bilinear",
                                                  align_corners=False))
        bwd = timed(iters, lambda: torch.autograd.grad(
            F.interpolate(x, size=(o, o), mode="bilinear", align_corners=False), x, dy))
        print(f"{label:<34} | {ms(fwd)} {ms(bwd - fwd)}")
    print()


def main():
    args = [a for a in sys.argv[1:]]
    if "--threads" in args:
        i = args.index("--threads")
        torch.set_num_threads(int(args[i + 1]))
        del args[i:i + 2]
    family = args[0] if args else "all"
    iters = int(args[1]) if len(args) > 1 else 5
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in FAMILIES:
        if family in ("all", name):
            convs(name, iters)
    if family in ("all", "roi-align"):
        roi(iters)
    if family in ("all", "upsample"):
        upsample(iters)


if __name__ == "__main__":
    main()
