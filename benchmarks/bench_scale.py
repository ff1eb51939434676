"""Pruning at scale: every shared dataset together, on 1 and 2 Dask workers, and synthetic growth.

Part 1 (real): the structures of every dataset under ``data/`` (about 77,000)
go through the featurisation and selection path of ``fusion prune --method
fusion`` without the surrogate: CIF parsing and checks, SOAP fingerprints
(``mu2``: with one species list for all 89 elements, ``mu1nu1`` would be
~40,000 features, 12 GB for 77k structures), exact nearest-neighbour
distances, W, I and the epsilon search at ratio 0.4 with a seeded stand-in U
(the surrogate is timed by ``bench_train_throughput.py``). Run once with 1 and
once with 2 workers; the speed-up is the ratio of the two wall times in this
one run, and the fingerprints must be bitwise equal. Peak memory is the
largest resident set of this process plus its worker processes, sampled every
0.2 s.

Part 2 (synthetic): featurisation throughput on growing sets of perturbed
copies of real structures (random atomic displacements of 0.05 Å, seeded),
to fit time against n, and the selection at 10^6 from ``bench_selection.py``'s
result. Projections to 10^6 and 10^8 are made by the book's Performance page
from this JSON, and labelled as projections there.

Usage (on an otherwise idle machine; the numbers are meaningless under load)::

    python benchmarks/bench_scale.py                 # the whole run, ~77k structures
    python benchmarks/bench_scale.py --limit 300     # a quick check of the script
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from fusion.data import DATASETS, RawRecord, read_records, validate_records
from fusion.fingerprints import dataset_species, soap_fingerprints
from fusion.parallel import workers
from fusion.selection import fusion_prune, importance, nearest_neighbor_distance, redundancy_weight

RESULTS = Path(__file__).parent / "results"
COMPRESSION = "mu2"


class PeakMemory:
    """Sample the resident set of this process and all its descendants (bytes)."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self.peak_at = 0.0  # seconds from the start to the peak
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        t0 = time.perf_counter()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker may exit between the two calls
                    total += p.memory_info().rss
            if total > self.peak:
                self.peak, self.peak_at = total, time.perf_counter() - t0
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def all_records(limit: int | None) -> list[RawRecord]:
    """Every record of every shared dataset (first target), ids prefixed by the dataset."""
    recs = []
    for name, targets in DATASETS.items():
        raw = read_records(name)
        raw = raw[:limit] if limit else raw
        recs += [RawRecord(f"{name}/{r['id']}", r.get("structure"), r.get(targets[0])) for r in raw]
    return recs


def featurise_and_select(recs: list[RawRecord], n_workers: int) -> tuple[dict[str, Any], np.ndarray]:
    """The timed path on ``n_workers`` local workers; returns timings and the fingerprints."""
    out: dict[str, Any] = {"workers": n_workers}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        with workers(n_workers) as client:
            t1 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = validate_records(recs, name="all", target="first", progress=False, client=client)
            t2 = time.perf_counter()
            species = dataset_species(ds.structures)
            X = soap_fingerprints(ds.structures, species, COMPRESSION, progress=False, client=client)
            t3 = time.perf_counter()
        d_nn = nearest_neighbor_distance(X)
        t4 = time.perf_counter()
        U = np.random.default_rng(0).uniform(0.01, 0.99, len(X))
        removed, eps = fusion_prune(importance(U, redundancy_weight(d_nn)), 0.4)
        t5 = time.perf_counter()
    out.update(
        {
            "structures": len(ds),
            "skipped": len(ds.skipped),
            "species": len(species),
            "features": int(X.shape[1]),
            "cluster_start_seconds": round(t1 - t0, 2),
            "check_seconds": round(t2 - t1, 2),
            "soap_seconds": round(t3 - t2, 2),
            "nn_seconds": round(t4 - t3, 2),
            "selection_seconds": round(t5 - t4, 3),
            "total_seconds": round(t5 - t0, 2),
            "soap_structures_per_s": round(len(ds) / max(t3 - t2, 1e-9), 1),
            "peak_rss_gb": round(mem.peak / 1e9, 2),
            "n_removed": len(removed),
            "epsilon": eps,
        }
    )
    return out, X


def perturbed(structures: list[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` copies of ``structures`` (cycled) with seeded random displacements of 0.05 Å."""
    from pymatgen.core import Structure

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        s = structures[k % len(structures)]
        xyz = s.cart_coords + rng.normal(0, 0.05, (len(s), 3))
        out.append(Structure(s.lattice, s.species, xyz, coords_are_cartesian=True))
    return out


def synthetic(base: list[Any], sizes: list[int], n_workers: int) -> list[dict[str, Any]]:
    """SOAP throughput on perturbed copies, one entry per size."""
    species = dataset_species(base)
    rows = []
    with workers(n_workers) as client:
        for n in sizes:
            structures = perturbed(base, n)
            t0 = time.perf_counter()
            soap_fingerprints(structures, species, COMPRESSION, progress=False, client=client)
            dt = time.perf_counter() - t0
            rows.append({"n": n, "workers": n_workers, "seconds": round(dt, 2), "per_s": round(n / dt, 1)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="records per dataset (quick check)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 8000, 32000], help="synthetic set sizes")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args()

    res: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": os.getloadavg(),
        },
        "compression": COMPRESSION,
        "limit_per_dataset": args.limit,
    }
    recs = all_records(args.limit)
    res["records"] = len(recs)
    print(f"{len(recs)} records from {len(DATASETS)} datasets", flush=True)
    runs, fps = [], []
    for n_workers in (1, 2):
        entry, X = featurise_and_select(recs, n_workers)
        runs.append(entry)
        fps.append(X)
        print(entry, flush=True)
    res["real"] = runs
    res["bitwise_equal_1_vs_2_workers"] = bool(np.array_equal(fps[0], fps[1]))
    res["speedup_2_over_1"] = round(runs[0]["total_seconds"] / runs[1]["total_seconds"], 2)
    res["soap_speedup_2_over_1"] = round(runs[0]["soap_seconds"] / runs[1]["soap_seconds"], 2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = validate_records(recs[:: max(1, len(recs) // 500)], name="base", target="t", progress=False)
    res["synthetic"] = synthetic(base.structures, args.sizes, 2)
    sel = RESULTS / "selection.json"
    if sel.exists():
        res["selection_at_1e6"] = next(
            (r for r in json.loads(sel.read_text())["fusion"] if r["n"] == 1_000_000), None
        )
    res["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
