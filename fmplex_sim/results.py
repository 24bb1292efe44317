"""Results folders: written whole or not at all, with provenance beside the numbers.

:func:`results_dir` yields a temporary sibling folder and renames it over the target only
when the block finishes without an exception, so an interrupted or failed run never leaves a
half-written results folder behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterator

import yaml

_PACKAGES = ("fmplex", "simpy", "numpy", "scipy", "matplotlib", "PyYAML", "torch", "transformers", "peft")


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(seed: int, latency_model: dict, argv: list[str] | None = None) -> dict:
    """Where a result came from: code version, environment, seed and latency model."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "seed": seed,
        "latency_model": latency_model,
        "command": " ".join(argv if argv is not None else sys.argv),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_yaml(path: Path, obj) -> None:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))


def make_parents(out: Path) -> list[Path]:
    """Make the missing folders above ``out``; return those it made, deepest last."""
    missing = []
    parent = out.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders :func:`make_parents` made, deepest first, where still empty."""
    for d in reversed(folders):
        try:
            d.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def results_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` when the block succeeds.

    On any failure (including the final rename) the temporary folder is removed and an
    existing ``out`` is left as it was.
    """
    out = Path(out)
    made = make_parents(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except BaseException:
        remove_empty(made)
        raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; results are ordinary folders
    old = None
    try:
        yield tmp
        if out.exists() or out.is_symlink():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)  # put the previous results back
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(made)  # the folders made for it, so a failed run leaves nothing
        raise
    finally:
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
