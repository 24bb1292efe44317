"""Sharing-aware placement: one physical backbone per (backbone, device), many vFMs on it.

1. Tasks are grouped by backbone. A backbone gets ``ceil(predicted utilization / target_util)``
   physical copies (at least one, at most one per device).
2. Copies are placed, busiest backbone first, each on the least-loaded device that does not
   already hold that backbone and has memory for it (weights, activation reserve, its share of
   the extensions, and one serving process per device).
3. vFMs are packed onto their backbone's copies, heaviest first, onto the least-loaded copy
   with memory; a task whose own load exceeds ``target_util`` is spread over several copies
   and its requests are routed among them.
Online, a new task joins the least-loaded copy of its backbone, or a new copy is loaded.
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
)
from fmplex_sim.specs import TaskSpec


@PLACEMENTS.register("fmplex")
class FmplexPlacement(PlacementPolicy):
    name = "fmplex"

    def __init__(self, target_util: float = 0.7) -> None:
        self.target_util = target_util  # add a backbone copy when predicted load passes this

    # -- offline ---------------------------------------------------------------------------
    def plan(self, tasks: Sequence[TaskSpec], cost: PlacementCost) -> Placement:
        groups: dict[str, list[TaskSpec]] = {}
        for t in tasks:
            groups.setdefault(t.backbone, []).append(t)
        util = {t.name: cost.task_util(t, 1.0) for t in tasks}
        demand = {bb: sum(util[t.name] for t in ts) for bb, ts in groups.items()}
        copies = {
            bb: max(1, min(cost.gpus, math.ceil(demand[bb] / self.target_util - 1e-9)))
            for bb in groups
        }
        mem = [0.0] * cost.gpus
        load = [0.0] * cost.gpus
        unplaced: list[tuple[str, str]] = []
        instances: dict[str, dict] = {}  # id -> mutable draft
        order = sorted(
            ((bb, j) for bb in groups for j in range(copies[bb])),
            key=lambda x: (x[1], -demand[x[0]], list(groups).index(x[0])),
        )
        for bb, j in order:
            ts = groups[bb]
            ext = sum(cost.extension_gib(t) for t in ts) / copies[bb]
            base = cost.backbone_gib(bb) + cost.activation_gib(bb, max(t.input_len for t in ts))
            held = {d["gpu"] for d in instances.values() if d["backbone"] == bb}
            best = None
            for g in range(cost.gpus):
                need = base + ext + (cost.process_gib if mem[g] == 0 else 0.0)
                if g not in held and mem[g] + need <= cost.gpu_memory_gib + 1e-9:
                    if best is None or (load[g], g) < (load[best[0]], best[0]):
                        best = (g, need)
            if best is None:
                if j == 0:
                    unplaced += [(t.name, f"no device has memory for backbone {bb}") for t in ts]
                continue
            g, need = best
            first = mem[g] == 0
            mem[g] += need - ext  # extensions are charged as they are packed below
            load[g] += demand[bb] / copies[bb]
            instances[f"g{g}/{bb}"] = {
                "gpu": g, "backbone": bb, "tasks": [], "util": 0.0,
                "memory": base + (cost.process_gib if first else 0.0),
            }
        for t in sorted(tasks, key=lambda t: (-util[t.name], tasks.index(t))):
            if any(u[0] == t.name for u in unplaced):
                continue
            reps = [i for i, d in instances.items() if d["backbone"] == t.backbone]
            e = cost.extension_gib(t)
            fit = [i for i in reps if mem[instances[i]["gpu"]] + e <= cost.gpu_memory_gib + 1e-9]
            if not fit:
                unplaced.append((t.name, f"no copy of {t.backbone} has memory for its extensions"))
                continue
            n = max(1, min(len(fit), math.ceil(util[t.name] / self.target_util - 1e-9)))
            for i in sorted(fit, key=lambda i: (instances[i]["util"], i))[:n]:
                d = instances[i]
                d["tasks"].append(t.name)
                d["util"] += util[t.name] / n
                d["memory"] += e
                mem[d["gpu"]] += e
        rank = {t.name: k for k, t in enumerate(tasks)}
        out = tuple(
            InstancePlan(
                id=i, gpu=d["gpu"], backbone=d["backbone"], share=1.0,
                tasks=tuple(sorted(d["tasks"], key=rank.__getitem__)),
                process=f"g{d['gpu']}", memory_gib=d["memory"], util=d["util"],
            )
            for i, d in sorted(instances.items(), key=lambda kv: (kv[1]["gpu"], kv[0]))
            if d["tasks"]
        )
        unplaced.sort(key=lambda u: rank[u[0]])
        return Placement(self.name, out, tuple(unplaced), time_shared=True)

    # -- online ----------------------------------------------------------------------------
    def add(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        mem = placement.gpu_memory_gib(cost.gpus)
        e = cost.extension_gib(task)
        u = cost.task_util(task, 1.0)
        reps = [
            i for i in placement.instances
            if i.backbone == task.backbone and mem[i.gpu] + e <= cost.gpu_memory_gib + 1e-9
        ]
        if reps:
            inst = min(reps, key=lambda i: (i.util, i.id))
            return placement.with_instance(
                replace(inst, tasks=inst.tasks + (task.name,), memory_gib=inst.memory_gib + e, util=inst.util + u)
            )
        load = [0.0] * cost.gpus
        for i in placement.instances:
            load[i.gpu] += i.util
        base = cost.backbone_gib(task.backbone) + cost.activation_gib(task.backbone, task.input_len) + e
        cands = [
            (load[g], g) for g in range(cost.gpus)
            if mem[g] + base + (cost.process_gib if mem[g] == 0 else 0) <= cost.gpu_memory_gib + 1e-9
        ]
        if not cands:
            return replace(
                placement,
                unplaced=placement.unplaced + ((task.name, f"no device has memory for backbone {task.backbone}"),),
            )
        g = min(cands)[1]
        return placement.with_instance(
            InstancePlan(
                id=f"g{g}/{task.backbone}", gpu=g, backbone=task.backbone, share=1.0,
                tasks=(task.name,), process=f"g{g}",
                memory_gib=base + (cost.process_gib if mem[g] == 0 else 0.0), util=u,
            )
        )

    def remove(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        e = cost.extension_gib(task)
        shrunk = [
            replace(i, memory_gib=i.memory_gib - e) if task.name in i.tasks else i
            for i in placement.instances
        ]
        return replace(placement, instances=tuple(shrunk)).without_task(task.name)
