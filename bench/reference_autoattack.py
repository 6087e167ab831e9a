#!/usr/bin/env python3
"""The reference AutoAttack on an advtrain run's weights and test points, beside advtrain's.

Loads the run's `model.safetensors` into the same network in PyTorch (small-cnn, madry-cnn
or mlp; burn stores linear weights as [in, out], PyTorch as [out, in]), checks the two
agree on clean predictions, runs the reference AutoAttack on the first N test points and
prints its robust accuracy, each member's contribution and its time, beside advtrain's
`eval-autoattack*.json` of the same run when one covers the same points.

The reference is the original authors' package (fra31/auto-attack; not on PyPI): put its
`autoattack/` folder on PYTHONPATH or pass --autoattack-src DIR (the folder holding
`autoattack/`). Tested with commit a392200 and PyTorch 2.15 (CPU).

Usage:
  bench/reference_autoattack.py RUN_DIR [--n 10000] [--version standard] [--bs 250]
      [--threads 2] [--json OUT.json]

The per-point robust flags of the reference are written to OUT.json (with --json), so the
points where the two disagree can be looked at.
"""

import argparse
import gzip
import json
import os
import re
import sys
import time
import tomllib


def read_idx(path):
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"error: no {stem}[.gz] in {data_dir}")


def test_set(config, n):
    import torch

    data_dir = config["data_dir"]
    images = read_idx(find(data_dir, "t10k-images-idx3-ubyte"))[:n]
    labels = read_idx(find(data_dir, "t10k-labels-idx1-ubyte"))[:n]
    x = torch.tensor(images, dtype=torch.float32).div(255.0).unsqueeze(1)
    y = torch.tensor(labels, dtype=torch.long)
    return x, y


def build(kind, shape):
    from torch import nn

    c, h, w, k = shape["channels"], shape["height"], shape["width"], shape["num_classes"]
    if kind == "small-cnn":
        down = lambda n: (n + 2 - 4) // 2 + 1  # noqa: E731
        h2, w2 = down(down(h)), down(down(w))
        return nn.Sequential(
            nn.Conv2d(c, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * h2 * w2, 100), nn.ReLU(), nn.Linear(100, k)), \
            ["conv1", "conv2", "fc1", "fc2"]
    if kind == "madry-cnn":
        return nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 1024), nn.ReLU(),
            nn.Linear(1024, k)), ["conv1", "conv2", "fc1", "fc2"]
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, k)), ["fc1", "fc2", "fc3"]
    raise SystemExit(f"error: model '{kind}' has no PyTorch twin here (small-cnn, madry-cnn, mlp)")


def load_weights(net, layer_names, path):
    import torch
    from safetensors.torch import load_file

    tensors = load_file(path)
    layers = [m for m in net if hasattr(m, "weight")]
    for name, layer in zip(layer_names, layers):
        keys = [k for k in tensors if re.search(rf"(^|\.){name}\.weight$", k)]
        if len(keys) != 1:
            raise SystemExit(f"error: expected one '{name}.weight' in {path}, found {keys}")
        weight = tensors[keys[0]]
        bias = tensors[keys[0][: -len("weight")] + "bias"]
        if isinstance(layer, torch.nn.Linear):
            weight = weight.t()  # burn: [in, out]
        if tuple(weight.shape) != tuple(layer.weight.shape):
            raise SystemExit(f"error: {name}: weights {tuple(weight.shape)}, net wants "
                             f"{tuple(layer.weight.shape)}")
        with torch.no_grad():
            layer.weight.copy_(weight.float())
            layer.bias.copy_(bias.float())
    return net.eval()


