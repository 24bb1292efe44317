"""The one exception type for a user's mistake (bad config, trace or request).

CLIs catch :class:`InputError`, print its one-line message to stderr and exit 2; anything
else is a bug in FMplex and keeps its traceback.
"""

from __future__ import annotations


MAX_PROBLEM = 400  # characters of a problem shown in the one-line message


class InputError(Exception):
    """A user's input is invalid. ``str(err)`` is one line: ``<file>: <where>: <what is wrong>``."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source  # file (or "--set", "command line") the input came from
        self.where = where  # key path like "tasks[3].arrival.cv", or "line 12"
        self.problem = problem  # what is wrong, e.g. "must be > 0, got -1"
        if len(problem) > MAX_PROBLEM:  # a bad field may be megabytes: show its start
            problem = f"{problem[:MAX_PROBLEM]}... ({len(problem):,} characters)"
        parts = [p for p in (source, where, problem) if p]
        # One line whatever the parts hold (a key or file name may carry \r, \x85, \u2028, ...).
        super().__init__(" ".join(": ".join(parts).splitlines()))

    def __reduce__(self):
        # Rebuilt from its three parts, so it crosses a process pool (a sweep's workers) intact.
        return (self.__class__, (self.source, self.where, self.problem))
