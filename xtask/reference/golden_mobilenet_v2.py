"""Golden logits of torchvision's MobileNetV2 for afan-models' import test.

Builds `mobilenet_v2(num_classes=5, width_mult=0.25)` from a fixed seed, sets every BatchNorm's
running statistics from a few random batches and randomizes its affine parameters (so evaluation
mode is really checked), rounds all tensors to float16 (to keep the fixture small; the logits are
computed from the rounded values), and writes
crates/afan-models/tests/fixtures/mobilenet_v2_golden.safetensors with the state dict (keys as
torchvision names them) and mobilenet_v2_golden_io.safetensors with an input `input`
[2, 3, 32, 32] and the eval-mode logits `logits`.
Run from the repository root with torch and torchvision installed:
    python3 xtask/reference/golden_mobilenet_v2.py
"""
import torch
import torchvision
from safetensors.torch import save_file

torch.manual_seed(0)
model = torchvision.models.mobilenet_v2(num_classes=5, width_mult=0.25)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batches below
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    model.classifier[1].weight.normal_(0.0, 0.1)
    model.train()
    for _ in range(4):
        model(torch.randn(8, 3, 32, 32))
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.half().float())
model.eval()
x = torch.randn(2, 3, 32, 32).half().float()
with torch.no_grad():
    logits = model(x)
tensors = {k: v.half().contiguous() for k, v in model.state_dict().items()
           if not k.endswith("num_batches_tracked")}
save_file(tensors, "crates/afan-models/tests/fixtures/mobilenet_v2_golden.safetensors")
save_file({"input": x.half(), "logits": logits.float()},
          "crates/afan-models/tests/fixtures/mobilenet_v2_golden_io.safetensors")
print(logits)
