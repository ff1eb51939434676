"""Training throughput: graphs per second per epoch, our trainer vs cgcnn2, same machine.

Data are built before timing: our graphs by :func:`fusion.graphs.structure_to_graph`,
cgcnn2's inputs by its own ``CIFData`` (all items loaded into its cache). Timed is
one training epoch (forward, backward, optimiser step, batching; no validation):
ours through :func:`fusion.train.train` (fast index-gathered batches, AdamW +
one-cycle, CGCNN ``paper`` size), cgcnn2 with the loop of its ``cgcnn-tr`` CLI
(``DataLoader`` + ``collate_pool``, Adam, MSE, default architecture). The two
alternate epoch by epoch (``--rounds`` times) so that load from other processes
hits both alike; the median over rounds is reported. Ours is timed twice: as it
trains by default (float32 subnormals flushed) and without the flush
(``cgcnn_noflush``), which is how cgcnn2 computes; on Intel CPUs subnormals cost
many times more than on AMD ones, so the CPU model is recorded.

Usage::

    python benchmarks/bench_train_throughput.py            # 2,000 perovskites, 2 threads
    python benchmarks/bench_train_throughput.py --also schnet megnet
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusion.data import load_dataset, read_records
from fusion.graphs import structure_to_graph
from fusion.models import build_model
from fusion.paths import BENCHMARKS
from fusion.train import TrainConfig, seed_everything, train


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="perov5_castelli")
    p.add_argument("--target", default="heat_all")
    p.add_argument("--n", type=int, default=2000, help="training graphs per epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--also", nargs="*", default=[], help="our other architectures to time")
    p.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "train_throughput.json")
    return p.parse_args()


def cgcnn2_setup(ids: list[str], cifs: dict[str, str], y: dict[str, float], folder: Path):
    from cgcnn2.data import CIFData
    from cgcnn2.model import CrystalGraphConvNet

    for i in ids:
        (folder / f"{i}.cif").write_text(cifs[i])
    with (folder / "id_prop.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([i, repr(y[i])] for i in ids)
    shutil.copy(Path(str(resources.files("cgcnn2") / "asset" / "atom_init.json")), folder)
    data = CIFData(str(folder))
    items = [data[k] for k in range(len(data))]  # fills CIFData's cache: data already built
    (atom, nbr, _), _, _ = items[0]
    model = CrystalGraphConvNet(orig_atom_fea_len=atom.shape[-1], nbr_fea_len=nbr.shape[-1])
    return data, model


def cgcnn2_epoch(data, model: nn.Module, optimizer, batch_size: int) -> float:
    """One epoch of cgcnn-tr's training loop; returns seconds."""
    from cgcnn2.data import collate_pool

    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate_pool)
    criterion = nn.MSELoss()
    model.train()
    t0 = time.perf_counter()
    for (atom, nbr, nbr_idx, crystal_idx), target, _ in loader:
        optimizer.zero_grad()
        out, _ = model(atom, nbr, nbr_idx, crystal_idx)
        loss = criterion(out, target)
        loss.backward()
        optimizer.step()
        loss.item()  # the CLI logs the loss of every batch
    return time.perf_counter() - t0


def ours_epoch(name: str, train_graphs, val_graphs, batch_size: int, threads: int) -> float:
    """One epoch through fusion.train.train; returns the training-step seconds.

    ``cgcnn_noflush`` is CGCNN with ``flush_denormals=False``: like cgcnn2's loop,
    it computes with float32 subnormals (see ``bench_denormals.py``).
    """
    flush = not name.endswith("_noflush")
    model = build_model(name.removesuffix("_noflush"), "paper")
    cfg = TrainConfig(
        epochs=1,
        batch_size=batch_size,
        progress=False,
        num_threads=threads,
        device="cpu",
        flush_denormals=flush,
    )
    return train(model, train_graphs, val_graphs, config=cfg).history[0]["train_seconds"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    ds = load_dataset(args.dataset, args.target, limit=args.n + 64, progress=False)
    raw = {r["id"]: r["structure"] for r in read_records(args.dataset)}
    y = dict(zip(ds.ids, (float(v) for v in ds.targets), strict=True))
    graphs = [structure_to_graph(s, y=y[i]) for i, s in zip(ds.ids, ds.structures, strict=True)]
    train_graphs, val_graphs = graphs[: args.n], graphs[args.n :]
    n = len(train_graphs)

    folder = Path(tempfile.mkdtemp(prefix="cgcnn2_tp_"))
    try:
        data, ref_model = cgcnn2_setup(ds.ids[:n], raw, y, folder)
        ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
        names = ["cgcnn", "cgcnn_noflush", *args.also]
        times: dict[str, list[float]] = {k: [] for k in ["cgcnn2", *names]}
        ours_epoch("cgcnn", train_graphs[:256], val_graphs, args.batch_size, args.threads)
        cgcnn2_epoch(
            torch.utils.data.Subset(data, range(256)), ref_model, ref_opt, args.batch_size
        )  # warm-up both
        for r in range(args.rounds):
            times["cgcnn2"].append(cgcnn2_epoch(data, ref_model, ref_opt, args.batch_size))
            for name in names:
                times[name].append(ours_epoch(name, train_graphs, val_graphs, args.batch_size, args.threads))
            print(
                f"round {r + 1}: " + ", ".join(f"{k} {n / v[-1]:.0f} graphs/s" for k, v in times.items()),
                flush=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    gps = {k: float(n / np.median(v)) for k, v in times.items()}
    speedup = gps["cgcnn"] / gps["cgcnn2"]
    print(f"\n{'model':<16} | graphs/s (median of {args.rounds} epochs)")
    print(f"{'cgcnn2 (ref)':<16} | {gps['cgcnn2']:8.0f}")
    for name in names:
        print(f"{'ours ' + name:<16} | {gps[name]:8.0f}")
    print(
        f"speed-up ours cgcnn / cgcnn2: {speedup:.2f}x (without flushing subnormals: "
        f"{gps['cgcnn_noflush'] / gps['cgcnn2']:.2f}x)"
    )
    out = {
        "benchmark": "train_throughput",
        "dataset": args.dataset,
        "n_train": n,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "graphs_per_second": gps,
        "epoch_seconds": times,
        "speedup_cgcnn": speedup,
        "speedup_cgcnn_noflush": gps["cgcnn_noflush"] / gps["cgcnn2"],
        "note": "training steps only (no validation); data built beforehand; median over "
        "alternating rounds on a possibly shared machine",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "torch": torch.__version__,
            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
