#!/usr/bin/env python3
"""Fashion-MNIST classifiers trained in PyTorch, exported to ONNX, for advtrain's import.

Trains one small residual CNN (`ResNetTiny`, 19,706 parameters: conv 1->16 3x3 stride 2 +
BN + ReLU (28x28 -> 14x14), a residual block at 16 channels, a stride-2 residual block at
32 channels (-> 7x7) with a 1x1 stride-2 conv + BN shortcut, global average pool, linear
to 10) in two versions:

  standard  cross-entropy on clean images
  pgd-at    Madry PGD adversarial training, Linf eps 0.1, 7 steps of alpha = 2.5*eps/7,
            random start U(-eps, eps); the attack runs with the model in eval mode
            (BatchNorm running statistics), the update in train mode

Inputs are pixels in [0, 1], shape [N, 1, 28, 28], with no normalisation (so eps means the
same thing in PyTorch, onnxruntime and advtrain). SGD (momentum 0.9, weight decay 5e-4,
batch 128) with a one-cycle learning rate (peak 0.1); fixed seeds. Training runs in
channels-last memory format (faster on CPU); the saved, exported and evaluated model is
back in the standard format. The classic exporter folds each BatchNorm into the
preceding Conv (eval mode), so the ONNX graph has Conv, Relu, Add, ReduceMean and Gemm.

For each version NAME it writes into --out (default /work/torch-fmnist):
  NAME.pt                 state dict (load with ResNetTiny().load_state_dict)
  NAME.onnx               opset 17, input `input` [N,1,28,28], output `logits` [N,10],
                          dynamic batch axis (classic exporter, dynamo=False, if it works)
  NAME.predictions.json   PyTorch's clean argmax on the 10,000 test images, and accuracy
  NAME.json               training time, epochs, clean accuracy, PGD-20 robust accuracy
                          (eps 0.1, alpha 2.5*eps/20, random start, on the first --pgd-n
                          test points), exporter used and the ONNX graph's operators

Usage:
  bench/torch_fmnist_models.py [--which standard|pgd-at|both] [--epochs E]
      [--threads 2] [--out DIR] [--data-dir /usr/share/datasets/fashion-mnist]
      [--pgd-n 10000] [--max-batches B]

--epochs overrides the per-version default (standard 6, pgd-at 6). Measured with
--threads 1 on 2 cores shared with Rust builds (PyTorch 2.15 CPU): standard 23-48 s per
epoch (469 batches; 190 s for 6), pgd-at 161-187 s per epoch (1019 s for 6); PGD-20 on the
10,000 test points ~95 s. With --threads 2 the same batches took 2-9x longer while rustc
held the cores (OpenMP threads wait on each other), so on a busy machine pass --threads 1.
--max-batches cuts each epoch short (to time an epoch before choosing --epochs).
"""

import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_autoattack import find, read_idx  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

EPS = 0.1
DEFAULT_EPOCHS = {"standard": 6, "pgd-at": 6}
SEEDS = {"standard": 0, "pgd-at": 1}
BATCH = 128
PEAK_LR = 0.1


