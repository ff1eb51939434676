"""A prune's working folder (``fusion prune --workdir DIR``): its four artefacts, reused across runs.

:func:`fusion.prune_api.prune` computes four artefacts, each once for all
ratios: the checked ``structures`` (the loaded dataset, with its skipped
records), the ``graphs``, the SOAP ``fingerprints`` and the trained
``surrogate`` (its raw per-record uncertainties ``u_ale`` and ``u_epi``, its
quality, and its weights). With a working folder, each is saved there as soon as
it exists and looked up before it is computed, so that

* a second run on the same data with another ``--ratio``, ``--method``,
  ``--gamma``, ``--lambda`` or ``--aleatoric-sign`` reuses them (these act after
  the artefacts: ``U = sigmoid(Lambda u_epi + s u_ale)`` is recomputed from the
  cached raw uncertainties), and
* an interrupted run resumes after its last finished artefact.

Each artefact's file name holds a key: the SHA-256 of everything it depends on
(:func:`cache_key`), so a changed input or option computes a new artefact
rather than reusing a wrong one:

============  ==============================================================
artefact      key
============  ==============================================================
structures    the input (resolved path; name, size and mtime of every file
              of a CIF folder, or of the one file), target, graph cutoff
graphs        the structures' content (:func:`structures_digest`), targets
              (:func:`targets_digest`), cutoff, neighbours per atom
fingerprints  the structures' content, compression
surrogate     the graphs' key, model, size, epochs, patience, batch size,
              learning rate, seed, validation fraction, device
============  ==============================================================

Every key also holds :data:`CACHE_VERSION`, the package version and a digest of
the source of the modules that compute the artefact (:data:`CODE`,
:func:`code_digest`), so an edited checkout never reuses what older code
computed. Files are
written to a temporary name and renamed (``os.replace``), so an interrupted run
never leaves a truncated artefact; an unreadable one is recomputed. Beside each
artefact, ``<name>.json`` lists what its key was made of. Each artefact's file
format is in :mod:`fusion.prune_files`. Structures are stored with
:mod:`pickle`: use a working folder that only you write to.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from fusion import __version__

T = TypeVar("T")

#: Bump when an artefact's format or meaning changes: every old key then misses.
#: 2: dense fingerprints are a ``.npy`` file streamed block by block (was ``.npz``).
CACHE_VERSION = 2
#: The artefacts, in the order a run computes them.
ARTEFACTS = ("structures", "fingerprints", "graphs", "surrogate")
#: File suffixes of each artefact: fingerprints are ``.npy`` when dense, ``.npz`` (CSR) when sparse.
SUFFIX = {
    "structures": (".pkl",),
    "graphs": (".pt",),
    "fingerprints": (".npy", ".npz"),
    "surrogate": (".pt",),
}

#: The modules (paths under the package folder) whose source decides each artefact.
CODE = {
    "structures": ("data.py", "record_checks.py", "userdata.py", "user_records.py", "cif.py", "packed.py"),
    "fingerprints": ("fingerprints.py",),
    "graphs": ("graphs.py", "featurize.py"),
    "surrogate": ("train.py", "models", "uncertainty.py"),
}

log = logging.getLogger("fusion.prune")


@functools.cache
def code_digest(kind: str) -> str:
    """SHA-256 of the source of the modules that compute an artefact (:data:`CODE`), read once per process.

    Args:
        kind: One of :data:`ARTEFACTS`.

    Returns:
        The hex digest over every ``.py`` file, in sorted order, with its path.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for entry in CODE[kind]:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes() if f.exists() else b"")
    return h.hexdigest()


def input_signature(path: str | Path) -> dict[str, Any]:
    """What identifies an input on disk without reading it: resolved path, names, sizes, mtimes.

    Args:
        path: A CIF folder (every regular file in it counts, ``id_prop.csv``
            included) or a single file.

    Returns:
        ``{"path", "n_files", "files"}``: ``files`` is the SHA-256 of the sorted
        ``(name, size, mtime_ns)`` rows. A missing path gives ``n_files = 0``.
    """
    p = Path(path).resolve()
    rows: list[tuple[str, int, int]] = []
    if p.is_dir():
        with os.scandir(p) as entries:
            for e in entries:
                if e.is_file():
                    st = e.stat()
                    rows.append((e.name, st.st_size, st.st_mtime_ns))
    elif p.is_file():
        st = p.stat()
        rows.append((p.name, st.st_size, st.st_mtime_ns))
    rows.sort()
    return {"path": str(p), "n_files": len(rows), "files": _sha(json.dumps(rows))}


def structures_digest(ids: Sequence[str], structures: Sequence[Any]) -> str:
    """SHA-256 of the records' ids, lattices, atomic numbers and fractional coordinates.

    Everything the graphs and the fingerprints are computed from, read from the
    parsed structures (so the same crystals read from a touched file give the
    same digest).

    Args:
        ids: Record ids.
        structures: Their pymatgen structures.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for rid, s in zip(ids, structures, strict=True):
        h.update(str(rid).encode())
        h.update(b"\0")
        h.update(np.ascontiguousarray(s.lattice.matrix, dtype=np.float64).tobytes())
        h.update(np.asarray(s.atomic_numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(s.frac_coords, dtype=np.float64).tobytes())
    return h.hexdigest()


def targets_digest(y: np.ndarray) -> str:
    """SHA-256 of the targets' float64 bits."""
    return hashlib.sha256(np.ascontiguousarray(y, dtype=np.float64).tobytes()).hexdigest()


