"""Spatial partitioning: a dedicated replica per task on its own slice of a device.

Each device is cut into ``slices_per_gpu`` equal slices (MIG-like), each owning that fraction
of compute, bandwidth and memory. A task gets one slice, or the fewest contiguous slices that
hold its replica (process, backbone copy, extensions, activations) when one is too small, as
MIG's larger profiles do; first fit over devices. No sharing, no cross-task batching. With
``size_for_load`` a task also gets more slices until its predicted utilization is at most
``target_util`` (a right-sized variant of the baseline; off by default).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from fmplex_sim.policies.placement.base import (
    PLACEMENTS,
    InstancePlan,
    Placement,
    PlacementCost,
    PlacementPolicy,
    replica_gib,
)
from fmplex_sim.specs import TaskSpec


def first_slice(plan: InstancePlan) -> int:
    """Index of the first slice a spatial instance occupies (its id is ``g<gpu>/s<first>/<task>``);
    0 for instances of other placements."""
    return int(plan.id.split("/s")[1].split("/")[0]) if "/s" in plan.id else 0


@PLACEMENTS.register("spatial")
class SpatialPlacement(PlacementPolicy):
    name = "spatial"

    def __init__(
        self, slices_per_gpu: int = 7, target_util: float = 0.7, size_for_load: bool = False
    ) -> None:
        self.slices = slices_per_gpu  # slices per device
        self.target_util = target_util  # with size_for_load: grow until the load fits under this
        self.size_for_load = size_for_load  # also size slices by predicted load, not only memory

    def plan(self, tasks: Sequence[TaskSpec], cost: PlacementCost) -> Placement:
        p = Placement(self.name, time_shared=False)
        for task in tasks:
            p = self.add(p, task, cost)
        return p

    def slices_needed(self, task: TaskSpec, cost: PlacementCost) -> int:
        """Fewest slices that hold the replica and carry its predicted load."""
        slice_gib = cost.gpu_memory_gib / self.slices
        k = max(1, math.ceil(replica_gib(task, cost) / slice_gib - 1e-9))
        while self.size_for_load and k < self.slices and cost.task_util(task, k / self.slices) > self.target_util:
            k += 1
        return k

    def add(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        k = self.slices_needed(task, cost)
        if k > self.slices:
            need = replica_gib(task, cost)
            return replace(
                placement,
                unplaced=placement.unplaced
                + ((task.name, f"replica needs {need:.2f} GiB, more than one device"),),
            )
        used = [[False] * self.slices for _ in range(cost.gpus)]
        for inst in placement.instances:
            first = first_slice(inst)
            for s in range(first, first + round(inst.share * self.slices)):
                used[inst.gpu][s] = True
        for gpu in range(cost.gpus):
            for first in range(self.slices - k + 1):
                if not any(used[gpu][first : first + k]):
                    share = k / self.slices
                    inst = InstancePlan(
                        id=f"g{gpu}/s{first}/{task.name}",
                        gpu=gpu,
                        backbone=task.backbone,
                        share=share,
                        tasks=(task.name,),
                        process=f"g{gpu}/s{first}",
                        memory_gib=replica_gib(task, cost),
                        util=cost.task_util(task, share),
                    )
                    return placement.with_instance(inst)
        return replace(
            placement,
            unplaced=placement.unplaced
            + ((task.name, f"no device has {k} free slice(s) of {self.slices}"),),
        )
