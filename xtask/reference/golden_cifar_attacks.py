"""Golden fixture for the attack variants and the augmentation pieces, on the weights of
golden_cifar.py's fixture (read back from it, so both describe the same network):

- the feature after layer2 of a batch of 2 (train-mode batch norm, as the release attacks), and
  after K = 1, 3, 5 sign steps of gamma = 0.5/255, K = 3 of 1.5/255, and K = 5, gamma = 1.5/255 with the
  L-inf projection to eps = 2/255 (random start is not deterministic across frameworks, so it is
  checked by afan-core's own tests instead);
- the 5 strength points clean -> adversarial (K = 3, gamma = 0.5/255);
- moment exchange of the clean feature with the adversarial one's statistics, positional
  (channels per position, the release) and per-channel batch statistics (over N, H, W).

Writes tests/fixtures/cifar_resnet20_attacks.safetensors (read by tests/golden_cifar.rs):

    .venv/bin/python xtask/reference/golden_cifar_attacks.py
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from cifar_resnet import CifarResNet, moments

here = os.path.dirname(__file__)
fixtures = os.path.join(here, "..", "..", "tests", "fixtures")
base = load_file(os.path.join(fixtures, "cifar_resnet20_afan.safetensors"))
model = CifarResNet(n=3, classes=10).double()
state = {k[len("model."):]: v.double() for k, v in base.items() if k.startswith("model.")}
model.load_state_dict({**model.state_dict(), **state})
model.train()

x, y = base["x"][:2].double(), base["y"][:2].long()


def head(x):
    return model.layer2(model.head(x))


def tail(f):
    f = model.layer3(f)
    return model.fc(F.adaptive_avg_pool2d(f, 1).flatten(1))


out = {"x": x, "y": y.double()}
with torch.no_grad():
    feat = head(x)
out["feature_layer2"] = feat


def pgd(k, gamma, eps=None):
    f, first = feat.clone(), None
    for i in range(k):
        f.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(tail(f), y), f)
        first = g if first is None else first
        f = (f + gamma / 255 * g.sign()).detach()
        if eps is not None:
            f = feat + (f - feat).clamp(-eps / 255, eps / 255)
    return f, first


# Train-mode batch norm uses batch statistics, so every case starts from the same gradient: one
# copy of it tells the test where a sign is ill-defined.
for k, gamma, eps in [(1, 0.5, None), (3, 0.5, None), (5, 0.5, None), (3, 1.5, None),
                      (5, 1.5, 2.0)]:
    name = f"pgd_k{k}_g{gamma}" + ("_linf2" if eps else "")
    out[name], out["pgd_grad0"] = pgd(k, gamma, eps)

adv = out["pgd_k3_g0.5"]
for i in range(1, 4):  # points 0 and 4 are the clean and the adversarial feature
    out[f"strength_{i}"] = torch.lerp(feat, adv, i / 4)
ma, sa = moments(feat)
mb, sb = moments(adv)
out["exchange_positional"] = (feat - ma) / sa * sb + mb
dims = (0, 2, 3)
bm = lambda f: (f.mean(dim=dims, keepdim=True),
                (f.var(dim=dims, keepdim=True, unbiased=True) + 1e-5).sqrt())
(ma, sa), (mb, sb) = bm(feat), bm(adv)
out["exchange_batch"] = (feat - ma) / sa * sb + mb

path = os.path.join(fixtures, "cifar_resnet20_attacks.safetensors")
save_file({k: v.float().contiguous() for k, v in out.items()}, path,
          metadata={"generator": "xtask/reference/golden_cifar_attacks.py", "torch": torch.__version__})
print(path, os.path.getsize(path), "bytes")
