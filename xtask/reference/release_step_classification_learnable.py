"""One training step of the release's learnable multi-layer A-FAN, re-stated line by line in float64.

Mirrors VITA-Group/CV_A-FAN `Classification/main_learnable.py` `train()` (L175-252) and its
`sum_project` (L369-378), with `Classification/attack_algo.py` `PGD` (L38-58), on ResNet-20 with
tiny shapes and every flag at its default (`--steps 3 --gamma 1 --w_lr 0.01 --init_weight 1/9
--l1_coef 1`, momentum 0.9). The release perturbs nine points of ResNet-56s and hard-codes 9 as
their count (`loss_adv/9`, `sum_project(..., K=9)`, `all_layers = 9`); here the four points below
stand in for them and P = 4 takes 9's place in each of those.

Writes tests/fixtures/release_classification_learnable_step.safetensors, which
tests/golden_release_classification.rs checks afan_core::learnable against. Weights come from
`hash_weights` by name, as in `release_step_classification.py`.

    /work/torchenv/bin/python xtask/reference/release_step_classification_learnable.py

Stored: `x`, `y`, `lr`; `loss_clean`, `loss_points` (one per point), `loss`; `w_grad`; `w_sgd`
(after the weights' SGD step) and `w` (after `sum_project`); every network gradient (`grad.`);
the running statistics after the step (`after.`).
"""
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

from release_classification_model import ResNet, afan_keys, end_point, hash_initialise
from release_step_classification import PGD, relative_error, warmup_lr

NUM_BLOCKS = [3, 3, 3]
LAYER_NUMBER = 4 + sum(NUM_BLOCKS) + 3
POINTS = ["stem", "layer1.1", "layer2.2", "layer3.2"]  # the release: stem ... layer3.8 (L59)
PERTURB_IDX_LIST = [end_point(NUM_BLOCKS, p) for p in POINTS]
P = len(POINTS)
B, H = 4, 8
# main_learnable.py L38-56.
ARGS = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, steps=3, gamma=1.0, eps=2.0,
            randinit=False, clip=False, w_lr=0.01, init_weight=1 / 9, l1_coef=1.0)
ITERATION, WP_STEPS = 3, 10


def sum_project(b_ori, K=9):
    """main_learnable.py L369-378."""
    b = b_ori.clone()
    eq = torch.sum(b, dim=0)
    mu = (eq - 1) / K
    b -= mu
    return b


def step(seed, out, noise=None):
    """main_learnable.py `train()`, one iteration, on a fresh hash-initialised model."""
    torch.manual_seed(seed)
    model = ResNet(NUM_BLOCKS, init_weight=ARGS["init_weight"], all_layers=P).double()  # L73
    hash_initialise(model, NUM_BLOCKS)
    x = torch.rand(B, 3, H, H).double()
    if noise is not None:
        g = torch.Generator().manual_seed(noise[0])
        x = x * (1 + noise[1] * (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1))
    y = torch.arange(B) % 10
    criterion = nn.CrossEntropyLoss()  # L79
    optimizer = torch.optim.SGD(model.sequential_model.parameters(), ARGS["lr"],
                                momentum=ARGS["momentum"], weight_decay=ARGS["weight_decay"])  # L81-83
    params_list = [{"params": model.w, "lr": ARGS["w_lr"], "weight_decay": 0}]  # L85-86
    optimizer_w = torch.optim.SGD(params_list, ARGS["w_lr"], momentum=ARGS["momentum"],
                                  weight_decay=0)  # L87-89

    model.train()  # L181
    warmup_lr(ITERATION, optimizer, warm_up_steps=WP_STEPS, max_lr=ARGS["lr"])  # L189-190
    input, target = x, y
    adv_feature_maps, clean_feature_maps, output_list = [], [], []
    for num in PERTURB_IDX_LIST:  # L202-215
        fea_map = model(input, end_point=num, start_point=0).detach()
        clean_feature_maps.append(fea_map)
        fea_map_adv = PGD(fea_map, criterion, y=target, model=model, steps=ARGS["steps"],
                          gamma=(ARGS["gamma"] / 255), start_idx=num, layer_number=LAYER_NUMBER,
                          eps=(ARGS["eps"] / 255), randinit=ARGS["randinit"], clip=ARGS["clip"])
        adv_feature_maps.append(fea_map_adv)
    for idx, num in enumerate(PERTURB_IDX_LIST):  # L218-227
        adv_feature_maps[idx] = clean_feature_maps[idx] + model.w[idx] * (
            adv_feature_maps[idx] - clean_feature_maps[idx])
        output_list.append(model(adv_feature_maps[idx], end_point=LAYER_NUMBER, start_point=num))
    output_clean = model(input, end_point=LAYER_NUMBER, start_point=0)  # L228

    losses = [criterion(o, target) for o in output_list]  # L236-238
    loss_adv = sum(losses)
    loss_clean = criterion(output_clean, target)  # L239
    loss_l1_penalty = torch.norm(model.w, p=1)  # L240
    loss = (loss_clean + loss_adv / P) / 2 + loss_l1_penalty * ARGS["l1_coef"]  # L242

    optimizer.zero_grad()  # L244-246
    optimizer_w.zero_grad()
    loss.backward()
    out.update(x=x, y=y.double(), lr=torch.tensor([optimizer.param_groups[0]["lr"]]),
               loss_clean=loss_clean.detach().reshape(1),
               loss_points=torch.stack([l.detach() for l in losses]), loss=loss.detach().reshape(1),
               w_grad=model.w.grad.detach().clone())
    for key, t in afan_keys(model, NUM_BLOCKS):
        if isinstance(t, nn.Parameter):
            out[f"grad.{key}"] = t.grad.detach().clone()
        else:
            out[f"after.{key}"] = t.detach().clone()
    optimizer.step()  # L247
    optimizer_w.step()  # L248
    out["w_sgd"] = model.w.detach().clone()
    with torch.no_grad():  # L251-252
        model.w.data = sum_project(model.w.data, K=P)
    out["w"] = model.w.detach().clone()
    return model


def well_conditioned(seed):
    """As `release_step_classification.well_conditioned`: four draws of 2e-7 input noise move no
    compared tensor by more than 40% of its tolerance (the attacks are not stored; their effect
    is in the losses and gradients)."""
    ref = {}
    step(seed, ref)
    worst, at = 0.0, None
    for draw in range(4):
        moved = {}
        step(seed, moved, noise=(draw, 2e-7))
        for k, want in ref.items():
            if k in ("x", "y", "lr"):
                continue
            tol = 1e-4 if k.split(".")[0] in ("grad", "after") or k.startswith("w") else 1e-5
            e = relative_error(moved[k], want) / tol
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
                        "../../tests/fixtures/release_classification_learnable_step.safetensors")
    save_file(tensors, path, metadata={
        "generator": "xtask/reference/release_step_classification_learnable.py",
        "torch": torch.__version__, "seed": str(seed), "keys": json.dumps(keys),
        "points": json.dumps(POINTS), "init_weight": repr(ARGS["init_weight"])})
    print(path, sum(v.numel() for v in tensors.values()) * 4 / 1e6, "MB")


if __name__ == "__main__":
    main()
