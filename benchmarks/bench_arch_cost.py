"""Training cost of the 11 architectures at their ``cpu`` size, relative to CGCNN, per dataset.

Plans the ``transfer`` grid: each architecture trains 2 epochs (one torch
thread) on the first ``--n`` training graphs of split 0 of each dataset's graph
cache, with 64 validation and 64 test graphs, through the study's own
:func:`fusion.stages.common.fit_and_score`. Reported: milliseconds per training
graph and epoch (evaluation and model construction included) and the ratio to
CGCNN measured in the same run. The ratios are what the plan uses; absolute
times depend on the machine's load, recorded beside them.

Usage, from the repository root after ``dvc repro graphs``::

    python benchmarks/bench_arch_cost.py phonons dielectric
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure(key: str, n: int, epochs: int = 2) -> dict[str, float]:
    """Milliseconds per training graph and epoch of every architecture on dataset ``key``."""
    from fusion.models import available
    from fusion.stages.common import fit_and_score, load_graph_cache, load_split, train_config

    graphs, split = load_graph_cache(key), load_split(key, 0)
    ids = (split["train"][:n], split["val"][:64], split["test"][:64])
    out = {}
    for arch in available():
        start = time.perf_counter()
        fit_and_score(arch, "cpu", graphs, *ids, train_config(epochs, 64, 1e-3, epochs, 0, 1))
        out[arch] = 1000 * (time.perf_counter() - start) / (epochs * len(ids[0]))
        print(f"{key:12s} {arch:14s} {out[arch]:7.2f} ms/graph/epoch", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", nargs="+", help="dataset keys with a graph cache")
    ap.add_argument("--n", type=int, default=256, help="training graphs (default 256)")
    ap.add_argument("--out", type=Path, default=RESULTS / "arch_cost.json")
    args = ap.parse_args()
    load = os.getloadavg()
    ms = {key: measure(key, args.n) for key in args.datasets}
    res = {
        "benchmark": "arch_cost",
        "n_train": args.n,
        "epochs": 2,
        "threads": 1,
        "ms_per_graph_epoch": ms,
        "ratio_to_cgcnn": {k: {a: v / m["cgcnn"] for a, v in m.items()} for k, m in ms.items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_start": load,
                    "load_avg_end": os.getloadavg()},
    }  # fmt: skip
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
