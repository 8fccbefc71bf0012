"""CIFAR ResNet (option A, input normalization inside) as the release builds it, plus the
positional moments of A-FAN: the reference the golden fixtures and the step benchmark use."""
import torch, torch.nn as nn, torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.stride != 1 or self.pad:
            sc = x[:, :, ::2, ::2]
            sc = F.pad(sc, (0, 0, 0, 0, self.pad // 2, self.pad // 2))
        return F.relu(out + sc)


class CifarResNet(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)
        self.register_buffer("mean", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1))

    def head(self, x):
        x = (x - self.mean) / self.std
        return self.layer1(F.relu(self.bn1(self.conv1(x))))

    def tail(self, f):
        f = self.layer3(self.layer2(f))
        return self.fc(F.adaptive_avg_pool2d(f, 1).flatten(1))

    def forward(self, x):
        return self.tail(self.head(x))


def moments(f, eps=1e-5):
    mean = f.mean(dim=1, keepdim=True)
    std = (f.var(dim=1, keepdim=True, unbiased=True) + eps).sqrt()
    return mean, std


