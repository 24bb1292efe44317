"""Best-effort co-location: a dedicated replica per task, replicas time-sharing whole devices.

Replicas are placed largest-memory first onto the least-loaded device (by predicted
utilization) that still has memory for them. Replicas on one device run in separate processes
and take turns at batch granularity, paying a context switch when the device changes hands;
each replica batches only its own task's requests.
"""

from __future__ import annotations

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


@PLACEMENTS.register("colocate")
class ColocatePlacement(PlacementPolicy):
    name = "colocate"

    def plan(self, tasks: Sequence[TaskSpec], cost: PlacementCost) -> Placement:
        p = Placement(self.name, time_shared=True)
        order = sorted(range(len(tasks)), key=lambda i: (-replica_gib(tasks[i], cost), i))
        for i in order:
            p = self.add(p, tasks[i], cost)
        # Keep instances in task order so ids and routes read naturally.
        rank = {t.name: i for i, t in enumerate(tasks)}
        return replace(p, instances=tuple(sorted(p.instances, key=lambda x: rank[x.tasks[0]])))

    def add(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        need = replica_gib(task, cost)
        mem = placement.gpu_memory_gib(cost.gpus)
        util = [0.0] * cost.gpus
        for inst in placement.instances:
            util[inst.gpu] += inst.util
        fits = [g for g in range(cost.gpus) if mem[g] + need <= cost.gpu_memory_gib + 1e-9]
        if not fits:
            return replace(
                placement,
                unplaced=placement.unplaced
                + ((task.name, f"no device has {need:.2f} GiB free for a replica"),),
            )
        gpu = min(fits, key=lambda g: (util[g], g))
        inst = InstancePlan(
            id=f"g{gpu}/{task.name}",
            gpu=gpu,
            backbone=task.backbone,
            share=1.0,
            tasks=(task.name,),
            process=f"g{gpu}/{task.name}",
            memory_gib=need,
            util=cost.task_util(task, 1.0),
        )
        return placement.with_instance(inst)
