"""The release's CIFAR ResNet-s, re-stated from VITA-Group/CV_A-FAN `Classification/resnet_s.py`,
with the mapping of its `sequential_model.N` entries to the state-dict names afan loads
(`xtask/reference/cifar_resnet.py`'s, torchvision-style). Used by the release-step references
`release_step_classification*.py`.

The release slices one `nn.Sequential` (`forward(x, end_point, start_point)` runs
`sequential_model[start_point:end_point]`, resnet_s.py L119-121); every "split point" is an index
into it: 0 input normalization, 1 conv, 2 bn, 3 relu, then one entry per block, then pool,
flatten, linear.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from hash_weights import value


class NormalizeByChannelMeanStd(nn.Module):
    """advertorch.utils.NormalizeByChannelMeanStd (imported by resnet_s.py L28): buffers `mean`,
    `std`; `(x - mean[None, :, None, None]) / std[None, :, None, None]`."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x):
        return x.sub(self.mean[None, :, None, None]).div(self.std[None, :, None, None])


class LambdaLayer(nn.Module):
    """resnet_s.py L40-46."""

    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class BasicBlock(nn.Module):
    """resnet_s.py L48-77, option A (the only one the release builds)."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaLayer(lambda x: F.pad(
                x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):
    """resnet_s.py L79-121 (`num_blocks` per stage: 3 for ResNet-20, 9 for ResNet-56)."""

    def __init__(self, num_blocks, num_classes=10, init_weight=1.0, all_layers=9):
        super().__init__()
        self.in_planes = 16
        self.all_layers = all_layers
        layers = [
            NormalizeByChannelMeanStd(mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616]),
            nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        ]
        for planes, first_stride, n in zip((16, 32, 64), (1, 2, 2), num_blocks):
            for stride in [first_stride] + [1] * (n - 1):
                layers.append(BasicBlock(self.in_planes, planes, stride))
                self.in_planes = planes
        layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(64, num_classes)]
        self.sequential_model = nn.Sequential(*layers)
        # L113-114: the learnable variant's per-point weights live on the model.
        self.w = nn.Parameter(torch.FloatTensor(self.all_layers), requires_grad=True)
        self.w.data.fill_(init_weight)

    def forward(self, x, end_point=None, start_point=0):
        end_point = len(self.sequential_model) if end_point is None else end_point
        return self.sequential_model[start_point:end_point](x)


def block_names(num_blocks):
    """`layerS.I` for each block entry, in sequential order."""
    return [f"layer{s + 1}.{i}" for s, n in enumerate(num_blocks) for i in range(n)]


def end_point(num_blocks, point):
    """The release's `end_point` of a split-point name: `stem` is 4 (after the ReLU), block k
    (0-based over all stages) is 5 + k; `layerS` is the stage's last block."""
    names = block_names(num_blocks)
    if point == "stem":
        return 4
    if point in ("layer1", "layer2", "layer3"):
        s = int(point[-1])
        point = f"{point}.{num_blocks[s - 1] - 1}"
    return 5 + names.index(point)


def afan_keys(model, num_blocks):
    """Pairs (afan / cifar_resnet.py state-dict name, tensor of `model`), buffers included."""
    seq = model.sequential_model
    pairs = []

    def add(prefix, module):
        for k, v in module.state_dict(keep_vars=True).items():
            if k.endswith("num_batches_tracked"):
                continue
            pairs.append((f"{prefix}.{k}", v))

    add("conv1", seq[1])
    add("bn1", seq[2])
    for k, name in enumerate(block_names(num_blocks)):
        add(name, seq[4 + k])
    add("fc", seq[len(seq) - 1])
    return pairs


def hash_initialise(model, num_blocks):
    """Every parameter and running statistic from `hash_weights.value` of its afan name (so the
    Rust test rebuilds them without a weights fixture), in float64."""
    with torch.no_grad():
        for key, t in afan_keys(model, num_blocks):
            t.copy_(torch.from_numpy(value(key, tuple(t.shape)).astype("float64")))
