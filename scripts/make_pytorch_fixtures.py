#!/usr/bin/env python3
"""Writes the PyTorch state-dict fixtures in crates/advtrain/tests/fixtures/pytorch/ from the
modules of scripts/torch_zoo.py, for advtrain's export/import tests
(crates/advtrain/tests/suite/pytorch_export.rs) to match.

Not needed by the build or CI (the fixtures are committed). Regenerate with
    /work/venv/bin/python scripts/make_pytorch_fixtures.py
in an environment with torch and safetensors (PyTorch 2.15 made the committed files).

It writes:
  keys.json                 for each of the four kinds at its usual shape (1x28x28 for the
                            small CNNs and the MLP, 3x32x32 for the ResNet, 10 classes): the
                            shape and the state dict's keys -> {shape, dtype}
  KIND.safetensors          the state dict of a seeded torch module (small-cnn and mlp only)
  KIND.io.safetensors       x: 4 images in [0, 1]; logits: the module's logits in eval mode;
                            mean, std and logits_normalized: the same module built with that
                            normalisation, and its logits
The weight fixtures use smaller, non-square images (small-cnn 2x8x12, mlp 3x4x5) so that the
files stay small (about 450 KB together) while the channel order and the flatten order are
still tested; the madry-cnn (a 3136x1024 layer, 13 MB) and the ResNet (45 MB) are only in
keys.json.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_zoo import KINDS, build  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "advtrain", "tests",
                   "fixtures", "pytorch")

KEY_SHAPES = {
    "small-cnn": (1, 28, 28, 10),
    "madry-cnn": (1, 28, 28, 10),
    "mlp": (1, 28, 28, 10),
    "preact-resnet18": (3, 32, 32, 10),
}

WEIGHT_SHAPES = {
    "small-cnn": (2, 8, 12, 10),
    "mlp": (3, 4, 5, 10),
}

DTYPES = {torch.float32: "float32", torch.int64: "int64"}


def keys():
    out = {}
    for kind in KINDS:
        c, h, w, k = KEY_SHAPES[kind]
        net = build(kind, c, h, w, k)
        out[kind] = {
            "shape": {"channels": c, "height": h, "width": w, "num_classes": k},
            "state_dict": {
                name: {"shape": list(t.shape), "dtype": DTYPES[t.dtype]}
                for name, t in net.state_dict().items()
            },
        }
    with open(os.path.join(OUT, "keys.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


def weights(kind, seed):
    c, h, w, k = WEIGHT_SHAPES[kind]
    torch.manual_seed(seed)
    net = build(kind, c, h, w, k).eval()
    state = {name: t.contiguous() for name, t in net.state_dict().items()}
    save_file(state, os.path.join(OUT, f"{kind}.safetensors"), metadata={"format": "pt"})

    x = torch.rand(4, c, h, w)
    mean = [0.2 + 0.1 * i for i in range(c)]
    std = [0.3 + 0.05 * i for i in range(c)]
    normalized = build(kind, c, h, w, k, mean=mean, std=std).eval()
    normalized.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        io = {
            "x": x,
            "logits": net(x),
            "mean": torch.tensor(mean),
            "std": torch.tensor(std),
            "logits_normalized": normalized(x),
        }
    save_file({n: t.contiguous() for n, t in io.items()}, os.path.join(OUT, f"{kind}.io.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    keys()
    weights("small-cnn", 1)
    weights("mlp", 2)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT}: {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
