#!/usr/bin/env python3
"""An ONNX file's weights back in the PyTorch module it was exported from, and that
module's Fashion-MNIST test accuracy: the check that a model fine-tuned by advtrain and
exported (`advtrain export --run R`) is the same model in PyTorch too.

Reads every initializer of FILE.onnx (following the Identity nodes through which the
exporter shares equal initializers), loads them into bench/torch_fmnist_models.py's
ResNetTiny with a strict load_state_dict, and prints its accuracy on the test set.

Usage: bench/torch_from_onnx.py FILE.onnx
"""
import os
import sys

import onnx
import torch
from onnx import numpy_helper
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_fmnist_models as t
torch.set_num_threads(1)
m = t.ResNetTiny()
sd = m.state_dict()
graph = onnx.load(sys.argv[1]).graph
inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
# the exporter shares equal initializers through Identity nodes (a residual block's two
# batch-norm biases get the same gradient, so they stay equal)
for node in graph.node:
    if node.op_type == "Identity" and node.input[0] in inits:
        inits[node.output[0]] = inits[node.input[0]]
missing = [k for k in sd if k not in inits and not k.endswith("num_batches_tracked")]
new = {k: (torch.from_numpy(inits[k].copy()) if k in inits else v) for k, v in sd.items()}
m.load_state_dict(new, strict=True); m.eval()
x, y = t.load_split("/usr/share/datasets/fashion-mnist", "t10k")
with torch.no_grad():
    p = torch.cat([m(x[i:i+1000]).argmax(1) for i in range(0, len(x), 1000)])
print(f"missing from the ONNX file: {missing}; PyTorch accuracy with the exported weights: {100*(p==y).float().mean():.2f}% on n={len(y)}")