def reference_run(net, x, y, norm, eps, version, bs, seed):
    """The reference's run_standard_evaluation, with its log parsed per member."""
    import io
    import contextlib
    import torch
    from autoattack import AutoAttack

    log = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"autoattack-{os.getpid()}.log")
    if os.path.exists(log):
        os.remove(log)
    adversary = AutoAttack(net, norm=norm, eps=eps, version=version, device="cpu",
                           seed=seed, log_path=log, verbose=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        x_adv = adversary.run_standard_evaluation(x, y, bs=bs)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        robust = (net(x_adv).argmax(1) == y) & (net(x).argmax(1) == y)
    members = []
    with open(log) as f:
        for line in f:
            m = re.search(r"robust accuracy after (\S+): ([\d.]+)% \(total time ([\d.]+) s\)", line)
            if m:
                members.append({"attack": m.group(1), "robust_after": float(m.group(2)) / 100,
                                "total_seconds": float(m.group(3))})
    return robust, members, seconds


def advtrain_record(run, n, version):
    name = "autoattack" if version == "standard" else f"autoattack-{version}"
    for tag in (f"eval-{name}-n{n}.json", f"eval-{name}.json"):
        p = os.path.join(run, tag)
        if os.path.exists(p):
            rec = json.load(open(p))
            if rec["n"] == n:
                return p, rec
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--version", default="standard", choices=["standard", "plus", "rand"])
    ap.add_argument("--bs", type=int, default=250, help="the reference's default batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autoattack-src", help="folder holding the reference's autoattack/")
    ap.add_argument("--json", help="write both sides' figures and the reference's flags here")
    args = ap.parse_args()
    if args.autoattack_src:
        sys.path.insert(0, args.autoattack_src)
    import torch

    torch.set_num_threads(args.threads)
    config = tomllib.load(open(os.path.join(args.run, "config.toml"), "rb"))
    if config.get("normalization"):
        raise SystemExit("error: runs with in-model normalisation are not mirrored here")
    train = config["train"]
    norm = {"linf": "Linf", "l2": "L2"}[train["norm"]]
    eps = float(train["eps"])
    net, names = build(config["model"], config["shape"])
    net = load_weights(net, names, os.path.join(args.run, "model.safetensors"))
    x, y = test_set(config, args.n)
    n = len(y)

    path, rec = advtrain_record(args.run, n, args.version)
    with torch.no_grad():
        clean = net(x).argmax(1) == y
    if rec is not None:
        theirs = torch.tensor(rec["per_example"]["clean_correct"], dtype=torch.bool)
        disagree = int((theirs != clean).sum())
        print(f"clean predictions: PyTorch and advtrain disagree on {disagree} of {n} points")

    robust, members, seconds = reference_run(net, x, y, norm, eps, args.version, args.bs, args.seed)
    print(f"reference AutoAttack ({args.version}, {norm}, eps={eps:.6g}) on {n} points, "
          f"{args.threads} threads, batch {args.bs}")
    print(f"  clean accuracy   {100 * clean.float().mean():.2f}%")
    prev = float(clean.float().mean())
    for m in members:
        print(f"  after {m['attack']:<8} {100 * m['robust_after']:.2f}%  "
              f"(-{100 * (prev - m['robust_after']):.2f} points, total {m['total_seconds']:.1f} s)")
        prev = m["robust_after"]
    print(f"  robust accuracy  {100 * robust.float().mean():.2f}%   wall {seconds:.1f} s")
    out = {"reference": {"n": n, "version": args.version, "norm": norm, "eps": eps,
                         "robust_accuracy": float(robust.float().mean()), "seconds": seconds,
                         "members": members, "threads": args.threads, "batch_size": args.bs,
                         "robust_correct": [int(v) for v in robust]}}
    if rec is not None:
        ours = torch.tensor(rec["per_example"]["robust_correct"], dtype=torch.bool)
        print(f"advtrain ({os.path.basename(path)}): robust accuracy "
              f"{100 * rec['robust_accuracy']:.2f}%   wall {rec['seconds']:.1f} s")
        for s in rec.get("stages") or []:
            print(f"  {s['attack']:<45} broke {s['broken']:>5} of {s['attacked']:>5}  "
                  f"{s['seconds']:.1f} s")
        print(f"  difference (advtrain - reference): "
              f"{100 * (rec['robust_accuracy'] - float(robust.float().mean())):+.2f} points; "
              f"robust only for advtrain: {int((ours & ~robust).sum())}, "
              f"only for the reference: {int((robust & ~ours).sum())}; "
              f"time ratio reference/advtrain: {seconds / rec['seconds']:.2f}")
        out["advtrain"] = {"file": path, "robust_accuracy": rec["robust_accuracy"],
                           "seconds": rec["seconds"], "stages": rec.get("stages")}
    else:
        print(f"advtrain: no eval-autoattack record on {n} points in {args.run} "
              f"(run `advtrain eval --run {args.run} --attack autoattack"
              f"{'' if n == 10000 else f' --limit {n}'}` first)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
