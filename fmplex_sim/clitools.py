"""What both command lines (``fmplex-sim``, ``fmplex-exec``) share: one-line usage errors and
the exit-status contract (0 ok, 2 invalid input with one line on stderr, 130 interrupted)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

from fmplex_sim.errors import InputError


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so a results folder being written is removed."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _on_sigterm():
    """Make SIGTERM raise :class:`Terminated` (main thread only); returns the previous handler,
    or None when it could not be installed (not the main thread, or SIGTERM was ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous is signal.SIG_IGN:
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return previous


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
    for stream in (sys.stdout, sys.stderr):  # a name or path the terminal cannot encode prints escaped
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already reported on one line)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    args.argv = [prog, *argv]
    previous = _on_sigterm()
    try:
        return args.func(args)
    except InputError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; no results were written\n")
        return 130
    except Terminated:
        sys.stderr.write(f"{prog}: terminated; no results were written\n")
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # The reader of stdout went away; results are already written.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# Files that mark a folder as one these tools wrote (a run or a comparison): only such a folder,
# or an empty one, is replaced by --out.
_RESULT_MARKERS = ("provenance.json", "comparison.csv")


def check_results_out(out: str) -> None:
    """Refuse an --out that would replace something that is not a previous results folder, or
    that cannot be written (a path under a file, a folder without write permission, a name
    too long).

    Called before any work, so a bad --out costs nothing and leaves nothing behind."""
    with out_path_errors(out):
        _check_results_out(out)


@contextlib.contextmanager
def out_path_errors(out: str) -> Iterator[None]:
    """Report an OSError from looking at the path ``out`` (a name too long, a loop of links)
    as the user's mistake in --out."""
    try:
        yield
    except OSError as e:
        raise InputError("--out", out, f"cannot use it: {e.strerror or e.__class__.__name__}") from None


@contextlib.contextmanager
def writing_results(out: str) -> Iterator[None]:
    """Report an OSError while the results under ``out`` are written (disk full, permissions
    changed meanwhile) as one line about --out; the results folder helpers leave nothing."""
    try:
        yield
    except OSError as e:
        raise InputError("--out", out, f"cannot write results: {e.strerror or e}") from None


def check_file_out(out: str, what: str = "file") -> None:
    """Refuse an --out that names no file, names a folder, or cannot be written (checked before
    any work)."""
    with out_path_errors(out):
        path = Path(out)
        if not out.strip() or path.name in ("", ".", ".."):
            raise InputError("--out", out, f"name a {what} to write")
        if path.exists() and not path.is_file():
            raise InputError("--out", out, f"exists and is not a file; name a {what}")
        writable_parent(out)


def writable_parent(out: str) -> None:
    """Refuse ``out`` unless its nearest existing ancestor is a folder this process may write."""
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError("--out", out, f"{parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("--out", out, f"cannot write in {parent} (permission denied)")


def _check_results_out(out: str) -> None:
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
    writable_parent(out)
