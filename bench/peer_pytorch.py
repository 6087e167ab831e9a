#!/usr/bin/env python3
"""PyTorch peer of `advtrain bench`: the same workloads on the same models.

Models: small-cnn and madry-cnn (defined here, as in every CPU comparison so far) and
preact-resnet18 (scripts/torch_zoo.py, layer for layer advtrain's). `--device cuda` runs on
the GPU (as `advtrain bench --device cuda`); `--input-shape 3,32,32` for CIFAR-sized inputs.

Workloads (random inputs in [0,1], shape 1x28x28 unless --input-shape, 10 classes, random
labels):
  forward       clean logits of a batch (eval mode, no grad)
  pgd10         Linf PGD-10, eps 0.1, random start U(-eps,eps), step 2.5*eps/10, sign step,
                project, clip to [0,1] (torchattacks.PGD if importable, else hand-written)
  fgsm-rs-step  one fast-AT step (FGSM, random start, alpha 1.25*eps) + SGD update
  pgd-at-step   one PGD-AT step (hand-written PGD-10 as above) + SGD update
SGD: lr 0.01, momentum 0.9, weight decay 5e-4 (advtrain's OptimizerConfig::sgd()).

Attack workloads (--run DIR: an advtrain run's weights, its first --limit test points):
  autoattack, square, apgd-t   torchattacks, as bench/peer_attacks.py describes

FLOP conventions are advtrain's: 2 FLOPs per conv/linear multiply-add; forward +
input-backward = 2 forwards; forward + full backward = 3 forwards.

Prints a table, or with --json the same JSON object shape as `advtrain bench --json`.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time

EPS = 0.1
LR = 0.01
CONVENTIONS = (
    "FLOPs = 2 x conv/linear multiply-adds; forward+input-backward (attack step) = 2 forwards; "
    "forward+full backward (training) = 3 forwards; PGD-10 = 20 forwards; "
    "fgsm-rs step = 2+3 = 5; pgd-at step = 20+3 = 23"
)
WORKLOADS = [("forward", 1.0), ("pgd10", 20.0), ("fgsm-rs-step", 5.0), ("pgd-at-step", 23.0)]


def preact_macs(c, h, w, k):
    """Multiply-adds of scripts/torch_zoo.py's PreActResNet18 (advtrain's bench.rs count)."""
    out = lambda n, s: (n - 1) // s + 1  # noqa: E731
    macs = c * 9 * 64 * h * w
    cin = 64
    for stage, cout in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            h, w = out(h, stride), out(w, stride)
            macs += cin * 9 * cout * h * w + cout * 9 * cout * h * w
            if stride != 1 or cin != cout:
                macs += cin * cout * h * w
            cin = cout
    return macs + 512 * k


def forward_macs(model, c=1, h=28, w=28, k=10):
    if model == "small-cnn":
        down = lambda n: (n + 2 - 4) // 2 + 1  # noqa: E731
        h1, w1 = down(h), down(w)
        h2, w2 = down(h1), down(w1)
        return c * 16 * 16 * h1 * w1 + 16 * 16 * 32 * h2 * w2 + 32 * h2 * w2 * 100 + 100 * k
    if model == "madry-cnn":
        return (c * 25 * 32 * h * w + 32 * 25 * 64 * (h // 2) * (w // 2)
                + 64 * (h // 4) * (w // 4) * 1024 + 1024 * k)
    if model == "preact-resnet18":
        return preact_macs(c, h, w, k)
    raise SystemExit(f"unknown model '{model}': expected small-cnn, madry-cnn or preact-resnet18")


def cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    fields = {}
    for line in lines:
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), []).append(v.strip())
    return fields


def peak_estimate(cores):
    info = cpuinfo()
    mhz = max((float(v) for v in info.get("cpu MHz", []) if v), default=None)
    flags = set((info.get("flags") or [""])[0].split())
    zen4 = (info.get("vendor_id") or [""])[0] == "AuthenticAMD" and (info.get("cpu family") or [""])[0] == "25"
    if "avx512f" in flags and zen4:
        fpc, why = 32, "AVX-512F on AMD Zen 4: 32 f32 FLOPs/cycle/core (512-bit FMAs run as 2 x 256-bit)"
    elif "avx512f" in flags:
        fpc, why = 64, "AVX-512F: 64 f32 FLOPs/cycle/core (2 x 16-wide FMA)"
    elif "avx2" in flags and "fma" in flags:
        fpc, why = 32, "AVX2+FMA: 32 f32 FLOPs/cycle/core (2 x 8-wide FMA)"
    else:
        fpc, why = 16, "no AVX2+FMA: 16 f32 FLOPs/cycle/core"
    return {
        "cores": cores,
        "mhz": mhz,
        "flops_per_cycle": fpc,
        "assumption": why,
        "gflops": None if mhz is None else cores * mhz * 1e-3 * fpc,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--models", default="small-cnn,madry-cnn")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--input-shape", default="1,28,28", help="C,H,W of the random images")
    p.add_argument("--workloads", default="forward,pgd10,fgsm-rs-step,pgd-at-step")
    p.add_argument("--run", default=None, help="advtrain run attacked by the attack workloads")
    p.add_argument("--limit", type=int, default=500, help="test points of the attack workloads")
    p.add_argument("--attack-reps", type=int, default=1)
    p.add_argument("--attack-batch", type=int, default=256)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args()
    if args.batch < 1 or args.reps < 1 or args.warmup < 0:
        raise SystemExit("--batch and --reps must be >= 1, --warmup >= 0")
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
        assert len(shape) == 3 and min(shape) > 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--input-shape '{args.input_shape}': expected C,H,W, e.g. 3,32,32")

    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        print(
            "error: PyTorch is not installed, so the PyTorch peer benchmark cannot run.\n"
            "Install the CPU build with:\n"
            "  pip install torch --index-url https://download.pytorch.org/whl/cpu",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        import torchattacks  # noqa: F401
        have_torchattacks = True
    except ImportError:
        have_torchattacks = False

    cores = os.cpu_count() or 1
    threads = args.threads or cores
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if args.device not in ("cpu", "cuda"):
        raise SystemExit(f"unknown --device '{args.device}': expected cpu or cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    device = torch.device(args.device)
    c, h, w = shape

    def build(name):
        if name == "preact-resnet18":
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
            from torch_zoo import build as zoo_build
            return zoo_build(name, c, h, w, 10)
        if (c, h, w) != (1, 28, 28):
            raise SystemExit(f"{name} is defined here for 1x28x28 inputs only")
        if name == "small-cnn":
            return nn.Sequential(
                nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))
        if name == "madry-cnn":
            return nn.Sequential(
                nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10))
        raise SystemExit(f"unknown model '{name}': expected small-cnn or madry-cnn")

    def pgd(model, x, y, steps=10, eps=EPS):
        alpha = 2.5 * eps / steps
        delta = torch.empty_like(x).uniform_(-eps, eps)
        x_adv = (x + delta).clamp(0, 1).detach()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            (g,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + alpha * g.sign()
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
        return x_adv

    def fgsm_rs(model, x, y, eps=EPS):
        alpha = 1.25 * eps
        delta = torch.empty_like(x).uniform_(-eps, eps)
        x0 = (x + delta).clamp(0, 1).detach().requires_grad_(True)
        loss = F.cross_entropy(model(x0), y)
        (g,) = torch.autograd.grad(loss, x0)
        x_adv = x0.detach() + alpha * g.sign()
        return (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1).detach()

    def timed(fn):
        for _ in range(args.warmup):
            fn()
        out = []
        for _ in range(args.reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_attacks import ATTACK_WORKLOADS, run_attacks
    wanted = {w.strip() for w in args.workloads.split(",") if w.strip()}
    unknown = wanted - {w for w, _ in WORKLOADS} - set(ATTACK_WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    throughput = wanted - set(ATTACK_WORKLOADS)
    results = []
    models = [m.strip() for m in args.models.split(",") if m.strip()] if throughput else []
    for name in models:
        flops = 2.0 * forward_macs(name, c, h, w)
        model = build(name).to(device)
        x = torch.rand(args.batch, c, h, w, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
        if have_torchattacks:
            import torchattacks
            ta_pgd = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / 10, steps=10, random_start=True)

        def forward():
            model.eval()
            with torch.no_grad():
                model(x).sum().item()

        def attack():
            model.eval()
            adv = ta_pgd(x, y) if have_torchattacks else pgd(model, x, y)
            adv.sum().item()

        def train_step(make_adv):
            def step():
                model.eval()
                adv = make_adv(model, x, y)
                model.train()
                loss = F.cross_entropy(model(adv), y)
                loss.item()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                next(model.parameters()).sum().item()
            return step

        fns = {
            "forward": forward,
            "pgd10": attack,
            "fgsm-rs-step": train_step(fgsm_rs),
            "pgd-at-step": train_step(pgd),
        }
        for workload, factor in WORKLOADS:
            if workload not in wanted:
                continue
            times = sorted(timed(fns[workload]))
            med = statistics.median(times)
            r = {
                "model": name,
                "workload": workload,
                "batch": args.batch,
                "images_per_s_median": args.batch / med,
                "images_per_s_min": args.batch / times[-1],
                "images_per_s_max": args.batch / times[0],
                "seconds_per_batch_median": med,
                "seconds_per_batch_min": times[0],
                "seconds_per_batch_max": times[-1],
                "flops_per_image": flops * factor,
                "gflops_median": args.batch / med * flops * factor / 1e9,
            }
            results.append(r)
            line = (f"{name:<10} {workload:<13} {r['images_per_s_median']:>9.1f} "
                    f"[{r['images_per_s_min']:>8.1f}..{r['images_per_s_max']:>8.1f}] "
                    f"{med:>11.4f} {r['gflops_median']:>9.2f}")
            if not args.json:
                print(line)
            elif not args.quiet:
                print("  " + line, file=sys.stderr)

    def say(line):
        if not args.json:
            print(line)
        elif not args.quiet:
            print(line, file=sys.stderr)

    attacks = run_attacks(args, wanted, say) if wanted & set(ATTACK_WORKLOADS) else []
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        .isoformat().replace("+00:00", "Z"),
        "machine": {
            "cpu": (cpuinfo().get("model name") or ["unknown"])[0],
            "cores": cores,
            "threads": threads,
            "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        },
        "framework": "pytorch",
        "advtrain_version": None,
        "torch_version": torch.__version__,
        "pgd_implementation": "torchattacks" if have_torchattacks else "hand-written",
        "batch": args.batch,
        "input": "x".join(str(v) for v in shape),
        "reps": args.reps,
        "warmup": args.warmup,
        "conventions": CONVENTIONS,
        "peak": peak_estimate(threads) if args.device == "cpu" else None,
        "results": results,
        "attacks": attacks,
        "torchattacks_version": getattr(sys.modules.get("torchattacks"), "__version__", None),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    elif args.json:
        print(text)
    else:
        pk = report["peak"]
        where = (f"{threads} threads; peak estimate {pk['gflops']} GFLOP/s ({pk['assumption']})"
                 if pk else f"on {report['machine']['device']}")
        print(f"\ntorch {torch.__version__}, PGD: {report['pgd_implementation']}, {where}")
        print("conventions: " + CONVENTIONS)


if __name__ == "__main__":
    main()
