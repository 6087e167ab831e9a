#!/usr/bin/env python3
"""PyTorch peer of the README demo's training run, for a wall-clock comparison.

The same work as `advtrain train --dataset fashion-mnist --model small-cnn --method fgsm-rs
--eps 0.1 --epochs 5` (scripts/demo.sh):
  data      Fashion-MNIST IDX (gzip) from /usr/share/datasets/fashion-mnist (or --data),
            pixels in [0,1]; 1000 training images held out for validation (seeded shuffle)
  model     small-cnn: Conv16 4x4/2 -> Conv32 4x4/2 -> FC100 -> FC10, ReLU between
  training  fgsm-rs (Wong et al. 2020): uniform start in the eps-ball, one FGSM step of
            1.25*eps, projected and clipped; batch 128, SGD momentum 0.9, weight decay 5e-4,
            one-cycle lr peaking at 0.1 at 40% of the iterations
  per epoch validation on the 1000 held-out images: clean accuracy, PGD-10 accuracy, and
            the monitor's gradient alignment (cosine of input gradients at x and at a random
            point of the ball)
Timed: the epochs (training + per-epoch validation), as advtrain's summary.json
`train_seconds` times them. The final test-set evaluation is reported but not timed.

Usage: python3 bench/peer_train_fgsm_rs.py [--threads 2] [--epochs 5] [--json]
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

EPS = 0.1


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return data[4 + 4 * dims:], shape


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        sys.exit("error: PyTorch and numpy are needed (pip install torch numpy)")

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    def load(prefix):
        img, ishape = read_idx(os.path.join(args.data, f"{prefix}-images-idx3-ubyte.gz"))
        lab, _ = read_idx(os.path.join(args.data, f"{prefix}-labels-idx1-ubyte.gz"))
        x = torch.from_numpy(np.frombuffer(img, dtype=np.uint8).reshape(ishape[0], 1, 28, 28).astype(np.float32) / 255.0)
        y = torch.from_numpy(np.frombuffer(lab, dtype=np.uint8).astype(np.int64))
        return x, y

    x_all, y_all = load("train")
    x_test, y_test = load("t10k")
    order = torch.from_numpy(rng.permutation(len(x_all)))
    val_idx, train_idx = order[:1000], order[1000:]
    x_val, y_val = x_all[val_idx], y_all[val_idx]
    x_tr, y_tr = x_all[train_idx], y_all[train_idx]

    model = nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    batch = 128
    iters_per_epoch = (len(x_tr) + batch - 1) // batch
    total = iters_per_epoch * args.epochs

    def lr_at(it):
        prog, peak = it / total, 0.4
        return 0.1 * (prog / peak if prog < peak else (1 - prog) / (1 - peak))

    def input_grad(x, y):
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(loss, x)
        return g

    def project(x_adv, x, eps=EPS):
        return (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)

    def pgd(x, y, steps, eps=EPS):
        alpha = 2.5 * eps / steps
        x_adv = project(x + torch.empty_like(x).uniform_(-eps, eps), x)
        for _ in range(steps):
            x_adv = project(x_adv + alpha * input_grad(x_adv, y).sign(), x).detach()
        return x_adv

    def accuracy(x, y, steps=0):
        model.eval()
        correct = 0
        for i in range(0, len(x), 500):
            xb, yb = x[i:i + 500], y[i:i + 500]
            if steps:
                xb = pgd(xb, yb, steps)
            with torch.no_grad():
                correct += (model(xb).argmax(1) == yb).sum().item()
        return correct / len(x)

    def alignment(x, y):
        model.eval()
        g1 = input_grad(x, y).flatten(1)
        g2 = input_grad(project(x + torch.empty_like(x).uniform_(-EPS, EPS), x), y).flatten(1)
        return F.cosine_similarity(g1, g2, dim=1).mean().item()

    epochs = []
    start = time.perf_counter()
    it = 0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(len(x_tr)))
        for b in range(iters_per_epoch):
            idx = perm[b * batch:(b + 1) * batch]
            x, y = x_tr[idx], y_tr[idx]
            model.eval()
            x0 = project(x + torch.empty_like(x).uniform_(-EPS, EPS), x)
            x_adv = project(x0 + 1.25 * EPS * input_grad(x0, y).sign(), x).detach()
            model.train()
            for group in opt.param_groups:
                group["lr"] = lr_at(it)
            loss = F.cross_entropy(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
        train_s = time.perf_counter() - t0
        clean, robust, align = accuracy(x_val, y_val), accuracy(x_val, y_val, 10), alignment(x_val, y_val)
        epochs.append({"epoch": epoch + 1, "seconds": time.perf_counter() - t0, "train_seconds": train_s,
                       "val_clean": clean, "val_pgd10": robust, "alignment": align})
        if not args.json:
            print(f"epoch {epoch + 1}: {time.perf_counter() - t0:.1f} s (training {train_s:.1f} s), "
                  f"val clean {clean:.4f} pgd-10 {robust:.4f} alignment {align:.3f}", flush=True)
    total_s = time.perf_counter() - start
    test_clean, test_pgd20 = accuracy(x_test, y_test), accuracy(x_test, y_test, 20)
    out = {"torch_version": torch.__version__, "threads": threads, "epochs": args.epochs,
           "train_seconds": total_s, "images_per_s": len(x_tr) * args.epochs / total_s,
           "test_clean": test_clean, "test_pgd20": test_pgd20, "per_epoch": epochs}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"total {total_s:.1f} s ({out['images_per_s']:.0f} training images/s); "
              f"test clean {test_clean:.4f}, PGD-20 {test_pgd20:.4f} (torch {torch.__version__}, {threads} threads)")


if __name__ == "__main__":
    main()
