"""The pipeline's stages: one module per ``dvc.yaml`` stage.

Each module is named like its notebook (``notebooks/<stage>.ipynb``), its
``dvc.yaml`` stage and its ``params.yaml`` group. A notebook calls its module
and nothing else of the pipeline; the module reads the previous stages' files
(paths from :mod:`fusion.paths`), computes with the package, and writes its own.
Helpers that several stages share (reading and writing artefacts, one training
run) live in :mod:`fusion.stages.common`.
"""
