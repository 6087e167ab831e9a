#!/usr/bin/env python3
"""Exports the small ONNX test models in crates/advtrain/tests/fixtures/onnx/ from PyTorch,
with PyTorch's own outputs beside each, for advtrain's import tests to match.

Not needed by the build or CI (the fixtures are committed). Regenerate with
    /work/venv/bin/python scripts/make_onnx_fixtures.py
in an environment with torch, onnx and onnxscript (PyTorch 2.15 made the committed files).

For each model NAME it writes NAME.onnx and NAME.safetensors holding:
  x            a batch of images in [0, 1] (what advtrain feeds)
  y            labels (as float32)
  logits       PyTorch's logits in evaluation mode
  grad         d(sum of cross-entropy)/dx in evaluation mode
and for the batch-norm models, after one training-mode forward pass:
  train_logits               the training-mode logits (batch statistics)
  running_mean.<init name>   the running means PyTorch holds afterwards
  running_var.<init name>    the running variances
"""
import os
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "advtrain", "tests", "fixtures", "onnx")


class CnnBn(nn.Module):
    """Conv-BN-ReLU-MaxPool, a strided padded conv, BN, dropout, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(self.drop(torch.flatten(x, 1)))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class ResNet(nn.Module):
    """A residual CNN: stem, an identity block, a strided projection block, global pooling."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block1 = Block(8, 8, 1)
        self.block2 = Block(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class TinyVit(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm transformer block with
    two-head attention (MatMul, Softmax) and a GELU MLP, LayerNorm, linear head."""

    def __init__(self, dim=16, heads=2, patch=7):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        n = (28 // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.1)
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        b, n, d = x.shape
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.pos
        h = self.ln1(x)
        q, k, v = self.qkv(h).reshape(b, n + 1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        h = (att @ v).transpose(1, 2).reshape(b, n + 1, d)
        x = x + self.proj(h)
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln(x)[:, 0])


class FlatMlp(nn.Module):
    """A flattened [N, 784] input, exported for a fixed batch of 4 (advtrain runs it in
    chunks), with its normalisation written into the graph."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.2860))
        self.register_buffer("std", torch.tensor(0.3530))
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.leaky_relu(self.fc1((x - self.mean) / self.std), 0.1))


class NhwcCnn(nn.Module):
    """Takes channels-last images [N, 28, 28, 1], as TensorFlow models do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=2, padding=2)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        x = F.hardswish(self.conv(x))
        x = F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False)
        x = x[:, :, :14, :14]
        return self.fc(torch.sigmoid(x).flatten(1))


def reference(model, x, y, nhwc=False):
    model.eval()
    xi = x.permute(0, 2, 3, 1).contiguous() if nhwc else x
    xg = xi.clone().requires_grad_(True)
    logits = model(xg)
    F.cross_entropy(logits, y, reduction="sum").backward()
    grad = xg.grad.permute(0, 3, 1, 2).contiguous() if nhwc else xg.grad
    return {"x": x, "y": y.float(), "logits": logits.detach(), "grad": grad}


def bn_training_step(model, x, onnx_path):
    """One training-mode forward pass; the running statistics it leaves, under the names of
    the ONNX initializers that hold them."""
    names = {}
    graph = onnx.load(onnx_path).graph
    inits = {i.name for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "BatchNormalization":
            names[n.input[3]] = n.input[4]
    model.train()
    # Batch norm in training mode; dropout stays off (advtrain runs it as the identity).
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        train_logits = model(x)
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    nodes = [n for n in graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) == len(nodes), "one ONNX BatchNormalization per torch BatchNorm2d, in order"
    out = {"train_logits": train_logits}
    for bn, node in zip(bns, nodes):
        assert node.input[3] in inits and node.input[4] in inits
        out["running_mean." + node.input[3]] = bn.running_mean.clone()
        out["running_var." + node.input[4]] = bn.running_var.clone()
    return out


def export(name, model, x, y, *, dynamo=False, opset=13, fixed_batch=False, nhwc=False):
    path = os.path.join(OUT, name + ".onnx")
    model.eval()
    arg = x.permute(0, 2, 3, 1).contiguous() if nhwc else x
    if fixed_batch:
        arg = arg.reshape(arg.shape[0], -1)
    if dynamo:
        torch.onnx.export(model, (arg,), path, dynamo=True, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                          external_data=False)
    else:
        axes = None if fixed_batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
        torch.onnx.export(model, (arg,), path, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"], dynamic_axes=axes,
                          do_constant_folding=False)
    onnx.checker.check_model(onnx.load(path))
    if fixed_batch:
        ref = reference(model, arg, y)
        ref["x"] = x
        ref["grad"] = ref["grad"].reshape(x.shape)
    else:
        ref = reference(model, x, y, nhwc=nhwc)
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        ref.update(bn_training_step(model, x, path))
    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(OUT, name + ".safetensors"))
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print(f"{name}: {os.path.getsize(path)} bytes, opset {onnx.load(path).opset_import[0].version}, ops {ops}")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    cnn = CnnBn()
    resnet = ResNet()
    for m in (cnn, resnet):
        # Non-trivial running statistics, as a trained model has.
        for bn in (b for b in m.modules() if isinstance(b, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
    export("cnn_bn", cnn, x, y, opset=13)
    export("resnet", resnet, x, y, opset=17)
    export("tiny_vit", TinyVit(), x, y, dynamo=True)
    export("flat_mlp", FlatMlp(), x[:4], y[:4], opset=13, fixed_batch=True)
    export("nhwc_cnn", NhwcCnn(), x, y, opset=14, nhwc=True)


if __name__ == "__main__":
    sys.exit(main())
