#!/usr/bin/env python3
"""advtrain's zoo architectures rebuilt in PyTorch (scripts/torch_zoo.py) and exported to
ONNX, for `advtrain bench --models small-cnn,OUT/zoo-small-cnn.onnx`: the same network
native and imported, side by side (BENCHMARKS.md, "Your own model").

Usage: bench/export_zoo_onnx.py OUT_DIR [KIND ...]   (default kinds: small-cnn madry-cnn)
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import torch_zoo  # noqa: E402


def main():
    out = sys.argv[1]
    kinds = sys.argv[2:] or ["small-cnn", "madry-cnn"]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for kind in kinds:
        model = torch_zoo.build(kind, 1, 28, 28, 10).eval()
        path = os.path.join(out, f"zoo-{kind}.onnx")
        torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), path, dynamo=False,
                          input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        print(path)


if __name__ == "__main__":
    main()
