"""What both command lines (``fmplex-sim``, ``fmplex-exec``) share: one-line usage errors and
the exit-status contract (0 ok, 2 invalid input with one line on stderr, 130 interrupted)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from fmplex_sim.errors import InputError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def run_cli(prog: str, build_parser: Callable[[], argparse.ArgumentParser], argv: list[str] | None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the chosen command's ``func``.

    The parsed namespace gets ``argv`` (the command line, for provenance). An InputError becomes
    one line on stderr and status 2; Ctrl-C status 130; a closed stdout (``| head``) status 141.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already reported on one line)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    args.argv = [prog, *argv]
    try:
        return args.func(args)
    except InputError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; no results were written\n")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away; results are already written.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


# Files that mark a folder as one these tools wrote (a run or a comparison): only such a folder,
# or an empty one, is replaced by --out.
_RESULT_MARKERS = ("provenance.json", "comparison.csv")


def check_results_out(out: str) -> None:
    """Refuse an --out that would replace something that is not a previous results folder.

    Called before any work, so a bad --out costs nothing and leaves nothing behind."""
    if not out.strip():
        raise InputError("--out", "", "name a results folder")
    path = Path(out)
    target = Path(os.path.abspath(path))
    cwd = Path.cwd().resolve()
    if path.name in ("", ".", "..") or target.resolve() == cwd or target.resolve() in cwd.parents:
        raise InputError("--out", out, "would replace the current folder or one above it; name a new folder")
    if path.is_symlink():
        raise InputError("--out", out, "is a symbolic link; name the folder itself")
    if path.exists():
        if not path.is_dir():
            raise InputError("--out", out, "exists and is not a folder")
        if any(path.iterdir()) and not any((path / m).is_file() for m in _RESULT_MARKERS):
            raise InputError(
                "--out", out, "exists and is not a results folder of fmplex-sim; refusing to replace it"
            )
