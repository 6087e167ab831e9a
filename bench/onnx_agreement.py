#!/usr/bin/env python3
"""An ONNX classifier in onnxruntime on the Fashion-MNIST test set, beside other predictions.

Runs MODEL.onnx (input [N,1,28,28] float pixels in [0,1], first output the logits) in
onnxruntime (CPU) on the first --n test images and prints its accuracy and:

- with PREDICTIONS.json (a list of predicted labels, or an object with a `predictions`
  list, e.g. NAME.predictions.json from bench/torch_fmnist_models.py): the fraction of
  points where onnxruntime's argmax equals the JSON's prediction;
- with --advtrain-eval EVAL.json (an advtrain `eval-*.json`: `per_example.labels`,
  `clean_correct` (1 = right), `clean_pred` (the clean predictions; records written before
  advtrain kept them lack it) and `adv_pred`): the fraction of its points where advtrain's
  clean prediction equals the JSON's (PyTorch's) and onnxruntime's, where its clean_correct
  equals their correctness, and advtrain's clean and robust accuracy on those points.

Each figure is printed with its n. --json OUT.json writes the figures.

Usage:
  bench/onnx_agreement.py MODEL.onnx [PREDICTIONS.json] [--advtrain-eval EVAL.json]
      [--n 10000] [--threads 2] [--data-dir /usr/share/datasets/fashion-mnist]
      [--json OUT.json]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_autoattack import find, read_idx  # noqa: E402

import numpy as np  # noqa: E402


def test_set(data_dir, n):
    """First n test images as float32 [n,1,28,28] in [0,1], and their labels."""
    images = read_idx(find(data_dir, "t10k-images-idx3-ubyte"))[:n]
    labels = read_idx(find(data_dir, "t10k-labels-idx1-ubyte"))[:n]
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)


def ort_predict(path, x, threads, bs=1000):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    preds = [session.run(None, {name: x[i:i + bs]})[0].argmax(1) for i in range(0, len(x), bs)]
    return np.concatenate(preds)


def load_predictions(path):
    data = json.load(open(path))
    if isinstance(data, dict):
        data = data["predictions"]
    return np.asarray(data, dtype=np.int64)


def load_advtrain(path):
    per = json.load(open(path))["per_example"]
    return {k: np.asarray(per[k], dtype=np.int64)
            for k in ("labels", "clean_correct", "clean_pred", "robust_correct", "adv_pred")
            if k in per and len(per[k]) > 0}


def fraction(a, b):
    return float(np.mean(a == b)), len(a)


def compare_advtrain(adv, labels, ort_pred, ref_pred):
    """advtrain's clean_correct flags beside onnxruntime's and the JSON's correctness."""
    n = len(adv["labels"])
    if n > len(labels) or not np.array_equal(adv["labels"], labels[:n]):
        raise SystemExit(f"error: the eval's {n} labels are not the first {n} test labels")
    ours = adv["clean_correct"].astype(bool)
    out = {"n": n, "advtrain_clean_accuracy": float(ours.mean())}
    if "robust_correct" in adv:
        out["advtrain_robust_accuracy"] = float(adv["robust_correct"].mean())
    out["clean_correct_vs_onnxruntime"] = fraction(ours, ort_pred[:n] == labels[:n])[0]
    if ref_pred is not None:
        out["clean_correct_vs_predictions"] = fraction(ours, ref_pred[:n] == labels[:n])[0]
    if "clean_pred" in adv:
        out["clean_pred_vs_onnxruntime"] = fraction(adv["clean_pred"], ort_pred[:n])[0]
        if ref_pred is not None:
            out["clean_pred_vs_predictions"] = fraction(adv["clean_pred"], ref_pred[:n])[0]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("onnx")
    ap.add_argument("predictions", nargs="?", help="JSON list, or object with `predictions`")
    ap.add_argument("--advtrain-eval", help="an advtrain eval-*.json on the same model")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    x, labels = test_set(args.data_dir, args.n)
    ort_pred = ort_predict(args.onnx, x, args.threads)
    out = {"onnx": args.onnx, "n": len(labels),
           "onnxruntime_accuracy": float(np.mean(ort_pred == labels))}
    print(f"onnxruntime ({os.path.basename(args.onnx)}): accuracy "
          f"{100 * out['onnxruntime_accuracy']:.2f}% on n={len(labels)}")

    ref_pred = None
    if args.predictions:
        ref_pred = load_predictions(args.predictions)[: len(labels)]
        if len(ref_pred) != len(labels):
            raise SystemExit(f"error: {args.predictions} has {len(ref_pred)} predictions, "
                             f"need {len(labels)}")
        agree, n = fraction(ort_pred, ref_pred)
        out.update(predictions=args.predictions, predictions_accuracy=float(np.mean(ref_pred == labels)),
                   agreement_with_predictions=agree, disagreements=int(np.sum(ort_pred != ref_pred)))
        print(f"{os.path.basename(args.predictions)}: accuracy "
              f"{100 * out['predictions_accuracy']:.2f}%; onnxruntime agrees on "
              f"{100 * agree:.2f}% ({n - out['disagreements']} of n={n})")

    if args.advtrain_eval:
        adv = compare_advtrain(load_advtrain(args.advtrain_eval), labels, ort_pred, ref_pred)
        out["advtrain"] = dict(adv, file=args.advtrain_eval)
        line = (f"advtrain ({os.path.basename(args.advtrain_eval)}, n={adv['n']}): clean "
                f"{100 * adv['advtrain_clean_accuracy']:.2f}%")
        if "advtrain_robust_accuracy" in adv:
            line += f", robust {100 * adv['advtrain_robust_accuracy']:.2f}%"
        print(line)
        print(f"  clean_correct equals onnxruntime's correctness on "
              f"{100 * adv['clean_correct_vs_onnxruntime']:.2f}% of n={adv['n']}")
        for key, what in (("clean_pred_vs_onnxruntime", "onnxruntime's"),
                          ("clean_pred_vs_predictions", "the predictions'")):
            if key in adv:
                print(f"  clean predictions equal {what} on {100 * adv[key]:.2f}% of n={adv['n']}")
        if "clean_correct_vs_predictions" in adv:
            print(f"  clean_correct equals the predictions' correctness on "
                  f"{100 * adv['clean_correct_vs_predictions']:.2f}% of n={adv['n']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
