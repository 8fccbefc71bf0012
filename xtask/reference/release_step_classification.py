"""One training step of the release's classification A-FAN, re-stated line by line in float64.

Mirrors VITA-Group/CV_A-FAN `Classification/main_perturb.py` `train()` (L153-201) with
`Classification/attack_algo.py` `PGD` (L38-58) and `Classification/resnet_s.py` (re-stated in
`release_classification_model.py`), on ResNet-20 with tiny shapes, as run by
`Classification/cmd/run_perturb.sh` (`--gamma 0.5`; every other flag at its default).

Writes tests/fixtures/release_classification_step.safetensors, which
tests/golden_release_classification.rs checks `AfanConfig::release_classification()` against.
The weights are not stored: they come from `hash_weights.value(name, shape)` (so the fixture
holds only what the step computes), keyed by afan's state-dict names; the metadata lists them.

    /work/torchenv/bin/python xtask/reference/release_step_classification.py

Stored: the batch `x`, `y`; the learning rate of the step (`lr`, from `warmup_lr` in epoch 0);
`feature` (the detached head output) and `adversarial` (after K steps); `loss_adv`, `loss_clean`, `loss`; every parameter's gradient
(`grad.`); the running statistics after the step (`after.`); the parameters after the SGD step
(`sgd.`).
"""
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

from release_classification_model import ResNet, afan_keys, end_point, hash_initialise

NUM_BLOCKS = [3, 3, 3]  # ResNet-20 (the release's resnet56 is [9, 9, 9], resnet_s.py L123-124)
LAYER_NUMBER = 4 + sum(NUM_BLOCKS) + 3  # main_perturb.py L65 (`layer_number = 34` for ResNet-56)
PERTURB_IDX = end_point(NUM_BLOCKS, "layer1")  # `--perturb_idx 13` for ResNet-56: end of stage 1
B, H = 4, 8  # tiny shapes: 4 images of 8x8 (the network is size-agnostic; few ReLU units, see
# `well_conditioned`)

# main_perturb.py L36-49 and cmd/run_perturb.sh.
ARGS = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, steps=5, gamma=0.5, eps=2.0,
            randinit=False, clip=False)
# The step is iteration i = 3 of epoch 0 with 10 iterations per epoch, so the warm-up is live.
ITERATION, WP_STEPS = 3, 10


def warmup_lr(step, optimizer, warm_up_steps=200, max_lr=0.1):
    """main_perturb.py L288-293."""
    lr = step * max_lr / (warm_up_steps - 1)
    lr = min(lr, max_lr)
    for p in optimizer.param_groups:
        p["lr"] = lr


def PGD(x, loss_fn, y=None, model=None, steps=3, gamma=None, start_idx=1, layer_number=16,
        eps=(2 / 255), randinit=False, clip=False):
    """attack_algo.py L38-58 (no random start, no clipping in the release run; `.cuda()` dropped,
    `Variable(..., requires_grad=True)` is `requires_grad_()`)."""
    x_adv = x.clone()
    assert not randinit and not clip
    x_adv = x_adv.requires_grad_(True)
    for t in range(steps):
        out = model(x_adv, end_point=layer_number, start_point=start_idx)
        loss_adv0 = loss_fn(out, y)
        grad0 = torch.autograd.grad(loss_adv0, x_adv, only_inputs=True)[0]
        x_adv.data.add_(gamma * torch.sign(grad0.data))
    return x_adv


