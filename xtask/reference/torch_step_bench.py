"""PyTorch reference timing for `cargo xtask bench`: the same clean and A-FAN training steps as
`afan bench` (CIFAR ResNet-20 option A, SGD momentum 0.9 wd 5e-4, A-FAN after layer1 with K PGD
steps on the feature, 2 strength points, positional moment exchange on point 1, weights 0.5/0.5),
median seconds after warm-up, printed as one JSON object.

Usage: python torch_step_bench.py [--batch 128] [--pgd-steps 3] [--iters 5] [--warmup 2] [--json]
(other `afan bench` flags are accepted and ignored).
"""
import argparse, json, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.stride != 1 or self.pad:
            sc = x[:, :, ::2, ::2]
            sc = F.pad(sc, (0, 0, 0, 0, self.pad // 2, self.pad // 2))
        return F.relu(out + sc)


class ResNet20(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)
        self.register_buffer("mean", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1))

    def head(self, x):
        x = (x - self.mean) / self.std
        return self.layer1(F.relu(self.bn1(self.conv1(x))))

    def tail(self, f):
        f = self.layer3(self.layer2(f))
        return self.fc(F.adaptive_avg_pool2d(f, 1).flatten(1))

    def forward(self, x):
        return self.tail(self.head(x))


def moments(f, eps=1e-5):
    mean = f.mean(dim=1, keepdim=True)
    std = (f.var(dim=1, keepdim=True, unbiased=True) + eps).sqrt()
    return mean, std


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--pgd-steps", type=int, default=3)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args, _ = p.parse_known_args()
    torch.manual_seed(0)
    model = ResNet20()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    step_size = 0.5 / 255  # the release default; no projection

    def clean():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def afan():
        opt.zero_grad(set_to_none=True)
        feat = model.head(x)
        f = feat.detach()
        for _ in range(args.pgd_steps):
            f.requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(model.tail(f), y), f)
            f = (f + step_size * g.sign()).detach()
        adv = feat + (f - feat.detach())
        ma, sa = moments(feat)
        mb, sb = moments(adv)
        mixed = (feat - ma) / sa * sb + mb
        loss = 0.5 * F.cross_entropy(model.tail(feat), y) + 0.5 * F.cross_entropy(model.tail(mixed), y)
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

    c, a = timed(clean), timed(afan)
    model.eval()
    with torch.no_grad():
        i = timed(lambda: model(x))
    r = {"framework": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
         "batch": args.batch, "pgd_steps": args.pgd_steps,
         "clean_step_s": statistics.median(c), "afan_step_s": statistics.median(a),
         "inference_s": statistics.median(i)}
    print(json.dumps(r) if args.json else r)


if __name__ == "__main__":
    main()
