"""Golden fixture: one A-FAN training step of the release's Faster R-CNN, re-stated line by line.

The release is VITA-Group/CV_A-FAN, `Detection/`. This script re-states, in float64, what its
`train_aug_final.py` does in one iteration of the loop (L73-162) with the flags of the script its
README runs (`sh/voc2007/clean50/090_final_setting1.sh`: `--pertub_idx_se 2 --gamma_se 1.0
--mix_layer 0011 --gamma_sd 0.1 --sd_adv_loss_weight 0.3 --only_roi_sd`), on a small C4 model:

- the backbone is torchvision's ResNet-18 run the way `backbone/resnet50_ori.py` runs its
  ResNet-50 (`forward(input_dict)`, flags `head` / `tail` / `clean`), without the in-model
  normalisation (`self.normal`): the input here is already normalised;
- the RPN has 64 channels instead of 512, anchors of 16 and 32 pixels (`--anchor_sizes`), so that
  a 64x96 image has anchors inside it;
- `generate_proposals` (RPN outputs -> NMS) is replaced by fixed proposals, the same in every
  pass: the release draws new ones in every pass from that pass's perturbed RPN output, so the
  step is a random function of the attack; fixing them (afan: `StepPlan::with_proposals`) leaves
  the balanced sampling as the only randomness, and there are fewer candidates than its caps
  (asserted), so every candidate is taken whatever `randperm` draws (it only reorders, and the
  losses are sums and means).

Every other line is the release's; each block names the file and lines it mirrors. Weights come
from the repository's hash rule (`hash_weights.py`) under the release's state-dict names, so the
fixture carries only the key list. Writes tests/fixtures/release_step_detection.safetensors
(read by tests/golden_release_detection.rs; CI never runs PyTorch):

    /work/torchenv/bin/python xtask/reference/release_step_detection.py
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torchvision.ops import roi_align

from hash_weights import value

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)

B, H, W = 2, 64, 96
NUM_CLASSES = 4  # background + 3 (the release's `dataset.num_classes()` counts background)
ANCHOR_RATIOS = [(1, 2), (1, 1), (2, 1)]  # config/config.py L12
ANCHOR_SIZES = [16, 32]  # --anchor_sizes (config/config.py L13 has 128, 256, 512)
RPN_CHANNELS = 64  # region_proposal_network.py L20 has 512
ANCHOR_BETA = 1.0  # config/train_config.py L12 (VOC scripts keep it)
PROPOSAL_BETA = 1.0  # train_config.py L13
GAMMA_SE, GAMMA_SD, EPS = 1.0, 0.1, 2.0  # 090_final_setting1.sh L12, L16; --eps default
MIX = "0011"  # 090_final_setting1.sh L14
ADV_WEIGHT = 0.3  # 090_final_setting1.sh L17
LAYER = 2  # 090_final_setting1.sh L13

# ---------------------------------------------------------------- the model (model.py L18-38)
resnet = torchvision.models.resnet18()
rpn_conv = nn.Conv2d(256, RPN_CHANNELS, 3, padding=1)  # region_proposal_network.py L19-22
n_anchors = len(ANCHOR_RATIOS) * len(ANCHOR_SIZES)
rpn_objectness = nn.Conv2d(RPN_CHANNELS, n_anchors * 2, 1)  # L35
rpn_transformer = nn.Conv2d(RPN_CHANNELS, n_anchors * 4, 1)  # L36
proposal_class = nn.Linear(512, NUM_CLASSES)  # model.py L235
proposal_transformer = nn.Linear(512, NUM_CLASSES * 4)  # model.py L236

modules = {"features": resnet, "rpn._features.0": rpn_conv, "rpn._anchor_objectness": rpn_objectness,
           "rpn._anchor_transformer": rpn_transformer, "detection._proposal_class": proposal_class,
           "detection._proposal_transformer": proposal_transformer}
keys = {}
with torch.no_grad():
    for prefix, m in modules.items():
        for name, t in m.state_dict().items():
            if name.endswith("num_batches_tracked") or name.startswith("fc."):
                continue
            # `hidden = children[-3]` (backbone/resnet50.py L26): layer4 is `detection.hidden`.
            key = f"{prefix}.{name}"
            if key.startswith("features.layer4."):
                key = "detection.hidden." + key[len("features.layer4."):]
            keys[key] = list(t.shape)
            t.copy_(torch.from_numpy(value(key, tuple(t.shape)).astype(np.float64)))
hidden = resnet.layer4

# Frozen: every batch norm in eval mode with no gradient (model.py L27-35, L47-48), and conv1,
# bn1, layer1 (backbone/resnet50.py L36-38).
resnet.eval()
for m in [resnet.conv1, resnet.bn1, resnet.layer1]:
    for p in m.parameters():
        p.requires_grad_(False)
for m in resnet.modules():
    if isinstance(m, nn.BatchNorm2d):
        for p in m.parameters():
            p.requires_grad_(False)


# ------------------------------------------------------------- bbox.py (BBox, static methods)
def to_center_base(b):
    return torch.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2,
                        b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], dim=-1)


def from_center_base(c):
    return torch.stack([c[..., 0] - c[..., 2] / 2, c[..., 1] - c[..., 3] / 2,
                        c[..., 0] + c[..., 2] / 2, c[..., 1] + c[..., 3] / 2], dim=-1)


def calc_transformer(src, dst):
    s, d = to_center_base(src), to_center_base(dst)
    return torch.stack([(d[..., 0] - s[..., 0]) / s[..., 2], (d[..., 1] - s[..., 1]) / s[..., 3],
                        torch.log(d[..., 2] / s[..., 2]), torch.log(d[..., 3] / s[..., 3])], dim=-1)


def iou(source, other):
    source, other = source.unsqueeze(dim=-2).repeat(1, 1, other.shape[-2], 1), \
        other.unsqueeze(dim=-3).repeat(1, source.shape[-2], 1, 1)
    source_area = (source[..., 2] - source[..., 0]) * (source[..., 3] - source[..., 1])
    other_area = (other[..., 2] - other[..., 0]) * (other[..., 3] - other[..., 1])
    iw = torch.clamp(torch.min(source[..., 2], other[..., 2]) - torch.max(source[..., 0], other[..., 0]), min=0)
    ih = torch.clamp(torch.min(source[..., 3], other[..., 3]) - torch.max(source[..., 1], other[..., 1]), min=0)
    inter = iw * ih
    return inter / (source_area + other_area - inter)


def inside(b, left, top, right, bottom):
    return (b[..., 0] >= left) * (b[..., 1] >= top) * (b[..., 2] <= right) * (b[..., 3] <= bottom)


# ------------------------------------------------------- extension/functional.py L6-10
def beta_smooth_l1_loss(input, target, beta):
    diff = torch.abs(input - target)
    loss = torch.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta)
    return loss.sum() / (input.numel() + 1e-8)


# ------------------------------------------- backbone/resnet50_ori.py ResNet.forward L104-167
def backbone_head(x, out_idx):
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    x = resnet.layer1(x)
    if out_idx >= 2:
        x = resnet.layer2(x)
    if out_idx >= 3:
        x = resnet.layer3(x)
    return x


def backbone_tail(adv, out_idx):
    x = adv
    if out_idx == 1:
        x = resnet.layer2(x)
    if out_idx <= 2:
        x = resnet.layer3(x)
    return x


def backbone_clean(x):
    return backbone_head(x, 3)


# ------------------------------------------ rpn/region_proposal_network.py L198-228
def generate_anchors(image_width, image_height, num_x_anchors, num_y_anchors):
    center_ys = np.linspace(start=0, stop=image_height, num=num_y_anchors + 2)[1:-1]
    center_xs = np.linspace(start=0, stop=image_width, num=num_x_anchors + 2)[1:-1]
    ratios = np.array(ANCHOR_RATIOS)
    ratios = ratios[:, 0] / ratios[:, 1]
    sizes = np.array(ANCHOR_SIZES)
    center_ys, center_xs, ratios, sizes = np.meshgrid(center_ys, center_xs, ratios, sizes, indexing='ij')
    center_ys, center_xs = center_ys.reshape(-1), center_xs.reshape(-1)
    ratios, sizes = ratios.reshape(-1), sizes.reshape(-1)
    widths = sizes * np.sqrt(1 / ratios)
    heights = sizes * np.sqrt(ratios)
    c = np.stack((center_xs, center_ys, widths, heights), axis=1)
    # `.float()`, then the corners in float32 (L225-226).
    return from_center_base(torch.from_numpy(c).float()).double()


# ---------------------------------------- rpn/region_proposal_network.py forward L49-104, loss L175-196
def rpn_loss(anchor_objectnesses, anchor_transformers, gt_anchor_objectnesses, gt_anchor_transformers,
             batch_size, batch_indices):
    cross_entropies = torch.empty(batch_size)
    smooth_l1_losses = torch.empty(batch_size)
    for batch_index in range(batch_size):
        selected_indices = (batch_indices == batch_index).nonzero().view(-1)
        cross_entropy = F.cross_entropy(input=anchor_objectnesses[selected_indices],
                                        target=gt_anchor_objectnesses[selected_indices])
        fg_indices = gt_anchor_objectnesses[selected_indices].nonzero().view(-1)
        smooth_l1_loss = beta_smooth_l1_loss(input=anchor_transformers[selected_indices][fg_indices],
                                             target=gt_anchor_transformers[selected_indices][fg_indices],
                                             beta=ANCHOR_BETA)
        cross_entropies[batch_index] = cross_entropy
        smooth_l1_losses[batch_index] = smooth_l1_loss
    return cross_entropies, smooth_l1_losses


def rpn_forward(features, anchor_bboxes, gt_bboxes_batch, image_width, image_height):
    batch_size = features.shape[0]
    features = F.relu(rpn_conv(features))
    anchor_objectnesses = rpn_objectness(features)
    anchor_transformers = rpn_transformer(features)
    anchor_objectnesses = anchor_objectnesses.permute(0, 2, 3, 1).contiguous().view(batch_size, -1, 2)
    anchor_transformers = anchor_transformers.permute(0, 2, 3, 1).contiguous().view(batch_size, -1, 4)
    inside_indices = inside(anchor_bboxes, 0, 0, image_width, image_height).nonzero().unbind(dim=1)
    inside_anchor_bboxes = anchor_bboxes[inside_indices].view(batch_size, -1, anchor_bboxes.shape[2])
    inside_anchor_objectnesses = anchor_objectnesses[inside_indices].view(batch_size, -1, anchor_objectnesses.shape[2])
    inside_anchor_transformers = anchor_transformers[inside_indices].view(batch_size, -1, anchor_transformers.shape[2])
    labels = torch.full((batch_size, inside_anchor_bboxes.shape[1]), -1, dtype=torch.long)
    ious = iou(inside_anchor_bboxes, gt_bboxes_batch)
    anchor_max_ious, anchor_assignments = ious.max(dim=2)
    gt_max_ious, gt_assignments = ious.max(dim=1)
    anchor_additions = ((ious > 0) & (ious == gt_max_ious.unsqueeze(dim=1))).nonzero()[:, :2].unbind(dim=1)
    labels[anchor_max_ious < 0.3] = 0
    labels[anchor_additions] = 1
    labels[anchor_max_ious >= 0.7] = 1
    STATS.setdefault("rpn", [(int((l == 1).sum()), int((l >= 0).sum())) for l in labels])
    fg_indices = (labels == 1).nonzero()
    bg_indices = (labels == 0).nonzero()
    # Fewer candidates than the caps: randperm below only reorders (see the module docstring).
    assert len(fg_indices) <= 128 * batch_size and len(fg_indices) + len(bg_indices) <= 256 * batch_size
    fg_indices = fg_indices[torch.randperm(len(fg_indices))[:min(len(fg_indices), 128 * batch_size)]]
    bg_indices = bg_indices[torch.randperm(len(bg_indices))[:256 * batch_size - len(fg_indices)]]
    selected_indices = torch.cat([fg_indices, bg_indices], dim=0)
    selected_indices = selected_indices[torch.randperm(len(selected_indices))].unbind(dim=1)
    inside_anchor_bboxes = inside_anchor_bboxes[selected_indices]
    gt_bboxes = gt_bboxes_batch[selected_indices[0], anchor_assignments[selected_indices]]
    gt_anchor_objectnesses = labels[selected_indices]
    gt_anchor_transformers = calc_transformer(inside_anchor_bboxes, gt_bboxes)
    batch_indices = selected_indices[0]
    anchor_objectness_losses, anchor_transformer_losses = rpn_loss(
        inside_anchor_objectnesses[selected_indices], inside_anchor_transformers[selected_indices],
        gt_anchor_objectnesses, gt_anchor_transformers, batch_size, batch_indices)
    return anchor_objectnesses, anchor_transformers, anchor_objectness_losses, anchor_transformer_losses


def generate_proposals():
    """Stands for `self.rpn.generate_proposals(...).detach()` (model.py L71, L129): the fixed
    proposals of this step (see the module docstring)."""
    return PROPOSALS.clone()


# ------------------------------------------------------------------ roi/pooler.py L18-43
def pooler_apply(features, proposal_bboxes, proposal_batch_indices):
    # maskrcnn-benchmark's ROIAlign (support/src/cpu/ROIAlign_cpu.cpp) is torchvision's with
    # aligned=False; sampling_ratio=0 is adaptive in both.
    pool = roi_align(features, torch.cat([proposal_batch_indices.view(-1, 1).double(), proposal_bboxes], dim=1),
                     (7 * 2, 7 * 2), spatial_scale=1 / 16, sampling_ratio=0, aligned=False)
    return F.max_pool2d(input=pool, kernel_size=2, stride=2)


# ------------------------------------------------------------- model.py Detection L241-379
def detection_loss(proposal_classes, proposal_transformers, gt_proposal_classes, gt_proposal_transformers,
                   batch_size, batch_indices):
    proposal_transformers = proposal_transformers.view(-1, NUM_CLASSES, 4)[
        torch.arange(end=len(proposal_transformers), dtype=torch.long), gt_proposal_classes]
    # `dtype=torch.float` (L239): the float32 values of 0.1 and 0.2.
    std = torch.tensor([.1, .1, .2, .2], dtype=torch.float32).double()
    gt_proposal_transformers = (gt_proposal_transformers - 0) / std
    cross_entropies = torch.empty(batch_size)
    smooth_l1_losses = torch.empty(batch_size)
    for batch_index in range(batch_size):
        selected_indices = (batch_indices == batch_index).nonzero().view(-1)
        cross_entropy = F.cross_entropy(input=proposal_classes[selected_indices],
                                        target=gt_proposal_classes[selected_indices])
        fg_indices = gt_proposal_classes[selected_indices].nonzero().view(-1)
        smooth_l1_loss = beta_smooth_l1_loss(input=proposal_transformers[selected_indices][fg_indices],
                                             target=gt_proposal_transformers[selected_indices][fg_indices],
                                             beta=PROPOSAL_BETA)
        cross_entropies[batch_index] = cross_entropy
        smooth_l1_losses[batch_index] = smooth_l1_loss
    return cross_entropies, smooth_l1_losses


def sample_rois(features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch):
    """model.py L262-285 (identical in the `clean` and `head` branches)."""
    batch_size = features.shape[0]
    labels = torch.full((batch_size, proposal_bboxes.shape[1]), -1, dtype=torch.long)
    ious = iou(proposal_bboxes, gt_bboxes_batch)
    proposal_max_ious, proposal_assignments = ious.max(dim=2)
    labels[proposal_max_ious < 0.5] = 0
    fg_masks = proposal_max_ious >= 0.5
    if len(fg_masks.nonzero()) > 0:
        labels[fg_masks] = gt_classes_batch[fg_masks.nonzero()[:, 0], proposal_assignments[fg_masks]]
    STATS.setdefault("roi", [(int((l > 0).sum()), int((l >= 0).sum())) for l in labels])
    fg_indices = (labels > 0).nonzero()
    bg_indices = (labels == 0).nonzero()
    assert len(fg_indices) <= 32 * batch_size and len(fg_indices) + len(bg_indices) <= 128 * batch_size
    fg_indices = fg_indices[torch.randperm(len(fg_indices))[:min(len(fg_indices), 32 * batch_size)]]
    bg_indices = bg_indices[torch.randperm(len(bg_indices))[:128 * batch_size - len(fg_indices)]]
    selected_indices = torch.cat([fg_indices, bg_indices], dim=0)
    selected_indices = selected_indices[torch.randperm(len(selected_indices))].unbind(dim=1)
    proposal_bboxes = proposal_bboxes[selected_indices]
    SAMPLED.append(proposal_bboxes)
    gt_bboxes = gt_bboxes_batch[selected_indices[0], proposal_assignments[selected_indices]]
    gt_proposal_classes = labels[selected_indices]
    gt_proposal_transformers = calc_transformer(proposal_bboxes, gt_bboxes)
    batch_indices = selected_indices[0]
    pool = pooler_apply(features, proposal_bboxes, batch_indices)
    return pool, gt_proposal_classes, gt_proposal_transformers, batch_indices


def detection_clean(features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch):
    """`return_type == 'clean'`, training (L261-296)."""
    batch_size = features.shape[0]
    pool, gt_proposal_classes, gt_proposal_transformers, batch_indices = sample_rois(
        features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch)
    hidden = hidden_forward(pool)
    hidden = hidden.view(hidden.shape[0], -1)
    proposal_classes = proposal_class(hidden)
    proposal_transformers = proposal_transformer(hidden)
    return detection_loss(proposal_classes, proposal_transformers, gt_proposal_classes,
                          gt_proposal_transformers, batch_size, batch_indices)


def hidden_forward(pool):
    return F.adaptive_max_pool2d(input=hidden(pool), output_size=1)  # L286-287, L326-327


def detection_head(features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch):
    """`return_type == 'head'` (L298-335)."""
    batch_size = features.shape[0]
    pool, gt_proposal_classes, gt_proposal_transformers, batch_indices = sample_rois(
        features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch)
    SD_ROIS.append(torch.cat([batch_indices.view(-1, 1).double(), SAMPLED[-1]], dim=1))
    return {"roi_feature_map": hidden_forward(pool), "gt_proposal_classes": gt_proposal_classes,
            "gt_proposal_transformers": gt_proposal_transformers, "batch_size": batch_size,
            "batch_indices": batch_indices}


def detection_tail(d):
    """`return_type == 'tail'` (L337-351)."""
    hidden_ = d["roi_feature_map"].view(d["roi_feature_map"].shape[0], -1)
    return detection_loss(proposal_class(hidden_), proposal_transformer(hidden_), d["gt_proposal_classes"],
                          d["gt_proposal_transformers"], d["batch_size"], d["batch_indices"])


# --------------------------------------------------------------- model.py Model.forward L40-152
def model_forward(input_dict, gt_bboxes_batch, gt_classes_batch):
    if input_dict["flag"] == "head":  # L45-51
        return backbone_head(input_dict["x"], input_dict["out_idx"])
    if type(input_dict["out_idx"]) == int:  # L58-75
        if input_dict["flag"] == "tail":
            features = backbone_tail(input_dict["adv"], input_dict["out_idx"])
        else:
            features = backbone_clean(input_dict["x"])
        batch_size, _, image_height, image_width = input_dict["x"].shape
        _, _, fh, fw = features.shape
        anchor_bboxes = generate_anchors(image_width, image_height, fw, fh).repeat(batch_size, 1, 1)
        _, _, anchor_objectness_losses, anchor_transformer_losses = rpn_forward(
            features, anchor_bboxes, gt_bboxes_batch, image_width, image_height)
        proposal_bboxes = generate_proposals()
        proposal_class_losses, proposal_transformer_losses = detection_clean(
            features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch)
        return anchor_objectness_losses, anchor_transformer_losses, proposal_class_losses, proposal_transformer_losses
    if input_dict["out_idx"] == "roi_head":  # L115-137
        features = backbone_clean(input_dict["x"])
        batch_size, _, image_height, image_width = input_dict["x"].shape
        _, _, fh, fw = features.shape
        anchor_bboxes = generate_anchors(image_width, image_height, fw, fh).repeat(batch_size, 1, 1)
        _, _, anchor_objectness_losses, anchor_transformer_losses = rpn_forward(
            features, anchor_bboxes, gt_bboxes_batch, image_width, image_height)
        proposal_bboxes = generate_proposals()
        roi_output_dict = detection_head(features, proposal_bboxes, gt_classes_batch, gt_bboxes_batch)
        return {"anchor_objectness_losses": anchor_objectness_losses,
                "anchor_transformer_losses": anchor_transformer_losses, "roi_output_dict": roi_output_dict}
    if input_dict["out_idx"] == "roi_tail":  # L140-150
        d = input_dict["adv"]
        proposal_class_losses, proposal_transformer_losses = detection_tail(d["roi_output_dict"])
        return d["anchor_objectness_losses"], d["anchor_transformer_losses"], proposal_class_losses, proposal_transformer_losses
    assert False


# ------------------------------------------------------------------------ attack_algo.py
def compute_loss(loss1, loss2, loss3, loss4):  # L21-27
    return loss1.mean() + loss2.mean() + loss3.mean() + loss4.mean()


grad0 = {}
STATS = {}
SAMPLED, SD_ROIS = [], []  # what sample_rois drew, and the regions of the roi_head pass


def PGD(x, image_batch, y, steps, eps, gamma, idx):  # L48-74, no randinit, no clip
    x_adv = x.clone().requires_grad_(True)
    for t in range(steps):
        inputs = {'x': image_batch, 'adv': x_adv, 'out_idx': idx, 'flag': 'tail'}
        loss = compute_loss(*model_forward(inputs, y['bb'], y['lb']))
        g = torch.autograd.grad(loss, x_adv, only_inputs=True)[0]
        grad0.setdefault("se", g.detach().clone())
        x_adv.data.add_(gamma * torch.sign(g.data))
    return x_adv


def rpn_roi_PGD(rpn_roi_output_dict, y, steps, eps, gamma):  # L77-114, layer 'roi', only_roi_loss
    roi_output_dict = rpn_roi_output_dict
    x_adv = roi_output_dict['roi_output_dict']['roi_feature_map'].detach().clone().requires_grad_(True)
    roi_output_dict['roi_output_dict']['roi_feature_map'] = x_adv
    for t in range(steps):
        inputs = {'adv': roi_output_dict, 'out_idx': 'roi_tail', 'flag': 'clean'}
        losses = model_forward(inputs, y['bb'], y['lb'])
        loss = losses[2].mean() + losses[3].mean()
        g = torch.autograd.grad(loss, x_adv, only_inputs=True)[0]
        grad0.setdefault("sd", g.detach().clone())
        x_adv.data.add_(gamma * torch.sign(g.data))
    roi_output_dict['roi_output_dict']['roi_feature_map'] = x_adv
    return roi_output_dict


def get_sample_points(pointx, pointy, number):  # L236-245
    percent = 1.0 / (number - 1)
    final_list = [pointx]
    for i in [i * percent for i in range(1, number - 1)]:
        final_list.append(torch.lerp(pointx, pointy, i))
    final_list.append(pointy)
    return final_list


def mix_feature(clean_feature, adv_feature):  # L254-265
    eps = 1e-5
    mean_cl = clean_feature.mean(dim=1, keepdim=True)
    std_cl = (clean_feature.var(dim=1, keepdim=True) + eps).sqrt()
    mean_adv = adv_feature.mean(dim=1, keepdim=True)
    std_adv = (adv_feature.var(dim=1, keepdim=True) + eps).sqrt()
    clean_feature = (clean_feature - mean_cl) / std_cl
    return (clean_feature * std_adv) + mean_adv


# -------------------------------------------------------------------------------- the data
image_batch = torch.randn(B, 3, H, W).float().double()
bboxes_batch = torch.tensor([[[8.0, 6.0, 40.0, 38.0], [50.0, 20.0, 90.0, 58.0]],
                             [[4.0, 30.0, 36.0, 62.0], [40.0, 4.0, 72.0, 28.0]]])
labels_batch = torch.tensor([[1, 3], [2, 1]])


def jitter(b, d):
    return [b[0] + d[0], b[1] + d[1], b[2] + d[2], b[3] + d[3]]


# Per image: a near copy of each object (foreground), looser copies (foreground or background by
# IoU) and boxes elsewhere (background).
shifts = [[0, 0, 0, 0], [2, -1.5, 1, 2.5], [-6, 4, 5, -3], [10, 8, 12, 6]]
props = []
for i in range(B):
    p = [jitter(g, s) for g in bboxes_batch[i].tolist() for s in shifts]
    p += [[0.0, 0.0, 20.0, 16.0], [60.0, 40.0, 95.5, 63.0], [30.5, 10.0, 50.0, 50.0], [70.0, 0.0, 96.0, 20.0]]
    props.append(p)
PROPOSALS = torch.tensor(props)

# -------------------------------------------------- train_aug_final.py L73-162, one iteration
f1, f2, f3, f4 = (int(c) for c in MIX)
y = {'bb': bboxes_batch, 'lb': labels_batch}
inputs_all_se = {"x": image_batch, "adv": None, "out_idx": LAYER, "flag": 'head'}
inputs_all_sd = {"x": image_batch, "adv": None, "out_idx": 'roi_head', "flag": 'clean'}

feature_map_se = model_forward(inputs_all_se, bboxes_batch, labels_batch)
feature_map_se = feature_map_se.detach()
rpn_roi_output_dict = model_forward(inputs_all_sd, bboxes_batch, labels_batch)
clean_feature_map_sd = rpn_roi_output_dict['roi_output_dict']['roi_feature_map'].detach()

feature_adv_se = PGD(feature_map_se, image_batch, y, steps=1, eps=EPS / 255, gamma=GAMMA_SE / 255, idx=LAYER)
adv_rpn_roi_output_dict = rpn_roi_PGD(rpn_roi_output_dict, y, steps=1, eps=EPS / 255, gamma=GAMMA_SD / 255)
adv_feature_map_sd = adv_rpn_roi_output_dict['roi_output_dict']['roi_feature_map'].detach()
adv_rpn_roi_output_dict['roi_output_dict']['roi_feature_map'] = adv_feature_map_sd  # no --mix_sd, no noise

adv_list_se = get_sample_points(feature_map_se, feature_adv_se, 5)
for i, f in enumerate([f1, f2, f3, f4], start=1):
    if f:
        adv_list_se[i] = mix_feature(feature_map_se, adv_list_se[i])

clean_input_dict = {'x': image_batch, "adv": None, 'out_idx': 0, 'flag': 'clean'}
passes = [clean_input_dict] + [{'x': image_batch, 'adv': adv_list_se[i], 'out_idx': LAYER, 'flag': 'tail'}
                               for i in range(1, 5)]
passes.append({'adv': adv_rpn_roi_output_dict, 'out_idx': 'roi_tail', 'flag': 'clean'})
parts = [model_forward(p, bboxes_batch, labels_batch) for p in passes]
losses = [compute_loss(*p) for p in parts]
loss = ((losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 3.0) * (1 - ADV_WEIGHT) \
    + (losses[5] / 3.0) * ADV_WEIGHT
loss.backward()

# ----------------------------------------------------------------------------- the fixture
out = {
    "image": image_batch, "gt_boxes": bboxes_batch, "gt_labels": labels_batch.double(), "proposals": PROPOSALS,
    "feature_se": feature_map_se, "adv_se": feature_adv_se.detach(), "grad0_se": grad0["se"],
    "sd_rois": SD_ROIS[0], "clean_sd": clean_feature_map_sd, "adv_sd": adv_feature_map_sd, "grad0_sd": grad0["sd"],
    "loss": loss.detach().reshape(1), "point_losses": torch.stack([l.detach() for l in losses]),
    "clean_parts": torch.stack([t.detach().mean() for t in parts[0]]),
}
named = {"features": resnet, "detection.hidden": hidden, "rpn._features.0": rpn_conv,
         "rpn._anchor_objectness": rpn_objectness, "rpn._anchor_transformer": rpn_transformer,
         "detection._proposal_class": proposal_class, "detection._proposal_transformer": proposal_transformer}
# Small parameters of every trained part (the fixture carries no large tensor).
GRADS = ["features.layer2.0.downsample.0.weight", "features.layer3.0.downsample.0.weight",
         "rpn._features.0.bias", "rpn._anchor_objectness.weight", "rpn._anchor_objectness.bias",
         "rpn._anchor_transformer.weight", "detection.hidden.0.downsample.0.weight",
         "detection._proposal_class.weight",
         "detection._proposal_class.bias", "detection._proposal_transformer.weight",
         "detection._proposal_transformer.bias"]
params = {}
for prefix, m in named.items():
    for n, p in m.named_parameters():
        params[f"{prefix}.{n}"] = p
for k in GRADS:
    out[f"grad.{k}"] = params[k].grad
# What the frozen part never gets.
assert resnet.layer1[0].conv1.weight.grad is None and resnet.bn1.weight.grad is None
print({k: tuple(v.shape) for k, v in out.items()})
print("(foreground, sampled) per image:", STATS)
out = {k: v.float().contiguous() for k, v in out.items()}
path = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/release_step_detection.safetensors")
save_file(out, path, metadata={"keys": json.dumps(keys)})
print("wrote", path, "losses", [round(l.item(), 6) for l in losses], "loss", loss.item())
