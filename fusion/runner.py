"""Run a stage notebook with papermill, its parameters taken from ``params.yaml``.

``python -m fusion.runner NOTEBOOK OUTPUT -g GROUP ... -d GROUP ... -p KEY VALUE ...``

DVC cannot put a list into a command line (``${prune.ratios}`` is refused), so
the stages of ``dvc.yaml`` do not call the papermill CLI directly: this runner
reads the named groups from ``params.yaml`` and runs
:func:`papermill.execute_notebook` with them as parameters (lists and dicts
included). The executed notebook then shows every value it ran with in its
injected-parameters cell.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read a params file."""
    return yaml.safe_load(Path(path).read_text())


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"params key {dotted!r} not found")
        value = value[part]
    return value


def notebook_parameters(
    params: dict[str, Any], groups: Sequence[str] = (), whole: Sequence[str] = ()
) -> dict[str, Any]:
    """Merge ``params.yaml`` groups into one notebook-parameter dict.

    Args:
        params: The parsed params file.
        groups: Groups (dotted paths allowed, e.g. ``prune.ratios``). A dict
            contributes its keys; any other value (a list such as ``seeds``)
            becomes a parameter named after the last part of its path, or
            after ``NAME`` in ``path:NAME`` (``protocol.datasets:protocol_datasets``);
            a renamed group is always one parameter, even a dict.
        whole: Groups passed as one parameter each (a dict stays a dict),
            named after the last part of the path (or ``NAME`` as above).

    Returns:
        Parameter name -> value.

    Raises:
        KeyError: If a group is missing or two groups define the same key.
    """
    out: dict[str, Any] = {}
    pairs = [(g, False) for g in groups] + [(g, True) for g in whole]
    for spec, as_one in pairs:
        group, _, rename = spec.partition(":")
        value = _lookup(params, group)
        name = rename or group.split(".")[-1]
        # A renamed group is one parameter, whatever its type.
        items = value.items() if isinstance(value, dict) and not (as_one or rename) else [(name, value)]
        for k, v in items:
            if k in out:
                raise KeyError(f"parameter {k!r} defined by two groups")
            out[k] = v
    return out


def _parse_value(text: str) -> Any:
    """A command-line value: YAML scalar, with ``None`` (DVC's rendering of null) as None."""
    return None if text in {"None", "null", "~"} else yaml.safe_load(text)


def run_notebook(
    notebook: str | Path,
    output: str | Path,
    groups: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    params_file: str | Path = "params.yaml",
    kernel: str = "python3",
    whole: Sequence[str] = (),
) -> Path:
    """Execute a stage notebook with papermill, parameters taken from ``params.yaml``.

    Every parameter must be declared in the notebook's ``parameters`` cell, so
    a renamed or misspelt key fails here instead of being silently ignored.

    Args:
        notebook: Source notebook.
        output: Executed notebook to write.
        groups: ``params.yaml`` groups whose keys are passed (see :func:`notebook_parameters`).
        overrides: Extra parameters (the sweep item: dataset key, seed, ...).
        params_file: The params file. Defaults to ``params.yaml``.
        kernel: Jupyter kernel name. Defaults to ``python3``.
        whole: ``params.yaml`` groups passed as one parameter each.

    Returns:
        The output path.

    Raises:
        KeyError: If a parameter is not declared by the notebook.
    """
    import papermill as pm

    parameters = {**notebook_parameters(read_params(params_file), groups, whole), **(overrides or {})}
    declared = set(pm.inspect_notebook(str(notebook)))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise KeyError(f"{notebook}: parameters {unknown} are not in its parameters cell")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    root = str(Path.cwd())
    # The kernel must import this checkout's package, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    pm.execute_notebook(
        str(notebook), str(output), parameters=parameters, kernel_name=kernel, cwd=root, progress_bar=False
    )
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m fusion.runner NOTEBOOK OUTPUT [-g GROUP]... [-p KEY VALUE]...``."""
    parser = argparse.ArgumentParser(prog="python -m fusion.runner", description=run_notebook.__doc__)
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("-g", "--group", action="append", default=[], help="params.yaml group to pass")
    parser.add_argument("-d", "--dict", action="append", default=[], help="group passed as one parameter")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("--params-file", default="params.yaml")
    args = parser.parse_args(argv)
    overrides = {k: _parse_value(v) for k, v in args.param}
    run_notebook(args.notebook, args.output, args.group, overrides, args.params_file, whole=args.dict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
