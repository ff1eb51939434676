r"""Check that the graph and fingerprint caches are canonical across BLAS kernels.

Builds the graphs and SOAP fingerprints of the first ``--n`` usable records of
each dataset with the package functions the pipeline uses
(:func:`fusion.graphs.graphs_from_cif` / :func:`fusion.graph_cache.save_graphs`,
:func:`fusion.fingerprints.soap_fingerprints` /
:func:`~fusion.fingerprints.save_fingerprints`) into a temporary folder, once
per environment in a fresh subprocess, and prints the md5 of every file. The
environments differ only in the variables that pick the OpenBLAS kernel
(``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) and, in the last one, in the
SIMD extensions numpy may dispatch to (``NPY_DISABLE_CPU_FEATURES``: a CPU
without AVX-512). The caches are canonical across BLAS kernels when the
``graphs`` and ``fingerprints`` columns hold one md5 over every
environment (the exit status says so). The last one is judged too: numpy's trigonometric functions differ in the last bit between
AVX-512 and AVX2 code, and pymatgen's ``Lattice.from_parameters`` used to
carry that into the graph cache's lattice and positions; the CIF reader now
computes the lattice with :func:`fusion.cif.lattice_from_parameters`
(scalar C-library trigonometry), so that variable must not change the
caches either. On a CPU without AVX-512 it changes nothing by construction.

Besides the caches, three diagnostics are hashed (not cached by the
pipeline): ``dscribe``, the raw per-site output of a plain dscribe SOAP (its
own LAPACK-computed radial basis) on the first 40 structures; ``d_nn`` and
``nn_idx``, the output of :func:`fusion.selection.nearest_neighbor_distance`
on the fingerprints (``d_nn`` as written to the prune CSVs, ``%.10g``).

Setting those variables is this one-off tool's business; tests and CI never
touch them. Usage::

    OMP_NUM_THREADS=1 nice python tools/check_canonical.py --n 300 \\
        matbench_jdft2d matbench_phonons matbench_dielectric
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

KERNEL_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "NPY_DISABLE_CPU_FEATURES")
ENVIRONMENTS: dict[str, dict[str, str]] = {
    "Haswell, L2 512": {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"},
    "unset": {},
    "Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "Prescott": {"OPENBLAS_CORETYPE": "Prescott"},
    "Haswell, numpy w/o AVX-512": {
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    },
}
JUDGED = tuple(ENVIRONMENTS)
COLUMNS = ("graphs", "fingerprints", "dscribe", "d_nn", "nn_idx")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _usable(name: str, n: int) -> tuple[list[str], list[str]]:
    """Ids and CIFs of the first ``n`` records with an ordered structure and a valid graph."""
    from pymatgen.core import Structure

    from fusion.data import read_records
    from fusion.graphs import IsolatedAtomError, graph_from_cif

    ids, cifs = [], []
    for record in read_records(name):
        cif = record["structure"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if not Structure.from_str(cif, fmt="cif").is_ordered:
                    continue
            graph_from_cif(cif)
        except (IsolatedAtomError, ValueError):
            continue
        ids.append(str(record["id"]))
        cifs.append(cif)
        if len(ids) == n:
            break
    return ids, cifs


def child(names: list[str], n: int, compression: str, keep: str | None = None) -> dict[str, object]:
    """Build everything for ``names`` in this process; return the md5s and the BLAS in use."""
    import numpy as np
    from ase import Atoms
    from dscribe.descriptors import SOAP
    from pymatgen.core import Structure
    from threadpoolctl import threadpool_info

    from fusion.fingerprints import SOAP_PARAMS, dataset_species, save_fingerprints, soap_fingerprints
    from fusion.graph_cache import save_graphs
    from fusion.graphs import graphs_from_cif
    from fusion.selection import nearest_neighbor_distance

    out: dict[str, object] = {
        "blas": sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("user_api") == "blas"})
    }
    folder = contextlib.nullcontext(tempfile.mkdtemp(dir=keep)) if keep else tempfile.TemporaryDirectory()
    with folder as tmp:
        for name in names:
            ids, cifs = _usable(name, n)
            graphs = graphs_from_cif(cifs, progress=False, ids=ids)
            save_graphs(Path(tmp, f"{name}.pt"), ids, graphs, {"cutoff": 8.0, "max_neighbors": 12})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structures = [Structure.from_str(c, fmt="cif") for c in cifs]
            species = dataset_species(structures)
            X = soap_fingerprints(structures, species, compression, progress=False)
            save_fingerprints(
                Path(tmp, f"{name}.npz"), ids, X, {"species": species, "compression": compression}
            )
            plain = SOAP(
                species=species,
                periodic=True,
                compression={"mode": compression},
                dtype="float64",
                **SOAP_PARAMS,
            )
            raw = [
                plain.create(
                    Atoms(
                        numbers=s.atomic_numbers,
                        scaled_positions=s.frac_coords,
                        cell=s.lattice.matrix,
                        pbc=True,
                    )
                )
                for s in structures[:40]
            ]
            d_nn, idx = nearest_neighbor_distance(X, return_index=True)
            out[name] = {
                "records": len(ids),
                "features": int(X.shape[1]),
                "graphs": _md5(Path(tmp, f"{name}.pt").read_bytes()),
                "fingerprints": _md5(Path(tmp, f"{name}.npz").read_bytes()),
                "dscribe": _md5(np.concatenate(raw).tobytes()),
                "d_nn": _md5("\n".join(f"{v:.10g}" for v in d_nn).encode()),
                "nn_idx": _md5(idx.tobytes()),
            }
    return out


def main() -> int:
    """Run :func:`child` once per environment, print the md5 tables; 0 when the caches agree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="project datasets (e.g. matbench_jdft2d)")
    parser.add_argument("--n", type=int, default=300, help="records per dataset (default 300)")
    parser.add_argument("--compression", default="mu1nu1", help="SOAP compression (default mu1nu1)")
    parser.add_argument("--keep", help="leave each environment's files in a new folder under KEEP")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.names, args.n, args.compression, args.keep)))
        return 0
    results = {}
    for label, extra in ENVIRONMENTS.items():
        env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS} | extra
        cmd = [sys.executable, __file__, *args.names, "--n", str(args.n), "--compression", args.compression]
        cmd += ["--keep", args.keep] if args.keep else []
        proc = subprocess.run([*cmd, "--child"], env=env, capture_output=True, text=True, check=True)
        results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{label}: OpenBLAS kernel {results[label]['blas']}", file=sys.stderr, flush=True)
    ok = True
    for name in args.names:
        first = next(iter(results.values()))[name]
        print(f"\n{name}: {first['records']} records, {first['features']} fingerprint features")
        print(f"| environment | OpenBLAS kernel | {' | '.join(COLUMNS)} |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        for label, res in results.items():
            row = res[name]
            print(
                f"| {label} | {', '.join(res['blas'])} | " + " | ".join(row[c][:10] for c in COLUMNS) + " |"
            )
        for column in ("graphs", "fingerprints"):
            if len({results[label][name][column] for label in JUDGED}) != 1:
                ok = False
                print(f"NOT CANONICAL: {name} {column}")
    print(f"\ncaches canonical across {', '.join(JUDGED)}" if ok else "\ncaches NOT canonical")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
