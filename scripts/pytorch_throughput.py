#!/usr/bin/env python3
"""PyTorch CPU training-throughput baseline for the gossipctl learner models.

Reads Fashion-MNIST training data from IDX gzip files and measures training
throughput (samples/second) of the two classifiers the Rust learner crate
trains with burn. One JSON line per model goes to stdout; progress to stderr.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
BATCH_SIZE = 64
WARMUP_BATCHES = 20
EXPECTED_PARAMS = {"cnn": 55_338, "mlp": 101_770}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def read_idx(path, expected_magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise ValueError(f"{path}: bad magic {magic:#x}, expected {expected_magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if arr.size != expected:
        raise ValueError(f"{path}: {arr.size} bytes of payload, expected {expected}")
    return arr.reshape(dims)


def load_train(data_dir):
    images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"), 0x00000803)
    labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"), 0x00000801)
    if images.shape[0] != labels.shape[0]:
        raise ValueError("image/label count mismatch")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)  # [N, 28, 28] in [0, 1]
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def build_model(name):
    if name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.3),
            nn.Flatten(),  # 32 * 7 * 7 = 1568
            nn.Linear(1568, 32),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(32, 10),
        )
    elif name == "mlp":
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
    else:
        raise ValueError(f"unknown model {name!r} (expected cnn or mlp)")
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == EXPECTED_PARAMS[name], f"{name}: {n_params} params, expected {EXPECTED_PARAMS[name]}"
    return model, n_params


def batches(n, generator):
    """Endless stream of shuffled index batches (whole batches only)."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - BATCH_SIZE + 1, BATCH_SIZE):
            yield perm[start:start + BATCH_SIZE]


def bench(name, x, y, seconds, threads):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model, n_params = build_model(name)
    model.train()
    # Input layout per model: cnn wants [B, 1, 28, 28], mlp flattens itself.
    inputs = x.unsqueeze(1) if name == "cnn" else x
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stream = batches(x.shape[0], generator)

    def step():
        idx = next(stream)
        xb = inputs[idx]
        yb = y[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    log(f"[{name}] {n_params} params, warming up {WARMUP_BATCHES} batches")
    for _ in range(WARMUP_BATCHES):
        step()

    log(f"[{name}] timing for {seconds}s")
    n_batches = 0
    start = time.perf_counter()
    while True:
        loss = step()
        n_batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    sps = n_batches * BATCH_SIZE / elapsed
    log(f"[{name}] {n_batches} batches in {elapsed:.3f}s, last loss {loss.item():.4f}")
    return {
        "framework": "pytorch",
        "model": name,
        "threads": threads,
        "batch_size": BATCH_SIZE,
        "samples_per_second": round(sps, 1),
        "batches": n_batches,
        "torch_version": torch.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=os.environ.get("GOSSIP_DATA") or DEFAULT_DATA,
                    help="directory with Fashion-MNIST IDX .gz files "
                         "(default: $GOSSIP_DATA, else %(default)s)")
    ap.add_argument("--models", default="cnn,mlp", help="comma-separated: cnn,mlp")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per model")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in EXPECTED_PARAMS:
            ap.error(f"unknown model {m!r}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log(f"torch {torch.__version__}, threads={torch.get_num_threads()}, data={args.data}")
    x, y = load_train(args.data)
    log(f"loaded {x.shape[0]} training samples")

    for m in models:
        result = bench(m, x, y, args.seconds, args.threads)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
