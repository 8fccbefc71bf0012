"""Golden output of DeepLabV3+ as the release builds it (VainF/DeepLabV3Plus-Pytorch:
`DeepLabHeadV3Plus`, `ASPP`, `_SimpleSegmentationModel`, MobileNetV2 backbone split into
`low_level_features = features[0:4]` and `high_level_features = features[4:-1]`, output stride 16
by dilation), re-stated here with torchvision's MobileNetV2 and PyTorch's F.interpolate.

The head is narrowed from 256 to 16 channels to keep the fixture small. BatchNorm statistics come
from a few random batches; all tensors are rounded to float16. Writes
crates/afan-models/tests/fixtures/deeplab_golden.safetensors (state dict, release key names) and
deeplab_golden_io.safetensors (`input` [2, 3, 37, 50], eval-mode `output` at input size).
Run from the repository root:  python3 xtask/reference/golden_deeplab.py
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

C, K, LOW = 16, 3, 48
torch.manual_seed(1)


def conv_bn_relu(i, o, k=1, d=1):
    return [nn.Conv2d(i, o, k, padding=d * (k // 2), dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU()]


class ASPPPooling(nn.Sequential):
    def __init__(self, i, o):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, i, rates):
        super().__init__()
        self.convs = nn.ModuleList([nn.Sequential(*conv_bn_relu(i, C))]
                                   + [nn.Sequential(*conv_bn_relu(i, C, 3, r)) for r in rates]
                                   + [ASPPPooling(i, C)])
        self.project = nn.Sequential(*conv_bn_relu(5 * C, C), nn.Dropout(0.1))

    def forward(self, x):
        return self.project(torch.cat([c(x) for c in self.convs], dim=1))


class Head(nn.Module):  # DeepLabHeadV3Plus
    def __init__(self, in_ch, low_ch):
        super().__init__()
        self.project = nn.Sequential(*conv_bn_relu(low_ch, LOW))
        self.aspp = ASPP(in_ch, [6, 12, 18])
        self.classifier = nn.Sequential(*conv_bn_relu(LOW + C, C, 3), nn.Conv2d(C, K, 1))

    def forward(self, low, out):
        low = self.project(low)
        out = F.interpolate(self.aspp(out), size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, out], dim=1))


features = torchvision.models.mobilenet_v2(width_mult=0.25).features
# Output stride 16: features.14 keeps stride 1, the depthwise convs after it dilate by 2.
features[14].conv[1][0].stride = (1, 1)
for i in (15, 16, 17):
    dw = features[i].conv[1][0]
    dw.dilation, dw.padding = (2, 2), (2, 2)
backbone = nn.Module()
backbone.low_level_features = features[0:4]
backbone.high_level_features = features[4:18]
model = nn.Module()
model.backbone = backbone
model.classifier = Head(in_ch=80, low_ch=8)


def forward(x):
    low = backbone.low_level_features(x)
    out = model.classifier(low, backbone.high_level_features(low))
    return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


with torch.no_grad():
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    model.train()
    for _ in range(4):
        forward(torch.randn(4, 3, 37, 50))
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.half().float())
    model.eval()
    x = torch.randn(2, 3, 37, 50).half().float()
    y = forward(x)
tensors = {k: v.half().contiguous() for k, v in model.state_dict().items()
           if not k.endswith("num_batches_tracked")}
save_file(tensors, "crates/afan-models/tests/fixtures/deeplab_golden.safetensors")
save_file({"input": x.half(), "output": y.float().contiguous()},
          "crates/afan-models/tests/fixtures/deeplab_golden_io.safetensors")
print(y.shape, len(tensors), sorted(tensors)[:3], [k for k in tensors if "high_level" in k][:2])
