#!/usr/bin/env python3
"""advtrain --target-cmd wrapper around NanoGuard, a third-party prompt-injection detector.

What the filter is
    NanoGuard: a 16.8M-parameter bidirectional transformer (4 layers, d=512, RoPE, BPE
    vocabulary of 8192, mean pooling + linear head, 2 classes) trained by its author to tell
    prompt injections / jailbreaks from safe prompts. advtrain did not train it.
    Classes: index 0 = "safe" (benign), index 1 = "injection" (malicious).

Where it comes from
    PyPI package `metatronnanoguard` 0.1.0 (import name `nanoguard`), author Ognjen
    Vucurevic, licence MIT. The trained weights (nanoguard/assets/model.pt, 58.7 MB, sha256
    in the wheel's RECORD: gKbzHOf_bMvv8KpYZ651rkszVotA6Du1lo7WZ37BJi4) and the tokenizer
    (nanoguard/assets/tokenizer.pkl, a pickled tiktoken Encoding) ship inside the wheel.
    Needs torch and tiktoken; bench/setup_filter_venv.sh installs the pinned set.

Offline
    Nothing is downloaded at run time: the model and tokenizer are loaded from the
    installed package (checked under `unshare -n`, i.e. with no network at all).

How it scores
    Exactly the package's own `NanoGuard.scan` path (one text per forward pass, so an
    answer never depends on what else is in the batch): BOS + BPE tokens truncated to the
    model's 512-token window (the filter never sees text past ~511 tokens, roughly
    2,000 characters of English), padded to 512, softmax over the two logits. The package
    calls a text an injection when p_injection >= 0.5.

Protocol (advtrain's --target-cmd)
    stdin:  one JSON object per line, {"id": "<string>", "text": "<string>"}
    stdout: one line per request, {"id": "<same id>", "scores": [p_benign, p_malicious]},
            flushed after every line. Nothing else is ever written to stdout (the real
            stdout is kept on a private file descriptor and fd 1 is pointed at stderr, so
            stray prints from libraries cannot corrupt the stream); logs go to stderr.
    Blank lines are ignored. A line that is not a JSON object with a string "id" and a
    string "text" is a protocol error: the wrapper says so on stderr and exits with 2.

Run
    bash bench/setup_filter_venv.sh            # once: creates /work/venv-filter
    /work/venv-filter/bin/python bench/nanoguard_filter.py [--threads N] [--device cpu|cuda]

    advtrain ... --target-cmd "/work/venv-filter/bin/python bench/nanoguard_filter.py"

    --threads N   torch CPU threads (default: min(2, cores)); env NANOGUARD_THREADS
    --device D    cpu (default) or cuda; env NANOGUARD_DEVICE. On cuda the package runs
                  under bf16 autocast, so scores differ slightly from the cpu ones.
"""

import argparse
import json
import os
import sys
import time


def log(msg):
    sys.stderr.write(f"[nanoguard_filter] {msg}\n")
    sys.stderr.flush()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("NANOGUARD_THREADS", min(2, os.cpu_count() or 1))),
    )
    ap.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=os.environ.get("NANOGUARD_DEVICE", "cpu"),
    )
    return ap.parse_args()


def main():
    args = parse_args()

    # Keep the protocol stream private: duplicate the real stdout, then point fd 1 (and
    # sys.stdout) at stderr so nothing but our answers can reach advtrain.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = os.fdopen(proto_fd, "wb", buffering=0)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F
    from nanoguard import NanoGuard

    torch.set_num_threads(args.threads)
    ng = NanoGuard(device=args.device)
    seq_len = ng.config.sequence_len
    pad_id = ng.tokenizer.pad_token_id
    log(
        f"metatronnanoguard 0.1.0 loaded on {args.device} ({args.threads} threads) "
        f"in {time.perf_counter() - t0:.1f}s; classes [safe, injection]"
    )

    def score(text):
        # Same steps as nanoguard.scanner.NanoGuard.scan, returning both probabilities.
        ids = ng.tokenizer.encode(text, max_length=seq_len)
        mask = [True] * len(ids) + [False] * (seq_len - len(ids))
        ids = ids + [pad_id] * (seq_len - len(ids))
        input_ids = torch.tensor([ids], dtype=torch.long, device=ng.device)
        attn = torch.tensor([mask], dtype=torch.bool, device=ng.device)
        with torch.no_grad():
            if ng.device == "cuda":
                with torch.amp.autocast(device_type="cuda", dtype=torch.bfloat16):
                    logits = ng.model(input_ids, attn)
            else:
                logits = ng.model(input_ids, attn)
        probs = F.softmax(logits.float(), dim=-1)[0]
        return [float(probs[0]), float(probs[1])]

    n = 0
    stdin = sys.stdin.buffer
    for raw in stdin:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            rid = req["id"]
            text = req["text"]
            if not isinstance(rid, str) or not isinstance(text, str):
                raise TypeError('"id" and "text" must be strings')
        except (ValueError, KeyError, TypeError) as e:
            log(f"protocol error on request line {n + 1}: {e}: {line[:200]!r}")
            sys.exit(2)
        reply = json.dumps({"id": rid, "scores": score(text)}) + "\n"
        out.write(reply.encode("ascii"))
        n += 1
    log(f"stdin closed after {n} requests")


if __name__ == "__main__":
    main()
