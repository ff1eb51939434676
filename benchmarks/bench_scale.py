"""Pruning at scale: every shared dataset together, on 1 and 2 Dask workers, and synthetic growth.

Part 1 (real): the structures of every dataset under ``data/`` (about 77,000)
go through the featurisation path of ``fusion prune --method fusion``: CIF
parsing and checks into packed structures, then SOAP fingerprints (``fusion
prune``'s default ``mu1nu1``, computed in blocks and held as CSR because each
crystal fills only its own elements' channels; dense, with one species list
for all elements, they would be ~40,000 features, about 12 GB). Run once on 1
and once on 2 workers: the speed-up is the ratio of the two wall times in this
one run, and the fingerprints must be bitwise equal. Then, once (they run in
the main process whatever the workers): exact nearest-neighbour distances, W,
I and the epsilon search at ratio 0.4 with a seeded stand-in U (the surrogate
is timed by ``bench_prune_scale.py``), and the approximate search that
``fusion prune`` uses above 20,000 structures, on the same fingerprints: its
time, recall and how much of the removed set it changes. Peak memory is the
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
from scipy import sparse

from fusion.data import DATASETS, read_records
from fusion.fingerprints import DEFAULT_COMPRESSION, dataset_species, soap_fingerprints
from fusion.parallel import workers
from fusion.prune_result import fingerprint_nbytes
from fusion.prune_steps import Digest, Workers, compute_fingerprints
from fusion.record_checks import RawRecord, validate_records
from fusion.selection import fusion_prune, importance, nearest_neighbor_distance, redundancy_weight

RESULTS = Path(__file__).parent / "results"
COMPRESSION = DEFAULT_COMPRESSION
#: Structures per block of the synthetic throughput run (dense blocks of ~40,000 features stay below 0.5 GB).
SYNTHETIC_BLOCK = 2000


class PeakMemory:
    """Sample the resident set of this process and all its descendants (bytes).

    Also keeps the last-seen CPU seconds ``(user, system)`` of each descendant
    process by pid (``children_cpu``): a worker's CPU is lost once it exits.
    """

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self.peak_at = 0.0  # seconds from the start to the peak
        self.children_cpu: dict[int, tuple[float, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        t0 = time.perf_counter()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker may exit between the two calls
                    total += p.memory_info().rss
                    if p.pid != me.pid:
                        t = p.cpu_times()
                        self.children_cpu[p.pid] = (t.user, t.system)
            if total > self.peak:
                self.peak, self.peak_at = total, time.perf_counter() - t0
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def code_version() -> dict[str, Any]:
    """The commit the benchmark ran on, and whether the working tree differed from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--", "fusion")),
    }


def all_records(limit: int | None) -> list[RawRecord]:
    """Every record of every shared dataset (first target), ids prefixed by the dataset."""
    recs = []
    for name, targets in DATASETS.items():
        raw = read_records(name)
        raw = raw[:limit] if limit else raw
        recs += [RawRecord(f"{name}/{r['id']}", r.get("structure"), r.get(targets[0])) for r in raw]
    return recs


def featurise(recs: list[RawRecord], n_workers: int) -> tuple[dict[str, Any], Any]:
    """Checks and SOAP on ``n_workers`` local workers, as ``fusion prune`` runs them; returns timings and the fingerprints.

    Packed structures, :func:`fusion.prune_steps.compute_fingerprints` in
    blocks (held sparse when mostly zero).
    """
    out: dict[str, Any] = {"workers": n_workers}
    with PeakMemory() as mem, contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        pool = Workers(n_workers, None, stack, min_items=0)
        client = pool.client(len(recs))
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = validate_records(
                recs, name="all", target="first", progress=False, client=client, packed=True
            )
        t2 = time.perf_counter()
        X = compute_fingerprints(ds, COMPRESSION, pool, None, Digest(ds), progress=False)
        t3 = time.perf_counter()
    out.update(
        {
            "structures": len(ds),
            "skipped": len(ds.skipped),
            "atoms": int(sum(len(s) for s in ds.structures)),
            "species": len(dataset_species(ds.structures)),
            "features": int(X.shape[1]),
            "sparse": bool(sparse.issparse(X)),
            "nonzero_share": round(_nnz(X) / (X.shape[0] * X.shape[1]), 4),
            "fingerprint_mb": round(fingerprint_nbytes(X) / 1e6, 1),
            "cluster_start_seconds": round(t1 - t0, 2),
            "check_seconds": round(t2 - t1, 2),
            "soap_seconds": round(t3 - t2, 2),
            "featurise_seconds": round(t3 - t0, 2),
            "soap_structures_per_s": round(len(ds) / max(t3 - t2, 1e-9), 1),
            "peak_rss_gb": round(mem.peak / 1e9, 2),
            "peak_at_s": round(mem.peak_at, 1),
        }
    )
    return out, X


