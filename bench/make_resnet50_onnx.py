#!/usr/bin/env python3
"""A ResNet-50 (He et al. 2016; torchvision's layout, written out here because torchvision
is not needed anywhere else) exported to ONNX, with a few random 224×224 test images as
`test.npz`: the file behind BENCHMARKS.md's load-time and peak-memory figures for a
~100 MB model.

Usage: bench/make_resnet50_onnx.py OUT_DIR   (writes OUT_DIR/resnet50.onnx, OUT_DIR/test.npz)
"""

import os
import sys

import numpy as np
import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = ResNet50().eval()
    path = os.path.join(out, "resnet50.onnx")
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), path, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"],
                      output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 3, 224, 224), dtype=np.uint8)
    y = np.arange(4, dtype=np.int64)
    np.savez(os.path.join(out, "test.npz"), x=x, y=y)
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB, {params:,} parameters")


if __name__ == "__main__":
    main()
