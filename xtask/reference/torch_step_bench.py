"""PyTorch reference timing for `cargo xtask bench`: the same clean and A-FAN training steps as
`afan bench` (CIFAR ResNet-20 option A, SGD momentum 0.9 wd 5e-4, A-FAN after layer1 with K PGD
steps on the feature, 2 strength points, positional moment exchange on point 1, weights 0.5/0.5),
median seconds after warm-up, printed as one JSON object.

Usage: python torch_step_bench.py [--batch 128] [--pgd-steps 3] [--iters 5] [--warmup 2] [--json]
[--threads N] (other `afan bench` flags are accepted and ignored).
"""
import argparse, json, statistics
import torch, torch.nn.functional as F
from bench_timing import timed
from cifar_resnet import CifarResNet, moments



def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--pgd-steps", type=int, default=3)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args, _ = p.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CifarResNet()
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

    c, _ = timed(clean, args.warmup, args.iters)
    a, _ = timed(afan, args.warmup, args.iters)
    model.eval()
    with torch.no_grad():
        i, _ = timed(lambda: model(x), args.warmup, args.iters)
    r = {"framework": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
         "batch": args.batch, "pgd_steps": args.pgd_steps,
         "clean_step_s": statistics.median(c), "afan_step_s": statistics.median(a),
         "inference_s": statistics.median(i)}
    print(json.dumps(r) if args.json else r)


if __name__ == "__main__":
    main()
