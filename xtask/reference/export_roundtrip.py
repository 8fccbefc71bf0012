"""Loads afan's exports into the PyTorch modules they name and compares logits.

afan writes each model as safetensors and as a `torch.save` `.pth` file
(`crates/afan-models/examples/export_models.rs`, which this script runs first), plus the input it
fed and the output it computed. Here every file is loaded into its PyTorch module with
`load_state_dict(strict=True)` — from `torch.load(weights_only=True)` (also with `mmap=True`,
which needs torch's 64-byte storage alignment) and from `safetensors.torch.load_file`, which must
give identical tensors — and the module's eval-mode output on the same input is compared with
afan's: max |PyTorch - afan| must be within 1e-5 of max(1, max |logit|).

Modules: torchvision's `resnetNN`, `efficientnet_bN` and `mobilenet_v2`; the release's CIFAR
ResNet-s (VITA-Group/CV_A-FAN `Classification/resnet_s.py`, re-stated in
`release_classification_model.py`); the release's DeepLabV3+ with a ResNet backbone
(`Segmentation/network/modeling.py` `_segm_resnet` without the commented-out
`IntermediateLayerGetter`, `backbone/resnet.py` with its `normal` and without `fc`,
`_deeplab.py` `DeepLabHeadV3Plus`, `utils.py` `_SimpleSegmentationModel`), re-stated below;
and VainF/DeepLabV3Plus-Pytorch's MobileNetV2 layout (the release has `_segm_mobilenet`
commented out), re-stated as in `golden_deeplab.py`.

Run from the repository root (CPU, a few minutes; `--all` adds every depth and variant):
    python3 xtask/reference/export_roundtrip.py [--all] [--dir DIR] [--no-build] [NAME...]
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from release_classification_model import NormalizeByChannelMeanStd, ResNet as ReleaseCifarResNet  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CIFAR = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}


# --- the release's DeepLabV3+ (Segmentation/network/_deeplab.py, L28-L86 and L140-L200) -------
class ASPPConv(nn.Sequential):
    def __init__(self, i, o, d):
        super().__init__(nn.Conv2d(i, o, 3, padding=d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class ASPPPooling(nn.Sequential):
    def __init__(self, i, o):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    def forward(self, x):
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, i, rates, o=256):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))]
            + [ASPPConv(i, o, r) for r in rates] + [ASPPPooling(i, o)])
        self.project = nn.Sequential(nn.Conv2d(5 * o, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True), nn.Dropout(0.1))

    def forward(self, x):
        return self.project(torch.cat([c(x) for c in self.convs], dim=1))


class DeepLabHeadV3Plus(nn.Module):
    def __init__(self, in_channels, low_level_channels, num_classes, rates):
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(low_level_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.aspp = ASPP(in_channels, rates)
        self.classifier = nn.Sequential(nn.Conv2d(304, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Conv2d(256, num_classes, 1))

    def forward(self, feature):
        low = self.project(feature["low_level"])
        out = F.interpolate(self.aspp(feature["out"]), size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, out], dim=1))


class ReleaseResNet(torchvision.models.ResNet):
    """backbone/resnet.py: torchvision's ResNet with `normal` (L129) and no avgpool/fc (L158-159
    commented out); the `clean` forward (L288-300) returns layer1 and layer4."""

    def __init__(self, block, layers, replace_stride_with_dilation):
        super().__init__(block, layers, replace_stride_with_dilation=replace_stride_with_dilation)
        del self.avgpool, self.fc
        self.normal = NormalizeByChannelMeanStd(IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normal(x)))))
        low = self.layer1(x)
        return {"low_level": low, "out": self.layer4(self.layer3(self.layer2(low)))}


class MobileNetBackbone(nn.Module):
    """VainF's `_segm_mobilenet`: features[0:4] and features[4:-1] at output stride 16."""

    def __init__(self):
        super().__init__()
        features = torchvision.models.mobilenet_v2().features
        features[14].conv[1][0].stride = (1, 1)
        for i in (15, 16, 17):
            dw = features[i].conv[1][0]
            dw.dilation, dw.padding = (2, 2), (2, 2)
        self.low_level_features = features[0:4]
        self.high_level_features = features[4:18]

    def forward(self, x):
        low = self.low_level_features(x)
        return {"low_level": low, "out": self.high_level_features(low)}


