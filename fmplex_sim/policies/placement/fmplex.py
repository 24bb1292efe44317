"""Sharing-aware placement: one physical backbone per (backbone, device), many vFMs on it.

1. Tasks are grouped by backbone. A backbone gets ``ceil(predicted utilization / target_util)``
   physical copies (at least one, at most one per device). With ``spread_idle`` (default),
   devices that would otherwise stay idle each get one more copy of the backbone with the
   most predicted load per copy (at most one copy per task of that backbone).
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

    def __init__(self, target_util: float = 0.7, spread_idle: bool = True) -> None:
        self.target_util = target_util  # add a backbone copy when predicted load passes this
        self.spread_idle = spread_idle  # give devices that would stay idle extra copies

    # -- offline ---------------------------------------------------------------------------
    def plan(self, tasks: Sequence[TaskSpec], cost: PlacementCost) -> Placement:
        groups: dict[str, list[TaskSpec]] = {}
        for t in tasks:
            groups.setdefault(t.backbone, []).append(t)
        rank = {t.name: k for k, t in enumerate(tasks)}
        group_rank = {bb: k for k, bb in enumerate(groups)}
        util = {t.name: cost.task_util(t, 1.0) for t in tasks}
        demand = {bb: sum(util[t.name] for t in ts) for bb, ts in groups.items()}
        copies = {
            bb: max(1, min(cost.gpus, math.ceil(demand[bb] / self.target_util - 1e-9)))
            for bb in groups
        }
        if self.spread_idle:
            # A device left idle lowers nobody's latency: give each spare device another copy
            # of the backbone with the most predicted load per copy (never more copies than
            # the backbone has tasks, since a copy without a vFM serves nothing).
            spare = cost.gpus - sum(copies.values())
            while spare > 0:
                cands = [bb for bb in groups if copies[bb] < min(cost.gpus, len(groups[bb]))]
                if not cands:
                    break
                bb = max(cands, key=lambda b: (demand[b] / copies[b], -group_rank[b]))
                copies[bb] += 1
                spare -= 1
        cap = cost.gpu_memory_gib + 1e-9
        mem = [0.0] * cost.gpus  # committed memory per device, reservations included
        has_process = [False] * cost.gpus
        load = [0.0] * cost.gpus
        unplaced: dict[str, str] = {}
        failed: set[str] = set()
        instances: dict[str, dict] = {}  # id -> mutable draft
        order = sorted(
            ((bb, j) for bb in groups for j in range(copies[bb])),
            key=lambda x: (x[1], -demand[x[0]], group_rank[x[0]]),
        )
        for bb, j in order:
            if bb in failed:
                continue
            ts = groups[bb]
            # Each copy reserves its share of the group's extensions, so a later backbone
            # cannot take the memory these tasks' extensions need.
            ext = sum(cost.extension_gib(t) for t in ts) / copies[bb]
            base = cost.backbone_gib(bb) + cost.activation_gib(bb, max(t.input_len for t in ts))
            held = {d["gpu"] for d in instances.values() if d["backbone"] == bb}
            best = None
            for g in range(cost.gpus):
                if g in held:
                    continue
                need = base + ext + (0.0 if has_process[g] else cost.process_gib)
                if mem[g] + need <= cap and (best is None or (load[g], g) < (load[best], best)):
                    best = g
            if best is None:
                if j == 0:
                    failed.add(bb)
                    for t in ts:
                        unplaced[t.name] = f"no device has memory for backbone {bb}"
                continue
            g = best
            mem[g] += base + ext + (0.0 if has_process[g] else cost.process_gib)
            has_process[g] = True
            load[g] += demand[bb] / copies[bb]
            instances[f"g{g}/{bb}"] = {
                "gpu": g, "backbone": bb, "tasks": [], "util": 0.0, "memory": base, "reserved": ext,
            }
        for t in sorted(tasks, key=lambda t: (-util[t.name], rank[t.name])):
            if t.name in unplaced:
                continue
            e = cost.extension_gib(t)

            def extra(i: str) -> float:  # memory beyond the copy's own reservation
                return max(0.0, e - instances[i]["reserved"])

            reps = [i for i, d in instances.items() if d["backbone"] == t.backbone]
            fit = [i for i in reps if mem[instances[i]["gpu"]] + extra(i) <= cap]
            if not fit:
                unplaced[t.name] = f"no copy of {t.backbone} has memory for its extensions"
                continue
            n = max(1, min(len(fit), math.ceil(util[t.name] / self.target_util - 1e-9)))
            for i in sorted(fit, key=lambda i: (instances[i]["util"], i))[:n]:
                d = instances[i]
                mem[d["gpu"]] += extra(i)
                d["reserved"] = max(0.0, d["reserved"] - e)
                d["tasks"].append(t.name)
                d["util"] += util[t.name] / n
                d["memory"] += e
        out = [
            InstancePlan(
                id=i, gpu=d["gpu"], backbone=d["backbone"], share=1.0,
                tasks=tuple(sorted(d["tasks"], key=rank.__getitem__)),
                process=f"g{d['gpu']}", memory_gib=d["memory"], util=d["util"],
            )
            for i, d in sorted(instances.items(), key=lambda kv: (kv[1]["gpu"], kv[0]))
            if d["tasks"]
        ]
        # One serving process per device: its memory is carried by the device's first instance.
        charged: set[int] = set()
        for k, inst in enumerate(out):
            if inst.gpu not in charged:
                charged.add(inst.gpu)
                out[k] = replace(inst, memory_gib=inst.memory_gib + cost.process_gib)
        return Placement(
            self.name,
            tuple(out),
            tuple(sorted(unplaced.items(), key=lambda u: rank[u[0]])),
            time_shared=True,
        )

    # -- online ----------------------------------------------------------------------------
    def add(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        cap = cost.gpu_memory_gib + 1e-9
        mem = placement.gpu_memory_gib(cost.gpus)
        e = cost.extension_gib(task)
        u = cost.task_util(task, 1.0)
        same = [i for i in placement.instances if i.backbone == task.backbone]
        reps = [i for i in same if mem[i.gpu] + e <= cap]
        if reps:
            inst = min(reps, key=lambda i: (i.util, i.id))
            return placement.with_instance(
                replace(inst, tasks=inst.tasks + (task.name,), memory_gib=inst.memory_gib + e, util=inst.util + u)
            )
        held = {i.gpu for i in same}  # at most one copy of a backbone per device
        used = {i.gpu for i in placement.instances}  # devices that already run the serving process
        load = [0.0] * cost.gpus
        for i in placement.instances:
            load[i.gpu] += i.util
        base = cost.backbone_gib(task.backbone) + cost.activation_gib(task.backbone, task.input_len) + e
        cands = [
            (load[g], g) for g in range(cost.gpus)
            if g not in held and mem[g] + base + (0.0 if g in used else cost.process_gib) <= cap
        ]
        if not cands:
            why = (f"no copy of {task.backbone} has memory for its extensions and no other device "
                   f"has memory for a new copy" if same else f"no device has memory for backbone {task.backbone}")
            return replace(placement, unplaced=placement.unplaced + ((task.name, why),))
        g = min(cands)[1]
        return placement.with_instance(
            InstancePlan(
                id=f"g{g}/{task.backbone}", gpu=g, backbone=task.backbone, share=1.0,
                tasks=(task.name,), process=f"g{g}",
                memory_gib=base + (0.0 if g in used else cost.process_gib), util=u,
            )
        )

    def remove(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        """Free the task's extensions and load on every copy it used; drop copies left empty.

        The device's serving-process memory moves to its next instance when the instance that
        carried it is dropped, so per-device memory stays right.
        """
        e = cost.extension_gib(task)
        hosting = [i for i in placement.instances if task.name in i.tasks]
        u = cost.task_util(task, 1.0) / len(hosting) if hosting else 0.0
        shrunk = [
            replace(i, memory_gib=i.memory_gib - e, util=max(0.0, i.util - u)) if task.name in i.tasks else i
            for i in placement.instances
        ]
        out = replace(placement, instances=tuple(shrunk)).without_task(task.name)
        before = _first_per_gpu(placement.instances)
        after = _first_per_gpu(out.instances)
        for g, inst_id in after.items():
            if before.get(g) != inst_id:  # the instance carrying the process was dropped
                inst = out.instance(inst_id)
                out = out.with_instance(replace(inst, memory_gib=inst.memory_gib + cost.process_gib))
        return out


def _first_per_gpu(instances: Sequence[InstancePlan]) -> dict[int, str]:
    first: dict[int, str] = {}
    for i in instances:
        first.setdefault(i.gpu, i.id)
    return first
