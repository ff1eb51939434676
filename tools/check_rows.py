r"""Re-run finished study runs with the current code and compare them with the recorded rows.

A change to the training code (``fusion.stages.common.TRAINING_CODE``) makes
every finished training stage stale for DVC. When the change is meant not to
alter any result (a speed-up, a refactor), this tool is the evidence: it
retrains chosen runs of the committed study exactly as their stage did (same
parameters from ``params.yaml``, same ids, same seed) and compares what they
print with the recorded CSVs, as the stage writes them (``%.10g``), so "same"
means the same bytes in the CSV. Only after it reports every row equal may the
stale stages be recorded with ``dvc commit`` instead of rerun.

Equality is expected only on the kind of CPU that recorded the rows: torch's
float32 kernels differ between AVX-512 and AVX2 machines, and a run retrained
on the other kind differs (the README's "Same seed, same numbers" gives the
measured size). There the tool measures that difference; it cannot vouch for
a code change.

Usage (from the repository root; 1 torch thread like the study)::

    python tools/check_rows.py --train jdft2d:0 --train phonons:3:random@0,fusion_neg@0.4 \\
        --uncertainty jdft2d:0 --tune jdft2d:0:0.003:50

``--train KEY:SEED[:METHOD@RATIO,...]`` re-runs the main architecture's rows
of ``results/train/KEY/<arch>-seed-SEED.csv`` (all of them without a list);
``--uncertainty KEY:SEED`` the surrogate scores ``results/uncertainty/KEY/seed-SEED.csv``
(whole file, byte for byte); ``--tune KEY:SEED:LR:EPOCHS`` one row of ``results/tune/KEY.csv``.
The exit status is 0 only if every compared value is equal.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusion import paths  # noqa: E402
from fusion.stages.common import (  # noqa: E402
    fit_and_score,
    load_graph_cache,
    load_split,
    prunable_ids,
    train_config,
)
from fusion.stages.train import Settings, plan  # noqa: E402
from fusion.stages.uncertainty import resolve, surrogate_frame  # noqa: E402

COMPARED = ("n_train", "n_val", "epochs", "epochs_run", "val_mae", "test_mae")


def _fmt(value: Any) -> str:
    """A value as the stage's CSV holds it (floats as ``%.10g``)."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _compare(
    label: str,
    recorded: dict[str, Any],
    new: dict[str, Any],
    seconds: float,
    keys: tuple[str, ...] = COMPARED,
) -> bool:
    """Print one run's comparison; True if every value of ``keys`` reads the same in the CSV."""
    diffs = [f"{k}: {_fmt(recorded[k])} -> {_fmt(new[k])}" for k in keys if _fmt(recorded[k]) != _fmt(new[k])]
    status = "EQUAL" if not diffs else "DIFFERENT (" + "; ".join(diffs) + ")"
    print(
        f"{label}: val {_fmt(new['val_mae'])}, test {_fmt(new.get('test_mae'))}, "
        f"{seconds:.1f} s now vs {recorded['seconds']} s recorded: {status}",
        flush=True,
    )
    return not diffs


def check_train(params: dict[str, Any], key: str, seed: int, runs: list[str] | None) -> bool:
    """Re-run rows of the ``train`` cell (``key``, main architecture, ``seed``), planned as the stage plans them."""
    p = params["train"]
    arch = params["architectures"][0]
    graphs = load_graph_cache(key)
    recorded = {
        f"{r['method']}@{r['ratio']:g}": r
        for r in pd.read_csv(paths.train_path(key, arch, seed)).to_dict("records")
    }
    planned = plan(key, seed, params["val_protocol"], Settings(**p), runs)
    ok = True
    for method, ratio, ids, cfg in planned:
        col = f"{method}@{ratio:g}"
        if col not in recorded:
            continue
        t0 = time.perf_counter()
        new = fit_and_score(arch, p["size"], graphs, *ids, cfg)
        ok &= _compare(f"train {key} {arch} seed {seed} {col}", recorded[col], new, time.perf_counter() - t0)
    return ok


def check_uncertainty(params: dict[str, Any], key: str, seed: int) -> bool:
    """Re-run the surrogate of (``key``, ``seed``) and compare its score file byte for byte."""
    p = params["uncertainty"]
    n_epochs, peak_lr = resolve(key, p["epochs"], p["lr"])
    graphs = load_graph_cache(key)
    pool = prunable_ids(load_split(key, seed), params["val_protocol"])
    t0 = time.perf_counter()
    frame, val_mae = surrogate_frame(
        [graphs[i] for i in pool], pool, seed, p["model"], p["size"], n_epochs, p["batch_size"], peak_lr,
        p["patience"], p["lam"], p["val_fraction"], p["num_threads"],
    )  # fmt: skip
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.10g")
    same = buf.getvalue() == paths.uncertainty_path(key, seed).read_text()
    print(
        f"uncertainty {key} seed {seed}: surrogate val MAE {val_mae:.10g}, {time.perf_counter() - t0:.1f} s: "
        f"{'EQUAL' if same else 'DIFFERENT'} ({len(frame)} rows)",
        flush=True,
    )
    return same


def check_tune(params: dict[str, Any], key: str, seed: int, lr: float, epochs: int) -> bool:
    """Re-run one row (split ``seed``, ``lr``, ``epochs``) of the ``tune`` search of ``key``."""
    p = params["tune"]
    rows = pd.read_csv(paths.tune_path(key)).to_dict("records")
    row = next(
        r for r in rows if int(r["seed"]) == seed and float(r["lr"]) == lr and int(r["epochs"]) == epochs
    )
    split = load_split(key, seed)
    cfg = train_config(epochs, p["batch_size"], lr, epochs, seed, p["num_threads"])
    t0 = time.perf_counter()
    new = fit_and_score(
        p["arch"], p["size"], load_graph_cache(key), split["train"], split["val"], split["test"], cfg
    )
    keys = tuple(k for k in COMPARED if k != "test_mae")  # the search records no test MAE
    return _compare(
        f"tune {key} seed {seed} lr {lr:g} epochs {epochs}", row, new, time.perf_counter() - t0, keys
    )


def main(argv: list[str] | None = None) -> int:
    """Run the requested checks; exit status 0 if every compared value is equal."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="append", default=[], metavar="KEY:SEED[:RUNS]")
    ap.add_argument("--uncertainty", action="append", default=[], metavar="KEY:SEED")
    ap.add_argument("--tune", action="append", default=[], metavar="KEY:SEED:LR:EPOCHS")
    args = ap.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    ok = True
    for spec in args.train:
        key, seed, *rest = spec.split(":")
        ok &= check_train(params, key, int(seed), rest[0].split(",") if rest else None)
    for spec in args.uncertainty:
        key, seed = spec.split(":")
        ok &= check_uncertainty(params, key, int(seed))
    for spec in args.tune:
        key, seed, lr, epochs = spec.split(":")
        ok &= check_tune(params, key, int(seed), float(lr), int(epochs))
    print("all equal" if ok else "SOME DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
