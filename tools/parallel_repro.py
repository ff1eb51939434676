"""Run independent stale DVC stages N at a time, then record them with ``dvc commit``.

``dvc repro`` runs one stage at a time. The ``train`` matrix (one stage per
dataset x architecture x seed) and the per-dataset ``optimal``/``ood`` stages do
not depend on each other, so on a machine with more cores they can run side by
side. This script takes the stale stages that ``dvc repro --dry`` would run,
keeps those whose name starts with one of the given prefixes, runs each with
exactly the command DVC would run (``OMP_NUM_THREADS`` threads per stage), and
then ``dvc commit -f`` writes their dep/out hashes to ``dvc.lock``, as
``dvc repro`` would have. A stage that fails is reported and not committed.

Reproduce the stages upstream of the selection first (for ``train``: ``dvc repro
prune``); the script refuses to start while any stale stage outside the
selection lies upstream of a selected one (checked through ``dvc dag``).
Afterwards ``dvc repro`` runs what is left (``analyze``, ``figures``, the book).

Usage, from the repository root with the venv's ``dvc``::

    python tools/parallel_repro.py train optimal ood --jobs 2 --threads 1

With ``--exact`` it runs exactly the stages named (full names, stale or not),
which also works before upstream outputs exist, when ``dvc repro --dry`` fails:
a named stage starts once every named stage upstream of it has finished, in
the order given, and each finished stage is committed at once::

    python tools/parallel_repro.py --exact tune@jdft2d uncertainty@jdft2d prune@jdft2d train@jdft2d-cgcnn-0
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def stale_stages() -> list[tuple[str, str]]:
    """(name, command) of every stage ``dvc repro --dry`` would run, in its order."""
    dry = subprocess.run(["dvc", "repro", "--dry"], capture_output=True, text=True, check=True).stdout
    return re.findall(r"Running stage '([^']+)':\n> (.+)", dry)


def ancestors() -> dict[str, set[str]]:
    """Every stage's upstream stages, from the edges of ``dvc dag --mermaid``."""
    out = subprocess.run(["dvc", "dag", "--mermaid"], capture_output=True, text=True, check=True).stdout
    names = dict(re.findall(r'(node\d+)\["([^"]+)"\]', out))
    parents: dict[str, set[str]] = {n: set() for n in names.values()}
    for a, b in re.findall(r"(node\d+)-->(node\d+)", out):
        parents[names[b]].add(names[a])
    up: dict[str, set[str]] = {}

    def visit(n: str) -> set[str]:
        if n not in up:
            up[n] = set()
            for p in parents[n]:
                up[n] |= {p} | visit(p)
        return up[n]

    for n in parents:
        visit(n)
    return up


def exact_stages(names: list[str]) -> list[tuple[str, str]]:
    """(name, command) of the named stages, in the given order, from ``dvc.yaml`` (no staleness check)."""
    from dvc.repo import Repo

    repo = Repo(".")
    out = []
    for name in names:
        (stage,) = repo.stage.collect(name)
        out.append((name, stage.cmd))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if a stage failed, 2 if blocked)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "prefixes", nargs="+", help="stage name prefixes, e.g. train optimal ood (full names with --exact)"
    )
    ap.add_argument(
        "--exact", action="store_true", help="run exactly these stages (upstream ones first), stale or not"
    )
    ap.add_argument("--jobs", type=int, default=2, help="stages at a time (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per stage (default 1)")
    ap.add_argument(
        "--dask-workers",
        type=int,
        default=1,
        help="Dask workers inside each stage that takes the `dask` group (default 1: the stages "
        "already run side by side); appended as `-p workers N`, which no output depends on",
    )
    ap.add_argument("--logs", type=Path, default=Path("build/parallel_repro"), help="one log per stage")
    args = ap.parse_args(argv)

    up = ancestors()
    if args.exact:
        # A stage whose upstream outputs do not exist yet makes `dvc repro --dry` fail, so
        # the caller names the stages; a named stage waits for the named stages upstream of it.
        chosen = exact_stages(args.prefixes)
        others: set[str] = set()
    else:
        stale = stale_stages()
        chosen = [(s, c) for s, c in stale if s.split("@")[0] in args.prefixes]
        others = {s for s, _ in stale} - {s for s, _ in chosen}
    if not chosen:
        print("nothing to run")
        return 0
    blocked = {s: up.get(s, set()) & others for s, _ in chosen}
    blocked = {s: b for s, b in blocked.items() if b}
    if blocked:
        for s, stale_up in blocked.items():
            print(
                f"{s}: upstream stages are stale: {sorted(stale_up)}; run `dvc repro` on them first",
                file=sys.stderr,
            )
        return 2

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"{len(chosen)} stages, {args.jobs} at a time; logs in {args.logs}/", flush=True)

    def run(stage: tuple[str, str]) -> tuple[str, int, float]:
        name, cmd = stage
        if "-g dask" in cmd:
            cmd = f"{cmd} -p workers {args.dask_workers}"
        t0 = time.perf_counter()
        with (args.logs / f"{name}.log").open("w") as fh:
            rc = subprocess.run(
                cmd, check=False, shell=True, stdout=fh, stderr=subprocess.STDOUT, env=env
            ).returncode
        return name, rc, time.perf_counter() - t0

    names = {s for s, _ in chosen}
    pending = list(chosen)
    unfinished = set(names)
    done: list[str] = []
    failed: list[str] = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        running: dict[cf.Future, str] = {}
        while pending or running:
            # Start every stage whose named upstream stages have all finished.
            for st in list(pending):
                if len(running) >= args.jobs:
                    break
                if not (up.get(st[0], set()) & names & unfinished):
                    pending.remove(st)
                    running[pool.submit(run, st)] = st[0]
            if not running:  # the rest waits on a failed stage
                failed += [s for s, _ in pending]
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                name, rc, dt = fut.result()
                del running[fut]
                print(
                    f"{time.strftime('%H:%M:%S')} {name}: {'ok' if rc == 0 else f'FAILED (rc {rc})'} in {dt:.0f} s",
                    flush=True,
                )
                if rc == 0:
                    unfinished.discard(name)
                    done.append(name)
                    # Record it at once, so an interrupted session keeps every finished stage.
                    subprocess.run(["dvc", "commit", "-f", "-q", name], check=False)
                else:
                    failed.append(name)
    print(f"committed {len(done)} stages; {len(failed)} failed or not run: {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
