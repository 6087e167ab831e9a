#!/usr/bin/env python3
"""The reference AutoAttack on a PyTorch-trained Fashion-MNIST model, beside advtrain's.

Loads NAME.pt (a ResNetTiny state dict written by bench/torch_fmnist_models.py), runs the
reference AutoAttack (default: standard version, Linf, eps 0.1) on the first N test points
and prints the clean accuracy, the robust accuracy after each member (APGD-CE, APGD-T,
FAB-T, Square) with its contribution and cumulative time, and the final robust accuracy
and wall time. With --advtrain-eval EVAL.json (advtrain's `eval-autoattack*.json` of the
same model, e.g. its ONNX export, on the same points) it prints advtrain's figures beside
and the points where the two disagree.

The reference is the original authors' package (fra31/auto-attack; not on PyPI): put its
`autoattack/` folder on PYTHONPATH or pass --autoattack-src DIR (the folder holding
`autoattack/`). The run itself is bench/reference_autoattack.py's `reference_run`.

Usage:
  bench/reference_autoattack_torch.py NAME.pt [--n 1000] [--eps 0.1] [--version standard]
      [--bs 250] [--threads 2] [--seed 0] [--autoattack-src DIR]
      [--advtrain-eval EVAL.json] [--json OUT.json]

OUT.json gets the figures and the reference's per-point flags (`robust_correct`, 1 = still
right after the attack; `clean_correct`).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_autoattack import reference_run  # noqa: E402


def load_model(path):
    import torch
    from torch_fmnist_models import ResNetTiny

    net = ResNetTiny()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def print_reference(clean, robust, members, seconds, args):
    n = len(robust)
    print(f"reference AutoAttack ({args.version}, Linf, eps={args.eps:g}) on {n} points, "
          f"{args.threads} threads, batch {args.bs}")
    print(f"  clean accuracy   {100 * clean.float().mean():.2f}%")
    prev = float(clean.float().mean())
    for m in members:
        print(f"  after {m['attack']:<8} {100 * m['robust_after']:.2f}%  "
              f"(-{100 * (prev - m['robust_after']):.2f} points, total {m['total_seconds']:.1f} s)")
        prev = m["robust_after"]
    print(f"  robust accuracy  {100 * robust.float().mean():.2f}%   wall {seconds:.1f} s")


def compare_advtrain(path, y, clean, robust, seconds):
    """advtrain's eval record beside the reference's flags; returns its summary."""
    import torch

    rec = json.load(open(path))
    per = rec["per_example"]
    n = len(per["labels"])
    if n != len(y) or per["labels"] != y.tolist():
        raise SystemExit(f"error: {path} covers {n} points, not the same first {len(y)}")
    ours = torch.tensor(per["robust_correct"], dtype=torch.bool)
    ours_clean = torch.tensor(per["clean_correct"], dtype=torch.bool)
    print(f"advtrain ({os.path.basename(path)}): robust accuracy "
          f"{100 * rec['robust_accuracy']:.2f}%   wall {rec['seconds']:.1f} s")
    for s in rec.get("stages") or []:
        print(f"  {s['attack']:<45} broke {s['broken']:>5} of {s['attacked']:>5}  "
              f"{s['seconds']:.1f} s")
    print(f"  clean_correct equals PyTorch's on {int((ours_clean == clean).sum())} of {n}; "
          f"difference (advtrain - reference): "
          f"{100 * (rec['robust_accuracy'] - float(robust.float().mean())):+.2f} points; "
          f"robust only for advtrain: {int((ours & ~robust).sum())}, "
          f"only for the reference: {int((robust & ~ours).sum())}; "
          f"time ratio reference/advtrain: {seconds / rec['seconds']:.2f}")
    return {"file": path, "robust_accuracy": rec["robust_accuracy"], "seconds": rec["seconds"],
            "stages": rec.get("stages"),
            "clean_agreement": float((ours_clean == clean).float().mean()),
            "robust_only_advtrain": int((ours & ~robust).sum()),
            "robust_only_reference": int((robust & ~ours).sum())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", help="NAME.pt from bench/torch_fmnist_models.py")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--version", default="standard", choices=["standard", "plus", "rand"])
    ap.add_argument("--bs", type=int, default=250, help="the reference's default batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--autoattack-src", help="folder holding the reference's autoattack/")
    ap.add_argument("--advtrain-eval", help="advtrain's eval-autoattack*.json, same points")
    ap.add_argument("--json", help="write the figures and the reference's flags here")
    args = ap.parse_args()
    if args.autoattack_src:
        sys.path.insert(0, args.autoattack_src)
    import torch
    from torch_fmnist_models import load_split

    torch.set_num_threads(args.threads)
    net = load_model(args.model)
    x, y = load_split(args.data_dir, "t10k")
    x, y = x[: args.n], y[: args.n]
    with torch.no_grad():
        clean = net(x).argmax(1) == y
    robust, members, seconds = reference_run(net, x, y, "Linf", args.eps, args.version,
                                             args.bs, args.seed)
    print_reference(clean, robust, members, seconds, args)
    out = {"model": args.model, "reference": {
        "n": len(y), "version": args.version, "norm": "Linf", "eps": args.eps,
        "clean_accuracy": float(clean.float().mean()),
        "robust_accuracy": float(robust.float().mean()), "seconds": seconds,
        "members": members, "threads": args.threads, "batch_size": args.bs, "seed": args.seed,
        "clean_correct": [int(v) for v in clean], "robust_correct": [int(v) for v in robust]}}
    if args.advtrain_eval:
        out["advtrain"] = compare_advtrain(args.advtrain_eval, y, clean, robust, seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
