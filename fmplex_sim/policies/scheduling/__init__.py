"""Batch schedulers: which queued requests of which tasks run together on one backbone.

Importing this package registers every scheduler in :data:`SCHEDULERS`; build one by name
with :func:`make_scheduler`.
"""

from __future__ import annotations

from fmplex_sim.policies.scheduling.base import (
    SCHEDULERS,
    InstanceView,
    Scheduler,
    TaskQueues,
)
from fmplex_sim.policies.scheduling import bfq, fifo, rr, vtc, wfq  # noqa: F401  (register)


def make_scheduler(name: str, **options) -> Scheduler:
    """Build the scheduler registered as ``name`` (KeyError listing known names if unknown)."""
    return SCHEDULERS.get(name)(**options)


__all__ = ["SCHEDULERS", "InstanceView", "Scheduler", "TaskQueues", "make_scheduler"]
