"""What the Jupyter Book (``book/``) shows: tables, figures, glue, from the pipeline's outputs.

The book's pages that show numbers are notebooks in ``book/src/`` executed by
papermill (the ``book-*`` stages of ``dvc.yaml``, run from the repository root)
into ``book/pages/``. Their code cells only call the functions of this package,
so every number and figure of the book comes from the pipeline's outputs
(``results/``, ``cache/``, ``benchmarks/results/``) through tested code.

Modules:

- :mod:`~fusion.report.inputs`: reading result files, ``params.yaml`` and the run settings;
- :mod:`~fusion.report.glue`: gluing values, figures and tables into a page;
- :mod:`~fusion.report.palette`: one colour, marker and label per pruning method;
- :mod:`~fusion.report.formatting`: how numbers, intervals, p-values and method labels are written;
- :mod:`~fusion.report.study_tables`: the results page's tables and sentences (verdict,
  accuracy gate, convergence, effective size, paired comparisons), with
  :func:`~fusion.verdict.describe_change` for numbers in words;
- :mod:`~fusion.report.study_checks`: target shift, uncertainty vs target, protocol,
  optimal point and OOD tables;
- :mod:`~fusion.report.study`: the study's figures (also saved by the ``figures`` stage);
- :mod:`~fusion.report.tables`: the paper's quoted claims, the method and paper pages' numbers;
- :mod:`~fusion.report.figures`: the method page's figures;
- :mod:`~fusion.report.datasets`: the data page's dataset cards;
- :mod:`~fusion.report.crystals`: drawing crystal structures;
- :mod:`~fusion.report.benchmarks`: the performance page (benchmark results and targets);
- :mod:`~fusion.report.scale`: the performance page's scale section (worker speed-up, memory,
  nearest-neighbour search, the projection to larger datasets);
- :mod:`~fusion.report.transfer`: the transfer heatmap and per-architecture accuracy table;
- :mod:`~fusion.report.checklist`: the paper checklist page (each item of the paper, its
  counterpart in the book and its status, derived from the run's files), with the items
  built in :mod:`~fusion.report.checklist_items` under the rules of
  :mod:`~fusion.report.checklist_rules`;
- :mod:`~fusion.report.explore`: the method page's interactive fingerprint map (plotly),
  drawn on :func:`~fusion.report.pca.pca` (also the map of ``fusion prune``'s report);
- :mod:`~fusion.report.architectures`: the method page's table of the 11 architectures (paper,
  atom embedding, geometry, sizes with computed parameter counts, departures from the paper).

The Sphinx extension that serves MathJax and plotly.js offline is part of the book,
not of this package: ``book/_ext/offline.py``.
"""