def step(seed, out=None, noise=None):
    """main_perturb.py `train()`, one iteration, on a fresh hash-initialised model; `noise =
    (draw, size)` moves the input by `size * U(-1, 1)` relative (see `well_conditioned`)."""
    torch.manual_seed(seed)
    model = ResNet(NUM_BLOCKS).double()
    hash_initialise(model, NUM_BLOCKS)
    x = torch.rand(B, 3, H, H).double()  # f32 values, stored exactly
    if noise is not None:
        g = torch.Generator().manual_seed(noise[0])
        x = x * (1 + noise[1] * (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1))
    y = torch.arange(B) % 10
    criterion = nn.CrossEntropyLoss()  # L70
    optimizer = torch.optim.SGD(model.parameters(), ARGS["lr"], momentum=ARGS["momentum"],
                                weight_decay=ARGS["weight_decay"])  # L72-74

    model.train()  # L159
    warmup_lr(ITERATION, optimizer, warm_up_steps=WP_STEPS, max_lr=ARGS["lr"])  # L167-168
    input, target = x, y

    feature_map = model(input, end_point=PERTURB_IDX, start_point=0).detach()  # L173
    feature_map_adv = PGD(feature_map, criterion, y=target, model=model, steps=ARGS["steps"],
                          gamma=(ARGS["gamma"] / 255), start_idx=PERTURB_IDX,
                          layer_number=LAYER_NUMBER, eps=(ARGS["eps"] / 255),
                          randinit=ARGS["randinit"], clip=ARGS["clip"])  # L176-185

    output_adv = model(feature_map_adv, end_point=LAYER_NUMBER, start_point=PERTURB_IDX)  # L195
    output_clean = model(input, end_point=LAYER_NUMBER, start_point=0)  # L196
    loss_adv, loss_clean = criterion(output_adv, target), criterion(output_clean, target)
    loss = (loss_adv + loss_clean) / 2  # L197

    optimizer.zero_grad()  # L199
    loss.backward()  # L200
    if out is not None:
        out.update(x=x, y=y.double(), lr=torch.tensor([optimizer.param_groups[0]["lr"]]),
                   feature=feature_map, adversarial=feature_map_adv.detach(),
                   loss_adv=loss_adv.detach().reshape(1), loss_clean=loss_clean.detach().reshape(1),
                   loss=loss.detach().reshape(1))
        for key, t in afan_keys(model, NUM_BLOCKS):
            if isinstance(t, nn.Parameter):
                out[f"grad.{key}"] = t.grad.detach().clone()
            else:
                out[f"after.{key}"] = t.detach().clone()
        assert model.w.grad is None  # the release's `w` is in the optimizer but gets no gradient
    optimizer.step()  # L201
    if out is not None:
        for key, t in afan_keys(model, NUM_BLOCKS):
            if isinstance(t, nn.Parameter):
                out[f"sgd.{key}"] = t.detach().clone()
    return model


def relative_error(got, want):
    """The golden tests' measure (tests/support/golden.rs `assert_close`): the largest
    `|got - want| / (|want| + 0.1 max|want|)`."""
    floor = 0.1 * want.abs().max() + 1e-38
    return ((got - want).abs() / (want.abs() + floor)).max().item()


def well_conditioned(seed):
    """Whether the step is insensitive to f32 rounding: rerun in float64 with the input moved by
    relative noise of 2e-7 (four draws; it moves the feature after stage 1 by about the 3e-6
    that afan's f32 differs from float64 by), every compared tensor must stay within 40% of the
    golden tests' tolerances (1e-5 for values, 1e-4 for gradients, statistics and parameters), and
    the attack may change the sign of at most one element in 200 (an element whose gradient is
    within rounding of zero goes either way in any step; downstream it matters as little as its
    gradient). A ReLU unit within rounding of its kink lands on either side and can move a
    sizeable part of a sample's attack gradient (tests/golden_cifar.rs): at 16x16 with 8 images
    the first seeds tried each had one in some attack pass (0.6% to 10% of one sample's gradient
    moved), hence the small batch and this search."""
    ref = {}
    step(seed, ref)
    worst, at = 0.0, None
    for draw in range(4):
        moved = {}
        step(seed, moved, noise=(draw, 2e-7))
        for k, want in ref.items():
            if k in ("x", "y", "lr"):
                continue
            got = moved[k]
            if k == "adversarial":
                flips = ((got - want).abs() > 1e-5).sum().item()
                if flips * 200 > want.numel():
                    print(f"seed {seed}: {flips} attack signs flip", flush=True)
                    return False
                continue
            tol = 1e-4 if k.split(".")[0] in ("grad", "after", "sgd") else 1e-5
            e = relative_error(got, want) / tol
            if e > worst:
                worst, at = e, k
    print(f"seed {seed}: worst error {worst:.2f} of the tolerance ({at})", flush=True)
    return worst < 0.4


def main():
    for seed in range(50):
        if well_conditioned(seed):
            break
    else:
        raise SystemExit("no well-conditioned seed in 0..50")
    out = {}
    model = step(seed, out)
    keys = {k: list(t.shape) for k, t in afan_keys(model, NUM_BLOCKS)}
    tensors = {k: v.float().contiguous() for k, v in out.items()}
    path = os.path.join(os.path.dirname(__file__),
                        "../../tests/fixtures/release_classification_step.safetensors")
    save_file(tensors, path, metadata={
        "generator": "xtask/reference/release_step_classification.py",
        "torch": torch.__version__, "seed": str(seed), "keys": json.dumps(keys)})
    print(path, sum(v.numel() for v in tensors.values()) * 4 / 1e6, "MB")


if __name__ == "__main__":
    main()