def cache_key(kind: str, parts: dict[str, Any]) -> str:
    """The key of an artefact: SHA-256 of its kind, :data:`CACHE_VERSION`, the package version, its code and ``parts``.

    Args:
        kind: One of :data:`ARTEFACTS`.
        parts: Everything the artefact depends on (JSON-ready values).

    Returns:
        The hex digest.
    """
    payload = {"kind": kind, **_versions(kind), **parts}
    return _sha(json.dumps(payload, sort_keys=True, default=str))


def _versions(kind: str) -> dict[str, Any]:
    code = code_digest(kind) if kind in CODE else None
    return {"cache_version": CACHE_VERSION, "fusion": __version__, "code": code}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temporary name in the same folder, then rename.

    Args:
        path: Final path.
        write: Writes the content to the path it is given.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@dataclass
class WorkDir:
    """A working folder holding a prune's artefacts under their keys.

    Attributes:
        root: The folder (created on first write).
        record: What happened to each artefact of the current run, by kind:
            ``status`` (``"reused"`` or ``"computed"``), ``path``, ``key``.
    """

    root: Path
    record: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, kind: str, key: str, suffix: str | None = None) -> Path:
        """Where the artefact of ``kind`` with ``key`` lives (``suffix``: one of :data:`SUFFIX`, default the first)."""
        return self.root / f"{kind}-{key[:24]}{suffix or SUFFIX[kind][0]}"

    def fetch(
        self,
        kind: str,
        parts: dict[str, Any],
        compute: Callable[[], T],
        save: Callable[[T, Path], None],
        load: Callable[[Path], T],
    ) -> T:
        """The artefact of ``kind`` for ``parts``: loaded when saved before, else computed and saved.

        Args:
            kind: One of :data:`ARTEFACTS`.
            parts: What it depends on (:func:`cache_key`).
            compute: Computes it.
            save: Writes it to the path given (a temporary name).
            load: Reads it back.

        Returns:
            The artefact.
        """
        key = cache_key(kind, parts)
        found, value = self._lookup(kind, key, load)
        if found:
            return value
        value = compute()
        path = self.path(kind, key)
        atomic_write(path, lambda tmp: save(value, tmp))
        self._computed(kind, key, parts, path)
        return value

    def fetch_written(
        self, kind: str, parts: dict[str, Any], write: Callable[[Path], Path], load: Callable[[Path], T]
    ) -> T:
        """Like :meth:`fetch` for an artefact computed straight into its file, so it is never whole in memory.

        Args:
            kind: One of :data:`ARTEFACTS`.
            parts: What it depends on (:func:`cache_key`).
            write: Given a temporary path without suffix, computes the
                artefact into that path plus one of the kind's :data:`SUFFIX`
                and returns the path it wrote.
            load: Reads it back (this is what the call returns, also right
                after computing).

        Returns:
            ``load`` of the artefact's file.
        """
        key = cache_key(kind, parts)
        found, value = self._lookup(kind, key, load)
        if found:
            return value
        self.root.mkdir(parents=True, exist_ok=True)
        stem = self.root / f".{kind}-{key[:24]}.{os.getpid()}.tmp"
        try:
            written = write(stem)
            if written.suffix not in SUFFIX[kind]:
                raise ValueError(f"{kind} written as {written.name}: expected a suffix of {SUFFIX[kind]}")
            path = self.path(kind, key, written.suffix)
            os.replace(written, path)
            for other in set(SUFFIX[kind]) - {written.suffix}:  # e.g. a damaged one of the other format
                self.path(kind, key, other).unlink(missing_ok=True)
        finally:
            for leftover in self.root.glob(stem.name + "*"):
                leftover.unlink()
        self._computed(kind, key, parts, path)
        return load(path)

    def _lookup(self, kind: str, key: str, load: Callable[[Path], T]) -> tuple[bool, T | None]:
        """``(True, artefact)`` when a readable artefact of ``kind`` with ``key`` is saved, else ``(False, None)``."""
        for suffix in SUFFIX[kind]:
            path = self.path(kind, key, suffix)
            if not path.exists():
                continue
            try:
                value = load(path)
            except Exception as exc:  # a damaged artefact is recomputed
                log.warning("%s: unreadable cached %s (%s); recomputing", path, kind, exc)
                continue
            log.info("reused %s from %s", kind, path)
            self.record[kind] = {"status": "reused", "path": str(path), "key": key}
            return True, value
        return False, None

    def _computed(self, kind: str, key: str, parts: dict[str, Any], path: Path) -> None:
        """Write the sidecar ``<name>.json`` of a newly saved artefact and record it."""
        sidecar = {"kind": kind, "key": key, **_versions(kind), **parts}
        atomic_write(
            path.with_name(path.name + ".json"),
            lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n"),
        )
        log.info("saved %s to %s", kind, path)
        self.record[kind] = {"status": "computed", "path": str(path), "key": key}
