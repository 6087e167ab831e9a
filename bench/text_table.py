#!/usr/bin/env python3
"""Markdown table of text runs (BENCHMARKS.md §5) from their summary.json and eval-*.json.

    python3 bench/text_table.py BUDGET RUN_DIR [RUN_DIR ...]
"""
import glob
import json
import os
import sys

budget = sys.argv[1]
attacks = [("deepwordbug", "DeepWordBug"), ("lookalike", "look-alike only"), ("hotflip", "HotFlip")]
print(f"\nEdit budget {budget} per text. Each attack cell: accuracy under attack / attack success "
      "rate / mean edits of successful attacks / time.\n")
print("| model | train time | clean | " + " | ".join(n for _, n in attacks) + " |")
print("|---|---|---|" + "---|" * len(attacks))
for d in sys.argv[2:]:
    if not os.path.exists(os.path.join(d, "summary.json")):
        continue
    s = json.load(open(os.path.join(d, "summary.json")))
    ev = {}
    for f in glob.glob(os.path.join(d, "eval-*.json")):
        r = json.load(open(f))
        ev[r["attack"]] = r

    def cell(a):
        r = ev.get(a)
        if not r:
            return "–"
        n = ""
        if r["examples"] != ev["none"]["examples"]:
            n = f" (first {r['examples']} texts; clean {100 * r['clean_accuracy']:.1f}%)"
        t = f"{r['seconds']:.1f}" if r["seconds"] < 10 else f"{r['seconds']:.0f}"
        return (f"**{100 * r['robust_accuracy']:.1f}%** / {100 * r['attack_success_rate']:.1f}% / "
                f"{r['mean_edits']:.2f} / {t} s{n}")

    print(f"| {os.path.basename(d)} | {s['train_seconds']:.0f} s | "
          f"{100 * ev['none']['clean_accuracy']:.1f}% | " + " | ".join(cell(a) for a, _ in attacks) + " |")
