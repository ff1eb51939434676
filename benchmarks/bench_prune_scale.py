"""`fusion prune` on 10,000 structures of 20-150 atoms: wall time and peak memory (target: 15 min, 4 GB).

The input is made from real Materials Project cells (``data/mp_mtcgcnn``): a
seeded sample of records, each turned into a supercell along its shortest
lattice vectors until it holds a seeded random number of atoms between 20 and
150 (cells already above 150 atoms are skipped), written as a JSON list of
``{id, structure (CIF), formation_energy_per_atom}`` like a user's own file.
The supercells repeat their unit cell, so their SOAP fingerprints equal the
unit cell's: a realistic case of redundancy, which the selection should find.

Each method runs as the command a user types (``fusion prune``, all cores,
default options, plus ``--workdir`` so that the log says when each step's
artefact is saved: the timeline of a run, even of one that is stopped), with
the wall time and the peak resident memory of the process and its Dask workers
sampled every 0.2 s. Run it on an otherwise idle
machine::

    python benchmarks/bench_prune_scale.py                  # 10,000 structures: fusion, then random
    python benchmarks/bench_prune_scale.py --n 200 --methods random   # a quick check of the script
    python benchmarks/bench_prune_scale.py --extra --compression mu2  # with other fusion prune options

A run still going after ``--limit`` seconds (default one hour) is stopped and
recorded as timed out, so a target that fails by far still gets a result.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import PeakMemory, code_version

from fusion.data import read_records

RESULTS = Path(__file__).parent / "results"
TARGET = "formation_energy_per_atom"


def make_input(n: int, path: Path, seed: int = 0, lo: int = 20, hi: int = 150) -> dict[str, Any]:
    """Write ``n`` supercells of 20-150 atoms to ``path``; return their size statistics."""
    from pymatgen.core import Structure

    rng = np.random.default_rng(seed)
    raw = read_records("mp_mtcgcnn")
    order = rng.permutation(len(raw))
    out, sizes = [], []
    for k in order:
        if len(out) == n:
            break
        r = raw[int(k)]
        s = Structure.from_str(r["structure"], fmt="cif")
        if len(s) > hi:
            continue
        want = int(rng.integers(lo, hi + 1))
        mult = [1, 1, 1]
        # Grow along the shortest repeated edge until the cell holds at least `want` atoms.
        while len(s) * int(np.prod(mult)) < want:
            lengths = np.array(s.lattice.abc) * mult
            mult[int(np.argmin(lengths))] += 1
        if len(s) * int(np.prod(mult)) > hi:
            mult[int(np.argmax(mult))] -= 1
        big = s * mult
        if not lo <= len(big) <= hi:
            continue
        out.append(
            {
                "id": f"{r['id']}-x{'x'.join(map(str, mult))}",
                "structure": big.to(fmt="cif"),
                TARGET: r[TARGET],
            }
        )
        sizes.append(len(big))
    path.write_text(json.dumps(out))
    return {
        "structures": len(out),
        "atoms_mean": float(np.mean(sizes)),
        "atoms_min": min(sizes),
        "atoms_max": max(sizes),
    }


def run_prune(
    data: Path, out: Path, method: str, extra: list[str], limit: float | None = None
) -> dict[str, Any]:
    """One ``fusion prune`` run as a user types it; wall time, peak memory and its summary.

    A run still going after ``limit`` seconds is stopped (with its Dask
    workers) and recorded as ``timed_out``: its time is then a lower bound.
    """
    cmd = [str(Path(sys.executable).parent / "fusion"), "prune", "--data", str(data), "--target", TARGET,
           "--out-dir", str(out), "--method", method, "--ratio", "0.4", "--quiet",
           "--workdir", str(out.with_name(out.name + "-workdir")), *extra]  # fmt: skip
    t0 = time.perf_counter()
    timed_out = False
    lines: list[str] = []
    steps: list[dict[str, Any]] = []

    def read(stream: Any) -> None:
        # The working folder logs each artefact as it is saved: the time of each
        # line is when that step ended, known even for a run that gets stopped.
        for line in stream:
            lines.append(line)
            if line.startswith("fusion prune: saved "):
                kind = line.removeprefix("fusion prune: saved ").split(" ", 1)[0]
                steps.append({"step": kind, "ended_s": round(time.perf_counter() - t0, 1)})

    with PeakMemory() as mem:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the process group: fusion prune and its workers
            proc.wait()
        reader.join(timeout=10)
    seconds = time.perf_counter() - t0
    stderr = "".join(lines)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return {
        "method": method,
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(mem.peak / 1e9, 2),
        "peak_at_s": round(mem.peak_at, 1),
        "steps": steps,
        "summary": summary,
        "stderr_tail": stderr[-2000:] if proc.returncode and not timed_out else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="structures (default 10,000)")
    ap.add_argument("--methods", nargs="+", default=["fusion", "random"])
    ap.add_argument("--out", type=Path, default=RESULTS / "prune_scale.json")
    ap.add_argument(
        "--limit", type=float, default=3600, help="stop a run after this many seconds (default 3600)"
    )
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more fusion prune options")
    args = ap.parse_args()
    res: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "code": code_version(),
        # The targets are for default options; other options are recorded and shown as such.
        "options": args.extra,
        "targets": {"seconds": 900, "peak_rss_gb": 4.0},
    }
    with tempfile.TemporaryDirectory(prefix="fusion-prune-scale-") as tmp:
        data = Path(tmp) / "supercells.json"
        res["input"] = make_input(args.n, data)
        print(res["input"], flush=True)
        res["runs"] = []
        for method in args.methods:
            entry = run_prune(data, Path(tmp) / method, method, args.extra, args.limit)
            entry["meets_targets"] = bool(
                not entry["timed_out"]
                and entry["returncode"] == 0
                and entry["seconds"] <= 900
                and entry["peak_rss_gb"] <= 4.0
            )
            res["runs"].append(entry)
            print({k: v for k, v in entry.items() if k != "summary"}, flush=True)
    res["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
