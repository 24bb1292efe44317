"""Answers placement questions (memory, predicted load) from the catalog and a latency model."""

from __future__ import annotations

from fmplex_sim import costs
from fmplex_sim.catalog import BACKBONES
from fmplex_sim.latency.base import LatencyModel
from fmplex_sim.specs import GIB, DeviceSpec, TaskSpec

NOMINAL_BATCH = 8  # batch size at which placement predicts a task's per-request cost


class ClusterCost:
    """The :class:`~fmplex_sim.policies.placement.PlacementCost` of one cluster and run."""

    def __init__(self, device: DeviceSpec, gpus: int, model: LatencyModel, max_batch: int) -> None:
        self.device = device
        self.gpus = gpus
        self.gpu_memory_gib = device.memory_gib
        self.process_gib = device.process_memory_gib
        self.model = model
        self.max_batch = max_batch

    def backbone_gib(self, backbone: str) -> float:
        return BACKBONES[backbone].weight_bytes(self.device.dtype_bytes) / GIB

    def extension_gib(self, task: TaskSpec) -> float:
        bb = BACKBONES[task.backbone]
        return sum(costs.extension_bytes(e, bb, self.device.dtype_bytes) for e in task.extensions) / GIB

    def activation_gib(self, backbone: str, seq_len: int) -> float:
        bb = BACKBONES[backbone]
        return costs.activation_bytes(bb, self.device.dtype_bytes, self.max_batch, seq_len) / GIB

    def request_s(self, task: TaskSpec, share: float, batch: int = NOMINAL_BATCH) -> float:
        """Predicted backbone time per request of ``task`` in batches of ``batch`` of its own."""
        b = max(1, min(batch, self.max_batch))
        bb = BACKBONES[task.backbone]
        return self.model.batch_s(bb, self.device, [(task, b)], task.input_len, task.output_len, share) / b

    def task_util(self, task: TaskSpec, share: float) -> float:
        return task.arrival.rate_rps * self.request_s(task, share)
