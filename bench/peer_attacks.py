"""The attack workloads of the PyTorch peer (`bench/peer_pytorch.py --run DIR --workloads
autoattack,square,apgd-t`): torchattacks' attacks on an advtrain run's weights and its first
--limit test points, timed end to end, as `advtrain bench --run DIR` times its own.

Both sides run an attack the way an evaluation runs it: a clean pass, then the attack on
the points classified correctly, in batches of --attack-batch, each stage of an ensemble
only on the points still robust; the clock covers all of it. Robust accuracy is reported
beside the time, so that a faster side cannot be a weaker one unnoticed.

  autoattack  torchattacks' APGD-CE, APGD-T, FAB-T and Square at the reference AutoAttack's
              budget: 100 iterations each (9 targets for APGD-T and FAB-T), Square with 5,000
              queries and the fixed p schedule. torchattacks' own `AutoAttack` class builds
              its members with their default of 10 iterations, a tenth of the reference's
              (and of advtrain's `autoattack`), so it is not used: timing it would compare
              different amounts of work.
  square      torchattacks.Square(n_queries=5000, n_restarts=1), its defaults otherwise
  apgd-t      torchattacks.APGDT(steps=100, n_classes=10, n_restarts=1)

Peer only (advtrain has no such workload; for the record of what the class costs):
  torchattacks-autoattack   torchattacks.AutoAttack(version="standard", n_classes=10) as
                            shipped, members at 10 iterations
"""

import os
import statistics
import sys
import time

ATTACK_WORKLOADS = ["autoattack", "square", "apgd-t", "torchattacks-autoattack"]


def load_run(run, limit):
    """The run's network (weights from model.safetensors), threat model and test points."""
    import tomllib

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference_autoattack as ref

    config_path = os.path.join(run, "config.toml")
    if not os.path.exists(config_path):
        raise SystemExit(f"error: {run} is not a run directory (no config.toml)")
    config = tomllib.load(open(config_path, "rb"))
    if config.get("normalization"):
        raise SystemExit("error: runs with in-model normalisation are not mirrored here")
    net, names = ref.build(config["model"], config["shape"])
    net = ref.load_weights(net, names, os.path.join(run, "model.safetensors"))
    x, y = ref.test_set(config, limit)
    train = config["train"]
    norm = {"linf": "Linf", "l2": "L2"}[train["norm"]]
    return net, x, y, norm, float(train["eps"])


def members(workload, net, norm, eps):
    """(name, attack) pairs run in sequence, each on the points still robust."""
    import torchattacks as ta

    common = dict(norm=norm, eps=eps, seed=0)
    if workload == "autoattack":
        return [
            ("apgd-ce", ta.APGD(net, loss="ce", steps=100, n_restarts=1, **common)),
            ("apgd-t", ta.APGDT(net, steps=100, n_restarts=1, n_classes=10, **common)),
            ("fab-t", ta.FAB(net, steps=100, n_restarts=1, multi_targeted=True,
                             n_classes=10, **common)),
            ("square", ta.Square(net, n_queries=5000, n_restarts=1, resc_schedule=False,
                                 **common)),
        ]
    if workload == "square":
        return [("square", ta.Square(net, n_queries=5000, n_restarts=1, **common))]
    if workload == "apgd-t":
        return [("apgd-t", ta.APGDT(net, steps=100, n_restarts=1, n_classes=10, **common))]
    if workload == "torchattacks-autoattack":
        return [("autoattack", ta.AutoAttack(net, version="standard", n_classes=10, **common))]
    raise SystemExit(f"unknown attack workload '{workload}'")


def predict(net, x, bs):
    import torch

    with torch.no_grad():
        return torch.cat([net(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])


def evaluate(workload, net, x, y, norm, eps, bs):
    """One timed run: (seconds, clean accuracy, robust accuracy, stages)."""
    start = time.perf_counter()
    robust = predict(net, x, bs) == y
    clean = float(robust.float().mean())
    stages = []
    for name, attack in members(workload, net, norm, eps):
        t = time.perf_counter()
        idx = robust.nonzero().flatten()
        broken = 0
        for i in range(0, len(idx), bs):
            rows = idx[i:i + bs]
            adv = attack(x[rows], y[rows])
            if (adv - x[rows]).abs().max() > eps * (1 + 1e-5) + 1e-6:
                raise SystemExit(f"error: torchattacks' {name} left the eps-ball")
            still = predict(net, adv, bs) == y[rows]
            broken += int((~still).sum())
            robust[rows] = still
        stages.append({"attack": name, "attacked": len(idx), "broken": broken,
                       "robust_after": float(robust.float().mean()),
                       "seconds": time.perf_counter() - t})
    return time.perf_counter() - start, clean, float(robust.float().mean()), stages


def run_attacks(args, wanted, say):
    """Every wanted attack workload on the run `args.run`, as `advtrain bench` reports them."""
    if not args.run:
        raise SystemExit("error: the attack workloads (autoattack, square, apgd-t) attack a "
                         "trained model on its test points: pass --run DIR")
    if args.attack_reps < 1 or args.attack_batch < 1:
        raise SystemExit("--attack-reps and --attack-batch must be >= 1")
    net, x, y, norm, eps = load_run(args.run, args.limit)
    say(f"attacks on {args.run}, first {len(y)} test points, {norm} eps={eps:g}, "
        f"batch {args.attack_batch}, {args.attack_reps} timed run(s) each:")
    out = []
    for workload in ATTACK_WORKLOADS:
        if workload not in wanted:
            continue
        runs = [evaluate(workload, net, x, y, norm, eps, args.attack_batch)
                for _ in range(args.attack_reps)]
        times = sorted(r[0] for r in runs)
        med = statistics.median(times)
        _, clean, robust, stages = runs[-1]
        m = {"model": args.run, "workload": workload, "points": len(y),
             "seconds_median": med, "seconds_min": times[0], "seconds_max": times[-1],
             "points_per_s_median": len(y) / med, "clean_accuracy": clean,
             "robust_accuracy": robust, "stages": stages}
        parts = ", ".join(f"{s['attack']} {s['seconds']:.1f} s ({s['broken']} of "
                          f"{s['attacked']} broken)" for s in stages)
        say(f"  {workload:<11} {med:>8.1f} s [{times[0]:.1f}..{times[-1]:.1f}] "
            f"{len(y) / med:>7.1f} points/s  clean {100 * clean:.2f}%  "
            f"robust {100 * robust:.2f}%  | {parts}")
        out.append(m)
    return out
