"""Pruning at scale: what was measured, and a projection to 10^6-10^8 structures on N workers.

The projection is arithmetic on measured rates, stated as such on the
Performance page; every assumption is a line here:

* **Featurisation** (CIF checks + SOAP) is embarrassingly parallel: time =
  n / (rate per worker x N x efficiency), with the per-worker rate and the
  2-worker efficiency measured by ``benchmarks/bench_scale.py`` (else
  ``bench_fingerprints.py``), and the same efficiency assumed at N workers
  (optimistic for large N: the scheduler's per-task overhead, ~1 ms for a
  128-structure chunk, is not the limit, the file system may be).
* **Nearest neighbours**: ``fusion prune``'s default sparse ``mu1nu1``
  fingerprints are searched exactly up to 2 x 10^4 structures (cost ~n^2,
  scaled from the exact search that ``bench_scale.py`` measures on ~77,000
  real structures) and above through a random projection to 256 dimensions
  and an IVF index there (``fusion.neighbors``), measured by the same run and
  scaled as n^1.5 (n_list ~ sqrt(n) lists, a
  fixed number probed; the projection and the re-measured shortlist are
  linear, so n^1.5 overstates them). Without that run, the dense ``mu2``
  search of ``bench_selection.py`` is used: exact up to 10^5 (~n^b, b fitted
  on its 10^4 and 10^5 points, about 2), the IVF measured at 10^6 above.
  Queries split over N workers, each holding the whole index, so this part
  divides by N while the fingerprints fit one worker's memory. Their size is
  the measured bytes per structure of the sparse rows (``bench_scale.py``),
  else 252 float32 features (``mu2``). Beyond one worker's memory the index
  must change: compressed (IVF-PQ, ~32 bytes a vector) or sharded over
  workers.
* **Selection** (W, I and the epsilon search) is O(n log n): 0.17 s at 10^6.
* **Surrogate**: one model, one device; it does not divide by N. A training
  graph costs 1 / training rate (``bench_train_throughput.py``, measured on
  5-atom cells, scaled by the mean cell size since the work per graph grows
  with its atoms and their 12 neighbours). With ``fusion prune``'s defaults it
  trains at most 100 epochs of the 90 % training part, at most ``--max-steps``
  (3,000) batches of 64 and at most ``--max-atom-steps`` (2.5 million) atoms
  summed over the batches (:func:`fusion.prune_surrogate.step_cap`: 1,302
  batches of 30-atom cells), but at least one epoch,
  evaluates the 10 % hold-out once per epoch and then scores every record;
  a graph evaluated without gradients is counted at a third of a training
  graph (forward pass only: an assumption, not a measurement).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.neighbors import SPARSE_EXACT_THRESHOLD
from fusion.report.inputs import read_json

FEATURES = 252
"""``mu2`` SOAP features (element-agnostic, fixed width): the fingerprint size without ``bench_scale.py``."""
IVF_EXPONENT = 1.5
TRAIN_ATOMS = 5.0
"""Atoms per cell of the training-throughput benchmark (perov5_castelli)."""
WORKER_MEMORY_GB = 64.0
"""Memory of one worker node assumed for "the index fits" (a common cluster node)."""


def measured_rates(folder: str | Path = "benchmarks/results") -> dict[str, Any]:
    """The rates the projection uses, each with the benchmark file it comes from.

    Args:
        folder: The committed benchmark results. Defaults to ``benchmarks/results``.

    Returns:
        ``soap_per_s`` (structures/s on one worker), ``efficiency_2``
        (2-worker speed-up / 2), ``nn_exact`` (``[(n, seconds)]``),
        ``nn_ivf_1e6`` (seconds), ``nn_approx`` (``(n, seconds)`` of the
        sparse approximate search on real structures, or None),
        ``bytes_per_structure`` (fingerprint memory), ``selection_1e6``
        (seconds), ``train_graphs_per_s`` and ``sources`` (what came from
        where). A missing file leaves its entries ``None``.
    """
    folder = Path(folder)
    out: dict[str, Any] = {"sources": {}, "nn_approx": None, "bytes_per_structure": FEATURES * 4}
    scale = read_json(folder / "scale.json")
    fp = read_json(folder / "fingerprints.json")
    if scale and scale.get("real"):
        one, two = scale["real"][0], scale["real"][1]
        out["soap_per_s"] = one["soap_structures_per_s"]
        out["efficiency_2"] = one["soap_seconds"] / two["soap_seconds"] / 2
        out["sources"]["soap"] = (
            f"bench_scale.py: {one['structures']:,} real structures, {scale['compression']}"
        )
        out["bytes_per_structure"] = one["fingerprint_mb"] * 1e6 / one["structures"]
        nb = scale.get("neighbours")
        if nb:
            out["nn_approx"] = (one["structures"], nb["nn_approx_seconds"])
            out["nn_exact_sparse"] = (one["structures"], nb["nn_exact_seconds"])
            out["sources"]["nn above 2 x 10^4"] = (
                f"bench_scale.py: sparse {scale['compression']}, random projection + IVF, "
                f"{one['structures']:,} real structures"
            )
    elif fp:
        mp = fp["datasets"]["mp_mtcgcnn"]
        out["soap_per_s"] = mp["ours_mu2_n_jobs_1"]["structures_per_s"]
        out["efficiency_2"] = mp["ours_mu2_n_jobs_2"]["structures_per_s"] / out["soap_per_s"] / 2
        out["sources"]["soap"] = "bench_fingerprints.py: 300 mp_mtcgcnn structures, mu2"
    else:
        out["soap_per_s"] = out["efficiency_2"] = None
    sel = read_json(folder / "selection.json")
    rows = sel["fusion"] if sel else []
    out["nn_exact"] = [(r["n"], r["nn_seconds"]) for r in rows if r["nn_search"] == "exact"]
    ivf = [r for r in rows if r["n"] == 1_000_000]
    out["nn_ivf_1e6"] = ivf[0]["nn_seconds"] if ivf else None
    out["selection_1e6"] = ivf[0]["prefix_search_seconds"] if ivf else None
    if sel:
        out["sources"]["nn"] = "bench_selection.py: random unit 252-d vectors"
    tr = read_json(folder / "train_throughput.json")
    out["train_graphs_per_s"] = tr["graphs_per_second"]["cgcnn"] if tr else None
    if tr:
        out["sources"]["surrogate"] = (
            f"bench_train_throughput.py: CGCNN, {tr['dataset']}, {tr['threads']} threads"
        )
    return out


def _nn_seconds(n: float, rates: dict[str, Any]) -> tuple[float, str]:
    """Nearest-neighbour seconds on one worker, and the search used."""
    if rates.get("nn_exact_sparse") and n <= SPARSE_EXACT_THRESHOLD:
        n0, t0 = rates["nn_exact_sparse"]
        return t0 * (n / n0) ** 2, "exact"
    exact = sorted(rates["nn_exact"])
    if not rates.get("nn_approx") and n <= 100_000 and len(exact) >= 2:
        (n1, t1), (n2, t2) = exact[0], exact[-1]
        b = math.log(t2 / t1) / math.log(n2 / n1)
        return t2 * (n / n2) ** b, "exact"
    if rates.get("nn_approx"):
        n0, t0 = rates["nn_approx"]
        return t0 * (n / n0) ** IVF_EXPONENT, "projection + IVF"
    return rates["nn_ivf_1e6"] * (n / 1e6) ** IVF_EXPONENT, "IVF"


def projection(
    rates: dict[str, Any],
    sizes: tuple[float, ...] = (1e6, 1e8),
    workers: tuple[int, ...] = (2, 64, 1024),
    atoms_per_cell: float = 30.0,
) -> pd.DataFrame:
    """Project the featurisation, nearest-neighbour and surrogate time of ``fusion prune`` at scale.

    Args:
        rates: :func:`measured_rates`.
        sizes: Dataset sizes (structures). Defaults to 10^6 and 10^8.
        workers: Worker counts (one core each). Defaults to 2, 64, 1024.
        atoms_per_cell: Mean atoms per structure of the projected dataset
            (Materials Project: about 30). Defaults to 30.

    Returns:
        One row per (size, workers): hours of featurisation, of the
        nearest-neighbour search (and which), of the surrogate (training within
        the step cap, hold-out passes, scoring every record) and its epochs, the
        fingerprint memory (GB), whether the index fits one worker, and the
        step that dominates. Empty when a rate is missing.
    """
    need = ("soap_per_s", "efficiency_2", "nn_ivf_1e6", "train_graphs_per_s")
    if any(rates.get(k) is None for k in need) or len(rates.get("nn_exact", [])) < 2:
        return pd.DataFrame()
    rows = []
    for n in sizes:
        memory = n * rates.get("bytes_per_structure", FEATURES * 4) / 1e9
        nn_one, search = _nn_seconds(n, rates)
        for w in workers:
            speed = 1.0 if w == 1 else w * min(1.0, rates["efficiency_2"])  # one worker: no parallel loss
            soap_h = n / (rates["soap_per_s"] * speed) / 3600
            nn_h = nn_one / w / 3600
            graph_h = (atoms_per_cell / TRAIN_ATOMS) / rates["train_graphs_per_s"] / 3600
            surrogate_h, epochs = _surrogate_hours(n, graph_h, atoms_per_cell)
            parts = {
                "featurisation": soap_h,
                "nearest neighbours": nn_h,
                "surrogate": surrogate_h,
            }
            rows.append(
                {
                    "structures": n,
                    "workers": w,
                    "featurisation (h)": soap_h,
                    "nearest neighbours (h)": nn_h,
                    "search": search,
                    "surrogate (h)": surrogate_h,
                    "surrogate epochs": epochs,
                    "fingerprints (GB)": memory,
                    "index fits one worker": memory < WORKER_MEMORY_GB / 2,
                    "dominant": max(parts, key=parts.get),
                }
            )
    return pd.DataFrame(rows)


def _surrogate_hours(n: float, graph_h: float, atoms_per_cell: float) -> tuple[float, int]:
    """Hours of ``fusion prune``'s default surrogate on ``n`` records, and its epochs (module docstring)."""
    from fusion.prune_options import MAX_ATOM_STEPS, MAX_STEPS
    from fusion.prune_surrogate import step_cap

    batch, max_epochs, val = 64, 100, 0.1
    cap, _ = step_cap(atoms_per_cell, batch, MAX_STEPS, MAX_ATOM_STEPS)
    per_epoch = math.ceil((1 - val) * n / batch)
    epochs = max(1, min(max_epochs, cap // per_epoch))
    trained = epochs * per_epoch * batch  # graphs through forward and backward passes
    evaluated = epochs * val * n + n  # the hold-out once per epoch, then every record scored
    return (trained + evaluated / 3) * graph_h, epochs


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _hours(h: float) -> str:
    """A duration in the unit that reads best (s, min, h or days)."""
    s = h * 3600
    if s < 120:
        return f"{s:.0f} s"
    if h < 2:
        return f"{s / 60:.0f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.0f} days"


def projection_display(proj: pd.DataFrame) -> pd.DataFrame:
    """:func:`projection` as the Performance page shows it (durations in readable units)."""
    if proj.empty:
        return proj
    return pd.DataFrame(
        {
            "structures": [
                f"10{str(round(math.log10(n))).translate(_SUPERSCRIPT)}" for n in proj["structures"]
            ],
            "workers": proj["workers"].to_numpy(),
            "featurisation": [_hours(h) for h in proj["featurisation (h)"]],
            "nearest neighbours": [
                f"{_hours(h)} ({s})"
                for h, s in zip(proj["nearest neighbours (h)"], proj["search"], strict=True)
            ],
            "surrogate": [
                f"{_hours(h)} ({e} epoch{'s' if e > 1 else ''})"
                for h, e in zip(proj["surrogate (h)"], proj["surrogate epochs"], strict=True)
            ],
            "fingerprints": [
                f"{g:,.0f} GB" + ("" if fits else ", too big for one worker")
                for g, fits in zip(proj["fingerprints (GB)"], proj["index fits one worker"], strict=True)
            ],
            "dominant": proj["dominant"].to_numpy(),
        }
    )


def measured_table(folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """The featurisation of ``bench_scale.py``'s real-data run, one row per worker count (empty when not run).

    Args:
        folder: The committed benchmark results. Defaults to ``benchmarks/results``.

    Returns:
        Structures, seconds per step, SOAP rate, fingerprint size, peak memory
        (GB) and the speed-up over one worker.
    """
    scale = read_json(Path(folder, "scale.json"))
    if not scale or not scale.get("real"):
        return pd.DataFrame()
    real = scale["real"]
    one = real[0]["featurise_seconds"]
    return pd.DataFrame(
        {
            "workers": [r["workers"] for r in real],
            "structures": [f"{r['structures']:,}" for r in real],
            "checks (s)": [r["check_seconds"] for r in real],
            "SOAP (s)": [r["soap_seconds"] for r in real],
            "total (s)": [r["featurise_seconds"] for r in real],
            "SOAP (structures/s)": [r["soap_structures_per_s"] for r in real],
            "fingerprints (MB)": [r["fingerprint_mb"] for r in real],
            "peak memory (GB)": [r["peak_rss_gb"] for r in real],
            "speed-up": [round(one / r["featurise_seconds"], 2) for r in real],
        }
    )


def neighbours_table(folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """The nearest-neighbour search and selection of ``bench_scale.py``, exact and approximate (empty when not run).

    Args:
        folder: The committed benchmark results. Defaults to ``benchmarks/results``.

    Returns:
        One row per search: its seconds, the share of records whose true
        nearest neighbour was found, and the share of the exact search's
        removed set that the approximate one also removes.
    """
    scale = read_json(Path(folder, "scale.json"))
    nb = (scale or {}).get("neighbours")
    if not nb:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "search": [
                f"exact (used up to {SPARSE_EXACT_THRESHOLD:,})",
                f"projection + IVF (used above {SPARSE_EXACT_THRESHOLD:,})",
            ],
            "seconds": [nb["nn_exact_seconds"], nb["nn_approx_seconds"]],
            "true neighbour found": ["100 %", f"{100 * nb['nn_approx_recall']:.1f} %"],
            f"removed at {nb['ratio']} as exact": [
                "100.00 %",
                f"{100 * nb['removed_overlap_approx_vs_exact']:.2f} %",
            ],
        }
    )


def status(folder: str | Path = "benchmarks/results") -> dict[str, str]:
    """Sentences for the page: whether the real-data run exists, and where each rate comes from."""
    scale = read_json(Path(folder, "scale.json"))
    rates = measured_rates(folder)
    if scale and scale.get("real"):
        said = (
            f"bench_scale.py ran on {scale['records']:,} records; the fingerprints of 1 and 2 workers are "
            + ("bitwise equal." if scale.get("bitwise_equal_1_vs_2_workers") else "NOT equal.")
        )
    else:
        said = (
            "bench_scale.py has not been run on an idle machine yet (the two cores were busy with the "
            "default study), so there is no real-data measurement at this scale; the projection below "
            "uses the rates of the smaller benchmarks."
        )
    sources = "; ".join(f"{k}: {v}" for k, v in rates["sources"].items()) or "no benchmark results"
    return {"scale_status": said, "scale_sources": sources}


def worker_overhead_table(folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """What limits the 1 -> 2 worker speed-up (``benchmarks/bench_worker_overhead.py``), one row per run.

    Args:
        folder: The committed benchmark results. Defaults to ``benchmarks/results``.

    Returns:
        Rows for the allocator pair (the same SOAP chunks with glibc's default
        and with Dask's ``MALLOC_TRIM_THRESHOLD_``), the hardware pair (one job
        alone, two at once) and the featurisation on 1 and 2 workers, with wall
        and CPU seconds; empty without the file.
    """
    res = read_json(Path(folder, "worker_overhead.json"))
    if not res:
        return pd.DataFrame()
    a, h = res["allocator"], res["hardware"]
    soap = f"SOAP of {a['structures']:,}"
    rows = [
        {"run": f"{soap}, glibc's default", "wall (s)": a["glibc_default"]["wall_s"],
         "kernel CPU (s)": a["glibc_default"]["sys_s"], "page faults": a["glibc_default"]["minor_faults"]},
        {"run": f"{soap}, MALLOC_TRIM_THRESHOLD_ 65536", "wall (s)": a["dask_worker_65536"]["wall_s"],
         "kernel CPU (s)": a["dask_worker_65536"]["sys_s"], "page faults": a["dask_worker_65536"]["minor_faults"]},
        {"run": f"{soap}, alone", "wall (s)": h["alone_s"]},
        {"run": f"{soap}, two at once (the slower)", "wall (s)": h["two_at_once_s"]},
    ]  # fmt: skip
    rows += [
        {
            "run": f"featurisation of {r['structures']:,}, {r['workers']} worker{'s' if r['workers'] > 1 else ''}",
            "wall (s)": r["wall_s"],
            "CPU main (s)": r["main_cpu_s"],
            "CPU workers (s)": r["worker_cpu_s"] if r["workers"] > 1 else None,
            "kernel CPU (s)": r["worker_sys_s"] if r["workers"] > 1 else None,
        }
        for r in res["cpu"]
    ]
    cols = ["run", "wall (s)", "CPU main (s)", "CPU workers (s)", "kernel CPU (s)", "page faults"]
    table = pd.DataFrame(rows).reindex(columns=cols)
    # Integers without a trailing ".0", and "–" (the page's missing-value sign) where a run has none.
    table["page faults"] = [f"{int(v):,}" if pd.notna(v) else float("nan") for v in table["page faults"]]
    return table


def worker_overhead_values(folder: str | Path = "benchmarks/results") -> dict[str, str]:
    """Glue values of :func:`worker_overhead_table`: its ratios, and the cores each featurisation kept busy.

    ``overhead_cores_1`` / ``overhead_cores_2``: CPU seconds of all processes
    over the wall time, on 1 and on 2 workers. All "not measured" without the file.
    """
    res = read_json(Path(folder, "worker_overhead.json"))
    keys = ("overhead_dask_trim", "overhead_two_at_once", "overhead_speedup", "overhead_cpu_ratio",
            "overhead_cores_1", "overhead_cores_2")  # fmt: skip
    if not res:
        return dict.fromkeys(keys, "not measured")
    one, two = res["cpu"]
    ratios = (
        res["allocator"]["slowdown_dask_setting"],
        res["hardware"]["slowdown_two_at_once"],
        res["speedup_2_over_1"],
        res["cpu_ratio_2_over_1"],
    )
    cores = [(r["main_cpu_s"] + r["worker_cpu_s"]) / r["wall_s"] for r in (one, two)]
    return {k: f"{v:.2f}x" for k, v in zip(keys[:4], ratios, strict=True)} | {
        "overhead_cores_1": f"{cores[0]:.2f}",
        "overhead_cores_2": f"{cores[1]:.2f}",
    }
