"""Out-of-distribution splits: leave-one-cluster-out on SOAP fingerprint clusters.

The FUSION paper checks pruning out of distribution by holding out whole
regions of structure space. Here the regions are k-means clusters (Lloyd's
algorithm, k-means++ initialisation; scikit-learn) of the L2-normalised SOAP
fingerprints (:mod:`fusion.fingerprints`): each cluster in turn is the test
set, and the remaining clusters form the pool that is split into train and
validation and then pruned. This follows the leave-one-cluster-out cross
validation of Meredig et al. ("Can machine learning identify the next
high-temperature superconductor? Examining extrapolation performance for
materials discovery", Mol. Syst. Des. Eng. 3, 819, 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def soap_clusters(X: np.ndarray, n_clusters: int, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """Cluster fingerprints with k-means; labels are renumbered by decreasing cluster size.

    Args:
        X: ``[n, d]`` fingerprints.
        n_clusters: Number of clusters ``k`` (``2 <= k <= n``).
        seed: Seed of the k-means++ initialisation. Defaults to 0.
        n_init: Restarts; the best inertia wins. Defaults to 10.

    Returns:
        ``[n]`` int labels in ``0..k-1``; cluster 0 is the largest (ties by
        original label), so labels do not depend on k-means' arbitrary order.

    Raises:
        ValueError: If ``n_clusters`` is not in ``[2, n]``.
    """
    from sklearn.cluster import KMeans

    X = np.asarray(X, dtype=np.float64)
    if not 2 <= n_clusters <= len(X):
        raise ValueError(f"n_clusters must be in [2, {len(X)}], got {n_clusters}")
    raw = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(X)
    sizes = np.bincount(raw, minlength=n_clusters)
    order = np.lexsort((np.arange(n_clusters), -sizes))  # largest first
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[order] = np.arange(n_clusters)
    return rank[raw]


def leave_one_cluster_out(
    ids: Sequence[str], labels: np.ndarray, seed: int = 0, val_fraction: float = 0.15
) -> list[dict]:
    """One fold per cluster: that cluster is the test set, the rest is split into train/val.

    Args:
        ids: Record ids aligned with ``labels``.
        labels: Cluster label per id.
        seed: Seed of the train/val permutation (the same permutation of all
            ids is used for every fold, so a record's role does not change
            between folds). Defaults to 0.
        val_fraction: Share of each fold's pool used for validation. Defaults to 0.15.

    Returns:
        One dict per cluster (ascending label): ``cluster``, ``train``, ``val``,
        ``test`` (lists of ids; train and val in pool order).

    Raises:
        ValueError: On a length mismatch or a bad ``val_fraction``.
    """
    ids = [str(i) for i in ids]
    labels = np.asarray(labels)
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    # One random key per record: within every pool, the lowest val_fraction of
    # keys go to validation.
    keys = np.random.default_rng(seed).random(len(ids))
    folds = []
    for c in np.unique(labels):
        test = np.flatnonzero(labels == c)
        pool = np.flatnonzero(labels != c)
        n_val = min(len(pool) - 1, max(1, round(val_fraction * len(pool)))) if len(pool) > 1 else 0
        val_mask = np.zeros(len(pool), dtype=bool)
        val_mask[np.argsort(keys[pool], kind="stable")[:n_val]] = True
        folds.append(
            {
                "cluster": int(c),
                "train": [ids[k] for k in pool[~val_mask]],
                "val": [ids[k] for k in pool[val_mask]],
                "test": [ids[k] for k in test],
            }
        )
    return folds


def restrict_folds(source: dict, kept: Sequence[str]) -> dict:
    """The paper group's LOCO folds, restricted to the records a study keeps.

    Args:
        source: ``{"clusters": k, "folds": {cluster: {"train", "val", "test"}}}``
            as in ``data/<name>/<name>.soap_loco.json.gz`` (MatUQ's folds).
        kept: The kept record ids (e.g. of a seeded subsample).

    Returns:
        ``{"clusters", "folds", "dropped"}``: the same folds, each id list
        keeping only kept ids in its order, and the number of fold ids that are
        not kept (0 when the study uses the whole dataset).

    Raises:
        ValueError: If a kept id is in no fold's test set, or in two.
    """
    keep = {str(i) for i in kept}
    folds = {}
    dropped, tested = 0, []
    for c in sorted(source["folds"], key=int):
        f = source["folds"][c]
        folds[str(c)] = {
            part: [str(i) for i in f[part] if str(i) in keep] for part in ("train", "val", "test")
        }
        dropped += sum(len(f[part]) for part in ("train", "val", "test")) - sum(
            len(v) for v in folds[str(c)].values()
        )
        tested += folds[str(c)]["test"]
    if len(tested) != len(set(tested)) or set(tested) != keep:
        raise ValueError(
            f"LOCO folds: {len(set(tested))} distinct test ids over {len(tested)} test entries, "
            f"for {len(keep)} kept records (each must be tested exactly once)"
        )
    return {"clusters": int(source["clusters"]), "folds": folds, "dropped": int(dropped)}


def paper_folds(loco: dict) -> list[dict]:
    """The folds of :func:`restrict_folds`'s output as :func:`leave_one_cluster_out` gives them.

    Args:
        loco: ``{"folds": {cluster: {"train", "val", "test"}}}``.

    Returns:
        One dict per cluster (ascending): ``cluster``, ``train``, ``val``, ``test``.
    """
    return [{"cluster": int(c), **loco["folds"][c]} for c in sorted(loco["folds"], key=int)]
