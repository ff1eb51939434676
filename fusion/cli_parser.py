"""The ``fusion`` command line's parser: its options and their help text.

:func:`build_parser` builds the parser that :func:`fusion.cli.main` runs;
:data:`EPILOG` is ``fusion prune --help``'s text after the options (methods,
surrogate, fingerprints, outputs, working folder, parallel parts, exit status).
Nothing here imports torch, so ``fusion --help`` stays fast; the command's
execution is in :mod:`fusion.cli`.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import NoReturn

from fusion import __version__

#: Exit status of a successful run.
EXIT_OK = 0
#: Exit status of a bad option or bad input (one message on stderr, no traceback).
EXIT_BAD_INPUT = 2

#: The surrogate architectures of ``fusion.models.available()`` (written out so
#: that ``--help`` does not import torch; a test checks that the two agree).
MODEL_NAMES = (
    "alignn",
    "cgcnn",
    "comformer",
    "crystalframer",
    "deepergatgnn",
    "dimenetpp",
    "matformer",
    "megnet",
    "potnet",
    "schnet",
    "sodnet",
)

#: Options of earlier versions, each with the message that says what replaces it
#: (accepted by the parser, hidden from --help, refused by :mod:`fusion.cli`).
REPLACED = {
    "--out": "--out is replaced by --out-dir DIR, which writes DIR/kept.csv, DIR/removed.csv, "
    "DIR/scores.csv (U, W, I per record) and DIR/summary.json",
    "--removed-out": "--removed-out is replaced by --out-dir DIR: the removed ids go to DIR/removed.csv",
    "--summary": "--summary is replaced by --out-dir DIR: the summary goes to DIR/summary.json",
}

#: ``fusion prune --help`` after the options; :func:`build_parser` fills in the
#: methods, the models and the two training caps.
EPILOG = """\
methods (what each removes first):
{methods}

surrogate (fusion and uncertainty only):
{models}
  is trained on the pool, 90 % for training and a seeded 10 % for
  validation; it stops early after --patience epochs without a better
  validation MAE and keeps its best weights. It takes at most --max-steps
  optimiser steps (default {max_steps:,}): a pool of more than about 2,000
  records trains fewer than --epochs epochs, so its cost stops growing with
  the pool. A step costs about the atoms of its batch, so it also passes at
  most --max-atom-steps atoms through the model (default {max_atom_steps:,},
  summed over the steps): cells of up to about 13 atoms keep the 3,000 steps,
  cells of 94 atoms train 415 (on 10,000 such cells, about 8 min on 2 CPU
  cores). The summary says when and which cap applied. Its validation MAE is printed
  beside the median predictor's on the same records: a surrogate that does
  not beat the median gives a U that means little. --size cpu is a small,
  fast configuration of each model; --size paper its published
  hyper-parameters (much slower without a GPU).
  --device auto trains on CUDA when present.

fingerprints (fusion, weight, diversity, active):
  Symmetry-averaged SOAP vectors of unit length, so the nearest-neighbour
  distance d_NN lies in [0, 2]: typically about 0.45 with --compression mu1nu1
  (per-species channels, the default), about 0.04 with mu2 (element-agnostic,
  252 features, ~3x faster), about 0.55 with off (full power spectrum, the
  largest). W = exp(-gamma d_NN): with the paper's gamma 0.1, W only spans
  about 0.8-1; gamma near 1 / median d_NN makes redundancy matter more.

outputs (in --out-dir):
  kept.csv, removed.csv   kept and removed ids with their scores (one ratio);
                          kept_<r>.csv, removed_<r>.csv for each r of --ratios
  scores.csv              id, target, U, W, I = U / W, d_nn, u_ale, u_epi
                          for every valid record (NaN where a method has none)
  summary.json            counts, epsilon, surrogate quality, target shift,
                          warnings, options, reused artefacts
  report.html             one self-contained offline page (--no-report
                          skips it): U against W, sorted I with epsilon,
                          kept/removed target histograms, a PCA map of the
                          fingerprints, the surrogate's validation MAE
                          beside the median predictor's, epochs, early
                          stop, device; panels a method lacks are left out
  skipped.csv             bad records left out by --skip-bad (id, reason)

working folder (--workdir DIR):
  Caches the checked structures, the fingerprints, the graphs and the trained
  surrogate (its raw u_ale, u_epi and weights), each under a key of everything
  it depends on (input files' names, sizes and mtimes, target; --compression
  for fingerprints; --model, --size, --epochs, --patience, --batch-size, --lr,
  --seed, device for the surrogate). A rerun with another --ratio(s),
  --method, --gamma, --lambda or --aleatoric-sign reuses them; a changed
  option or input recomputes what depends on it; an interrupted run resumes
  after its last finished artefact. Each reuse is reported on stderr.

parallel parts (checking records, fingerprints, graphs):
  Run on one Dask client for the whole run: a local cluster of --n-jobs
  single-threaded worker processes (steps on fewer than 200 records stay in
  this process), or an existing cluster given by --scheduler or the
  DASK_SCHEDULER_ADDRESS environment variable, e.g.
    dask scheduler --port 8786                       # on the head node
    dask worker tcp://HEAD:8786 --nworkers 16 --nthreads 1   # on each node
    fusion prune ... --scheduler tcp://HEAD:8786
  Workers need this package at the same version, and a CIF folder at the
  same path (its files are read on the workers). The kept ids do not depend
  on the number of workers.