class Block(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (identity, or 1x1 strided conv + BN)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNetTiny(nn.Module):
    """A small residual CNN for 1x28x28 images in [0, 1], 10 classes."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = Block(16, 16, 1)
        self.block2 = Block(16, 32, 2)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        h = self.block2(self.block1(self.stem(x)))
        return self.fc(h.mean(dim=(2, 3)))


def load_split(data_dir, split):
    """Images as float [N,1,28,28] in [0,1] and labels as long, of 'train' or 't10k'."""
    images = read_idx(find(data_dir, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{split}-labels-idx1-ubyte"))
    x = torch.tensor(images, dtype=torch.float32).div(255.0).unsqueeze(1)
    return x, torch.tensor(labels, dtype=torch.long)


def pgd(model, x, y, eps, steps, alpha, generator=None):
    """Linf PGD on cross-entropy with a uniform random start; returns x_adv in [0,1]."""
    noise = torch.rand(x.shape, generator=generator) * 2 - 1
    x_adv = (x + eps * noise).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def train_batch(model, opt, sched, x, y, version, generator):
    x = x.contiguous(memory_format=torch.channels_last)
    if version == "pgd-at":
        model.eval()
        x = pgd(model, x, y, EPS, 7, 2.5 * EPS / 7, generator)
    model.train()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def train(version, x, y, epochs, max_batches):
    """Trains a fresh ResNetTiny; returns it with per-epoch losses and times."""
    torch.manual_seed(SEEDS[version])
    generator = torch.Generator().manual_seed(SEEDS[version])
    model = ResNetTiny().to(memory_format=torch.channels_last)
    per_epoch = -(-len(y) // BATCH)
    if max_batches:
        per_epoch = min(per_epoch, max_batches)
    opt = torch.optim.SGD(model.parameters(), lr=PEAK_LR, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=PEAK_LR,
                                                total_steps=epochs * per_epoch)
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=generator)[: per_epoch * BATCH]
        losses = [train_batch(model, opt, sched, x[idx], y[idx], version, generator)
                  for idx in order.split(BATCH)]
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses),
                        "seconds": seconds, "batches": len(losses)})
        print(f"  [{version}] epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f}, "
              f"{seconds:.1f} s", flush=True)
    return model.to(memory_format=torch.contiguous_format).eval(), history


@torch.no_grad()
def predict(model, x, bs=1000):
    return torch.cat([model(xb).argmax(1) for xb in x.split(bs)])


def pgd_robust(model, x, y, steps=20, bs=500):
    """Flags (bool) of points still classified right after Linf PGD-`steps` at EPS."""
    generator = torch.Generator().manual_seed(1234)
    flags = []
    for xb, yb in zip(x.split(bs), y.split(bs)):
        x_adv = pgd(model, xb, yb, EPS, steps, 2.5 * EPS / steps, generator)
        flags.append(predict(model, x_adv) == yb)
    return torch.cat(flags)


def export_onnx(model, path):
    """Exports with the classic exporter, or the dynamo one if that fails; returns its name."""
    dummy = torch.zeros(2, 1, 28, 28)
    common = dict(input_names=["input"], output_names=["logits"], opset_version=17)
    try:
        # PRESERVE (the model is in eval mode) instead of the default EVAL: EVAL folds each
        # BatchNorm into its conv, and a model fine-tuned by advtrain should keep its
        # batch-norm layers (and their running statistics) as PyTorch has them.
        torch.onnx.export(model, (dummy,), path, dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **common)
        return "torchscript (dynamo=False)"
    except Exception as e:  # noqa: BLE001 - any failure: try the other exporter
        print(f"  classic exporter failed ({type(e).__name__}: {e}); trying dynamo=True")
    batch = torch.export.Dim("N")
    torch.onnx.export(model, (dummy,), path, dynamo=True, external_data=False,
                      dynamic_shapes={"x": {0: batch}}, **common)
    return "dynamo (dynamo=True)"


def onnx_operators(path):
    import onnx

    graph = onnx.load(path).graph
    return dict(collections.Counter(node.op_type for node in graph.node))


def run_version(version, args, train_xy, test_xy):
    x, y = train_xy
    epochs = args.epochs or DEFAULT_EPOCHS[version]
    print(f"training {version}: {epochs} epochs, {args.threads} threads", flush=True)
    start = time.perf_counter()
    model, history = train(version, x, y, epochs, args.max_batches)
    train_seconds = time.perf_counter() - start

    tx, ty = test_xy
    pred = predict(model, tx)
    clean = float((pred == ty).float().mean())
    start = time.perf_counter()
    robust = pgd_robust(model, tx[: args.pgd_n], ty[: args.pgd_n])
    pgd_seconds = time.perf_counter() - start

    base = os.path.join(args.out, version)
    torch.save(model.state_dict(), base + ".pt")
    exporter = export_onnx(model, base + ".onnx")
    with open(base + ".predictions.json", "w") as f:
        json.dump({"model": version, "source": "pytorch", "n": len(ty), "accuracy": clean,
                   "predictions": pred.tolist(), "labels": ty.tolist()}, f)
    record = {
        "model": version, "architecture": "ResNetTiny",
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": epochs, "batch_size": BATCH, "max_batches": args.max_batches,
        "optimizer": f"SGD momentum 0.9 wd 5e-4, one-cycle peak lr {PEAK_LR}",
        "seed": SEEDS[version], "threads": args.threads,
        "training": ("PGD-7 Linf eps 0.1 alpha 2.5*eps/7 random start"
                     if version == "pgd-at" else "clean cross-entropy"),
        "train_seconds": train_seconds, "history": history,
        "clean_accuracy": clean, "clean_n": len(ty),
        "pgd20": {"eps": EPS, "alpha": 2.5 * EPS / 20, "random_start": True, "restarts": 1,
                  "n": len(robust), "points": f"first {len(robust)} test points",
                  "robust_accuracy": float(robust.float().mean()), "seconds": pgd_seconds},
        "onnx": {"file": base + ".onnx", "exporter": exporter, "opset": 17,
                 "operators": onnx_operators(base + ".onnx")},
        "torch": torch.__version__,
    }
    with open(base + ".json", "w") as f:
        json.dump(record, f, indent=1)
    return record


def summary(records):
    print(f"\n{'model':<10} {'epochs':>6} {'train s':>8} {'clean':>7} {'PGD-20':>7} {'n':>6}"
          "  exporter")
    for r in records:
        p = r["pgd20"]
        print(f"{r['model']:<10} {r['epochs']:>6} {r['train_seconds']:>8.1f} "
              f"{100 * r['clean_accuracy']:>6.2f}% {100 * p['robust_accuracy']:>6.2f}% "
              f"{p['n']:>6}  {r['onnx']['exporter']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--which", default="both", choices=["standard", "pgd-at", "both"])
    ap.add_argument("--epochs", type=int, help="override the per-version default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/work/torch-fmnist")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--pgd-n", type=int, default=10000, help="test points for PGD-20")
    ap.add_argument("--max-batches", type=int, help="cut each epoch to B batches (timing)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    train_xy = load_split(args.data_dir, "train")
    test_xy = load_split(args.data_dir, "t10k")
    versions = ["standard", "pgd-at"] if args.which == "both" else [args.which]
    records = [run_version(v, args, train_xy, test_xy) for v in versions]
    summary(records)
    print(f"outputs in {args.out}")


if __name__ == "__main__":
    main()
