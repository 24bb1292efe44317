"""Placement policies: ``spatial``, ``colocate`` (the baselines) and ``fmplex`` (ours)."""

from fmplex_sim.policies.placement import colocate, fmplex, spatial  # noqa: F401  (register)
from fmplex_sim.policies.placement.base import (
    PLACEMENTS,
    InstancePlan,
    Placement,
    PlacementCost,
    PlacementPolicy,
    replica_gib,
)

__all__ = [
    "PLACEMENTS", "InstancePlan", "Placement", "PlacementCost", "PlacementPolicy",
    "replica_gib", "make_placement",
]


def make_placement(
    name: str, *, slices_per_gpu: int = 7, target_util: float = 0.7, spread_idle: bool = True
) -> PlacementPolicy:
    """Build the placement policy ``name`` with the options it takes."""
    cls = PLACEMENTS.get(name)
    if name == "spatial":
        return cls(slices_per_gpu=slices_per_gpu, target_util=target_util)
    if name == "fmplex":
        return cls(target_util=target_util, spread_idle=spread_idle)
    return cls()
