"""Golden fixture for torchvision ResNet-18, ResNet-50 and EfficientNet-B0 (eval mode): logits and
the features after layer1..layer4 (ResNets) or after each features.N (EfficientNet), computed by
torchvision in float64.

Writes tests/fixtures/torchvision_resnet.safetensors (read by tests/golden_torchvision.rs; CI never
runs PyTorch). The weights are not stored: every tensor of the state dict is made by
hash_weights.value(key, shape), which the Rust test reproduces, so the fixture stays small and the
test also checks that afan maps every torchvision key. Regenerate with:

    python3 -m venv .venv && .venv/bin/pip install torch torchvision safetensors numpy
    .venv/bin/python xtask/reference/golden_torchvision.py
"""
import json
import os
import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from hash_weights import value, uniform

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures",
                   "torchvision_resnet.safetensors")
# (model, batch, side): small inputs keep the fixture a few hundred KB; 40 px gives layer4 2x2.
CASES = [("resnet18", 2, 40), ("resnet50", 1, 40), ("efficientnet_b0", 1, 40)]

tensors, meta = {}, {}
for name, batch, side in CASES:
    model = getattr(torchvision.models, name)(weights=None).double().eval()
    sd = model.state_dict()
    keys = []
    for k, t in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        sd[k] = torch.from_numpy(value(k, tuple(t.shape)).astype(np.float64))
        keys.append([k, list(t.shape)])
    model.load_state_dict(sd)
    meta[name] = keys
    x = uniform(f"{name}.input", batch * 3 * side * side).astype(np.float32)
    x = (x.reshape(batch, 3, side, side) - 0.45) / 0.225
    xt = torch.from_numpy(x.astype(np.float64))
    tensors[f"{name}.input"] = torch.from_numpy(x.astype(np.float32))
    with torch.no_grad():
        if name.startswith("resnet"):
            f = model.maxpool(model.relu(model.bn1(model.conv1(xt))))
            for i in range(1, 5):
                f = getattr(model, f"layer{i}")(f)
                tensors[f"{name}.layer{i}"] = f.float()
            logits = model.fc(torch.flatten(model.avgpool(f), 1))
        else:
            f = xt
            for i, m in enumerate(model.features):
                f = m(f)
                tensors[f"{name}.features.{i}"] = f.float()
            logits = model.classifier(torch.flatten(model.avgpool(f), 1))
        tensors[f"{name}.logits"] = logits.float()
        assert torch.allclose(logits, model(xt))
    print(name, {k: tuple(v.shape) for k, v in tensors.items() if k.startswith(name)},
          "logit scale", float(logits.abs().max()))

save_file({k: v.contiguous() for k, v in tensors.items()}, OUT,
          metadata={"keys": json.dumps(meta), "torch": torch.__version__,
                    "torchvision": torchvision.__version__})
print("wrote", OUT, os.path.getsize(OUT), "bytes")
