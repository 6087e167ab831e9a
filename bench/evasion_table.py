#!/usr/bin/env python3
"""Markdown table of evasion records (evasion-*.json) for BENCHMARKS.md §5.

    python3 bench/evasion_table.py RUN_DIR...

One row per run: training time, the operating point, clean detection rate (TPR) with its
95% interval, ROC AUC, then per attack family: TPR under attack / share of detected texts
evaded / mean queries per successful evasion.
"""
import json
import pathlib
import sys


def pct(v):
    return f"{100 * v:.1f}%"


def load(run):
    records = {}
    for path in sorted(pathlib.Path(run).glob("evasion-*.json")):
        r = json.loads(path.read_text())
        records[(r["attack"], r["budget"])] = r
    return records


def main(runs):
    loaded = [(run, load(run)) for run in runs]
    attacks = sorted({k for _, recs in loaded for k in recs if k[0] != "none"})
    head = ["run", "train time", "FPR (test)", "TPR clean", "ROC AUC"]
    head += [f"{a} (b{b})" for a, b in attacks]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for run, recs in loaded:
        if not recs:
            continue
        base = recs.get(("none", 0)) or next(iter(recs.values()))
        summary = pathlib.Path(run, "summary.json")
        secs = json.loads(summary.read_text())["train_seconds"] if summary.exists() else None
        t = base["threshold"]
        row = [
            pathlib.Path(run).name,
            f"{secs:.0f} s" if secs is not None else "–",
            f"{pct(t['target_fpr'])} ({pct(base['test_fpr']['value'])})",
            f"{pct(base['tpr_clean']['value'])} [{pct(base['tpr_clean']['ci95'][0])}, {pct(base['tpr_clean']['ci95'][1])}]",
            f"{base['roc_clean']['auc']:.3f}",
        ]
        for key in attacks:
            r = recs.get(key)
            row.append(
                f"**{pct(r['tpr_attacked']['value'])}** / {pct(r['attack_success_rate']['value'])} / {r['mean_queries_per_success']:.0f}"
                if r
                else "–"
            )
        print("| " + " | ".join(row) + " |")
    print()
    print("Each attack cell: detection rate under attack / evaded (of detected) / queries per success.")


if __name__ == "__main__":
    main(sys.argv[1:])
