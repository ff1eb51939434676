"""Command line: ``fusion prune`` prunes a user's dataset with FUSION or a baseline.

Example::

    fusion prune --data my_cifs/ --target band_gap --ratio 0.4 --out-dir pruned/
    fusion prune --data my_cifs/ --target band_gap --ratios 0.2,0.4,0.6 --out-dir pruned/

    fusion prune --data my_cifs/ --target band_gap --ratio 0.6 --out-dir pruned60/ --workdir work/
    fusion prune --data my_cifs/ --target band_gap --scheduler tcp://head:8786 --out-dir pruned/

Every option is checked before any data are read (the scheduler address
included); then every record is checked and all bad ones are reported at once;
then fingerprints and the surrogate are computed once for all ratios
(:func:`fusion.prune_api.prune` does the work), or reused from ``--workdir``;
the parallel parts run on one Dask client (:mod:`fusion.parallel`); the CSVs,
``summary.json`` and ``report.html`` (:mod:`fusion.prune_report`) are written.
Exit status: 0 on success, 2 on a bad option or bad input (message on stderr,
no traceback), 1 on an unexpected error. The options and the help text are in
:mod:`fusion.cli_parser`; this module runs the command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fusion.cli_parser import EXIT_BAD_INPUT, EXIT_OK, REPLACED, build_parser


def _capped(q: dict[str, Any]) -> str:
    """`` (capped by --max-steps N)`` or ``--max-atom-steps``, when a cap set the epoch limit below ``--epochs``."""
    from fusion.prune_options import capped_text

    return capped_text(q, " (", ")")


def _print_result(result: Any, written: dict[str, Path]) -> None:
    """Print the run's summary on stdout and its warnings on stderr."""
    out = [
        (
            f"fusion prune: method={result.method} target={result.target} n={len(result.ids)} "
            f"skipped={len(result.skipped)} time={result.seconds:.1f}s"
        )
    ]
    q = result.surrogate
    if q is not None:
        stop = f"stopped early (patience {q['patience']})" if q["stopped_early"] else "no early stop"
        out.append(
            f"  surrogate {q['model']} ({q['size']} size) on {q['device']}: validation MAE {q['val_mae']:.4g} "
            f"vs {q['median_val_mae']:.4g} for the median predictor ({q['n_train']} train / {q['n_val']} "
            f"validation records); {q['epochs_run']} of {q['max_epochs']} epochs{_capped(q)}, "
            f"best {q['best_epoch']}, {stop}"
        )
    names = result.output_names()
    for r, sel in result.selections.items():
        s = result.shift[r]
        eps = "n/a" if sel.epsilon is None else f"{sel.epsilon:.6g}"
        removed_mean = "n/a" if s["removed_mean"] is None else f"{s['removed_mean']:.4g}"
        out.append(
            f"  ratio {r:g}: kept={len(sel.kept_ids)} removed={len(sel.removed_ids)} epsilon={eps}; "
            f"target mean kept {s['kept_mean']:.4g} vs removed {removed_mean}, KS {s['ks']:.3f}, "
            f"top-decile share {s['top_decile_share']:.3f}"
        )
        out.append(
            f"    kept -> {written[Path(names[r][0]).stem]}\n    removed -> {written[Path(names[r][1]).stem]}"
        )
    out.append(f"  scores -> {written['scores']}\n  summary -> {written['summary']}")
    if "report" in written:
        out.append(f"  report -> {written['report']}")
    if result.artefacts:
        states = ", ".join(f"{kind} {a['status']}" for kind, a in result.artefacts.items())
        out.append(f"  workdir {result.options.get('workdir')}: {states}")
    if len(result.skipped):
        out.append(f"  skipped {len(result.skipped)} bad record(s) -> {written['skipped']}:")
        shown = result.skipped.head(20)
        out += [f"    {rid}: {reason}" for rid, reason in zip(shown["id"], shown["reason"], strict=True)]
        if len(result.skipped) > len(shown):
            out.append(f"    ... and {len(result.skipped) - len(shown)} more (see skipped.csv)")
    print("\n".join(out))
    for w in result.warnings:
        print(f"fusion prune: warning: {w}", file=sys.stderr)


def prune(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fusion prune`` and return its summary.

    Args:
        args: Parsed options of the ``prune`` subcommand.

    Returns:
        The summary (also printed, and written to ``<out-dir>/summary.json``).

    Raises:
        fusion.prune_options.OptionError: A bad option, before any data are read.
        fusion.data.DataError: Bad input (every bad record listed).
    """
    from fusion import prune_api
    from fusion.prune_options import OptionError
    from fusion.train import denormals_flushed

    for old, message in REPLACED.items():
        if getattr(args, old.lstrip("-").replace("-", "_")) is not None:
            raise OptionError(message)
    ratios = args.ratios if args.ratios is not None else [0.4 if args.ratio is None else args.ratio]
    # Float32 subnormals flushed from the start: torch's intra-op threads, created
    # later, inherit the setting (train() alone covers only its own thread), so the
    # surrogate's products skip the slow subnormal path on every thread
    # (fusion.train.denormals_flushed).
    with denormals_flushed():
        result = _run_prune(prune_api, args, ratios)
    written = result.write(args.out_dir, report=not args.no_report)
    _print_result(result, written)
    return result.summary(args.out_dir)


def _run_prune(prune_api: Any, args: argparse.Namespace, ratios: list[float]) -> Any:
    """``prune_api.prune`` with the parsed options."""
    return prune_api.prune(
        args.data,
        args.target,
        ratios,
        args.method,
        model=args.model,
        size=args.size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        device=args.device,
        max_steps=args.max_steps,
        max_atom_steps=args.max_atom_steps,
        lam=args.lam,
        aleatoric_sign=args.aleatoric_sign,
        gamma=args.gamma,
        compression=args.compression,
        seed=args.seed,
        n_jobs=args.n_jobs,
        scheduler=args.scheduler,
        workdir=args.workdir,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fusion`` console script.

    Args:
        argv: Arguments (without the program name); defaults to ``sys.argv[1:]``.

    Returns:
        Exit status: 0 on success, 2 on a bad option or bad input (message on
        stderr, no traceback).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    for old, message in REPLACED.items():
        if any(a == old or a.startswith(old + "=") for a in argv):
            print(f"fusion prune: error: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    # The working folder's "reused ..." lines, on stderr as they happen.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"fusion {args.command}: %(message)s"))
    logger = logging.getLogger("fusion.prune")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        if args.command == "prune":
            prune(args)
    # OptionError, fusion.data.DataError and fusion.graphs.IsolatedAtomError are
    # ValueErrors; catching the base keeps `--help` free of the torch import.
    except ValueError as exc:
        from fusion.userdata import BadRecordsError

        hint = "\n  (--skip-bad leaves them out)" if isinstance(exc, BadRecordsError) else ""
        print(f"fusion {args.command}: error: {exc}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
