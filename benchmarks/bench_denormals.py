"""Training with float32 subnormals flushed to zero vs not: speed and sameness, per architecture.

``fusion.train.train`` flushes subnormals by default (``TrainConfig.flush_denormals``;
see :func:`fusion.train.denormals_flushed`). This benchmark trains each
architecture at its ``cpu`` size on the same records, from the same
initialisation, once with and once without the flush, alternating the two
``--rounds`` times so that any load from other processes hits both alike, and
reports the median ratio of their wall times and whether the two runs ended
with bit-identical weights and validation MAE. One torch thread, as in the
study.

Usage::

    python benchmarks/bench_denormals.py                       # phonons, 300 graphs, 3 epochs, all 11
    python benchmarks/bench_denormals.py --arch cgcnn --n 886 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from fusion.data import load_dataset
from fusion.graphs import structure_to_graph
from fusion.models import available, build_model
from fusion.paths import BENCHMARKS, ROOT
from fusion.train import TrainConfig, seed_everything, train


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="matbench_phonons")
    p.add_argument("--target", default="last_phdos_peak")
    p.add_argument("--n", type=int, default=300, help="training graphs (100 more validate)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--arch", nargs="*", default=None, help="architectures (default: all)")
    p.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "denormals.json")
    return p.parse_args()


def run_once(arch: str, train_g: list, val_g: list, epochs: int, flush: bool) -> tuple[float, float, dict]:
    """One training run: (seconds, validation MAE, final weights)."""
    seed_everything(0)
    model = build_model(arch, size="cpu")
    cfg = TrainConfig(
        epochs=epochs, batch_size=64, lr=3e-3, patience=epochs, seed=0, device="cpu",
        progress=False, num_threads=1, flush_denormals=flush,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = train(model, train_g, val_g, config=cfg)
    return time.perf_counter() - t0, float(result.val_mae), model.state_dict()


def main() -> None:
    """Time every architecture with and without the flush; write the JSON."""
    args = parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset, args.target, limit=args.n + 100, progress=False)
    graphs = [structure_to_graph(s, y=float(t)) for s, t in zip(ds.structures, ds.targets, strict=True)]
    train_g, val_g = graphs[: args.n], graphs[args.n :]
    rows: dict[str, Any] = {}
    for arch in args.arch or available():
        times: dict[bool, list[float]] = {True: [], False: []}
        same = True
        for _ in range(args.rounds):
            out = {flush: run_once(arch, train_g, val_g, args.epochs, flush) for flush in (False, True)}
            for flush, (sec, _, _) in out.items():
                times[flush].append(sec)
            (_, mae0, w0), (_, mae1, w1) = out[False], out[True]
            same &= mae0 == mae1 and all(torch.equal(w0[k], w1[k]) for k in w0)
        plain, flushed = statistics.median(times[False]), statistics.median(times[True])
        rows[arch] = {
            "seconds_plain": round(plain, 3),
            "seconds_flushed": round(flushed, 3),
            "speedup": round(plain / flushed, 3),
            "bit_identical": bool(same),
        }
        print(
            f"{arch:14s} plain {plain:7.2f} s  flushed {flushed:7.2f} s  x{plain / flushed:5.2f}  identical {same}"
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, cwd=ROOT
    )
    out = {
        "benchmark": "denormals",
        "dataset": args.dataset,
        "n_train": args.n,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "threads": 1,
        "architectures": rows,
        "code_version": commit.stdout.strip(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_end": os.getloadavg()},
        "note": "median wall time of the training call over alternating rounds; same records, seed and initialisation",
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