def neighbours_and_selection(X: Any, ratio: float = 0.4) -> dict[str, Any]:
    """d_NN, W, I and the epsilon search at ``ratio`` with a seeded stand-in U, exactly and approximately.

    These steps run in the main process whatever the number of workers, so
    they are timed once. The approximate search (what ``fusion prune`` uses
    above :data:`fusion.neighbors.SPARSE_EXACT_THRESHOLD` sparse
    fingerprints) is run here on the same fingerprints to measure its recall and
    what it changes in the selection.
    """
    U = np.random.default_rng(0).uniform(0.01, 0.99, X.shape[0])
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        d_exact = nearest_neighbor_distance(X, exact_threshold=X.shape[0])
        t1 = time.perf_counter()
        removed, eps = fusion_prune(importance(U, redundancy_weight(d_exact)), ratio)
        t2 = time.perf_counter()
        d_approx = nearest_neighbor_distance(X, exact_threshold=0)
        t3 = time.perf_counter()
    removed_approx, _ = fusion_prune(importance(U, redundancy_weight(d_approx)), ratio)
    found = np.isclose(
        d_approx, d_exact, rtol=1e-9, atol=1e-12
    )  # the same distance: a true nearest neighbour
    over = d_approx[~found] / np.maximum(d_exact[~found], 1e-12) - 1
    return {
        "nn_exact_seconds": round(t1 - t0, 2),
        "selection_seconds": round(t2 - t1, 3),
        "nn_approx_seconds": round(t3 - t2, 2),
        "nn_approx_recall": round(float(found.mean()), 4),
        "nn_approx_overestimate_median_pct_of_misses": round(float(np.median(over)) * 100, 2)
        if len(over)
        else 0.0,
        "removed_overlap_approx_vs_exact": round(
            len(np.intersect1d(removed, removed_approx)) / max(1, len(removed)), 4
        ),
        "peak_rss_gb": round(mem.peak / 1e9, 2),
        "ratio": ratio,
        "n_removed": len(removed),
        "epsilon": eps,
    }


def _nnz(X: Any) -> int:
    return int(X.nnz) if sparse.issparse(X) else int(np.count_nonzero(X))


def same_fingerprints(a: Any, b: Any) -> bool:
    """Bitwise equality of two fingerprint matrices, dense or CSR."""
    if sparse.issparse(a) != sparse.issparse(b) or a.shape != b.shape:
        return False
    if sparse.issparse(a):
        return (a != b).nnz == 0
    return bool(np.array_equal(a, b))


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
            for a in range(0, n, SYNTHETIC_BLOCK):  # throughput only: each block is dropped
                soap_fingerprints(
                    structures[a : a + SYNTHETIC_BLOCK], species, COMPRESSION, progress=False, client=client
                )
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
        "code": code_version(),
        "compression": COMPRESSION,
        "limit_per_dataset": args.limit,
    }
    recs = all_records(args.limit)
    res["records"] = len(recs)
    print(f"{len(recs)} records from {len(DATASETS)} datasets", flush=True)
    runs, fps = [], []
    for n_workers in (1, 2):
        entry, X = featurise(recs, n_workers)
        runs.append(entry)
        fps.append(X)
        print(entry, flush=True)
    res["real"] = runs
    res["bitwise_equal_1_vs_2_workers"] = same_fingerprints(fps[0], fps[1])
    res["featurise_speedup_2_over_1"] = round(runs[0]["featurise_seconds"] / runs[1]["featurise_seconds"], 2)
    res["soap_speedup_2_over_1"] = round(runs[0]["soap_seconds"] / runs[1]["soap_seconds"], 2)
    del fps[0]
    res["neighbours"] = neighbours_and_selection(fps[0])
    print(res["neighbours"], flush=True)

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
