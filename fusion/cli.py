"""Command line: ``fusion prune`` prunes a user's dataset with FUSION or a baseline.

Example::

    fusion prune --data my_cifs/ --target band_gap --ratio 0.4 --out kept.csv

Pipeline: load and check the data (a folder of CIFs with ``id_prop.csv``, an
``.extxyz`` file or a JSON list), SOAP fingerprints, an evidential surrogate for
the uncertainty score (only for methods that use it), selection, then CSVs of
the kept ids (with ``U``, ``W``, ``I``) and of the removed ids. Bad input stops
with a message naming the record and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EXIT_BAD_INPUT = 2


def _build_parser() -> argparse.ArgumentParser:
    from fusion.fingerprints import COMPRESSIONS, DEFAULT_COMPRESSION
    from fusion.selection import METHODS

    parser = argparse.ArgumentParser(
        prog="fusion", description="FUSION dataset pruning for crystal property prediction."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "prune",
        help="prune a dataset and write the kept ids",
        description="Prune a crystal dataset to (1 - ratio) of its size and write the kept ids.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="a folder of <id>.cif files with id_prop.csv, an .extxyz file or a .json list",
    )
    p.add_argument("--target", required=True, help="target property name (id_prop.csv column or JSON key)")
    p.add_argument("--ratio", type=float, default=0.4, help="fraction of the records to REMOVE, in [0, 1]")
    p.add_argument("--method", choices=METHODS, default="fusion", help="selection method")
    p.add_argument("--out", type=Path, default=Path("kept.csv"), help="CSV of kept ids with U, W, I")
    p.add_argument(
        "--removed-out",
        type=Path,
        default=None,
        help="CSV of removed ids (default: <out stem>_removed.csv next to --out)",
    )
    p.add_argument("--summary", type=Path, default=None, help="also write the summary as JSON here")
    p.add_argument("--model", default="cgcnn", help="surrogate architecture (fusion.models registry)")
    p.add_argument("--size", default="cpu", choices=("cpu", "paper"), help="surrogate size preset")
    p.add_argument("--epochs", type=int, default=100, help="surrogate training epochs")
    p.add_argument("--batch-size", type=int, default=64, help="surrogate batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="surrogate peak learning rate")
    p.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=0.0,
        help="weight Lambda of epistemic uncertainty in U = sigmoid(Lambda*U_epi + s*U_ale)",
    )
    p.add_argument(
        "--aleatoric-sign",
        type=int,
        choices=(-1, 1),
        default=-1,
        help="sign s of the aleatoric term: -1 as in the paper's formula and its public code, +1 the opposite (ablation)",
    )
    p.add_argument(
        "--gamma", type=float, default=0.1, help="decay of the redundancy weight W = exp(-gamma d_NN)"
    )
    p.add_argument(
        "--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION, help="SOAP compression mode"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the surrogate, random and baseline choices")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes for loading and fingerprints")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip records that fail to parse or check (listed in the summary) instead of stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _removed_path(out: Path, removed_out: Path | None) -> Path:
    return removed_out if removed_out is not None else out.with_name(f"{out.stem}_removed.csv")


def prune(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fusion prune`` and return its summary.

    Args:
        args: Parsed options of the ``prune`` subcommand.

    Returns:
        The summary (also printed, and written to ``--summary`` if given).
    """
    from fusion.data import load_user_data
    from fusion.fingerprints import dataset_species, soap_fingerprints
    from fusion.graphs import build_graphs
    from fusion.selection import NEEDS_U, importance, nearest_neighbor_distance, redundancy_weight, select

    t0 = time.perf_counter()
    progress = not args.quiet
    if not 0.0 <= args.ratio <= 1.0:
        raise ValueError(f"--ratio must be in [0, 1], got {args.ratio}")
    ds = load_user_data(
        args.data,
        args.target,
        errors="skip" if args.skip_bad else "raise",
        n_jobs=args.n_jobs,
        progress=progress,
    )
    n = len(ds)
    if n < 2:
        raise ValueError(f"{args.data}: need at least 2 valid records, got {n}")
    X = soap_fingerprints(
        ds.structures, dataset_species(ds.structures), args.compression, n_jobs=args.n_jobs, progress=progress
    )
    d_nn = nearest_neighbor_distance(X)
    W = redundancy_weight(d_nn, args.gamma)

    U = np.full(n, np.nan)
    u_ale = np.full(n, np.nan)
    u_epi = np.full(n, np.nan)
    if args.method in NEEDS_U:
        from fusion.train import TrainConfig
        from fusion.uncertainty import score_pool, train_surrogate

        graphs = build_graphs(ds.structures, ds.targets, n_jobs=args.n_jobs, progress=progress, ids=ds.ids)
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=progress
        )
        model, result = train_surrogate(graphs, args.model, args.size, config=config, seed=args.seed)
        u_ale, u_epi, U = score_pool(model, result, graphs, args.lam, args.aleatoric_sign)

    sel = select(
        args.method,
        args.ratio,
        ids=ds.ids,
        seed=args.seed,
        U=U if args.method in NEEDS_U else None,
        X=X,
        gamma=args.gamma,
        d_nn=d_nn,
        y=ds.targets,
    )
    table = pd.DataFrame(
        {
            "id": ds.ids,
            "target": ds.targets,
            "U": U,
            "W": W,
            "I": importance(U, W),
            "d_nn": d_nn,
            "u_ale": u_ale,
            "u_epi": u_epi,
        }
    ).set_index("id")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.loc[sel.kept_ids].reset_index().to_csv(out, index=False, float_format="%.8g")
    removed_path = _removed_path(out, args.removed_out)
    removed_path.parent.mkdir(parents=True, exist_ok=True)
    table.loc[sel.removed_ids].reset_index().to_csv(removed_path, index=False, float_format="%.8g")

    summary = {
        "data": str(args.data),
        "target": args.target,
        "method": args.method,
        "ratio": args.ratio,
        "n": n,
        "kept": len(sel.kept_ids),
        "removed": len(sel.removed_ids),
        "skipped": len(ds.skipped),
        "epsilon": sel.epsilon,
        "lambda": args.lam,
        "aleatoric_sign": args.aleatoric_sign,
        "gamma": args.gamma,
        "compression": args.compression,
        "seed": args.seed,
        "kept_csv": str(out),
        "removed_csv": str(removed_path),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    eps = "n/a" if sel.epsilon is None else f"{sel.epsilon:.6g}"
    print(
        f"fusion prune: method={args.method} n={n} kept={summary['kept']} removed={summary['removed']} "
        f"skipped={summary['skipped']} epsilon={eps} time={summary['seconds']:.1f}s\n"
        f"  kept -> {out}\n  removed -> {removed_path}"
    )
    if args.summary is not None:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fusion`` console script.

    Args:
        argv: Arguments (without the program name); defaults to ``sys.argv[1:]``.

    Returns:
        Exit status: 0 on success, 2 on bad input (message on stderr, no traceback).
    """
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "prune":
            prune(args)
    # fusion.data.DataError and fusion.graphs.IsolatedAtomError are ValueErrors;
    # catching the base keeps `--help` free of the torch import.
    except ValueError as exc:
        print(f"fusion {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
