"""Executors: run one batch of one instance on real models, for :mod:`fmplex_exec.runtime`.

An instance of a time-shared placement (``fmplex``, ``colocate``) runs in the runtime's
process: its own :class:`~fmplex_exec.vfm.PhysicalFM` (a shared backbone with its vFMs, or a
dedicated replica with one task). An instance of a partitioned placement (``spatial``) on CPU
runs in a worker process pinned to its own cores, with torch limited to that many threads; the
runtime talks to it over a pipe, so the measured service time includes that hop.

Lifecycle (tasks deployed, updated and removed mid-run): an executor also has
``prepare(task) -> handle``, which may be slow and runs while batches run (it builds the
extension weights, :meth:`~fmplex_exec.vfm.PhysicalFM.prepare`), and ``add(handle)``,
``update(handle)`` and ``remove(name)``, which change the model and which the runtime calls
between batches, under the instance's lock. A slice's process does all of it in its own
serving loop, between two batches (``prepare`` only passes the task on).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable

from fmplex_sim.policies.placement import InstancePlan
from fmplex_sim.policies.placement.spatial import first_slice
from fmplex_sim.records import Batch
from fmplex_sim.sharing import slice_cores as sim_slice_cores
from fmplex_sim.specs import TaskSpec

Executor = Callable[[Batch], list[str]]


def _errors(results) -> list[str]:
    return ["" if r.ok else (r.error or "failed") for r in results]


def build_fm(backbone: str, tasks: list[TaskSpec], device: str, dtype: str, seed: int):
    """A PhysicalFM of ``backbone`` hosting ``tasks`` (imports torch only when called)."""
    from fmplex_exec.backbones import load_backbone
    from fmplex_exec.vfm import PhysicalFM

    fm = PhysicalFM(load_backbone(backbone, device=device, dtype=dtype, seed=seed), input_seed=seed)
    for t in tasks:
        fm.add_task(t)
    return fm


def local_executor(fm, device: str) -> Executor:
    """Run batches in this process."""
    from fmplex_exec.vfm import ExecRequest

    sync = None
    if device == "cuda":
        import torch

        sync = torch.cuda.synchronize

    def run(batch: Batch) -> list[str]:
        res = fm.run_batch([ExecRequest(r.task, r.input_len) for r in batch.requests])
        if sync is not None:
            sync()
        return _errors(res)

    run.memory = lambda: memory_of(fm)  # type: ignore[attr-defined]
    run.prepare = fm.prepare  # type: ignore[attr-defined]
    run.add = fm.add_prepared  # type: ignore[attr-defined]
    run.update = fm.update_prepared  # type: ignore[attr-defined]
    run.remove = lambda name: fm.remove_task(name, collect=False)  # type: ignore[attr-defined]
    return run


def memory_of(fm) -> dict:
    """Real bytes of a PhysicalFM's backbone and of each task's extensions."""
    return {"backbone_bytes": fm.backbone_bytes(),
            "extension_bytes": {t: fm.extension_bytes(t) for t in fm.tasks()}}


def slice_cores(plan: InstancePlan, slices: int) -> list[int]:
    """The cores of this machine a spatial slice is pinned to: the simulator's mapping
    (:func:`fmplex_sim.sharing.slice_cores`) over the cores this process may use."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    first = first_slice(plan)
    width = max(1, round(plan.share * slices))
    return [cores[i] for i in sim_slice_cores(first, width, slices, len(cores))]


def _worker(conn, backbone, tasks, device, dtype, seed, cores, threads) -> None:
    """Worker process of one spatial slice: pin, load, then serve batches until told to stop."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        fm = build_fm(backbone, tasks, device, dtype, seed)
        run = local_executor(fm, device)
    except Exception as e:  # report and exit: the parent turns it into failed requests
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", memory_of(fm)))
    from fmplex_sim.records import Batch, Request

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone or closed the pipe: nothing left to serve
            return
        if msg is None:
            return
        if isinstance(msg, tuple):  # lifecycle: ("add" | "update", TaskSpec) or ("remove", name)
            op, arg = msg
            try:
                if op == "remove":
                    fm.remove_task(arg)
                else:
                    (fm.add_task if op == "add" else fm.update_task)(arg)
                conn.send(("ok", ""))
            except Exception as e:
                conn.send(("error", f"{type(e).__name__}: {e}"))
            continue
        reqs = tuple(Request(i, t, 0.0, n, 0) for i, (t, n) in enumerate(msg))
        conn.send(("done", run(Batch(reqs))))


class ProcessExecutor:
    """An executor whose model lives in its own process (a spatial slice)."""

    def __init__(self, plan: InstancePlan, tasks: list[TaskSpec], device: str, dtype: str, seed: int,
                 cores: list[int]) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, daemon=True,
                                args=(child, plan.backbone, tasks, device, dtype, seed, cores, len(cores)))
        self.proc.start()
        kind, detail = self.conn.recv()
        self.failed = detail if kind == "error" else None
        self._memory = detail if kind == "ready" else {"backbone_bytes": 0, "extension_bytes": {}}

    def memory(self) -> dict:
        return self._memory

    def __call__(self, batch: Batch) -> list[str]:
        if self.failed:
            return [f"replica failed to load: {self.failed}"] * batch.size
        self.conn.send([(r.task, r.input_len) for r in batch.requests])
        return self.conn.recv()[1]

    def prepare(self, task: TaskSpec) -> TaskSpec:
        return task  # the slice's process builds it, in add or update

    def add(self, task: TaskSpec) -> None:
        self._op("add", task)

    def update(self, task: TaskSpec) -> None:
        self._op("update", task)

    def remove(self, name: str) -> None:
        self._op("remove", name)

    def _op(self, op: str, arg) -> None:
        if self.failed:
            return
        self.conn.send((op, arg))
        kind, detail = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"{op} in the slice's process failed: {detail}")

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(5)


def make_executor(plan: InstancePlan, tasks: dict[str, TaskSpec], opts) -> Executor:
    """The executor of one instance: a worker process per slice (pinned to its cores on CPU; on
    CUDA one process per slice, without MIG or MPS limits on its share), else in-process."""
    specs = [tasks[t] for t in plan.tasks]
    if plan.share < 1.0:
        slices = opts.slices_per_gpu or max(1, round(1 / plan.share))
        cores = slice_cores(plan, slices) if opts.device == "cpu" else []
        return ProcessExecutor(plan, specs, opts.device, opts.dtype, opts.seed, cores)
    return local_executor(build_fm(plan.backbone, specs, opts.device, opts.dtype, opts.seed), opts.device)