exit status:
  0 success; 2 bad option or bad input (one message on stderr, every bad
  record listed); 1 unexpected error.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Raw epilog; defaults shown only for options that have one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if (
            action.required
            or action.default is None
            or action.default is argparse.SUPPRESS
            or action.default is False
        ):
            return action.help
        return super()._get_help_string(action)


def _ratios(text: str) -> list[float]:
    """The ``--ratios`` value: comma-separated fractions such as ``0.2,0.4`` (empty items ignored)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.2,0.4, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``fusion``: its ``prune`` subcommand with every option and the help text.

    Returns:
        The parser; its errors are one line on stderr with exit status
        :data:`EXIT_BAD_INPUT` (2).
    """
    from fusion.prune_options import MAX_ATOM_STEPS, MAX_STEPS, METHOD_HELP, METHODS, SIZES

    parser = _Parser(prog="fusion", description="FUSION dataset pruning for crystal property prediction.")
    parser.add_argument("--version", action="version", version=f"fusion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    methods = "\n".join(f"  {m:<12} {METHOD_HELP[m]}" for m in METHODS)
    p = sub.add_parser(
        "prune",
        help="prune a dataset and write the kept and removed ids",
        description="Prune a crystal dataset: remove the given fraction(s) of its records\n"
        "and write the kept and removed ids with their scores.",
        epilog=EPILOG.format(
            methods=methods,
            max_steps=MAX_STEPS,
            max_atom_steps=MAX_ATOM_STEPS,
            models=textwrap.fill(
                "An evidential GNN (--model, one of: " + ", ".join(MODEL_NAMES) + ")",
                width=78,
                initial_indent="  ",
                subsequent_indent="  ",
            ),
        ),
        formatter_class=_Formatter,
    )
    io = p.add_argument_group("input and output")
    io.add_argument(
        "--data",
        required=True,
        type=Path,
        help="a folder of <id>.cif files with id_prop.csv (rows 'id,value', or a header naming "
        "the target column), an .extxyz file, or a .json list of {id, structure, <target>}",
    )
    io.add_argument(
        "--target",
        required=True,
        help="target property: an id_prop.csv header column, a JSON key or an extxyz info key",
    )
    io.add_argument("--out-dir", required=True, type=Path, help="output folder (created; files: see below)")
    io.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave bad records out (listed in skipped.csv and the summary) instead of stopping",
    )
    for old in REPLACED:
        io.add_argument(old, dest=old.lstrip("-").replace("-", "_"), default=None, help=argparse.SUPPRESS)

    sel = p.add_argument_group("selection")
    ratio = sel.add_mutually_exclusive_group()
    ratio.add_argument(
        "--ratio",
        type=float,
        default=None,
        help="fraction of the records to REMOVE, in [0, 1) (default: 0.4)",
    )
    ratio.add_argument(
        "--ratios",
        type=_ratios,
        default=None,
        help="several fractions to remove, e.g. 0.2,0.4,0.6: one kept/removed pair each, "
        "fingerprints and surrogate computed once",
    )
    sel.add_argument("--method", default="fusion", help=f"selection method: {', '.join(METHODS)} (see below)")
    sel.add_argument(
        "--gamma",
        type=float,
        default=0.1,
        help="decay of the redundancy weight W = exp(-gamma d_NN), d_NN in [0, 2]",
    )
    sel.add_argument(
        "--lambda",
        dest="lam",
        metavar="LAMBDA",
        type=float,
        default=0.0,
        help="weight Lambda of epistemic uncertainty in U = sigmoid(Lambda*U_epi + s*U_ale)",
    )
    sel.add_argument(
        "--aleatoric-sign",
        type=int,
        default=-1,
        help="sign s of the aleatoric term: -1 as in the paper's formula and its public code, +1 the opposite (ablation)",
    )
    sel.add_argument(
        "--compression", default="mu1nu1", help="SOAP compression: mu1nu1, mu2 or off (see below)"
    )
    sel.add_argument("--seed", type=int, default=0, help="seed of the surrogate, random and baseline choices")

    sur = p.add_argument_group("surrogate (fusion and uncertainty)")
    sur.add_argument("--model", default="cgcnn", help="architecture, one of the 11 listed below")
    sur.add_argument("--size", default="cpu", help=f"size preset: {' or '.join(SIZES)} (see below)")
    sur.add_argument("--epochs", type=int, default=100, help="maximum training epochs")
    sur.add_argument(
        "--max-steps",
        type=int,
        default=MAX_STEPS,
        help="at most this many optimiser steps: a large pool trains fewer epochs (0: no cap; see below)",
    )
    sur.add_argument(
        "--max-atom-steps",
        type=int,
        default=MAX_ATOM_STEPS,
        help="at most this many atoms through the model in training, summed over the steps: "
        "pools of large cells train fewer steps (0: no cap; see below)",
    )
    sur.add_argument(
        "--patience", type=int, default=20, help="stop after this many epochs without a better validation MAE"
    )
    sur.add_argument("--batch-size", type=int, default=64, help="training batch size (graphs)")
    sur.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle schedule)")
    sur.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")

    run = p.add_argument_group("run")
    run.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="local worker processes for checking records, fingerprints and graphs (-1: all cores; "
        "ignored with --scheduler)",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="address of an existing Dask scheduler, e.g. tcp://10.0.0.1:8786 "
        "(default: $DASK_SCHEDULER_ADDRESS when set, else a local cluster)",
    )
    run.add_argument(
        "--workdir",
        metavar="DIR",
        type=Path,
        default=None,
        help="working folder caching structures, fingerprints, graphs and surrogate across runs (see below)",
    )
    run.add_argument("--no-report", action="store_true", help="do not write report.html")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser
