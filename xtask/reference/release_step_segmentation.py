"""Golden fixture: one A-FAN training step of the release's DeepLabV3+, re-stated line by line.

The release is VITA-Group/CV_A-FAN, `Segmentation/`. This script re-states, in float64, one
iteration of `main_aug_final.py`'s loop (L152-232) with the flags of the command its README
gives (`sh/voc/2012/clean50/01_final50.sh`, first run: `--pertub_idx_se 3 --gamma_se 0.01
--pertub_idx_sd aspp --gamma_sd 0.4 --mix_layer 11`, `--model deeplabv3plus_resnet50`, output
stride 16) and, with `--city`, of the Cityscapes command (`sh/city/clean50/091_city_final01.sh`,
first run: `--pertub_idx_se 2 --gamma_se 0.02 --pertub_idx_sd concat --gamma_sd 1.5 --mix_layer 01
--mix_sd`), on a small DeepLabV3+:

- ResNet-50 at output stride 16 (torchvision's, run the way `network/backbone/resnet.py` runs
  it: `forward(input_dict)` with flags `head` / `tail` / `clean`), without the in-model
  normalisation (`self.normal`): the input here is already normalised;
- ASPP and the decoder's 3x3 conv with 16 channels instead of 256, 3 classes;
- ASPP's `Dropout(0.1)` at 0: its masks are random per pass, and the two sides cannot share them;
- `utils.set_bn_momentum(model.backbone, momentum=0.01)` (main_aug_final.py L75) as in the
  release; every pass in training mode (L150), so each moves the running statistics it crosses.

Weights come from the repository's hash rule (`hash_weights.py`) under the release's
state-dict names. Writes tests/fixtures/release_step_segmentation[_city].safetensors (read by
tests/golden_release_segmentation.rs; CI never runs PyTorch):

    /work/torchenv/bin/python xtask/reference/release_step_segmentation.py

(the VOC fixture, then, in a second process, the Cityscapes one: `--city`).

The script then runs itself again with `--f32`: the same step in float32 from the fixture's
inputs, and stores as `tol.<name>` the worst relative error of PyTorch's own float32 run against
the float64 one for every tensor (the measure of tests/support/golden.rs). Forty-odd layers with
training-mode batch norm lose precision steadily, and the loss hardly depends on the input of an
untrained network, so the backbone's gradients are ill-conditioned: PyTorch's own float32 run
is 2e-4 off at the `layer3` feature and 3e-2 to 6e-2 off at the backbone's batch-norm weight
gradients (the head's: 1e-6 to 6e-4; the losses: 1e-7). The Rust test allows afan's float32 a
few times PyTorch's float32 error where that exceeds the usual tolerance.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

from hash_weights import value

CITY = "--city" in sys.argv
F32 = "--f32" in sys.argv
NAME = "release_step_segmentation_city" if CITY else "release_step_segmentation"
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"../../tests/fixtures/{NAME}.safetensors")
torch.manual_seed(1)
torch.set_default_dtype(torch.float32 if F32 else torch.float64)
torch.use_deterministic_algorithms(True)

B, H, W, K, C = 2, 64, 64, 3, 16
if CITY:  # 091_city_final01.sh L4-9, L25
    SELAYER, SDLAYER, GAMMASE, GAMMASD, MIX, MIX_SD = 2, "concat", 0.02, 1.5, "01", True
else:  # 01_final50.sh L3-9
    SELAYER, SDLAYER, GAMMASE, GAMMASD, MIX, MIX_SD = 3, "aspp", 0.01, 0.4, "11", False
STEPS, EPS = 1, 2.0  # args.py L21, L28


# ------------------------------------------------------------- network/_deeplab.py L28-193
def conv_bn_relu(i, o, k=1, d=1):
    return [nn.Conv2d(i, o, k, padding=d * (k // 2), dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU()]


class ASPPPooling(nn.Sequential):  # L150-161
    def __init__(self, i, o):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):  # L163-192 (256 -> C channels, dropout 0)
    def __init__(self, i, rates):
        super().__init__()
        self.convs = nn.ModuleList([nn.Sequential(*conv_bn_relu(i, C))]
                                   + [nn.Sequential(*conv_bn_relu(i, C, 3, r)) for r in rates]
                                   + [ASPPPooling(i, C)])
        self.project = nn.Sequential(*conv_bn_relu(5 * C, C), nn.Dropout(0.0))

    def forward(self, x):
        return self.project(torch.cat([c(x) for c in self.convs], dim=1))


class DeepLabHeadV3Plus(nn.Module):  # L28-80
    def __init__(self, in_channels, low_level_channels, num_classes, aspp_dilate):
        super().__init__()
        self.project = nn.Sequential(*conv_bn_relu(low_level_channels, 48))
        self.aspp = ASPP(in_channels, aspp_dilate)
        self.classifier = nn.Sequential(*conv_bn_relu(48 + C, C, 3), nn.Conv2d(C, num_classes, 1))

    def forward(self, feature, return_type=None):
        if return_type is None:
            low_level_feature = self.project(feature['low_level'])
            output_feature = self.aspp(feature['out'])
            output_feature = F.interpolate(output_feature, size=low_level_feature.shape[2:], mode='bilinear',
                                           align_corners=False)
            return self.classifier(torch.cat([low_level_feature, output_feature], dim=1))
        elif return_type == 'aspp_head':
            return self.aspp(feature['out'])
        elif return_type == 'aspp_tail':
            low_level_feature = self.project(feature['low_level'])
            output_feature = F.interpolate(feature['adv'], size=low_level_feature.shape[2:], mode='bilinear',
                                           align_corners=False)
            return self.classifier(torch.cat([low_level_feature, output_feature], dim=1))
        elif return_type == 'concat_head':
            low_level_feature = self.project(feature['low_level'])
            output_feature = self.aspp(feature['out'])
            output_feature = F.interpolate(output_feature, size=low_level_feature.shape[2:], mode='bilinear',
                                           align_corners=False)
            return torch.cat([low_level_feature, output_feature], dim=1)
        elif return_type == 'concat_tail':
            return self.classifier(feature['adv'])
        assert False


# network/modeling.py L6-30: output stride 16 -> dilation in layer4 only, ASPP rates 6/12/18.
resnet = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
classifier = DeepLabHeadV3Plus(2048, 256, K, [6, 12, 18])
model = nn.Module()
model.backbone = resnet
model.classifier = classifier

keys = {}
with torch.no_grad():
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked") or name.startswith("backbone.fc."):
            continue
        keys[name] = list(t.shape)
        t.copy_(torch.from_numpy(value(name, tuple(t.shape))))
# utils/utils.py L26-29, called at main_aug_final.py L75.
for m in model.backbone.modules():
    if isinstance(m, nn.BatchNorm2d):
        m.momentum = 0.01
model.train()  # main_aug_final.py L150


# ------------------------------------------------- network/backbone/resnet.py forward L198-304
def backbone_forward(input_dict):
    out = {}
    r = resnet
    if input_dict['flag'] == 'head':
        x = r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(input_dict['x'])))))
        out['low_level'] = x
        for i, layer in enumerate([r.layer2, r.layer3, r.layer4], start=2):
            if input_dict['out_idx'] >= i:
                x = layer(x)
        out['out'] = x
        return out
    if input_dict['flag'] == 'tail':
        x = input_dict['adv']
        for i, layer in enumerate([r.layer2, r.layer3, r.layer4], start=2):
            if input_dict['out_idx'] < i:
                x = layer(x)
        out['out'] = x
        out['low_level'] = input_dict['low_level_feat']
        return out
    x = r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(input_dict['x'])))))  # flag 'clean'
    out['low_level'] = x
    out['out'] = r.layer4(r.layer3(r.layer2(x)))
    return out


# --------------------------------------------- network/utils.py _SimpleSegmentationModel L14-47
def model_forward(input_dict):
    if input_dict['flag'] == 'head':
        return backbone_forward(input_dict)
    if type(input_dict['out_idx']) == int:
        input_shape = input_dict['x'].shape[-2:]
        x = classifier(backbone_forward(input_dict))
        return F.interpolate(x, size=input_shape, mode='bilinear', align_corners=False)
    if input_dict['out_idx'] in ('aspp_head', 'concat_head'):
        features = backbone_forward(input_dict)
        features['adv'] = classifier(features, return_type=input_dict['out_idx'])
        return features
    if input_dict['out_idx'] in ('aspp_tail', 'concat_tail'):
        input_shape = input_dict['x'].shape[-2:]
        x = classifier(input_dict['adv'], return_type=input_dict['out_idx'])
        return F.interpolate(x, size=input_shape, mode='bilinear', align_corners=False)
    assert False


# -------------------------------------------------------------------------- attack_algo.py
grad0 = {}


def PGD(x, image_batch, low_level_feat, criterion, y, steps, eps, gamma, idx):  # L40-59
    x_adv = x.clone().requires_grad_(True)
    for t in range(steps):
        inputs = {'x': image_batch, 'adv': x_adv, 'out_idx': idx, 'flag': 'tail', 'low_level_feat': low_level_feat}
        loss = criterion(model_forward(inputs), y)
        g = torch.autograd.grad(loss, x_adv, only_inputs=True)[0]
        grad0.setdefault("se", g.detach().clone())
        x_adv.data.add_(gamma * torch.sign(g.data))
    return x_adv


def decoder_PGD(input_dict, image_batch, criterion, y, steps, eps, gamma, idx):  # L61-84
    x_adv = input_dict['adv'].detach().clone().requires_grad_(True)
    input_dict['adv'] = x_adv
    for t in range(steps):
        inputs = {'x': image_batch, 'adv': input_dict, 'out_idx': idx + "_tail", 'flag': 'clean'}
        loss = criterion(model_forward(inputs), y)
        g = torch.autograd.grad(loss, x_adv, only_inputs=True)[0]
        grad0.setdefault("sd", g.detach().clone())
        x_adv.data.add_(gamma * torch.sign(g.data))
    input_dict['adv'] = x_adv
    return input_dict


def get_sample_points(pointx, pointy, number):  # L108-118
    percent = 1.0 / (number - 1)
    final_list = [pointx]
    for i in [i * percent for i in range(1, number - 1)]:
        final_list.append(torch.lerp(pointx, pointy, i))
    final_list.append(pointy)
    return final_list


def mix_feature(clean_feature, adv_feature):  # L121-130
    eps = 1e-5
    mean_cl = clean_feature.mean(dim=1, keepdim=True)
    std_cl = (clean_feature.var(dim=1, keepdim=True) + eps).sqrt()
    mean_adv = adv_feature.mean(dim=1, keepdim=True)
    std_adv = (adv_feature.var(dim=1, keepdim=True) + eps).sqrt()
    mix = (clean_feature - mean_cl) / std_cl
    return mix * std_adv + mean_adv


# -------------------------------------------------------------------------------- the data
images = torch.randn(B, 3, H, W).float().double()
labels = torch.randint(0, K, (B, H, W))
labels[:, :5, :] = 255  # a band of unlabelled pixels (ignore_index)
if F32:
    from safetensors.torch import load_file
    reference = load_file(PATH)
    images, labels = reference["images"], reference["labels"].long()
criterion = nn.CrossEntropyLoss(ignore_index=255, reduction='mean')  # main_aug_final.py L93

# ---------------------------------------------------------- main_aug_final.py L157-232
f0, f1 = (int(c) for c in MIX)
inputs_all_se = {"x": images, "adv": None, "out_idx": SELAYER, "flag": 'head'}
inputs_all_sd = {"x": images, "adv": None, "out_idx": SDLAYER + "_head", "flag": 'clean'}
output_dict_se = model_forward(inputs_all_se)
decoder_feature_map_dict = model_forward(inputs_all_sd)
feature_map_sd = decoder_feature_map_dict['adv'].detach()
low_level_feat = output_dict_se["low_level"]
feature_map_se = output_dict_se['out'].detach()

feature_adv_se = PGD(feature_map_se, images, low_level_feat, criterion, labels, STEPS, EPS / 255,
                     GAMMASE / 255, SELAYER)
feature_adv_sd_dict = decoder_PGD(decoder_feature_map_dict, images, criterion, labels, STEPS, EPS / 255,
                                  GAMMASD / 255, SDLAYER)
adv_feature_map_sd = feature_adv_sd_dict['adv'].detach()
if MIX_SD:
    adv_feature_map_sd = mix_feature(feature_map_sd, adv_feature_map_sd)
feature_adv_sd_dict['adv'] = adv_feature_map_sd

adv_list_se = get_sample_points(feature_map_se, feature_adv_se, 3)
if f0:
    adv_list_se[1] = mix_feature(feature_map_se, adv_list_se[1])
if f1:
    adv_list_se[2] = mix_feature(feature_map_se, adv_list_se[2])

clean_input_dict = {'x': images, "adv": None, 'out_idx': 0, 'flag': 'clean'}
adv_input_se_dict1 = {'x': images, 'adv': adv_list_se[1], 'out_idx': SELAYER, 'flag': 'tail',
                      'low_level_feat': low_level_feat}
adv_input_se_dict2 = {'x': images, 'adv': adv_list_se[2], 'out_idx': SELAYER, 'flag': 'tail',
                      'low_level_feat': low_level_feat}
adv_input_sd_dict = {'x': images, 'adv': feature_adv_sd_dict, 'out_idx': SDLAYER + "_tail", 'flag': 'clean'}
outputs = [model_forward(d) for d in (clean_input_dict, adv_input_se_dict1, adv_input_se_dict2, adv_input_sd_dict)]
losses = [criterion(o, labels) for o in outputs]
loss = 0.7 * losses[0] + 0.1 * losses[1] + 0.1 * losses[2] + 0.1 * losses[3]
loss.backward()

# ----------------------------------------------------------------------------- the fixture
out = {
    "images": images, "labels": labels.double(),
    "feature_se": feature_map_se, "adv_se": feature_adv_se.detach(), "grad0_se": grad0["se"],
    "feature_sd": feature_map_sd, "adv_sd": adv_feature_map_sd, "grad0_sd": grad0["sd"],
    "loss": loss.detach().reshape(1), "point_losses": torch.stack([l.detach() for l in losses]),
}
params = dict(model.named_parameters())
# Small parameters of every part: the stem and layer1 (trained by every loss through the
# low-level feature), layer2/3 (only by the clean loss when the point is after them), layer4,
# the ASPP, the low-level projection and the classifier.
GRADS = ["backbone.bn1.weight", "backbone.layer1.0.bn1.weight", "backbone.layer2.0.bn1.weight",
         "backbone.layer3.0.bn1.weight", "backbone.layer4.0.bn1.weight", "classifier.project.1.weight",
         "classifier.aspp.convs.0.1.weight", "classifier.aspp.convs.4.2.bias",
         "classifier.aspp.project.1.weight", "classifier.classifier.1.weight",
         "classifier.classifier.3.weight", "classifier.classifier.3.bias"]
for k in GRADS:
    out[f"grad.{k}"] = params[k].grad
state = model.state_dict()
AFTER = ["backbone.bn1.running_mean", "backbone.layer3.5.bn3.running_var",
         "backbone.layer4.2.bn3.running_mean", "classifier.project.1.running_mean",
         "classifier.aspp.convs.1.1.running_var", "classifier.aspp.project.1.running_mean",
         "classifier.classifier.1.running_var"]
for k in AFTER:
    out[f"after.{k}"] = state[k]
print({k: tuple(v.shape) for k, v in out.items()})
if F32:
    from safetensors import safe_open
    with safe_open(PATH, "pt") as f:
        metadata = f.metadata()
    tolerances = {}
    for k, want in reference.items():
        if k in ("images", "labels"):
            continue
        got = out[k].float()
        floor = 0.1 * want.abs().max() + 1e-38
        tolerances[f"tol.{k}"] = ((got - want).abs() / (want.abs() + floor)).max().reshape(1)
        print(f"PyTorch float32 against float64, {k}: {tolerances[f'tol.{k}'].item():.1e}")
    save_file({**reference, **tolerances}, PATH, metadata=metadata)
    sys.exit()
out = {k: v.float().contiguous() for k, v in out.items()}
save_file(out, PATH, metadata={"keys": json.dumps(keys)})
print("wrote", PATH, "losses", [round(l.item(), 6) for l in losses], "loss", loss.item())
subprocess.run([sys.executable, os.path.abspath(__file__), "--f32"] + sys.argv[1:], check=True)
if not CITY:  # one run writes both fixtures (`cargo xtask goldens` passes no flags)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--city"], check=True)
