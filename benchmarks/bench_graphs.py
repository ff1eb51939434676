"""Crystal-graph construction speed: cgcnn2 0.6.0's pipeline against fusion.graphs.

Methods, each timed on the same CIF texts (a seeded sample of each dataset):

* ``cgcnn2``: cgcnn2 0.6.0's own ``CIFData`` item loader (``_load_item_fast``:
  ``Structure.from_file`` on the CIF, ``get_neighbor_list`` at 8 Å, 12 nearest
  neighbours, Gaussian expansion, atom features). It reads one CIF file per
  record, so the sample is written to a temporary folder first (not timed).
* ``cgcnn2-legacy`` (on ``--legacy-n`` records): its older ``_load_item``
  (``get_all_neighbors``).
* ``fusion-cif``: :func:`fusion.graphs.graphs_from_cif` on the CIF texts, one
  process, plus the same 41-Gaussian expansion of every edge distance.
* ``fusion-structure``: :func:`fusion.graphs.build_graphs` on structures
  parsed beforehand (parsing not timed; no expansion).
* ``pymatgen+fusion``: ``Structure.from_str`` then ``structure_to_graph``
  (the obvious route, for context).
* ``fusion-cif-jobs`` (with ``--jobs`` > 1): ``graphs_from_cif`` over a process pool.

Rates are given per wall-clock second and per CPU second of this process (the
second is less sensitive to other jobs on a shared machine; pool methods have
no meaningful CPU rate). Each method runs ``--repeat`` times; the best run counts.

It also checks that the fast CIF route gives graphs identical to the pymatgen
route, and compares our neighbour lists with cgcnn2's.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_graphs.py --n 2000 --out benchmarks/results/graphs.json
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from fusion.graphs import build_graphs, graphs_from_cif, structure_to_graph
from fusion.models.layers import gaussian_expansion
from fusion.paths import BENCHMARKS, ROOT, dataset_file

CUTOFF, MAX_NEIGHBORS, STEP = 8.0, 12, 0.2
N_GAUSS = round(CUTOFF / STEP) + 1  # cgcnn2: np.arange(0, 8 + 0.2, 0.2) -> 41 centres


def load_sample(name: str, n: int, seed: int) -> tuple[list[str], list[str]]:
    """Return ids and CIF texts of a seeded random sample of a project dataset."""
    with gzip.open(dataset_file(name), "rt") as fh:
        records = json.load(fh)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(records), size=min(n, len(records)), replace=False))
    return [records[i]["id"] for i in pick], [records[i]["structure"] for i in pick]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time over ``repeat`` runs, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return min(walls), min(cpus), out


def cgcnn2_dataset(ids: list[str], cifs: list[str], folder: Path):
    """Write the sample in cgcnn2's folder layout and open it with its CIFData."""
    import cgcnn2
    from cgcnn2.data import CIFData

    for cid, cif in zip(ids, cifs, strict=True):
        (folder / f"{cid}.cif").write_text(cif)
    with (folder / "id_prop.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([cid, 0.0] for cid in ids)
    shutil.copy(Path(cgcnn2.__file__).parent / "asset" / "atom_init.json", folder)
    return CIFData(str(folder), max_num_nbr=MAX_NEIGHBORS, radius=CUTOFF, step=STEP, cache_size=0)


def expand_all(graphs: list) -> list[torch.Tensor]:
    return [gaussian_expansion(g.edge_dist, 0.0, CUTOFF, N_GAUSS, STEP) for g in graphs]


def same_graph(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a.keys() if k != "y")  # noqa: SIM118 (a Data, not a dict)


def agree_with_cgcnn2(graphs: list, items: list) -> tuple[int, int]:
    """Count structures whose 12-NN lists (indices and distances) match cgcnn2's.

    Only structures where every atom has at least 12 neighbours are comparable
    (cgcnn2 pads shorter lists).
    """
    agree = comparable = 0
    for g, ((_, nbr_fea, nbr_idx), _, _) in zip(graphs, items, strict=True):
        n = int(g.natoms)
        if g.edge_index.shape[1] != n * MAX_NEIGHBORS:
            continue
        comparable += 1
        ours_idx = g.edge_index[0].view(n, MAX_NEIGHBORS)
        ours_fea = gaussian_expansion(g.edge_dist, 0.0, CUTOFF, N_GAUSS, STEP).view(n, MAX_NEIGHBORS, -1)
        agree += bool(torch.equal(ours_idx, nbr_idx) and torch.allclose(ours_fea, nbr_fea, atol=1e-5))
    return agree, comparable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["perov5_castelli", "mp_mtcgcnn"])
    parser.add_argument("--n", type=int, default=2000, help="records per dataset")
    parser.add_argument("--legacy-n", type=int, default=300, help="records for cgcnn2-legacy (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the best counts")
    parser.add_argument(
        "--jobs", type=int, default=1, help="also time graphs_from_cif with this many processes"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "graphs.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # cgcnn2 warns on short neighbour lists; pymatgen on CIF rounding

    load_start = os.getloadavg()
    rows: list[dict] = []
    checks: dict[str, dict] = {}
    for name in args.datasets:
        ids, cifs = load_sample(name, args.n, args.seed)
        n = len(cifs)
        structures = [Structure.from_str(c, fmt="cif") for c in cifs]
        n_sites = float(np.mean([len(s) for s in structures]))

        def add(method: str, count: int, wall: float, cpu: float | None, name=name, n_sites=n_sites) -> None:
            rows.append({
                "dataset": name, "method": method, "n": count, "mean_sites": round(n_sites, 2),
                "wall_s": round(wall, 4), "cpu_s": None if cpu is None else round(cpu, 4),
                "per_s_wall": round(count / wall, 1),
                "per_s_cpu": None if cpu is None else round(count / cpu, 1),
            })  # fmt: skip

        with tempfile.TemporaryDirectory() as tmp:
            ds = cgcnn2_dataset(ids, cifs, Path(tmp))
            wall, cpu, items = timed(lambda ds=ds, n=n: [ds[i] for i in range(n)], args.repeat)
            add("cgcnn2", n, wall, cpu)
            if args.legacy_n:
                m = min(args.legacy_n, n)
                wall, cpu, _ = timed(lambda ds=ds, m=m: [ds._load_item(i) for i in range(m)], args.repeat)
                add("cgcnn2-legacy", m, wall, cpu)

        def fusion_cif(cifs=cifs, jobs=1):
            graphs = graphs_from_cif(
                cifs, cutoff=CUTOFF, max_neighbors=MAX_NEIGHBORS, n_jobs=jobs, progress=False
            )
            return graphs, expand_all(graphs)

        wall, cpu, (g_cif, _) = timed(fusion_cif, args.repeat)
        add("fusion-cif", n, wall, cpu)
        wall, cpu, g_struct = timed(
            lambda s=structures: build_graphs(s, cutoff=CUTOFF, max_neighbors=MAX_NEIGHBORS, progress=False),
            args.repeat,
        )
        add("fusion-structure", n, wall, cpu)
        wall, cpu, _ = timed(
            lambda c=cifs: [structure_to_graph(Structure.from_str(x, fmt="cif")) for x in c], args.repeat
        )
        add("pymatgen+fusion", n, wall, cpu)
        if args.jobs > 1:
            wall, _, _ = timed(lambda: fusion_cif(jobs=args.jobs), args.repeat)
            add(f"fusion-cif-jobs{args.jobs}", n, wall, None)

        agree, comparable = agree_with_cgcnn2(g_cif, items)
        checks[name] = {
            "fast_cif_equals_pymatgen_route": sum(map(same_graph, g_cif, g_struct)),
            "records": n,
            "nn_lists_equal_to_cgcnn2": agree,
            "comparable_with_cgcnn2": comparable,
        }

    ref = {r["dataset"]: r for r in rows if r["method"] == "cgcnn2"}
    for r in rows:
        base = ref[r["dataset"]]
        r["speedup_wall"] = round(r["per_s_wall"] / base["per_s_wall"], 2)
        r["speedup_cpu"] = None if r["per_s_cpu"] is None else round(r["per_s_cpu"] / base["per_s_cpu"], 2)

    print("| dataset | method | n | graphs/s (wall) | graphs/s (CPU) | x cgcnn2 (wall) | x cgcnn2 (CPU) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        cpu = "-" if r["per_s_cpu"] is None else f"{r['per_s_cpu']:.0f}"
        xcpu = "-" if r["speedup_cpu"] is None else f"{r['speedup_cpu']:.2f}"
        print(
            f"| {r['dataset']} | {r['method']} | {r['n']} | {r['per_s_wall']:.0f} | {cpu} "
            f"| {r['speedup_wall']:.2f} | {xcpu} |"
        )
    for name, c in checks.items():
        print(
            f"\n{name}: fast CIF route == pymatgen route on {c['fast_cif_equals_pymatgen_route']}/{c['records']}; "
            f"12-NN lists equal to cgcnn2's on {c['nn_lists_equal_to_cgcnn2']}/{c['comparable_with_cgcnn2']} "
            "comparable structures"
        )
    load_end = os.getloadavg()
    print(
        f"\nload average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}; {os.cpu_count()} CPUs"
    )

    versions = {p: metadata.version(p) for p in ("torch", "torch-geometric", "pymatgen", "numpy", "cgcnn2")}
    result = {
        "benchmark": "graphs",
        "settings": {**vars(args), "out": os.path.relpath(args.out, ROOT), "cutoff": CUTOFF, "max_neighbors": MAX_NEIGHBORS,
                     "gaussians": N_GAUSS, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end},
        "versions": versions,
        "results": rows,
        "checks": checks,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
