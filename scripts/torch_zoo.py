#!/usr/bin/env python3
"""PyTorch definitions of advtrain's four zoo architectures, layer for layer.

A model advtrain trained and exported with `advtrain::model::save_pytorch_state_dict` loads
into the module `build` returns with a strict `load_state_dict`, and gives advtrain's logits:

    import torch
    from safetensors.torch import load_file
    from torch_zoo import build

    net = build("small-cnn", 1, 28, 28, 10)                  # the run's kind and shape
    net.load_state_dict(load_file("small-cnn.pt.safetensors"), strict=True)
    net.eval()                                             # batch norm: running statistics
    logits = net(images)                                   # images in [0, 1], [N, C, H, W]

The other way, `net.state_dict()` saved with `safetensors.torch.save_file` loads into
advtrain with `advtrain::model::load_pytorch_state_dict`.

Normalisation. An advtrain model may normalise its input inside the model, `(x - mean) / std`
per channel (the `[model] normalization` table of a run's config.toml). That is no parameter,
so the exported file does not hold it: pass the same `mean` and `std` to `build`, and the
module applies it first, as advtrain does. They are non-persistent buffers, so they are not in
`state_dict()` and the keys are the same with or without normalisation. Without them the module
takes its input as it is (and you may normalise before calling it).

The architectures (see crates/advtrain/src/model/*.rs):
  small-cnn        conv 16 4x4/2 pad 1, ReLU, conv 32 4x4/2 pad 1, ReLU, flatten, FC 100, ReLU,
                   FC classes (Wong et al. 2020)
  madry-cnn        conv 32 5x5 pad 2, ReLU, max-pool 2, conv 64 5x5 pad 2, ReLU, max-pool 2,
                   flatten, FC 1024, ReLU, FC classes (Madry et al. 2018)
  mlp              flatten, FC 256, ReLU, FC 256, ReLU, FC classes
  preact-resnet18  pre-activation ResNet-18 (He et al. 2016) with the names of the adversarial-
                   training literature's PyTorch code (Wong et al. 2020, Rice et al. 2020):
                   conv1, layer1..layer4 of two PreActBlocks, bn, linear; a block's projection
                   shortcut is `shortcut.0`. Global average pooling (avg_pool2d(4) on 32x32).
Flattening is PyTorch's and burn's: channel-major, [N, C*H*W].
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

KINDS = ("small-cnn", "madry-cnn", "mlp", "preact-resnet18")


class Normalize(nn.Module):
    """(x - mean) * (1 / std) per channel, as advtrain computes it (bit for bit in float32);
    the identity without mean/std. Non-persistent buffers: not in the state dict."""

    def __init__(self, channels, mean=None, std=None):
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.enabled = mean is not None
        if self.enabled:
            if len(mean) != channels or len(std) != channels:
                raise ValueError(f"{len(mean)} means and {len(std)} stds for {channels} channels")
            if any(not s > 0 for s in std):
                raise ValueError("std must be positive")
            mean = torch.tensor(mean, dtype=torch.float32).reshape(1, channels, 1, 1)
            inv_std = 1.0 / torch.tensor(std, dtype=torch.float32).reshape(1, channels, 1, 1)
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("inv_std", inv_std, persistent=False)

    def forward(self, x):
        return (x - self.mean) * self.inv_std if self.enabled else x


class SmallCnn(nn.Module):
    def __init__(self, channels, height, width, num_classes, mean=None, std=None):
        super().__init__()
        down = lambda n: (n + 2 - 4) // 2 + 1  # 4x4, stride 2, padding 1
        h, w = down(down(height)), down(down(width))
        self.normalize = Normalize(channels, mean, std)
        self.conv1 = nn.Conv2d(channels, 16, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2, padding=1)
        self.fc1 = nn.Linear(32 * h * w, 100)
        self.fc2 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(self.normalize(x)))
        x = F.relu(self.conv2(x))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class MadryCnn(nn.Module):
    def __init__(self, channels, height, width, num_classes, mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(channels, mean, std)
        self.conv1 = nn.Conv2d(channels, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        # Two 2x2 max-pools, floor mode: a ragged edge is dropped.
        self.fc1 = nn.Linear(64 * (height // 2 // 2) * (width // 2 // 2), 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(self.normalize(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class Mlp(nn.Module):
    def __init__(self, channels, height, width, num_classes, mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(channels, mean, std)
        self.fc1 = nn.Linear(channels * height * width, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward(self, x):
        x = torch.flatten(self.normalize(x), 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class PreActBlock(nn.Module):
    """BN, ReLU, conv 3x3 (stride), BN, ReLU, conv 3x3, plus the shortcut: the input itself,
    or a 1x1 strided convolution of the *pre-activated* input where the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))
        else:
            self.shortcut = None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, channels, height, width, num_classes, mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(channels, mean, std)
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        cin = 64
        for i, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1))
            setattr(self, f"layer{i + 1}", layer)
            cin = cout
        self.bn = nn.BatchNorm2d(512)  # eps 1e-5, momentum 0.1: burn's defaults too
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


def build(kind, channels, height, width, num_classes, mean=None, std=None):
    """The PyTorch module of advtrain's `kind` for [N, channels, height, width] images in
    [0, 1] and `num_classes` logits, normalising its input with `mean`/`std` (one value per
    channel) first when they are given, as the advtrain model with that normalisation does.
    Freshly initialised by PyTorch; load advtrain's weights with `load_state_dict`."""
    classes = {
        "small-cnn": SmallCnn,
        "madry-cnn": MadryCnn,
        "mlp": Mlp,
        "preact-resnet18": PreActResNet18,
    }
    if kind not in classes:
        raise ValueError(f"unknown model '{kind}': expected one of {', '.join(KINDS)}")
    return classes[kind](channels, height, width, num_classes, mean=mean, std=std)
