"""Placement: which backbone instances run on which GPUs, and which vFMs each one hosts.

A placement policy is pure: it sees task specs and a :class:`PlacementCost` (memory and
predicted load, answered by the caller from the catalog and the latency model) and returns a
:class:`Placement` decision. ``plan`` places the tasks present at the start of a run; ``add``
and ``remove`` react online when a task is deployed or retired mid-run. A task that fits
nowhere is listed in ``Placement.unplaced`` with the reason, never silently dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol, Sequence

from fmplex_sim.registry import Registry
from fmplex_sim.specs import TaskSpec

PLACEMENTS: Registry[type["PlacementPolicy"]] = Registry("placement")


class PlacementCost(Protocol):
    """What a placement may ask about memory and load. All memory in GiB."""

    gpus: int  # devices in the cluster
    gpu_memory_gib: float  # memory of one device
    process_gib: float  # memory one serving process reserves (runtime context)

    def backbone_gib(self, backbone: str) -> float:
        """Weights of one backbone copy."""

    def extension_gib(self, task: TaskSpec) -> float:
        """All extensions of one task."""

    def activation_gib(self, backbone: str, seq_len: int) -> float:
        """Activation reserve of one instance running full batches of ``seq_len``."""

    def task_util(self, task: TaskSpec, share: float) -> float:
        """Predicted busy fraction the task's load puts on an instance owning ``share`` of a device."""


@dataclass(frozen=True)
class InstancePlan:
    """One backbone instance: a physical FM (fmplex) or a dedicated replica (baselines)."""

    id: str  # unique, e.g. "g0/bert-base" or "g1/s3/sst2"
    gpu: int  # device index
    backbone: str  # catalog key
    share: float  # fraction of the device's compute and bandwidth it owns
    tasks: tuple[str, ...]  # vFMs resident on it
    process: str  # serving process; instances in different processes on one device pay a context switch
    memory_gib: float  # memory it occupies (weights, extensions, activation reserve, process)
    util: float = 0.0  # predicted busy fraction from its tasks' load

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "gpu": self.gpu,
            "backbone": self.backbone,
            "share": round(self.share, 6),
            "tasks": list(self.tasks),
            "process": self.process,
            "memory_gib": round(self.memory_gib, 4),
            "predicted_util": round(self.util, 4),
        }


@dataclass(frozen=True)
class Placement:
    """A placement decision for the whole cluster."""

    policy: str  # placement policy name
    instances: tuple[InstancePlan, ...] = ()  # all instances, in creation order
    unplaced: tuple[tuple[str, str], ...] = ()  # (task, reason) for tasks that fit nowhere
    time_shared: bool = True  # instances on one device take turns (False: hard partitions)

    def routes(self) -> dict[str, list[str]]:
        """task -> ids of the instances that serve it."""
        r: dict[str, list[str]] = {}
        for inst in self.instances:
            for t in inst.tasks:
                r.setdefault(t, []).append(inst.id)
        return r

    def gpu_memory_gib(self, gpus: int) -> list[float]:
        mem = [0.0] * gpus
        for inst in self.instances:
            mem[inst.gpu] += inst.memory_gib
        return mem

    def gpus_used(self) -> int:
        return len({i.gpu for i in self.instances if i.tasks})

    def memory_gib(self) -> float:
        return sum(i.memory_gib for i in self.instances)

    def instance(self, inst_id: str) -> InstancePlan:
        for i in self.instances:
            if i.id == inst_id:
                return i
        raise KeyError(inst_id)

    def with_instance(self, inst: InstancePlan) -> "Placement":
        """Replace (by id) or append ``inst``."""
        out = [inst if i.id == inst.id else i for i in self.instances]
        if not any(i.id == inst.id for i in self.instances):
            out.append(inst)
        return replace(self, instances=tuple(out))

    def without_task(self, task: str) -> "Placement":
        """Drop ``task`` everywhere; instances that hosted only it are removed."""
        kept = []
        for i in self.instances:
            if task in i.tasks:
                if i.tasks == (task,):
                    continue
                i = replace(i, tasks=tuple(t for t in i.tasks if t != task))
            kept.append(i)
        return replace(
            self,
            instances=tuple(kept),
            unplaced=tuple(u for u in self.unplaced if u[0] != task),
        )

    def to_dict(self) -> dict:
        return {
            "policy": self.policy,
            "time_shared": self.time_shared,
            "instances": [i.to_dict() for i in self.instances],
            "unplaced": [{"task": t, "reason": r} for t, r in self.unplaced],
        }


class PlacementPolicy(ABC):
    """Base class of placement policies."""

    name: ClassVar[str] = ""

    @abstractmethod
    def plan(self, tasks: Sequence[TaskSpec], cost: PlacementCost) -> Placement:
        """Place the tasks present at the start of a run."""

    @abstractmethod
    def add(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        """Place one more task online, keeping every existing instance where it is."""

    def remove(self, placement: Placement, task: TaskSpec, cost: PlacementCost) -> Placement:
        """Retire ``task``: its extensions are freed, and any instance left without tasks."""
        return placement.without_task(task.name)


def replica_gib(task: TaskSpec, cost: PlacementCost) -> float:
    """Memory of a dedicated replica: process, backbone copy, extensions, activations."""
    return (
        cost.process_gib
        + cost.backbone_gib(task.backbone)
        + cost.extension_gib(task)
        + cost.activation_gib(task.backbone, task.input_len)
    )
