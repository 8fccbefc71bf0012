"""Golden fixture for the A-FAN step on CIFAR ResNet-20, computed by PyTorch.

Writes tests/fixtures/cifar_resnet20_afan.safetensors (read by afan-core's golden test; CI never
runs PyTorch). Regenerate with:

    python3 -m venv .venv && .venv/bin/pip install torch safetensors
    .venv/bin/python xtask/reference/golden_cifar.py

Contents (PyTorch state-dict names, `model.` prefix): the weights and running statistics (randomized,
so batch norm is not the identity), a batch `x`/`y`, and what the release's step computes from them:
eval-mode logits, the feature after layer1, the feature after K=3 sign steps of 0.5/255, the
moment-exchanged adversarial point, the clean/adversarial/combined losses, every parameter's
gradient (`grad.`; `plaingrad.` for the baseline cross-entropy alone), the running statistics after the step (`after.`) and the parameters after one
SGD step (`sgd.`: lr 0.1, momentum 0.9, dampening 0, weight decay 5e-4).
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from cifar_resnet import CifarResNet, moments

# Seed 24: with seeds 20 and 23 a ReLU unit of the tail sits within f32 rounding of zero for
# some sample, so f32 and f64 land on different sides of the kink and a few percent of the
# gradient moves; the functions agree, the comparison is ill-conditioned. Seed 21 has such a unit
# too (the last block's ReLU input at 1.5e-7 in the train-mode forward), which afan's fused batch
# norm (different f32 rounding than Burn's composed ops) lands on the other side of. See
# tests/golden_cifar.rs.
torch.manual_seed(24)
torch.use_deterministic_algorithms(True)
model = CifarResNet(n=3, classes=10).double()
with torch.no_grad():
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()
         if not k.endswith("num_batches_tracked") and k not in ("mean", "std")}

B, K, STEP = 8, 3, 0.5 / 255
x = torch.rand(B, 3, 32, 32, dtype=torch.float64)
y = torch.arange(B) % 10
out = {"x": x, "y": y.double()}

model.eval()
with torch.no_grad():
    out["logits_eval"] = model(x)

model.train()
# The plain (baseline) training loss's gradients, on a copy so the A-FAN step below starts from
# the same running statistics.
import copy
plain = copy.deepcopy(model)
F.cross_entropy(plain(x), y).backward()
for n, p in plain.named_parameters():
    out[f"plaingrad.{n}"] = p.grad.detach().clone()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0, weight_decay=5e-4)
opt.zero_grad()
feat = model.head(x)
out["feature_layer1"] = feat.detach()
f = feat.detach()
for k in range(K):
    f.requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(model.tail(f), y), f)
    if k == 0:
        out["pgd_grad0"] = g
    f = (f + STEP * g.sign()).detach()
out["pgd_adversarial"] = f
adv = feat + (f - feat.detach())
ma, sa = moments(feat)
mb, sb = moments(adv)
mixed = (feat - ma) / sa * sb + mb
out["mixed"] = mixed.detach()
clean_loss = F.cross_entropy(model.tail(feat), y)
adv_loss = F.cross_entropy(model.tail(mixed), y)
loss = 0.5 * clean_loss + 0.5 * adv_loss
out["loss_clean"] = clean_loss.detach().reshape(1)
out["loss_adv"] = adv_loss.detach().reshape(1)
out["loss"] = loss.detach().reshape(1)
loss.backward()
for n, p in model.named_parameters():
    out[f"grad.{n}"] = p.grad.detach().clone()
for n, b in model.named_buffers():
    if "running" in n:
        out[f"after.{n}"] = b.detach().clone()
opt.step()
for n, p in model.named_parameters():
    out[f"sgd.{n}"] = p.detach().clone()

tensors = {k: v.float().contiguous() for k, v in {**state, **out}.items()}
path = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/cifar_resnet20_afan.safetensors")
os.makedirs(os.path.dirname(path), exist_ok=True)
save_file(tensors, path, metadata={"generator": "xtask/reference/golden_cifar.py",
                                   "torch": torch.__version__})
print(path, sum(v.numel() for v in tensors.values()) * 4 / 1e6, "MB")
