"""Switch the pipeline's parameter profile: copy ``profiles/<name>.yaml`` to ``params.yaml``.

``params.yaml`` is the active profile (the committed one is ``default``); the
files in ``profiles/`` are complete params files (``smoke``: a few minutes on
a laptop, ``default``: the converged CPU study, tens of core-hours that resume
run by run, see the README; ``paper``: the paper's protocol, GPU-scale). Usage, from the repository root::

    python -m fusion.profiles smoke      # then: dvc repro
    python -m fusion.profiles --list
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path


def available(root: str | Path = ".") -> list[str]:
    """Names of the profiles in ``<root>/profiles``, sorted."""
    return sorted(p.stem for p in (Path(root) / "profiles").glob("*.yaml"))


def use_profile(name: str, root: str | Path = ".") -> Path:
    """Copy ``<root>/profiles/<name>.yaml`` over ``<root>/params.yaml``.

    Args:
        name: Profile name (e.g. ``"smoke"``).
        root: Repository root. Defaults to the working directory.

    Returns:
        The path of ``params.yaml``.

    Raises:
        FileNotFoundError: If the profile does not exist (the message lists those that do).
    """
    root = Path(root)
    src = root / "profiles" / f"{name}.yaml"
    if not src.exists():
        raise FileNotFoundError(f"no profile {name!r} in {root / 'profiles'}; available: {available(root)}")
    dst = root / "params.yaml"
    shutil.copyfile(src, dst)
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m fusion.profiles NAME``)."""
    parser = argparse.ArgumentParser(prog="python -m fusion.profiles", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="profile to activate")
    parser.add_argument("--list", action="store_true", help="list the profiles")
    parser.add_argument("--root", default=".", help="repository root (default: .)")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(available(args.root)))
        return 0
    print(f"params.yaml <- profiles/{args.name}.yaml")
    use_profile(args.name, args.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
