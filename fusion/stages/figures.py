"""Stage ``figures``: the study's figures as PNG, from the ``analyze`` stage's tables.

The same functions (:mod:`fusion.report.study`) draw the book's figures, so
restyling a figure never retrains anything and the PNGs and the book agree.
"""

from __future__ import annotations

import json
from pathlib import Path

from fusion import paths
from fusion.report import study, transfer
from fusion.stages.analyze import read


def run(arch: str = "cgcnn", dpi: int = 110) -> list[Path]:
    """Write ``results/figures/*.png``.

    Args:
        arch: The main architecture (the curves show its runs).
        dpi: Resolution. Defaults to 110.

    Returns:
        The files written.
    """
    out = paths.figures_dir()
    units = study.units_of(read("datasets"))
    runs = read("runs")
    written = [
        study.save(study.mae_curves(runs[runs["arch"] == arch], units), out / "mae-vs-ratio.png", dpi),
        study.save(study.target_shift(read("shift")), out / "target-shift.png", dpi),
    ]
    effective = read("effective_size")
    if len(effective):
        written.append(study.save(study.effective_size(effective), out / "effective-size.png", dpi))
    accuracy, comparison = read("transfer_accuracy"), read("transfer")
    if len(accuracy) and len(comparison):
        heads, _ = transfer.headline_of(json.loads(paths.metrics_path().read_text()))
        fig = transfer.transfer_heatmap(accuracy, comparison, heads)
        written.append(study.save(fig, out / "transfer.png", dpi))
    return written
