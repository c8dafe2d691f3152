"""Throughput of the CIFAR-100 pipeline on synthetic images: backbone extraction (images/s) and
head training (samples/s per head), on whatever device torch picks (or ``--device``).

Uses the synthetic stand-in (``cal.cifar.synthetic_cifar100``) and random backbone weights, so it
needs neither internet nor CIFAR-100; the numbers are speeds, not accuracies.  The feature cache is
written under a temporary data root (``--root`` to keep it).

    python benchmarks/bench_cifar_pipeline.py                     # 2000 images, gmlp_s16_224
    python benchmarks/bench_cifar_pipeline.py --n 60000 --batch-size 512   # the issue's 60k goal
    python benchmarks/bench_cifar_pipeline.py --n 200 --heads linear,mlp_relu --device cpu

Goal on an H100 (issue 6): 60k images extracted in under 60 s, the head table in under 10 min.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> dict:
    from cvxattn_lib import cifar
    from cvxattn_lib.cifar import heads as H

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="training images (test: n // 5)")
    p.add_argument("--backbone", default="gmlp_s16_224")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--heads", default="available")
    p.add_argument("--beta", type=float, default=1e-2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--reduce-dim", type=int, default=None)
    p.add_argument("--reduce-tokens", type=int, default=None)
    p.add_argument("--root", type=Path, default=None, help="data root (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="cvxattn_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    bb = cifar.Backbone(args.backbone, pretrained=False, device=args.device)
    dev = bb.device
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({threads} threads)"
    print(f"device: {name}; backbone {args.backbone} (random weights), input {bb.input_size}")
    out = {"device": name, "backbone": args.backbone, "n_train": args.n, "batch_size": args.batch_size}
    caches = {}
    for split, n in (("train", args.n), ("test", max(1, args.n // 5))):
        data = cifar.synthetic_cifar100(split, n, seed=0)
        bb.tokens(torch.from_numpy(data.images[:2]))  # warm-up (cuDNN autotune, lazy init)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        caches[split] = cifar.extract_features(bb, data, root, batch_size=args.batch_size, rebuild=True)
        dt = time.perf_counter() - t0
        out[f"extract_{split}_s"] = dt
        out[f"extract_{split}_img_per_s"] = n / dt
        print(f"extract {split}: {n} images in {dt:.2f} s = {n / dt:.0f} images/s (cache written and "
              "checksummed included)")
    tr, te = caches["train"], caches["test"]
    Xtr, Xte, red = cifar.reduce_features(tr.features, te.features, dim=args.reduce_dim,
                                          tokens=args.reduce_tokens, device=dev)
    heads = H.available_heads() if args.heads == "available" else H.check_heads(args.heads)
    out["heads"] = {}
    for h in heads:
        r = H.train_head(h, Xtr, tr.labels, Xte, te.labels, args.beta, device=dev, epochs=args.epochs,
                         batch_size=args.batch_size, progress=False)
        sps = len(tr) * (args.epochs if not r.convex else 1) / r.train_time_s
        out["heads"][h] = {"train_time_s": r.train_time_s, "samples_per_s": sps, "top1": r.top1,
                           "rel_gap": r.rel_gap, "params": r.params}
        print(f"  {h:22s} {r.train_time_s:8.2f} s  {sps:10.0f} samples/s"
              f"{'' if r.convex else f' ({args.epochs} epochs)'}  params {r.params}")
    out["reduction"] = red
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
