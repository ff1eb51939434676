"""FUSION companion: dataset pruning for crystal property prediction.

Subpackages and modules:
    data: the in-memory crystal dataset, the per-record checks with a report of
        skipped records, and the project's datasets.
    userdata: a user's data (CIF folder with id_prop.csv, extxyz, JSON list).
    online: Matbench (matminer) and JARVIS-DFT (jarvis-tools), downloaded.
    splits: seeded train/val/test splits saved as id lists.
    graphs: periodic crystal graphs (cached), Gaussian distance expansion.
    models: registry of GNN architectures with scalar or evidential heads.
    train: trainer (AdamW, one-cycle, early stopping, resumable checkpoints).
    fingerprints: SOAP geometric fingerprints.
    uncertainty: evidential uncertainty scores.
    selection: the FUSION selector and its five baselines (nearest neighbours in
        neighbors, the k-center and active-learning baselines in baselines).
    prune_api: the whole prune of a dataset (``fusion prune``'s engine), with its
        options in prune_options and its result, files and warnings in prune_result.
    prune_steps: the engine's steps (load, fingerprints, graphs; the surrogate's in prune_surrogate),
        each computing one artefact once for all ratios, cached in the working folder.
    packed: a checked crystal as three arrays (what the engine holds in memory at scale).
"""

__version__ = "0.1.0"
