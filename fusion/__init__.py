"""FUSION companion: dataset pruning for crystal property prediction.

Subpackages and modules:
    data: the in-memory crystal dataset, the per-record checks with a report of
        skipped records, and the project's datasets; cif and packed: fast CIF
        parsing and a checked crystal as three arrays (what the engine holds at scale).
    userdata: a user's data, checked and collected (the per-format readers of CIF
        folders with id_prop.csv, extxyz and JSON lists in user_records).
    online: Matbench (matminer) and JARVIS-DFT (jarvis-tools), downloaded.
    splits: seeded train/val/test splits saved as id lists.
    graphs: periodic crystal graphs, Gaussian distance expansion; graph_cache
        saves them, featurize builds many in parallel.
    models: registry of GNN architectures with scalar or evidential heads.
    train: trainer (AdamW, one-cycle, early stopping, resumable checkpoints), with
        batching and checkpoint.
    fingerprints: SOAP geometric fingerprints.
    uncertainty: evidential uncertainty scores.
    selection: the FUSION selector and its five baselines (nearest neighbours in
        neighbors, the k-center and active-learning baselines in baselines).
    prune_api: the whole prune of a dataset (``fusion prune``'s engine), with its
        options in prune_options and its result, files and warnings in prune_result.
    prune_steps: the engine's steps (load, fingerprints, graphs; the surrogate's in prune_surrogate),
        each computing one artefact once for all ratios, cached in the working folder
        (prune_cache); prune_report writes its report.html with the figures of prune_figures.
    cli: the ``fusion`` command (its parser and help text in cli_parser).
    parallel: the Dask layer (local cluster or an existing scheduler).
    stages: one module per pipeline stage; paths: every artefact path; runner: the
        papermill runner of the stage notebooks; profiles: the params.yaml profiles.
    stats, analysis, analysis_checks, verdict, transfer, ood: the study's statistics,
        tables and verdict on the paper's claims; report: the book's tables and figures.
"""

__version__ = "0.1.0"
