"""Every path of the project, defined once.

The repository root is found from this file's location, so paths work from
notebooks (run by papermill inside ``notebooks/``), tests and the command line.
Pipeline stages take their concrete output paths from ``params.yaml``; the
helpers here only say where things live by default.
"""

from __future__ import annotations

from pathlib import Path

ROOT: Path = Path(__file__).resolve().parent.parent
DATA: Path = ROOT / "data"
RESULTS: Path = ROOT / "results"
CACHE: Path = ROOT / "cache"
NOTEBOOKS: Path = ROOT / "notebooks"
BOOK: Path = ROOT / "book"
BENCHMARKS: Path = ROOT / "benchmarks"


def dataset_file(name: str, data_dir: Path | str = DATA) -> Path:
    """Return the path of a project dataset file.

    Args:
        name: Dataset name, e.g. ``"matbench_jdft2d"``.
        data_dir: Folder holding one sub-folder per dataset. Defaults to ``data/``.

    Returns:
        ``<data_dir>/<name>/<name>.json.gz``.
    """
    return Path(data_dir) / name / f"{name}.json.gz"


# ----------------------------------------------------------------------------- pipeline artefacts
# Every file the pipeline stages share, relative to the repository root (the
# working directory of `dvc repro` and of the papermill runner), so that the
# same names appear in dvc.yaml. ``key`` is a dataset key of params.yaml's
# ``datasets`` (e.g. ``jdft2d``), ``seed`` a split seed.
#
#   results/prepare/<key>/{records.csv, skipped.csv, summary.json, splits/seed-<s>.json}
#   cache/graphs/<key>.pt                       graphs of every kept record
#   cache/fingerprints/<key>.npz                SOAP fingerprints of every kept record
#   results/tune/<key>.csv, <key>.json          learning-rate/budget search and its choice
#   results/uncertainty/<key>/seed-<s>.csv      u_ale, u_epi per prunable id
#   results/prune/<key>/seed-<s>.csv            scores and one keep column per method@ratio
#   results/prune/<key>/summary.csv             epsilon, sizes and target shift per kept set
#   results/train/<key>/<arch>-seed-<s>.csv     val/test MAE per (method, ratio)
#   results/converge/<key>.csv                  the doubled-budget runs
#   results/protocol/<key>.csv                  the pruned-validation protocol, once
#   results/optimal/<key>.csv                   FUSION at small ratios
#   results/ood/<key>.csv, <key>-clusters.csv   leave-one-cluster-out
#   results/{optimal,ood}/<key>-surrogates/     surrogate scores those stages train themselves
#   results/transfer/<key>/<arch>.csv           the other architectures on the main study's subsets
#   results/analysis/*.csv, results/metrics.json
#   results/figures/*.png


def prepare_dir(key: str) -> Path:
    """Folder of the ``prepare`` outputs of dataset ``key``."""
    return Path("results") / "prepare" / key


def records_path(key: str) -> Path:
    """The kept records (id, target, formula, nsites) of dataset ``key``."""
    return prepare_dir(key) / "records.csv"


def loco_source(name: str, data_dir: Path | str = DATA) -> Path:
    """The paper group's SOAP leave-one-cluster-out folds of a dataset (may not exist)."""
    return Path(data_dir) / name / f"{name}.soap_loco.json.gz"


def loco_path(key: str) -> Path:
    """The paper's LOCO folds of dataset ``key``, restricted to its kept records (``prepare``)."""
    return prepare_dir(key) / "loco.json"


def split_path(key: str, seed: int) -> Path:
    """The train/val/test split of dataset ``key`` for ``seed``."""
    return prepare_dir(key) / "splits" / f"seed-{seed}.json"


def graphs_path(key: str) -> Path:
    """Graph cache of dataset ``key``."""
    return Path("cache") / "graphs" / f"{key}.pt"


def fingerprints_path(key: str) -> Path:
    """SOAP fingerprint cache of dataset ``key``."""
    return Path("cache") / "fingerprints" / f"{key}.npz"


def tune_path(key: str) -> Path:
    """Every run of the learning-rate/budget search of dataset ``key``."""
    return Path("results") / "tune" / f"{key}.csv"


def tune_choice_path(key: str) -> Path:
    """The chosen learning rate and budget of dataset ``key``."""
    return Path("results") / "tune" / f"{key}.json"


def uncertainty_path(key: str, seed: int) -> Path:
    """Per-id uncertainties of the prunable part of dataset ``key``, split ``seed``."""
    return Path("results") / "uncertainty" / key / f"seed-{seed}.csv"


def prune_path(key: str, seed: int) -> Path:
    """Keep/remove table of the prunable part of dataset ``key``, split ``seed``."""
    return Path("results") / "prune" / key / f"seed-{seed}.csv"


def prune_summary_path(key: str) -> Path:
    """One row per (seed, method, ratio) kept set of dataset ``key``."""
    return Path("results") / "prune" / key / "summary.csv"


def train_path(key: str, arch: str, seed: int) -> Path:
    """Val/test MAEs of ``arch`` on dataset ``key``, split ``seed``."""
    return Path("results") / "train" / key / f"{arch}-seed-{seed}.csv"


def converge_path(key: str) -> Path:
    """The doubled-budget runs of dataset ``key``."""
    return Path("results") / "converge" / f"{key}.csv"


def protocol_path(key: str) -> Path:
    """The pruned-validation protocol runs of dataset ``key``."""
    return Path("results") / "protocol" / f"{key}.csv"


def optimal_path(key: str) -> Path:
    """Optimal-point search results of dataset ``key``."""
    return Path("results") / "optimal" / f"{key}.csv"


def ood_path(key: str) -> Path:
    """Leave-one-cluster-out results of dataset ``key``."""
    return Path("results") / "ood" / f"{key}.csv"


def surrogates_dir(stage: str, key: str) -> Path:
    """Surrogate scores a stage trains itself (``optimal``: seeds beyond the study's; ``ood``: per fold)."""
    return Path("results") / stage / f"{key}-surrogates"


def transfer_path(key: str, arch: str) -> Path:
    """Val/test MAEs of ``arch`` in the ``transfer`` grid on dataset ``key``."""
    return Path("results") / "transfer" / key / f"{arch}.csv"


def ood_clusters_path(key: str) -> Path:
    """The k-means SOAP cluster of every record of dataset ``key``."""
    return Path("results") / "ood" / f"{key}-clusters.csv"


def analysis_dir() -> Path:
    """Small result tables of the ``analyze`` stage."""
    return Path("results") / "analysis"


def metrics_path() -> Path:
    """Headline numbers (DVC metrics)."""
    return Path("results") / "metrics.json"


def figures_dir() -> Path:
    """Figures of the ``figures`` stage."""
    return Path("results") / "figures"


def column(method: str, ratio: float) -> str:
    """Name of the keep-mask column of ``method`` at ``ratio`` in a prune table."""
    return f"{method}@{ratio:g}"


def fulldata_path(key: str) -> Path:
    """The full-data run of a subsampled dataset ``key``."""
    return Path("results") / "fulldata" / f"{key}.csv"


def checkpoint_path(stage: str, key: str, run: str) -> Path:
    """The resumable checkpoint of one long training run of ``stage`` on dataset ``key``.

    ``run`` identifies the run (a digest of its settings, ids, graphs and code),
    so a checkpoint is only ever resumed by the very run that wrote it. Under
    ``build/``: neither git nor DVC tracks it.
    """
    return Path("build") / "checkpoints" / f"{stage}-{key}-{run}.pt"