class SegmentationModel(nn.Module):
    """utils.py `_SimpleSegmentationModel`, the whole-network pass."""

    def __init__(self, backbone, classifier):
        super().__init__()
        self.backbone, self.classifier = backbone, classifier

    def forward(self, x):
        out = self.classifier(self.backbone(x))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build(name):
    """The PyTorch module for `name` and whether it expects ImageNet-normalised input."""
    if name.startswith("deeplabv3plus_"):
        backbone = name.removeprefix("deeplabv3plus_")
        if backbone == "mobilenet_v2":
            return SegmentationModel(MobileNetBackbone(), DeepLabHeadV3Plus(320, 24, 21, [6, 12, 18])), False
        blocks = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}[backbone]
        resnet = ReleaseResNet(torchvision.models.resnet.Bottleneck, blocks, [False, False, True])
        return SegmentationModel(resnet, DeepLabHeadV3Plus(2048, 256, 21, [6, 12, 18])), False
    if name in CIFAR:
        return ReleaseCifarResNet([CIFAR[name]] * 3, num_classes=10), False
    return getattr(torchvision.models, name)(), True


def check(directory, name):
    torch.manual_seed(0)
    module, imagenet_input = build(name)
    pth = directory / f"{name}.pth"
    from_pth = torch.load(pth, weights_only=True)
    from_mmap = torch.load(pth, weights_only=True, mmap=True)
    from_st = load_file(directory / f"{name}.safetensors")
    assert list(from_pth) == list(from_mmap) and set(from_pth) == set(from_st), name
    for k, v in from_pth.items():
        assert v.dtype == from_st[k].dtype and torch.equal(v, from_st[k]) and torch.equal(v, from_mmap[k]), k
    for sd in (from_pth, from_st):
        module.load_state_dict(sd, strict=True)
    module.eval()
    io = load_file(directory / f"{name}_io.safetensors")
    x = io["input"]
    if imagenet_input:
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        y = module(x)
    want = io["output"]
    assert y.shape == want.shape, (name, y.shape, want.shape)
    diff = (y - want).abs().max().item()
    scale = want.abs().max().item()
    ok = diff <= 1e-5 * max(1.0, scale)
    print(f"{name:28s} {len(from_pth):4d} tensors  max|logit| {scale:10.4f}  max|diff| {diff:.2e}  "
          f"rel {diff / max(1.0, scale):.2e}  {'ok' if ok else 'FAIL'}", flush=True)
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--all", action="store_true", help="every depth and variant")
    parser.add_argument("--dir", type=pathlib.Path, help="where the files go (default: a temporary folder)")
    parser.add_argument("--no-build", action="store_true", help="use the files already in --dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir or pathlib.Path(tmp)
        selection = ["--all"] if args.all else args.names
        if args.no_build:
            names = args.names or sorted(p.name[:-len("_io.safetensors")] for p in directory.glob("*_io.safetensors"))
        else:
            out = subprocess.run(["cargo", "run", "-q", "-p", "afan-models", "--example", "export_models", "--",
                                  str(directory), *selection], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"export_models failed ({out.returncode}):\n{out.stderr}")
            names = out.stdout.split()
        print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
        failed = [n for n in names if not check(directory, n)]
    if failed:
        sys.exit(f"{len(failed)} of {len(names)} exports differ from PyTorch: {', '.join(failed)}")
    print(f"{len(names)} exports load strictly and match PyTorch")


if __name__ == "__main__":
    main()
