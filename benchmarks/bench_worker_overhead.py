"""Why 2 Dask workers featurise less than 2x faster than 1: allocator, hardware, and where the CPU goes.

``bench_scale.py`` measured a 1 -> 2 worker speed-up of 1.30x for SOAP on this
2-core machine. This benchmark separates the candidate causes, each as a ratio
in one run:

1. **The allocator.** Dask starts its worker processes with
   ``MALLOC_TRIM_THRESHOLD_=65536``, so glibc returns freed memory to the
   operating system at once. A ``mu1nu1`` SOAP call with many species allocates
   and frees per-site arrays of hundreds of MB. The same SOAP work (640 real
   structures in chunks of 64, as the workers get them) runs in a fresh process
   with glibc's default and with Dask's setting: wall, user and kernel time and
   minor page faults.
2. **The hardware.** The same SOAP job alone, and two copies at once in two
   processes: if the cores or the memory bandwidth were shared, two at once
   would each be slower.
3. **Where the CPU goes** in ``bench_scale``'s featurisation of a seeded sample
   of 6,000 structures on 1 and 2 workers (``fusion.parallel.workers``, which
   now starts workers without Dask's trim setting): wall time, and the CPU
   seconds of the main process and of the worker processes.

Usage (on an otherwise idle machine)::

    python benchmarks/bench_worker_overhead.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import PeakMemory, all_records, code_version, featurise

RESULTS = Path(__file__).parent / "results"
CHUNK = 64


def _soap_chunks(sample: Path, n: int) -> dict[str, float]:
    """SOAP of the first ``n`` structures of ``sample`` in chunks of :data:`CHUNK`; resource use of this process."""
    from fusion.fingerprints import soap_fingerprints

    structures, species = pickle.loads(sample.read_bytes())
    structures = structures[:n]
    soap_fingerprints(structures[:CHUNK], species, "mu1nu1", n_jobs=1, progress=False)  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for a in range(0, len(structures), CHUNK):
        soap_fingerprints(structures[a : a + CHUNK], species, "mu1nu1", n_jobs=1, progress=False)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": time.perf_counter() - t0,
        "user_s": r1.ru_utime - r0.ru_utime,
        "sys_s": r1.ru_stime - r0.ru_stime,
        "minor_faults": r1.ru_minflt - r0.ru_minflt,
    }


def _job(args: tuple[str, int]) -> float:
    return _soap_chunks(Path(args[0]), args[1])["wall_s"]


def make_sample(path: Path, n: int = 1200, seed: int = 0) -> dict[str, Any]:
    """A seeded sample of ``n`` checked structures of every shared dataset, with their species, pickled."""
    from fusion.fingerprints import dataset_species
    from fusion.record_checks import validate_records

    recs = all_records(None)
    pick = [recs[i] for i in sorted(np.random.default_rng(seed).choice(len(recs), n, replace=False))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = validate_records(pick, name="sample", target="first", progress=False)
    species = dataset_species(ds.structures)
    path.write_bytes(pickle.dumps((list(ds.structures), species)))
    return {"structures": len(ds), "species": len(species)}


def allocator(sample: Path, n: int, rounds: int) -> dict[str, Any]:
    """Part 1: the same SOAP chunks in a fresh process, glibc's default vs Dask's ``MALLOC_TRIM_THRESHOLD_``."""
    settings = {"glibc_default": None, "dask_worker_65536": "65536"}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in settings}
    for _ in range(rounds):  # alternate, so drift hits both alike
        for name, value in settings.items():
            env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
            env["OMP_NUM_THREADS"] = "1"
            if value is not None:
                env["MALLOC_TRIM_THRESHOLD_"] = value
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(sample), str(n)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
    return {
        "structures": n,
        "chunk": CHUNK,
        "rounds": rounds,
        **{
            k: {m: round(x, 2) if m != "minor_faults" else int(x) for m, x in r.items()}
            for k, r in best.items()
        },
        "slowdown_dask_setting": round(
            best["dask_worker_65536"]["wall_s"] / best["glibc_default"]["wall_s"], 2
        ),
    }


def hardware(sample: Path, n: int, rounds: int) -> dict[str, Any]:
    """Part 2: one SOAP job alone, and two copies at once in two processes (the slower of the two)."""
    ctx = mp.get_context("spawn")
    alone, both = [], []
    for _ in range(rounds):
        with ctx.Pool(1) as p:
            alone.append(p.map(_job, [(str(sample), n)])[0])
        with ctx.Pool(2) as p:
            both.append(max(p.map(_job, [(str(sample), n)] * 2)))
    a, b = min(alone), min(both)
    return {"alone_s": round(a, 2), "two_at_once_s": round(b, 2), "slowdown_two_at_once": round(b / a, 2)}


def cpu_accounting(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """Part 3: ``bench_scale.featurise`` of a seeded sample on 1 and 2 workers, with the CPU of each process kind."""
    recs = all_records(None)
    pick = [recs[i] for i in sorted(np.random.default_rng(seed).choice(len(recs), n, replace=False))]
    rows = []
    for n_workers in (1, 2):
        me = psutil.Process()
        with PeakMemory() as sampler:
            t0, w0 = me.cpu_times(), time.perf_counter()
            entry, _ = featurise(pick, n_workers)
            wall, t1 = time.perf_counter() - w0, me.cpu_times()
        rows.append(
            {
                "workers": n_workers,
                "structures": entry["structures"],
                "wall_s": round(wall, 1),
                "soap_s": entry["soap_seconds"],
                "main_cpu_s": round((t1.user + t1.system) - (t0.user + t0.system), 1),
                "worker_cpu_s": round(sum(u + s for u, s in sampler.children_cpu.values()), 1),
                "worker_sys_s": round(sum(s for _, s in sampler.children_cpu.values()), 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=640, help="structures of the SOAP jobs of parts 1 and 2")
    ap.add_argument("--sample", type=int, default=6000, help="structures of part 3")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "worker_overhead.json")
    ap.add_argument("--child", nargs=2, metavar=("SAMPLE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_soap_chunks(Path(args.child[0]), int(args.child[1]))))
        return
    res: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "code": code_version(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.pkl"
        res["sample"] = make_sample(sample)
        res["allocator"] = allocator(sample, args.n, args.rounds)
        print(res["allocator"], flush=True)
        res["hardware"] = hardware(sample, args.n, args.rounds)
        print(res["hardware"], flush=True)
    res["cpu"] = cpu_accounting(args.sample)
    one, two = res["cpu"]
    res["speedup_2_over_1"] = round(one["wall_s"] / two["wall_s"], 2)
    res["cpu_ratio_2_over_1"] = round((two["main_cpu_s"] + two["worker_cpu_s"]) / one["main_cpu_s"], 2)
    res["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
